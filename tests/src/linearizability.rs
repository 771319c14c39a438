//! A linearizability checker for recorded concurrent histories.
//!
//! # Algorithm
//! Wing and Gong's search ("Testing and verifying concurrent objects", 1993) with Lowe's
//! memoization ("Testing for linearizability", 2017): linearize, one at a time, an operation
//! that no other pending operation *precedes* (no pending operation returned before it was
//! invoked); apply it to the sequential specification; backtrack when the specification
//! disagrees with what the operation returned. A search state is the set of operations already
//! linearized plus the specification's state; a state seen before is not explored again, which
//! turns the exponential search into one bounded by the distinct (set, state) pairs.
//!
//! Histories of a key-value store are checked one key at a time: linearizability is local
//! (Herlihy and Wing's locality theorem, the "P-compositionality" of Horn and Kroening), so a
//! history is linearizable exactly when each key's sub-history is.
//!
//! The key-value specification is [`Register`], a versioned register with delete: plain puts,
//! gets and removes, and seglog's `version`, `compare_and_put` and `compare_and_remove`, whose
//! versions it checks as values (what a put returned is what `version` and a failed
//! comparison must report, and what a comparison must match).
//!
//! # Timestamps
//! Record each operation's invocation and response with [`Clock::tick`], a `SeqCst` counter
//! read just before the call and just after it returns. If `a.returned < b.invoked`, `a`'s call
//! finished before `b`'s began (the two ticks are ordered by the counter's modification order),
//! so `a` must be linearized first. The recorded interval contains the real one, so recording
//! can only make the check more permissive, never reject a linearizable execution.

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

/// A sequential specification: which results an operation may return from a state, and the
/// state it leaves.
pub trait Spec {
    /// The object's state.
    type State: Clone + Eq + Hash + fmt::Debug;
    /// An operation with its arguments.
    type Op: fmt::Debug;
    /// What an operation returned.
    type Ret: fmt::Debug;

    /// The state after `op` returned `ret` in `state`, or `None` if `op` cannot return `ret`
    /// from `state`.
    fn apply(state: &Self::State, op: &Self::Op, ret: &Self::Ret) -> Option<Self::State>;
}

/// One completed call in a history.
#[derive(Debug, Clone, PartialEq)]
pub struct Call<O, R> {
    /// The thread that made it (for messages only).
    pub thread: usize,
    /// The operation.
    pub op: O,
    /// What it returned.
    pub ret: R,
    /// [`Clock`] tick taken just before the call.
    pub invoked: u64,
    /// [`Clock`] tick taken just after it returned; greater than `invoked`.
    pub returned: u64,
}

/// A global logical clock for recording histories.
#[derive(Debug, Default)]
pub struct Clock(AtomicU64);

impl Clock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next tick.
    ///
    /// # Ordering
    /// `SeqCst` read-modify-writes are totally ordered and each synchronizes with the one
    /// before it, so a tick taken after a call returned happens-before every later tick's
    /// caller; that is what makes `returned < invoked` mean "finished before it began".
    pub fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

/// Why a history is not linearizable.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The most calls the search managed to linearize, in order (indices into the history).
    pub longest_prefix: Vec<usize>,
    /// The calls none of which could be linearized after that prefix.
    pub stuck_at: Vec<usize>,
    /// A description of the state after the prefix and of the stuck calls.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not linearizable: after linearizing {} calls, none of the next candidates fits: {}",
            self.longest_prefix.len(),
            self.detail
        )
    }
}

