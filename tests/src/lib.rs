//! Shared helpers for the scenario tests in `tests/`.

use std::path::{Path, PathBuf};

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
pub mod fault_proxy;
pub mod linearizability;
pub mod moto;
pub mod warm_tier;

/// The file of segment `id` in log directory `dir`.
pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(seglog_format::LogFile::Segment(id).name())
}

/// The hint file of segment `id` in log directory `dir`.
pub fn hint_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(seglog_format::LogFile::Hint(id).name())
}

/// The files in `dir` with extension `ext` (`"seg"`, `"hint"`), sorted: for a log's files, in
/// segment order.
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("log directory is readable")
        .map(|e| e.expect("log directory is readable").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// Bytes of the segment files in a log directory, the free files kept for reuse included: the
/// disk a log holds.
pub fn segment_file_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("log directory is readable")
        .filter_map(|e| {
            let path = e.expect("log directory is readable").path();
            matches!(
                seglog_format::LogFile::from_path(&path),
                Some(seglog_format::LogFile::Segment(_) | seglog_format::LogFile::FreeSegment(_))
            )
            .then(|| path.metadata().map(|m| m.len()).unwrap_or(0))
        })
        .sum()
}

/// Number of segment files (`*.seg`) in a log directory.
pub fn segment_file_count(dir: &Path) -> u64 {
    files_with_extension(dir, "seg").len() as u64
}

/// Copies every file of log directory `from` into `to` except its `LOCK` file and, unless
/// `with_hints`, its hint files.
pub fn copy_log_dir(from: &Path, to: &Path, with_hints: bool) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        match seglog_format::LogFile::from_path(&path) {
            Some(seglog_format::LogFile::Lock) => {}
            Some(seglog_format::LogFile::Hint(_)) if !with_hints => {}
            _ => {
                std::fs::copy(&path, to.join(name)).unwrap();
            }
        }
    }
}

/// The directory of fixture `name`: `tests/fixtures/<name>`, logs kept in the repository.
pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A temporary copy of fixture `name`, with every file it has. An open may write to the log
/// (recovery seals and zeroes damaged ranges, removes stale hints), so a fixture is only ever
/// opened from a copy.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    copy_log_dir(&fixture_dir(name), work.path(), true);
    work
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
