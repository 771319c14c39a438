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
    let mut shipper = rt
        .block_on(Shipper::new(
            Arc::clone(&log),
            Arc::clone(&store),
            prefix.clone(),
            ShipOptions::default(),
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
