//! Issue 18, done when: a restore during shipping. Four writers put and remove in 1 MiB
//! segments with compaction running while a shipper publishes a manifest every 100 ms to moto
//! and collects the objects older manifests named. Restores run meanwhile, one after another,
//! each reading through a store that makes every read 150 ms slower, so a restore spans several
//! rounds and the garbage collection of objects it was about to read (it then goes on toward
//! the newest manifest from the segments it already has). Each restored log opens and holds a state the log was in: every write
//! returned before the round of the manifest it restored (guarantee 13), exact bytes, nothing removed back,
//! nothing written after that round.
//!
//! Sizes: at least `SEGLOG_SHIP_RESTORES` (default 4) restores, for at least
//! `SEGLOG_SHIP_RESTORE_MS` (default 3000).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Audited, Delayed, Shipping, WriterConfig, Writers, check_prefix, check_remote};
use object_store::ObjectStore;
use object_store::path::Path;
use seglog::{Log, Options};
use seglog_ship::{ShipOptions, Shipper, restore};
use seglog_tests::moto::Moto;

const INTERVAL: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_during_shipping_hold_a_state_the_log_was_in() {
    let _watchdog = common::watchdog("restore_during_shipping", Duration::from_secs(100));
    let moto = Moto::start();
    let store = moto.store();
    let prefix = Path::from("db/primary");
    let work = tempfile::tempdir().unwrap();
    let log = Arc::new(
        Log::open_with(
            work.path().join("log"),
            Options::default().segment_bytes(1 << 20),
        )
        .unwrap(),
    );
    let audited = Audited::new(Arc::clone(&store), prefix.clone());
    let shipper = Shipper::new(
        Arc::clone(&log),
        audited.clone() as Arc<dyn ObjectStore>,
        prefix.clone(),
        ShipOptions {
            interval: INTERVAL,
            ..ShipOptions::default()
        },
    )
    .await
    .unwrap();
    let writers = Writers::start(
        &log,
        &WriterConfig {
            pace: Some(Duration::from_millis(8)),
            max_ops: 1_000_000,
            ..WriterConfig::default()
        },
    );
    // Something to restore first.
    while log.synced_frontier().offset == 0 && log.synced_frontier().segment == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shipping = Shipping::start(shipper, INTERVAL);
    // A few segments to restore first.
    shipping.wait_for_manifest(3, Duration::from_secs(20)).await;

    let slow = Delayed::new(Arc::clone(&store), Duration::from_millis(150));
    let restores = common::env_u64("SEGLOG_SHIP_RESTORES", 4);
    let restore_for = Duration::from_millis(common::env_u64("SEGLOG_SHIP_RESTORE_MS", 3000));
    let began = Instant::now();
    let mut restored_seqs = Vec::new();
    let mut superseded = 0;
    let mut i = 0;
    while i < restores || began.elapsed() < restore_for {
        i += 1;
        let dest = work.path().join(format!("restore-{i}"));
        let started = Instant::now();
        let report = common::bounded(
            "a restore during shipping",
            Duration::from_secs(30),
            restore(slow.clone() as Arc<dyn ObjectStore>, &prefix, &dest),
        )
        .await
        .unwrap_or_else(|e| panic!("restore {i} during shipping: {e}"));
        let took = started.elapsed();
        let rounds = shipping
            .wait_for_manifest(report.manifest, Duration::from_secs(10))
            .await;
        let newest = rounds.last().unwrap().report.manifest;
        if newest > report.manifest {
            superseded += 1;
        }
        let (returned_before, started_before) =
            common::manifest_bounds(&rounds, report.manifest).unwrap();
        let history = writers.history();
        let restored = Log::open_with(&dest, Options::default().read_only(true))
            .unwrap_or_else(|e| panic!("restore {i} (manifest {}) opens: {e}", report.manifest));
        assert_eq!(
            restored.synced_frontier(),
            report.synced,
            "restore {i}: a read-only open's frontier is the end of what was restored"
        );
        let state = common::state_of(&restored);
        let prefixes = check_prefix(&state, &history, returned_before, started_before)
            .unwrap_or_else(|e| panic!("restore {i} of manifest {}: {e}", report.manifest));
        eprintln!(
            "restore {i}: manifest {} ({} objects, {} bytes) in {took:?}, newest then {newest}, \
             {} keys, writer prefixes {prefixes:?}",
            report.manifest,
            report.objects,
            report.bytes,
            state.len()
        );
        restored_seqs.push(report.manifest);
    }
    let history = writers.stop();
    let (_shipper, rounds) = shipping.stop().await;

    let violations = audited.violations();
    assert!(violations.is_empty(), "{violations:#?}");
    check_remote(&*store, &prefix, true).await;
    let deleted: u64 = rounds.iter().map(|r| r.report.objects_deleted).sum();
    eprintln!(
        "{} ops, {} rounds, {} manifests, {deleted} objects collected; restores of manifests \
         {restored_seqs:?}, {superseded} superseded while restoring, {} reads found their \
         object collected (the restore started over)",
        history.iter().map(Vec::len).sum::<usize>(),
        rounds.len(),
        rounds.iter().filter(|r| r.report.wrote_manifest).count(),
        slow.not_found()
    );
    assert!(
        restored_seqs.windows(2).all(|w| w[0] <= w[1]),
        "{restored_seqs:?}"
    );
    assert!(
        restored_seqs.last() > restored_seqs.first(),
        "the restores all took one manifest: shipping did not run meanwhile"
    );
    assert!(deleted > 0, "nothing was collected while restoring");
    assert!(
        superseded > 0,
        "no restore overlapped a newer manifest's publication"
    );
    assert!(log.stats().compaction.segments_reclaimed > 0);
}
