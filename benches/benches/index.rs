//! The index alone: seglog's key → position path beside concurrent maps from key to `u64`.
//!
//! seglog's index is not public, so its subject is the narrowest public path through it: a
//! `Log::in_memory` (heap segments, so no page cache or TLB effects of file mappings) whose
//! records have empty values. An insert appends a 56-byte record (header and key) and installs
//! its position; a get probes the index and resolves the key in the log (seglog's index stores no
//! keys, so every hit compares the key in the record) and returns the record's position. The maps
//! hold `Box<[u8]>` keys and `u64` positions, with foldhash where they take a hasher.
//!
//! Ids: `index/{workload}/{subject}/{threads}t` with workloads `insert` (fresh keys into an
//! empty index every sample), `get` (uniform over the loaded keys) and `mixed` (90 % gets, 10 %
//! overwrites). Keys: `SEGLOG_BENCH_KEYS`, default 1,000,000 (2,000 under `cargo test --benches`).

mod harness;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use harness::Harness;
use seglog::{Log, Options};
use seglog_benches::workload::{PUT_ONE_IN, Rng, key, run_threads};

type Hasher = foldhash::fast::RandomState;

/// Key → position, as each subject does it.
trait PositionIndex: Sync {
    fn insert(&self, key: &[u8], position: u64);
    fn get(&self, key: &[u8]) -> Option<u64>;
}

struct Seglog(Log);

impl PositionIndex for Seglog {
    fn insert(&self, key: &[u8], _position: u64) {
        self.0.put(key, &[]).expect("seglog put");
    }

    fn get(&self, key: &[u8]) -> Option<u64> {
        self.0.pin().get_record(key).map(|r| r.position)
    }
}

struct Papaya(papaya::HashMap<Box<[u8]>, u64, Hasher>);

impl PositionIndex for Papaya {
    fn insert(&self, key: &[u8], position: u64) {
        self.0.pin().insert(key.into(), position);
    }

    fn get(&self, key: &[u8]) -> Option<u64> {
        self.0.pin().get(key).copied()
    }
}

struct SccIndex(scc::HashIndex<Box<[u8]>, u64, Hasher>);

impl PositionIndex for SccIndex {
    fn insert(&self, key: &[u8], position: u64) {
        match self.0.entry_sync(key.into()) {
            scc::hash_index::Entry::Occupied(mut entry) => entry.update(position),
            scc::hash_index::Entry::Vacant(entry) => {
                entry.insert_entry(position);
            }
        }
    }

    fn get(&self, key: &[u8]) -> Option<u64> {
        self.0.peek_with(key, |_, v| *v)
    }
}

struct Dash(dashmap::DashMap<Box<[u8]>, u64, Hasher>);

impl PositionIndex for Dash {
    fn insert(&self, key: &[u8], position: u64) {
        self.0.insert(key.into(), position);
    }

    fn get(&self, key: &[u8]) -> Option<u64> {
        self.0.get(key).map(|v| *v)
    }
}

struct SkipList(crossbeam_skiplist::SkipMap<Box<[u8]>, u64>);

impl PositionIndex for SkipList {
    fn insert(&self, key: &[u8], position: u64) {
        self.0.insert(key.into(), position);
    }

    fn get(&self, key: &[u8]) -> Option<u64> {
        self.0.get(key).map(|e| *e.value())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Seglog,
    Papaya,
    SccHashIndex,
    DashMap,
    SkipList,
}

impl Subject {
    const ALL: [Subject; 5] = [
        Subject::Seglog,
        Subject::Papaya,
        Subject::SccHashIndex,
        Subject::DashMap,
        Subject::SkipList,
    ];

    fn label(self) -> &'static str {
        match self {
            Subject::Seglog => "seglog-in-memory",
            Subject::Papaya => "papaya",
            Subject::SccHashIndex => "scc-hashindex",
            Subject::DashMap => "dashmap",
            Subject::SkipList => "skiplist",
        }
    }

