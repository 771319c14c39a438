//! `sync` makes the segment created ahead of need durable too: after a roll-over and a sync, the
//! header of the next segment (which the log creates and writes before any record needs it) is
//! not left dirty in the page cache, with prefaulting on and off.
//!
//! Why it matters: the new segment's file and its directory entry are synced, but its header is
//! written through the mapping. A power loss can then leave a segment file whose header never
//! reached the disk: zeros, or, for a recycled file, the previous segment's header under the
//! new segment's name, which recovery refuses ("header names segment X but the file name names
//! Y").

mod dirty_pages;

use seglog::{AppendLog, Log, Options, SyncPolicy};

use dirty_pages::{describe_dirty, dirty_kb_by_segment, first_page_dirty};

const SEGMENT_BYTES: u64 = 8192;

fn options(prefault: bool) -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .prefault(prefault)
        .auto_compact(false)
}

/// Appends ~300-byte records until the tail is in segment `tail_segment`, a little way in (never
/// at a segment's exact end).
fn write_into(log: &AppendLog, tail_segment: u64) {
    let mut i = 0u64;
    while log.tail_position() / SEGMENT_BYTES < tail_segment
        || log.tail_position() % SEGMENT_BYTES < 1024
    {
        log.append(
            format!("k{i:07}").as_bytes(),
            &seglog_tests::pattern(3, i, 260),
        )
        .unwrap();
        i += 1;
    }
    assert_eq!(log.tail_position() / SEGMENT_BYTES, tail_segment);
}

/// After the sync: the prefetched segment `next`'s header page is clean, and without
/// prefaulting (which populates whole segments for writing) no segment page is dirty at all.
fn check_after_sync(dir: &std::path::Path, next: u64, prefault: bool, when: &str) {
    let file = seglog_tests::segment_path(dir, next);
    assert!(
        file.exists(),
        "{when}: segment {next} is created ahead of need"
    );
    assert!(
        !first_page_dirty(&file),
        "{when}: the header page of segment {next} (created ahead of need) is dirty"
    );
    if !prefault {
        let dirty = dirty_kb_by_segment(dir);
        assert!(
            dirty.values().all(|kb| *kb == 0),
            "{when}: dirty pages remain: {}",
            describe_dirty(&dirty)
        );
    }
}

#[test]
fn sync_after_a_roll_over_flushes_the_next_segments_header() {
    for prefault in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = AppendLog::open(dir.path(), &options(prefault)).unwrap();
        // One roll-over: records in 0 and 1, segment 2 created ahead of need.
        write_into(&log, 1);
        log.sync().unwrap();
        check_after_sync(dir.path(), 2, prefault, &format!("prefault {prefault}"));
        // Several more, with a sync in between each: every new segment's header is covered.
        for tail_segment in 2..6 {
            write_into(&log, tail_segment);
            log.sync().unwrap();
            check_after_sync(
                dir.path(),
                tail_segment + 1,
                prefault,
                &format!("prefault {prefault}, tail in segment {tail_segment}"),
            );
        }
    }
}

#[test]
fn every_write_sync_flushes_the_next_segments_header() {
    for prefault in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open_with(
            dir.path(),
            options(prefault).sync_policy(SyncPolicy::EveryWrite),
        )
        .unwrap();
        let mut i = 0u64;
        let tail = |log: &Log| log.append_log().tail_position();
        while tail(&log) / SEGMENT_BYTES < 1 || tail(&log) % SEGMENT_BYTES < 1024 {
            log.put(
                format!("k{i:07}").as_bytes(),
                &seglog_tests::pattern(4, i, 260),
            )
            .unwrap();
            i += 1;
        }
        check_after_sync(
            dir.path(),
            2,
            prefault,
            &format!("EveryWrite, prefault {prefault}"),
        );
    }
}
