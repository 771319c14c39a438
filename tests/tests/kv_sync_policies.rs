//! `sync()` from many threads at once (group commit), and the three sync policies: every call
//! succeeds, nothing is lost, the background thread reports no error, and reopen shows the
//! same state. (Surviving a power loss is tested on crash images of a simulated disk, in
//! `power_loss.rs`.)

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use seglog::{Log, Options, SyncPolicy};
use seglog_tests::pattern;

fn run(policy: SyncPolicy, explicit_syncs: bool) {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .segment_bytes(64 * 1024)
        .sync_policy(policy);
    let log = Arc::new(Log::open_with(dir.path(), options.clone()).unwrap());
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let (log, barrier) = (Arc::clone(&log), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut mine = BTreeMap::new();
                for i in 0..500u64 {
                    let key = format!("t{t}-{}", i % 50).into_bytes();
                    let value = pattern(t, i, 200);
                    log.put(&key, &value).unwrap();
                    mine.insert(key, value);
                    if explicit_syncs && i % 10 == 0 {
                        log.sync().unwrap();
                    }
                }
                mine
            })
        })
        .collect();
    let mut expected = BTreeMap::new();
    for h in handles {
        expected.extend(h.join().unwrap());
    }
    log.sync().unwrap();
    if let SyncPolicy::IntervalMs(ms) = policy {
        std::thread::sleep(std::time::Duration::from_millis(3 * ms));
    }
    assert_eq!(log.stats().background_error, None);
    assert_eq!(log.iter().collect::<BTreeMap<_, _>>(), expected);
    drop(log);
    let log = Log::open_with(dir.path(), options).unwrap();
    assert_eq!(log.iter().collect::<BTreeMap<_, _>>(), expected);
}

#[test]
fn concurrent_syncs_share_flushes() {
    run(SyncPolicy::Never, true);
}

#[test]
fn sync_every_write() {
    run(SyncPolicy::EveryWrite, false);
}

#[test]
fn background_sync_every_5_ms() {
    run(SyncPolicy::IntervalMs(5), false);
}
