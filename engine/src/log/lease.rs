//! Segment leases: while a lease is held, no segment of the log from its id on leaves the disk.
//!
//! A checkpoint (`crate::checkpoint`) reads segment files by name while writers and compaction
//! run; so will a log shipper. Compaction must not pull a file from under them: retiring a
//! segment renames its file aside for reuse (or deletes it) and removes its hint, and a reused
//! file is zeroed and rewritten in place. A **lease** is a lower bound `from`: while it is held,
//! no segment with an id at or above `from` has its file retired.
//!
//! # Protocol
//! Compaction still relocates a leased segment's records and marks it retiring; only the last
//! step waits, the one that touches files. `Compactor::finish_retirements` retires files and
//! removes segments from the directory while it holds [`Leases::exclude`]'s guard, and keeps
//! every segment [`LeaseTable::holds`] in its retiring list for a later pass. [`Leases::acquire`]
//! takes the same mutex. So a retirement either finished before the lease was taken (the
//! segment is out of the directory, and the holder, which looks segments up after acquiring,
//! never sees it) or waits until the lease is released. No atomics: the mutex orders both
//! sides, and it is only ever taken on slow paths (never by appends or reads).
//!
//! Leased ids form a suffix `[min from, ∞)`, so when an older retiring segment is held back,
//! every younger one is too: a segment whose dropped tombstones require that it leaves the disk
//! only after every older retiring segment (see `finish_retirements`) still does.
//!
//! A lease covers the life of the *name*. A holder that hard-links a file keeps sharing its
//! inode after the lease ends, so recycling checks the link count instead: a file with more than
//! one link is never reused in place (`Segment::reuse_file`); it is unlinked, and the other
//! name keeps its bytes.

use crate::sync::{Mutex, MutexGuard};

/// The leases held on one log's segments.
#[derive(Debug)]
pub(crate) struct Leases {
    table: Mutex<LeaseTable>,
}

/// The held leases: `(lease id, from)` pairs.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    held: Vec<(u64, u64)>,
    next_id: u64,
}

impl LeaseTable {
    /// Whether a lease keeps segment `id` on disk.
    pub(crate) fn holds(&self, id: u64) -> bool {
        self.held.iter().any(|&(_, from)| from <= id)
    }
}

/// A held lease; released when dropped.
#[derive(Debug)]
pub(crate) struct SegmentLease<'a> {
    leases: &'a Leases,
    id: u64,
}

impl Leases {
    pub(crate) fn new() -> Self {
        Self {
            table: Mutex::new(LeaseTable::default()),
        }
    }

    /// Keeps every segment with an id at or above `from` on disk until the lease drops.
    /// Returns once no retirement is in progress: every segment still in the directory after
    /// this call stays there, with its file and hint under their names.
    pub(crate) fn acquire(&self, from: u64) -> SegmentLease<'_> {
        let mut table = self.table.lock();
        let id = table.next_id;
        table.next_id += 1;
        table.held.push((id, from));
        SegmentLease { leases: self, id }
    }

    /// The lease table, locked: no lease is taken or released while the guard lives. Whoever
    /// retires segment files holds it across each check and retirement.
    pub(crate) fn exclude(&self) -> MutexGuard<'_, LeaseTable> {
        self.table.lock()
    }
}

impl SegmentLease<'_> {
    /// Lets segments below `from` go (a holder done with them); `from` only moves up.
    pub(crate) fn advance_to(&self, from: u64) {
        let mut table = self.leases.table.lock();
        if let Some(lease) = table.held.iter_mut().find(|(id, _)| *id == self.id) {
            lease.1 = lease.1.max(from);
        }
    }
}

impl Drop for SegmentLease<'_> {
    fn drop(&mut self) {
        self.leases
            .table
            .lock()
            .held
            .retain(|&(id, _)| id != self.id);
    }
}

#[cfg(all(test, not(seglog_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_a_suffix_of_ids_until_dropped() {
        let leases = Leases::new();
        let a = leases.acquire(5);
        assert!(!leases.exclude().holds(4));
        assert!(leases.exclude().holds(5) && leases.exclude().holds(1 << 40));
        let b = leases.acquire(2);
        assert!(leases.exclude().holds(2));
        drop(b);
        assert!(!leases.exclude().holds(2));
        a.advance_to(7);
        assert!(!leases.exclude().holds(6) && leases.exclude().holds(7));
        a.advance_to(3);
        assert!(!leases.exclude().holds(6), "from only moves up");
        drop(a);
        assert!(!leases.exclude().holds(u64::MAX));
    }
}
