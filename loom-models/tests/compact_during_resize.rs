//! Compaction retiring a segment while an index resize is migrating.
//!
//! The index starts with 8 slots (migrated in chunks of 2 under loom); with the model's index seed key
//! `k` sits in slot 0, in the first chunk. The log's first segment holds `k` and seven versions of
//! `a`, whose latest version opens the second segment: the first is dead but for `k`, and
//! compaction's only victim. Then `b` to `f` follow `a` in the second segment, the tail, which
//! keeps room for two more records (nothing in the window rolls the log over). The seventh key,
//! `f`, starts a resize into 16 slots, and nothing has been migrated yet.
//!
//! In the window a member puts a new key `g` (its write helps the migration by one chunk first)
//! while the model thread compacts segment 0 as a compaction pass does (`Log::__compact_segment`):
//! it relocates `k` (a copy with the same version at the head, switched in with `replace_exact`,
//! whose write helps by one chunk too), settles the index, and registers the segment's
//! retirement with the epoch. After the window the retirement finishes (`Log::compact` after the
//! collector ran): the segment leaves the directory. Whichever of them migrates the first chunk freezes `k`'s slot in the old root with
//! the original's address, so the relocation writes the copy's address into the successor only.
//! Two of the four chunks are migrated in the window, so the old root stays the root: unless
//! compaction finishes the resize before it retires the segment, every later probe of `k` in
//! the old root resolves an address in a segment that is gone (defect 1 of the defects issue).
//!
//! Proves, in every interleaving, once the window is over and the retirement has finished:
//! - the segment was reclaimed, and the resize finished: one table of 16 slots is reachable;
//! - `get` of every key returns its latest value, `k` from the copy (not the retired segment);
//! - `len` and iteration count every key once.
//!
//! The twin switches on `Broken::RetireDuringResize` (retire without settling the resize): the
//! first read of `k` resolves the frozen slot's address and finds no segment there.
#![cfg(seglog_loom)]

use loom::sync::Arc;
use seglog::__broken::Broken;
use seglog::{Log, Options};
use seglog_loom_models::{Team, twin};

/// Keys in the order they are first put; `k` lands in slot 0 of the 8-slot table with
/// [`COMPACT_SEED`] (the others in 2, 3, 4, 5, 6, 7: each at its home or the next slot).
const KEYS: &[u8] = b"kabcdefg";
const COMPACT_SEED: u64 = 12;

fn value(key: u8, generation: u8) -> Vec<u8> {
    vec![key, b':', generation, 0, 1, 2, 3, 4]
}

fn options(index_capacity: usize) -> Options {
    Options::default()
        // Eight 56-byte records fill a segment.
        .segment_bytes(512)
        .index_capacity(index_capacity)
        .index_seed(COMPACT_SEED)
        .max_segments(8)
        // Compaction runs only when the model says so.
        .auto_compact(false)
}

/// Index bytes of a fresh log whose index is one table of 16 slots.
fn one_table_of_16_slots() -> u64 {
    let stats = Log::in_memory(options(16)).unwrap().stats();
    assert_eq!(stats.index_capacity, 16);
    stats.index_bytes
}

/// Preemption bound of this model in CI: at bound 2 the window (a put whose follow-up may run
/// the epoch collector to finish retirements, against a compaction step that appends, writes
/// the index twice and migrates two chunks) takes many minutes; the race it is about, a freeze
/// against the relocation's CAS, needs one preemption. See
/// `docs/loom.md` for the bound-2 figures (`SEGLOG_LOOM_UNCAPPED=1`).
const PREEMPTION_CAP: usize = 1;

fn compaction_racing_a_resize() {
    seglog_loom_models::model_capped(PREEMPTION_CAP, || {
        let sixteen_slots = one_table_of_16_slots();
        let log = Arc::new(Log::in_memory(options(8)).unwrap());
        // Segment 0: k and a (generations 0 to 6), exactly full. Segment 1: a (generation 7),
        // then b to f, with room for two more records.
        log.put(b"k", &value(b'k', 0)).unwrap();
        for generation in 0..8 {
            log.put(b"a", &value(b'a', generation)).unwrap();
        }
        for &key in b"bcdef" {
            log.put(&[key], &value(key, 0)).unwrap();
        }
        assert_eq!(
            log.stats().segments,
            3,
            "segments 0 and 1, and 2 made ahead of need"
        );
        let stats = log.stats();
        assert_eq!(
            (stats.index_capacity, stats.index_resizes),
            (16, 1),
            "the seventh key started a resize into 16 slots"
        );
        assert!(
            stats.index_bytes > sixteen_slots,
            "the old table is still reachable: nothing is migrated yet"
        );

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || {
                log.put(b"g", &value(b'g', 0)).unwrap();
            });
        }
        let (retired, _) = team.run(|| log.__compact_segment(0).unwrap());
        assert!(
            retired,
            "segment 0 is sealed, fully published and installed"
        );
        // Let the retirement finish if a pinned member held it back during the pass.
        for _ in 0..3 {
            seglog::pin().flush();
        }
        log.compact().unwrap();
        let stats = log.stats();
        assert_eq!(
            stats.compaction.segments_reclaimed, 1,
            "compaction reclaimed segment 0"
        );

        // A reader after the retirement.
        let latest = [
            (b'k', 0),
            (b'a', 7),
            (b'b', 0),
            (b'c', 0),
            (b'd', 0),
            (b'e', 0),
            (b'f', 0),
            (b'g', 0),
        ];
        for (key, generation) in latest {
            let got = log.get(&[key]);
            assert!(
                got == Some(value(key, generation)),
                "key {:?} maps to its latest value after the retirement, get returns {got:?}",
                key as char
            );
        }
        {
            let pinned = log.pin();
            let record = pinned.get_record(b"k").unwrap();
            assert_eq!(
                record.position >> 9,
                1,
                "k is read from its copy in segment 1, not from the retired segment 0"
            );
        }
        assert_eq!(log.len(), KEYS.len());
        assert_eq!(log.iter().count(), KEYS.len());
        assert_eq!(
            log.stats().index_bytes,
            sixteen_slots,
            "the resize finished before the segment was retired: one table of 16 slots"
        );
        team.dismiss();
    });
}

#[test]
fn compaction_racing_a_resize_never_leaves_an_address_into_a_retired_segment() {
    compaction_racing_a_resize();
}

/// Retiring without settling the resize leaves the old root reachable with `k`'s frozen slot
/// holding the original's address: the reader's probe resolves it in a segment that is gone.
#[test]
fn twin_retire_during_resize_leaves_a_dead_address() {
    twin(
        "twin_retire_during_resize_leaves_a_dead_address",
        Broken::RetireDuringResize,
        "the index holds an unreadable address",
        compaction_racing_a_resize,
    );
}
