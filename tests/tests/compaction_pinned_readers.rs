//! Readers holding `Pinned` zero-copy references across compactions read intact bytes
//! throughout: a retired segment stays mapped, unmodified, until every pin that could see it
//! is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use seglog::{Log, Options};
use seglog_tests::pattern;

const KEYS: u64 = 500;

#[test]
fn pinned_values_stay_intact_across_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        Log::open_with(
            dir.path(),
            Options::default()
                .segment_bytes(64 * 1024)
                .auto_compact(false),
        )
        .unwrap(),
    );
    for k in 0..KEYS {
        log.put(&k.to_le_bytes(), &pattern(k, 0, 300)).unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(3));

    // Readers: pin, borrow every value, then re-check the borrowed bytes while compaction runs.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (log, done, barrier) = (Arc::clone(&log), Arc::clone(&done), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut rounds = 0u64;
                let deadline = Instant::now() + Duration::from_secs(60);
                while !done.load(Ordering::Acquire) && Instant::now() < deadline {
                    let pinned = log.pin();
                    let borrowed: Vec<(u64, &[u8], Vec<u8>)> = (0..KEYS)
                        .map(|k| {
                            let value = pinned.get(&k.to_le_bytes()).unwrap();
                            (k, value, value.to_vec())
                        })
                        .collect();
                    for _ in 0..20 {
                        for (k, value, copy) in &borrowed {
                            assert_eq!(*value, copy.as_slice(), "key {k}: borrowed bytes changed");
                            assert_eq!(copy.len(), 300);
                        }
                        std::thread::yield_now();
                    }
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();

    // Writer: overwrite everything repeatedly and compact after each round.
    barrier.wait();
    let mut reclaimed = 0;
    for round in 1..=30u64 {
        for k in 0..KEYS {
            log.put(&k.to_le_bytes(), &pattern(k, round, 300)).unwrap();
        }
        reclaimed += log.compact().unwrap();
    }
    done.store(true, Ordering::Release);
    let rounds: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(rounds > 0);
    assert!(reclaimed >= 10, "only {reclaimed} segments reclaimed");
    for k in 0..KEYS {
        assert_eq!(log.get(&k.to_le_bytes()).unwrap(), pattern(k, 30, 300));
    }
    // With the readers gone, every retired segment's file is deleted (bounded wait: each
    // compaction call also finishes retirements whose readers have unpinned).
    for _ in 0..1000 {
        if log.stats().compaction.segments_reclaimed >= reclaimed {
            break;
        }
        log.compact().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        log.stats().compaction.segments_reclaimed >= reclaimed,
        "{:?}",
        log.stats()
    );
    let files = seglog_tests::segment_file_count(dir.path());
    assert_eq!(
        files,
        log.stats().segments,
        "files on disk and segments in the log differ"
    );
}
