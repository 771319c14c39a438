//! Scenarios for the index: a single-threaded model check, and concurrent writers, readers and
//! scans across many resizes. Every scenario starts from a 4-slot table so resizes are frequent.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Barrier;
use std::thread;

use proptest::prelude::*;

use super::{Index, IndexOptions, IndexStats, IndexedRecord, Previous, RecordSource, Upserted};
use crate::address::Address;
use crate::splitmix::SplitMix64 as Rng;
use crate::sync::epoch::{self, Guard};
use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// A log stand-in: records built before any thread starts; the record at index `i` lives at
/// address `(i + 1) * 8`.
#[derive(Default)]
struct Arena {
    records: Vec<Record>,
    /// Yield the thread on every few `resolve`s. Resolving happens between an entry's load and
    /// the CAS that depends on it, so this widens exactly the windows that races need on a
    /// machine with few cores.
    yield_in_resolve: bool,
    /// Let migrations forget every tombstone (`RecordSource::may_forget`): safe where no older
    /// record of a key is installed after a newer one (each key written by one thread, in
    /// version order).
    forget_tombstones: bool,
    /// Tombstones forgotten, as the log would count them.
    forgotten: AtomicUsize,
}

#[derive(Clone, Debug)]
struct Record {
    key: Vec<u8>,
    version: u64,
    live: bool,
}

impl Arena {
    fn push(&mut self, key: &[u8], version: u64, live: bool) -> Address {
        self.records.push(Record {
            key: key.to_vec(),
            version,
            live,
        });
        Address::new(self.records.len() as u64 * 8)
    }

    fn record(&self, address: Address) -> &Record {
        &self.records[(address.get() / 8 - 1) as usize]
    }
}

/// A record as the arena hands it to the index.
#[derive(Clone, Copy, Debug)]
struct Resolved<'g> {
    key: &'g [u8],
    version: u64,
    live: bool,
    address: Address,
}

impl<'g> IndexedRecord<'g> for Resolved<'g> {
    fn key(&self) -> &'g [u8] {
        self.key
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn bytes(&self) -> u32 {
        record_bytes(self.key)
    }

    fn position(&self) -> u64 {
        self.address.get()
    }
}

/// The length the arena reports for a record of `key`: something the index must hand back
/// unchanged in `Previous::bytes`.
fn record_bytes(key: &[u8]) -> u32 {
    40 + key.len() as u32
}

impl RecordSource for Arena {
    type Record<'g> = Resolved<'g>;

    fn resolve<'g>(&'g self, address: Address, _guard: &'g Guard) -> Resolved<'g> {
        thread_local!(static RESOLVES: Cell<u32> = const { Cell::new(0) });
        if self.yield_in_resolve
            && RESOLVES
                .replace(RESOLVES.get().wrapping_add(1))
                .is_multiple_of(4)
        {
            thread::yield_now();
        }
        let record = self.record(address);
        Resolved {
            key: &record.key,
            version: record.version,
            live: record.live,
            address,
        }
    }

    fn may_forget(&self, record: &Resolved<'_>) -> bool {
        self.forget_tombstones && !record.live
    }

    fn forgot(&self, _record: &Resolved<'_>, _guard: &Guard) {
        // Relaxed: a count read after the threads are joined.
        self.forgotten.fetch_add(1, Ordering::Relaxed);
    }
}

fn tiny(seed: u64) -> Index {
    Index::new(IndexOptions {
        initial_capacity: 4,
        load_factor: 0.75,
        seed,
    })
}

/// Keys reported by `for_each_key`, with how often each was reported.
fn reported_keys(index: &Index, arena: &Arena, guard: &Guard) -> HashMap<Vec<u8>, usize> {
    let mut seen = HashMap::new();
    index.for_each_key(arena, guard, |address| {
        *seen.entry(arena.record(address).key.clone()).or_insert(0) += 1;
    });
    seen
}

/// Decrements a count of running threads when dropped, so a thread that panics still releases
/// the threads that loop until the count reaches zero (and the test fails instead of hanging).
struct DecrementOnDrop<'a>(&'a AtomicUsize);

impl Drop for DecrementOnDrop<'_> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire loads of the loops that wait for the writers.
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// Whether more than one table is reachable (a migration is in flight).
fn migrating(stats: &IndexStats) -> bool {
    stats.memory_bytes > stats.capacity * 8 + size_of::<super::Table>()
}

