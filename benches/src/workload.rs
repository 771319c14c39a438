//! The workload every subject runs: keys, values, random streams, and the thread runner.
//!
//! Keys are 16 ASCII bytes, `mem-` and twelve decimal digits of the key's id (`mem-000000000042`),
//! so the seed design can keep them as `String`s as it did. Values are 16 B, 128 B, or a 3 KiB
//! embedding record (768 `f32`s); every value carries its key id and a version in its first 16
//! bytes so a wrong value would be visible, and the rest is a fixed pattern.
//!
//! Threads start behind a [`Barrier`] and each one times its own share; a run's duration is from
//! the earliest start to the latest finish, so thread creation is never timed.

use std::hint::black_box;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::store::KvStore;

/// Bytes in every key.
pub const KEY_BYTES: usize = 16;
/// Floats in an embedding (the seed's 768-dimensional vectors).
pub const EMBEDDING_DIMS: usize = 768;
/// Bytes of an embedding record's value.
pub const EMBEDDING_BYTES: usize = EMBEDDING_DIMS * size_of::<f32>();
/// How many keys the hot-spot workload hammers (the seed's ten "hot" memories).
pub const HOT_KEYS: u64 = 10;
/// One operation in this many is a put in the mixed and hot-spot workloads (90/10).
pub const PUT_ONE_IN: u64 = 10;

/// The key of id `id`: `mem-` and twelve decimal digits.
pub fn key(id: u64) -> [u8; KEY_BYTES] {
    let mut key = *b"mem-000000000000";
    let mut rest = id;
    for byte in key[4..].iter_mut().rev() {
        *byte = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    debug_assert_eq!(rest, 0, "key id {id} has more than twelve digits");
    key
}

/// The value sizes the benches compare (every one at least 16 bytes, for the stamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueSize {
    /// 16 bytes: an id-sized value.
    B16,
    /// 128 bytes: a short text.
    B128,
    /// 3 KiB: one 768-float embedding.
    Embedding,
    /// 100 bytes: YCSB's record size in FASTER's evaluation.
    B100,
    /// 1 KiB: YCSB's default record (ten 100-byte fields).
    KiB1,
}

impl ValueSize {
    /// Every size, smallest first.
    pub const ALL: [ValueSize; 3] = [ValueSize::B16, ValueSize::B128, ValueSize::Embedding];
    /// The sizes of the YCSB workloads (`benches/ycsb.rs`).
    pub const YCSB: [ValueSize; 2] = [ValueSize::B100, ValueSize::KiB1];

    /// The value's length in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            ValueSize::B16 => 16,
            ValueSize::B128 => 128,
            ValueSize::Embedding => EMBEDDING_BYTES,
            ValueSize::B100 => 100,
            ValueSize::KiB1 => 1024,
        }
    }

    /// Short label for benchmark ids and tables.
    pub const fn label(self) -> &'static str {
        match self {
            ValueSize::B16 => "16B",
            ValueSize::B128 => "128B",
            ValueSize::Embedding => "3KiB",
            ValueSize::B100 => "100B",
            ValueSize::KiB1 => "1KiB",
        }
    }
}

/// A value buffer of `size`, filled with the fixed pattern; [`stamp`] writes an id into it.
pub fn value_buffer(size: ValueSize) -> Vec<u8> {
    (0..size.bytes()).map(|i| (i % 251) as u8).collect()
}

/// Writes `id` and `version` into the first 16 bytes of `value`: every value names its key.
pub fn stamp(value: &mut [u8], id: u64, version: u64) {
    value[..8].copy_from_slice(&id.to_le_bytes());
    value[8..16].copy_from_slice(&version.to_le_bytes());
}

/// The key id stamped into a value.
pub fn stamped_id(value: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(value.get(..8)?.try_into().ok()?))
}

/// The workloads of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Insert fresh keys into an empty store.
    Put,
    /// Read keys chosen uniformly from the loaded ones.
    Get,
    /// 90 % gets, 10 % puts that overwrite, over all loaded keys.
    Mixed,
    /// 90 % gets, 10 % puts that overwrite, all on the same ten keys.
    HotSpot,
}

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 4] = [
        Workload::Put,
        Workload::Get,
        Workload::Mixed,
        Workload::HotSpot,
    ];

    /// Short label for benchmark ids and tables.
    pub const fn label(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
            Workload::HotSpot => "hotspot",
        }
    }
}

/// A small, fast random stream (xorshift64*), one per thread; good enough to pick keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream from `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> Self {
        // SplitMix64 of the seed, so nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Runs `body(thread, ops)` on `threads` threads that start together behind a barrier; thread
/// `t` gets the `t`-th share of `0..total_ops`. Returns the time from the first start to the last
/// finish. With one thread, runs on the calling thread.
pub fn run_threads<F>(threads: usize, total_ops: u64, body: F) -> Duration
where
    F: Fn(usize, Range<u64>) + Sync,
{
    assert!(threads > 0, "run_threads needs at least one thread");
    let share = |t: usize| {
        let t = t as u64;
        let n = threads as u64;
        (total_ops * t / n)..(total_ops * (t + 1) / n)
    };
    if threads == 1 {
        let start = Instant::now();
        body(0, share(0));
        return start.elapsed();
    }
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, body) = (&barrier, &body);
                let ops = share(t);
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    body(t, ops);
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a benchmark thread panicked"))
            .collect()
    });
    let first = spans.iter().map(|s| s.0).min().expect("threads > 0");
    let last = spans.iter().map(|s| s.1).max().expect("threads > 0");
    last - first
}

