//! Publishing a record: the writer fills its region, then stores the commit word with `Release`
//! (docs/design.md, section 2); a fill closure that panics leaves an aborted record instead; a
//! record's install hold keeps compaction off its segment until the index points at it.

use seglog_format::{CommitWord, RecordHeader, RecordKind, record_layout};

use super::{AppendLog, Appended, Counters};
use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::sync::epoch::Guard;
use crate::sync::{Ordering, thread_stripe};

impl AppendLog {
    /// Appends a put record of `key` and `value`.
    pub fn append(&self, key: &[u8], value: &[u8]) -> Result<Appended> {
        self.append_record(RecordKind::Put, key, value.len(), None, false, |buf| {
            buf.copy_from_slice(value);
        })
    }

    /// Appends a tombstone for `key`.
    pub fn append_tombstone(&self, key: &[u8]) -> Result<Appended> {
        self.append_record(RecordKind::Tombstone, key, 0, None, false, |_| {})
    }

    /// Appends a put record of `key` with a `value_len`-byte value that `fill` writes in place,
    /// straight into the log (zero-copy). The buffer starts on an 8-byte boundary and holds
    /// zeros.
    ///
    /// If `fill` panics, an aborted record is left in the reserved space (scans pass it) and the
    /// panic continues.
    pub fn append_with(
        &self,
        key: &[u8],
        value_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Appended> {
        self.append_record(RecordKind::Put, key, value_len, None, false, fill)
    }

    /// Checks a record's sizes before anything is reserved, so bad input changes nothing.
    pub(crate) fn check_sizes(&self, key_len: usize, value_len: usize) -> Result<u32> {
        let max_key = self.max_key_len();
        if key_len > max_key {
            // Also a key that fits the format but not this log's segments, even with an empty
            // value: such a record would cross every segment and never be written.
            return Err(Error::KeyTooLarge {
                len: key_len,
                max: max_key,
            });
        }
        let max = self.max_value_len(key_len);
        if value_len > max {
            return Err(Error::ValueTooLarge {
                len: value_len,
                max,
            });
        }
        let layout = record_layout(key_len, value_len).expect("sizes checked against the segment");
        Ok(layout.record_bytes)
    }

    /// Appends one record. `version` is the record's version, or `None` to use its position.
    ///
    /// With `hold`, the record's segment counts it as *awaiting its index install* from before
    /// it is published until the caller calls [`AppendLog::release_hold`]: compaction leaves a
    /// segment alone while any record in it is published but not yet installed (it would look
    /// dead, and the install would then point into a retired segment).
    pub(crate) fn append_record(
        &self,
        kind: RecordKind,
        key: &[u8],
        value_len: usize,
        version: Option<u64>,
        hold: bool,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Appended> {
        debug_assert!(matches!(kind, RecordKind::Put | RecordKind::Tombstone));
        // After a failed flush nothing more is written (see `AppendLog::sync`).
        self.check_not_failed()?;
        let record_bytes = self.check_sizes(key.len(), value_len)?;
        let layout = record_layout(key.len(), value_len).expect("checked by check_sizes");
        let guard = crate::sync::epoch::pin();
        let (segment, offset) = self.reserve(u64::from(record_bytes), &guard)?;
        let position = self.position(segment.id(), offset);
        let version = version.unwrap_or(position);
        segment.note_version(version);
        let offset = offset as usize;

        // If `fill` panics, this guard publishes an aborted record over the reservation.
        let abort = AbortOnUnwind {
            segment,
            offset,
            record_bytes,
            position,
            counters: &self.counters,
        };
        // SAFETY: `reserve` gave this thread `[offset, offset + record_bytes)` exclusively, and
        // nothing in it is published until the commit word is stored below.
        unsafe { segment.write(offset + layout.key_offset as usize, key) };
        let value_offset = offset + layout.value_offset as usize;
        {
            // SAFETY: as above; the slice ends before the commit store below.
            let value = unsafe { segment.slice_mut(value_offset, value_len) };
            fill(value);
        }
        std::mem::forget(abort);

        // SAFETY: as above; reading back our own unpublished bytes to checksum them.
        let value = unsafe { segment.slice(value_offset, value_len) };
        let header = RecordHeader::new(
            kind,
            key.len(),
            value_len,
            version,
            position,
            segment.salt(),
        )
        .expect("sizes checked")
        .sealed(key, value);
        // SAFETY: as above.
        unsafe { segment.write(offset + RecordHeader::COMMIT_BYTES, header.body_bytes()) };
        if hold {
            // Before the publish: a compactor that sees the record published sees the hold.
            segment.hold_install();
        }
        publish(segment, offset, header.commit_word());
        self.counters.count_record(record_bytes);
        Ok(Appended {
            position,
            version,
            record_bytes,
        })
    }

    /// The install hold of the record at `position`, appended with `hold: true` on this
    /// thread, as a guard that releases it when dropped.
    pub(crate) fn install_hold(&self, position: u64) -> InstallHold<'_> {
        InstallHold {
            log: self,
            position,
            stripe: thread_stripe(),
            _same_thread: std::marker::PhantomData,
        }
    }

    /// Ends the hold `append_record(.., hold: true, ..)` took on the record at `position` from
    /// stripe `stripe`, once its index install is done.
    fn release_hold(&self, position: u64, stripe: usize) {
        let guard = crate::sync::epoch::pin();
        self.held_segment(position, &guard).release_install(stripe);
    }

    /// The segment of the record at `position`, on which the caller holds an install hold
    /// (so compaction has not retired it).
    pub(super) fn held_segment<'g>(&'g self, position: u64, guard: &'g Guard) -> &'g Segment {
        self.directory
            .get(self.split(position).0, guard)
            .expect("a held segment is never retired")
    }
}

/// Stores the commit word that publishes the record at `offset`.
pub(super) fn publish(segment: &Segment, offset: usize, commit: CommitWord) {
    segment.commit(offset).publish(commit);
}

/// The install hold of one record (see [`AppendLog::append_record`]), released when dropped:
/// also when its install panics, since a hold left behind would keep compaction off the
/// record's segment for the log's life.
pub(crate) struct InstallHold<'a> {
    log: &'a AppendLog,
    position: u64,
    /// The stripe the hold was taken on: this thread's (see `Segment::installs_pending`).
    stripe: usize,
    /// Not `Send`: made on the thread that appended, whose stripe holds the count.
    _same_thread: std::marker::PhantomData<*const ()>,
}

impl Drop for InstallHold<'_> {
    fn drop(&mut self) {
        self.log.release_hold(self.position, self.stripe);
    }
}

/// Publishes an aborted record over a reservation whose fill closure panicked.
struct AbortOnUnwind<'a> {
    segment: &'a Segment,
    offset: usize,
    record_bytes: u32,
    position: u64,
    counters: &'a Counters,
}

impl Drop for AbortOnUnwind<'_> {
    fn drop(&mut self) {
        let header = RecordHeader::filler(
            RecordKind::Aborted,
            self.record_bytes,
            self.position,
            self.segment.salt(),
        );
        // SAFETY: the panicking writer still owns its reservation (nothing was published), and
        // the value slice handed to the closure is gone with the unwinding closure.
        unsafe {
            self.segment.write(
                self.offset + RecordHeader::COMMIT_BYTES,
                header.body_bytes(),
            );
        }
        publish(self.segment, self.offset, header.commit_word());
        // Relaxed: statistics only.
        self.counters.aborted.fetch_add(1, Ordering::Relaxed);
        self.counters.count_record(self.record_bytes);
    }
}
