//! Publish: a reader racing a writer sees the whole record or nothing.
//!
//! One writer appends key `k` with a 16-byte value while a reader, which knows where the record
//! will land (it is the only append), first reads that position and then scans the log. Proves,
//! in every interleaving:
//! - a read by position returns the record with its exact key and value, or `NoRecord`;
//! - a scan returns the records before it, then the new record with its exact bytes or nothing:
//!   never a length without its bytes, never a neighbour's bytes, never an error;
//! - what the reader saw by position, its later scan sees too.
//!
//! The roll-over variant leaves too little room, so the writer pads the segment, moves the log to
//! a new segment and appends there, while the scan crosses the padding.
#![cfg(seglog_loom)]

use loom::sync::Arc;
use seglog::__broken::Broken;
use seglog::{AppendLog, Error, RecordKind};
use seglog_loom_models::{FIRST_RECORD, Record, SEGMENT_BYTES, Team, prefill, record_bytes, twin};

const KEY: &[u8] = b"k";
const VALUE: [u8; 16] = *b"0123456789abcdef";
/// The record's length in the log: 64 bytes.
const RECORD: u64 = record_bytes(KEY.len() as u64, VALUE.len() as u64);

/// What the reader saw.
#[derive(Debug)]
struct Seen {
    by_position: Option<Record>,
    scanned: Vec<Record>,
    /// Where the scan stopped: the first position it found unpublished.
    stopped_at: u64,
}

fn read_then_scan(log: &AppendLog, position: u64) -> Seen {
    let guard = seglog::pin();
    let by_position = match log.read(position, &guard) {
        Ok(record) => {
            assert_eq!(record.kind, RecordKind::Put);
            Some((record.position, record.key.to_vec(), record.value.to_vec()))
        }
        Err(Error::NoRecord { position: p, .. }) if p == position => None,
        Err(other) => panic!("reading an unpublished position gave {other:?}"),
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
        by_position,
        scanned,
        stopped_at: scan.position(),
    }
}

/// One append into a segment with `room` bytes left, against a reader.
fn reader_against_writer(room: u64) {
    let rolls_over = room < RECORD;
    seglog_loom_models::model(move || {
        let log = Arc::new(AppendLog::in_memory(SEGMENT_BYTES, 2).unwrap());
        let [prefilled] = &prefill(&log, room)[..] else {
            unreachable!("the first segment is partly filled")
        };
        let prefilled = prefilled.clone();
        let position = if rolls_over {
            SEGMENT_BYTES + FIRST_RECORD
        } else {
            SEGMENT_BYTES - room
        };
        let record = (position, KEY.to_vec(), VALUE.to_vec());

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || read_then_scan(&log, position));
        }
        let (appended, seen) = team.run(|| log.append(KEY, &VALUE).unwrap());
        let seen = &seen[0];
        assert_eq!(appended.position, position);

        if let Some(by_position) = &seen.by_position {
            assert_eq!(
                by_position, &record,
                "a read by position returns exact bytes"
            );
        }
        let all = [prefilled.clone(), record.clone()];
        // Before the record, the scan stops where the writer reserved (or, after a roll-over,
        // at the padding, or past it at the record in the new segment); after it, at the tail.
        let before = if rolls_over {
            vec![SEGMENT_BYTES - room, position]
        } else {
            vec![position]
        };
        let after = position + RECORD;
        assert!(
            (seen.scanned == all[..1] && before.contains(&seen.stopped_at))
                || (seen.scanned == all && seen.stopped_at == after),
            "a concurrent scan returns whole records or nothing: {:?}, stopped at {}",
            seen.scanned,
            seen.stopped_at
        );
        if seen.by_position.is_some() {
            assert_eq!(seen.scanned, all, "a record seen by position stays visible");
        }

        // Afterwards everyone sees it.
        let guard = seglog::pin();
        let scanned: Vec<Record> = log
            .scan(&guard)
            .map(|r| (r.position, r.key.to_vec(), r.value.to_vec()))
            .collect();
        assert_eq!(scanned, all);
        let stats = log.stats();
        assert_eq!(stats.rollovers, u64::from(rolls_over));
        assert_eq!(stats.padding_bytes, if rolls_over { room } else { 0 });
        drop(guard);
        team.dismiss();
    });
}

#[test]
fn reader_against_writer_in_one_segment() {
    reader_against_writer(96);
}

#[test]
fn reader_against_writer_across_a_roll_over() {
    reader_against_writer(40);
}

/// A `Relaxed` commit store publishes the commit word without the bytes before it: the reader's
/// read of the record's bytes is not ordered after the writer's writes, which loom reports.
#[test]
fn twin_relaxed_commit_is_caught() {
    twin(
        "twin_relaxed_commit_is_caught",
        Broken::RelaxedCommit,
        "Causality violation: Concurrent read and write accesses",
        || reader_against_writer(96),
    );
}

/// The same bug on the roll-over path: the padding record and the record in the new segment.
#[test]
fn twin_relaxed_commit_across_a_roll_over_is_caught() {
    twin(
        "twin_relaxed_commit_across_a_roll_over_is_caught",
        Broken::RelaxedCommit,
        "Causality violation: Concurrent read and write accesses",
        || reader_against_writer(40),
    );
}
