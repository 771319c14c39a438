//! Issue 18, done when: the server refusing — 412 on an existing object, 5xx, connection
//! refused — gives a retry with backoff or a clear error, never a manifest that names a missing
//! object. Against moto, through the fault proxy (`seglog_tests::fault_proxy`) where a failure
//! is injected; after every failure every manifest present names only objects that exist with
//! the length and CRC-32C it says, and an auditing store checks each manifest PUT and each
//! delete as it happens.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Audited, check_remote, manifests, objects, payload};
use object_store::ObjectStore;
use object_store::path::Path;
use seglog::{Log, Options};
use seglog_ship::{Error, ShipOptions, Shipper, restore};
use seglog_tests::fault_proxy::{Fault, FaultProxy};
use seglog_tests::moto::{Moto, s3_store};

fn options() -> Options {
    Options::default().segment_bytes(256 << 10)
}

fn ship_options() -> ShipOptions {
    ShipOptions {
        interval: Duration::from_millis(50),
        max_failed_rounds: 4,
        ..ShipOptions::default()
    }
}

/// Puts `n` keys from `from` (about 1 KiB each) and syncs; returns what they wrote.
fn write(log: &Log, from: u32, n: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut written = BTreeMap::new();
    for i in from..from + n {
        let key = format!("key-{i:06}").into_bytes();
        let value = seglog_tests::pattern(u64::from(i), 1, 900 + (i as usize % 200));
        log.put(&key, &value).unwrap();
        written.insert(key, value);
    }
    log.sync().unwrap();
    written
}

/// Restores the prefix into a fresh directory and returns the restored state.
async fn restored(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    work: &std::path::Path,
    name: &str,
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let dest = work.join(name);
    restore(Arc::clone(store), prefix, &dest).await.unwrap();
    let log = Log::open_with(&dest, Options::default().read_only(true)).unwrap();
    common::state_of(&log)
}

/// An error and its sources, as a user reading a log would see them all.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

async fn manifest_seqs(store: &dyn ObjectStore, prefix: &Path) -> Vec<u64> {
    manifests(store, prefix)
        .await
        .iter()
        .map(|m| m.seq)
        .collect()
}

