//! The log's byte counters stay consistent across a reopen followed by compaction, when the
//! log holds aborted records (left by `put_with` fill closures that panicked).
//!
//! `Stats::bytes` counts the bytes of the log's records, and compaction subtracts a segment's
//! records when it retires the segment. Both sides must count the same records: if the
//! subtraction includes aborted records that the count made at open left out, `bytes` drops
//! below `live_bytes` and wraps around to nearly 2^64; `dead_bytes` then claims exabytes, and
//! automatic compaction, which starts once enough bytes are dead, thinks it is always due.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use seglog::{Log, Options, Stats};
use seglog_tests::pattern;

const SEGMENT_BYTES: u64 = 4096;
/// Segments that each hold a put and `ABORTED_PER_SEGMENT` aborted records.
const SEGMENTS_WITH_ABORTED: u64 = 4;
const ABORTED_PER_SEGMENT: u64 = 3;
const ABORTED: u64 = SEGMENTS_WITH_ABORTED * ABORTED_PER_SEGMENT;
/// An 8-byte key and a 1000-byte value: 1048 bytes per aborted record.
const ABORTED_RECORD_BYTES: u64 = 1048;

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        // Automatic compaction on, but with a threshold this test never reaches, so it stays
        // idle unless the counters are wrong; `compact()` runs it by hand.
        .compact_dead_bytes(1 << 20)
}

/// Segments 0 to 3 each hold a 448-byte put of `K` and three aborted records (3,592 bytes, so
/// the next put starts a new segment); a last put of `K` goes to segment 4. Segments 0 to 3
/// then hold nothing live.
fn fill(dir: &Path) {
    seglog_tests::quiet_panics_starting_with("injected");
    let log = Log::open_with(dir, options()).unwrap();
    for s in 0..SEGMENTS_WITH_ABORTED {
        log.put(b"K", &pattern(0, s, 400)).unwrap();
        for i in 0..ABORTED_PER_SEGMENT {
            let key = format!("doomed-{i}").into_bytes();
            let result = catch_unwind(AssertUnwindSafe(|| {
                log.put_with(&key, 1000, |buf| {
                    buf[..10].fill(0xEE);
                    panic!("injected panic in fill");
                })
            }));
            assert!(result.is_err(), "the fill closure's panic propagates");
        }
    }
    log.put(b"K", &pattern(0, 99, 400)).unwrap();
    let stats = log.stats();
    assert_eq!(stats.aborted, ABORTED);
    assert_eq!(stats.segments, SEGMENTS_WITH_ABORTED + 2, "{stats:?}");
    assert_consistent(&log, &stats, "before closing", true);
}

/// Bytes of the puts and tombstones a scan finds: what the log holds besides aborted records
/// (and padding, which is not a record of the log's).
fn scanned_record_bytes(log: &Log) -> u64 {
    let pinned = log.pin();
    log.append_log()
        .scan(pinned.guard())
        .map(|r| u64::from(r.record_bytes))
        .sum()
}

/// Checks the byte counts against each other and the segments. With `against_scan`, also
/// against the records a scan finds (only when no compaction is pending: a retired segment
/// stays scannable until its readers are gone, but its bytes are already taken out).
fn assert_consistent(log: &Log, stats: &Stats, when: &str, against_scan: bool) {
    assert!(
        stats.bytes < 1 << 62,
        "{when}: bytes wrapped around: {stats:?}"
    );
    assert!(
        stats.bytes >= stats.live_bytes,
        "{when}: fewer bytes than live bytes: {stats:?}"
    );
    assert_eq!(
        stats.dead_bytes,
        stats.bytes - stats.live_bytes,
        "{when}: {stats:?}"
    );
    assert!(
        (0.0..=1.0).contains(&stats.live_ratio),
        "{when}: live ratio {} out of range: {stats:?}",
        stats.live_ratio
    );
    // All records counted fit in the segments' record space.
    assert!(
        stats.bytes <= stats.segments * (SEGMENT_BYTES - 64),
        "{when}: more record bytes than the segments hold: {stats:?}"
    );
    if !against_scan {
        return;
    }
    // The records counted are at least the puts and tombstones in the log, and at most those
    // plus the aborted records.
    let scanned = scanned_record_bytes(log);
    assert!(
        stats.bytes >= scanned && stats.bytes <= scanned + ABORTED * ABORTED_RECORD_BYTES,
        "{when}: bytes {} but the log holds {scanned} bytes of puts and tombstones and at most \
         {} of aborted records: {stats:?}",
        stats.bytes,
        ABORTED * ABORTED_RECORD_BYTES
    );
}

#[test]
fn byte_counts_stay_consistent_when_compaction_retires_aborted_records_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());

    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_consistent(&log, &log.stats(), "after reopening", true);
    // Segments 0 to 3 hold nothing live: compaction retires them, aborted records included.
    let retired = log.compact().unwrap();
    assert!(
        retired >= SEGMENTS_WITH_ABORTED,
        "compaction retired {retired} segments"
    );
    assert_consistent(
        &log,
        &log.stats(),
        "after compacting the reopened log",
        false,
    );

    // And the next open agrees with what is left.
    drop(log);
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_consistent(
        &log,
        &log.stats(),
        "after reopening the compacted log",
        true,
    );
}

#[test]
fn automatic_compaction_stays_idle_below_its_threshold_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let log = Log::open_with(dir.path(), options()).unwrap();
    log.compact().unwrap();
    let runs = log.stats().compaction.runs;

    // A few kilobytes of overwrites, far below the 1 MiB of dead bytes automatic compaction
    // waits for, leave sealed segments mostly dead: candidates, but not due.
    for i in 0..20 {
        log.put(b"J", &pattern(1, i, 400)).unwrap();
    }
    let stats = log.stats();
    assert_eq!(
        stats.compaction.runs,
        runs,
        "automatic compaction ran although at most {} bytes were written since: {stats:?}",
        20 * 448
    );
    assert!(stats.dead_bytes < 1 << 20, "{stats:?}");
}
