//! Reopen benchmark: how fast `Log::open` rebuilds a large log, with and without hint files.
//!
//! ```sh
//! cargo bench -p seglog-benches --bench reopen                    # 5M records, ~1 GiB
//! SEGLOG_BENCH_RECORDS=200000 cargo bench -p seglog-benches --bench reopen   # a quick run
//! ```
//!
//! Not a criterion bench: one open takes a second, and the figure that matters is the median
//! of a few whole opens of one large log, warm and cold. Under `cargo test --benches` (no
//! `--bench` argument) it runs once at 20k records, warm only, to check it still works.
//!
//! Fills a log in a temporary directory (`SEGLOG_BENCH_DIR` to choose where), closes it (which
//! writes the hints of every sealed segment), then times opens with the hints hidden (a full
//! scan) and present, alternating, 5 of each with the page cache warm, and 5 of each cold: every
//! log file fsynced and evicted from the page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`) just
//! before the open. Prints the median and the range of each.
//!
//! `SEGLOG_BENCH_ROUNDS` changes the 5; `SEGLOG_BENCH_COLD=0` skips the cold opens;
//! `SEGLOG_BENCH_OPEN_ONLY=<dir>` only opens an existing log `<dir>` that many times (with its
//! hints as they are), for `perf record`.

use std::path::Path;
use std::time::{Duration, Instant};

use seglog::{Log, Options};

/// The log's options: the default 64 MiB segments when measuring; 1 MiB in the test-mode run,
/// so that its 20k records fill sealed, hinted segments too.
fn options(measuring: bool) -> Options {
    let options = Options::default().auto_compact(false);
    if measuring {
        options
    } else {
        options.segment_bytes(1 << 20)
    }
}

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

/// Writes back and drops every file of `dir` from the page cache: the next open reads the
/// disk, as after a reboot.
fn evict(dir: &Path) {
    use std::os::fd::AsRawFd;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        // Dirty pages are not dropped: write them back first.
        file.sync_all().unwrap();
        // SAFETY: a plain syscall on a file descriptor this function owns; it reads no memory.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0, "posix_fadvise failed on {}", path.display());
    }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn open_timed(dir: &Path, records: Option<u64>, hinted: bool, options: Options) -> Duration {
    let start = Instant::now();
    let log = Log::open_with(dir, options).unwrap();
    let elapsed = start.elapsed();
    if let Some(records) = records {
        assert_eq!(log.len() as u64, records, "reopen lost records");
    }
    let report = log.recovery_report();
    assert_eq!(report.hinted_segments > 0, hinted);
    if hinted {
        // Every hint present was used.
        let hints = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "hint")
            })
            .count();
        assert_eq!(report.hinted_segments, hints as u64, "{report:?}");
    }
    // Dropping the log may write hints; none are missing here, so it only stops the thread.
    drop(log);
    elapsed
}

fn main() {
    let rounds: usize = std::env::var("SEGLOG_BENCH_ROUNDS").map_or(5, |r| r.parse().unwrap());
    if let Some(dir) = std::env::var_os("SEGLOG_BENCH_OPEN_ONLY") {
        let dir = Path::new(&dir);
        let hinted = std::fs::read_dir(dir)
            .unwrap()
            .any(|e| e.unwrap().path().extension().is_some_and(|x| x == "hint"));
        for _ in 0..rounds {
            let t = open_timed(dir, None, hinted, options(true));
            println!("open {:.3} s (hints: {hinted})", t.as_secs_f64());
        }
        return;
    }
    let measuring = std::env::args().any(|a| a == "--bench");
    let records: u64 = std::env::var("SEGLOG_BENCH_RECORDS")
        .map_or(if measuring { 5_000_000 } else { 20_000 }, |r| {
            r.parse().expect("SEGLOG_BENCH_RECORDS: a record count")
        });
    let rounds = if measuring { rounds } else { 1 };
    let cold = measuring && std::env::var("SEGLOG_BENCH_COLD").map_or(true, |c| c != "0");
    let base = std::env::var_os("SEGLOG_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    let bytes = {
        let log = Log::open_with(dir.path(), options(measuring)).unwrap();
        let value = vec![0x5Au8; 160];
        let start = Instant::now();
        for i in 0..records {
            log.put(format!("key-{i:012}").as_bytes(), &value).unwrap();
        }
        let stats = log.stats();
        // Closing writes the hint of every sealed segment.
        log.close().unwrap();
        println!(
            "filled {records} records, {:.2} GiB in {} segments, in {:.1} s",
            stats.bytes as f64 / (1u64 << 30) as f64,
            stats.segments,
            start.elapsed().as_secs_f64()
        );
        stats.bytes
    };
    println!(
        "load average before the opens: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut results = Vec::new();
    let caches: &[bool] = if cold { &[false, true] } else { &[false] };
    for &is_cold in caches {
        let mut times = [Vec::new(), Vec::new()];
        for round in 0..2 * rounds {
            let hinted = round % 2 == 1;
            set_hints(dir.path(), hinted);
            if is_cold {
                evict(dir.path());
            }
            times[usize::from(hinted)].push(open_timed(
                dir.path(),
                Some(records),
                hinted,
                options(measuring),
            ));
        }
        results.push((is_cold, times));
    }
    println!("open                 median s  min s    max s    GB/s   Mrecords/s");
    for (is_cold, mut times) in results {
        let cache = if is_cold { "cold" } else { "warm" };
        let mut medians = [Duration::ZERO; 2];
        for (hinted, name) in [(false, "full scan"), (true, "with hints")] {
            let list = &mut times[usize::from(hinted)];
            let med = median(list);
            medians[usize::from(hinted)] = med;
            let secs = med.as_secs_f64();
            println!(
                "{cache} {name:<15} {secs:>8.3} {:>8.3} {:>8.3} {:>7.2} {:>12.2}",
                list[0].as_secs_f64(),
                list[list.len() - 1].as_secs_f64(),
                bytes as f64 / secs / 1e9,
                records as f64 / secs / 1e6
            );
        }
        println!(
            "{cache}: hints are {:.1}x faster (median of {rounds} each)",
            medians[0].as_secs_f64() / medians[1].as_secs_f64()
        );
    }
    println!(
        "load average after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if std::env::var_os("SEGLOG_BENCH_KEEP").is_some() {
        set_hints(dir.path(), true);
        println!("kept {}", dir.keep().display());
    }
}