/// 412: an object the shipper is about to create already exists with other bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_object_with_other_bytes_is_a_conflict_never_a_manifest() {
    let _watchdog = common::watchdog("conflict", Duration::from_secs(60));
    let moto = Moto::start();
    let store = moto.store();
    let prefix = Path::from("conflict");
    let work = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open_with(work.path().join("log"), options()).unwrap());
    let state = write(&log, 0, 600);

    // Before the first manifest: the first sealed segment's name is taken.
    let first = {
        let files = log.segment_files().unwrap();
        files.segments().iter().find(|s| s.sealed).unwrap().id
    };
    let planted = Path::from(format!("conflict/segments/{first:020}.seg"));
    store
        .put(&planted, payload(b"another log's bytes"))
        .await
        .unwrap();
    let audited = Audited::new(Arc::clone(&store), prefix.clone());
    let mut shipper = Shipper::new(
        Arc::clone(&log),
        audited.clone() as Arc<dyn ObjectStore>,
        prefix.clone(),
        ship_options(),
    )
    .await
    .unwrap();
    match shipper.ship_once().await {
        Err(Error::Conflict { object, reason }) => {
            assert!(object.contains(&format!("{first:020}.seg")), "{object}");
            eprintln!("conflict: {object}: {reason}");
        }
        other => panic!("a round over a planted object: {other:?}"),
    }
    assert!(manifest_seqs(&*store, &prefix).await.is_empty());
    let bytes = store.get(&planted).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        &bytes[..],
        b"another log's bytes",
        "the planted object was overwritten"
    );
    // run_until does not retry a conflict: it returns it at once.
    let started = Instant::now();
    let ran = common::bounded(
        "run_until on a conflict",
        Duration::from_secs(10),
        shipper.run_until(std::future::pending()),
    )
    .await;
    assert!(matches!(ran, Err(Error::Conflict { .. })), "{ran:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Nothing was published, so a restore says so.
    let dest = work.path().join("nothing");
    assert!(matches!(
        restore(Arc::clone(&store), &prefix, &dest).await,
        Err(Error::NoManifest { .. })
    ));
    assert!(!dest.exists());

    // After a manifest: the name of the next segment to seal is taken.
    store.delete(&planted).await.unwrap();
    let mut shipper = Shipper::new(
        Arc::clone(&log),
        audited.clone() as Arc<dyn ObjectStore>,
        prefix.clone(),
        ship_options(),
    )
    .await
    .unwrap();
    let report = shipper.ship_once().await.unwrap();
    assert_eq!(report.manifest, 1);
    let frontier_segment = log.synced_frontier().segment;
    let planted = Path::from(format!("conflict/segments/{frontier_segment:020}.seg"));
    store.put(&planted, payload(b"not this log")).await.unwrap();
    write(&log, 600, 600);
    assert!(log.synced_frontier().segment > frontier_segment);
    assert!(matches!(
        shipper.ship_once().await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(manifest_seqs(&*store, &prefix).await, vec![1]);
    check_remote(&*store, &prefix, false).await;
    // The remote copy is still manifest 1's state, exactly.
    assert_eq!(
        restored(&store, &prefix, work.path(), "after-conflict").await,
        state
    );
    assert!(
        audited.violations().is_empty(),
        "{:?}",
        audited.violations()
    );
}

/// 5xx: retried by the client, then by the shipper's rounds; a clear error when it lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_unavailable_is_retried_or_a_clear_error_never_a_bad_manifest() {
    let _watchdog = common::watchdog("service_unavailable", Duration::from_secs(90));
    let moto = Moto::start();
    let direct = moto.store();
    let proxy = FaultProxy::start(moto.addr());
    let through = s3_store(&proxy.endpoint(), moto.bucket());
    let prefix = Path::from("flaky");
    let work = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open_with(work.path().join("log"), options()).unwrap());
    let audited = Audited::new(Arc::clone(&through), prefix.clone());
    let mut shipper = Shipper::new(
        Arc::clone(&log),
        audited.clone() as Arc<dyn ObjectStore>,
        prefix.clone(),
        ship_options(),
    )
    .await
    .unwrap();
    let mut state = write(&log, 0, 500);

    // A few 503s: the client's retries absorb them.
    proxy.fail_next(2);
    let report = shipper.ship_once().await.unwrap();
    assert!(report.wrote_manifest);
    assert_eq!(proxy.counts().unavailable, 2);
    check_remote(&*direct, &prefix, false).await;

    // Every request 503: a clear, transient error, no manifest.
    state.extend(write(&log, 500, 300));
    proxy.set(Fault::ServiceUnavailable);
    let err = shipper.ship_once().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(err.to_string().contains("503"), "{err}");
    proxy.forward();
    assert_eq!(manifest_seqs(&*direct, &prefix).await, vec![1]);
    check_remote(&*direct, &prefix, false).await;
    let report = shipper.ship_once().await.unwrap();
    assert_eq!(report.manifest, 2);

    // The manifest's PUT fails past the retries: the round's objects are stored but named by
    // nothing; the next round adopts them instead of uploading them again.
    state.extend(write(&log, 800, 500));
    proxy.on_requests("PUT", "/manifests/", 100, Fault::ServiceUnavailable);
    let err = shipper.ship_once().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(manifest_seqs(&*direct, &prefix).await, vec![1, 2]);
    check_remote(&*direct, &prefix, false).await;
    let unnamed = objects(&*direct, &prefix).await.len();
    proxy.clear_rules();
    let report = shipper.ship_once().await.unwrap();
    assert_eq!(report.manifest, 3);
    assert!(report.objects_adopted > 0, "{report:?}");
    assert_eq!(report.objects_uploaded, 0, "{report:?}");
    eprintln!("manifest PUT failed: {unnamed} objects stored; the next round: {report:?}");

    // The manifest's PUT takes effect but its response is lost: the retry (or the next
    // round) finds it there, and no manifest is skipped or written twice.
    state.extend(write(&log, 1300, 200));
    proxy.on_requests("PUT", "/manifests/", 1, Fault::DropResponse);
    let lost = shipper.ship_once().await;
    proxy.clear_rules();
    assert_eq!(proxy.counts().dropped, 1);
    let report = match lost {
        Ok(report) => report,
        Err(e) => {
            eprintln!("the round with a lost manifest response: {e}");
            shipper.ship_once().await.unwrap()
        }
    };
    assert_eq!(report.manifest, 4, "{report:?}");
    assert_eq!(manifest_seqs(&*direct, &prefix).await.last(), Some(&4));
    check_remote(&*direct, &prefix, false).await;

    // Deletes fail: the manifest is published, the garbage stays until a later round.
    state.extend(write(&log, 1500, 300));
    proxy.on_requests("DELETE", "/flaky/", 1000, Fault::ServiceUnavailable);
    let gc_failed = shipper.ship_once().await;
    check_remote(&*direct, &prefix, false).await;
    proxy.clear_rules();
    eprintln!("a round whose deletes fail: {gc_failed:?}");
    state.extend(write(&log, 1800, 10));
    shipper.ship_once().await.unwrap();
    check_remote(&*direct, &prefix, true).await;

    // run_until: 503s for a while, then the server recovers; the loop retries with backoff and
    // ships what was synced meanwhile.
    state.extend(write(&log, 1810, 300));
    let target = log.synced_frontier();
    proxy.set(Fault::ServiceUnavailable);
    let stop = Arc::new(tokio::sync::Notify::new());
    let started = Instant::now();
    let healed = {
        let proxy_heals = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            proxy.forward();
            // Until the remote copy reaches the target, then stop the loop.
            loop {
                // (latest_manifest, not a listing: the shipper collects old ones meanwhile)
                let newest = seglog_ship::latest_manifest(&*direct, &prefix)
                    .await
                    .unwrap();
                if newest.is_some_and(|m| m.synced() >= target) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.notify_one();
        };
        let (ran, ()) = common::bounded(
            "run_until through 503s",
            Duration::from_secs(30),
            futures::future::join(shipper.run_until(stop.notified()), proxy_heals),
        )
        .await;
        ran
    };
    healed.unwrap();
    eprintln!(
        "run_until through 400 ms of 503s reached the frontier after {:?}",
        started.elapsed()
    );

    // 503s that last: run_until gives up after max_failed_rounds with the store's error.
    write(&log, 2110, 10);
    proxy.set(Fault::ServiceUnavailable);
    let started = Instant::now();
    let gave_up = common::bounded(
        "run_until giving up",
        Duration::from_secs(60),
        shipper.run_until(std::future::pending()),
    )
    .await;
    let took = started.elapsed();
    let err = gave_up.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    eprintln!("run_until gave up after {took:?}: {err}");
    proxy.forward();

    check_remote(&*direct, &prefix, false).await;
    let violations = audited.violations();
    assert!(violations.is_empty(), "{violations:#?}");
    // The remote copy is the log as of the last published manifest: everything up to 2110.
    let restored_state = restored(&direct, &prefix, work.path(), "restored").await;
    assert_eq!(restored_state, state);
}

