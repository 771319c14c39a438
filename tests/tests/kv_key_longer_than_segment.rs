//! A key too long for the log's segments is refused at once with `KeyTooLarge`, even with an
//! empty value, and changes nothing.
//!
//! `MAX_KEY_BYTES` (64 KiB) is not the only limit: a record must fit in one segment after its
//! header, so with small segments the largest key that can be written with an empty value is
//! `segment_bytes - 64 (segment header) - 40 (record header)` (a multiple of 8 for every
//! segment size, so alignment costs nothing). A longer key must be refused before anything is
//! reserved. If it is not, its record is larger than a segment: it crosses the end of every
//! segment it is offered, rolls the log over each time, and loops until the log runs out of
//! segment ids or the disk fills up.
//!
//! Most tests cap the log at `MAX_SEGMENTS` ids so such a loop ends (in `LogFull`) instead of
//! filling the disk; one test uses the default options and stops the call from outside if it
//! runs away.

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use seglog::{Error, Log, MAX_KEY_BYTES, Options};
use seglog_tests::segment_file_count;

/// A correct call returns at once; a looping one creates a segment file per attempt.
const PROMPTLY: Duration = Duration::from_secs(10);
/// Enough segment ids for everything a correct test writes, few enough that a looping call ends
/// in `LogFull` within a fraction of a second.
const MAX_SEGMENTS: u64 = 256;
const LONG_KEY: usize = 5000;

/// The largest key a record with an empty value can have in segments of `segment_bytes`.
fn largest_key(segment_bytes: u64) -> usize {
    (segment_bytes as usize - 64 - 40).min(MAX_KEY_BYTES)
}

fn options(segment_bytes: u64) -> Options {
    Options::default()
        .segment_bytes(segment_bytes)
        .max_segments(MAX_SEGMENTS)
}

/// What a refused write must leave unchanged.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    segment_files: u64,
    segments: u64,
    bytes: u64,
    records: u64,
    rollovers: u64,
}

fn footprint(log: &Log, dir: &Path) -> Footprint {
    let stats = log.stats();
    let append = log.append_log().stats();
    Footprint {
        segment_files: segment_file_count(dir),
        segments: stats.segments,
        bytes: stats.bytes,
        records: append.records,
        rollovers: append.rollovers,
    }
}

/// Runs `call` on its own thread and returns its result, failing the test if it takes longer
/// than `PROMPTLY`.
fn promptly<T: Send + 'static>(what: &str, call: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    rx.recv_timeout(PROMPTLY).unwrap_or_else(|_| {
        panic!(
            "{what} did not return within {PROMPTLY:?} (started {:?} ago)",
            started.elapsed()
        )
    })
}

/// Why `result` is not `KeyTooLarge` for a key of `len` bytes reporting the largest key these
/// segments take, if it is not.
fn not_key_too_large<T: std::fmt::Debug>(
    result: &Result<T, Error>,
    len: usize,
    segment_bytes: u64,
) -> Option<String> {
    match result {
        Err(Error::KeyTooLarge { len: l, max })
            if *l == len && *max < len && *max == largest_key(segment_bytes) =>
        {
            None
        }
        other => Some(format!(
            "expected KeyTooLarge {{ len: {len}, max: {} }}, got {other:?}",
            largest_key(segment_bytes)
        )),
    }
}

fn assert_key_too_large<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, Error>,
    len: usize,
    segment_bytes: u64,
) {
    if let Some(why) = not_key_too_large(&result, len, segment_bytes) {
        panic!("{what}: {why}");
    }
}

/// A write of a key and an empty value, through one of the APIs; its result as text.
type Write = fn(&Log, &[u8]) -> Result<String, Error>;

const WRITES: [(&str, Write); 5] = [
    ("Log::put(key, b\"\")", |log, key| {
        log.put(key, b"").map(|v| format!("{v}"))
    }),
    ("Log::put_with(key, 0, ..)", |log, key| {
        log.put_with(key, 0, |_| {}).map(|v| format!("{v}"))
    }),
    // A key that can never be written can never be removed either: the same error, not
    // "absent", as for a key over MAX_KEY_BYTES.
    ("Log::remove(key)", |log, key| {
        log.remove(key).map(|v| format!("{v}"))
    }),
    ("AppendLog::append(key, b\"\")", |log, key| {
        log.append_log().append(key, b"").map(|a| format!("{a:?}"))
    }),
    ("AppendLog::append_tombstone(key)", |log, key| {
        log.append_log()
            .append_tombstone(key)
            .map(|a| format!("{a:?}"))
    }),
];

