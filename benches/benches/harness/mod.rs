//! What the bench binaries share about running under criterion: the mode, the filter, sizes.
//!
//! Loading a million keys into a subject takes seconds, so a bench binary loads a subject only
//! when criterion will run at least one of its benchmarks. Criterion keeps its filter to itself,
//! so this reads the same command line: the first free argument is the filter (a regex, or an
//! exact id with `--exact`), `--list` lists without running, and without `--bench` (that is,
//! under `cargo test --benches`) criterion runs each benchmark once, so the binaries load a
//! few thousand keys instead of a million.
#![allow(dead_code)]

use std::time::Duration;

use criterion::Criterion;

/// How criterion will treat the benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `cargo bench`: measure.
    Bench,
    /// `cargo test --benches` or `--test`: run each benchmark once.
    Test,
    /// `--list`: name the benchmarks, run nothing.
    List,
}

/// The command line as far as the bench binaries care.
#[derive(Debug)]
pub struct Harness {
    pub mode: Mode,
    filter: Filter,
}

#[derive(Debug)]
enum Filter {
    All,
    Regex(regex::Regex),
    Exact(String),
}

/// Criterion options that take a value (so the value is not mistaken for the filter).
const VALUED: &[&str] = &[
    "-c",
    "--color",
    "--colour",
    "-s",
    "--save-baseline",
    "-b",
    "--baseline",
    "--baseline-lenient",
    "--format",
    "--profile-time",
    "--load-baseline",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--plotting-backend",
    "--output-format",
];

impl Harness {
    pub fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let flag = |name: &str| args.iter().any(|a| a == name);
        let mode = if flag("--list") {
            Mode::List
        } else if flag("--bench") && !flag("--test") {
            Mode::Bench
        } else {
            Mode::Test
        };
        let mut free = None;
        let mut skip_next = false;
        for arg in &args {
            if skip_next {
                skip_next = false;
            } else if VALUED.contains(&arg.as_str()) {
                skip_next = true;
            } else if !arg.starts_with('-') {
                free = Some(arg.clone());
                break;
            }
        }
        let filter = match free {
            None => Filter::All,
            Some(f) if flag("--exact") => Filter::Exact(f),
            // Criterion itself panics on a bad regex; match nothing here and let it.
            Some(f) => regex::Regex::new(&f).map_or(Filter::Exact(f), Filter::Regex),
        };
        Self { mode, filter }
    }

    /// Whether criterion will run the benchmark with this full id.
    pub fn wants(&self, id: &str) -> bool {
        if self.mode == Mode::List {
            return false;
        }
        match &self.filter {
            Filter::All => true,
            Filter::Regex(regex) => regex.is_match(id),
            Filter::Exact(exact) => id == exact,
        }
    }

    /// Keys to load: `$SEGLOG_BENCH_KEYS`, else 1,000,000 (2,000 when criterion only tests).
    pub fn keys(&self) -> u64 {
        if let Some(keys) = std::env::var("SEGLOG_BENCH_KEYS")
            .ok()
            .and_then(|k| k.parse().ok())
        {
            return keys;
        }
        match self.mode {
            Mode::Bench => 1_000_000,
            Mode::Test | Mode::List => 2_000,
        }
    }

    /// Criterion, sized so the whole comparison fits the documented budget: 10 samples,
    /// 0.5 s warm-up, 2 s of measurement, no plots. Command-line options still override.
    pub fn criterion(&self) -> Criterion {
        Criterion::default()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .without_plots()
            .configure_from_args()
    }
}
