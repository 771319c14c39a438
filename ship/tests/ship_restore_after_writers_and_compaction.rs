//! Issue 18, done when: shipping under 4 writers with compaction, then restore. Four threads
//! put and remove over their own keys in 1 MiB segments (automatic compaction plus a thread
//! calling `compact` every 50 ms) while a `Shipper` runs rounds to a moto S3 server (and, in
//! the second test, to a `LocalFileSystem` directory); every request goes through an auditing
//! store that checks no manifest is put naming a missing object, no object a manifest names is
//! deleted, and no object is created twice.
//!
//! 1. The shipper stops while the writers go on. The restored log is the state of each
//!    writer's keys after a prefix of its writes holding every write returned before the last
//!    manifest's round and none started after it: exact bytes, nothing removed back, nothing
//!    later there.
//! 2. The log syncs and ships once more: the restored log is exactly the log's final state.
//! 3. A second restore into the same directory fails, saying it is not empty, and leaves it as
//!    it was.
//!
//! Sizes: `SEGLOG_SHIP_WRITE_MS` (default 2500) of writing, at most `SEGLOG_SHIP_OPS` (default
//! 8000) operations per writer.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Audited, Round, WriterConfig, Writers, check_prefix, check_remote};
use object_store::ObjectStore;
use object_store::path::Path;
use seglog::{Log, Options};
use seglog_ship::{ShipOptions, Shipper, restore};
use seglog_tests::moto::Moto;

const INTERVAL: Duration = Duration::from_millis(100);

