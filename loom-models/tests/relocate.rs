//! Relocation: compaction's copy-then-switch of a live record, racing a put of the same key.
//!
//! Key `k` holds `OLD`. The model thread relocates `k`'s current record the way compaction does
//! (`Log::__relocate`: a copy with the original version at the head of the log, switched in by
//! `Index::replace_exact` only if the index still points at the original) while one member puts
//! `NEW` under `k` and another, pinned, reads `k`. Proves, in every interleaving:
//! - the old value never wins: afterwards `get` returns the put's value whether the switch came
//!   first (the put then replaces the copy, which has the old, lower version) or the put did (the
//!   switch then finds another address and leaves its copy dead);
//! - a relocation that reports its copy switched in left a record with the original's version
//!   and bytes at that position;
//! - a later relocation moves the put's record and does not bring the old value back;
//! - the reader sees the old record (the original, or its copy if that was switched in: same
//!   version, same bytes) or the put's record, whole, with its version and position;
//! - one live key, and one record's worth of live bytes.
//!
//! The twin switches on `Broken::BlindRelocate` (the switch stores the copy's address without
//! the CAS on the original's): a put installed between the switch's check and its store is
//! overwritten by the copy of the old value.
#![cfg(seglog_loom)]

use loom::sync::Arc;
use seglog::__broken::Broken;
use seglog::{Log, RecordKind};
use seglog_loom_models::{FIRST_RECORD, KV_RECORD, Team, small_log, twin};

const KEY: &[u8] = b"k";
const OLD: &[u8] = b"old:0123";
const NEW: &[u8] = b"NEW-4567";

/// What a member did.
#[derive(Debug)]
enum Did {
    /// Put `NEW`; its version.
    Put(u64),
    /// Read `k` while pinned: position, version and value of the record found.
    Read(Option<(u64, u64, Vec<u8>)>),
}

/// The record at `position`: kind, key, version, value.
fn record_at(log: &Log, position: u64) -> (RecordKind, Vec<u8>, u64, Vec<u8>) {
    let guard = seglog::pin();
    let record = log.append_log().read(position, &guard).unwrap();
    (
        record.kind,
        record.key.to_vec(),
        record.version,
        record.value.to_vec(),
    )
}

fn relocation_against_a_put_and_a_reader() {
    seglog_loom_models::model(|| {
        // Four 56-byte records at most (the original, its copy, the put, the later copy).
        let log = Arc::new(small_log(512, 0));
        let old = log.put(KEY, OLD).unwrap();
        assert_eq!(old, FIRST_RECORD, "a record's version is its position");

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || Did::Put(log.put(KEY, NEW).unwrap()));
        }
        {
            let log = Arc::clone(&log);
            team.spawn(move || {
                let pinned = log.pin();
                Did::Read(
                    pinned
                        .get_record(KEY)
                        .map(|record| (record.position, record.version, record.value.to_vec())),
                )
            });
        }
        let (relocated, did) = team.run(|| log.__relocate(KEY).unwrap());
        let [Did::Put(new), Did::Read(seen)] = &did[..] else {
            panic!("the members put, then read: {did:?}")
        };
        let new = *new;

        let got = log.get(KEY);
        assert!(
            got.as_deref() == Some(NEW),
            "the old value never wins over a racing put: relocated to {relocated:?}, put at \
             {new}, get returns {:?}",
            got.as_deref().map(String::from_utf8_lossy)
        );
        if let Some(copy) = relocated {
            assert_eq!(
                record_at(&log, copy),
                (RecordKind::Put, KEY.to_vec(), old, OLD.to_vec()),
                "a copy keeps the original's version and bytes"
            );
        }
        // The original is at `old` (its version), its copy at `relocated` if it was switched in
        // (a copy that lost is never current, so never read).
        let from_old = |position| position == old || Some(position) == relocated;
        assert!(
            matches!(seen, Some((p, v, value)) if from_old(*p) && *v == old && value == OLD)
                || *seen == Some((new, new, NEW.to_vec())),
            "a reader during the relocation sees one of the two values, whole: {:?}, \
             relocated to {relocated:?}",
            seen.as_ref().map(|(position, version, value)| (
                position,
                version,
                String::from_utf8_lossy(value)
            ))
        );

        // Compaction may relocate the key again: it moves the put's record.
        let again = log.__relocate(KEY).unwrap();
        let again = again.expect("the current record is relocated when nothing races it");
        assert_eq!(
            record_at(&log, again),
            (RecordKind::Put, KEY.to_vec(), new, NEW.to_vec()),
            "a later relocation copies the put's record"
        );
        assert_eq!(
            log.get(KEY).as_deref(),
            Some(NEW),
            "a later relocation does not bring the old value back"
        );
        assert_eq!(log.len(), 1);
        let stats = log.stats();
        assert_eq!(stats.keys, 1);
        assert_eq!(stats.live_bytes, KV_RECORD, "one current record");
        team.dismiss();
    });
}

#[test]
fn relocation_against_a_put_and_a_reader_keeps_the_new_value() {
    relocation_against_a_put_and_a_reader();
}

/// A blind switch overwrites the put that landed after the switch compared addresses: the copy
/// of the old value becomes current.
#[test]
fn twin_blind_relocate_brings_the_old_value_back() {
    twin(
        "twin_blind_relocate_brings_the_old_value_back",
        Broken::BlindRelocate,
        "the old value never wins over a racing put",
        relocation_against_a_put_and_a_reader,
    );
}
