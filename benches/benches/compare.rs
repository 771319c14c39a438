//! The main comparison: seglog beside the seed design, the in-memory maps, the embedded stores
//! and the floor, on the same keys and values, in one run.
//!
//! Benchmark ids are `{workload}/{value}/{subject}/{threads}t`, for example
//! `get/16B/seglog/2t`; filter them the usual way (`cargo bench --bench compare -- get/16B`).
//!
//! Subjects: `seglog` (a file-backed `Log` in a temporary directory, default options),
//! `seglog-mem` (`Log::in_memory`: the same code on heap segments, to separate page-cache and
//! file-mapping effects), `seed-design`, `papaya`, `scc`, `dashmap`, `skiplist`, `fjall`, `redb`
//! and `floor` (see `seglog_benches` and `peers/`).
//!
//! - `put`: fresh keys into a store that starts empty for every sample (built and dropped outside
//!   the timed region; the floor, which has no index, reuses one mapping).
//! - `get`: uniformly random keys of the loaded ones.
//! - `mixed`: 90 % gets, 10 % puts overwriting loaded keys, uniformly random.
//! - `hotspot`: 90 % gets, 10 % puts, all on the same ten keys.
//!
//! The last three run on one store per subject and value size, loaded once with
//! `SEGLOG_BENCH_KEYS` keys (default 1,000,000; 2,000 under `cargo test --benches`). Each
//! iteration is one operation; multi-threaded samples start their threads behind a barrier and
//! time from the first start to the last finish (`iter_custom`).

mod harness;
mod peers;

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use harness::Harness;
use seglog_benches::floor::Floor;
use seglog_benches::seed_design::SeedStore;
use seglog_benches::store::{KvStore, SeglogStore};
use seglog_benches::workload::{Run, ValueSize, Workload, preload_reported, timed};

const THREADS: [usize; 2] = [1, 2];
/// Blocks the seed design's fixed map keeps beyond the loaded keys, for the puts of `mixed` and
/// `hotspot` (sparse: only blocks written take memory).
const SEED_HEADROOM_BLOCKS: u64 = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Seglog,
    SeglogInMemory,
    SeedDesign,
    Papaya,
    Scc,
    DashMap,
    SkipList,
    Fjall,
    Redb,
    Floor,
}

impl Subject {
    const ALL: [Subject; 10] = [
        Subject::Seglog,
        Subject::SeglogInMemory,
        Subject::SeedDesign,
        Subject::Papaya,
        Subject::Scc,
        Subject::DashMap,
        Subject::SkipList,
        Subject::Fjall,
        Subject::Redb,
        Subject::Floor,
    ];

    fn label(self) -> &'static str {
        match self {
            Subject::Seglog => "seglog",
            Subject::SeglogInMemory => "seglog-mem",
            Subject::SeedDesign => "seed-design",
            Subject::Papaya => "papaya",
            Subject::Scc => "scc",
            Subject::DashMap => "dashmap",
            Subject::SkipList => "skiplist",
            Subject::Fjall => "fjall",
            Subject::Redb => "redb",
            Subject::Floor => "floor",
        }
    }

    /// A fresh, empty store for `loaded` keys of `size` and `puts` more puts.
    fn build(self, size: ValueSize, loaded: u64, puts: u64) -> Box<dyn KvStore> {
        match self {
            Subject::Seglog => Box::new(SeglogStore::file_backed()),
            Subject::SeglogInMemory => Box::new(SeglogStore::in_memory()),
            Subject::SeedDesign => Box::new(
                SeedStore::new((loaded + puts + 1) as usize).expect("create the seed design"),
            ),
            Subject::Papaya => Box::new(peers::Papaya::new()),
            Subject::Scc => Box::new(peers::Scc::new()),
            Subject::DashMap => Box::new(peers::Dash::new()),
            Subject::SkipList => Box::new(peers::SkipList::new()),
            Subject::Fjall => Box::new(peers::Fjall::new()),
            Subject::Redb => Box::new(peers::Redb::new()),
            Subject::Floor => Box::new(Floor::new(size, loaded).expect("create the floor")),
        }
    }
}

fn bench_id(workload: Workload, size: ValueSize, subject: Subject, threads: usize) -> String {
    format!(
        "{}/{}/{}/{threads}t",
        workload.label(),
        size.label(),
        subject.label()
    )
}

fn throughput(size: ValueSize) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: 1,
        bytes: size.bytes() as u64,
    }
}

fn put_benches(c: &mut Criterion, size: ValueSize) {
    let mut group = c.benchmark_group(format!("put/{}", size.label()));
    group.throughput(throughput(size));
    group.sampling_mode(SamplingMode::Flat);
    for subject in Subject::ALL {
        let mut floor: Option<Box<dyn KvStore>> = None;
        for threads in THREADS {
            let id = BenchmarkId::new(subject.label(), format!("{threads}t"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let fresh_ids = AtomicU64::new(0);
                    let run = Run {
                        workload: Workload::Put,
                        size,
                        loaded: 0,
                        threads,
                        seed: iters,
                        fresh_ids: &fresh_ids,
                    };
                    if subject == Subject::Floor {
                        let store = floor.get_or_insert_with(|| subject.build(size, 0, 0));
                        store.between_runs();
                        timed(store.as_ref(), &run, iters)
                    } else {
                        let store = subject.build(size, 0, iters);
                        let elapsed = timed(store.as_ref(), &run, iters);
                        drop(store);
                        elapsed
                    }
                });
            });
        }
    }
    group.finish();
}

fn loaded_benches(c: &mut Criterion, harness: &Harness, size: ValueSize, keys: u64) {
    const LOADED: [Workload; 3] = [Workload::Get, Workload::Mixed, Workload::HotSpot];
    for subject in Subject::ALL {
        let wanted = LOADED.iter().any(|&w| {
            THREADS
                .iter()
                .any(|&t| harness.wants(&bench_id(w, size, subject, t)))
        });
        let mut store = wanted.then(|| {
            let store = subject.build(size, keys, SEED_HEADROOM_BLOCKS);
            preload_reported(store.as_ref(), subject.label(), keys, size);
            store
        });
        for workload in LOADED {
            let mut group = c.benchmark_group(format!("{}/{}", workload.label(), size.label()));
            group.throughput(throughput(size));
            group.sampling_mode(SamplingMode::Flat);
            for threads in THREADS {
                let id = BenchmarkId::new(subject.label(), format!("{threads}t"));
                group.bench_function(id, |b| {
                    let store = store
                        .as_mut()
                        .expect("a subject is loaded whenever one of its benchmarks runs");
                    let fresh_ids = AtomicU64::new(keys);
                    b.iter_custom(|iters| {
                        store.between_runs();
                        let run = Run {
                            workload,
                            size,
                            loaded: keys,
                            threads,
                            seed: iters,
                            fresh_ids: &fresh_ids,
                        };
                        timed(store.as_ref(), &run, iters)
                    });
                });
            }
            group.finish();
        }
    }
}

fn main() {
    let harness = Harness::from_args();
    let mut c = harness.criterion();
    let keys = harness.keys();
    for size in ValueSize::ALL {
        put_benches(&mut c, size);
        loaded_benches(&mut c, &harness, size, keys);
    }
    c.final_summary();
    let misses = seglog_benches::workload::TOLERATED_MISSES.load(Ordering::Relaxed);
    if misses > 0 {
        eprintln!(
            "crossbeam-skiplist: {misses} gets found no value while their key was being \
             overwritten (its insert removes, then inserts)"
        );
    }
}
