//! Write batches and conditional writes (issue 16): seglog's `write_batch` and
//! `compare_and_put` beside fjall's `WriteBatch` and sled's `apply_batch` and
//! `compare_and_swap`, in one run.
//!
//! Every write is a small put: a 16-byte key (`mem-` and twelve digits) and a 128-byte value
//! stamped with its key id. Throughput is in keys per second (`Throughput::Elements`).
//!
//! - `batch/{n}/{subject}/{how}`, `n` = 1, 16, 256, `how` = `batched` (one batch of `n` puts
//!   per iteration: build it, write it) or `one-by-one` (the same `n` puts, each on its own).
//!   Fresh keys into a store that starts empty for every sample (built and dropped outside the
//!   timed region), one thread. Building the batch is timed: every subject's batch copies its
//!   keys and values, as a user's would.
//! - `conditional/uncontended/{subject}/{op}`, `op` = `put` or `compare_and_put` (sled:
//!   `insert`, `compare_and_swap`): one thread overwrites keys chosen uniformly from
//!   `SEGLOG_BENCH_KEYS` loaded keys (default 1,000,000), each comparison against the right
//!   expected value, which the bench keeps per key (seglog: the version the last write
//!   returned; sled compares values, so the bench rebuilds the value last written).
//! - `conditional/contended-2t/{subject}/{op}`: two threads write the same single key. A
//!   `compare_and_put` reads the current version (sled: value), compares against it and, on a
//!   mismatch, tries again against the one the failure reports, until it wins; an iteration is
//!   one write that won. The retries are printed at the end.
//!
//! Durability is the same class for all: nothing waits for the disk (seglog `SyncPolicy::Never`,
//! fjall's default journal written to the OS buffers, sled with its periodic flush and buffer
//! write-through off; see `peers/`). Under `cargo test --benches` every benchmark runs once on
//! 2,000 loaded keys.

mod harness;
mod peers;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use harness::Harness;
use seglog::{Batch, Error, Log};
use seglog_benches::store::SeglogStore;
use seglog_benches::workload::{Rng, ValueSize, key, run_threads, stamp, stamped_id, value_buffer};

/// The batch sizes compared.
const BATCH_SIZES: [u64; 3] = [1, 16, 256];
/// Every value is a small one.
const SIZE: ValueSize = ValueSize::B128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Seglog,
    Fjall,
    Sled,
}

impl Subject {
    fn label(self) -> &'static str {
        match self {
            Subject::Seglog => "seglog",
            Subject::Fjall => "fjall",
            Subject::Sled => "sled",
        }
    }
}

/// One store of any subject.
enum Store {
    Seglog(SeglogStore),
    Fjall(peers::Fjall),
    Sled(peers::Sled),
}

impl Store {
    fn new(subject: Subject) -> Self {
        match subject {
            Subject::Seglog => Store::Seglog(SeglogStore::file_backed()),
            Subject::Fjall => Store::Fjall(peers::Fjall::new()),
            Subject::Sled => Store::Sled(peers::Sled::new()),
        }
    }

    fn put(&self, key: &[u8], value: &[u8]) {
        match self {
            Store::Seglog(s) => {
                s.log().put(key, value).expect("seglog put");
            }
            Store::Fjall(f) => f.keyspace().insert(key, value).expect("fjall insert"),
            Store::Sled(s) => {
                s.tree().insert(key, value).expect("sled insert");
            }
        }
    }

    /// Writes the puts of ids `ids` as one batch, built here.
    fn put_batch(&self, ids: std::ops::Range<u64>, value: &mut [u8]) {
        match self {
            Store::Seglog(s) => {
                let mut batch = Batch::new();
                for id in ids {
                    stamp(value, id, 0);
                    batch.put(&key(id), value);
                }
                s.log().write_batch(&batch).expect("seglog write_batch");
            }
            Store::Fjall(f) => {
                let mut batch = f.batch();
                for id in ids {
                    stamp(value, id, 0);
                    batch.insert(f.keyspace(), &key(id)[..], &value[..]);
                }
                batch.commit().expect("fjall batch commit");
            }
            Store::Sled(s) => {
                let mut batch = sled::Batch::default();
                for id in ids {
                    stamp(value, id, 0);
                    batch.insert(&key(id)[..], &value[..]);
                }
                s.tree().apply_batch(batch).expect("sled apply_batch");
            }
        }
    }