// --- 1. Single-threaded model check -----------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Upsert {
        key: u8,
        version: u64,
        live: bool,
    },
    /// Relocate the key's current record to a copy at a new (higher) address.
    Relocate {
        key: u8,
    },
    /// Relocate from an address that is not the key's current one: must fail.
    RelocateStale {
        key: u8,
    },
}

const MODEL_KEYS: u8 = 48;

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..MODEL_KEYS, 0..64u64, any::<bool>())
            .prop_map(|(key, version, live)| Op::Upsert { key, version, live }),
        1 => (0..MODEL_KEYS).prop_map(|key| Op::Relocate { key }),
        1 => (0..MODEL_KEYS).prop_map(|key| Op::RelocateStale { key }),
    ]
}

fn model_key(key: u8) -> Vec<u8> {
    // Varying lengths, including a shared prefix, so key comparison is exercised.
    format!("key-{}", "k".repeat(key as usize % 5) + &key.to_string()).into_bytes()
}

/// The model's state: key → (version, address, live) of its current record.
type Model = BTreeMap<u8, (u64, Address, bool)>;

/// What the model expects of one operation.
#[derive(Debug)]
enum Planned {
    Upsert {
        key: u8,
        address: Address,
        version: u64,
        live: bool,
        expect: Upserted,
    },
    Replace {
        key: u8,
        old: Address,
        new: Address,
        expect: bool,
    },
}

/// Runs the ops through a `BTreeMap` model (key → (version, address, live)) and builds the arena.
fn plan(ops: &[Op]) -> (Arena, Vec<Planned>, Vec<Model>) {
    let mut arena = Arena::default();
    let mut model = Model::new();
    let mut planned = Vec::new();
    let mut states = Vec::new();
    for op in ops {
        match *op {
            Op::Upsert { key, version, live } => {
                let address = arena.push(&model_key(key), version, live);
                let expect = match model.get(&key) {
                    Some(&(v, a, l)) if (v, a) >= (version, address) => Upserted::Superseded {
                        current: a,
                        live: l,
                    },
                    previous => {
                        let replaced = previous.map(|&(_, a, l)| Previous {
                            address: a,
                            live: l,
                            bytes: record_bytes(&model_key(key)),
                            position: a.get(),
                        });
                        model.insert(key, (version, address, live));
                        Upserted::Installed { replaced }
                    }
                };
                planned.push(Planned::Upsert {
                    key,
                    address,
                    version,
                    live,
                    expect,
                });
            }
            Op::Relocate { key } => match model.get(&key).copied() {
                Some((version, old, live)) => {
                    let new = arena.push(&model_key(key), version, live);
                    model.insert(key, (version, new, live));
                    planned.push(Planned::Replace {
                        key,
                        old,
                        new,
                        expect: true,
                    });
                }
                None => {
                    let new = arena.push(&model_key(key), 0, true);
                    planned.push(Planned::Replace {
                        key,
                        old: Address::new(8),
                        new,
                        expect: false,
                    });
                }
            },
            Op::RelocateStale { key } => {
                let (version, current, live) = match model.get(&key) {
                    Some(&(version, current, live)) => (version, Some(current), live),
                    None => (0, None, true),
                };
                let new = arena.push(&model_key(key), version, live);
                // Any address but the current one; it need not even belong to the key.
                let (first, second) = (Address::new(8), Address::new(16));
                let stale = if current == Some(first) {
                    second
                } else {
                    first
                };
                planned.push(Planned::Replace {
                    key,
                    old: stale,
                    new,
                    expect: false,
                });
            }
        }
        states.push(model.clone());
    }
    (arena, planned, states)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn index_matches_btreemap_model(
        ops in prop::collection::vec(op_strategy(), 1..400),
        seed in any::<u64>(),
        load_factor in 0.25f64..=0.95,
    ) {
        let (arena, planned, states) = plan(&ops);
        let index = Index::new(IndexOptions { initial_capacity: 4, load_factor, seed });
        let guard = &epoch::pin();
        for (step, (op, model)) in planned.iter().zip(&states).enumerate() {
            match *op {
                Planned::Upsert { key, address, version, live, expect } => {
                    let got = index.upsert(&model_key(key), address, version, live, &arena, guard);
                    prop_assert_eq!(got, expect, "step {}: {:?}", step, op);
                }
                Planned::Replace { key, old, new, expect } => {
                    let got = index.replace_exact(&model_key(key), old, new, &arena, guard);
                    prop_assert_eq!(got, expect, "step {}: {:?}", step, op);
                }
            }
            for key in 0..MODEL_KEYS {
                let expected = model.get(&key).map(|&(_, address, _)| address);
                prop_assert_eq!(
                    index.get(&model_key(key), &arena, guard), expected, "step {} key {}", step, key
                );
            }
            let live = model.values().filter(|&&(_, _, live)| live).count();
            prop_assert_eq!(index.len(), live, "step {}", step);
        }
        let final_model = states.last().unwrap();
        let seen = reported_keys(&index, &arena, guard);
        prop_assert_eq!(seen.len(), final_model.len());
        for key in final_model.keys() {
            prop_assert_eq!(seen.get(&model_key(*key)).copied(), Some(1));
        }
        let stats = index.stats();
        prop_assert_eq!(stats.live_keys, index.len());
        prop_assert!(stats.occupied <= stats.capacity);
    }
}

