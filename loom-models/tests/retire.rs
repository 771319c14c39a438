//! Retire: a segment removed from the log is freed through the epoch, never under a reader.
//!
//! The log holds two segments: the first ends with a record and padding, the second holds the
//! tail. The model thread retires the first segment and flushes the epoch collector while a reader,
//! pinned, reads the record in the first segment by position, counts the live segments, compares
//! the record's bytes (borrowed from the segment) and then scans. Proves, in every interleaving:
//! - a reader that found the segment keeps it alive, with its exact bytes, until it unpins;
//! - a reader that comes after the retirement gets `NoRecord` for the position, and scans skip
//!   the missing segment to the records after it;
//! - once no guard holds it, flushing the collector frees the segment, and loom's leak check
//!   (each segment holds a loom `Arc` token under loom) finds no segment left at the end.
//!
//! Uses `AppendLog::retire_segment` (the directory removal compaction's retirement ends with)
//! and the loom-only `__live_segments` count.
#![cfg(seglog_loom)]

use loom::sync::Arc;
use seglog::{AppendLog, Error};
use seglog_loom_models::{FIRST_RECORD, Record, SEGMENT_BYTES, Team, prefill, record_bytes};

const KEY: &[u8] = b"k";
const VALUE: [u8; 16] = *b"0123456789abcdef";
/// 64 bytes: does not fit the 40 bytes the prefill leaves, so it opens the second segment.
const RECORD: u64 = record_bytes(KEY.len() as u64, VALUE.len() as u64);
const ROOM: u64 = 40;

#[derive(Debug)]
struct Seen {
    /// The record in the first segment, compared after the live count, if the read found it.
    found: Option<Record>,
    /// Live segments counted while pinned, after the read.
    live_while_pinned: usize,
    scanned: Vec<Record>,
}

fn read_then_scan(log: &AppendLog) -> Seen {
    let guard = seglog::pin();
    let read = log.read(FIRST_RECORD, &guard);
    let live_while_pinned = log.__live_segments();
    let found = match read {
        // The slices still point into the first segment, which may be retired by now.
        Ok(record) => Some((record.position, record.key.to_vec(), record.value.to_vec())),
        Err(Error::NoRecord { position, .. }) if position == FIRST_RECORD => None,
        Err(other) => panic!("reading a retired segment gave {other:?}"),
    };
    let mut scan = log.scan(&guard);
    let scanned = scan
        .by_ref()
        .map(|r| (r.position, r.key.to_vec(), r.value.to_vec()))
        .collect();
    assert!(
        scan.error().is_none(),
        "the scan failed: {:?}",
        scan.error()
    );
    Seen {
        found,
        live_while_pinned,
        scanned,
    }
}

/// Flushes the model thread's deferred drops to the collector and lets it advance the epoch and
/// run what has expired.
fn flush_collector(times: usize) {
    for _ in 0..times {
        seglog::pin().flush();
    }
}

#[test]
fn retired_segment_outlives_its_readers() {
    seglog_loom_models::model(|| {
        let log = Arc::new(AppendLog::in_memory(SEGMENT_BYTES, 2).unwrap());
        let [prefilled] = &prefill(&log, ROOM)[..] else {
            unreachable!("the first segment is partly filled")
        };
        let prefilled = prefilled.clone();
        let second = log.append(KEY, &VALUE).unwrap();
        assert_eq!(second.position, SEGMENT_BYTES + FIRST_RECORD);
        assert_eq!(u64::from(second.record_bytes), RECORD);
        assert_eq!(log.__live_segments(), 2);
        let record = (second.position, KEY.to_vec(), VALUE.to_vec());

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || read_then_scan(&log));
        }
        let (retired, seen) = team.run(|| {
            let retired = log.retire_segment(0);
            flush_collector(2);
            retired
        });
        assert!(retired, "the first segment is behind the tail");
        let seen = &seen[0];

        match &seen.found {
            Some(found) => {
                assert_eq!(found, &prefilled, "a pinned reader reads exact bytes");
                assert_eq!(
                    seen.live_while_pinned, 2,
                    "a segment a pinned reader found is not freed under it"
                );
            }
            None => assert!(seen.live_while_pinned >= 1),
        }
        assert!(
            seen.scanned == [prefilled.clone(), record.clone()] || seen.scanned == [record.clone()],
            "a scan returns whole records, skipping a retired segment: {:?}",
            seen.scanned
        );

        // No guard holds the segment any more: the collector frees it.
        flush_collector(3);
        assert_eq!(log.__live_segments(), 1, "a retired segment is freed");
        assert_eq!(log.segment_count(), 1);
        assert!(!log.retire_segment(0), "a segment is retired once");
        assert!(!log.retire_segment(1), "the tail's segment is not retired");
        let guard = seglog::pin();
        assert!(matches!(
            log.read(FIRST_RECORD, &guard),
            Err(Error::NoRecord { .. })
        ));
        let scanned: Vec<Record> = log
            .scan(&guard)
            .map(|r| (r.position, r.key.to_vec(), r.value.to_vec()))
            .collect();
        assert_eq!(scanned, [record]);
        drop(guard);
        team.dismiss();
    });
}
