//! Compaction survives SIGKILL: concurrent puts, removes and compactions in a child process,
//! SIGKILL at a random moment (often mid-compaction), then reopen: no acknowledged write is
//! lost, and no value or key comes back that a later acknowledged write replaced or removed.
//!
//! Each writer thread owns its keys and runs a fixed sequence of operations, so the state of
//! its keys after a crash must be the state after its last acknowledged operation, or after the
//! one operation it had in flight. 30 kills per run; `SEGLOG_CRASH_KILLS=N` runs N. The harness
//! is `seglog_tests::crash`. This file was `compaction_crash_kill9.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use seglog::{Log, Options};
use seglog_tests::crash::{self, Crasher};
use seglog_tests::pattern;

const WRITERS: u64 = 2;
const KEYS_PER_WRITER: u64 = 60;

fn options() -> Options {
    Options::default()
        .segment_bytes(16 * 1024)
        .compact_dead_bytes(32 * 1024)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
}

/// Operation `seq` of writer `writer` (a run's sequence numbers continue across kills).
fn op(writer: u64, seq: u64) -> Op {
    let key = format!("w{writer}-k{}", (seq * 7) % KEYS_PER_WRITER).into_bytes();
    if seq % 5 == 4 {
        Op::Remove(key)
    } else {
        Op::Put(key, pattern(writer, seq, 10 + (seq % 400) as usize))
    }
}

/// The state of writer `writer`'s keys after its operations `0..=last` (none if `None`).
fn state_after(writer: u64, last: Option<u64>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut state = BTreeMap::new();
    if let Some(last) = last {
        for seq in 0..=last {
            match op(writer, seq) {
                Op::Put(k, v) => {
                    state.insert(k, v);
                }
                Op::Remove(k) => {
                    state.remove(&k);
                }
            }
        }
    }
    state
}

/// Writer `writer`'s keys and values in `all`.
fn keys_of(all: &BTreeMap<Vec<u8>, Vec<u8>>, writer: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let prefix = format!("w{writer}-").into_bytes();
    all.iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn compaction_crash_child() {
    let Some(child) = crash::child() else {
        return; // Only runs as the parent's child process.
    };
    let log = Arc::new(Log::open_with(&child.dir, options()).unwrap());
    let start: Vec<u64> = child.start.split(',').map(|s| s.parse().unwrap()).collect();
    let compactor = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            // Bounded: the parent kills the child long before this ends.
            for _ in 0..1_000_000 {
                log.compact().unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let log = Arc::clone(&log);
            let first = start[writer as usize];
            std::thread::spawn(move || {
                for seq in first..first + 10_000_000 {
                    match op(writer, seq) {
                        Op::Put(k, v) => {
                            log.put(&k, &v).unwrap();
                        }
                        Op::Remove(k) => {
                            log.remove(&k).unwrap();
                        }
                    }
                    crash::ack(&[writer, seq]);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    compactor.join().unwrap();
}

#[test]
fn sigkill_during_compaction_loses_and_resurrects_nothing() {
    let kills = crash::kills(30);
    let mut crasher = Crasher::new("compaction_crash_child", 0x5EED, (20, 250));
    // Last acknowledged operation of each writer, across runs.
    let mut acked: Vec<Option<u64>> = vec![None; WRITERS as usize];
    let mut reclaimed = 0;
    for run in 0..kills {
        let next: Vec<String> = acked
            .iter()
            .map(|a| a.map_or(0, |s| s + 1).to_string())
            .collect();
        // The previous run may have died with one operation in flight: the log may hold its
        // effect. Continuing from after the last acknowledged op re-applies it, which keeps
        // the per-key sequence deterministic.
        for fields in crasher.run_and_kill(&next.join(",")) {
            if let [writer, seq] = fields[..] {
                let slot = &mut acked[writer as usize];
                assert!(slot.is_none_or(|s| seq == s + 1), "acks out of order");
                *slot = Some(seq);
            }
        }

        let log = Log::open_with(crasher.dir(), options().auto_compact(false)).unwrap();
        assert!(
            log.recovery_report().corrupt.is_empty(),
            "run {run}: {:?}",
            log.recovery_report()
        );
        let all: BTreeMap<Vec<u8>, Vec<u8>> = log.iter().collect();
        for writer in 0..WRITERS {
            let actual = keys_of(&all, writer);
            let last = acked[writer as usize];
            let after_acked = state_after(writer, last);
            let after_in_flight = state_after(writer, Some(last.map_or(0, |s| s + 1)));
            assert!(
                actual == after_acked || actual == after_in_flight,
                "run {run}: writer {writer}'s keys are neither the state after its last \
                 acknowledged op ({last:?}) nor after the next one"
            );
        }
        assert_eq!(
            all.len(),
            all.keys().filter(|k| k.starts_with(b"w")).count(),
            "run {run}: keys nobody wrote"
        );
        // If the in-flight op took effect, count it as done so the next run continues after it.
        for writer in 0..WRITERS {
            let last = acked[writer as usize];
            let next = last.map_or(0, |s| s + 1);
            let actual = keys_of(&all, writer);
            if actual != state_after(writer, last) && actual == state_after(writer, Some(next)) {
                acked[writer as usize] = Some(next);
            }
        }
        // Segment ids are never reused: fewer files than ids means compaction reclaimed some.
        let files = seglog_tests::segment_file_count(crasher.dir());
        let (tail_segment, _) = {
            let shift = (16 * 1024u64).trailing_zeros();
            let tail = log.append_log().tail_position();
            (tail >> shift, tail)
        };
        reclaimed = reclaimed.max((tail_segment + 1).saturating_sub(files));
        eprintln!("DBG run {run} tail {tail_segment} files {files}");
    }
    assert!(
        acked.iter().all(|a| a.is_some_and(|s| s > 100)),
        "too little progress: {acked:?}"
    );
    assert!(
        reclaimed > 10,
        "compaction reclaimed almost nothing ({reclaimed} segments)"
    );
    eprintln!("{kills} kills; last acked {acked:?}; {reclaimed} segments reclaimed");
}
