//! Write batches and conditional writes (issue 16) as a database uses them: the API's own
//! example, a batch's last operation on a key winning, versions, what a failed comparison
//! leaves (nothing), and both surviving reopen (scan and hints), compaction and a crash image.

use std::collections::BTreeMap;

use seglog::sim::SimDisk;
use seglog::{Batch, Error, Log, Options, SyncPolicy};

fn options() -> Options {
    Options::default()
        .segment_bytes(64 * 1024)
        .auto_compact(false)
}

fn contents(log: &Log) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let view = log.pin();
    view.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

#[test]
fn the_issue_example_holds() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path(), options()).unwrap();
    log.put(b"idx/old", b"3").unwrap();
    let mut batch = Batch::new();
    batch
        .put(b"row/7", b"...")
        .remove(b"idx/old")
        .put(b"idx/new", b"7");
    assert_eq!(batch.len(), 3);
    let version: u64 = log.write_batch(&batch).unwrap();
    assert_eq!(log.version(b"row/7"), Some(version));
    assert_eq!(log.version(b"idx/new"), Some(version));
    assert_eq!(log.version(b"idx/old"), None);
    assert_eq!(log.get(b"row/7").as_deref(), Some(&b"..."[..]));
    assert_eq!(log.get(b"idx/old"), None);
    // A scan in log order (what `seglog dump` and `seglog export` read) sees the batch's
    // members as the puts and tombstones they stand for, at the batch's version.
    {
        let guard = seglog::pin();
        let members: Vec<_> = log
            .append_log()
            .scan(&guard)
            .filter(|record| record.version == version)
            .map(|record| (record.kind, record.key.to_vec(), record.value.to_vec()))
            .collect();
        assert_eq!(
            members,
            vec![
                (seglog::RecordKind::Put, b"row/7".to_vec(), b"...".to_vec()),
                (
                    seglog::RecordKind::Tombstone,
                    b"idx/old".to_vec(),
                    Vec::new()
                ),
                (seglog::RecordKind::Put, b"idx/new".to_vec(), b"7".to_vec()),
            ]
        );
    }

    let v1 = log.compare_and_put(b"lease", None, b"owner-a").unwrap();
    let v2 = log.compare_and_put(b"lease", Some(v1), b"owner-b").unwrap();
    assert!(v2 > v1);
    match log.compare_and_put(b"lease", Some(v1), b"owner-c") {
        Err(Error::VersionMismatch { current }) => assert_eq!(current, Some(v2)),
        other => panic!("{other:?}"),
    }
    match log.compare_and_put(b"lease", None, b"owner-d") {
        Err(Error::VersionMismatch { current }) => assert_eq!(current, Some(v2)),
        other => panic!("{other:?}"),
    }
    match log.compare_and_remove(b"lease", v1) {
        Err(Error::VersionMismatch { current }) => assert_eq!(current, Some(v2)),
        other => panic!("{other:?}"),
    }
    log.compare_and_remove(b"lease", v2).unwrap();
    assert_eq!(log.get(b"lease"), None);
    match log.compare_and_remove(b"lease", v2) {
        Err(Error::VersionMismatch { current }) => assert_eq!(current, None),
        other => panic!("{other:?}"),
    }
    // Absent again: "only if absent" succeeds once more.
    let v3 = log.compare_and_put(b"lease", None, b"owner-e").unwrap();
    assert_eq!(log.version(b"lease"), Some(v3));
    assert_eq!(log.get(b"lease").as_deref(), Some(&b"owner-e"[..]));
}

#[test]
fn a_batch_keeps_the_last_operation_on_each_key_and_an_empty_one_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path(), options()).unwrap();
    let before = log.stats();
    assert_eq!(log.write_batch(&Batch::new()).unwrap(), 0);
    assert_eq!(
        log.stats().bytes,
        before.bytes,
        "an empty batch writes nothing"
    );
    let mut batch = Batch::new();
    batch
        .put(b"a", b"1")
        .put(b"b", b"1")
        .remove(b"a")
        .put(b"b", b"2")
        .put(b"c", b"x")
        .remove(b"c")
        .put(b"c", b"3");
    let version = log.write_batch(&batch).unwrap();
    assert_eq!(log.get(b"a"), None);
    assert_eq!(log.get(b"b").as_deref(), Some(&b"2"[..]));
    assert_eq!(log.get(b"c").as_deref(), Some(&b"3"[..]));
    assert_eq!(log.version(b"c"), Some(version));
    assert_eq!(log.len(), 2);
}

