//! Shared helpers for the scenario tests in `tests/`.

/// A small deterministic generator (SplitMix64), so every test run writes the same data and a
/// failure can be replayed. Tests need reproducible bytes, not cryptographic randomness.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// The bytes a test writes for record `(writer, seq)`: `len` bytes that depend on both, so a
/// value read back can be checked against the key it came with, byte for byte.
pub fn pattern(writer: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new((writer << 32) ^ seq ^ 0xA5A5_5A5A);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The key of record `(writer, seq)`.
pub fn key(writer: u64, seq: u64) -> Vec<u8> {
    format!("w{writer:03}-r{seq:07}").into_bytes()
}

/// Parses a key made by [`key`] back into `(writer, seq)`.
pub fn parse_key(key: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(key).ok()?;
    let (w, r) = text.strip_prefix('w')?.split_once("-r")?;
    Some((w.parse().ok()?, r.parse().ok()?))
}

pub mod crash;
pub mod linearizability;
pub mod warm_tier;

/// Number of segment files (`*.seg`) in a log directory.
pub fn segment_file_count(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("log directory is readable")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
        })
        .count() as u64
}

/// Keeps panics whose message starts with `prefix` (the ones a test injects) out of the test
/// output; every other panic is still printed. Installed once per process.
pub fn quiet_panics_starting_with(prefix: &'static str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let injected = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.starts_with(prefix));
            if !injected {
                default(info);
            }
        }));
    });
}