/// Checks that `history` is linearizable with respect to `S` from `init`. On success returns a
/// linearization: the calls' indices in the order they take effect.
pub fn check<S: Spec>(
    init: S::State,
    history: &[Call<S::Op, S::Ret>],
) -> Result<Vec<usize>, Violation> {
    for (i, call) in history.iter().enumerate() {
        assert!(
            call.invoked < call.returned,
            "call {i} returned (tick {}) before it was invoked (tick {})",
            call.returned,
            call.invoked
        );
    }
    let mut by_invocation: Vec<usize> = (0..history.len()).collect();
    by_invocation.sort_by_key(|&i| history[i].invoked);
    let mut search = Search::<S> {
        history,
        by_invocation,
        done: vec![0u64; history.len().div_ceil(64)],
        seen: HashSet::new(),
        path: Vec::with_capacity(history.len()),
        best: (Vec::new(), init.clone()),
    };
    if search.extend(init.clone()) {
        return Ok(search.path);
    }
    let (longest_prefix, state) = std::mem::replace(&mut search.best, (Vec::new(), init));
    search.done.fill(0);
    for &i in &longest_prefix {
        search.done[i / 64] |= 1 << (i % 64);
    }
    let stuck_at = search.candidates();
    let detail = format!(
        "state {state:?}; candidates {}",
        stuck_at
            .iter()
            .map(|&i| format!("#{i} {:?}", history[i]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Err(Violation {
        longest_prefix,
        stuck_at,
        detail,
    })
}

struct Search<'h, S: Spec> {
    history: &'h [Call<S::Op, S::Ret>],
    by_invocation: Vec<usize>,
    /// Bit `i` set: call `i` is linearized.
    done: Vec<u64>,
    /// (linearized set, state) pairs already explored.
    seen: HashSet<(Vec<u64>, S::State)>,
    path: Vec<usize>,
    /// The longest prefix found and the state after it, for the report.
    best: (Vec<usize>, S::State),
}

impl<S: Spec> Search<'_, S> {
    fn is_done(&self, i: usize) -> bool {
        self.done[i / 64] & (1 << (i % 64)) != 0
    }

    /// Pending calls that no pending call precedes, in invocation order.
    fn candidates(&self) -> Vec<usize> {
        let pending = || {
            self.by_invocation
                .iter()
                .copied()
                .filter(|&i| !self.is_done(i))
        };
        let Some(first_return) = pending().map(|i| self.history[i].returned).min() else {
            return Vec::new();
        };
        pending()
            .take_while(|&i| self.history[i].invoked <= first_return)
            .collect()
    }

    /// Tries to linearize every pending call from `state`; on success `path` holds the order.
    fn extend(&mut self, state: S::State) -> bool {
        if self.path.len() == self.history.len() {
            return true;
        }
        if self.path.len() > self.best.0.len() {
            self.best = (self.path.clone(), state.clone());
        }
        for i in self.candidates() {
            let call = &self.history[i];
            let Some(next) = S::apply(&state, &call.op, &call.ret) else {
                continue;
            };
            self.done[i / 64] |= 1 << (i % 64);
            if self.seen.insert((self.done.clone(), next.clone())) {
                self.path.push(i);
                if self.extend(next) {
                    return true;
                }
                self.path.pop();
            }
            self.done[i / 64] &= !(1 << (i % 64));
        }
        false
    }
}

/// An operation on one key of a key-value store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvOp {
    /// `put(key, value)`; `version` is what `put` returned.
    Put {
        /// The value, as a number the test decodes from the bytes.
        value: u64,
        /// The version `put` returned.
        version: u64,
    },
    /// `get(key)`.
    Get,
    /// `remove(key)`.
    Remove,
    /// `version(key)`.
    Version,
    /// `compare_and_put(key, expected, value)`.
    CompareAndPut {
        /// The version the key must have (`None`: the key must be absent).
        expected: Option<u64>,
        /// The value, as for [`KvOp::Put`].
        value: u64,
    },
    /// `compare_and_remove(key, expected)`.
    CompareAndRemove {
        /// The version the key must have.
        expected: u64,
    },
}

/// What an operation on one key returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvRet {
    /// `put` returned (its version is part of [`KvOp::Put`]).
    Put,
    /// `get` returned this value, or `None`.
    Get(Option<u64>),
    /// `remove` returned whether the key existed.
    Remove(bool),
    /// `version` returned this version, or `None`.
    Version(Option<u64>),
    /// A conditional write succeeded: `compare_and_put` with `Some(its new version)`,
    /// `compare_and_remove` with `None` (it returns no version).
    Ok(Option<u64>),
    /// A conditional write returned `Error::VersionMismatch { current }` with this `current`.
    Mismatch(Option<u64>),
}

