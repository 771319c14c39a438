//! A writer whose zero-copy fill closure panics leaves an aborted record: scans continue past
//! it, and no reader ever sees a partial record, even while other writers roll segments over.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use seglog::{AppendLog, Options, RecordKind};
use seglog_tests::{SplitMix64, key, parse_key, pattern};

fn quiet_injected_panics() {
    seglog_tests::quiet_panics_starting_with("injected");
}

#[test]
fn scan_passes_an_aborted_record() {
    quiet_injected_panics();
    let log = AppendLog::in_memory(64 * 1024, 1024).unwrap();
    log.append(b"before", b"one").unwrap();
    let result = catch_unwind(AssertUnwindSafe(|| {
        log.append_with(b"doomed", 1000, |buf| {
            buf[..500].fill(0xEE);
            panic!("injected panic mid-append");
        })
    }));
    assert!(result.is_err(), "the closure's panic must propagate");
    log.append(b"after", b"two").unwrap();

    let guard = seglog::pin();
    let seen: Vec<(Vec<u8>, Vec<u8>)> = log
        .scan(&guard)
        .map(|r| (r.key.to_vec(), r.value.to_vec()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (b"before".to_vec(), b"one".to_vec()),
            (b"after".to_vec(), b"two".to_vec())
        ]
    );
    let stats = log.stats();
    assert_eq!((stats.aborted, stats.records), (1, 3));
}

#[test]
fn readers_never_see_partial_records_under_panics_and_rollovers() {
    quiet_injected_panics();
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 3_000;
    const READERS: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        AppendLog::open(dir.path(), &Options::default().segment_bytes(64 * 1024)).unwrap(),
    );
    let barrier = Arc::new(Barrier::new(WRITERS as usize + READERS));
    let done = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (log, barrier, done) = (Arc::clone(&log), Arc::clone(&barrier), Arc::clone(&done));
            std::thread::spawn(move || {
                barrier.wait();
                let mut checked = 0u64;
                // Bounded: stops when the writers are done, or after a minute regardless.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !done.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                    let guard = seglog::pin();
                    let mut scan = log.scan(&guard);
                    for record in scan.by_ref() {
                        assert_eq!(record.kind, RecordKind::Put);
                        let (writer, seq) = parse_key(record.key).expect("key intact");
                        assert_eq!(
                            record.value,
                            pattern(writer, seq, record.value.len()).as_slice(),
                            "partial or foreign bytes in {writer}/{seq}"
                        );
                        checked += 1;
                    }
                    assert!(scan.error().is_none(), "{:?}", scan.error());
                }
                checked
            })
        })
        .collect();

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (log, barrier) = (Arc::clone(&log), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut rng = SplitMix64::new(100 + writer);
                let mut kept = Vec::new();
                barrier.wait();
                for seq in 0..PER_WRITER {
                    let len = rng.range(1, 4096) as usize;
                    let value = pattern(writer, seq, len);
                    let doomed = seq % 7 == 3;
                    let result = catch_unwind(AssertUnwindSafe(|| {
                        log.append_with(&key(writer, seq), len, |buf| {
                            buf[..len / 2].copy_from_slice(&value[..len / 2]);
                            if doomed {
                                panic!("injected panic in fill");
                            }
                            buf[len / 2..].copy_from_slice(&value[len / 2..]);
                        })
                    }));
                    match result {
                        Ok(appended) => {
                            assert!(!doomed);
                            kept.push((appended.unwrap().position, writer, seq, len));
                        }
                        Err(_) => assert!(doomed),
                    }
                }
                kept
            })
        })
        .collect();
    let mut kept: Vec<_> = writers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    done.store(true, Ordering::Release);
    let checked: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(checked > 0, "readers checked nothing");

    let doomed_per_writer = (0..PER_WRITER).filter(|s| s % 7 == 3).count() as u64;
    assert_eq!(
        kept.len() as u64,
        WRITERS * (PER_WRITER - doomed_per_writer)
    );
    kept.sort();
    let guard = seglog::pin();
    let mut seen = HashSet::new();
    let mut scan = log.scan(&guard);
    for record in scan.by_ref() {
        let (writer, seq) = parse_key(record.key).unwrap();
        assert_ne!(seq % 7, 3, "an aborted record was returned");
        assert!(seen.insert((writer, seq)), "{writer}/{seq} scanned twice");
        assert!(kept.binary_search_by_key(&record.position, |k| k.0).is_ok());
        assert_eq!(
            record.value,
            pattern(writer, seq, record.value.len()).as_slice()
        );
    }
    assert!(scan.error().is_none());
    assert_eq!(seen.len(), kept.len());
    let stats = log.stats();
    assert_eq!(stats.aborted, WRITERS * doomed_per_writer);
    assert!(stats.rollovers >= 50, "only {} roll-overs", stats.rollovers);
}