#[test]
fn a_batch_larger_than_a_segment_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path(), options()).unwrap();
    let before = log.stats();
    let mut batch = Batch::new();
    for i in 0..100u32 {
        batch.put(&i.to_le_bytes(), &[7u8; 1000]);
    }
    match log.write_batch(&batch) {
        Err(
            e @ Error::BatchTooLarge {
                operations: 100, ..
            },
        ) => {
            assert!(e.to_string().contains("split it"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(log.stats().bytes, before.bytes);
    assert!(log.is_empty());
}

/// A log holding batches, conditional writes that succeeded and many that failed, with the
/// exact state a user expects.
fn write_history(log: &Log) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut expected = BTreeMap::new();
    for round in 0..200u32 {
        let mut batch = Batch::new();
        for k in 0..8u32 {
            let key = format!("batch/{}", (round * 3 + k) % 97).into_bytes();
            if (round + k) % 5 == 0 {
                batch.remove(&key);
                expected.remove(&key);
            } else {
                let value = format!("r{round}k{k}").repeat(10).into_bytes();
                batch.put(&key, &value);
                expected.insert(key, value);
            }
        }
        log.write_batch(&batch).unwrap();
        let key = format!("cas/{}", round % 13).into_bytes();
        let current = log.version(&key);
        // A stale expectation fails and leaves nothing.
        let stale = current.map_or(Some(1), |v| Some(v + 1));
        let failed = format!("FAILED-{round}").into_bytes();
        assert!(matches!(
            log.compare_and_put(&key, stale, &failed),
            Err(Error::VersionMismatch { current: c }) if c == current
        ));
        let value = format!("cas-{round}").into_bytes();
        log.compare_and_put(&key, current, &value).unwrap();
        expected.insert(key, value);
    }
    expected
}

#[test]
fn batches_and_conditional_writes_survive_reopen_hints_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let log = Log::open_with(dir.path(), options()).unwrap();
        let expected = write_history(&log);
        assert_eq!(contents(&log), expected);
        log.close().unwrap();
        expected
    };
    // With hints (close wrote them), then without.
    for hints in [true, false] {
        if !hints {
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "hint") {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
        let log = Log::open_with(dir.path(), options()).unwrap();
        assert_eq!(log.recovery_report().hinted_segments > 0, hints);
        assert!(
            log.recovery_report().corrupt.is_empty(),
            "{:?}",
            log.recovery_report()
        );
        assert_eq!(contents(&log), expected, "hints: {hints}");
        for value in contents(&log).values() {
            assert!(
                !value.starts_with(b"FAILED"),
                "a failed comparison came back"
            );
        }
        log.close().unwrap();
    }
    // Compacted (relocating batch members as plain records), then reopened.
    {
        let log = Log::open_with(dir.path(), options().compact_live_ratio(0.99)).unwrap();
        log.compact().unwrap();
        assert_eq!(contents(&log), expected);
        log.close().unwrap();
    }
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_eq!(contents(&log), expected);
}

/// Power loss (a simulated disk: every page written since its last sync may be lost or torn,
/// `seglog::sim`), with automatic compaction relocating batch members in 8 KiB segments.
#[test]
fn every_crash_image_holds_whole_batches_and_no_failed_comparison() {
    let disk = SimDisk::new();
    let options = Options::default()
        .segment_bytes(8 * 1024)
        .sync_policy(SyncPolicy::Never);
    let log = Log::open_sim(&disk, options.clone()).unwrap();
    let mut synced_round = None;
    for round in 0..400u32 {
        let mut batch = Batch::new();
        for k in 0..6u32 {
            batch.put(format!("k{k}").as_bytes(), format!("{round:04}").as_bytes());
        }
        // A key of this batch alone, never overwritten: its segment stays partly live, so
        // compaction relocates it (a member copied as a plain record).
        batch.put(
            format!("u{round:04}").as_bytes(),
            format!("{round:04}").as_bytes(),
        );
        log.write_batch(&batch).unwrap();
        let _ = log.compare_and_put(b"cas", Some(u64::MAX), b"FAILED");
        if round % 7 == 0 {
            log.sync().unwrap();
            synced_round = Some(round);
        }
    }
    assert!(
        log.stats().compaction.records_relocated > 0,
        "compaction relocated batch members: {:?}",
        log.stats().compaction
    );
    let state = disk.snapshot();
    drop(log);
    let scratch = tempfile::tempdir().unwrap();
    for seed in 0..40 {
        let dir = scratch.path().join(format!("image-{seed}"));
        state.image(seed).write_to(&dir).unwrap();
        let log = Log::open_with(&dir, options.clone()).unwrap();
        // Every key of the batch holds the same round: a whole batch, never a mix.
        let rounds: Vec<_> = (0..6u32)
            .map(|k| log.get(format!("k{k}").as_bytes()))
            .collect();
        assert!(
            rounds.windows(2).all(|w| w[0] == w[1]),
            "image {seed}: a torn batch: {rounds:?}"
        );
        // Nothing synced is lost.
        let round: Option<u32> = rounds[0]
            .as_ref()
            .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap());
        assert!(
            round >= synced_round,
            "image {seed}: round {round:?} < synced {synced_round:?}"
        );
        // The batch the `k` keys show holds its own key too, and no later batch is there at
        // all; every synced batch is.
        let round = round.expect("a synced batch exists");
        for r in 0..400u32 {
            let own = log.get(format!("u{r:04}").as_bytes());
            if r == round || synced_round.is_some_and(|synced| r <= synced) {
                assert_eq!(
                    own,
                    Some(format!("{r:04}").into_bytes()),
                    "image {seed}: batch {r}"
                );
            }
            if r > round {
                assert_eq!(
                    own, None,
                    "image {seed}: batch {r} is there in part (k at {round})"
                );
            }
        }
        assert_eq!(
            log.get(b"cas"),
            None,
            "image {seed}: a failed comparison came back"
        );
    }
}