    /// The key id stamped in `key`'s value, if it has one.
    fn stamped(&self, key: &[u8]) -> Option<u64> {
        match self {
            Store::Seglog(s) => s.log().get_with(key, stamped_id).flatten(),
            Store::Fjall(f) => stamped_id(&f.keyspace().get(key).expect("fjall get")?),
            Store::Sled(s) => stamped_id(&s.tree().get(key).expect("sled get")?),
        }
    }
}

/// `n` puts per iteration of fresh keys into an empty store, batched or one by one.
fn batch_benches(c: &mut Criterion) {
    for n in BATCH_SIZES {
        let mut group = c.benchmark_group(format!("batch/{n}"));
        group.throughput(Throughput::Elements(n));
        group.sampling_mode(SamplingMode::Flat);
        for subject in [Subject::Seglog, Subject::Fjall, Subject::Sled] {
            for batched in [true, false] {
                let how = if batched { "batched" } else { "one-by-one" };
                group.bench_function(BenchmarkId::new(subject.label(), how), |b| {
                    b.iter_custom(|iters| {
                        let store = Store::new(subject);
                        let mut value = value_buffer(SIZE);
                        let keys = iters * n;
                        let start = Instant::now();
                        for first in (0..keys).step_by(n as usize) {
                            if batched {
                                store.put_batch(first..first + n, &mut value);
                            } else {
                                for id in first..first + n {
                                    stamp(&mut value, id, 0);
                                    store.put(&key(id), &value);
                                }
                            }
                        }
                        let elapsed = start.elapsed();
                        for id in [0, keys - 1] {
                            assert_eq!(store.stamped(&key(id)), Some(id), "{how} put lost");
                        }
                        drop(store);
                        elapsed
                    });
                });
            }
        }
        group.finish();
    }
}

/// What the conditional benches keep per loaded key: seglog's current versions, or the round
/// stamped in sled's current values (so the bench can rebuild the value to compare against).
struct Loaded {
    store: Store,
    current: Vec<u64>,
}

impl Loaded {
    fn new(subject: Subject, keys: u64) -> Self {
        let started = Instant::now();
        let store = Store::new(subject);
        let mut value = value_buffer(SIZE);
        let current = (0..keys)
            .map(|id| {
                stamp(&mut value, id, 0);
                match &store {
                    Store::Seglog(s) => s.log().put(&key(id), &value).expect("seglog put"),
                    _ => {
                        store.put(&key(id), &value);
                        0
                    }
                }
            })
            .collect();
        eprintln!(
            "loaded {keys} keys of {} into {} in {:.1?}",
            SIZE.label(),
            subject.label(),
            started.elapsed()
        );
        Self { store, current }
    }

    /// One overwrite of `id`, plain or conditional, keeping `current` up to date.
    fn overwrite(&mut self, id: u64, conditional: bool, value: &mut [u8], old: &mut [u8]) {
        let k = key(id);
        let current = &mut self.current[id as usize];
        match &self.store {
            Store::Seglog(s) => {
                stamp(value, id, *current);
                *current = if conditional {
                    s.log()
                        .compare_and_put(&k, Some(*current), value)
                        .expect("an uncontended compare_and_put wins")
                } else {
                    s.log().put(&k, value).expect("seglog put")
                };
            }
            Store::Sled(s) => {
                stamp(value, id, *current + 1);
                if conditional {
                    stamp(old, id, *current);
                    s.tree()
                        .compare_and_swap(k, Some(&old[..]), Some(&value[..]))
                        .expect("sled compare_and_swap")
                        .expect("an uncontended compare_and_swap wins");
                } else {
                    s.tree().insert(&k[..], &value[..]).expect("sled insert");
                }
                *current += 1;
            }
            Store::Fjall(_) => unreachable!("fjall has no compare-and-put here"),
        }
    }
}