    fn build(self) -> Box<dyn PositionIndex> {
        match self {
            Subject::Seglog => Box::new(Seglog(
                Log::in_memory(Options::default()).expect("in-memory log"),
            )),
            Subject::Papaya => Box::new(Papaya(papaya::HashMap::with_hasher(Hasher::default()))),
            Subject::SccHashIndex => {
                Box::new(SccIndex(scc::HashIndex::with_hasher(Hasher::default())))
            }
            Subject::DashMap => Box::new(Dash(dashmap::DashMap::with_hasher(Hasher::default()))),
            Subject::SkipList => Box::new(SkipList(crossbeam_skiplist::SkipMap::new())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Insert,
    Get,
    Mixed,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Get => "get",
            Op::Mixed => "mixed",
        }
    }
}

/// Runs `ops` operations; inserts use fresh ids from `next_id`. Panics if a loaded key is missing.
fn timed(
    index: &dyn PositionIndex,
    op: Op,
    loaded: u64,
    threads: usize,
    ops: u64,
    next_id: &AtomicU64,
) -> Duration {
    let base = if op == Op::Insert {
        next_id.fetch_add(ops, Ordering::Relaxed)
    } else {
        0
    };
    let misses = AtomicU64::new(0);
    let elapsed = run_threads(threads, ops, |thread, range| {
        let mut rng = Rng::new(ops ^ ((thread as u64) << 40) ^ range.start);
        let mut local_misses = 0u64;
        for i in range {
            match op {
                Op::Insert => index.insert(&key(base + i), base + i),
                Op::Get => {
                    let id = rng.below(loaded);
                    local_misses += u64::from(black_box(index.get(&key(id))).is_none());
                }
                Op::Mixed => {
                    let id = rng.below(loaded);
                    if rng.below(PUT_ONE_IN) == 0 {
                        index.insert(&key(id), id + i);
                    } else {
                        local_misses += u64::from(black_box(index.get(&key(id))).is_none());
                    }
                }
            }
        }
        misses.fetch_add(local_misses, Ordering::Relaxed);
    });
    assert_eq!(misses.into_inner(), 0, "a loaded key was missing");
    elapsed
}

fn bench_id(op: Op, subject: Subject, threads: usize) -> String {
    format!("index/{}/{}/{threads}t", op.label(), subject.label())
}

fn main() {
    let harness = Harness::from_args();
    let mut c: Criterion = harness.criterion();
    let keys = harness.keys();
    const THREADS: [usize; 2] = [1, 2];

    let mut group = c.benchmark_group("index/insert");
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    for subject in Subject::ALL {
        for threads in THREADS {
            let id = BenchmarkId::new(subject.label(), format!("{threads}t"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let index = subject.build();
                    let next_id = AtomicU64::new(0);
                    timed(index.as_ref(), Op::Insert, 0, threads, iters, &next_id)
                });
            });
        }
    }
    group.finish();

    for subject in Subject::ALL {
        let wanted = [Op::Get, Op::Mixed].iter().any(|&op| {
            THREADS
                .iter()
                .any(|&t| harness.wants(&bench_id(op, subject, t)))
        });
        let index = wanted.then(|| {
            let index = subject.build();
            let next_id = AtomicU64::new(0);
            timed(index.as_ref(), Op::Insert, 0, 2, keys, &next_id);
            index
        });
        for op in [Op::Get, Op::Mixed] {
            let mut group = c.benchmark_group(format!("index/{}", op.label()));
            group.throughput(Throughput::Elements(1));
            group.sampling_mode(SamplingMode::Flat);
            for threads in THREADS {
                let id = BenchmarkId::new(subject.label(), format!("{threads}t"));
                group.bench_function(id, |b| {
                    let index = index
                        .as_ref()
                        .expect("loaded whenever one of its benches runs");
                    let next_id = AtomicU64::new(keys);
                    b.iter_custom(|iters| {
                        timed(index.as_ref(), op, keys, threads, iters, &next_id)
                    });
                });
            }
            group.finish();
        }
    }
    c.final_summary();
}
