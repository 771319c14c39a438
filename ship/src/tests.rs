//! Round trips over a local file system store: the protocol's paths without a server (the
//! integration tests in `ship/tests/` run them against an S3-compatible one).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use seglog::{Log, Options};

use crate::{Follower, ShipOptions, Shipper, latest_manifest, restore};

fn local_store(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
}

fn options() -> Options {
    Options::default()
        .segment_bytes(64 << 10)
        .auto_compact(false)
}

fn state(log: &Log) -> BTreeMap<Vec<u8>, Vec<u8>> {
    log.iter().collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn ship_restore_follow_round_trip_on_local_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local_store(&tmp.path().join("bucket").tap_create());
    let prefix = Path::from("logs/a");
    let log = Arc::new(Log::open_with(tmp.path().join("log"), options()).unwrap());
    let rt = runtime();
    let keep_two = ShipOptions {
        keep_manifests: 2,
        ..ShipOptions::default()
    };
    let mut shipper = rt
        .block_on(Shipper::new(
            Arc::clone(&log),
            Arc::clone(&store),
            prefix.clone(),
            keep_two.clone(),
        ))
        .unwrap();
    // Nothing synced yet beyond the open: an empty log ships an empty manifest or none.
    for i in 0..3000u32 {
        log.put(&i.to_be_bytes(), &vec![i as u8; 50 + (i % 200) as usize])
            .unwrap();
    }
    log.sync().unwrap();
    let first = rt.block_on(shipper.ship_once()).unwrap();
    assert!(first.wrote_manifest);
    assert!(first.objects_uploaded > 3, "{first:?}");
    let again = rt.block_on(shipper.ship_once()).unwrap();
    assert!(!again.wrote_manifest, "nothing changed: {again:?}");
    assert_eq!(again.objects_uploaded, 0);

    let restored_dir = tmp.path().join("restored");
    let report = rt
        .block_on(restore(Arc::clone(&store), &prefix, &restored_dir))
        .unwrap();
    assert_eq!(report.manifest, first.manifest);
    let restored = Log::open_with(&restored_dir, options()).unwrap();
    assert_eq!(state(&restored), state(&log));
    drop(restored);

    let follower_dir = tmp.path().join("follower");
    let follower = rt
        .block_on(Follower::open(
            Arc::clone(&store),
            prefix.clone(),
            &follower_dir,
            Duration::from_millis(100),
        ))
        .unwrap();
    assert_eq!(state(&follower.log()), state(&log));

    // Removes, overwrites and a compaction that retires segments; then ship and follow.
    for i in 0..1500u32 {
        log.remove(&i.to_be_bytes()).unwrap();
    }
    for i in 2000..2500u32 {
        log.put(&i.to_be_bytes(), b"overwritten").unwrap();
    }
    log.compact().unwrap();
    log.sync().unwrap();
    let second = rt.block_on(shipper.ship_once()).unwrap();
    assert!(second.wrote_manifest);
    assert_eq!(
        second.objects_deleted, 0,
        "the previous manifest is kept, and every object it names: {second:?}"
    );
    let retired: Vec<Path> = rt
        .block_on(crate::manifest::read_manifest(
            &*store,
            &prefix,
            first.manifest,
        ))
        .unwrap()
        .objects(&prefix)
        .into_iter()
        .filter(|o| !second_names(&rt, &*store, &prefix, second.manifest).contains(o))
        .collect();
    assert!(!retired.is_empty(), "compaction retired segments");
    assert!(rt.block_on(follower.poll()).unwrap());
    assert_eq!(follower.manifest(), second.manifest);
    assert_eq!(state(&follower.log()), state(&log));
    assert_eq!(
        follower.get(&2100u32.to_be_bytes()).unwrap(),
        b"overwritten"
    );
    assert!(follower.get(&10u32.to_be_bytes()).is_none());

    // One more manifest: the first one goes, then the objects only it named.
    log.put(b"late", b"write").unwrap();
    log.sync().unwrap();
    let third = rt.block_on(shipper.ship_once()).unwrap();
    assert_eq!(third.objects_deleted, 1 + retired.len() as u64, "{third:?}");
    for object in &retired {
        assert!(matches!(
            rt.block_on(store.head(object)),
            Err(object_store::Error::NotFound { .. })
        ));
    }
    assert!(rt.block_on(follower.poll()).unwrap());
    assert_eq!(follower.get(b"late").unwrap(), b"write");

    // Every object the newest manifest names exists.
    let latest = rt
        .block_on(latest_manifest(&*store, &prefix))
        .unwrap()
        .unwrap();
    for object in latest.objects(&prefix) {
        rt.block_on(store.head(&object)).unwrap();
    }

    // A restart of the shipper uploads nothing it already shipped.
    let mut restarted = rt
        .block_on(Shipper::new(
            Arc::clone(&log),
            Arc::clone(&store),
            prefix.clone(),
            ShipOptions::default(),
        ))
        .unwrap();
    let fourth = rt.block_on(restarted.ship_once()).unwrap();
    assert_eq!(fourth.objects_uploaded, 0, "{fourth:?}");
    assert!(!fourth.wrote_manifest);

    // Nothing shipped under another prefix, or at the store's root: said, with where it looked.
    for empty in [Path::from("logs/none"), Path::from("")] {
        let err = rt
            .block_on(restore(
                Arc::clone(&store),
                &empty,
                &tmp.path().join("none"),
            ))
            .unwrap_err();
        assert!(matches!(err, crate::Error::NoManifest { .. }), "{err}");
        assert!(err.to_string().contains("LocalFileSystem"), "{err}");
        assert!(!tmp.path().join("none").exists());
    }

    // A second restore into a non-empty directory is refused.
    let err = rt
        .block_on(restore(Arc::clone(&store), &prefix, &restored_dir))
        .unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}

