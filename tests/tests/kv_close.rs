//! `Log::close`: syncs whatever the sync policy, stops the background thread, and reports what
//! failed. Checked on a simulated disk, so "synced" means "in every crash image".

use std::time::{Duration, Instant};

use seglog::sim::SimDisk;
use seglog::{Error, Log, Options, SyncPolicy};

fn options(policy: SyncPolicy) -> Options {
    Options::default()
        .segment_bytes(8 * 1024)
        .sync_policy(policy)
}

#[test]
fn close_syncs_everything_whatever_the_policy() {
    let disk = SimDisk::new();
    let log = Log::open_sim(&disk, options(SyncPolicy::Never)).unwrap();
    for i in 0..300u32 {
        log.put(&i.to_le_bytes(), &[i as u8; 100]).unwrap();
    }
    log.remove(&7u32.to_le_bytes()).unwrap();
    log.close().unwrap();
    // Nothing was synced before close: every crash image now holds every write.
    let state = disk.snapshot();
    let scratch = tempfile::tempdir().unwrap();
    for seed in 0..20 {
        let dir = scratch.path().join(format!("image-{seed}"));
        state.image(seed).write_to(&dir).unwrap();
        let log = Log::open_with(&dir, options(SyncPolicy::Never)).unwrap();
        assert_eq!(log.len(), 299, "image {seed}");
        for i in (0..300u32).filter(|&i| i != 7) {
            assert_eq!(
                log.get(&i.to_le_bytes()),
                Some(vec![i as u8; 100]),
                "image {seed}"
            );
        }
        assert_eq!(log.get(&7u32.to_le_bytes()), None, "image {seed}");
    }
}

#[test]
fn close_reports_a_background_sync_failure() {
    let disk = SimDisk::new();
    let log = Log::open_sim(&disk, options(SyncPolicy::IntervalMs(1))).unwrap();
    log.put(b"k", b"v").unwrap();
    disk.fail_flushes(1);
    log.put(b"k2", b"v2").unwrap_or_default();
    // The background thread syncs every millisecond and meets the injected failure.
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.stats().background_error.is_none() {
        assert!(
            Instant::now() < deadline,
            "the background sync never failed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let error = log.close().unwrap_err();
    assert!(
        matches!(error, Error::SyncFailed { .. }),
        "close after a failed background sync: {error}"
    );
}

#[test]
fn close_of_a_healthy_file_log_is_ok_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path(), options(SyncPolicy::Never)).unwrap();
    log.put(b"a", b"1").unwrap();
    log.close().unwrap();
    let log = Log::open_with(dir.path(), options(SyncPolicy::Never)).unwrap();
    assert_eq!(log.get(b"a").as_deref(), Some(&b"1"[..]));
    log.close().unwrap();
}
