//! What recovery and compaction tell the append log: recovered segments and counts, where
//! writing resumes, reclaimed bytes, per-segment live bytes and versions, and retiring.

use std::path::Path;

use super::AppendLog;
use super::read::read_record;
use super::tail::Tail;
use crate::address::Address;
use crate::error::{Error, Result};
use crate::segment::{FIRST_RECORD_OFFSET, Segment};
use crate::sync::Ordering;
use crate::sync::epoch::Guard;

impl AppendLog {
    pub(crate) fn set_lock(&mut self, lock: crate::files::DirLock) {
        self.lock = Some(lock);
    }

    /// Installs a segment found on disk by recovery.
    pub(crate) fn install_recovered(&self, segment: Segment, guard: &Guard) -> Result<()> {
        let id = segment.id();
        let (max, slots) = (self.directory.max_segments(), self.directory.slots());
        self.directory
            .install(segment, guard)
            .map_err(|s| Error::InvalidOption {
                name: "max_segments",
                reason: format!(
                    "the log holds more segments than {max} (or ids more than {slots} apart); \
                     segment {id} ({}) does not fit: reopen with a larger max_segments",
                    s.path()
                        .map(Path::display)
                        .map(|p| p.to_string())
                        .unwrap_or_default()
                ),
            })?;
        // Relaxed: recovery runs on one thread before the log is shared; the log reaches other
        // threads through the `Arc` or move that hands it out, which orders this store.
        self.claimed.fetch_max(id + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Counts a record found by recovery in the log's totals.
    pub(crate) fn note_recovered(&self, record_bytes: u32) {
        self.counters.count_records(1, u64::from(record_bytes));
    }

    /// [`AppendLog::note_recovered`] for `records` records of `bytes` in all (a hint's).
    pub(crate) fn note_recovered_many(&self, records: u64, bytes: u64) {
        self.counters.count_records(records, bytes);
    }

    /// Counts the bytes of aborted records found by recovery (or listed by a hint) in the
    /// log's totals, as the live log counts the aborted records it writes: retiring a segment
    /// takes out every non-padding record it holds.
    pub(crate) fn note_recovered_filler(&self, bytes: u64) {
        self.counters.count_bytes(bytes);
    }

    /// Sets where writing resumes after recovery, and where scans start.
    pub(crate) fn set_recovered_tail(&self, segment: u64, offset: u64, first_segment: u64) {
        self.tail.set_recovered(Tail::new(segment, offset));
        // Release: pairs with the Acquire loads of `first_segment` (`scan_at`, `first_segment`),
        // like the tail's: the segments recovery installed before are visible to whoever reads
        // it. (Recovery is single-threaded, so handing out the log orders them too.)
        self.first_segment.store(first_segment, Ordering::Release);
    }

    /// Removes segment `id` from the log; it is dropped once every reader pinned before the call
    /// has unpinned. Refuses the tail's segment and later ones, a segment with a write still
    /// being installed, and every segment of a log a [`crate::Log`] indexes (its index may point
    /// into any of them; compaction retires those). For the loom models.
    #[doc(hidden)]
    pub fn retire_segment(&self, id: u64) -> bool {
        if self.indexed {
            return false;
        }
        let guard = crate::sync::epoch::pin();
        let (tail_segment, _) = self.tail(&guard);
        match self.directory.get(id, &guard) {
            Some(segment)
                if id < tail_segment
                    && !segment.installs_pending()
                    && self.fully_published(segment) =>
            {
                self.directory.remove(id, &guard)
            }
            _ => false,
        }
    }

    /// Whether every record of sealed `segment` is published: no writer still owns a region of
    /// it (or will look the segment up again to write it).
    pub(crate) fn fully_published(&self, segment: &Segment) -> bool {
        let mut offset = FIRST_RECORD_OFFSET;
        while offset < segment.len() {
            let position = self.position(segment.id(), offset as u64);
            match read_record(segment, offset, position) {
                Ok(Some(record)) => offset += record.record_bytes as usize,
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }

    /// Held while a hint file is written (see `hints::write_hint`).
    pub(crate) fn lock_hints(&self) -> crate::sync::MutexGuard<'_, ()> {
        self.hint_lock.lock()
    }

    /// Marks this log as indexed by a [`crate::Log`] (see [`AppendLog::retire_segment`]).
    pub(crate) fn mark_indexed(&mut self) {
        self.indexed = true;
    }

    /// Adds `delta` to the live bytes of the segment holding the record at index address
    /// `address` (the segment in its ring slot: the one the address names while the caller is
    /// pinned, as for `read_address`). `forgotten`: the record is a tombstone the index forgot,
    /// which the segment also counts apart (see `log/settled.rs`).
    pub(crate) fn add_live_bytes_at(
        &self,
        address: Address,
        delta: i64,
        forgotten: bool,
        guard: &Guard,
    ) {
        let (slot, _) = self.split(address.get());
        if let Some(segment) = self.directory.in_slot(slot, guard) {
            segment.add_live_bytes(delta, forgotten);
        }
    }

    /// Notes that segment files were removed or renamed: the next sync fsyncs the directory.
    pub(crate) fn note_directory_changed(&self) {
        // Relaxed: as `ensure_segment`'s count; read-modify-written under `sync_lock` by `sync`.
        self.unsynced_segments.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a reclaimed segment's records out of the log's totals.
    pub(crate) fn note_reclaimed_record_bytes(&self, bytes: u64) {
        // The totals count every non-padding record found at open or written since, so this
        // never takes them below zero; if it ever did, `Counters::record_bytes` reads 0 rather
        // than a wrapped total that would make compaction due forever.
        self.counters.uncount_bytes(bytes);
    }

    /// Moves the first segment past ids compaction removed, so scans and victim searches
    /// start at the oldest segment that exists.
    pub(crate) fn advance_first_segment(&self, guard: &Guard) {
        let tail_segment = self.tail_segment_id();
        let mut first = self.first_segment();
        while first < tail_segment && self.directory.get(first, guard).is_none() {
            first += 1;
        }
        // Release: pairs with the Acquire loads in `scan` and `first_segment`.
        self.first_segment.fetch_max(first, Ordering::Release);
    }
}
