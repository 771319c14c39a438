//! [`Striped`]: a value kept once per stripe of threads, for counters that every writer bumps.
//!
//! A counter that every put increments is a cache line every core writes: at two threads each
//! increment waits for the line to come back from the other core, and the put path had nine
//! of them. A striped counter gives each thread (by [`thread_stripe`]) its own cache-padded
//! copy to add to, and a reader sums the copies. Increments stay exact (each is an RMW on its
//! stripe); only a sum taken while writers run is a moment-by-moment estimate, as the single
//! counter's Relaxed load already was.
//!
//! A thread always lands on the same stripe, so a count that one thread raises and later
//! lowers (an install hold) is never negative on any stripe: that is what lets
//! `Segment::installs_pending` read the stripes one by one (see there).

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, Ordering, STRIPES, thread_stripe};

/// One `T` per stripe, each on its own cache line.
pub(crate) struct Striped<T> {
    stripes: Box<[CachePadded<T>]>,
}

impl<T: Default> Striped<T> {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(T::default()))
                .collect(),
        }
    }
}

impl<T: Default> Default for Striped<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Striped<T> {
    /// This thread's stripe.
    #[inline]
    pub(crate) fn mine(&self) -> &T {
        &self.stripes[thread_stripe()]
    }

    /// Stripe `stripe` (from [`thread_stripe`], taken earlier on the thread that used it).
    #[inline]
    pub(crate) fn stripe(&self, stripe: usize) -> &T {
        &self.stripes[stripe]
    }

    /// Every stripe.
    pub(crate) fn all(&self) -> impl Iterator<Item = &T> {
        self.stripes.iter().map(|stripe| &**stripe)
    }
}

impl<T> std::fmt::Debug for Striped<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Striped { .. }")
    }
}

/// The sum of stripes that each wrap (a count that goes down on another stripe than the one it
/// went up on), or 0 if the sum is "negative": a subtraction seen before the addition it undoes,
/// possible only while writers run.
pub(crate) fn signed_sum(stripes: impl Iterator<Item = u64>) -> u64 {
    let sum = stripes.fold(0u64, u64::wrapping_add);
    if sum > i64::MAX as u64 { 0 } else { sum }
}

/// A striped byte or record count that may go down as well as up: each stripe wraps, and the
/// sum of the stripes is the count.
#[derive(Default)]
pub(crate) struct StripedCount(Striped<AtomicU64>);

impl StripedCount {
    /// Adds `delta` (wrapping: a negative delta subtracts).
    #[inline]
    pub(crate) fn add(&self, delta: i64) {
        // Relaxed: a count; it orders nothing, and the RMW keeps every adjustment.
        self.0.mine().fetch_add(delta as u64, Ordering::Relaxed);
    }

    /// The count: the stripes' [`signed_sum`].
    pub(crate) fn get(&self) -> u64 {
        // Relaxed: statistics, as `add`.
        signed_sum(self.0.all().map(|stripe| stripe.load(Ordering::Relaxed)))
    }
}
