//! Segment leases: a segment listed under a lease stays in the log until its holder releases it.
//!
//! The log (`tombstone_model_log` with no other keys) has two segments: segment 0 holds `k` and
//! seven dead versions of `a` (exactly full), segment 1, the tail, `a`'s latest version. The
//! setup syncs (segment 0 lies below the synced frontier), then compacts segment 0 as a pass does
//! (`Log::__compact_segment`: `k` is copied to segment 1 and the segment registered as retiring)
//! and runs the epoch collector, so only the last step of the retirement is left: the one that
//! takes the lease table's mutex (`Leases::exclude`), skips leased segments, and removes the
//! others from the directory (`Compactor::finish_retirements`, after a `sync` that makes the copy
//! durable).
//!
//! In the window a member runs a compaction pass (`Log::compact`, which starts with exactly that
//! step) while the model thread, the holder, takes `Log::segment_files` (a lease from 0, the
//! synced frontier, then the directory's segments up to it), reads `k`'s original record in
//! segment 0 by position if segment 0 is listed, and gives segment 0 back with
//! `release_below(1)`, keeping the listing (and its lease on segment 1 on) past the window.
//!
//! Heap logs have no files; under `--cfg seglog_loom` `Log::segment_files` lists their segments by
//! id with empty paths, so the model runs the listing code itself. "In the directory" is what a
//! file-backed log's lease keeps: the segment's file under its name, renamed aside or deleted only
//! in the same step that removes the segment from the directory.
//!
//! Proves, in every interleaving:
//! - the listing is segments 0 and 1, or 1 alone;
//! - a listed segment stays in the directory until the holder releases it: `k`'s original reads
//!   back with its exact bytes after the listing;
//! - a segment absent from the listing was retired before the lease, after its live record was
//!   copied forward and synced: `k`'s copy lies below the synced frontier the listing read after
//!   taking its lease, and reads back exactly;
//! - once released the segment is retired: by the pass in the window if it ran after the release,
//!   otherwise by the next pass (run while the listing still leases segment 1 on); then a read of
//!   the original finds no record, and `k` reads its copy.
//!
//! The model test also checks that all three outcomes occur (retired before the lease, during the
//! window after the release, after the window). The twin switches on `Broken::LeaseIgnored`
//! (`finish_retirements` does not consult the lease table): the pass removes segment 0 between
//! the listing and the holder's read.
//!
//! A second model, `a_listing_under_a_lease_covers_the_relocated_copies`, has a member
//! compact segment 0, run the collector and a pass, then list, while the model thread puts `x`.
//! When `x` is reserved before `k`'s copy and unpublished at the pass's `sync`, the synced
//! frontier stops below the copy, and a listing cut there without segment 0 would lose `k`. The
//! retirement waits for the epoch (the writer is pinned from its reservation to its publish), so
//! that never happens: in every interleaving a listing without segment 0 has `k`'s copy below its
//! frontier, and one with segment 0 reads `k`'s original exactly.
#![cfg(seglog_loom)]

use std::sync::atomic::{AtomicUsize, Ordering};

use loom::sync::Arc;
use seglog::__broken::Broken;
use seglog::{Error, Log};
use seglog_loom_models::{FIRST_RECORD, KV_RECORD, Team, kv_value, tombstone_model_log, twin};

/// The models' segment size (`tombstone_model_log`).
const SEGMENT: u64 = 512;
/// Where `k`'s original record is: the first record of segment 0.
const ORIGINAL: u64 = FIRST_RECORD;

/// Outcomes seen across the explored executions (std atomics: they count outside the model).
/// Relaxed: counters, read after `loom::model` has returned on the same OS thread.
static RETIRED_BEFORE_THE_LEASE: AtomicUsize = AtomicUsize::new(0);
static RETIRED_IN_THE_WINDOW_AFTER_RELEASE: AtomicUsize = AtomicUsize::new(0);
static RETIRED_AFTER_THE_WINDOW: AtomicUsize = AtomicUsize::new(0);

/// What reading `k`'s original by position gave: its key and value, or the error.
fn read_original(log: &Log) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let guard = seglog::pin();
    log.append_log()
        .read(ORIGINAL, &guard)
        .map(|record| (record.key.to_vec(), record.value.to_vec()))
}

