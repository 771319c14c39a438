//! Telling whether a conditional write may have decided against a write still between its
//! append and its install.
//!
//! A write that loses its install to a newer record of its key (it took long between append and
//! install) is normally placed just before that record: plain puts, batches and gets observe
//! nothing that contradicts it, and a remove only that the key had a value. A conditional write
//! does observe more: it compared the key's version, and if it did so while the losing write was
//! appended but not installed, the loser cannot be placed before it. Then the loser must take
//! effect after it, written again with a newer version (`Log::put_appended`,
//! `Log::write_batch`). Knowing which conditional writes compared what would cost every write;
//! this instead counts conditional installs that *started* and that *finished*, log-wide:
//!
//! - a conditional write increments `started` before its install CAS and `finished` after it;
//! - a write reads `finished` (as `f0`) before its append, and, if its install loses, `started`.
//!
//! If a conditional install's CAS came after the append and before the lost install (the only
//! ones that matter), its `started` increment happens-before the lost install's slot load (the
//! CAS chain on the slot carries it) and so is counted in `started`, while its `finished`
//! increment comes after its CAS, so after the append, and is not in `f0`: then `started > f0`.
//! With no conditional write in flight or run since `f0` was read, `started == f0` and nothing is
//! written again. All four operations are SeqCst so that the counters' order is one total order
//! consistent with happens-before (on x86 the loads are plain loads, the increments the locked
//! adds they would be anyway). A conditional write on another key makes the check answer "maybe"
//! and costs one more append, never a wrong answer.

use crate::sync::{AtomicU64, Ordering};

/// The two counters (see the module docs).
pub(super) struct ConditionalRace {
    started: crossbeam_utils::CachePadded<AtomicU64>,
    finished: crossbeam_utils::CachePadded<AtomicU64>,
}

impl Default for ConditionalRace {
    fn default() -> Self {
        Self {
            started: crossbeam_utils::CachePadded::new(AtomicU64::new(0)),
            finished: crossbeam_utils::CachePadded::new(AtomicU64::new(0)),
        }
    }
}

impl ConditionalRace {
    /// Read by a write before its append.
    pub(super) fn mark(&self) -> u64 {
        // SeqCst: one total order with `begin` and `end` (module docs).
        self.finished.load(Ordering::SeqCst)
    }

    /// Whether a conditional install may have come between the append after `mark` and a lost
    /// install just made.
    pub(super) fn raced_since(&self, mark: u64) -> bool {
        // SeqCst: as in `mark`.
        self.started.load(Ordering::SeqCst) > mark
    }

    /// Before a conditional write's install CAS.
    pub(super) fn begin(&self) {
        // SeqCst: as in `mark`; sequenced before the CAS, which carries it to a lost install.
        self.started.fetch_add(1, Ordering::SeqCst);
    }

    /// After a conditional write's install CAS (whatever it decided).
    pub(super) fn end(&self) {
        // SeqCst: as in `mark`.
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}