#[test]
fn upsert_of_equal_version_and_address_is_superseded() {
    let mut arena = Arena::default();
    let address = arena.push(b"k", 3, true);
    let index = tiny(0);
    let guard = &epoch::pin();
    assert_eq!(
        index.upsert(b"k", address, 3, true, &arena, guard),
        Upserted::Installed { replaced: None }
    );
    assert_eq!(
        index.upsert(b"k", address, 3, true, &arena, guard),
        Upserted::Superseded {
            current: address,
            live: true
        }
    );
    assert_eq!(index.len(), 1);
    assert_eq!(index.get(b"other", &arena, guard), None);
}

#[test]
fn index_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Index>();
}

// --- 2. Disjoint keys from many threads -------------------------------------------------------

#[test]
fn concurrent_disjoint_keys_resolve_to_highest_version() {
    const THREADS: usize = 8;
    const KEYS: usize = 20_000;
    // Per thread and key: (key, v1 address, v2 address). v2 is a tombstone for every 5th key;
    // odd keys get v2 before v1, so v1 must come back Superseded.
    let mut arena = Arena::default();
    let mut plans = Vec::new();
    for t in 0..THREADS {
        let mut keys = Vec::with_capacity(KEYS);
        for i in 0..KEYS {
            let key = format!("t{t}/k{i}").into_bytes();
            let v1 = arena.push(&key, 1, true);
            let v2 = arena.push(&key, 2, i % 5 != 0);
            keys.push((key, v1, v2));
        }
        plans.push(keys);
    }
    arena.yield_in_resolve = true;
    let index = tiny(7);
    let barrier = Barrier::new(THREADS);
    thread::scope(|scope| {
        for keys in &plans {
            let (index, arena, barrier) = (&index, &arena, &barrier);
            scope.spawn(move || {
                barrier.wait();
                for (i, (key, v1, v2)) in keys.iter().enumerate() {
                    let guard = &epoch::pin();
                    if i % 2 == 0 {
                        let first = index.upsert(key, *v1, 1, true, arena, guard);
                        assert_eq!(first, Upserted::Installed { replaced: None });
                        let second = index.upsert(key, *v2, 2, i % 5 != 0, arena, guard);
                        let replaced = Some(Previous {
                            address: *v1,
                            live: true,
                            bytes: record_bytes(key),
                            position: v1.get(),
                        });
                        assert_eq!(second, Upserted::Installed { replaced });
                    } else {
                        let first = index.upsert(key, *v2, 2, i % 5 != 0, arena, guard);
                        assert_eq!(first, Upserted::Installed { replaced: None });
                        let second = index.upsert(key, *v1, 1, true, arena, guard);
                        let current = Upserted::Superseded {
                            current: *v2,
                            live: i % 5 != 0,
                        };
                        assert_eq!(second, current);
                    }
                }
            });
        }
    });
    let guard = &epoch::pin();
    for keys in &plans {
        for (key, _, v2) in keys {
            assert_eq!(
                index.get(key, &arena, guard),
                Some(*v2),
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }
    assert_eq!(index.len(), THREADS * (KEYS - KEYS / 5));
    let stats = index.stats();
    assert!(stats.resizes >= 10, "only {} resizes", stats.resizes);
    assert_eq!(stats.live_keys, THREADS * (KEYS - KEYS / 5));
    let seen = reported_keys(&index, &arena, guard);
    assert_eq!(seen.len(), THREADS * KEYS);
    assert!(seen.values().all(|&count| count == 1));
}

// --- 3. Shared keys: racing puts, tombstones, first inserts and relocations --------------------

#[test]
fn concurrent_shared_keys_converge_to_max_version() {
    // The races this checks are narrow on a small machine: repeat with different hash seeds.
    for seed in 0..12 {
        shared_keys_scenario(seed);
    }
}

/// One upsert a writer thread will make: (round, key id, version, live, address).
type Planned3 = (u64, usize, u64, bool, Address);

fn shared_keys_scenario(seed: u64) {
    const THREADS: u64 = 8;
    const ROUNDS: u64 = 150;
    const HOT: usize = 16;
    const FRESH_PER_ROUND: usize = 30;

    // Keys: 16 hot keys that every thread updates every round, and per round 30 fresh keys that
    // every thread inserts (so first inserts of one key race each other during resizes).
    let mut keys: Vec<Vec<u8>> = (0..HOT).map(|k| format!("hot-{k}").into_bytes()).collect();
    let mut arena = Arena::default();
    let mut rng = Rng(42 + seed);
    let mut plans: Vec<Vec<Planned3>> = vec![Vec::new(); THREADS as usize];
    for round in 0..ROUNDS {
        let fresh: Vec<usize> = (0..FRESH_PER_ROUND)
            .map(|f| {
                keys.push(format!("fresh-{round}-{f}").into_bytes());
                keys.len() - 1
            })
            .collect();
        for t in 0..THREADS {
            let plan = &mut plans[t as usize];
            for (k, key) in keys[..HOT].iter().enumerate() {
                // Versions of different threads interleave: round * 8 + thread.
                let version = round * THREADS + t;
                let live = rng.below(3) != 0;
                plan.push((round, k, version, live, arena.push(key, version, live)));
            }
            for &k in &fresh {
                let live = rng.below(4) != 0;
                plan.push((round, k, t, live, arena.push(&keys[k], t, live)));
            }
        }
    }
    // A relocation twin for every hot record: same key, version and liveness, higher address.
    let mut twin = HashMap::new();
    for &(_, k, version, live, address) in plans.iter().flatten() {
        if k < HOT {
            twin.insert(address, arena.push(&keys[k], version, live));
        }
    }

    arena.yield_in_resolve = true;
    let index = tiny(seed);
    let barrier = Barrier::new(THREADS as usize + 1);
    let writers_left = AtomicUsize::new(THREADS as usize);
    let (results, relocated) = thread::scope(|scope| {
        let mut handles = Vec::new();
        for plan in &plans {
            let (index, arena, barrier, keys) = (&index, &arena, &barrier, &keys);
            let writers_left = &writers_left;
            handles.push(scope.spawn(move || {
                let _done = DecrementOnDrop(writers_left);
                let mut results = Vec::with_capacity(plan.len());
                barrier.wait();
                for &(_, k, version, live, address) in plan {
                    let guard = &epoch::pin();
                    let got = index.upsert(&keys[k], address, version, live, arena, guard);
                    results.push((k, got));
                }
                results
            }));
        }
        // The compactor: relocates whatever is current for a hot key to its twin, racing the
        // writers' upserts.
        let compactor = {
            let (index, arena, barrier, twin, keys) = (&index, &arena, &barrier, &twin, &keys);
            let writers_left = &writers_left;
            scope.spawn(move || {
                let mut relocated = Vec::new();
                barrier.wait();
                while writers_left.load(Ordering::Acquire) > 0 {
                    for key in &keys[..HOT] {
                        let guard = &epoch::pin();
                        let Some(current) = index.get(key, arena, guard) else {
                            continue;
                        };
                        let Some(&to) = twin.get(&current) else {
                            continue;
                        };
                        if index.replace_exact(key, current, to, arena, guard) {
                            relocated.push((current, to));
                        }
                    }
                }
                relocated
            })
        };
        let results: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        (results, compactor.join().unwrap())
    });

    let guard = &epoch::pin();
    let relocated_to: HashMap<Address, Address> = relocated.iter().copied().collect();
    let mut best: HashMap<usize, Planned3> = HashMap::new();
    for &planned in plans.iter().flatten() {
        let entry = best.entry(planned.1).or_insert(planned);
        if (planned.2, planned.4) > (entry.2, entry.4) {
            *entry = planned;
        }
    }
    let mut expected_live = 0;
    for (k, key) in keys.iter().enumerate() {
        let (_, _, _, live, address) = best[&k];
        let expected = relocated_to.get(&address).copied().unwrap_or(address);
        assert_eq!(
            index.get(key, &arena, guard),
            Some(expected),
            "seed {seed} key {k}"
        );
        expected_live += usize::from(live);
    }
    assert_eq!(index.len(), expected_live, "seed {seed}");
    let stats = index.stats();
    assert!(stats.resizes >= 10, "only {} resizes", stats.resizes);

    // Each key's installs form one chain: exactly one install found the key absent, and every
    // entry (an install or a relocation target) was replaced at most once, with its liveness.
    let mut absent_installs = vec![0; keys.len()];
    let mut replaced = HashSet::new();
    for &(k, got) in &results {
        match got {
            Upserted::Installed { replaced: None } => absent_installs[k] += 1,
            Upserted::Installed {
                replaced: Some(previous),
            } => {
                assert!(
                    replaced.insert(previous.address),
                    "{:?} replaced twice",
                    previous.address
                );
                assert_eq!(arena.record(previous.address).key, keys[k]);
                assert_eq!(previous.live, arena.record(previous.address).live);
                assert_eq!(previous.bytes, record_bytes(&keys[k]));
            }
            Upserted::Superseded { current, .. } => assert_eq!(arena.record(current).key, keys[k]),
        }
    }
    for (from, _) in &relocated {
        assert!(
            replaced.insert(*from),
            "relocated {from:?} was also replaced"
        );
    }
    for (k, count) in absent_installs.iter().enumerate() {
        assert_eq!(
            *count, 1,
            "seed {seed} key {k}: {count} installs found it absent"
        );
    }
}

// --- 4. Readers during resizes never go back in time ------------------------------------------

#[test]
fn concurrent_get_never_returns_older_than_installed_before() {
    const WRITERS: usize = 4;
    const READERS: usize = 4;
    const KEYS_PER_WRITER: usize = 64;
    const VERSIONS: u64 = 40;
    const FILLERS_PER_ROUND: usize = 250;
    let key_of = |w: usize, i: usize| format!("w{w}-tracked-{i}").into_bytes();

    let mut arena = Arena::default();
    // [writer][version - 1][key] → address
    let mut addresses =
        vec![vec![vec![Address::new(8); KEYS_PER_WRITER]; VERSIONS as usize]; WRITERS];
    let mut fillers = vec![Vec::new(); WRITERS];
    for (w, (addresses, fillers)) in addresses.iter_mut().zip(&mut fillers).enumerate() {
        for version in 1..=VERSIONS {
            for (i, address) in addresses[version as usize - 1].iter_mut().enumerate() {
                let live = !(version + i as u64).is_multiple_of(4);
                *address = arena.push(&key_of(w, i), version, live);
            }
            for f in 0..FILLERS_PER_ROUND {
                fillers.push(arena.push(format!("w{w}-v{version}-f{f}").as_bytes(), 1, true));
            }
        }
    }
    // Version published per tracked key, after its upsert returned.
    let published: Vec<AtomicU64> = (0..WRITERS * KEYS_PER_WRITER)
        .map(|_| AtomicU64::new(0))
        .collect();
    arena.yield_in_resolve = true;
    let index = tiny(3);
    let barrier = Barrier::new(WRITERS + READERS);
    let writers_left = AtomicUsize::new(WRITERS);
    let checks = AtomicUsize::new(0);
    thread::scope(|scope| {
        for w in 0..WRITERS {
            let (index, arena, barrier, published) = (&index, &arena, &barrier, &published);
            let (addresses, fillers, writers_left) = (&addresses[w], &fillers[w], &writers_left);
            scope.spawn(move || {
                let _done = DecrementOnDrop(writers_left);
                barrier.wait();
                let mut fillers = fillers.iter();
                for (version, addresses) in (1..).zip(addresses) {
                    for (i, &address) in addresses.iter().enumerate() {
                        let guard = &epoch::pin();
                        let live = arena.record(address).live;
                        let got = index.upsert(&key_of(w, i), address, version, live, arena, guard);
                        assert!(matches!(got, Upserted::Installed { .. }));
                        // Release: pairs with the reader's Acquire, so "installed before the get
                        // started" is a happens-before fact.
                        published[w * KEYS_PER_WRITER + i].store(version, Ordering::Release);
                    }
                    for &address in fillers.by_ref().take(FILLERS_PER_ROUND) {
                        let key = arena.record(address).key.clone();
                        index.upsert(&key, address, 1, true, arena, &epoch::pin());
                    }
                }
            });
        }
        for r in 0..READERS {
            let (index, arena, barrier, published) = (&index, &arena, &barrier, &published);
            let (writers_left, checks) = (&writers_left, &checks);
            scope.spawn(move || {
                let mut rng = Rng(r as u64 + 1000);
                let mut last_seen = vec![0u64; WRITERS * KEYS_PER_WRITER];
                let mut local_checks = 0;
                barrier.wait();
                while writers_left.load(Ordering::Acquire) > 0 {
                    let slot = rng.below((WRITERS * KEYS_PER_WRITER) as u64) as usize;
                    let (w, i) = (slot / KEYS_PER_WRITER, slot % KEYS_PER_WRITER);
                    let installed = published[slot].load(Ordering::Acquire);
                    let guard = &epoch::pin();
                    let got = index.get(&key_of(w, i), arena, guard);
                    let version = got.map_or(0, |address| {
                        let record = arena.record(address);
                        assert_eq!(
                            record.key,
                            key_of(w, i),
                            "get returned another key's record"
                        );
                        record.version
                    });
                    assert!(
                        version >= installed,
                        "key {w}/{i}: got v{version} after v{installed}"
                    );
                    assert!(version >= last_seen[slot], "key {w}/{i} went back in time");
                    last_seen[slot] = version;
                    local_checks += 1;
                }
                checks.fetch_add(local_checks, Ordering::Relaxed);
            });
        }
    });
    assert!(checks.load(Ordering::Relaxed) > 0);
    assert!(index.stats().resizes >= 10);
    let guard = &epoch::pin();
    for (w, addresses) in addresses.iter().enumerate() {
        let newest = addresses.last().unwrap();
        for (i, &address) in newest.iter().enumerate() {
            assert_eq!(index.get(&key_of(w, i), &arena, guard), Some(address));
        }
    }
}

// --- 5. for_each_key ---------------------------------------------------------------------------

#[test]
fn for_each_key_reports_each_key_once_when_quiescent() {
    let mut arena = Arena::default();
    let mut rng = Rng(5);
    let plan: Vec<_> = (0..6_000)
        .map(|i| {
            let key = format!("q{}", rng.below(3_000)).into_bytes();
            let address = arena.push(&key, i, rng.below(4) != 0);
            (key, address, i)
        })
        .collect();
    let index = tiny(11);
    let mut present = HashSet::new();
    let mut scanned_mid_migration = false;
    for (n, (key, address, version)) in plan.iter().enumerate() {
        let guard = &epoch::pin();
        let live = arena.record(*address).live;
        index.upsert(key, *address, *version, live, &arena, guard);
        present.insert(key.clone());
        if n % 37 == 0 || n == plan.len() - 1 {
            scanned_mid_migration |= migrating(&index.stats());
            let seen = reported_keys(&index, &arena, guard);
            assert_eq!(seen.len(), present.len(), "after {n} upserts");
            assert!(
                seen.iter()
                    .all(|(key, &count)| count == 1 && present.contains(key))
            );
        }
    }
    assert!(
        scanned_mid_migration,
        "no scan ran while two tables were reachable"
    );
}

#[test]
fn for_each_key_reports_present_keys_once_during_inserts() {
    const ROUNDS: usize = 6;
    const WRITERS: usize = 4;
    const FRESH_PER_WRITER: usize = 500;
    const KEYS: usize = 60_000;
    let mut arena = Arena::default();
    for i in 0..KEYS {
        arena.push(format!("k{i}").as_bytes(), 1, i % 3 != 0);
    }
    let mut addresses = (1..=KEYS as u64).map(|i| Address::new(i * 8));
    let index = tiny(17);
    let upsert = |index: &Index, arena: &Arena, address: Address| {
        let record = arena.record(address);
        index.upsert(&record.key, address, 1, record.live, arena, &epoch::pin())
    };
    let mut present = HashSet::new();
    let (mut scans, mut scans_mid_migration) = (0, 0);
    for _ in 0..ROUNDS {
        // Grow single-threaded until a resize has just started, so the scans below begin with
        // two tables in the chain.
        for address in addresses.by_ref() {
            upsert(&index, &arena, address);
            present.insert(arena.record(address).key.clone());
            if migrating(&index.stats()) {
                break;
            }
        }
        assert!(
            migrating(&index.stats()),
            "ran out of keys before a resize started"
        );
        scans_mid_migration += 1;
        let batches: Vec<Vec<Address>> = (0..WRITERS)
            .map(|_| addresses.by_ref().take(FRESH_PER_WRITER).collect())
            .collect();
        let writers_left = AtomicUsize::new(WRITERS);
        let barrier = Barrier::new(WRITERS + 1);
        thread::scope(|scope| {
            for batch in &batches {
                let (index, arena, barrier, writers_left) =
                    (&index, &arena, &barrier, &writers_left);
                scope.spawn(move || {
                    let _done = DecrementOnDrop(writers_left);
                    barrier.wait();
                    for (i, &address) in batch.iter().enumerate() {
                        upsert(index, arena, address);
                        if i % 16 == 0 {
                            // Let the scanner overlap many inserts.
                            thread::yield_now();
                        }
                    }
                });
            }
            // The first scan starts with two tables in the chain and lets the writers go once
            // it is under way; later scans run until the writers are done.
            let mut release_writers = Some(&barrier);
            loop {
                let running = writers_left.load(Ordering::Acquire) > 0;
                let guard = &epoch::pin();
                let mut seen = HashMap::new();
                index.for_each_key(&arena, guard, |address| {
                    if let Some(barrier) = release_writers.take() {
                        barrier.wait();
                    }
                    *seen.entry(arena.record(address).key.clone()).or_insert(0) += 1;
                });
                for key in &present {
                    assert_eq!(
                        seen.get(key),
                        Some(&1),
                        "present key {:?}",
                        String::from_utf8_lossy(key)
                    );
                }
                assert!(
                    seen.values().all(|&count| count == 1),
                    "a key was reported twice"
                );
                scans += 1;
                if !running {
                    break;
                }
            }
        });
        for batch in &batches {
            present.extend(
                batch
                    .iter()
                    .map(|&address| arena.record(address).key.clone()),
            );
        }
    }
    println!("for_each_key: {scans} scans, {scans_mid_migration} started mid-migration");
    let seen = reported_keys(&index, &arena, &epoch::pin());
    assert_eq!(seen.len(), present.len());
}

// --- Memory ------------------------------------------------------------------------------------

#[test]
fn memory_per_key_at_one_million_keys() {
    const KEYS: u64 = 1_000_000;
    let mut arena = Arena::default();
    for i in 0..KEYS {
        arena.push(&i.to_le_bytes(), 1, true);
    }
    let index = Index::new(IndexOptions {
        seed: 1,
        ..IndexOptions::default()
    });
    let guard = &epoch::pin();
    let mut worst = 0.0f64;
    for i in 0..KEYS {
        let address = Address::new((i + 1) * 8);
        index.upsert(&i.to_le_bytes(), address, 1, true, &arena, guard);
        let stats = index.stats();
        if i >= 10_000 && !migrating(&stats) {
            // One table, 1.5 times the one that filled to 0.75: at most 8 / 0.5 bytes per key,
            // plus the table's header spread over the keys.
            let per_key = stats.memory_bytes as f64 / stats.live_keys as f64;
            let header = size_of::<super::Table>() as f64 / stats.live_keys as f64;
            assert!(
                per_key <= 16.0 + header,
                "{per_key} bytes per key at {} keys: {stats:?}",
                stats.live_keys
            );
            worst = worst.max(per_key);
        }
    }
    let stats = index.stats();
    assert_eq!(stats.live_keys, KEYS as usize);
    let per_key = stats.memory_bytes as f64 / stats.live_keys as f64;
    println!(
        "index at {KEYS} keys: {stats:?}, {per_key:.2} bytes/key, worst {worst:.2} past 10k keys"
    );
    assert!(per_key <= 16.0 + 0.01, "{per_key} bytes per key");
}

// --- Forgetting tombstones and rebuilding in place ---------------------------------------------

fn sized(capacity: usize) -> Index {
    Index::new(IndexOptions {
        initial_capacity: capacity,
        load_factor: 0.75,
        seed: 7,
    })
}

/// A 1024-slot index whose keys are mostly removed rebuilds at its own size, forgetting every
/// tombstone, instead of growing: the live keys read their values, the removed ones are absent,
/// `len` is exact and the table never grew.
#[test]
fn removed_keys_are_forgotten_and_the_table_rebuilt_in_place() {
    let mut arena = Arena {
        forget_tombstones: true,
        ..Arena::default()
    };
    // Rounds of 500 fresh keys, each put and then removed but for one in ten: without
    // forgetting, 5,000 keys would need a table of 8,000 slots.
    let mut writes = Vec::new();
    let mut version = 0;
    for round in 0..10u64 {
        for i in 0..500u64 {
            let key = format!("r{round}-k{i}").into_bytes();
            version += 1;
            writes.push((key.clone(), arena.push(&key, version, true), version, true));
            if i % 10 != 0 {
                version += 1;
                writes.push((
                    key.clone(),
                    arena.push(&key, version, false),
                    version,
                    false,
                ));
            }
        }
    }
    let index = sized(1024);
    let guard = epoch::pin();
    for (key, address, version, live) in &writes {
        let upserted = index.upsert(key, *address, *version, *live, &arena, &guard);
        assert!(
            matches!(upserted, Upserted::Installed { .. }),
            "{upserted:?}"
        );
    }
    index.settle(&arena, &guard);
    let stats = index.stats();
    assert_eq!(
        stats.capacity, 1024,
        "rebuilt in place, never grown: {stats:?}"
    );
    assert!(stats.resizes > 0, "{stats:?}");
    assert!(arena.forgotten.load(Ordering::Relaxed) > 3_000, "{stats:?}");
    assert_eq!(index.len(), 500);
    for round in 0..10u64 {
        for i in 0..500u64 {
            let key = format!("r{round}-k{i}").into_bytes();
            let got = index
                .get(&key, &arena, &guard)
                .map(|address| arena.record(address).clone());
            if i % 10 == 0 {
                let record = got.expect("a live key is found");
                assert!(record.live && record.key == key);
            } else {
                assert!(
                    got.is_none_or(|record| !record.live),
                    "removed key {key:?} is back"
                );
            }
        }
    }
    // Every key the index still reports is reported once.
    let seen = reported_keys(&index, &arena, &guard);
    assert!(seen.values().all(|&n| n == 1));
}

/// Two threads, each on keys of its own (so no older record of a key is ever installed after
/// a newer one, and forgetting any tombstone is safe), put, remove and re-put keys through many
/// rebuilds in place of a 1024-slot table and its growth; readers race them. Afterwards every
/// key reads its last write, `len` is exact, and no table ever filled (a copy finding no room
/// would panic).
#[test]
fn concurrent_writers_through_rebuilds_in_place_lose_nothing() {
    const THREADS: u64 = 2;
    const KEYS: u64 = 900;
    const OPS: u64 = 40_000;
    let mut arena = Arena {
        forget_tombstones: true,
        yield_in_resolve: true,
        ..Arena::default()
    };
    // Per thread, the planned writes and the final state of each key.
    let mut plans = Vec::new();
    let mut finals = Vec::new();
    let mut version = 0;
    for t in 0..THREADS {
        let mut rng = Rng(40 + t);
        let mut plan = Vec::new();
        let mut last: HashMap<Vec<u8>, bool> = HashMap::new();
        for _ in 0..OPS {
            let key = format!("t{t}-k{}", rng.below(KEYS)).into_bytes();
            let live = rng.below(3) != 0;
            version += 1;
            plan.push((key.clone(), arena.push(&key, version, live), version, live));
            last.insert(key, live);
        }
        plans.push(plan);
        finals.push(last);
    }
    let index = sized(1024);
    let barrier = Barrier::new(THREADS as usize + 1);
    let running = AtomicUsize::new(THREADS as usize);
    thread::scope(|scope| {
        for plan in &plans {
            let (index, arena, barrier, running) = (&index, &arena, &barrier, &running);
            scope.spawn(move || {
                let _done = DecrementOnDrop(running);
                barrier.wait();
                for (key, address, version, live) in plan {
                    let guard = epoch::pin();
                    index.upsert(key, *address, *version, *live, arena, &guard);
                }
            });
        }
        let (index, arena, running, barrier) = (&index, &arena, &running, &barrier);
        scope.spawn(move || {
            barrier.wait();
            // Acquire: pairs with the Release in `DecrementOnDrop`.
            while running.load(Ordering::Acquire) > 0 {
                let guard = epoch::pin();
                for i in (0..KEYS).step_by(37) {
                    if let Some(address) = index.get(format!("t0-k{i}").as_bytes(), arena, &guard) {
                        assert_eq!(arena.record(address).key, format!("t0-k{i}").into_bytes());
                    }
                }
            }
        });
    });
    let guard = epoch::pin();
    index.settle(&arena, &guard);
    let mut live = 0;
    for last in &finals {
        for (key, &was_live) in last {
            let got = index
                .get(key, &arena, &guard)
                .map(|a| arena.record(a).clone());
            if was_live {
                live += 1;
                let record = got.expect("a key whose last write was a put is found");
                assert!(record.live && &record.key == key);
            } else {
                assert!(got.is_none_or(|r| !r.live), "{key:?} was removed last");
            }
        }
    }
    assert_eq!(index.len(), live);
    let stats = index.stats();
    assert!(arena.forgotten.load(Ordering::Relaxed) > 0, "{stats:?}");
    // 1,800 keys at most, about two thirds live: the table stays as small as they need (the
    // 1,200 live keys fill at most 60 % of a table that was rebuilt rather than grown).
    assert!(stats.capacity <= 4096, "{stats:?}");
}
