//! A missing or unreadable segment right after the recovered tail does not stop the log: the
//! directory holds segment `s` with records, no usable `s + 1` (deleted, or garbage that
//! recovery sets aside as `.seg.corrupt`), and `s + 2` present and empty (the segment a log
//! creates ahead of need). Reopening succeeds, every record up to `s` reads back exactly, the
//! records of the lost segment are gone (and nothing else), writes that roll over several
//! segments complete, and a second reopen shows all of it.
//!
//! Why: recovery resumes writing after the last record of `s`, but counts segment ids as
//! claimed up to the highest file found. The first roll-over then waits for `s + 1`, which
//! nobody will ever create, and every writer after it waits behind that roll-over. A put that
//! does not finish within [`TIMEOUT`] fails the test.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use seglog::{Log, Options};
use seglog_tests::{SplitMix64, key, pattern, segment_path};

const SEGMENT_BYTES: u64 = 4096;
/// Generous for a few hundred puts; the writes hang forever if the bug is there.
const TIMEOUT: Duration = Duration::from_secs(10);

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .prefault(false)
        // Nothing may move records around: the test knows which segment holds which key.
        .auto_compact(false)
}

fn segment_of(position: u64) -> u64 {
    position >> SEGMENT_BYTES.trailing_zeros()
}

/// Writes unique keys until the log's tail is in segment 5 (segments 0 to 5 hold records, 6 is
/// the one created ahead of need). Returns each key's value and segment.
fn fill(dir: &Path) -> BTreeMap<Vec<u8>, (Vec<u8>, u64)> {
    let log = Log::open_with(dir, options()).unwrap();
    let mut written = BTreeMap::new();
    let mut seq = 0;
    while segment_of(log.append_log().tail_position()) < 5 {
        let (k, v) = (key(0, seq), pattern(0, seq, 100 + (seq % 50) as usize));
        // A fresh record's version is its position.
        let position = log.put(&k, &v).unwrap();
        written.insert(k, (v, segment_of(position)));
        seq += 1;
    }
    // A few records in segment 5 too, so the lost segment is not empty.
    for _ in 0..5 {
        let (k, v) = (key(0, seq), pattern(0, seq, 100));
        let position = log.put(&k, &v).unwrap();
        written.insert(k, (v, segment_of(position)));
        seq += 1;
    }
    assert_eq!(segment_of(log.append_log().tail_position()), 5);
    drop(log);
    for id in 0..=6 {
        assert!(segment_path(dir, id).exists(), "segment {id} should exist");
    }
    assert!(!segment_path(dir, 7).exists());
    written
}

/// Runs `work` on its own thread and fails the test if it does not finish within [`TIMEOUT`]
/// (a hung writer is left behind; the test process ends without it).
fn within_timeout<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: timed out after {TIMEOUT:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// Reopens the damaged directory (segment 5 lost, 6 empty: the gap is right after the tail
/// segment 4), checks what survived, writes a few hundred records across several segments,
/// and reopens again.
fn reopen_write_and_reopen(dir: &Path, mut written: BTreeMap<Vec<u8>, (Vec<u8>, u64)>) {
    // The records of the lost segment are gone; everything up to segment 4 must be there.
    written.retain(|_, (_, segment)| *segment <= 4);
    let expected: BTreeMap<Vec<u8>, Vec<u8>> =
        written.into_iter().map(|(k, (v, _))| (k, v)).collect();

    let log = Log::open_with(dir, options()).unwrap();
    let state: BTreeMap<_, _> = log.iter().collect();
    assert!(
        state == expected,
        "after reopen: {} keys, {} expected",
        state.len(),
        expected.len()
    );
    for (k, v) in &expected {
        assert_eq!(log.get(k).as_ref(), Some(v));
    }

    // 300 puts of ~200 bytes: about 15 roll-overs.
    let (log, mut expected) = within_timeout("300 puts after the reopen", move || {
        let mut expected = expected;
        let mut rng = SplitMix64::new(3);
        for seq in 0..300 {
            let (k, v) = (key(1, seq), pattern(1, seq, rng.range(150, 250) as usize));
            log.put(&k, &v).unwrap();
            expected.insert(k, v);
        }
        (log, expected)
    });
    assert!(log.append_log().stats().rollovers >= 10);
    let state: BTreeMap<_, _> = log.iter().collect();
    assert!(state == expected, "after the puts");
    drop(log);

    let log = Log::open_with(dir, options()).unwrap();
    let state: BTreeMap<_, _> = log.iter().collect();
    assert!(
        state == expected,
        "after the second reopen: {} keys, {} expected",
        state.len(),
        expected.len()
    );
    // And the log keeps taking writes.
    let log = within_timeout("a put after the second reopen", move || {
        log.put(b"last", b"value").unwrap();
        log
    });
    expected.insert(b"last".to_vec(), b"value".to_vec());
    assert_eq!(log.iter().collect::<BTreeMap<_, _>>(), expected);
}

#[test]
fn a_deleted_segment_after_the_tail_does_not_hang_writers() {
    let dir = tempfile::tempdir().unwrap();
    let written = fill(dir.path());
    std::fs::remove_file(segment_path(dir.path(), 5)).unwrap();
    reopen_write_and_reopen(dir.path(), written);
}

#[test]
fn an_unreadable_segment_after_the_tail_does_not_hang_writers() {
    let dir = tempfile::tempdir().unwrap();
    let written = fill(dir.path());
    // Garbage over the whole file, header included: nothing in it can be salvaged, so recovery
    // renames it aside (`.seg.corrupt`) and segment id 5 is missing from the log.
    let mut rng = SplitMix64::new(99);
    let garbage: Vec<u8> = (0..SEGMENT_BYTES / 8)
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    std::fs::write(segment_path(dir.path(), 5), garbage).unwrap();
    reopen_write_and_reopen(dir.path(), written);
    assert!(
        dir.path().join("0000000000000005.seg.corrupt").exists(),
        "the garbage segment was set aside"
    );
}