fn second_names(
    rt: &tokio::runtime::Runtime,
    store: &dyn ObjectStore,
    prefix: &Path,
    seq: u64,
) -> Vec<Path> {
    rt.block_on(crate::manifest::read_manifest(store, prefix, seq))
        .unwrap()
        .objects(prefix)
}

/// A write that returned before a round is in its manifest even when an earlier reservation is
/// still being written when the write's `sync` returns (the synced frontier stops at that
/// reservation; the round waits for it, up to an interval).
#[test]
fn a_round_holds_writes_behind_a_reservation_in_flight() {
    for (interval, in_this_round) in [(Duration::from_secs(5), true), (Duration::ZERO, false)] {
        let tmp = tempfile::tempdir().unwrap();
        let store = local_store(&tmp.path().join("bucket").tap_create());
        let prefix = Path::from("p");
        let log = Arc::new(Log::open_with(tmp.path().join("log"), options()).unwrap());
        log.put(b"first", b"x").unwrap();
        log.sync().unwrap();
        let reserved = Arc::new(std::sync::Barrier::new(2));
        let slow = {
            let (log, reserved) = (Arc::clone(&log), Arc::clone(&reserved));
            std::thread::spawn(move || {
                log.put_with(b"slow", 64, |buf| {
                    reserved.wait();
                    std::thread::sleep(Duration::from_millis(300));
                    buf.fill(7);
                })
                .unwrap();
            })
        };
        reserved.wait();
        log.put(b"acked", b"returned before the round").unwrap();
        log.sync().unwrap();
        assert!(
            log.synced_frontier() < log.tail_frontier(),
            "the synced frontier stops at the reservation in flight"
        );
        let rt = runtime();
        let ship_options = ShipOptions {
            interval,
            ..ShipOptions::default()
        };
        let mut shipper = rt
            .block_on(Shipper::new(
                Arc::clone(&log),
                Arc::clone(&store),
                prefix.clone(),
                ship_options,
            ))
            .unwrap();
        rt.block_on(shipper.ship_once()).unwrap();
        let first = tmp.path().join("first");
        rt.block_on(restore(Arc::clone(&store), &prefix, &first))
            .unwrap();
        let restored = Log::open_with(&first, options()).unwrap();
        let acked = restored.get(b"acked");
        if in_this_round {
            assert_eq!(acked.as_deref(), Some(&b"returned before the round"[..]));
            assert_eq!(restored.get(b"slow").as_deref(), Some(&[7u8; 64][..]));
        } else {
            assert_eq!(acked, None, "no wait: the round ships what is covered");
        }
        drop(restored);
        slow.join().unwrap();
        rt.block_on(shipper.ship_once()).unwrap();
        let second = tmp.path().join("second");
        rt.block_on(restore(Arc::clone(&store), &prefix, &second))
            .unwrap();
        let restored = Log::open_with(&second, options()).unwrap();
        assert_eq!(
            restored.get(b"acked").as_deref(),
            Some(&b"returned before the round"[..])
        );
        assert_eq!(restored.get(b"slow").as_deref(), Some(&[7u8; 64][..]));
    }
}

