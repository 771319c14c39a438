//! Logs kept in the repository, as fjall keeps `test_fixture/`: a clean format-v1 log and
//! corrupt ones. Each is opened from a copy (recovery seals and zeroes damaged ranges, so a
//! fixture is never opened in place) and must give exactly the expected state and report.
//!
//! The fixtures were made by `generate_fixtures` (ignored; run it with `--ignored` to rebuild
//! them, then commit the result).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use seglog::{Log, Options};
use seglog_tests::{copy_fixture, fixture_dir, pattern, segment_path};

const SEGMENT_BYTES: u64 = 4096;

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .prefault(false)
}

/// The 60 puts every fixture starts from (keys 0..40, the first 20 overwritten once).
fn expected() -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut state = BTreeMap::new();
    for i in 0..60u64 {
        state.insert(
            format!("key-{:02}", i % 40).into_bytes(),
            pattern(9, i, (i * 13 % 150) as usize),
        );
    }
    state
}

fn state(log: &Log) -> BTreeMap<Vec<u8>, Vec<u8>> {
    log.iter().collect()
}

#[test]
#[ignore = "rebuilds the fixtures in tests/fixtures; run by hand"]
fn generate_fixtures() {
    let make = |name: &str| -> PathBuf {
        let dir = fixture_dir(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = Log::open_with(&dir, options()).unwrap();
        for i in 0..60u64 {
            log.put(
                format!("key-{:02}", i % 40).as_bytes(),
                &pattern(9, i, (i * 13 % 150) as usize),
            )
            .unwrap();
        }
        drop(log);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if matches!(
                seglog_format::LogFile::from_path(&path),
                Some(seglog_format::LogFile::Lock | seglog_format::LogFile::Hint(_))
            ) {
                std::fs::remove_file(path).unwrap();
            }
        }
        dir
    };
    make("v1-clean");
    // A torn tail: the last byte of the last record's value flipped.
    let dir = make("v1-torn-tail");
    let log = Log::open_with(&dir, options()).unwrap();
    let pinned = log.pin();
    let record = log.append_log().scan(pinned.guard()).last().unwrap();
    let shift = SEGMENT_BYTES.trailing_zeros();
    let last = segment_path(&dir, record.position >> shift);
    let value_end =
        (record.position & (SEGMENT_BYTES - 1)) as usize + record.record_bytes as usize - 8;
    drop(pinned);
    drop(log);
    let _ = std::fs::remove_file(dir.join(seglog_format::LOCK_FILE_NAME));
    let mut bytes = std::fs::read(&last).unwrap();
    let mut at = value_end;
    while bytes[at] == 0 {
        at -= 1; // Land on a value byte, not on alignment padding.
    }
    bytes[at] ^= 0xFF;
    std::fs::write(&last, bytes).unwrap();
    // A flipped bit in the middle of the first segment, a garbage file and a half-created segment.
    let dir = make("v1-damaged");
    let first = dir.join("0000000000000000.seg");
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[1000] ^= 0x04;
    std::fs::write(&first, bytes).unwrap();
    std::fs::write(dir.join("notes.txt"), b"not part of the log").unwrap();
    let next = segment_count(&dir);
    std::fs::write(segment_path(&dir, next), vec![0u8; 100]).unwrap();
}

fn segment_count(dir: &Path) -> u64 {
    seglog_tests::segment_file_count(dir)
}

#[test]
fn clean_v1_log_opens_to_its_state() {
    let work = copy_fixture("v1-clean");
    let log = Log::open_with(work.path(), options()).unwrap();
    let report = log.recovery_report();
    assert_eq!(report.records, 60);
    assert!(report.corrupt.is_empty() && report.holes == 0 && report.bytes_truncated == 0);
    assert_eq!(state(&log), expected());
    assert!(Log::open_with(copy_fixture("v1-clean").path(), options().strict(true)).is_ok());
}

#[test]
fn torn_tail_drops_only_the_torn_record() {
    let work = copy_fixture("v1-torn-tail");
    let strict = Log::open_with(work.path(), options().strict(true));
    assert!(
        matches!(strict, Err(seglog::Error::Corrupt { .. })),
        "{strict:?}"
    );
    let log = Log::open_with(work.path(), options()).unwrap();
    let report = log.recovery_report().clone();
    assert_eq!(report.records, 59);
    assert!(
        report.bytes_truncated > 0 || report.corrupt.len() == 1,
        "{report:?}"
    );
    // The torn record was the last put (i = 59, key-19); key-19's previous value returns.
    let mut want = expected();
    want.insert(b"key-19".to_vec(), pattern(9, 19, (19 * 13 % 150) as usize));
    assert_eq!(state(&log), want);
    log.put(b"new", b"after").unwrap();
    drop(log);
    let log = Log::open_with(work.path(), options()).unwrap();
    want.insert(b"new".to_vec(), b"after".to_vec());
    assert_eq!(state(&log), want);
}

#[test]
fn damaged_log_reports_each_problem_and_keeps_the_rest() {
    let work = copy_fixture("v1-damaged");
    let log = Log::open_with(work.path(), options()).unwrap();
    let report = log.recovery_report().clone();
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert!(report.corrupt[0].path.ends_with("0000000000000000.seg"));
    assert!(
        report.corrupt[0].offset <= 1000
            && 1000 < report.corrupt[0].offset + report.corrupt[0].bytes
    );
    assert_eq!(report.foreign_files, vec![work.path().join("notes.txt")]);
    assert_eq!(report.removed_partial_segments.len(), 1);
    // Every value present is the expected one; only keys of the damaged record may differ.
    let got = state(&log);
    let want = expected();
    let differing: Vec<_> = want
        .keys()
        .filter(|k| got.get(*k) != want.get(*k))
        .collect();
    assert!(
        differing.len() <= 1,
        "more than the damaged record changed: {differing:?}"
    );
    for (k, v) in &got {
        let i = std::str::from_utf8(&k[4..])
            .unwrap()
            .parse::<u64>()
            .unwrap();
        assert!(
            [i, i + 40]
                .iter()
                .any(|&n| n < 60 && *v == pattern(9, n, (n * 13 % 150) as usize)),
            "wrong value for {k:?}"
        );
    }
}
