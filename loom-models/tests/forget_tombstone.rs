//! Forgetting a removed key in the index: a slow put racing a remove, a compaction pass (which
//! moves the settled frontier) and an index resize (which leaves forgettable tombstones behind).
//!
//! Segment 0 holds `k` and seven dead versions of `a` (exactly full); segment 1, the tail,
//! holds `a`'s latest version and `b` to `g`, with room for one 56-byte record. In the window a
//! member removes `k`, runs a compaction pass and resizes the index while the model thread
//! puts a new value under `k`. Whichever of the put and the tombstone reserves first gets the room
//! left in segment 1. When the put goes first, it has the lower version: if the tombstone's
//! install comes before the put's, the put must be turned away by the tombstone and retry
//! with a newer version (`Log::put_appended`), so the index must not forget the tombstone
//! while the put's install is still to come. The settled frontier (`log/settled.rs`) never
//! covers a segment with an install hold open, so a resize forgets the tombstone only once no
//! older record of `k` can be installed.
//!
//! Proves, in every interleaving: what `get(k)` returns is what recovery would find
//! (`Log::__recovered_state`) — the new value if the put took effect after the remove, nothing
//! if the remove took effect after it — and every other key reads its latest value.
//!
//! The twin switches on `Broken::ForgetUnsettled` (migrations forget every tombstone): the
//! put, installed after the resize forgot the tombstone, lands in the index with a version
//! below the tombstone's, so memory says `k` has the new value and recovery says it is gone.
#![cfg(seglog_loom)]

use loom::sync::Arc;
use seglog::__broken::Broken;
use seglog_loom_models::{Team, kv_value, tombstone_model_log, twin};

const OTHERS: &[u8] = b"bcdefg";

/// Preemption bound in CI: the window holds a whole compaction pass and a resize against one
/// put; the race it is about (the put's install after the resize) needs one preemption.
const PREEMPTION_CAP: usize = 1;

fn slow_put_racing_a_remove_and_a_resize() {
    seglog_loom_models::model_capped(PREEMPTION_CAP, || {
        let log = Arc::new(tombstone_model_log(OTHERS));

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || {
                assert!(log.remove(b"k").unwrap(), "k had a value");
                log.compact().unwrap();
                log.__resize_index();
            });
        }
        team.run(|| {
            log.put(b"k", &kv_value(b'k', 1)).unwrap();
        });

        let recovered = log.__recovered_state();
        let in_memory = log.get(b"k");
        assert!(
            in_memory.as_ref() == recovered.get(b"k".as_slice()),
            "memory and recovery disagree about k: {in_memory:?} against {:?}",
            recovered.get(b"k".as_slice())
        );
        assert!(in_memory.is_none() || in_memory == Some(kv_value(b'k', 1)));
        let mut latest = vec![(b'a', 7)];
        latest.extend(OTHERS.iter().map(|&key| (key, 0)));
        for (key, generation) in latest {
            assert_eq!(log.get(&[key]), Some(kv_value(key, generation)));
            assert_eq!(
                recovered.get([key].as_slice()),
                Some(&kv_value(key, generation))
            );
        }
        assert_eq!(log.len(), 7 + usize::from(in_memory.is_some()));
        team.dismiss();
    });
}

#[test]
fn the_index_forgets_a_tombstone_only_when_no_older_install_can_come() {
    slow_put_racing_a_remove_and_a_resize();
}

#[test]
fn twin_forget_unsettled_loses_a_put_at_recovery() {
    twin(
        "twin_forget_unsettled_loses_a_put_at_recovery",
        Broken::ForgetUnsettled,
        "memory and recovery disagree about k",
        slow_put_racing_a_remove_and_a_resize,
    );
}