/// A frontier that has just entered a segment with no record yet (its first reservation still
/// being written) is cut at the previous segment's end, so a restored log, which opens there,
/// takes up shipping to the same prefix (it was refused as "behind the manifest"; review by
/// helper-15). And an object a lost writer uploaded after its last manifest, with bytes the
/// restored log no longer has, is replaced as garbage instead of refusing the prefix.
#[test]
fn a_restored_log_takes_up_its_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local_store(&tmp.path().join("bucket").tap_create());
    let prefix = Path::from("dr");
    let rt = runtime();
    let log = Arc::new(Log::open_with(tmp.path().join("log"), options()).unwrap());
    // Segment 0 filled to its last byte, so the next reservation is the first of segment 1.
    let mut i = 0u32;
    let mut record = 0;
    while log.tail_frontier().offset < (64 << 10) - 9000 {
        let before = log.tail_frontier().offset;
        log.put(&i.to_be_bytes(), &[1; 504]).unwrap();
        record = (log.tail_frontier().offset - before) as usize;
        i += 1;
    }
    // A record's bytes are its value's plus a fixed overhead (504 + that is a multiple of 8).
    let rest = (64 << 10) - log.tail_frontier().offset as usize;
    log.put(&i.to_be_bytes(), &vec![2; rest - (record - 504)])
        .unwrap();
    assert_eq!(
        log.tail_frontier(),
        seglog::SyncedFrontier {
            segment: 1,
            offset: 0
        },
        "segment 0 is full"
    );
    log.sync().unwrap();
    let reserved = Arc::new(std::sync::Barrier::new(2));
    let release = Arc::new(std::sync::Barrier::new(2));
    let slow = {
        let (log, reserved, release) = (
            Arc::clone(&log),
            Arc::clone(&reserved),
            Arc::clone(&release),
        );
        std::thread::spawn(move || {
            log.put_with(b"slow", 8000, |buf| {
                reserved.wait();
                release.wait();
                buf.fill(7);
            })
            .unwrap();
        })
    };
    reserved.wait();
    log.sync().unwrap();
    assert_eq!(
        log.synced_frontier(),
        seglog::SyncedFrontier {
            segment: 1,
            offset: seglog_format::SEGMENT_HEADER_BYTES as u64
        },
        "the scenario: segment 1 holds only the reservation in flight"
    );
    let ship_options = ShipOptions {
        interval: Duration::from_millis(20),
        ..ShipOptions::default()
    };
    let mut shipper = rt
        .block_on(Shipper::new(
            Arc::clone(&log),
            Arc::clone(&store),
            prefix.clone(),
            ship_options.clone(),
        ))
        .unwrap();
    let report = rt.block_on(shipper.ship_once()).unwrap();
    release.wait();
    slow.join().unwrap();
    let dest = tmp.path().join("restored");
    rt.block_on(restore(Arc::clone(&store), &prefix, &dest))
        .unwrap();
    let restored = Arc::new(Log::open_with(&dest, options()).unwrap());
    assert_eq!(restored.synced_frontier(), report.synced);
    assert_eq!(restored.len(), log.len() - 1, "all but the write in flight");
    assert!(restored.get(b"slow").is_none());

    // The lost writer's last round uploaded the range of the frontier segment its replacement
    // now writes differently, and died before its manifest.
    for i in 0..20u32 {
        restored
            .put(&i.to_be_bytes(), b"written after the restore")
            .unwrap();
    }
    restored.sync().unwrap();
    let frontier = restored.synced_frontier();
    let orphan = crate::manifest::at(
        &prefix,
        &crate::manifest::tail_key(frontier.segment, 0, frontier.offset),
    );
    rt.block_on(store.put(&orphan, vec![9u8; frontier.offset as usize].into()))
        .unwrap();
    let mut taken_up = rt
        .block_on(Shipper::new(
            Arc::clone(&restored),
            Arc::clone(&store),
            prefix.clone(),
            ship_options,
        ))
        .unwrap();
    let next = rt.block_on(taken_up.ship_once()).unwrap();
    assert!(next.wrote_manifest, "{next:?}");
    assert_eq!(next.objects_uploaded, 1, "the orphan replaced: {next:?}");
    let again = tmp.path().join("again");
    rt.block_on(restore(Arc::clone(&store), &prefix, &again))
        .unwrap();
    let copy = Log::open_with(&again, options()).unwrap();
    assert_eq!(state(&copy), state(&restored));
}

