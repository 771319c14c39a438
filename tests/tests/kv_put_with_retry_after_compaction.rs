//! `put_with` whose first record loses to a newer tombstone must still store its value: it
//! retries with a copy of the value it already wrote, and that retry must not fail because its
//! own first record was compacted away in between.
//!
//! The scenario, made deterministic with a fill closure that blocks:
//! 1. key `K` has a value;
//! 2. thread A calls `put_with(K, ..)`; its fill closure signals that the record is reserved
//!    (so its version is lower than anything written after), then blocks;
//! 3. the main thread removes `K` (the tombstone gets a higher version than A's record), writes
//!    filler records until A's segment is sealed, and removes the fillers, so that A's segment
//!    holds nothing live but `K`'s tombstone;
//! 4. A's fill returns. A's install loses to the tombstone, so `put_with` must append its value
//!    again. Between the two, A's call releases its install hold and runs automatic compaction,
//!    which now finds A's segment almost entirely dead and retires it.
//!
//! `put_with` must return `Ok`, and `K` must then hold A's value (the put took effect after the
//! remove it raced with).

use std::sync::{Arc, mpsc};
use std::time::Duration;

use seglog::{Log, Options};
use seglog_tests::pattern;

const SEGMENT_BYTES: u64 = 4096;
const TIMEOUT: Duration = Duration::from_secs(10);
const ROUNDS: u64 = 10;
const KEY: &[u8] = b"K";
const VALUE_LEN: usize = 256;

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        // Any segment that is mostly dead is a victim, as soon as 2 KiB are dead in the log.
        .compact_live_ratio(0.9)
        .compact_dead_bytes(2048)
}

fn segment_of(log: &Log, position: u64) -> u64 {
    position >> log.append_log().segment_bytes().trailing_zeros()
}

fn tail_segment(log: &Log) -> u64 {
    segment_of(log, log.append_log().tail_position())
}

/// One run of the scenario; `Err` says what went wrong.
fn round(round: u64) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open_with(dir.path(), options()).unwrap());
    log.put(KEY, &pattern(0, round, 100)).unwrap();
    let value = pattern(1, round, VALUE_LEN);

    let (reserved_tx, reserved_rx) = mpsc::channel::<u64>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let worker = {
        let (log, value) = (Arc::clone(&log), value.clone());
        std::thread::spawn(move || {
            let result = log.put_with(KEY, VALUE_LEN, |buf| {
                // Reserved: report the segment the tail is in (this record's), then wait.
                let _ = reserved_tx.send(tail_segment(&log));
                let _ = go_rx.recv_timeout(TIMEOUT);
                buf.copy_from_slice(&value);
            });
            let _ = done_tx.send(result.map_err(|e| e.to_string()));
        })
    };
    let a_segment = reserved_rx
        .recv_timeout(TIMEOUT)
        .map_err(|_| "put_with never called its fill closure".to_string())?;

    // The remove reads the old value (A's record is not installed yet) and writes a tombstone
    // with a higher version than A's record.
    assert!(log.remove(KEY).unwrap(), "K had a value");
    // Fillers until A's segment is sealed, then removed so they are dead. A's segment cannot
    // be compacted yet: A's record is reserved but not published.
    let mut fillers = Vec::new();
    while tail_segment(&log) == a_segment {
        let key = format!("filler-{}", fillers.len()).into_bytes();
        log.put(&key, &pattern(2, fillers.len() as u64, 1000))
            .unwrap();
        fillers.push(key);
    }
    for key in &fillers {
        assert!(log.remove(key).unwrap());
    }
    let stats = log.stats();
    assert!(
        stats.dead_bytes >= 2048,
        "the scenario needs automatic compaction to be due: {stats:?}"
    );

    go_tx.send(()).unwrap();
    let result = done_rx
        .recv_timeout(TIMEOUT)
        .map_err(|_| "put_with did not return".to_string())?;
    let reclaimed = log.stats().compaction.segments_reclaimed;
    let version = result.map_err(|e| {
        format!(
            "put_with failed: {e} (its first record was in segment {a_segment}; \
             {reclaimed} segments reclaimed by then)"
        )
    })?;
    match log.get(KEY) {
        Some(v) if v == value => {}
        other => {
            return Err(format!(
                "after put_with returned {version}, K holds {:?} bytes instead of its value",
                other.map(|v| v.len())
            ));
        }
    }
    // The worker's clone of the log must be gone too before the directory can be reopened.
    worker
        .join()
        .map_err(|_| "the put_with thread panicked".to_string())?;
    drop(log);
    let log = Log::open_with(dir.path(), options()).unwrap();
    if log.get(KEY).as_deref() != Some(&value[..]) {
        return Err("after reopening, K does not hold the put_with value".into());
    }
    Ok(())
}

#[test]
fn put_with_retrying_past_a_tombstone_survives_compaction_of_its_first_record() {
    let failures: Vec<String> = (0..ROUNDS)
        .filter_map(|r| round(r).err().map(|e| format!("round {r}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} rounds failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
