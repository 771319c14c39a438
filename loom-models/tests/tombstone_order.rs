//! Dropping tombstones: a remove racing compaction's relocation of the key it removes, then
//! the index forgetting the tombstone and compaction dropping it from the oldest segment.
//!
//! Segment 0 holds `k` and seven dead versions of `a` (exactly full); segment 1, the tail,
//! holds `a`'s latest version and `b` to `g`, with room for one 56-byte record. In the window a
//! member removes `k` (a 48-byte tombstone) while the model thread compacts segment 0 as a
//! pass does (`Log::__compact_segment`), which relocates `k`'s put: a copy with the put's old
//! version at the head of the log. Whichever reserves first gets the room left in segment 1,
//! so when the tombstone goes first, the copy opens segment 2, *after* the tombstone: an older
//! put behind the key's newest tombstone, which breaks the tombstone order (TO,
//! `compaction/relocate.rs`) unless it is repaired (by the remove, if the copy's switch came
//! first, or by the relocation, if the remove's install did).
//!
//! After the window, deterministically: a compaction pass finishes segment 0's retirement and
//! moves the settled frontier to segment 2; an index resize forgets `k`'s tombstone if the
//! frontier allows; segment 1, now the oldest, is compacted, dropping the forgotten
//! tombstones in it. Proves, in every interleaving:
//! - `get(k)` is `None`, and `k` is absent from what recovery would find in the segments left
//!   (`Log::__recovered_state`): the removed key never comes back;
//! - every other key has its latest value, in memory and in the recovered state;
//! - `len` counts the seven other keys.
//!
//! The twin switches on `Broken::UnorderedTombstone` (no repairs): in the interleavings where
//! the copy lands after the tombstone, the tombstone is forgotten and dropped with segment 1
//! while the copy of `k`'s put stays in segment 2, so recovery brings `k` back.
//!
//! A second scenario (found by review) has the member put `k` and then remove it while the
//! relocation runs: the relocation's switch loses to the put, and the remove's tombstone,
//! reserved before the copy, installs after the relocation looked (it replaces the put, so it
//! does not see the copy either). Segment 1 has room for the put and the tombstone but not the
//! copy. Only the deferred repair (`log/settled.rs`, `PendingRepair`: the settled frontier is
//! held below the tail the relocation saw until the copy's segment settles and the order is
//! repaired) keeps the tombstone from being forgotten and dropped ahead of the copy; the same
//! twin fails it.
#![cfg(seglog_loom)]

use loom::sync::Arc;
use seglog::__broken::Broken;
use seglog::Log;
use seglog_loom_models::{Team, kv_value, tombstone_model_log, twin};

const OTHERS: &[u8] = b"bcdefg";

fn check_state(log: &Log) {
    let recovered = log.__recovered_state();
    assert!(
        !recovered.contains_key(b"k".as_slice()),
        "a removed key would come back at recovery: {:?}",
        recovered.get(b"k".as_slice())
    );
    assert_eq!(log.get(b"k"), None, "k is removed");
    let mut latest = vec![(b'a', 7)];
    latest.extend(OTHERS.iter().map(|&key| (key, 0)));
    for (key, generation) in latest {
        assert_eq!(log.get(&[key]), Some(kv_value(key, generation)));
        assert_eq!(
            recovered.get([key].as_slice()),
            Some(&kv_value(key, generation)),
            "recovery finds {:?}'s latest value",
            key as char
        );
    }
    assert_eq!(recovered.len(), 7);
    assert_eq!(log.len(), 7);
}

fn remove_racing_a_relocation() {
    seglog_loom_models::model(|| {
        let log = Arc::new(tombstone_model_log(OTHERS));

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || assert!(log.remove(b"k").unwrap(), "k had a value"));
        }
        let (retired, _) = team.run(|| log.__compact_segment(0).unwrap());
        assert!(retired, "segment 0 is sealed, published and installed");
        for _ in 0..3 {
            seglog::pin().flush();
        }
        // Finishes segment 0's retirement and moves the settled frontier to the tail's segment.
        log.compact().unwrap();
        log.__resize_index();
        assert_eq!(log.append_log().first_segment(), 1, "segment 0 is gone");
        // Segment 1 is sealed unless the tombstone, taking the room the copy would have had,
        // came alone (the relocation then found `k` removed and copied nothing): then nothing
        // older than the tombstone is left, and there is nothing to drop.
        if log.__compact_segment(1).unwrap() {
            for _ in 0..3 {
                seglog::pin().flush();
            }
            log.compact().unwrap();
        } else {
            let tail = log.append_log().tail_position();
            assert_eq!(tail / 512, 1, "only the tail is not compacted");
        }
        check_state(&log);
        team.dismiss();
    });
}

fn put_then_remove_racing_a_relocation() {
    seglog_loom_models::model(|| {
        // Segment 1: `a`'s latest and b to f, 112 bytes of room: the put (56) and the
        // tombstone (48) fit, a copy after both does not.
        let log = Arc::new(tombstone_model_log(&OTHERS[..5]));
        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || {
                log.put(b"k", &kv_value(b'k', 1)).unwrap();
                assert!(log.remove(b"k").unwrap(), "k had a value");
            });
        }
        let (retired, _) = team.run(|| log.__compact_segment(0).unwrap());
        assert!(retired, "segment 0 is sealed, published and installed");
        for _ in 0..3 {
            seglog::pin().flush();
        }
        log.compact().unwrap();
        log.__resize_index();
        if log.append_log().first_segment() == 1 && log.__compact_segment(1).unwrap() {
            for _ in 0..3 {
                seglog::pin().flush();
            }
            log.compact().unwrap();
        }
        let recovered = log.__recovered_state();
        assert!(
            !recovered.contains_key(b"k".as_slice()),
            "a removed key would come back at recovery: {:?}",
            recovered.get(b"k".as_slice())
        );
        assert_eq!(log.get(b"k"), None, "k is removed");
        let mut latest = vec![(b'a', 7)];
        latest.extend(OTHERS[..5].iter().map(|&key| (key, 0)));
        for (key, generation) in latest {
            assert_eq!(log.get(&[key]), Some(kv_value(key, generation)));
            assert_eq!(
                recovered.get([key].as_slice()),
                Some(&kv_value(key, generation))
            );
        }
        assert_eq!((log.len(), recovered.len()), (6, 6));
        team.dismiss();
    });
}

#[test]
fn a_put_and_a_remove_racing_a_relocation_never_bring_the_key_back() {
    put_then_remove_racing_a_relocation();
}

#[test]
fn twin_unordered_tombstone_after_a_put_brings_a_removed_key_back() {
    twin(
        "twin_unordered_tombstone_after_a_put_brings_a_removed_key_back",
        Broken::UnorderedTombstone,
        "a removed key would come back at recovery",
        put_then_remove_racing_a_relocation,
    );
}

#[test]
fn a_removed_key_never_comes_back_when_its_tombstone_is_dropped() {
    remove_racing_a_relocation();
}

#[test]
fn twin_unordered_tombstone_brings_a_removed_key_back() {
    twin(
        "twin_unordered_tombstone_brings_a_removed_key_back",
        Broken::UnorderedTombstone,
        "a removed key would come back at recovery",
        remove_racing_a_relocation,
    );
}