fn listing_racing_a_retirement() {
    seglog_loom_models::model(|| {
        let log = Arc::new(tombstone_model_log(b""));
        // Segment 0 is below the synced frontier: a listing includes it while it is there.
        log.sync().unwrap();
        assert!(
            log.__compact_segment(0).unwrap(),
            "segment 0 is sealed, fully published and installed"
        );
        // Let the retirement's deferred function run: only its last step is left.
        for _ in 0..3 {
            seglog::pin().flush();
        }
        let copy = log.pin().get_record(b"k").unwrap().position;
        assert_eq!(
            copy,
            SEGMENT + FIRST_RECORD + KV_RECORD,
            "k's copy follows a:7"
        );
        assert_eq!(log.stats().compaction.segments_reclaimed, 0);

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || {
                log.compact().unwrap();
            });
        }
        let ((files, listed, original), _) = team.run(|| {
            let files = log.segment_files().unwrap();
            let listed: Vec<u64> = files.segments().iter().map(|file| file.id).collect();
            let original = listed.contains(&0).then(|| read_original(&log));
            files.release_below(1);
            (files, listed, original)
        });
        let reclaimed_in_the_window = log.stats().compaction.segments_reclaimed;

        let synced = files.synced();
        match original {
            Some(read) => {
                assert_eq!(listed, [0, 1]);
                assert!(
                    read.as_ref()
                        .is_ok_and(|(key, value)| key == b"k" && *value == kv_value(b'k', 0)),
                    "a segment listed under the lease stays in the directory until released: \
                     reading k's original in segment 0 gave {read:?}"
                );
                if reclaimed_in_the_window == 1 {
                    RETIRED_IN_THE_WINDOW_AFTER_RELEASE.fetch_add(1, Ordering::Relaxed);
                } else {
                    RETIRED_AFTER_THE_WINDOW.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                assert_eq!(listed, [1], "the listing is segment 1 once 0 is retired");
                assert_eq!(reclaimed_in_the_window, 1);
                assert!(
                    copy + KV_RECORD <= synced.segment * SEGMENT + synced.offset,
                    "a segment absent from the listing was retired after its live records were \
                     copied forward and synced: k's copy at {copy}, synced frontier {synced:?}"
                );
                RETIRED_BEFORE_THE_LEASE.fetch_add(1, Ordering::Relaxed);
            }
        }
        assert!(
            synced.segment == 1 && synced.offset >= FIRST_RECORD + KV_RECORD,
            "the frontier read after the lease covers what the setup synced: {synced:?}"
        );

        // Released: the next pass retires segment 0 if the window's did not, while the listing
        // still leases segment 1 on.
        log.compact().unwrap();
        assert_eq!(
            log.stats().compaction.segments_reclaimed,
            1,
            "a released segment is retired"
        );
        assert!(
            matches!(read_original(&log), Err(Error::NoRecord { .. })),
            "segment 0 left the directory"
        );
        assert_eq!(log.get(b"k"), Some(kv_value(b'k', 0)), "k reads its copy");
        assert_eq!(log.get(b"a"), Some(kv_value(b'a', 7)));
        drop(files);
        team.dismiss();
    });
}

#[test]
fn a_segment_listed_under_a_lease_stays_until_released() {
    listing_racing_a_retirement();
    let before = RETIRED_BEFORE_THE_LEASE.load(Ordering::Relaxed);
    let during = RETIRED_IN_THE_WINDOW_AFTER_RELEASE.load(Ordering::Relaxed);
    let after = RETIRED_AFTER_THE_WINDOW.load(Ordering::Relaxed);
    println!(
        "retired before the lease: {before}, in the window after the release: {during}, \
         after the window: {after}"
    );
    assert!(
        before > 0 && during > 0 && after > 0,
        "every outcome is explored"
    );
}

/// Without the lease check, the pass removes segment 0 between the listing and the holder's read.
#[test]
fn twin_lease_ignored_retires_a_listed_segment() {
    twin(
        "twin_lease_ignored_retires_a_listed_segment",
        Broken::LeaseIgnored,
        "a segment listed under the lease stays in the directory until released",
        listing_racing_a_retirement,
    );
}

/// Outcomes of [`a_listing_under_a_lease_covers_the_relocated_copies`]: `x` reserved below
/// `k`'s copy, and segment 0 retired before the listing or listed.
static X_BELOW_THE_COPY_RETIRED: AtomicUsize = AtomicUsize::new(0);
static X_BELOW_THE_COPY_LISTED: AtomicUsize = AtomicUsize::new(0);

fn listing_after_a_retirement_racing_a_put() {
    seglog_loom_models::model(|| {
        let log = Arc::new(tombstone_model_log(b""));
        log.sync().unwrap();
        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || {
                assert!(
                    log.__compact_segment(0).unwrap(),
                    "segment 0 is sealed, fully published and installed"
                );
                for _ in 0..3 {
                    seglog::pin().flush();
                }
                log.compact().unwrap();
                let files = log.segment_files().unwrap();
                let listed: Vec<u64> = files.segments().iter().map(|file| file.id).collect();
                let original = listed.contains(&0).then(|| read_original(&log));
                (listed, files.synced(), original)
            });
        }
        let (_, mut theirs) = team.run(|| {
            log.put(b"x", &kv_value(b'x', 0)).unwrap();
        });
        let (listed, synced, original) = theirs.pop().unwrap();
        let copy = log.pin().get_record(b"k").unwrap().position;
        let x = log.pin().get_record(b"x").unwrap().position;
        match original {
            Some(read) => {
                assert_eq!(listed, [0, 1]);
                assert!(
                    read.as_ref()
                        .is_ok_and(|(key, value)| key == b"k" && *value == kv_value(b'k', 0)),
                    "a segment listed under the lease stays in the directory until released: \
                     reading k's original in segment 0 gave {read:?}"
                );
                if x < copy {
                    X_BELOW_THE_COPY_LISTED.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                assert_eq!(listed, [1], "the listing is segment 1 once 0 is retired");
                assert!(
                    copy + KV_RECORD <= synced.segment * SEGMENT + synced.offset,
                    "a segment absent from the listing was retired after its live records were \
                     copied forward and synced: k's copy at {copy}, synced frontier {synced:?}"
                );
                if x < copy {
                    X_BELOW_THE_COPY_RETIRED.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        assert_eq!(log.get(b"k"), Some(kv_value(b'k', 0)));
        assert_eq!(log.get(b"x"), Some(kv_value(b'x', 0)));
        team.dismiss();
    });
}

#[test]
fn a_listing_under_a_lease_covers_the_relocated_copies() {
    listing_after_a_retirement_racing_a_put();
    let retired = X_BELOW_THE_COPY_RETIRED.load(Ordering::Relaxed);
    let listed = X_BELOW_THE_COPY_LISTED.load(Ordering::Relaxed);
    println!("x reserved below k's copy: segment 0 retired {retired}, listed {listed}");
    assert!(retired > 0 && listed > 0, "both outcomes are explored");
}
