//! Removed keys leave the disk and the index: after most keys are removed, compaction passes
//! drop their tombstones (once the index has forgotten them and their segment is the oldest),
//! the index is rebuilt without them, and no removed key ever comes back — not in memory, not
//! after a reopen between passes, not after the last one.

use std::collections::BTreeMap;
use std::path::Path;

use seglog::{Log, Options};
use seglog_tests::pattern;

const KEYS: u64 = 4_000;
const KEPT: u64 = 100;
const SEGMENT_BYTES: u64 = 16 * 1024;

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .index_capacity(1024)
        .auto_compact(false)
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn check(log: &Log, expected: &BTreeMap<Vec<u8>, Vec<u8>>, context: &str) {
    for i in 0..KEYS {
        let key = key(i);
        let got = log.get(&key);
        assert_eq!(
            got.as_deref(),
            expected.get(&key).map(Vec::as_slice),
            "{context}: key {i}"
        );
    }
    assert_eq!(log.len(), expected.len(), "{context}: len");
    let listed: Vec<Vec<u8>> = log.iter().map(|(k, _)| k.to_vec()).collect();
    let wanted: Vec<Vec<u8>> = expected.keys().cloned().collect();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(listed_sorted, wanted, "{context}: iter");
}

fn fill_and_remove(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let log = Log::open_with(dir, options()).unwrap();
    let mut expected = BTreeMap::new();
    // Every key twice (the first versions dead at once), then all but KEPT removed.
    for generation in 0..2 {
        for i in 0..KEYS {
            let value = pattern(i, generation, 40 + (i % 50) as usize);
            log.put(&key(i), &value).unwrap();
            expected.insert(key(i), value);
        }
    }
    for i in KEPT..KEYS {
        assert!(log.remove(&key(i)).unwrap());
        expected.remove(&key(i));
    }
    check(&log, &expected, "after the removes");
    log.close().unwrap();
    expected
}

#[test]
fn tombstones_leave_disk_and_index_and_removed_keys_stay_removed() {
    let dir = tempfile::tempdir().unwrap();
    let expected = fill_and_remove(dir.path());

    let mut passes = 0;
    let mut last_segments = u64::MAX;
    let mut stable = 0;
    let mut dropped = 0;
    loop {
        let log = Log::open_with(dir.path(), options()).unwrap();
        check(&log, &expected, &format!("reopen before pass {passes}"));
        for _ in 0..8 {
            log.compact().unwrap();
            passes += 1;
            check(&log, &expected, &format!("after pass {passes}"));
        }
        let stats = log.stats();
        dropped += stats.compaction.tombstones_dropped;
        log.close().unwrap();
        if stats.segments >= last_segments {
            stable += 1;
        } else {
            stable = 0;
        }
        last_segments = stats.segments;
        if stable >= 2 || passes > 400 {
            break;
        }
    }

    let log = Log::open_with(dir.path(), options()).unwrap();
    check(&log, &expected, "final reopen");
    for _ in 0..8 {
        log.compact().unwrap();
    }
    let stats = log.stats();
    eprintln!("after {passes} passes: {stats:?}");
    // Most tombstones were dropped by the sweep; the others went with segments they shared
    // with the puts they removed. What is left beside the live records is at most the
    // tombstones too few for a rebuild of the index to forget (an eighth of its slots, which
    // it keeps as current entries until more come): no dead put, and no more than that.
    assert!(
        dropped >= (KEYS - KEPT) / 2,
        "{dropped} tombstones dropped: {stats:?}"
    );
    // A tombstone of a 10-byte key: the 40-byte header and the key, padded to 8.
    let tombstone = 56;
    assert!(
        stats.dead_bytes <= stats.index_capacity / 8 * tombstone,
        "dead records left: {stats:?}"
    );
    assert_eq!(
        stats.dead_bytes % tombstone,
        0,
        "only tombstones are left: {stats:?}"
    );
    assert_eq!(stats.keys, KEPT);
    // What is left: the live keys' records, and at most the tombstones of the two youngest
    // segments (the tail and the one before it, which are never the oldest while others
    // exist), plus the tail being filled.
    let live_records = KEPT * 128;
    assert!(
        stats.segments * SEGMENT_BYTES <= 2 * live_records + 4 * SEGMENT_BYTES,
        "disk not reclaimed: {stats:?}"
    );
    check(&log, &expected, "after the final passes");
    log.close().unwrap();
    let log = Log::open_with(dir.path(), options()).unwrap();
    check(&log, &expected, "last reopen");
}

