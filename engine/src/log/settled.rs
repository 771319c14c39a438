//! The settled frontier: the segment id below which every record's index install is over, so
//! the index may forget a tombstone there (issue 15, docs/design.md *Forgetting removed keys*).
//!
//! A tombstone in the index is the barrier that turns away a slower write of an older record
//! of its key: a put that reserved its place before the remove but installs after it finds the
//! tombstone's higher version and retries past it (`Log::put_appended`). Once every record
//! whose version is below the tombstone's has been installed (or turned away), no such write
//! can come any more, and the barrier is not needed. Versions of fresh records are positions,
//! so "every record of segments below `s` is installed" covers every version below `s`'s first
//! position.
//!
//! Compaction advances the frontier at the start of each pass, holding the pass flag
//! ([`PassFlag`]), and so does a writer about to rebuild the index, if it can take the flag: a
//! segment is settled once it is sealed (below the tail word's segment), every record in it is
//! published, and no install hold is open (the same test compaction makes before it relocates
//! a segment, `Segment::installs_pending`). Advancing only at a pass's start also orders the
//! frontier after every earlier pass's relocations and their tombstone repairs
//! (`compaction::relocate`): a relocation that raced a remove belongs to a pass that began
//! before the remove's install finished, so the frontier computed then does not cover the
//! remove's segment, and the pass repairs the order before it ends.

use super::{AppendLog, read_record};
use crate::segment::FIRST_RECORD_OFFSET;
use crate::sync::epoch::Guard;
use crate::sync::{AtomicBool, Ordering};

/// The compaction pass flag of a log, held for one pass (or one move of the settled frontier)
/// and given back when dropped, also when the pass panics (a flag left set would make
/// `Log::compact` wait forever).
pub(crate) struct PassFlag<'a>(&'a AtomicBool);

impl<'a> PassFlag<'a> {
    /// Takes the flag, or `None` if another pass holds it.
    pub(crate) fn claim(flag: &'a AtomicBool) -> Option<Self> {
        // Acquire: pairs with the Release in `drop`, so one holder happens-before the next.
        (!flag.swap(true, Ordering::Acquire)).then_some(Self(flag))
    }
}

impl Drop for PassFlag<'_> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire in `claim`.
        self.0.store(false, Ordering::Release);
    }
}

/// A relocation's put copy whose switch lost (see `compaction::relocate`): a remove of its key
/// may have reserved its tombstone before the copy and still be installing it, which would
/// leave the copy, an older put, after the key's newest tombstone. Until the copy's segment is
/// settled (every such install done) and the order repaired, the frontier stays below
/// `hold_below`: the tail's segment before the relocation read its key, at or below where any
/// such tombstone sits, so the index cannot forget it first.
pub(crate) struct PendingRepair {
    pub(crate) key: Vec<u8>,
    pub(crate) put_position: u64,
    hold_below: u64,
}

impl AppendLog {
    /// Registers a [`PendingRepair`] for the put copy of `key` at `put_position`, whose
    /// relocation read the key while the tail was in segment `tail_segment`.
    pub(crate) fn defer_order_repair(&self, key: &[u8], put_position: u64, tail_segment: u64) {
        self.pending_repairs.lock().push(PendingRepair {
            key: key.to_vec(),
            put_position,
            hold_below: tail_segment,
        });
    }

    /// Takes the pending repairs whose copies lie in segments below `frontier` (every install
    /// of a record before them is done), for compaction to run; the caller holds the pass
    /// flag.
    pub(crate) fn take_settled_repairs(&self, frontier: u64) -> Vec<PendingRepair> {
        let mut pending = self.pending_repairs.lock();
        let (ready, waiting): (Vec<_>, Vec<_>) = pending
            .drain(..)
            .partition(|r| self.split(r.put_position).0 < frontier);
        *pending = waiting;
        ready
    }