/// Loads keys `0..keys` with values of `size` (version 0), on two threads.
pub fn preload<S: KvStore + ?Sized>(store: &S, keys: u64, size: ValueSize) {
    run_threads(2, keys, |_, ids| store.load_range(ids, size));
}

/// [`preload`]s `store` and says on stderr how long it took (`subject` names it).
pub fn preload_reported<S: KvStore + ?Sized>(store: &S, subject: &str, keys: u64, size: ValueSize) {
    let started = Instant::now();
    preload(store, keys, size);
    eprintln!(
        "loaded {keys} keys of {} into {subject} in {:.1?}",
        size.label(),
        started.elapsed()
    );
}

/// Gets that found nothing while their key was being overwritten, in stores whose overwrites
/// are not atomic (see [`KvStore::overwrites_atomically`]); reported by the benches.
pub static TOLERATED_MISSES: AtomicU64 = AtomicU64::new(0);

/// What a timed run of a workload needs besides the store.
#[derive(Debug)]
pub struct Run<'a> {
    /// The workload.
    pub workload: Workload,
    /// The value size.
    pub size: ValueSize,
    /// Keys loaded before the run (ids `0..loaded`); puts of [`Workload::Put`] use fresh ids
    /// from `fresh_ids`.
    pub loaded: u64,
    /// Threads.
    pub threads: usize,
    /// Seed of the random streams (each thread derives its own).
    pub seed: u64,
    /// The next unused key id, for [`Workload::Put`].
    pub fresh_ids: &'a AtomicU64,
}

/// Runs `ops` operations of `run` against `store` and returns the time they took. Panics if a
/// get of a loaded key finds nothing or the wrong key's value (checked after the clock stops),
/// unless the store's overwrites are not atomic: then misses are counted in
/// [`TOLERATED_MISSES`].
pub fn timed<S: KvStore + ?Sized>(store: &S, run: &Run<'_>, ops: u64) -> Duration {
    let misses = AtomicU64::new(0);
    let base = if run.workload == Workload::Put {
        run.fresh_ids.fetch_add(ops, Ordering::Relaxed)
    } else {
        0
    };
    let elapsed = run_threads(run.threads, ops, |thread, range| {
        let mut rng = Rng::new(run.seed ^ ((thread as u64) << 32) ^ range.start);
        let mut value = value_buffer(run.size);
        let mut out = Vec::with_capacity(run.size.bytes());
        let mut local_misses = 0u64;
        let mut get = |id: u64, out: &mut Vec<u8>| {
            if !store.get(id, &key(id), out) || stamped_id(out) != Some(id) {
                local_misses += 1;
            }
            black_box(&out);
        };
        match run.workload {
            Workload::Put => {
                for op in range {
                    let id = base + op;
                    stamp(&mut value, id, 0);
                    store.put(id, &key(id), &value);
                }
            }
            Workload::Get => {
                for _ in range {
                    get(rng.below(run.loaded), &mut out);
                }
            }
            Workload::Mixed | Workload::HotSpot => {
                let span = if run.workload == Workload::HotSpot {
                    HOT_KEYS.min(run.loaded)
                } else {
                    run.loaded
                };
                for op in range {
                    let id = rng.below(span);
                    if rng.below(PUT_ONE_IN) == 0 {
                        stamp(&mut value, id, op + 1);
                        store.put(id, &key(id), &value);
                    } else {
                        get(id, &mut out);
                    }
                }
            }
        }
        misses.fetch_add(local_misses, Ordering::Relaxed);
    });
    let misses = misses.into_inner();
    if store.overwrites_atomically() {
        assert_eq!(
            misses, 0,
            "{misses} gets of loaded keys found nothing or the wrong value ({:?})",
            run.workload
        );
    } else {
        TOLERATED_MISSES.fetch_add(misses, Ordering::Relaxed);
    }
    elapsed
}

/// Where the benches put their files: `$SEGLOG_BENCH_DIR` if set, else the system temp dir.
///
/// Page-cache note: segment files and the seed's mmap live here. On a disk-backed file system
/// dirty pages are written back in the background while a bench runs; on tmpfs they never are.
pub fn bench_root() -> PathBuf {
    std::env::var_os("SEGLOG_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// A fresh temporary directory under [`bench_root`], removed when dropped.
pub fn bench_dir(prefix: &str) -> tempfile::TempDir {
    let root = bench_root();
    std::fs::create_dir_all(&root).expect("create the bench directory root");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(root)
        .expect("create a temporary bench directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sixteen_digits_of_ascii() {
        assert_eq!(&key(0), b"mem-000000000000");
        assert_eq!(&key(42), b"mem-000000000042");
        assert_eq!(&key(999_999_999_999), b"mem-999999999999");
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = Rng::new(7);
        assert!((0..10_000).all(|_| rng.below(10) < 10));
    }

    #[test]
    fn stamps_round_trip() {
        let mut value = value_buffer(ValueSize::B16);
        stamp(&mut value, 1234, 5);
        assert_eq!(stamped_id(&value), Some(1234));
    }

    #[test]
    fn shares_cover_every_op_once() {
        let seen = AtomicU64::new(0);
        run_threads(3, 1000, |_, ops| {
            seen.fetch_add(ops.end - ops.start, Ordering::Relaxed);
        });
        assert_eq!(seen.into_inner(), 1000);
    }
}