/// A versioned register with delete, one per key: `put` sets it, `get` reads it, `remove`
/// clears it and says whether it was set; every put (plain or conditional) gives the key the
/// version it returned, `version` reads it, and a conditional write succeeds exactly when the
/// key's version is the one expected (`None`: the key is absent) and otherwise returns the
/// version it found, changing nothing.
///
/// It also checks seglog's highest-version rule: puts of one key take effect in the order of
/// the versions they returned (a put that loses to a newer record is linearized just before
/// it), so once a version is visible no lower one ever becomes visible again. Conditional puts
/// are puts here too: a plain put whose version is below a conditional put's must take effect
/// before it, and so is a version the conditional put had to compare against.
#[derive(Debug)]
pub struct Register;

/// The value and version a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Current {
    /// The value, as the test numbers it.
    pub value: u64,
    /// The version of the put that stored it.
    pub version: u64,
}

/// [`Register`]'s state: the current value and version, and the highest put version applied
/// so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RegisterState {
    /// The current value and its version; `None` while the key is absent.
    pub current: Option<Current>,
    /// The version of the last put applied (0 before any).
    pub last_put_version: u64,
}

impl RegisterState {
    /// The current value.
    pub fn value(&self) -> Option<u64> {
        self.current.map(|c| c.value)
    }

    /// The current version, what `version` and a failed comparison return.
    pub fn version(&self) -> Option<u64> {
        self.current.map(|c| c.version)
    }

    /// The state after a put of `value` returned `version`, if puts may still take effect at
    /// that version.
    fn put(&self, value: u64, version: u64) -> Option<RegisterState> {
        (version > self.last_put_version).then_some(RegisterState {
            current: Some(Current { value, version }),
            last_put_version: version,
        })
    }

    fn removed(&self) -> RegisterState {
        RegisterState {
            current: None,
            ..*self
        }
    }
}

impl Spec for Register {
    type State = RegisterState;
    type Op = KvOp;
    type Ret = KvRet;

    fn apply(state: &RegisterState, op: &KvOp, ret: &KvRet) -> Option<RegisterState> {
        let now = state.version();
        match (op, ret) {
            (KvOp::Put { value, version }, KvRet::Put) => state.put(*value, *version),
            (KvOp::Get, KvRet::Get(seen)) => (*seen == state.value()).then_some(*state),
            (KvOp::Version, KvRet::Version(seen)) => (*seen == now).then_some(*state),
            (KvOp::Remove, KvRet::Remove(existed)) => {
                (*existed == state.current.is_some()).then(|| state.removed())
            }
            (KvOp::CompareAndPut { expected, value }, KvRet::Ok(Some(version))) => {
                if now == *expected {
                    state.put(*value, *version)
                } else {
                    None
                }
            }
            (KvOp::CompareAndRemove { expected }, KvRet::Ok(None)) => {
                (now == Some(*expected)).then(|| state.removed())
            }
            (KvOp::CompareAndPut { expected, .. }, KvRet::Mismatch(seen)) => {
                (*seen == now && now != *expected).then_some(*state)
            }
            (KvOp::CompareAndRemove { expected }, KvRet::Mismatch(seen)) => {
                (*seen == now && now != Some(*expected)).then_some(*state)
            }
            _ => None,
        }
    }
}

/// A call on a key-value store: a [`Call`] of [`Register`] plus the key.
#[derive(Debug, Clone, PartialEq)]
pub struct KvCall<K> {
    /// The key.
    pub key: K,
    /// The call on it.
    pub call: Call<KvOp, KvRet>,
}

