//! Reservation and roll-over: one atomic bump of the tail word hands a writer its region; the
//! one writer whose region crosses a segment's end rolls the log over (see the module docs of
//! `crate::log` and docs/design.md, section 1).

use seglog_format::{CommitWord, RECORD_HEADER_BYTES, RecordHeader, RecordKind};

use super::AppendLog;
use super::publish::publish;
use super::tail::{Reserved, Tail};
use crate::error::Result;
use crate::segment::{FIRST_RECORD_OFFSET, Segment};
use crate::sync::epoch::Guard;
use crate::sync::{Backoff, Ordering};

impl AppendLog {
    /// Reserves `len` bytes; returns the segment and offset of the region.
    pub(super) fn reserve<'g>(&'g self, len: u64, guard: &'g Guard) -> Result<(&'g Segment, u64)> {
        debug_assert!(len <= self.segment_bytes - FIRST_RECORD_OFFSET as u64);
        loop {
            let old = self.bump_tail(len);
            match old.classify(len, self.segment_bytes) {
                Reserved::Fits { segment, offset } => {
                    return Ok((self.tail_segment(segment, guard), offset));
                }
                Reserved::Crosses { segment, offset } => {
                    return self.roll_over(segment, offset, len, guard);
                }
                Reserved::Overshot { segment } => self.wait_for_roll_over(segment),
            }
        }
    }

    /// One atomic bump of the tail by `len`; returns the value before the bump.
    fn bump_tail(&self, len: u64) -> Tail {
        self.tail.bump(len)
    }

    /// Waits until the tail leaves `segment` or is reset to its end (after a failed roll-over).
    fn wait_for_roll_over(&self, segment: u64) {
        let backoff = Backoff::new();
        loop {
            let tail = self.tail.load();
            if tail.segment() != segment || tail.offset() <= self.segment_bytes {
                return;
            }
            backoff.snooze();
        }
    }

    /// Run by the one writer whose reservation of `len` bytes at `offset` crossed the end of
    /// the segment the tail names with `bits`. Moves the tail to the next segment with this
    /// writer's `len` bytes already reserved at its start, and returns them.
    fn roll_over<'g>(
        &'g self,
        bits: u64,
        offset: u64,
        len: u64,
        guard: &'g Guard,
    ) -> Result<(&'g Segment, u64)> {
        let current = self.tail_segment(bits, guard);
        let segment = current.id();
        let next = segment + 1;
        let installed = self.ensure_segment(next, guard);
        if let Err(error) = installed {
            self.write_padding(current, offset);
            // The next bump sees offset == end and makes its writer the crossing writer, who
            // retries.
            let overshot = self.tail.move_to(Tail::new(segment, self.segment_bytes));
            debug_assert!(
                overshot.segment() == bits && overshot.offset() > self.segment_bytes,
                "only the crossing writer moves the tail: {overshot:?}"
            );
            return Err(error);
        }
        let next_segment = self
            .directory
            .get(next, guard)
            .expect("ensure_segment installed it, and only compaction removes sealed segments");
        // Only this thread changes the segment field (see `TailWord::move_to`). The new tail
        // already covers this writer's own record at the start of the segment: the record that
        // crossed the end is the first in the next one, so a record of any allowed size gets
        // in however many writers wait for the roll-over.
        let overshot = self
            .tail
            .move_to(Tail::new(next, FIRST_RECORD_OFFSET as u64 + len));
        debug_assert!(
            overshot.segment() == bits && overshot.offset() > self.segment_bytes,
            "only the crossing writer moves the tail off its segment: {overshot:?}"
        );
        self.write_padding(current, offset);
        // Relaxed: statistics only.
        self.counters.rollovers.fetch_add(1, Ordering::Relaxed);
        // Prepare the segment after next now, outside the critical section. A failure here is
        // not an error for this writer: the next roll-over tries again and reports it.
        let _ = self.ensure_segment(next + 1, guard);
        Ok((next_segment, FIRST_RECORD_OFFSET as u64))
    }

    /// Publishes a padding record from `offset` to the end of `segment`.
    fn write_padding(&self, segment: &Segment, offset: u64) {
        let remaining = self.segment_bytes - offset;
        if remaining == 0 {
            return;
        }
        let offset = offset as usize;
        let commit = CommitWord::new(RecordKind::Padding, remaining as u32);
        if remaining as usize >= RECORD_HEADER_BYTES {
            let header = RecordHeader::filler(
                RecordKind::Padding,
                remaining as u32,
                self.position(segment.id(), offset as u64),
                segment.salt(),
            );
            // SAFETY: the crossing writer owns `[offset, end)` of this segment (its reservation
            // contains it) and publishes it below.
            unsafe { segment.write(offset + RecordHeader::COMMIT_BYTES, header.body_bytes()) };
        }
        publish(segment, offset, commit);
        // Relaxed: statistics only.
        self.counters
            .padding_bytes
            .fetch_add(remaining, Ordering::Relaxed);
    }
}
