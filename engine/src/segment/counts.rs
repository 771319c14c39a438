//! What a segment's writers count, striped (see `crate::stripes`): its live bytes, for
//! compaction's choice of victims, and its install holds, which keep compaction off a segment
//! while a record published there is not yet in the index (docs/design.md, section 4).

use super::Segment;
use crate::stripes::signed_sum;
use crate::sync::{AtomicU64, Ordering};

/// One stripe of a segment's writer counts.
#[derive(Default)]
pub(super) struct SegmentCounts {
    /// Bytes of this segment's records that the index points at (compaction's live ratio);
    /// wraps, since a replacement subtracts on the replacing thread's stripe.
    live_bytes: AtomicU64,
    /// The part of `live_bytes` that is tombstones the index forgot (`log/settled.rs`): what
    /// compaction may drop once this is the oldest segment. Wraps like `live_bytes`.
    forgotten_bytes: AtomicU64,
    /// Records published here whose index install has not finished (see
    /// `AppendLog::append_record`'s `hold`), taken and released on this stripe.
    pending_installs: AtomicU64,
}

impl Segment {
    /// Bytes of records in this segment that are current for their key.
    pub(crate) fn live_bytes(&self) -> u64 {
        // Relaxed: an estimate for choosing compaction victims. A replacement's subtraction can
        // land before the install's addition: transiently "negative", which reads as 0.
        signed_sum(
            self.counts
                .all()
                .map(|c| c.live_bytes.load(Ordering::Relaxed)),
        )
    }

    /// Bytes of forgotten tombstones among [`Segment::live_bytes`].
    pub(crate) fn forgotten_bytes(&self) -> u64 {
        // Relaxed: as `live_bytes`.
        signed_sum(
            self.counts
                .all()
                .map(|c| c.forgotten_bytes.load(Ordering::Relaxed)),
        )
    }

    /// Adds `delta` (wrapping: subtraction passes a negated value) to the live bytes, and to
    /// the forgotten bytes too if `forgotten`.
    pub(crate) fn add_live_bytes(&self, delta: i64, forgotten: bool) {
        let counts = self.counts.mine();
        // Relaxed: estimates; exact once writers are quiescent.
        counts.live_bytes.fetch_add(delta as u64, Ordering::Relaxed);
        if forgotten {
            counts
                .forgotten_bytes
                .fetch_add(delta as u64, Ordering::Relaxed);
        }
    }

    /// Counts `bytes` of this segment's live bytes as a tombstone the index forgot.
    pub(crate) fn note_forgotten(&self, bytes: u32) {
        // Relaxed: as `add_live_bytes`.
        self.counts
            .mine()
            .forgotten_bytes
            .fetch_add(u64::from(bytes), Ordering::Relaxed);
    }

    /// Counts a record about to be published whose index install is still to come, on this
    /// thread's stripe; [`Segment::release_install`] must be given the same stripe.
    pub(crate) fn hold_install(&self) {
        // Relaxed: the commit word's Release store that follows publishes the increment to a
        // compactor that Acquire-loads the commit word before reading this counter.
        self.counts
            .mine()
            .pending_installs
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Ends a hold once the record's index install is done. `stripe` is the
    /// [`crate::sync::thread_stripe`] of the thread that took the hold.
    pub(crate) fn release_install(&self, stripe: usize) {
        // Release: pairs with the Acquire load in `installs_pending`, so a compactor that reads
        // zero also sees the index entry the install wrote.
        self.counts
            .stripe(stripe)
            .pending_installs
            .fetch_sub(1, Ordering::Release);
    }

    /// Whether some record published here still awaits its index install.
    ///
    /// The stripes are read one at a time, and that is enough: a hold is taken and released
    /// on one stripe, so no stripe's count is ever below the number of holds on it still
    /// open. A record the caller saw published (Acquire on its commit word) had its hold
    /// taken before that publish, so the caller's read of the hold's stripe sees the
    /// increment, and reads at least 1 until the release, whatever other stripes hold.
    pub(crate) fn installs_pending(&self) -> bool {
        // Acquire: pairs with the Release in `release_install`.
        self.counts
            .all()
            .any(|counts| counts.pending_installs.load(Ordering::Acquire) != 0)
    }
}