/// Every write of a key of `len` bytes with an empty value is refused promptly and changes
/// nothing. Each write gets a fresh log, so one that loops cannot hide what the others do; all
/// failures are reported together.
fn every_write_is_refused(segment_bytes: u64, len: usize) {
    let mut failures = Vec::new();
    for (what, write) in WRITES {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open_with(dir.path(), options(segment_bytes)).unwrap());
        log.put(b"k", b"v").unwrap();
        let before = footprint(&log, dir.path());
        let key = vec![b'K'; len];
        let (l, k) = (Arc::clone(&log), key.clone());
        let result = promptly(what, move || write(&l, &k));
        if let Some(why) = not_key_too_large(&result, len, segment_bytes) {
            failures.push(format!("{what}: {why}"));
        }
        let after = footprint(&log, dir.path());
        if after != before {
            failures.push(format!("{what} changed the log: {before:?} -> {after:?}"));
        }
        assert_eq!(log.get(b"k").as_deref(), Some(&b"v"[..]));
        assert_eq!(log.get(&key), None);
    }
    assert!(
        failures.is_empty(),
        "{len}-byte key, {segment_bytes}-byte segments:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn a_key_longer_than_a_4k_segment_is_refused_and_changes_nothing() {
    every_write_is_refused(4096, LONG_KEY);
}

#[test]
fn a_key_longer_than_a_256_byte_segment_is_refused_and_changes_nothing() {
    every_write_is_refused(256, LONG_KEY);
}

#[test]
fn one_byte_over_the_largest_key_is_refused() {
    // 3993 bytes: aligned to 4000, plus the 40-byte header, is 8 bytes more than a 4 KiB
    // segment holds after its header.
    every_write_is_refused(4096, largest_key(4096) + 1);
    every_write_is_refused(256, largest_key(256) + 1);
}

#[test]
fn the_largest_key_that_fits_is_written_read_and_removed() {
    for segment_bytes in [256u64, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let key = vec![b'M'; largest_key(segment_bytes)];
        {
            let log = Arc::new(Log::open_with(dir.path(), options(segment_bytes)).unwrap());
            let (l, k) = (Arc::clone(&log), key.clone());
            promptly("put(largest key, b\"\")", move || l.put(&k, b"")).unwrap();
            assert_eq!(log.get(&key).as_deref(), Some(&b""[..]));
            // Again, so the second copy starts a fresh segment: each takes one whole.
            let (l, k) = (Arc::clone(&log), key.clone());
            promptly("put_with(largest key, 0, ..)", move || {
                l.put_with(&k, 0, |_| {})
            })
            .unwrap();
            assert_eq!(log.get(&key).as_deref(), Some(&b""[..]));
            assert_eq!(log.len(), 1);
        }
        let log = Arc::new(Log::open_with(dir.path(), options(segment_bytes)).unwrap());
        assert_eq!(
            log.get(&key).as_deref(),
            Some(&b""[..]),
            "after reopen ({segment_bytes}-byte segments)"
        );
        let (l, k) = (Arc::clone(&log), key.clone());
        assert!(promptly("remove(largest key)", move || l.remove(&k)).unwrap());
        assert_eq!(log.get(&key), None);
    }
}

#[test]
fn a_too_long_key_returns_promptly_with_default_limits() {
    // No segment cap: a looping put would create 4 KiB segment files until the disk is full.
    // The watchdog stops it after a few dozen files by moving the directory away, which makes
    // the next segment creation fail and the call return.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let log = Arc::new(Log::open_with(&dir, Options::default().segment_bytes(4096)).unwrap());
    let files_before = segment_file_count(&dir);
    let (tx, rx) = mpsc::channel();
    let l = Arc::clone(&log);
    std::thread::spawn(move || {
        let _ = tx.send(l.put(&vec![b'K'; LONG_KEY], b""));
    });
    let started = Instant::now();
    let result = loop {
        if let Ok(result) = rx.recv_timeout(Duration::from_millis(10)) {
            break result;
        }
        let files = segment_file_count(&dir);
        if files > files_before + 32 || started.elapsed() > PROMPTLY {
            let aside = parent.path().join("stopped");
            std::fs::rename(&dir, &aside).unwrap();
            let ended = rx.recv_timeout(PROMPTLY);
            panic!(
                "put(5000-byte key, b\"\") into 4 KiB segments was still running after {:?} \
                 and had created {} segment files (it ended with {ended:?} once its directory \
                 was moved away)",
                started.elapsed(),
                files - files_before
            );
        }
    };
    assert_key_too_large("put with default limits", result, LONG_KEY, 4096);
    assert_eq!(segment_file_count(&dir), files_before);
}
