//! The index an open builds in bulk (`Index::from_bulk`) is the one the live log built by
//! upserts: same value for every key, same live count, same live bytes, whether segments are
//! read from hints, scanned, or both (a damaged hint falling back to a scan); with overwritten
//! keys, tombstones, removed-then-rewritten keys and relocation copies (same version, another
//! address).

use std::collections::BTreeMap;
use std::path::Path;

use seglog::{Log, Options};
use seglog_tests::{SplitMix64, files_with_extension, key, pattern};

fn options() -> Options {
    Options::default()
        .segment_bytes(64 * 1024)
        .auto_compact(false)
}

/// What the live log shows: every key's value, its live count and live bytes.
#[derive(Debug, PartialEq)]
struct State {
    values: BTreeMap<Vec<u8>, Vec<u8>>,
    len: usize,
    live_bytes: u64,
}

fn state(log: &Log) -> State {
    let values: BTreeMap<_, _> = log.iter().collect();
    // Exact `get` bytes too, not only what the iterator reads.
    for (k, v) in &values {
        assert_eq!(log.get(k).as_deref(), Some(&v[..]));
    }
    State {
        len: log.len(),
        live_bytes: log.stats().live_bytes,
        values,
    }
}

/// Fills a log with overwrites, removes, rewrites after removes and relocations, keeping a
/// model; returns the state the live log shows before it is dropped.
fn fill(dir: &Path, seed: u64, ops: u64, hint_every: Option<u64>) -> State {
    let log = Log::open_with(dir, options()).unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut rng = SplitMix64::new(seed);
    let mut relocated = 0;
    for i in 0..ops {
        let k = key(rng.range(0, 4), rng.range(0, 300));
        match rng.range(0, 10) {
            0..=5 => {
                let value = pattern(seed, i, rng.range(0, 400) as usize);
                log.put(&k, &value).unwrap();
                model.insert(k, value);
            }
            6 | 7 => {
                assert_eq!(log.remove(&k).unwrap(), model.remove(&k).is_some());
            }
            _ => {
                // A relocation copy: same version at a higher address; the original stays in
                // its segment, so the open sees both.
                let moved = log.__relocate(&k).unwrap();
                if moved.is_some() {
                    relocated += 1;
                }
            }
        }
        if hint_every.is_some_and(|every| i % every == every - 1) {
            log.write_hints().unwrap();
        }
    }
    assert!(relocated > ops / 50, "only {relocated} relocations");
    let before = state(&log);
    assert_eq!(before.values, model);
    assert_eq!(before.len, model.len());
    before
}

fn reopen(dir: &Path) -> (State, seglog::RecoveryReport) {
    let log = Log::open_with(dir, options()).unwrap();
    let report = log.recovery_report().clone();
    (state(&log), report)
}

#[test]
fn scanned_open_builds_the_live_index() {
    for seed in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let before = fill(dir.path(), seed, 6_000, None);
        let (after, report) = reopen(dir.path());
        assert_eq!(report.hinted_segments, 0);
        assert!(report.segments > 5, "{report:?}");
        assert_eq!(before, after, "seed {seed}");
    }
}

#[test]
fn hinted_open_builds_the_live_index() {
    for seed in 4..=6 {
        let dir = tempfile::tempdir().unwrap();
        let before = fill(dir.path(), seed, 6_000, Some(1_000));
        let log = Log::open_with(dir.path(), options()).unwrap();
        // `close` hints every sealed segment: the next open scans only the tail (and may find
        // an empty segment made ahead of need after it).
        log.close().unwrap();
        let (after, report) = reopen(dir.path());
        assert!(report.hinted_segments + 2 >= report.segments, "{report:?}");
        assert_eq!(before, after, "seed {seed}");
    }
}

#[test]
fn mixed_and_damaged_hints_build_the_live_index() {
    let dir = tempfile::tempdir().unwrap();
    let before = fill(dir.path(), 7, 8_000, Some(700));
    let hints = files_with_extension(dir.path(), "hint");
    assert!(hints.len() >= 8, "only {} hints", hints.len());
    // Some segments scanned (hint gone), some with a damaged hint (scanned instead), the rest
    // from their hints.
    std::fs::remove_file(&hints[1]).unwrap();
    let mut bytes = std::fs::read(&hints[3]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&hints[3], &bytes).unwrap();
    let bytes = std::fs::read(&hints[5]).unwrap();
    std::fs::write(&hints[5], &bytes[..bytes.len() - 3]).unwrap();
    let (after, report) = reopen(dir.path());
    assert_eq!(report.hinted_segments, hints.len() as u64 - 3, "{report:?}");
    assert!(report.corrupt.is_empty(), "{report:?}");
    assert_eq!(before, after);

    // And again, with the hints the first reopen left (the damaged ones were removed).
    let (again, _) = reopen(dir.path());
    assert_eq!(before, again);
}

#[test]
fn a_damaged_hinted_segment_is_scanned_and_the_index_is_what_a_scan_builds() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 8, 5_000, None);
    {
        let log = Log::open_with(dir.path(), options()).unwrap();
        log.close().unwrap();
    }
    // Flip a value byte in a hinted segment: its checksum no longer matches the hint, so the
    // segment is scanned and the damaged record skipped, exactly as without hints.
    let segment = seglog_tests::segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();

    let scanned = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.extension().is_some_and(|e| e == "seg") {
            std::fs::copy(&path, scanned.path().join(name)).unwrap();
        }
    }
    let (with_hints, hinted_report) = reopen(dir.path());
    let (without, scanned_report) = reopen(scanned.path());
    assert!(hinted_report.hinted_segments > 0);
    assert_eq!(scanned_report.hinted_segments, 0);
    assert_eq!(hinted_report.corrupt.len(), scanned_report.corrupt.len());
    assert_eq!(with_hints, without);
}

#[test]
fn removed_keys_stay_removed_and_rewritten_keys_win() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open_with(dir.path(), options()).unwrap();
        for round in 0..5u64 {
            for i in 0..400u64 {
                log.put(&key(0, i), &pattern(round, i, 100)).unwrap();
            }
            for i in (0..400u64).filter(|i| i % 3 == round % 3) {
                log.remove(&key(0, i)).unwrap();
            }
        }
        // Removed, then written again: the later put wins over the tombstone.
        log.put(&key(0, 0), b"back").unwrap();
        log.close().unwrap();
    }
    let log = Log::open_with(dir.path(), options()).unwrap();
    for i in 0..400u64 {
        let expected = if i == 0 {
            Some(b"back".to_vec())
        } else if i % 3 == 1 {
            None
        } else {
            Some(pattern(4, i, 100))
        };
        assert_eq!(log.get(&key(0, i)), expected, "key {i}");
    }
    assert_eq!(log.len(), (0..400u64).filter(|i| i % 3 != 1).count());
}
