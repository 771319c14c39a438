//! Conditional writes (issue 16): `compare_and_put` is linearizable with the other writes of its
//! key, exactly one of two writers expecting one version wins, and a comparison that failed
//! leaves nothing that a crash image (what recovery would find, `Log::__recovered_state`) or a
//! reader could ever take for a value.
//!
//! The log is `small_log(512, ..)`: one 512-byte segment, a 4-slot index; `k` holds generation
//! 0 before the window.
//!
//! 1. `conditional_put_racing_a_put_and_a_reader`: a member puts `k` if it is still at
//!    generation 0's version, another member puts `k` unconditionally, the model thread reads
//!    `k`. The conditional put succeeds exactly when the put was not installed before its CAS;
//!    the key ends at the value of the highest version written, in memory and at recovery; the
//!    reader never sees the conditional value unless it succeeded. Twin
//!    `Broken::ConditionalBlindStore` (the comparison, then a blind store) lets the conditional
//!    put overwrite a newer put, which recovery then brings back.
//! 2. `two_conditional_puts_expecting_one_version`: both members expect generation 0's version;
//!    the model thread takes a crash image meanwhile. Exactly one wins, the other is told the
//!    winner's version, and no crash image ever holds the loser's value. Twins: the blind store
//!    lets both win; `Broken::ConditionalPublishFirst` (publish, then compare, then abort the
//!    loser) shows the loser's value in a crash image taken before its abort.
#![cfg(seglog_loom)]

use loom::sync::Arc;
use seglog::__broken::Broken;
use seglog::{Error, Log};
use seglog_loom_models::{Team, kv_value, small_log, twin};

/// Index seed of both scenarios (any: one key).
const SEED: u64 = 3;

fn log_with_k() -> (Arc<Log>, u64) {
    let log = Arc::new(small_log(512, SEED));
    let v0 = log.put(b"k", &kv_value(b'k', 0)).unwrap();
    (log, v0)
}

fn conditional_put_racing_a_put_and_a_reader() {
    seglog_loom_models::model(|| {
        let (log, v0) = log_with_k();
        let mut team = Team::new();
        for generation in [1u8, 2] {
            let log = Arc::clone(&log);
            team.spawn(move || {
                let value = kv_value(b'k', generation);
                if generation == 1 {
                    log.compare_and_put(b"k", Some(v0), &value)
                } else {
                    log.put(b"k", &value)
                }
            });
        }
        let (seen, results) = team.run(|| log.get(b"k"));
        let put = *results[1].as_ref().expect("the put succeeds");
        let (expected, version) = match &results[0] {
            Ok(conditional) => {
                assert_ne!(*conditional, put);
                if *conditional > put {
                    (kv_value(b'k', 1), *conditional)
                } else {
                    (kv_value(b'k', 2), put)
                }
            }
            Err(Error::VersionMismatch { current }) => {
                assert_eq!(
                    *current,
                    Some(put),
                    "a failed comparison names the put it lost to"
                );
                (kv_value(b'k', 2), put)
            }
            Err(other) => panic!("unexpected error {other}"),
        };
        let seen = seen.expect("k always has a value");
        assert!(
            seen == kv_value(b'k', 0)
                || seen == kv_value(b'k', 2)
                || (seen == kv_value(b'k', 1) && results[0].is_ok()),
            "the reader saw {seen:?}, the conditional put returned {:?}",
            results[0]
        );
        assert_eq!(
            log.get(b"k"),
            Some(expected.clone()),
            "the key's value is the highest version's"
        );
        assert_eq!(log.version(b"k"), Some(version));
        assert_eq!(
            log.__recovered_state().get(b"k".as_slice()),
            Some(&expected),
            "recovery finds the key's value"
        );
        team.dismiss();
    });
}

fn two_conditional_puts_expecting_one_version() {
    seglog_loom_models::model(|| {
        let (log, v0) = log_with_k();
        let mut team = Team::new();
        for generation in [1u8, 2] {
            let log = Arc::clone(&log);
            team.spawn(move || log.compare_and_put(b"k", Some(v0), &kv_value(b'k', generation)));
        }
        let (image, results) = team.run(|| log.__recovered_state());
        let winners: Vec<usize> = (0..2).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "exactly one wins: {results:?}");
        let (winner, loser) = (winners[0], 1 - winners[0]);
        let winning_version = *results[winner].as_ref().unwrap();
        assert!(
            matches!(
                results[loser],
                Err(Error::VersionMismatch { current }) if current == Some(winning_version)
            ),
            "the loser is told the winner's version: {results:?}"
        );
        let winning_value = kv_value(b'k', winner as u8 + 1);
        let losing_value = kv_value(b'k', loser as u8 + 1);
        assert_ne!(
            image.get(b"k".as_slice()),
            Some(&losing_value),
            "a failed comparison's value is in a crash image"
        );
        assert_eq!(log.get(b"k"), Some(winning_value.clone()));
        assert_eq!(
            log.__recovered_state().get(b"k".as_slice()),
            Some(&winning_value),
            "a failed comparison's value is in a crash image"
        );
        team.dismiss();
    });
}

#[test]
fn a_conditional_put_racing_a_put_and_a_reader_is_linearizable() {
    conditional_put_racing_a_put_and_a_reader();
}

#[test]
fn twin_conditional_blind_store_overwrites_a_newer_put() {
    twin(
        "twin_conditional_blind_store_overwrites_a_newer_put",
        Broken::ConditionalBlindStore,
        "the key's value is the highest version's",
        conditional_put_racing_a_put_and_a_reader,
    );
}

#[test]
fn of_two_conditional_puts_expecting_one_version_exactly_one_wins() {
    two_conditional_puts_expecting_one_version();
}

#[test]
fn twin_conditional_blind_store_lets_both_win() {
    twin(
        "twin_conditional_blind_store_lets_both_win",
        Broken::ConditionalBlindStore,
        "exactly one wins",
        two_conditional_puts_expecting_one_version,
    );
}

#[test]
fn twin_conditional_publish_first_leaves_a_failed_value_in_a_crash_image() {
    twin(
        "twin_conditional_publish_first_leaves_a_failed_value_in_a_crash_image",
        Broken::ConditionalPublishFirst,
        "a failed comparison's value is in a crash image",
        two_conditional_puts_expecting_one_version,
    );
}
