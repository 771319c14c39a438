//! Puts survive SIGKILL: a child process with 4 writer threads puts records and reports each
//! acknowledged put to the parent; the parent kills it with SIGKILL at a random moment, reopens
//! the log, and checks that every acknowledged put is present byte-exact or superseded by a
//! later version of the same key, and that no value exists that was never written.
//!
//! 50 kills per run; `SEGLOG_CRASH_KILLS=N` runs N. The harness is `seglog_tests::crash`.
//! This file was `crash_kill9.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use seglog::{Log, Options};
use seglog_tests::crash::{self, Crasher};
use seglog_tests::pattern;

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
    let Some(child) = crash::child() else {
        return; // Only runs as the parent's child process.
    };
    let log = Arc::new(Log::open_with(&child.dir, options()).unwrap());
    let start_seq: u64 = child.start.parse().unwrap();
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                // Bounded: the parent kills the child long before this ends.
                for seq in start_seq..start_seq + 1_000_000 {
                    let version = log.put(&key(writer, seq), &value(writer, seq)).unwrap();
                    crash::ack(&[writer, seq, version]);
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
    let kills = crash::kills(50);
    let mut crasher = Crasher::new("crash_child", 0xC0FFEE, (5, 150));
    // Latest acknowledged version per key, across all runs.
    let mut acked: HashMap<Vec<u8>, (u64, u64, u64)> = HashMap::new();
    let mut total_acks = 0u64;
    for run in 0..kills {
        let start_seq = run * 1_000_000;
        for fields in crasher.run_and_kill(&start_seq.to_string()) {
            let [writer, seq, version] = fields[..] else {
                continue; // Not one of this child's acks.
            };
            total_acks += 1;
            let entry = acked
                .entry(key(writer, seq))
                .or_insert((writer, seq, version));
            if version > entry.2 {
                *entry = (writer, seq, version);
            }
        }

        let log = Log::open_with(crasher.dir(), options()).unwrap();
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
