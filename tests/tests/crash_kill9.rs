//! Crash harness: a child process with 4 writer threads puts records and reports each
//! acknowledged put to the parent; the parent kills it with SIGKILL at a random moment, reopens
//! the log, and checks that every acknowledged put is present byte-exact or superseded by a
//! later version of the same key, and that no value exists that was never written.
//!
//! 50 kills per run; `SEGLOG_CRASH_KILLS=N` runs N.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use seglog::{Log, Options};
use seglog_tests::{SplitMix64, pattern};

const CHILD_ENV: &str = "SEGLOG_CRASH_CHILD_DIR";
const WRITERS: u64 = 4;
const KEYS_PER_WRITER: u64 = 300;

fn options() -> Options {
    Options::default().segment_bytes(64 * 1024)
}

/// The value of put `(writer, seq)`: a self-describing header then a pattern, so any value
/// found after the crash can be checked against what was written.
fn value(writer: u64, seq: u64) -> Vec<u8> {
    let len = 16 + (seq * 37 + writer * 11) as usize % 3000;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&writer.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&pattern(writer, seq, len - 16));
    v
}

fn key(writer: u64, seq: u64) -> Vec<u8> {
    // Each writer cycles over its own keys, so later puts supersede earlier ones.
    format!("w{writer}-k{}", seq % KEYS_PER_WRITER).into_bytes()
}

/// The child: puts until killed, printing `ack writer seq version` after each put returns.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only runs as the parent's child process.
    };
    let log = Arc::new(Log::open_with(&dir, options()).unwrap());
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let start_seq: u64 = std::env::var("SEGLOG_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (log, out) = (Arc::clone(&log), Arc::clone(&out));
            std::thread::spawn(move || {
                // Bounded: the parent kills the child long before this ends.
                for seq in start_seq..start_seq + 1_000_000 {
                    let version = log.put(&key(writer, seq), &value(writer, seq)).unwrap();
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ack {writer} {seq} {version}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn sigkill_loses_no_acknowledged_put() {
    let kills: u64 = std::env::var("SEGLOG_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = SplitMix64::new(0xC0FFEE);
    // Latest acknowledged version per key, across all runs.
    let mut acked: HashMap<Vec<u8>, (u64, u64, u64)> = HashMap::new();
    let mut total_acks = 0u64;
    for run in 0..kills {
        let start_seq = run * 1_000_000;
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("SEGLOG_CRASH_START", start_seq.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = Duration::from_millis(rng.range(5, 150));
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.push(line);
            }
            lines
        });
        let started = Instant::now();
        while started.elapsed() < kill_after {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in reader.join().unwrap() {
            let mut parts = line.split_whitespace();
            if parts.next() != Some("ack") {
                continue;
            }
            let nums: Vec<u64> = parts.filter_map(|p| p.parse().ok()).collect();
            // A line cut by the kill has fewer fields: that put was not acknowledged.
            let [writer, seq, version] = nums[..] else {
                continue;
            };
            total_acks += 1;
            let entry = acked
                .entry(key(writer, seq))
                .or_insert((writer, seq, version));
            if version > entry.2 {
                *entry = (writer, seq, version);
            }
        }

        let log = Log::open_with(dir.path(), options()).unwrap();
        let report = log.recovery_report();
        assert!(
            report.corrupt.is_empty(),
            "run {run}: corruption after kill: {report:?}"
        );
        let pinned = log.pin();
        for (k, &(writer, seq, version)) in &acked {
            let record = pinned
                .get_record(k)
                .unwrap_or_else(|| panic!("run {run}: acknowledged key {k:?} lost"));
            assert!(
                record.version >= version,
                "run {run}: {k:?} went back from version {version} to {}",
                record.version
            );
            if record.version == version {
                assert_eq!(
                    record.value,
                    value(writer, seq).as_slice(),
                    "run {run}: {k:?}"
                );
            }
        }
        // No value that was never written: every value is some put's exact bytes.
        for (k, v) in pinned.iter() {
            let writer = u64::from_le_bytes(v[..8].try_into().unwrap());
            let seq = u64::from_le_bytes(v[8..16].try_into().unwrap());
            assert_eq!(
                k,
                key(writer, seq).as_slice(),
                "run {run}: value under the wrong key"
            );
            assert_eq!(
                v,
                value(writer, seq).as_slice(),
                "run {run}: value never written"
            );
        }
    }
    assert!(
        total_acks > kills,
        "children acknowledged almost nothing ({total_acks})"
    );
    eprintln!("{kills} kills, {total_acks} acknowledged puts checked");
}
