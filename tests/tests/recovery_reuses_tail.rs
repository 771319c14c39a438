//! Reopening a log resumes writing right after its last record: an open does not abandon the
//! rest of the tail segment, so a log that is opened and closed often (a command-line tool, a
//! process restarted by its supervisor) does not grow by a segment per open, and a log that
//! lives long does not run out of segment ids.
//!
//! Why: the log creates the segment after the tail ahead of need, so the directory's last
//! file is usually that empty segment, not the tail. Recovery treats every segment but the
//! last as sealed, pads the real tail to its end, and the first write after the open moves to
//! the next segment (creating yet another one ahead of need).

use std::collections::BTreeMap;

use seglog::{Log, Options};
use seglog_tests::{SplitMix64, key, pattern, segment_file_count, segment_path};

const SEGMENT_BYTES: u64 = 4096;

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .prefault(false)
        .auto_compact(false)
}

fn segment_of(position: u64) -> u64 {
    position >> SEGMENT_BYTES.trailing_zeros()
}

/// What a log looked like just before it was closed.
struct Closed {
    written: BTreeMap<Vec<u8>, Vec<u8>>,
    files: u64,
    segments: u64,
    bytes: u64,
    /// Where the next record would have gone.
    tail: u64,
}

/// A log of 4 KiB segments that has rolled over once (so the segment after the tail exists
/// already), with room left in its tail segment.
fn small_log(dir: &std::path::Path) -> Closed {
    let log = Log::open_with(dir, options()).unwrap();
    let mut written = BTreeMap::new();
    let mut seq = 0;
    // ~100-byte records until the tail is in segment 1, then a few more there.
    while segment_of(log.append_log().tail_position()) < 1 {
        let (k, v) = (key(0, seq), pattern(0, seq, 48));
        log.put(&k, &v).unwrap();
        written.insert(k, v);
        seq += 1;
    }
    for _ in 0..3 {
        let (k, v) = (key(0, seq), pattern(0, seq, 48));
        log.put(&k, &v).unwrap();
        written.insert(k, v);
        seq += 1;
    }
    let tail = log.append_log().tail_position();
    assert_eq!(segment_of(tail), 1);
    let stats = log.stats();
    Closed {
        written,
        files: segment_file_count(dir),
        segments: stats.segments,
        bytes: stats.bytes,
        tail,
    }
}

#[test]
fn reopening_without_writing_keeps_the_tail_segment_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let before = small_log(dir.path());
    let tail = before.tail;
    for open in 1..=20 {
        let log = Log::open_with(dir.path(), options()).unwrap();
        let stats = log.stats();
        assert_eq!(
            segment_file_count(dir.path()),
            before.files,
            "open {open}: segment files"
        );
        assert_eq!(stats.segments, before.segments, "open {open}: segments");
        assert_eq!(stats.bytes, before.bytes, "open {open}: record bytes");
        assert_eq!(
            log.append_log().stats().padding_bytes,
            0,
            "open {open}: padding"
        );
        let resumes = log.append_log().tail_position();
        assert!(
            resumes == tail,
            "open {open}: writing resumes at {resumes:#x}, not right after the last record \
             ({tail:#x})"
        );
        // Nothing was written after the last record either (no padding sealing it off).
        let file = std::fs::read(segment_path(dir.path(), segment_of(tail)));
        let offset = (tail % SEGMENT_BYTES) as usize;
        assert!(
            file.unwrap()[offset..].iter().all(|&b| b == 0),
            "open {open}: the tail segment was written after its last record"
        );
        assert_eq!(log.iter().collect::<BTreeMap<_, _>>(), before.written);
    }

    // The next write goes where the last one before the reopens ended, in the same segment.
    let log = Log::open_with(dir.path(), options()).unwrap();
    let position = log.put(b"after the reopens", b"value").unwrap();
    assert_eq!(
        (segment_of(position), position),
        (segment_of(tail), tail),
        "the put after 20 reopens landed at {position:#x}, not right after the last record"
    );
    assert_eq!(log.append_log().stats().rollovers, 0);
    assert_eq!(segment_file_count(dir.path()), before.files);
}

#[test]
fn a_small_write_per_open_stays_in_the_tail_segment() {
    let dir = tempfile::tempdir().unwrap();
    let before = small_log(dir.path());
    let (mut written, files) = (before.written, before.files);
    let mut last = None;
    // Twenty opens with one small record each: ~1.3 KiB in all, which fits in segment 1.
    for open in 0..20u64 {
        let log = Log::open_with(dir.path(), options()).unwrap();
        let (k, v) = (key(1, open), pattern(1, open, 16));
        let position = log.put(&k, &v).unwrap();
        written.insert(k, v);
        assert_eq!(
            segment_of(position),
            1,
            "open {open}: the put landed in segment {} at {position:#x}",
            segment_of(position)
        );
        if let Some(previous) = last {
            assert!(position > previous, "open {open}: positions go forward");
        }
        last = Some(position);
        assert_eq!(log.append_log().stats().rollovers, 0, "open {open}");
        assert_eq!(log.stats().padding_bytes, 0, "open {open}");
        assert_eq!(
            segment_file_count(dir.path()),
            files,
            "open {open}: segment files"
        );
    }
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_eq!(log.iter().collect::<BTreeMap<_, _>>(), written);
    assert_eq!(segment_file_count(dir.path()), files);
}

/// A long-lived log does not run out of segment ids: ids grow with every roll-over, so a
/// small id space (here `max_segments(8)`, read as "at most 8 segments at once") stands for
/// the real one running out after enough appends. Every put succeeds as long as compaction
/// keeps what is live within the cap (a few kilobytes here), a record written once at the
/// start survives however its segment is reclaimed, and every key has its last value, also
/// after reopen. (`Options::max_segments` is documented today as a cap on segment ids, which
/// this test treats as the defect.)
#[test]
fn segment_ids_do_not_run_out_in_a_long_lived_log() {
    const KEYS: u64 = 20;
    const PUTS: u64 = 40_000;
    let options = Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .max_segments(8)
        .auto_compact(true)
        .compact_live_ratio(0.5)
        .compact_dead_bytes(8 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path(), options.clone()).unwrap();
    // One record that is never overwritten: it must survive however its segment is reclaimed.
    log.put(b"first", b"written once, at the start").unwrap();
    let mut latest = BTreeMap::new();
    let mut rng = SplitMix64::new(8);
    for seq in 0..PUTS {
        let k = rng.range(0, KEYS - 1);
        let v = pattern(k, seq, 190 + (seq % 20) as usize);
        if let Err(e) = log.put(&key(2, k), &v) {
            panic!(
                "put {seq} of {PUTS} failed after {} roll-overs: {e} ({:?})",
                log.append_log().stats().rollovers,
                log.stats()
            );
        }
        latest.insert(key(2, k), v);
    }
    assert!(log.append_log().stats().rollovers > 2_000);
    let check = |log: &Log, when: &str| {
        assert_eq!(
            log.get(b"first").as_deref(),
            Some(&b"written once, at the start"[..]),
            "{when}"
        );
        for (k, v) in &latest {
            assert_eq!(log.get(k).as_ref(), Some(v), "{when}");
        }
        assert_eq!(log.len(), latest.len() + 1, "{when}");
    };
    check(&log, "after the run");
    drop(log);
    let log = Log::open_with(dir.path(), options).unwrap();
    check(&log, "after reopen");
}