async fn ship_writers_and_compaction_then_restore(store: Arc<dyn ObjectStore>, what: &str) {
    let prefix = Path::from("backups/log-a");
    let work = tempfile::tempdir().unwrap();
    let log_dir = work.path().join("log");
    let log =
        Arc::new(Log::open_with(&log_dir, Options::default().segment_bytes(1 << 20)).unwrap());
    let audited = Audited::new(Arc::clone(&store), prefix.clone());
    let options = ShipOptions {
        interval: INTERVAL,
        // 1 MiB segments go up in (one-part) multipart uploads, tail ranges in single puts.
        multipart_bytes: 512 << 10,
        part_bytes: 5 << 20,
        ..ShipOptions::default()
    };
    let mut shipper = Shipper::new(
        Arc::clone(&log),
        audited.clone() as Arc<dyn ObjectStore>,
        prefix.clone(),
        options,
    )
    .await
    .unwrap();

    let config = WriterConfig {
        max_ops: common::env_u64("SEGLOG_SHIP_OPS", 8000),
        // About 2,000 operations (2 MB) a second per writer: the writing lasts the rounds.
        pace: Some(Duration::from_millis(common::env_u64(
            "SEGLOG_SHIP_PACE_MS",
            6,
        ))),
        ..WriterConfig::default()
    };
    let write_for = Duration::from_millis(common::env_u64("SEGLOG_SHIP_WRITE_MS", 2500));
    let writers = Writers::start(&log, &config);
    let mut rounds: Vec<Round> = Vec::new();
    let began = Instant::now();
    while began.elapsed() < write_for
        && writers.count() < (config.writers * config.max_ops) as usize
    {
        let started = Instant::now();
        let report = match shipper.ship_once().await {
            Ok(report) => report,
            Err(e) => {
                let mut files: Vec<_> = std::fs::read_dir(&log_dir)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                files.sort();
                panic!(
                    "{what}: round {} failed: {e:?}; the log's files now: {files:?}; last \
                     manifest: {:?}",
                    rounds.len(),
                    shipper.manifest().map(|m| m
                        .segments
                        .iter()
                        .map(|s| (s.id, s.sealed))
                        .collect::<Vec<_>>())
                )
            }
        };
        rounds.push(Round {
            started,
            ended: Instant::now(),
            report,
        });
        tokio::time::sleep(INTERVAL).await;
    }
    // The shipper stops; the writers go on: what they write now is not in the last manifest.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let history = writers.stop();
    let last = rounds.last().expect("at least one round").report.manifest;
    let (returned_before, started_before) =
        common::manifest_bounds(&rounds, last).expect("the last manifest was published");
    let later = history
        .iter()
        .flatten()
        .filter(|op| op.started >= started_before)
        .count();
    assert!(
        later > 0,
        "the writers wrote nothing after the last manifest"
    );

    // 1. Restore the last manifest: the state at its frontier.
    let first = work.path().join("restored-1");
    let report = restore(Arc::clone(&store), &prefix, &first).await.unwrap();
    assert_eq!(report.manifest, last);
    let restored = Log::open_with(&first, Options::default().read_only(true)).unwrap();
    let state = common::state_of(&restored);
    let prefixes = match check_prefix(&state, &history, returned_before, started_before) {
        Ok(prefixes) => prefixes,
        Err(e) => {
            let _ = log.sync();
            let kept = work.keep();
            panic!(
                "{what}: restore of manifest {last}: {e} (kept {})",
                kept.display()
            )
        }
    };
    drop(restored);

    // 2. Sync, ship, restore: exactly the final state.
    log.sync().unwrap();
    let started = Instant::now();
    let report = shipper.ship_once().await.unwrap();
    rounds.push(Round {
        started,
        ended: Instant::now(),
        report,
    });
    assert!(report.wrote_manifest, "{report:?}");
    let second = work.path().join("restored-2");
    let restore_started = Instant::now();
    let restored_report = restore(Arc::clone(&store), &prefix, &second).await.unwrap();
    let restore_took = restore_started.elapsed();
    assert_eq!(restored_report.manifest, report.manifest);
    assert_eq!(restored_report.synced, log.synced_frontier());
    let expected = common::final_state(&history);
    assert_eq!(common::state_of(&log), expected, "{what}: the log itself");
    {
        let restored = Log::open_with(&second, Options::default().read_only(true)).unwrap();
        let state = common::state_of(&restored);
        assert_eq!(state.len(), expected.len(), "{what}: keys restored");
        assert!(
            state == expected,
            "{what}: the restored state differs from the log's"
        );
    }

    // 3. The same destination again: refused, and left as it was.
    let files_before = dir_listing(&second);
    let again = restore(Arc::clone(&store), &prefix, &second).await;
    let message = match again {
        Ok(report) => panic!("{what}: a restore into a non-empty directory succeeded: {report:?}"),
        Err(e) => e.to_string(),
    };
    assert!(message.contains("not empty"), "{message}");
    assert_eq!(dir_listing(&second), files_before);
    // It opens writable, as the user's own log.
    {
        let restored = Log::open_with(&second, Options::default()).unwrap();
        assert!(common::state_of(&restored) == expected);
        restored.put(b"after-restore", b"mine").unwrap();
        restored.close().unwrap();
    }

    // The protocol held on every request, and the remote copy is exactly the two newest
    // manifests' objects.
    let violations = audited.violations();
    assert!(violations.is_empty(), "{what}: {violations:#?}");
    let seqs = check_remote(&*store, &prefix, true).await;
    assert_eq!(seqs.last(), Some(&report.manifest));

    let stats = log.stats();
    let published = rounds.iter().filter(|r| r.report.wrote_manifest).count();
    let uploaded: u64 = rounds.iter().map(|r| r.report.objects_uploaded).sum();
    let bytes: u64 = rounds.iter().map(|r| r.report.bytes_uploaded).sum();
    let deleted: u64 = rounds.iter().map(|r| r.report.objects_deleted).sum();
    let adopted: u64 = rounds.iter().map(|r| r.report.objects_adopted).sum();
    eprintln!(
        "{what}: {} ops, {} rounds, {published} manifests, {uploaded} objects ({bytes} bytes) \
         uploaded, {adopted} adopted, {deleted} deleted; compaction retired {} segments; \
         first restore at prefixes {prefixes:?}, {later} writes after it; final restore of \
         {} objects ({} bytes) in {restore_took:?}",
        history.iter().map(Vec::len).sum::<usize>(),
        rounds.len(),
        stats.compaction.segments_reclaimed,
        restored_report.objects,
        restored_report.bytes,
    );
    assert!(
        stats.compaction.segments_reclaimed > 0,
        "{what}: compaction retired no segment: the test did not test it"
    );
    assert!(deleted > 0, "{what}: nothing was collected");
    assert_eq!(
        adopted, 0,
        "{what}: nothing was cut short, nothing to adopt"
    );
}

/// The names and sizes in a directory.
fn dir_listing(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ship_restore_after_writers_and_compaction_s3() {
    let _watchdog = common::watchdog("ship_restore_s3", Duration::from_secs(100));
    let moto = Moto::start();
    ship_writers_and_compaction_then_restore(moto.store(), "moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ship_restore_after_writers_and_compaction_local_fs() {
    let _watchdog = common::watchdog("ship_restore_local", Duration::from_secs(100));
    let remote = tempfile::tempdir().unwrap();
    let store = object_store::local::LocalFileSystem::new_with_prefix(remote.path()).unwrap();
    ship_writers_and_compaction_then_restore(Arc::new(store), "file").await;
}