/// One write to `k` from one of two racing threads; returns how many comparisons it lost.
fn contended_write(store: &Store, k: &[u8], conditional: bool, value: &[u8]) -> u64 {
    if !conditional {
        store.put(k, value);
        return 0;
    }
    let mut lost = 0;
    match store {
        Store::Seglog(s) => {
            let log: &Log = s.log();
            let mut expected = log.version(k);
            loop {
                match log.compare_and_put(k, expected, value) {
                    Ok(version) => {
                        black_box(version);
                        return lost;
                    }
                    Err(Error::VersionMismatch { current }) => {
                        expected = current;
                        lost += 1;
                    }
                    Err(e) => panic!("seglog compare_and_put: {e}"),
                }
            }
        }
        Store::Sled(s) => {
            let mut expected = s.tree().get(k).expect("sled get");
            loop {
                match s
                    .tree()
                    .compare_and_swap(k, expected.as_ref(), Some(value))
                    .expect("sled compare_and_swap")
                {
                    Ok(()) => return lost,
                    Err(failed) => {
                        expected = failed.current;
                        lost += 1;
                    }
                }
            }
        }
        Store::Fjall(_) => unreachable!("fjall has no compare-and-put here"),
    }
}

fn conditional_id(variant: &str, subject: Subject, op: &str) -> String {
    format!("conditional/{variant}/{}/{op}", subject.label())
}

fn op_label(subject: Subject, conditional: bool) -> &'static str {
    match (subject, conditional) {
        (Subject::Sled, false) => "insert",
        (Subject::Sled, true) => "compare_and_swap",
        (_, false) => "put",
        (_, true) => "compare_and_put",
    }
}

/// Plain and conditional overwrites, uncontended on loaded keys and contended on one key.
fn conditional_benches(c: &mut Criterion, harness: &Harness, keys: u64) {
    let mut lost_comparisons = Vec::new();
    for subject in [Subject::Seglog, Subject::Sled] {
        let wanted = ["uncontended", "contended-2t"].iter().any(|variant| {
            [false, true].iter().any(|&cond| {
                harness.wants(&conditional_id(variant, subject, op_label(subject, cond)))
            })
        });
        if !wanted {
            continue;
        }
        let mut loaded = Loaded::new(subject, keys);

        let mut group = c.benchmark_group("conditional/uncontended");
        group.throughput(Throughput::Elements(1));
        group.sampling_mode(SamplingMode::Flat);
        for conditional in [false, true] {
            let id = BenchmarkId::new(subject.label(), op_label(subject, conditional));
            group.bench_function(id, |b| {
                let mut value = value_buffer(SIZE);
                let mut old = value_buffer(SIZE);
                b.iter_custom(|iters| {
                    let mut rng = Rng::new(iters);
                    let start = Instant::now();
                    for _ in 0..iters {
                        loaded.overwrite(rng.below(keys), conditional, &mut value, &mut old);
                    }
                    start.elapsed()
                });
            });
        }
        group.finish();

        let mut group = c.benchmark_group("conditional/contended-2t");
        group.throughput(Throughput::Elements(1));
        group.sampling_mode(SamplingMode::Flat);
        for conditional in [false, true] {
            let op = op_label(subject, conditional);
            let lost = AtomicU64::new(0);
            let writes = AtomicU64::new(0);
            group.bench_function(BenchmarkId::new(subject.label(), op), |b| {
                b.iter_custom(|iters| {
                    let elapsed: Duration = run_threads(2, iters, |thread, ops| {
                        let mut value = value_buffer(SIZE);
                        let k = key(0);
                        let mut local_lost = 0;
                        for op in ops.clone() {
                            stamp(&mut value, 0, (op << 1) | thread as u64);
                            local_lost += contended_write(&loaded.store, &k, conditional, &value);
                        }
                        lost.fetch_add(local_lost, Ordering::Relaxed);
                        writes.fetch_add(ops.end - ops.start, Ordering::Relaxed);
                    });
                    assert_eq!(
                        loaded.store.stamped(&key(0)),
                        Some(0),
                        "the hot key was lost"
                    );
                    elapsed
                });
            });
            if conditional {
                lost_comparisons.push((subject, op, lost.into_inner(), writes.into_inner()));
            }
        }
        group.finish();
    }
    for (subject, op, lost, writes) in lost_comparisons {
        eprintln!(
            "contended-2t {} {op}: {lost} comparisons lost over {writes} writes ({:.2} per write)",
            subject.label(),
            lost as f64 / writes.max(1) as f64
        );
    }
}

fn main() {
    let harness = Harness::from_args();
    let mut c = harness.criterion();
    batch_benches(&mut c);
    conditional_benches(&mut c, &harness, harness.keys());
    c.final_summary();
}