/// Connection refused: a clear error at once, nothing written; shipping resumes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_a_clear_error_and_write_nothing() {
    let _watchdog = common::watchdog("refused", Duration::from_secs(60));
    let moto = Moto::start();
    let direct = moto.store();
    let proxy = FaultProxy::start(moto.addr());
    let through = s3_store(&proxy.endpoint(), moto.bucket());
    let prefix = Path::from("refused");
    let work = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open_with(work.path().join("log"), options()).unwrap());
    let mut state = write(&log, 0, 400);

    // Refused before the shipper starts: Shipper::new fails, clearly and quickly.
    proxy.refuse();
    let started = Instant::now();
    let err = Shipper::new(
        Arc::clone(&log),
        Arc::clone(&through),
        prefix.clone(),
        ship_options(),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.is_transient(), "{err}");
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    let chain = error_chain(&err);
    assert!(
        chain.to_lowercase().contains("connection refused"),
        "the error does not say the connection was refused: {chain}"
    );
    eprintln!("refused at start: {chain}");
    // A restore through it fails too, and creates nothing.
    let dest = work.path().join("never");
    let err = restore(Arc::clone(&through), &prefix, &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(!dest.exists());

    proxy.forward();
    let audited = Audited::new(Arc::clone(&through), prefix.clone());
    let mut shipper = Shipper::new(
        Arc::clone(&log),
        audited.clone() as Arc<dyn ObjectStore>,
        prefix.clone(),
        ship_options(),
    )
    .await
    .unwrap();
    assert_eq!(shipper.ship_once().await.unwrap().manifest, 1);

    // Refused in the middle of shipping: no manifest, and the next round ships it all.
    let more = write(&log, 400, 400);
    proxy.refuse();
    let err = shipper.ship_once().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    proxy.forward();
    assert_eq!(manifest_seqs(&*direct, &prefix).await, vec![1]);
    check_remote(&*direct, &prefix, false).await;
    assert_eq!(restored(&direct, &prefix, work.path(), "at-1").await, state);
    let report = shipper.ship_once().await.unwrap();
    assert_eq!(report.manifest, 2);
    state.extend(more);
    assert_eq!(restored(&direct, &prefix, work.path(), "at-2").await, state);

    // Connections reset inside a round: object_store retries them on reads, not on a PUT
    // (it cannot know whether the PUT took effect), so the round either succeeds or fails
    // with a transient error, and the next one ships it.
    let more = write(&log, 800, 100);
    proxy.next(2, Fault::Reset);
    let report = match shipper.ship_once().await {
        Ok(report) => report,
        Err(e) => {
            assert!(e.is_transient(), "{e}");
            eprintln!("a round with 2 connections reset: {e}");
            check_remote(&*direct, &prefix, false).await;
            shipper.ship_once().await.unwrap()
        }
    };
    assert_eq!(report.manifest, 3);
    state.extend(more);
    assert_eq!(restored(&direct, &prefix, work.path(), "at-3").await, state);
    check_remote(&*direct, &prefix, true).await;
    let violations = audited.violations();
    assert!(violations.is_empty(), "{violations:#?}");
}

