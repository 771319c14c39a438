//! Reopen benchmark: how fast `Log::open` rebuilds a large log, with and without hint files.
//!
//! ```sh
//! cargo run --release -p seglog --example reopen_bench            # 5M records, ~1 GiB
//! cargo run --release -p seglog --example reopen_bench -- 200000  # a quick run
//! ```
//!
//! Fills a log in a temporary directory (`SEGLOG_BENCH_DIR` to choose where), writes its hints,
//! then times alternate opens with the hints hidden and present, and prints GB/s and records/s.
//! Set `SEGLOG_DROP_CACHES=1` (as root) to drop the page cache before each open: a cold restart.

use std::path::Path;
use std::time::{Duration, Instant};

use seglog::{Log, Options};

fn set_hints(dir: &Path, present: bool) {
    let (from, to) = if present {
        ("hidden", "hint")
    } else {
        ("hint", "hidden")
    };
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == from) {
            std::fs::rename(&path, path.with_extension(to)).unwrap();
        }
    }
}

fn main() {
    let records: u64 = std::env::args()
        .nth(1)
        .map_or(5_000_000, |a| a.parse().expect("record count"));
    let base = std::env::var_os("SEGLOG_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    let options = || Options::default().auto_compact(false);
    let bytes = {
        let log = Log::open_with(dir.path(), options()).unwrap();
        let value = vec![0x5Au8; 160];
        let start = Instant::now();
        for i in 0..records {
            log.put(format!("key-{i:012}").as_bytes(), &value).unwrap();
        }
        log.write_hints().unwrap();
        let stats = log.stats();
        println!(
            "filled {records} records, {:.2} GiB in {} segments, in {:.1} s",
            stats.bytes as f64 / (1u64 << 30) as f64,
            stats.segments,
            start.elapsed().as_secs_f64()
        );
        stats.bytes
    };
    let mut best = [Duration::MAX; 2];
    for round in 0..6 {
        let hinted = round % 2 == 1;
        set_hints(dir.path(), hinted);
        if std::env::var_os("SEGLOG_DROP_CACHES").is_some() {
            let _ = std::process::Command::new("sh")
                .args(["-c", "sync; echo 3 > /proc/sys/vm/drop_caches"])
                .status();
        }
        let start = Instant::now();
        let log = Log::open_with(dir.path(), options()).unwrap();
        let elapsed = start.elapsed();
        assert_eq!(log.len() as u64, records, "reopen lost records");
        assert_eq!(log.recovery_report().hinted_segments > 0, hinted);
        best[usize::from(hinted)] = best[usize::from(hinted)].min(elapsed);
        drop(log);
    }
    println!("open        seconds    GB/s   Mrecords/s");
    for (name, time) in [("full scan", best[0]), ("with hints", best[1])] {
        let secs = time.as_secs_f64();
        println!(
            "{name:<10} {secs:>8.3} {:>7.2} {:>12.2}",
            bytes as f64 / secs / 1e9,
            records as f64 / secs / 1e6
        );
    }
    println!(
        "hints are {:.1}x faster (best of 3 each)",
        best[0].as_secs_f64() / best[1].as_secs_f64()
    );
}