/// A follower's directory ends holding exactly the manifest's segments: a file of a segment no
/// manifest names (left by an apply that failed after putting it in place) is removed by the
/// next apply.
#[test]
fn an_apply_removes_segments_the_manifest_does_not_name() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local_store(&tmp.path().join("bucket").tap_create());
    let prefix = Path::from("f");
    let rt = runtime();
    let log = Arc::new(Log::open_with(tmp.path().join("log"), options()).unwrap());
    log.put(b"a", b"1").unwrap();
    let mut shipper = rt
        .block_on(Shipper::new(
            Arc::clone(&log),
            Arc::clone(&store),
            prefix.clone(),
            ShipOptions::default(),
        ))
        .unwrap();
    rt.block_on(shipper.ship_once()).unwrap();
    let dir = tmp.path().join("follower");
    let follower = rt
        .block_on(Follower::open(
            Arc::clone(&store),
            prefix.clone(),
            &dir,
            Duration::from_millis(10),
        ))
        .unwrap();
    let stray = dir.join(seglog_format::LogFile::Segment(900).name());
    std::fs::copy(
        tmp.path()
            .join("log")
            .join(seglog_format::LogFile::Segment(0).name()),
        &stray,
    )
    .unwrap();
    std::fs::write(dir.join("0000000000000384.seg.partial"), b"half").unwrap();
    log.put(b"b", b"2").unwrap();
    rt.block_on(shipper.ship_once()).unwrap();
    assert!(rt.block_on(follower.poll()).unwrap());
    assert!(!stray.exists());
    assert!(!dir.join("0000000000000384.seg.partial").exists());
    assert_eq!(follower.get(b"b").unwrap(), b"2");
}

/// The futures a caller spawns on a multi-threaded runtime must be `Send`.
#[allow(dead_code, reason = "compiled, never run")]
fn futures_are_send(shipper: &mut Shipper, follower: &Follower, store: Arc<dyn ObjectStore>) {
    fn send<T: Send>(_: T) {}
    send(shipper.ship_once());
    send(shipper.run_until(std::future::pending()));
    send(follower.poll());
    send(follower.run_until(std::future::pending()));
    send(restore(store, &Path::from("p"), std::path::Path::new("d")));
}

trait TapCreate {
    fn tap_create(self) -> Self;
}

impl TapCreate for std::path::PathBuf {
    fn tap_create(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
