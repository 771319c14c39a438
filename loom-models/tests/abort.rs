//! Abort: a writer whose fill closure panics leaves an aborted record that scans pass.
//!
//! Writer A calls `append_with` and panics inside the fill closure after writing part of its
//! value; writer B appends a record at the same time; a scanner scans meanwhile. Either writer
//! may reserve first. Proves, in every interleaving:
//! - A's panic reaches A's caller unchanged, and A's reservation becomes an aborted record: a
//!   read at its position is `NoRecord`, and no scan ever returns A's key or partial bytes;
//! - a concurrent scan returns B's whole record or nothing, and a scan afterwards passes the
//!   aborted record and returns B's record with its exact bytes;
//! - the counters: exactly one aborted record, two records, no roll-over.
#![cfg(seglog_loom)]

use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use loom::sync::Arc;
use seglog::{AppendLog, Error, RecordKind};
use seglog_loom_models::{FIRST_RECORD, Record, SEGMENT_BYTES, Team, record_bytes};

const KEY_A: &[u8] = b"a";
const KEY_B: &[u8] = b"b";
const VALUE_B: [u8; 16] = *b"bbbbbbbbBBBBBBBB";
/// Both records are 64 bytes (1-byte key, 16-byte value): the first segment holds three.
const RECORD: u64 = record_bytes(1, 16);
/// What A's fill closure panics with.
const FILL_PANIC: &str = "the fill closure gave up";

/// Keeps the expected panic of writer A out of the test output (it happens in every execution);
/// any other panic is reported as usual.
fn quiet_fill_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if message(info.payload()) != Some(FILL_PANIC) {
                default(info);
            }
        }));
    });
}

/// The text a panic was raised with, if it was raised with text.
fn message(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    match payload.downcast_ref::<&str>() {
        Some(text) => Some(text),
        None => payload.downcast_ref::<String>().map(String::as_str),
    }
}

fn scan_all(log: &AppendLog) -> (Vec<Record>, u64) {
    let guard = seglog::pin();
    let mut scan = log.scan(&guard);
    let records = scan
        .by_ref()
        .map(|r| {
            assert_eq!(
                r.kind,
                RecordKind::Put,
                "scans return puts and tombstones only"
            );
            (r.position, r.key.to_vec(), r.value.to_vec())
        })
        .collect();
    assert!(
        scan.error().is_none(),
        "the scan failed: {:?}",
        scan.error()
    );
    (records, scan.position())
}

#[derive(Debug)]
enum Outcome {
    B(seglog::Appended),
    Scanned(Vec<Record>, u64),
}

#[test]
fn aborted_record_is_passed_by_scans() {
    quiet_fill_panics();
    seglog_loom_models::model(|| {
        let log = Arc::new(AppendLog::in_memory(SEGMENT_BYTES, 2).unwrap());
        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || Outcome::B(log.append(KEY_B, &VALUE_B).unwrap()));
        }
        {
            let log = Arc::clone(&log);
            team.spawn(move || {
                let (records, stopped_at) = scan_all(&log);
                Outcome::Scanned(records, stopped_at)
            });
        }
        let (a, theirs) = team.run(|| {
            panic::catch_unwind(AssertUnwindSafe(|| {
                log.append_with(KEY_A, 16, |value| {
                    value[..8].copy_from_slice(b"partial!");
                    panic!("{}", FILL_PANIC);
                })
            }))
        });
        let payload = a.expect_err("A's fill closure panicked");
        assert_eq!(
            message(&*payload),
            Some(FILL_PANIC),
            "A's panic reaches A's caller"
        );
        let [Outcome::B(b), Outcome::Scanned(scanned, stopped_at)] = &theirs[..] else {
            panic!("the team reports B, then the scanner: {theirs:?}");
        };

        // A's region is the other one of the first two.
        let positions = [FIRST_RECORD, FIRST_RECORD + RECORD];
        assert!(positions.contains(&b.position), "B at {}", b.position);
        let a_position = positions[usize::from(b.position == FIRST_RECORD)];
        let end = FIRST_RECORD + 2 * RECORD;
        let record_b = (b.position, KEY_B.to_vec(), VALUE_B.to_vec());

        // The concurrent scan: B whole or nothing, never A, stopping at an unpublished region.
        if scanned.is_empty() {
            assert!(
                *stopped_at == FIRST_RECORD || *stopped_at == FIRST_RECORD + RECORD,
                "an empty scan stopped at {stopped_at}"
            );
        } else {
            assert_eq!(
                scanned,
                std::slice::from_ref(&record_b),
                "a scan returns B whole"
            );
            assert!(
                *stopped_at == end || (*stopped_at == a_position && a_position > b.position),
                "a scan that returned B stopped at {stopped_at}"
            );
        }

        // Afterwards: A is aborted, B is there, the scan passes A.
        let guard = seglog::pin();
        match log.read(a_position, &guard) {
            Err(Error::NoRecord { position, .. }) => assert_eq!(position, a_position),
            other => panic!("reading the aborted record gave {other:?}"),
        }
        let record = log.read(b.position, &guard).unwrap();
        assert_eq!((record.key, record.value), (KEY_B, &VALUE_B[..]));
        drop(guard);
        assert_eq!(scan_all(&log), (vec![record_b], end));
        let stats = log.stats();
        assert_eq!(stats.aborted, 1, "one aborted record");
        assert_eq!(stats.records, 2, "B's record and A's aborted one");
        assert_eq!(stats.record_bytes, 2 * RECORD);
        assert_eq!(stats.rollovers, 0);
        assert_eq!(log.tail_position(), end);
        team.dismiss();
    });
}