    /// Whether an index install of a record with a version below `version` can still arrive:
    /// false once `version`'s segment is below the settled frontier.
    pub(crate) fn installs_settled_below(&self, version: u64) -> bool {
        let (segment, _) = self.split(version);
        // Acquire: pairs with the Release in `advance_settled`, so every install in the
        // segments below the frontier (their holds' Release, read by the advancing thread)
        // happens-before the caller's decision to forget.
        segment < self.settled_below.load(Ordering::Acquire)
    }

    /// Moves the settled frontier past every sealed segment whose records are all published
    /// and installed. The caller holds the pass flag: compaction at the start of a pass, or
    /// [`AppendLog::try_advance_settled`].
    ///
    /// Returns the frontier the segments alone allow; the one stored is held below every
    /// pending repair's `hold_below` ([`PendingRepair`]).
    pub(crate) fn advance_settled(&self, guard: &Guard) -> u64 {
        let tail_segment = self.tail_segment_id();
        // Relaxed: only the holder of the compaction flag stores it, and the flag's
        // Acquire/Release orders one holder's store before the next holder's load.
        let mut frontier = self.settled_below.load(Ordering::Relaxed);
        while frontier < tail_segment {
            if let Some(segment) = self.directory.get(frontier, guard)
                && !self.is_settled(frontier, segment)
            {
                break;
            }
            // A segment that is gone (retired by compaction) holds nothing to install.
            frontier += 1;
        }
        let held = self
            .pending_repairs
            .lock()
            .iter()
            .map(|r| r.hold_below)
            .min()
            .map_or(frontier, |hold| hold.min(frontier));
        // Release: pairs with the Acquire in `installs_settled_below`.
        self.settled_below.fetch_max(held, Ordering::Release);
        frontier
    }

    /// The flag compaction passes hold ([`PassFlag`]).
    pub(crate) fn compaction_flag(&self) -> &AtomicBool {
        &self.compaction_running
    }

    /// Moves the settled frontier if no compaction pass is running (one that is moves it at its
    /// start): for a writer about to rebuild the index, so the rebuild forgets what it may.
    pub(crate) fn try_advance_settled(&self, guard: &Guard) {
        if let Some(_pass) = PassFlag::claim(&self.compaction_running) {
            // Pending repairs hold the frontier; compaction's pass runs them.
            let _ = self.advance_settled(guard);
        }
    }

    /// Sets the frontier at open: recovery installed every record it found, and nothing else
    /// runs yet, so every segment below the tail is settled.
    pub(crate) fn set_settled_below(&self, segment: u64) {
        // Release: as in `advance_settled`.
        self.settled_below.fetch_max(segment, Ordering::Release);
    }

    fn is_settled(&self, id: u64, segment: &crate::segment::Segment) -> bool {
        let mut offset = FIRST_RECORD_OFFSET;
        while offset < segment.len() {
            match read_record(segment, offset, self.position(id, offset as u64)) {
                Ok(Some(record)) => offset += record.record_bytes as usize,
                // Unpublished: a writer still owns it. Damaged: never settled (recovery
                // reports it; the index then simply keeps the tombstones above it).
                Ok(None) | Err(_) => return false,
            }
        }
        // Every record is published (Acquire on each commit word), so each hold taken before
        // its publish is visible here until released (`Segment::installs_pending`).
        !segment.installs_pending()
    }

    /// Counts a tombstone the index forgot: no longer live for the log's totals, and counted
    /// apart in its segment, which keeps it among its live bytes until compaction drops it
    /// (oldest segment) or relocates it (any other).
    pub(crate) fn note_forgotten(&self, record: &super::RecordRef<'_>, guard: &Guard) {
        self.forgotten_bytes.add(i64::from(record.record_bytes));
        if let Some(segment) = self.directory.get(self.split(record.position).0, guard) {
            segment.note_forgotten(record.record_bytes);
        }
    }

    /// Bytes of tombstones the index forgot, to take out of the live bytes.
    pub(crate) fn forgotten_bytes(&self) -> u64 {
        self.forgotten_bytes.get()
    }
}