/// A relocation's copy of a removed key's put that landed after the key's tombstone, left
/// unrepaired by a crash (`Log::__append_copy_of` writes exactly that), is repaired at open:
/// sweeping the log and dropping tombstones never brings the key back, by what recovery would
/// find after every pass.
#[test]
fn an_unrepaired_copy_after_a_tombstone_is_repaired_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = || {
        Options::default()
            .segment_bytes(4096)
            .index_capacity(1024)
            .auto_compact(false)
    };
    let fillers = |log: &Log, generation: u64| {
        for i in 0..200 {
            log.put(&key(i), &pattern(i, generation, 40)).unwrap();
        }
    };
    {
        let log = Log::open_with(dir.path(), options()).unwrap();
        log.put(b"victim", b"the removed value").unwrap();
        let put_at = log.pin().get_record(b"victim").unwrap().position;
        assert!(log.remove(b"victim").unwrap());
        fillers(&log, 0);
        // Keys never overwritten around the copy: its segment stays live, so no pass takes it
        // with the tombstone's.
        let keepers = |range: std::ops::Range<u64>| {
            for i in range {
                log.put(format!("keeper-{i}").as_bytes(), &pattern(i, 9, 40))
                    .unwrap();
            }
        };
        keepers(0..40);
        let copy_at = log.__append_copy_of(put_at).unwrap();
        assert!(
            copy_at / 4096 > put_at / 4096,
            "the copy is in a later segment"
        );
        keepers(40..80);
        fillers(&log, 1);
        assert_eq!(log.get(b"victim"), None);
        // Nothing repairs the order on the way down: the next open finds it as a crash left it.
        log.sync().unwrap();
        drop(log);
    }
    let mut dropped = 0;
    for round in 0..6 {
        let log = Log::open_with(dir.path(), options()).unwrap();
        assert_eq!(log.get(b"victim"), None, "round {round}: reopened");
        for i in 0..200 {
            assert_eq!(log.get(&key(i)), Some(pattern(i, 1 + round, 40)));
        }
        fillers(&log, 2 + round);
        // Enough removed keys that compaction's pass rebuilds the index without them (a
        // quarter of its slots), forgetting the victim's tombstone too.
        for i in 0..600 {
            let temporary = format!("temporary-{i}");
            log.put(temporary.as_bytes(), b"soon gone").unwrap();
            assert!(log.remove(temporary.as_bytes()).unwrap());
        }
        for pass in 0..40 {
            log.compact().unwrap();
            let recovered = log.__recovered_state();
            assert!(
                !recovered.contains_key(b"victim".as_slice()),
                "round {round}, pass {pass}: recovery would bring the removed key back"
            );
            assert_eq!(recovered.len(), 280);
        }
        dropped += log.stats().compaction.tombstones_dropped;
        log.close().unwrap();
    }
    assert!(dropped > 0, "the sweep dropped tombstones");
}

/// A bulk delete: every key of ten segments removed. Compaction retires those segments without
/// relocating anything (nothing in them is live), and then drops the tombstones from the
/// oldest end; the log ends as small as an empty one, and stays empty after a reopen.
#[test]
fn a_bulk_delete_is_reclaimed_without_relocating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path(), options()).unwrap();
    for i in 0..KEYS {
        log.put(&key(i), &pattern(i, 0, 60)).unwrap();
    }
    let segments_full = log.stats().segments;
    for i in 0..KEYS {
        assert!(log.remove(&key(i)).unwrap());
    }
    // Retired segments leave once no thread of the process is pinned where it could reach
    // them (other tests' threads included, under `cargo test`): pass until they are gone, with
    // a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut relocated = 0;
    while std::time::Instant::now() < deadline {
        log.compact().unwrap();
        relocated = log.stats().compaction.records_relocated;
        if log.stats().segments <= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let stats = log.stats();
    assert!(segments_full > 10, "{segments_full} segments of puts");
    assert!(stats.segments <= 3, "not reclaimed: {stats:?}");
    assert_eq!(relocated, 0, "a bulk delete relocated records: {stats:?}");
    assert!(stats.compaction.tombstones_dropped > 0, "{stats:?}");
    assert_eq!((stats.keys, stats.live_bytes), (0, 0));
    log.close().unwrap();
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_eq!(log.len(), 0);
    assert_eq!(log.iter().count(), 0);
    for i in (0..KEYS).step_by(7) {
        assert_eq!(log.get(&key(i)), None);
    }
}
