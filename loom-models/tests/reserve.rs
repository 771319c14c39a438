//! Reservation: writers bumping the tail of a segment too small for all of them.
//!
//! Each writer (the model thread is one of them) appends one or two 56-byte records to a segment
//! with `room` bytes left, reading `tail_position()` before and after each append. Proves, in
//! every interleaving:
//! - the records' regions never overlap, and each lies between the tails its writer saw before
//!   and after appending it: the tail a thread sees only grows, and so do a writer's positions,
//!   across the roll-over too;
//! - exactly one writer rolls the log over, leaving one padding record that fills exactly the gap
//!   after the last record of the first segment;
//! - every writer reads back its own key and value at its position, and a scan returns every
//!   record, in position order, with its exact bytes.
#![cfg(seglog_loom)]

use loom::sync::Arc;
use seglog::__broken::Broken;
use seglog::{AppendLog, Appended, RecordKind};
use seglog_loom_models::{FIRST_RECORD, Record, SEGMENT_BYTES, Team, prefill, record_bytes, twin};

/// Writer `w` appends key `[w]` and value `[w; 8]`: a 56-byte record.
const RECORD: u64 = record_bytes(1, 8);

/// What one writer saw: the tail before its first append and after each, and its appends.
#[derive(Debug, Clone)]
struct Wrote {
    writer: u8,
    tails: Vec<u64>,
    appended: Vec<Appended>,
}

fn write(log: &AppendLog, writer: u8, records: usize) -> Wrote {
    let mut tails = vec![log.tail_position()];
    let mut appended = Vec::new();
    for _ in 0..records {
        appended.push(
            log.append(&[writer], &[writer; 8])
                .expect("the log has a segment to roll over to"),
        );
        tails.push(log.tail_position());
    }
    Wrote {
        writer,
        tails,
        appended,
    }
}

/// `writers` writers append `records` records each to a segment with `room` bytes left.
fn writers_in_a_full_segment(writers: u8, records: usize, room: u64) {
    // How many of the writers' records fit before the roll-over, and the gap padding fills.
    let total = u64::from(writers) * records as u64;
    let fitting = room / RECORD;
    assert!(fitting < total, "the segment must be too small");
    assert!(
        (total - fitting) * RECORD <= SEGMENT_BYTES - FIRST_RECORD,
        "the rest fits the next segment"
    );
    let gap = room - fitting * RECORD;

    seglog_loom_models::model(move || {
        let log = Arc::new(AppendLog::in_memory(SEGMENT_BYTES, 2).unwrap());
        let prefilled = prefill(&log, room);
        let mut team = Team::new();
        for writer in 1..writers {
            let log = Arc::clone(&log);
            team.spawn(move || write(&log, writer, records));
        }
        let (mine, theirs) = team.run(|| write(&log, 0, records));

        // The tail only grows: each record lies between the tails its writer saw around it.
        let mut all: Vec<(u8, Appended)> = Vec::new();
        for w in std::iter::once(&mine).chain(&theirs) {
            for (i, a) in w.appended.iter().enumerate() {
                let end = a.position + u64::from(a.record_bytes);
                assert_eq!(u64::from(a.record_bytes), RECORD);
                assert!(
                    w.tails[i] <= a.position && end <= w.tails[i + 1],
                    "writer {} saw the tail at {} then {} around its record [{}, {end})",
                    w.writer,
                    w.tails[i],
                    w.tails[i + 1],
                    a.position
                );
                all.push((w.writer, *a));
            }
        }
        // Regions never overlap.
        all.sort_by_key(|(_, a)| a.position);
        for pair in all.windows(2) {
            let (a, b) = (&pair[0].1, &pair[1].1);
            assert!(
                a.position + u64::from(a.record_bytes) <= b.position,
                "regions overlap: {a:?} {b:?}"
            );
        }
        // The records that fit fill the first segment up to the gap; the rest open the second.
        let positions: Vec<u64> = all.iter().map(|(_, a)| a.position).collect();
        let first_free = SEGMENT_BYTES - room;
        let expected: Vec<u64> = (0..total)
            .map(|i| {
                if i < fitting {
                    first_free + i * RECORD
                } else {
                    SEGMENT_BYTES + FIRST_RECORD + (i - fitting) * RECORD
                }
            })
            .collect();
        assert_eq!(
            positions, expected,
            "records are packed around one roll-over"
        );

        // Exactly one roll-over, whose padding fills exactly the gap.
        let stats = log.stats();
        assert_eq!(stats.rollovers, 1, "exactly one roll-over");
        assert_eq!(stats.padding_bytes, gap, "one padding record fills the gap");
        assert_eq!(stats.records, prefilled.len() as u64 + total);
        assert_eq!(stats.aborted, 0);
        assert_eq!(log.segment_count(), 2);
        assert_eq!(
            log.tail_position(),
            SEGMENT_BYTES + FIRST_RECORD + (total - fitting) * RECORD
        );

        // Every writer's bytes read back at its positions, and a scan sees them all in order.
        let guard = seglog::pin();
        for (writer, a) in &all {
            let record = log.read(a.position, &guard).unwrap();
            assert_eq!(record.kind, RecordKind::Put);
            assert_eq!(record.key, &[*writer]);
            assert_eq!(record.value, &[*writer; 8]);
        }
        let scanned: Vec<Record> = log
            .scan(&guard)
            .map(|r| (r.position, r.key.to_vec(), r.value.to_vec()))
            .collect();
        let mut want = prefilled.clone();
        want.extend(
            all.iter()
                .map(|(writer, a)| (a.position, vec![*writer], vec![*writer; 8])),
        );
        assert_eq!(scanned, want, "a scan returns every record in order");
        drop(guard);
        team.dismiss();
    });
}

/// One record fits; the other writer crosses the end and rolls over.
#[test]
fn two_writers_in_a_full_segment() {
    writers_in_a_full_segment(2, 1, 96);
}

/// No record fits: one writer crosses the end while the other overshoots it and waits for the
/// roll-over.
#[test]
fn two_writers_one_waits_for_the_roll_over() {
    writers_in_a_full_segment(2, 1, 40);
}

/// Two records fit; the third writer crosses the end and rolls over.
#[test]
fn three_writers_in_a_full_segment() {
    writers_in_a_full_segment(3, 1, 136);
}

/// One record fits, one writer crosses the end, and one overshoots it and waits.
#[test]
fn three_writers_one_waits_for_the_roll_over() {
    writers_in_a_full_segment(3, 1, 96);
}

/// Two records each in an empty segment: three fit and the fourth crosses the end. Each writer's
/// second record comes after its first, across the roll-over too.
#[test]
fn two_writers_two_records_each() {
    writers_in_a_full_segment(2, 2, 192);
}

/// Two records each, two fit: the third crosses the end, and the fourth may overshoot it and wait.
#[test]
fn two_writers_two_records_each_one_waits() {
    writers_in_a_full_segment(2, 2, 136);
}

/// The seed's allocation (load the tail, then store tail + len) hands two writers the same
/// region: they write the same bytes concurrently, which loom reports.
#[test]
fn twin_load_then_add_is_caught() {
    twin(
        "twin_load_then_add_is_caught",
        Broken::LoadThenAdd,
        "Causality violation: Concurrent write accesses to `UnsafeCell`",
        || writers_in_a_full_segment(2, 1, 96),
    );
}
