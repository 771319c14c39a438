//! A record that exactly fills a segment is flushed by `sync` like any other: the tail position
//! at the very end of a segment is the position just after its last record, and after a sync
//! (explicit, or the one `SyncPolicy::EveryWrite` runs after each write) no page of the log's
//! segment files is left dirty.
//!
//! Why: the tail word can hold an offset equal to the segment size (the segment is exactly
//! full, the roll-over has not happened yet). A tail position computed by OR-ing that offset
//! into the segment id's bits instead of adding it gives, for an odd segment `s`, the start of
//! `s` instead of the start of `s + 1`; `sync` then believes everything is flushed and leaves
//! the segment's last records in the page cache only.

mod dirty_pages;

use seglog::{AppendLog, Log, Options, SyncPolicy};

use dirty_pages::{describe_dirty, dirty_kb_by_segment, first_page_dirty};

const SEGMENT_BYTES: u64 = 8192;
/// Segment header (64 bytes), then eight records of 1,016 bytes fill a segment exactly:
/// 40-byte record header + 8-byte key + 968-byte value.
const RECORDS_PER_SEGMENT: u64 = 8;
const VALUE_BYTES: usize = 968;

fn options(prefault: bool) -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .prefault(prefault)
        .auto_compact(false)
}

fn record_key(i: u64) -> Vec<u8> {
    format!("rec{i:05}").into_bytes()
}

fn record_value(i: u64) -> Vec<u8> {
    seglog_tests::pattern(9, i, VALUE_BYTES)
}

/// Appends records `from..to` and checks each lands where exact filling puts it.
fn append_exact(log: &AppendLog, from: u64, to: u64) {
    for i in from..to {
        let appended = log.append(&record_key(i), &record_value(i)).unwrap();
        assert_eq!(appended.record_bytes, 1016);
        let (segment, slot) = (i / RECORDS_PER_SEGMENT, i % RECORDS_PER_SEGMENT);
        assert_eq!(
            appended.position,
            segment * SEGMENT_BYTES + 64 + slot * 1016,
            "record {i}"
        );
    }
}

#[test]
fn the_tail_position_at_a_segment_end_is_just_after_its_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = AppendLog::open(dir.path(), &options(false)).unwrap();
    for segment in 0..5 {
        append_exact(
            &log,
            segment * RECORDS_PER_SEGMENT,
            (segment + 1) * RECORDS_PER_SEGMENT,
        );
        // Segment `segment` is full to its last byte; nothing has rolled past it yet.
        assert_eq!(log.stats().rollovers, segment);
        let tail = log.tail_position();
        assert!(
            tail == (segment + 1) * SEGMENT_BYTES,
            "segment {segment} full: tail_position() is {tail:#x}, want {:#x}",
            (segment + 1) * SEGMENT_BYTES
        );
    }
}

/// Fills segments 0 and 1 exactly, then syncs (explicitly, or through `EveryWrite`), and
/// checks the page cache: the segments holding records have no dirty page, and (without
/// prefaulting, which populates whole segments for writing) no segment file has any.
fn check_after_exact_fill(dir: &std::path::Path, prefault: bool, when: &str) {
    let dirty = dirty_kb_by_segment(dir);
    let records_dirty: u64 = ["0000000000000000.seg", "0000000000000001.seg"]
        .iter()
        .map(|name| *dirty.get(*name).expect("the full segments are mapped"))
        .sum();
    assert!(
        records_dirty == 0,
        "{when}: dirty pages of the full segments remain: {}",
        describe_dirty(&dirty)
    );
    let next = dir.join("0000000000000002.seg");
    if prefault {
        // The segment created ahead of need is populated for writing; only its header page
        // holds anything.
        assert!(
            !(next.exists() && first_page_dirty(&next)),
            "{when}: the header page of segment 2 is dirty"
        );
    } else {
        assert!(
            dirty.values().all(|kb| *kb == 0),
            "{when}: dirty pages remain: {}",
            describe_dirty(&dirty)
        );
    }
}

#[test]
fn sync_flushes_records_that_exactly_fill_an_odd_segment() {
    for prefault in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = AppendLog::open(dir.path(), &options(prefault)).unwrap();
        append_exact(&log, 0, 2 * RECORDS_PER_SEGMENT);
        log.sync().unwrap();
        check_after_exact_fill(
            dir.path(),
            prefault,
            &format!("after sync (prefault {prefault})"),
        );
    }
}

#[test]
fn every_write_sync_flushes_records_that_exactly_fill_an_odd_segment() {
    for prefault in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open_with(
            dir.path(),
            options(prefault).sync_policy(SyncPolicy::EveryWrite),
        )
        .unwrap();
        for i in 0..2 * RECORDS_PER_SEGMENT {
            let version = log.put(&record_key(i), &record_value(i)).unwrap();
            // A fresh record's version is its position: the same exact layout as above.
            let (segment, slot) = (i / RECORDS_PER_SEGMENT, i % RECORDS_PER_SEGMENT);
            assert_eq!(version, segment * SEGMENT_BYTES + 64 + slot * 1016);
        }
        check_after_exact_fill(
            dir.path(),
            prefault,
            &format!("EveryWrite, no explicit sync (prefault {prefault})"),
        );
    }
}