/// Checks a key-value history key by key (linearizability is local). Returns how many calls
/// were checked, or the first key whose sub-history is not linearizable.
pub fn check_kv<K: Ord + Clone + fmt::Debug>(
    history: &[KvCall<K>],
) -> Result<usize, (K, Violation)> {
    let mut by_key: std::collections::BTreeMap<K, Vec<Call<KvOp, KvRet>>> = Default::default();
    for c in history {
        by_key
            .entry(c.key.clone())
            .or_default()
            .push(c.call.clone());
    }
    for (key, calls) in by_key {
        check::<Register>(RegisterState::default(), &calls).map_err(|v| (key, v))?;
    }
    Ok(history.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix64;

    fn call(op: KvOp, ret: KvRet, invoked: u64, returned: u64) -> Call<KvOp, KvRet> {
        Call {
            thread: 0,
            op,
            ret,
            invoked,
            returned,
        }
    }
    fn put(value: u64, version: u64, invoked: u64, returned: u64) -> Call<KvOp, KvRet> {
        call(KvOp::Put { value, version }, KvRet::Put, invoked, returned)
    }
    fn get(seen: Option<u64>, invoked: u64, returned: u64) -> Call<KvOp, KvRet> {
        call(KvOp::Get, KvRet::Get(seen), invoked, returned)
    }
    fn remove(existed: bool, invoked: u64, returned: u64) -> Call<KvOp, KvRet> {
        call(KvOp::Remove, KvRet::Remove(existed), invoked, returned)
    }
    fn version(seen: Option<u64>, invoked: u64, returned: u64) -> Call<KvOp, KvRet> {
        call(KvOp::Version, KvRet::Version(seen), invoked, returned)
    }
    /// `compare_and_put(expected, value)` returning `ret`.
    fn cas(
        expected: Option<u64>,
        value: u64,
        ret: KvRet,
        invoked: u64,
        returned: u64,
    ) -> Call<KvOp, KvRet> {
        call(
            KvOp::CompareAndPut { expected, value },
            ret,
            invoked,
            returned,
        )
    }
    /// `compare_and_remove(expected)` returning `ret`.
    fn car(expected: u64, ret: KvRet, invoked: u64, returned: u64) -> Call<KvOp, KvRet> {
        call(KvOp::CompareAndRemove { expected }, ret, invoked, returned)
    }
    fn ok(h: &[Call<KvOp, KvRet>]) -> bool {
        check::<Register>(RegisterState::default(), h).is_ok()
    }

    #[test]
    fn accepts_a_sequential_history() {
        let h = [
            get(None, 0, 1),
            remove(false, 2, 3),
            put(7, 100, 4, 5),
            get(Some(7), 6, 7),
            remove(true, 8, 9),
            get(None, 10, 11),
            put(8, 200, 12, 13),
            get(Some(8), 14, 15),
        ];
        assert_eq!(
            check::<Register>(RegisterState::default(), &h).unwrap(),
            (0..8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn rejects_a_stale_read_after_a_completed_write() {
        let h = [put(1, 100, 0, 1), put(2, 200, 2, 3), get(Some(1), 4, 5)];
        let v = check::<Register>(RegisterState::default(), &h).unwrap_err();
        assert_eq!(v.longest_prefix, vec![0, 1]);
        assert_eq!(v.stuck_at, vec![2]);
    }

    #[test]
    fn a_read_overlapping_a_write_may_see_either_value() {
        assert!(ok(&[
            put(1, 100, 0, 1),
            put(2, 200, 2, 5),
            get(Some(1), 3, 4)
        ]));
        assert!(ok(&[
            put(1, 100, 0, 1),
            put(2, 200, 2, 5),
            get(Some(2), 3, 4)
        ]));
        // ...but once a read has seen the new value, a later read cannot see the old one.
        assert!(!ok(&[
            put(1, 100, 0, 1),
            put(2, 200, 2, 9),
            get(Some(2), 3, 4),
            get(Some(1), 5, 6),
        ]));
    }

    #[test]
    fn rejects_values_never_written_and_reads_before_any_write() {
        assert!(!ok(&[put(1, 100, 0, 1), get(Some(3), 2, 3)]));
        assert!(!ok(&[get(Some(1), 0, 1), put(1, 100, 2, 3)]));
        assert!(!ok(&[put(1, 100, 0, 1), get(None, 2, 3)]));
    }

    #[test]
    fn remove_reports_existence_exactly_once() {
        assert!(!ok(&[remove(true, 0, 1)]));
        assert!(!ok(&[
            put(1, 100, 0, 1),
            remove(true, 2, 3),
            remove(true, 4, 5)
        ]));
        // Overlapping removes of one value: exactly one may say it existed.
        assert!(ok(&[
            put(1, 100, 0, 1),
            remove(true, 2, 5),
            remove(false, 3, 4)
        ]));
        assert!(ok(&[
            put(1, 100, 0, 1),
            remove(false, 2, 5),
            remove(true, 3, 4)
        ]));
        assert!(!ok(&[
            put(1, 100, 0, 1),
            remove(true, 2, 5),
            remove(true, 3, 4)
        ]));
        assert!(!ok(&[
            put(1, 100, 0, 1),
            remove(false, 2, 5),
            remove(false, 3, 4)
        ]));
        // A remove overlapping the put may miss it.
        assert!(ok(&[
            put(1, 100, 0, 3),
            remove(false, 1, 2),
            get(Some(1), 4, 5)
        ]));
    }

    #[test]
    fn puts_take_effect_in_version_order() {
        // put(1) spans both reads. As a plain register this is linearizable
        // (put 2, read 2, put 1, read 1), but put(1) has the lower version, so it cannot take
        // effect after put(2): seglog keeps the highest version.
        let h = |v1| {
            [
                put(1, v1, 0, 10),
                put(2, 200, 1, 2),
                get(Some(2), 3, 4),
                get(Some(1), 5, 6),
            ]
        };
        assert!(!ok(&h(100)));
        assert!(ok(&h(300)));
    }

    #[test]
    fn checks_each_key_on_its_own() {
        let kv = |key: &str, c| KvCall {
            key: key.to_owned(),
            call: c,
        };
        let good = vec![
            kv("a", put(1, 100, 0, 3)),
            kv("b", put(2, 200, 1, 2)),
            kv("a", get(Some(1), 4, 5)),
            kv("b", get(Some(2), 4, 5)),
        ];
        assert_eq!(check_kv(&good).unwrap(), 4);
        let mut bad = good.clone();
        bad.push(kv("b", get(Some(1), 6, 7)));
        let (key, _) = check_kv(&bad).unwrap_err();
        assert_eq!(key, "b");
    }

    #[test]
    fn accepts_a_sequential_history_of_conditional_writes() {
        use KvRet::{Mismatch, Ok as Done};
        let h = [
            cas(Some(5), 1, Mismatch(None), 0, 1),
            car(5, Mismatch(None), 2, 3),
            cas(None, 1, Done(Some(100)), 4, 5),
            version(Some(100), 6, 7),
            cas(None, 2, Mismatch(Some(100)), 8, 9),
            cas(Some(100), 2, Done(Some(200)), 10, 11),
            get(Some(2), 12, 13),
            car(100, Mismatch(Some(200)), 14, 15),
            put(3, 300, 16, 17),
            version(Some(300), 18, 19),
            car(300, Done(None), 20, 21),
            version(None, 22, 23),
            get(None, 24, 25),
            cas(None, 4, Done(Some(400)), 26, 27),
            get(Some(4), 28, 29),
        ];
        assert_eq!(
            check::<Register>(RegisterState::default(), &h).unwrap(),
            (0..h.len()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn versions_are_values() {
        use KvRet::{Mismatch, Ok as Done};
        // `version` must report the version the put returned, not any other.
        assert!(ok(&[put(1, 100, 0, 1), version(Some(100), 2, 3)]));
        assert!(!ok(&[put(1, 100, 0, 1), version(Some(99), 2, 3)]));
        assert!(!ok(&[put(1, 100, 0, 1), version(None, 2, 3)]));
        assert!(!ok(&[version(Some(100), 0, 1), put(1, 100, 2, 3)]));
        // A mismatch reports the version it found, exactly.
        assert!(!ok(&[
            put(1, 100, 0, 1),
            cas(Some(7), 2, Mismatch(Some(101)), 2, 3)
        ]));
        assert!(!ok(&[
            put(1, 100, 0, 1),
            cas(Some(7), 2, Mismatch(None), 2, 3)
        ]));
        assert!(!ok(&[put(1, 100, 0, 1), car(7, Mismatch(None), 2, 3)]));
        // A mismatch that reports the version it was told to expect is no mismatch.
        assert!(!ok(&[
            put(1, 100, 0, 1),
            cas(Some(100), 2, Mismatch(Some(100)), 2, 3)
        ]));
        assert!(!ok(&[car(100, Mismatch(Some(100)), 0, 1)]));
        assert!(!ok(&[cas(None, 2, Mismatch(None), 0, 1)]));
        // A success whose expectation did not hold.
        assert!(!ok(&[
            put(1, 100, 0, 1),
            cas(Some(99), 2, Done(Some(200)), 2, 3)
        ]));
        assert!(!ok(&[
            put(1, 100, 0, 1),
            cas(None, 2, Done(Some(200)), 2, 3)
        ]));
        assert!(!ok(&[cas(Some(100), 2, Done(Some(200)), 0, 1)]));
        assert!(!ok(&[put(1, 100, 0, 1), car(99, Done(None), 2, 3)]));
        assert!(!ok(&[car(100, Done(None), 0, 1)]));
        // The new version is the key's version from then on, and puts stay in version order.
        assert!(ok(&[
            put(1, 100, 0, 1),
            cas(Some(100), 2, Done(Some(200)), 2, 3),
            cas(Some(200), 3, Done(Some(300)), 4, 5),
        ]));
        assert!(!ok(&[
            put(1, 100, 0, 1),
            cas(Some(100), 2, Done(Some(200)), 2, 3),
            cas(Some(100), 3, Done(Some(300)), 4, 5),
        ]));
        assert!(!ok(&[
            put(1, 100, 0, 1),
            cas(Some(100), 2, Done(Some(50)), 2, 3)
        ]));
        // The forms must fit the operation: compare_and_put returns a version, remove none.
        assert!(!ok(&[cas(None, 2, Done(None), 0, 1)]));
        assert!(!ok(&[put(1, 100, 0, 1), car(100, Done(Some(200)), 2, 3)]));
        assert!(!ok(&[
            put(1, 100, 0, 1),
            call(KvOp::Get, KvRet::Version(Some(100)), 2, 3)
        ]));
    }

    #[test]
    fn two_comparisons_expecting_one_version_cannot_both_win() {
        use KvRet::{Mismatch, Ok as Done};
        let both = |second| {
            [
                put(1, 100, 0, 1),
                cas(Some(100), 2, Done(Some(200)), 2, 5),
                second,
            ]
        };
        assert!(!ok(&both(cas(Some(100), 3, Done(Some(300)), 3, 4))));
        assert!(!ok(&both(car(100, Done(None), 3, 4))));
        // The loser reports the winner's version, or (before the winner) no mismatch at all.
        assert!(ok(&both(cas(Some(100), 3, Mismatch(Some(200)), 3, 4))));
        assert!(ok(&both(car(100, Mismatch(Some(200)), 3, 4))));
        assert!(!ok(&both(cas(Some(100), 3, Mismatch(Some(100)), 3, 4))));
        // A removal that won makes the key absent for the loser.
        assert!(ok(&[
            put(1, 100, 0, 1),
            car(100, Done(None), 2, 5),
            cas(Some(100), 3, Mismatch(None), 3, 4),
        ]));
    }

    #[test]
    fn a_plain_put_below_a_conditional_put_takes_effect_before_it() {
        use KvRet::Ok as Done;
        // put(2) got version 150 but overlaps a comparison against 100 that got 200. In version
        // order put(2) goes first, and then the comparison could not have found 100: the
        // history is linearizable only if the put's version is above the comparison's (then
        // it goes after, and a read after both sees it).
        let h = |v2, last_read| {
            [
                put(1, 100, 0, 1),
                put(2, v2, 2, 7),
                cas(Some(100), 3, Done(Some(200)), 3, 6),
                get(Some(last_read), 8, 9),
            ]
        };
        assert!(!ok(&h(150, 3)));
        assert!(!ok(&h(150, 2)));
        assert!(ok(&h(250, 2)));
        assert!(!ok(&h(250, 3)));
    }

    /// Brute force: some order of all calls respects real time and the specification.
    fn brute_force(h: &[Call<KvOp, KvRet>]) -> bool {
        fn go(h: &[Call<KvOp, KvRet>], used: &mut Vec<bool>, state: RegisterState) -> bool {
            if used.iter().all(|&u| u) {
                return true;
            }
            for i in 0..h.len() {
                if used[i] {
                    continue;
                }
                // `i` may go next only if no unused call returned before it was invoked.
                let blocked =
                    (0..h.len()).any(|j| !used[j] && j != i && h[j].returned < h[i].invoked);
                if blocked {
                    continue;
                }
                if let Some(next) = Register::apply(&state, &h[i].op, &h[i].ret) {
                    used[i] = true;
                    if go(h, used, next) {
                        return true;
                    }
                    used[i] = false;
                }
            }
            false
        }
        go(h, &mut vec![false; h.len()], RegisterState::default())
    }

    fn random_history(rng: &mut SplitMix64, len: usize) -> Vec<Call<KvOp, KvRet>> {
        (0..len)
            .map(|_| {
                let invoked = rng.range(0, 20);
                let returned = invoked + rng.range(1, 8);
                let op = match rng.range(0, 2) {
                    0 => KvOp::Put {
                        value: rng.range(1, 2),
                        version: rng.range(1, 4) * 100,
                    },
                    1 => KvOp::Get,
                    _ => KvOp::Remove,
                };
                let ret = match op {
                    KvOp::Put { .. } => KvRet::Put,
                    KvOp::Get => KvRet::Get([None, Some(1), Some(2)][rng.range(0, 2) as usize]),
                    KvOp::Remove => KvRet::Remove(rng.range(0, 1) == 1),
                    _ => unreachable!(),
                };
                call(op, ret, invoked, returned)
            })
            .collect()
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let mut rng = SplitMix64::new(17);
        let (mut accepted, mut rejected) = (0, 0);
        for _ in 0..20_000 {
            let len = rng.range(1, 6) as usize;
            let h = random_history(&mut rng, len);
            let expected = brute_force(&h);
            assert_eq!(
                ok(&h),
                expected,
                "checker disagrees with brute force on {h:#?}"
            );
            if expected {
                accepted += 1
            } else {
                rejected += 1
            }
        }
        // Both verdicts are well represented, so the agreement means something.
        assert!(
            accepted > 2_000 && rejected > 2_000,
            "{accepted} accepted, {rejected} rejected"
        );
    }

    /// Like [`random_history`], with `version`, `compare_and_put` and `compare_and_remove`
    /// calls whose expectations and results are drawn from the same few versions.
    fn random_conditional_history(rng: &mut SplitMix64, len: usize) -> Vec<Call<KvOp, KvRet>> {
        let some_version =
            |rng: &mut SplitMix64| [None, Some(100), Some(200)][rng.range(0, 2) as usize];
        (0..len)
            .map(|_| {
                let invoked = rng.range(0, 20);
                let returned = invoked + rng.range(1, 8);
                let (op, ret) = match rng.range(0, 5) {
                    0 => (
                        KvOp::Put {
                            value: rng.range(1, 2),
                            version: rng.range(1, 3) * 100,
                        },
                        KvRet::Put,
                    ),
                    1 => (
                        KvOp::Get,
                        KvRet::Get([None, Some(1), Some(2)][rng.range(0, 2) as usize]),
                    ),
                    2 => (KvOp::Version, KvRet::Version(some_version(rng))),
                    3 => (KvOp::Remove, KvRet::Remove(rng.range(0, 1) == 1)),
                    4 => {
                        let op = KvOp::CompareAndPut {
                            expected: some_version(rng),
                            value: rng.range(1, 2),
                        };
                        if rng.range(0, 1) == 0 {
                            (op, KvRet::Ok(Some(rng.range(1, 3) * 100)))
                        } else {
                            (op, KvRet::Mismatch(some_version(rng)))
                        }
                    }
                    _ => {
                        let op = KvOp::CompareAndRemove {
                            expected: rng.range(1, 2) * 100,
                        };
                        if rng.range(0, 1) == 0 {
                            (op, KvRet::Ok(None))
                        } else {
                            (op, KvRet::Mismatch(some_version(rng)))
                        }
                    }
                };
                call(op, ret, invoked, returned)
            })
            .collect()
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_conditional_histories() {
        let mut rng = SplitMix64::new(23);
        let (mut accepted, mut rejected) = (0, 0);
        for _ in 0..20_000 {
            let len = rng.range(1, 6) as usize;
            let h = random_conditional_history(&mut rng, len);
            let expected = brute_force(&h);
            assert_eq!(
                ok(&h),
                expected,
                "checker disagrees with brute force on {h:#?}"
            );
            if expected {
                accepted += 1
            } else {
                rejected += 1
            }
        }
        assert!(
            accepted > 2_000 && rejected > 2_000,
            "{accepted} accepted, {rejected} rejected"
        );
    }

    /// A long, heavily overlapping history of every operation, made from a sequential run as
    /// [`widened_history`] makes one: conditional writes expect the current version half the
    /// time (and succeed) and a stale one otherwise (and fail).
    fn widened_conditional_history(rng: &mut SplitMix64, len: u64) -> Vec<Call<KvOp, KvRet>> {
        let mut state = RegisterState::default();
        let mut stale = None;
        (0..len)
            .map(|i| {
                let at = 100 + i * 10;
                let expected = if rng.range(0, 1) == 0 {
                    state.version()
                } else {
                    stale
                };
                let (op, ret) = match rng.range(0, 5) {
                    0 => (
                        KvOp::Put {
                            value: rng.range(1, 3),
                            version: 1_000 + i,
                        },
                        KvRet::Put,
                    ),
                    1 => (KvOp::Get, KvRet::Get(state.value())),
                    2 => (KvOp::Version, KvRet::Version(state.version())),
                    3 => {
                        let op = KvOp::CompareAndPut {
                            expected,
                            value: rng.range(1, 3),
                        };
                        if expected == state.version() {
                            (op, KvRet::Ok(Some(1_000 + i)))
                        } else {
                            (op, KvRet::Mismatch(state.version()))
                        }
                    }
                    4 => {
                        let expected = expected.unwrap_or(1);
                        let op = KvOp::CompareAndRemove { expected };
                        if Some(expected) == state.version() {
                            (op, KvRet::Ok(None))
                        } else {
                            (op, KvRet::Mismatch(state.version()))
                        }
                    }
                    _ => (KvOp::Remove, KvRet::Remove(state.value().is_some())),
                };
                if state.version().is_some() {
                    stale = state.version();
                }
                state = Register::apply(&state, &op, &ret).unwrap();
                call(op, ret, at - rng.range(1, 50), at + rng.range(1, 50))
            })
            .collect()
    }

    #[test]
    fn memoization_keeps_long_overlapping_conditional_histories_tractable() {
        let mut rng = SplitMix64::new(9);
        let mut h = widened_conditional_history(&mut rng, 2_000);
        let order = check::<Register>(RegisterState::default(), &h).unwrap();
        assert_eq!(order.len(), h.len());
        // One failed comparison near the end now claims a success.
        let last_mismatch = h
            .iter()
            .rposition(|c| {
                matches!(
                    (c.op, c.ret),
                    (KvOp::CompareAndPut { .. }, KvRet::Mismatch(_))
                )
            })
            .unwrap();
        h[last_mismatch].ret = KvRet::Ok(Some(1_000_000));
        assert!(!ok(&h));
    }

    /// A long, heavily overlapping history made from a sequential run: each call's interval is
    /// widened around its linearization point, so it overlaps ~10 neighbours.
    fn widened_history(rng: &mut SplitMix64, len: u64) -> Vec<Call<KvOp, KvRet>> {
        let mut state = RegisterState::default();
        (0..len)
            .map(|i| {
                let at = 100 + i * 10;
                let op = match rng.range(0, 3) {
                    0 | 1 => KvOp::Put {
                        value: rng.range(1, 3),
                        version: 1_000 + i,
                    },
                    2 => KvOp::Get,
                    _ => KvOp::Remove,
                };
                let ret = match op {
                    KvOp::Put { .. } => KvRet::Put,
                    KvOp::Get => KvRet::Get(state.value()),
                    KvOp::Remove => KvRet::Remove(state.value().is_some()),
                    _ => unreachable!(),
                };
                state = Register::apply(&state, &op, &ret).unwrap();
                call(op, ret, at - rng.range(1, 50), at + rng.range(1, 50))
            })
            .collect()
    }

    #[test]
    fn memoization_keeps_long_overlapping_histories_tractable() {
        let mut rng = SplitMix64::new(5);
        let mut h = widened_history(&mut rng, 2_000);
        let order = check::<Register>(RegisterState::default(), &h).unwrap();
        assert_eq!(order.len(), h.len());
        // Corrupt one read near the end: it now returns a value that was never written.
        let last_get = h.iter().rposition(|c| c.op == KvOp::Get).unwrap();
        h[last_get].ret = KvRet::Get(Some(99));
        assert!(!ok(&h));
    }
}
