//! The YCSB core workloads that papers and users quote (FASTER's paper reports them): A (50 %
//! reads, 50 % updates), B (95 % reads, 5 % updates) and C (reads only), over loaded keys
//! chosen uniformly or by YCSB's scrambled Zipfian distribution (θ = 0.99).
//!
//! Keys and values are the comparison's own ([`crate::workload::key`], stamped values), so every
//! read is checked for its key's value as in the other workloads. An update overwrites a
//! loaded key with a newer stamp; YCSB's "read-modify-write" (workload F) and scans (E) are not
//! here.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::KvStore;
use crate::workload::{Rng, ValueSize, key, run_threads, stamp, stamped_id, value_buffer};

/// YCSB's Zipfian constant.
pub const ZIPFIAN_THETA: f64 = 0.99;

/// One of the YCSB core workloads this bench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YcsbWorkload {
    /// 50 % reads, 50 % updates ("update heavy").
    A,
    /// 95 % reads, 5 % updates ("read mostly").
    B,
    /// 100 % reads ("read only").
    C,
}

impl YcsbWorkload {
    /// Every workload.
    pub const ALL: [YcsbWorkload; 3] = [YcsbWorkload::A, YcsbWorkload::B, YcsbWorkload::C];

    /// Updates per 100 operations.
    pub const fn updates_per_100(self) -> u64 {
        match self {
            YcsbWorkload::A => 50,
            YcsbWorkload::B => 5,
            YcsbWorkload::C => 0,
        }
    }

    /// Short label for benchmark ids.
    pub const fn label(self) -> &'static str {
        match self {
            YcsbWorkload::A => "ycsb-a",
            YcsbWorkload::B => "ycsb-b",
            YcsbWorkload::C => "ycsb-c",
        }
    }
}

/// How a YCSB run picks its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChoice {
    /// Every loaded key equally likely.
    Uniform,
    /// YCSB's scrambled Zipfian (θ = 0.99): a few keys take most operations, spread over the
    /// key space by a hash rather than clustered at the lowest ids.
    Zipfian,
}

impl KeyChoice {
    /// Both.
    pub const ALL: [KeyChoice; 2] = [KeyChoice::Zipfian, KeyChoice::Uniform];

    /// Short label for benchmark ids.
    pub const fn label(self) -> &'static str {
        match self {
            KeyChoice::Uniform => "uniform",
            KeyChoice::Zipfian => "zipf",
        }
    }
}

/// YCSB's Zipfian generator (Gray et al., "Quickly generating billion-record synthetic
/// databases", as in YCSB's `ZipfianGenerator`) over ranks `0..n`, scrambled like YCSB's
/// `ScrambledZipfianGenerator`: the rank is hashed (FNV-1a 64) onto the key space, so the
/// popular keys are not the lowest ids.
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
}

impl Zipfian {
    /// A generator over `n > 0` items with constant `theta` (`0 < theta < 1`). Computes
    /// ζ(n, θ) once: O(n).
    pub fn new(n: u64, theta: f64) -> Self {
        assert!(n > 0 && theta > 0.0 && theta < 1.0);
        let zeta = |count: u64| {
            (1..=count)
                .map(|i| 1.0 / (i as f64).powf(theta))
                .sum::<f64>()
        };
        let zeta_n = zeta(n);
        let zeta_2 = zeta(2.min(n));
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Self {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta_n,
            eta,
        }
    }

    /// The next rank, `0..n`: 0 the most popular.
    pub fn rank(&self, rng: &mut Rng) -> u64 {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }

    /// The next key id, `0..n`: a rank scrambled over the key space.
    pub fn item(&self, rng: &mut Rng) -> u64 {
        fnv1a64(self.rank(rng)) % self.n
    }
}

/// FNV-1a over the eight little-endian bytes of `value` (YCSB's `fnvhash64`).
fn fnv1a64(value: u64) -> u64 {
    let mut hash = 0xCBF2_9CE4_8422_2325u64;
    for byte in value.to_le_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

/// One timed YCSB run.
#[derive(Debug)]
pub struct YcsbRun<'a> {
    pub workload: YcsbWorkload,
    pub choice: KeyChoice,
    pub size: ValueSize,
    /// Keys loaded before the run (ids `0..loaded`, version 0).
    pub loaded: u64,
    pub threads: usize,
    pub seed: u64,
    /// The Zipfian generator over `loaded` keys (built once per store: ζ(n) is O(n)).
    pub zipfian: &'a Zipfian,
}

/// Runs `ops` operations of `run` against `store`; returns their time. Panics (after the clock
/// stops) if a read finds nothing or another key's value.
pub fn timed_ycsb<S: KvStore + ?Sized>(store: &S, run: &YcsbRun<'_>, ops: u64) -> Duration {
    let misses = AtomicU64::new(0);
    let elapsed = run_threads(run.threads, ops, |thread, range| {
        let mut rng = Rng::new(run.seed ^ ((thread as u64) << 32) ^ range.start);
        let mut value = value_buffer(run.size);
        let mut out = Vec::with_capacity(run.size.bytes());
        let mut local_misses = 0u64;
        let updates = run.workload.updates_per_100();
        for op in range {
            let id = match run.choice {
                KeyChoice::Uniform => rng.below(run.loaded),
                KeyChoice::Zipfian => run.zipfian.item(&mut rng),
            };
            if updates > 0 && rng.below(100) < updates {
                stamp(&mut value, id, op + 1);
                store.put(id, &key(id), &value);
            } else {
                if !store.get(id, &key(id), &mut out) || stamped_id(&out) != Some(id) {
                    local_misses += 1;
                }
                black_box(&out);
            }
        }
        misses.fetch_add(local_misses, Ordering::Relaxed);
    });
    let misses = misses.into_inner();
    assert_eq!(
        misses, 0,
        "{misses} reads of loaded keys found nothing or the wrong value ({:?})",
        run.workload
    );
    elapsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipfian_stays_in_range_and_is_skewed() {
        let n = 10_000;
        let zipfian = Zipfian::new(n, ZIPFIAN_THETA);
        let mut rng = Rng::new(1);
        let mut counts = vec![0u32; n as usize];
        for _ in 0..200_000 {
            let rank = zipfian.rank(&mut rng);
            assert!(rank < n);
            counts[rank as usize] += 1;
        }
        // θ = 0.99 over 10,000 items: rank 0 takes about 1 / ζ(n) ≈ 10 % of draws, and
        // ranks fall off roughly as 1 / rank.
        let share0 = f64::from(counts[0]) / 200_000.0;
        assert!((0.07..0.14).contains(&share0), "rank 0 took {share0}");
        assert!(counts[0] > counts[9] * 5, "{} vs {}", counts[0], counts[9]);
        assert!(zipfian.item(&mut rng) < n);
    }
}