/// Two logs shipped to one prefix: the second is refused (Conflict or Mismatch), never
/// publishes, and the first's copy stays whole (upload.rs: "Two different logs shipping to one
/// prefix are caught by the manifest").
///
/// It failed before manifests carried each segment's header CRC: a second log with the same
/// segment size and a frontier past the manifest's was taken for the first, its round reused the
/// previous manifest's entries for the sealed ids both logs have and published manifest 2
/// naming the first log's segments 0-1 and its own later ones (restored: 500 of the first log's
/// keys and 400 of the second's 900).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_log_on_the_same_prefix_is_refused() {
    let _watchdog = common::watchdog("two_logs", Duration::from_secs(60));
    let moto = Moto::start();
    let store = moto.store();
    let prefix = Path::from("shared");
    let work = tempfile::tempdir().unwrap();
    let first = Arc::new(Log::open_with(work.path().join("a"), options()).unwrap());
    let state = write(&first, 0, 600);
    let mut shipper = Shipper::new(
        Arc::clone(&first),
        Arc::clone(&store),
        prefix.clone(),
        ship_options(),
    )
    .await
    .unwrap();
    assert_eq!(shipper.ship_once().await.unwrap().manifest, 1);

    // Another log, further along (so its frontier is not behind the manifest's).
    let second = Arc::new(Log::open_with(work.path().join("b"), options()).unwrap());
    write(&second, 10_000, 900);
    assert!(second.synced_frontier() > first.synced_frontier());
    let refused = match Shipper::new(
        Arc::clone(&second),
        Arc::clone(&store),
        prefix.clone(),
        ship_options(),
    )
    .await
    {
        Err(e) => e,
        Ok(mut other) => other.ship_once().await.unwrap_err(),
    };
    assert!(
        matches!(refused, Error::Conflict { .. } | Error::Mismatch { .. }),
        "{refused:?}"
    );
    assert!(!refused.is_transient());
    eprintln!("the second log: {refused}");
    assert_eq!(manifest_seqs(&*store, &prefix).await, vec![1]);
    check_remote(&*store, &prefix, false).await;
    assert_eq!(
        restored(&store, &prefix, work.path(), "restored").await,
        state
    );

    // A log with another segment size is refused before it uploads anything.
    let third = Arc::new(
        Log::open_with(
            work.path().join("c"),
            Options::default().segment_bytes(1 << 20),
        )
        .unwrap(),
    );
    write(&third, 20_000, 2000);
    let before = objects(&*store, &prefix).await;
    let err = Shipper::new(third, Arc::clone(&store), prefix.clone(), ship_options())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
    assert_eq!(objects(&*store, &prefix).await, before);
}
