//! The one door to atomics, cells and threads.
//!
//! Everything in the engine that is shared between threads comes through here, so the loom models
//! in `loom-models/` check this crate's own code: under `--cfg seglog_loom` these names are loom's
//! (and crossbeam-epoch switches to loom under its own `--cfg crossbeam_loom`), otherwise they are
//! std's. Follows crossbeam-epoch's `primitive` module and sharded-slab's `sync.rs`.

#[cfg(not(seglog_loom))]
#[allow(unused_imports, dead_code)] // the door lists every primitive; not all are used everywhere
mod imp {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use std::sync::{Arc, Mutex as RawMutex, MutexGuard};

    /// Tells the scheduler this thread is waiting on another one.
    pub(crate) fn yield_now() {
        std::thread::yield_now();
    }

    /// A cell with loom's closure-based access API; under std it is a plain `UnsafeCell`.
    #[derive(Debug, Default)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a shared raw pointer to the contents.
        #[inline(always)]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Runs `f` with an exclusive raw pointer to the contents.
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

#[cfg(seglog_loom)]
#[allow(unused_imports, dead_code)]
mod imp {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use loom::sync::{Arc, Mutex as RawMutex, MutexGuard};

    /// Tells loom this thread is waiting on another one, so the model explores its progress.
    pub(crate) fn yield_now() {
        loom::thread::yield_now();
    }
}

#[allow(unused_imports)]
pub(crate) use imp::*;

/// A mutex for the engine's slow paths (group commit, the retirement list, the recycle pool,
/// hint writers; never taken by appends or reads). A panic while holding it leaves nothing half
/// done that the next holder could trip on, so poisoning is ignored.
pub(crate) struct Mutex<T>(RawMutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(RawMutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<T> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mutex { .. }")
    }
}

/// crossbeam-epoch, which switches itself to loom under `--cfg crossbeam_loom`.
pub(crate) use crossbeam_epoch as epoch;

/// Waits a little for another thread to make progress: spins first, then yields.
/// Under loom every wait is a yield, so the model schedules the thread being waited on.
pub(crate) struct Backoff {
    #[cfg(not(seglog_loom))]
    inner: crossbeam_utils::Backoff,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(seglog_loom))]
            inner: crossbeam_utils::Backoff::new(),
        }
    }

    pub(crate) fn snooze(&self) {
        #[cfg(not(seglog_loom))]
        self.inner.snooze();
        #[cfg(seglog_loom)]
        yield_now();
    }
}

/// Stripes of a [`crate::stripes::Striped`] value: enough that the writers of a machine's
/// cores rarely share one. Under loom there is one: loom runs every modeled thread on one OS
/// thread, so a thread-local stripe would be one stripe anyway, and the models check the
/// protocols with every thread on it (the case where striping changes nothing).
#[cfg(not(seglog_loom))]
pub(crate) const STRIPES: usize = 16;
#[cfg(seglog_loom)]
pub(crate) const STRIPES: usize = 1;

/// This thread's stripe, below [`STRIPES`]: fixed for the thread's life, handed out round-robin
/// as threads first ask, so the first [`STRIPES`] threads each get their own.
#[inline]
pub(crate) fn thread_stripe() -> usize {
    #[cfg(not(seglog_loom))]
    {
        use std::cell::Cell;
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Relaxed: a ticket dispenser; only the value matters, not what it orders.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local!(static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) });
        STRIPE.with(|stripe| {
            if stripe.get() == usize::MAX {
                stripe.set(NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
            }
            stripe.get()
        })
    }
    #[cfg(seglog_loom)]
    0
}

/// Deliberately broken variants of seglog's protocols, switched on per thread by the loom
/// models' twins (each twin must fail, proving its model can catch the bug). Exists only in loom
/// builds; normal builds have no switch and no branch.
#[cfg(seglog_loom)]
pub mod broken {
    use std::cell::Cell;

    /// A protocol bug a loom model must catch.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Broken {
        /// The seed's offset allocation: load the tail, then store tail + len.
        LoadThenAdd,
        /// Publish records with a `Relaxed` commit store instead of `Release`.
        RelaxedCommit,
        /// Install index entries with a blind store instead of a CAS.
        BlindIndexStore,
        /// Relocate (compaction) with a blind store instead of a CAS on the old address.
        BlindRelocate,
        /// Retire a compacted segment without first finishing an index resize in flight, so an
        /// old root table can still hold an address into it (defect 1 of the defects issue).
        RetireDuringResize,
        /// Let index migrations forget every tombstone, even one an older record of its key
        /// could still be installed against (issue 15's slot reclaim without its frontier).
        ForgetUnsettled,
        /// Drop a tombstone in compaction without its ordering repairs: a relocation copy of
        /// an older record that landed after the tombstone is left behind it (issue 15).
        UnorderedTombstone,
        /// Install a conditional write with a blind store after its comparison instead of a CAS
        /// on the entry it compared (issue 16): two writers expecting one version both win.
        ConditionalBlindStore,
        /// Publish a conditional write's record before its comparison is decided, and abort it
        /// afterwards if the comparison failed (issue 16): a crash in between brings back a
        /// value whose comparison failed.
        ConditionalPublishFirst,
        /// Publish each member of a batch as a record of its own instead of the batch as one
        /// (issue 16): a crash part way through keeps part of the batch.
        BatchMembersAlone,
        /// Retire segment files without consulting the lease table (`log/lease.rs`): compaction
        /// removes a segment a holder listed under its lease and is still reading.
        LeaseIgnored,
    }

    thread_local! {
        // Loom runs every modeled thread on the OS thread that called `loom::model`, so a
        // thread-local set by the test reaches all of them and no other test.
        static MODE: Cell<Option<Broken>> = const { Cell::new(None) };
    }

    /// Switches this OS thread's seglog code to the broken variant `mode` (or back, with `None`).
    pub fn set(mode: Option<Broken>) {
        MODE.with(|m| m.set(mode));
    }

    /// Whether `mode` is switched on for this thread.
    pub(crate) fn is(mode: Broken) -> bool {
        MODE.with(|m| m.get() == Some(mode))
    }
}
