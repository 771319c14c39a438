//! A checkpoint shares its sealed segment files with the source (hard links), so each log must
//! never rewrite a file in place while the other still names it. Here the checkpoint is opened
//! and written hard (overwrites, so its compaction retires and would recycle the shared files),
//! then the source must reopen exactly as it was, byte for byte; and the other way round, the
//! source writes on and the checkpoint must reopen as it was taken.

use std::collections::BTreeMap;

use seglog::{Log, Options};
use seglog_tests::pattern;

fn options() -> Options {
    Options::default()
        .segment_bytes(16 * 1024)
        .compact_dead_bytes(32 * 1024)
}

fn fill(log: &Log, round: u64, keys: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut state = BTreeMap::new();
    for i in 0..keys {
        let k = format!("key-{i}").into_bytes();
        let v = pattern(round, i, 100 + (i as usize * 7) % 500);
        log.put(&k, &v).unwrap();
        state.insert(k, v);
    }
    state
}

fn contents(log: &Log) -> BTreeMap<Vec<u8>, Vec<u8>> {
    log.iter().collect()
}

#[test]
fn writing_either_log_never_changes_the_other() {
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().unwrap();
    let (source_dir, copy_dir) = (root.path().join("source"), root.path().join("copy"));
    let source = Log::open_with(&source_dir, options()).unwrap();
    let mut expected = BTreeMap::new();
    for round in 0..4 {
        expected = fill(&source, round, 300);
    }
    source.checkpoint(&copy_dir).unwrap();
    let linked = seglog_tests::files_with_extension(&copy_dir, "seg")
        .into_iter()
        .filter(|p| std::fs::metadata(p).unwrap().nlink() > 1)
        .count();
    assert!(linked > 0, "the checkpoint linked no segment");

    // The copy writes, compacts and recycles while the source is open.
    let copy = Log::open_with(&copy_dir, options()).unwrap();
    assert_eq!(contents(&copy), expected);
    let mut copy_expected = BTreeMap::new();
    for round in 10..30 {
        copy_expected = fill(&copy, round, 300);
        copy.compact().unwrap();
    }
    assert!(copy.stats().compaction.segments_reclaimed > 0);
    // And the source too, past the files it shares.
    let mut source_expected = BTreeMap::new();
    for round in 40..60 {
        source_expected = fill(&source, round, 300);
        source.compact().unwrap();
    }
    assert!(source.stats().compaction.segments_reclaimed > 0);
    copy.close().unwrap();
    source.close().unwrap();

    let source = Log::open_with(&source_dir, options()).unwrap();
    assert!(source.recovery_report().corrupt.is_empty());
    assert_eq!(contents(&source), source_expected);
    let copy = Log::open_with(&copy_dir, options()).unwrap();
    assert!(copy.recovery_report().corrupt.is_empty());
    assert_eq!(contents(&copy), copy_expected);
}
