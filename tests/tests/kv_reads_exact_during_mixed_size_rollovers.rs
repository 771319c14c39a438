//! Reads stay exact during mixed-size writes across many roll-overs: four writers store
//! episodes from 3 KB to a whole 64 KiB segment while two readers recall, zero-copy and copied,
//! episodes whose store has returned. Every read is exact; afterwards every episode is exact, none lost,
//! hundreds of segments were rolled over, and the largest episode a segment can hold is stored
//! while one byte more is refused without writing anything.
//!
//! Warm-tier suite: the review's missing scenario "mixed sizes under contention, many
//! roll-overs" of the warm-tier task (task 017); this file was
//! `warm_tier_mixed_size_rollovers.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, UNIX_EPOCH};

use seglog::Options;
use seglog_tests::SplitMix64;
use seglog_tests::warm_tier::{
    Episode, EpisodeBuilder, FIXED_BYTES, Region, WarmTier, WarmTierError, check_disjoint,
    create_test_embedding,
};

const WRITERS: u64 = 4;
const READERS: usize = 2;
const PER_WRITER: u64 = 250;
const SEGMENT_BYTES: u64 = 64 * 1024;

fn id(writer: u64, seq: u64) -> String {
    format!("w{writer}-e{seq:04}")
}

/// Episode `seq` of `writer`: sizes skewed small, with a few that nearly fill a segment.
fn episode(writer: u64, seq: u64, max_what: u64) -> Episode {
    let mut rng = SplitMix64::new((writer << 32) | seq | 1 << 63);
    let what_len = match rng.range(0, 19) {
        0 => max_what - rng.range(0, 64),
        1..=3 => rng.range(10_000, max_what),
        4..=9 => rng.range(500, 10_000),
        _ => rng.range(0, 500),
    } as usize;
    let what: String = std::iter::repeat(format!("{writer}:{seq};"))
        .flat_map(|s| s.chars().collect::<Vec<_>>())
        .take(what_len)
        .collect();
    EpisodeBuilder::new()
        .id(id(writer, seq))
        .when(UNIX_EPOCH + Duration::from_micros(rng.next_u64() >> 12))
        .what(what)
        .embedding(create_test_embedding((writer * 10_000 + seq) as f32))
        .confidence(0.25)
        .build()
}

#[test]
fn mixed_sizes_under_contention_across_rollovers() {
    let dir = tempfile::tempdir().unwrap();
    let tier = Arc::new(
        WarmTier::open_with(dir.path(), Options::default().segment_bytes(SEGMENT_BYTES)).unwrap(),
    );
    let id_len = id(0, 0).len();
    let max_value = tier.log().append_log().max_value_len(id_len) as u64;
    let max_what = max_value - FIXED_BYTES as u64;

    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(WRITERS as usize + READERS));

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (tier, acked, done, barrier) = (
                Arc::clone(&tier),
                Arc::clone(&acked),
                Arc::clone(&done),
                Arc::clone(&barrier),
            );
            std::thread::spawn(move || {
                let mut rng = SplitMix64::new(r as u64);
                let mut checked = 0u64;
                barrier.wait();
                // Bounded: until the writers finish, or a minute at most.
                let deadline = Instant::now() + Duration::from_secs(60);
                while !done.load(Ordering::Acquire) && Instant::now() < deadline {
                    let writer = rng.range(0, WRITERS - 1);
                    // Acquire: pairs with the writer's Release store after `store` returned,
                    // so every episode below this count must be visible.
                    let stored = acked[writer as usize].load(Ordering::Acquire);
                    if stored == 0 {
                        continue;
                    }
                    let seq = rng.range(0, stored - 1);
                    let expected = episode(writer, seq, max_what);
                    if checked.is_multiple_of(2) {
                        let got = tier
                            .recall(&expected.id)
                            .unwrap_or_else(|e| panic!("reader {r}: {e}"));
                        assert_eq!(got, expected, "reader {r}: torn or foreign episode");
                    } else {
                        let same = tier
                            .recall_embedding_with(&expected.id, |e| e == &expected.embedding[..])
                            .unwrap_or_else(|| panic!("reader {r}: {} missing", expected.id))
                            .unwrap_or_else(|e| panic!("reader {r}: {e}"));
                        assert!(same, "reader {r}: embedding of {} differs", expected.id);
                    }
                    checked += 1;
                }
                checked
            })
        })
        .collect();

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (tier, acked, barrier) =
                (Arc::clone(&tier), Arc::clone(&acked), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                (0..PER_WRITER)
                    .map(|seq| {
                        let e = episode(writer, seq, max_what);
                        let version = tier.store(&e).expect("store");
                        // Release: see the Acquire load in the readers.
                        acked[writer as usize].store(seq + 1, Ordering::Release);
                        Region {
                            position: version,
                            record_bytes: e.record_bytes(),
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut regions: Vec<Region> = writers
        .into_iter()
        .flat_map(|h| h.join().expect("writer panicked"))
        .collect();
    done.store(true, Ordering::Release);
    let checked: u64 = readers
        .into_iter()
        .map(|h| h.join().expect("reader panicked"))
        .sum();
    assert!(
        checked > 100,
        "readers checked only {checked} episodes while writes ran"
    );

    assert_eq!(tier.count() as u64, WRITERS * PER_WRITER);
    for writer in 0..WRITERS {
        for seq in 0..PER_WRITER {
            let expected = episode(writer, seq, max_what);
            assert_eq!(tier.recall(&expected.id).unwrap(), expected);
        }
    }
    check_disjoint(&mut regions, SEGMENT_BYTES).unwrap_or_else(|e| panic!("{e}"));
    let stats = tier.stats();
    assert!(stats.segments >= 100, "only {} segments", stats.segments);
    assert!(
        stats.padding_bytes > 0,
        "mixed sizes never left a segment end unused?"
    );
    assert_eq!(
        stats.bytes,
        regions.iter().map(|r| r.record_bytes).sum::<u64>()
    );

    // The largest episode a segment holds fits exactly; one byte more is refused, whole.
    let mut largest = episode(9, 0, max_what);
    largest.what = "L".repeat(max_what as usize);
    let version = tier
        .store(&largest)
        .expect("an episode that exactly fills a segment");
    assert_eq!(
        largest.record_bytes() + 64,
        SEGMENT_BYTES,
        "fills the segment after its header"
    );
    assert_eq!(version % SEGMENT_BYTES, 64, "starts a fresh segment");
    assert_eq!(tier.recall(&largest.id).unwrap(), largest);
    let before = tier.stats();
    let mut too_large = episode(9, 1, max_what);
    too_large.what = "T".repeat(max_what as usize + 1);
    match tier.store(&too_large) {
        Err(WarmTierError::Log(seglog::Error::ValueTooLarge { len, max, .. })) => {
            assert_eq!((len as u64, max as u64), (max_value + 1, max_value));
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    let after = tier.stats();
    assert_eq!(
        (after.bytes, after.keys),
        (before.bytes, before.keys),
        "a refused store wrote nothing"
    );
    assert!(tier.recall(&too_large.id).is_err());
}
