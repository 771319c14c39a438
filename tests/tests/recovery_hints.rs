//! Hint files: reopening reads a sealed segment's hint instead of scanning it, and gives exactly
//! the same state; a missing, corrupt or foreign hint falls back to the scan.

use std::collections::BTreeMap;
use std::path::Path;

use seglog::{Log, Options};
use seglog_tests::{files_with_extension, key, pattern};

fn options() -> Options {
    Options::default().segment_bytes(64 * 1024)
}

fn fill(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let log = Log::open_with(dir, options()).unwrap();
    for i in 0..3_000u64 {
        log.put(
            &key(i % 7, i % 1_000),
            &pattern(i % 7, i, (i % 500) as usize),
        )
        .unwrap();
        if i % 13 == 0 {
            log.remove(&key((i + 3) % 7, (i / 2) % 1_000)).unwrap();
        }
    }
    log.write_hints().unwrap();
    log.iter().collect()
}

fn hint_files(dir: &Path) -> Vec<std::path::PathBuf> {
    files_with_extension(dir, "hint")
}

#[test]
fn reopen_with_hints_gives_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let before = fill(dir.path());
    let hints = hint_files(dir.path());
    assert!(hints.len() >= 10, "only {} hints", hints.len());

    let log = Log::open_with(dir.path(), options()).unwrap();
    let report = log.recovery_report().clone();
    assert_eq!(report.hinted_segments, hints.len() as u64);
    assert!(
        report.corrupt.is_empty() && report.foreign_files.is_empty(),
        "{report:?}"
    );
    let after: BTreeMap<_, _> = log.iter().collect();
    assert_eq!(before, after);
    assert_eq!(log.len(), before.len());
}

#[test]
fn a_bad_or_missing_hint_falls_back_to_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let before = fill(dir.path());
    let hints = hint_files(dir.path());
    // One hint corrupted, one truncated, one deleted, one swapped for another segment's.
    let mut bytes = std::fs::read(&hints[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&hints[0], &bytes).unwrap();
    let bytes = std::fs::read(&hints[1]).unwrap();
    std::fs::write(&hints[1], &bytes[..bytes.len() - 5]).unwrap();
    std::fs::remove_file(&hints[2]).unwrap();
    std::fs::copy(&hints[4], &hints[3]).unwrap();

    let log = Log::open_with(dir.path(), options()).unwrap();
    let report = log.recovery_report();
    assert_eq!(report.hinted_segments, hints.len() as u64 - 4);
    assert!(report.corrupt.is_empty(), "{report:?}");
    let after: BTreeMap<_, _> = log.iter().collect();
    assert_eq!(before, after);
}
