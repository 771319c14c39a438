//! Total stored length equals the sum of stored lengths: `stats().bytes` is exactly the sum of
//! the `record_bytes` of every record written, and `stats().live_bytes` exactly the sum over
//! each live id's current record (tombstones are not live data): first after concurrent stores of distinct ids (then both sums are
//! equal), then after concurrent overwrites racing on shared ids and forgets, and again after
//! reopening the log.
//!
//! Warm-tier suite: the review's missing scenario "total length = sum of lengths" of the
//! warm-tier task (task 017); this file was `warm_tier_total_bytes.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, UNIX_EPOCH};

use seglog::Options;
use seglog_tests::SplitMix64;
use seglog_tests::warm_tier::{
    Episode, EpisodeBuilder, WarmTier, create_test_embedding, record_bytes,
};

const THREADS: u64 = 6;
const PER_THREAD: u64 = 300;
/// Ids every overwriter stores once more, racing the others.
const SHARED: u64 = 100;
/// Ids the forgetter removes (thread 0's first ones; nobody else touches them).
const FORGOTTEN: u64 = 50;

/// Compaction off: it would reclaim dead records and change `bytes`; this test is about the
/// accounting of what was written.
fn options() -> Options {
    Options::default()
        .segment_bytes(64 * 1024)
        .auto_compact(false)
}

fn id(thread: u64, seq: u64) -> String {
    format!("t{thread}-e{seq}")
}

fn episode(id: String, round: u64) -> Episode {
    let mut rng = SplitMix64::new(
        id.bytes()
            .fold(round, |h, b| h.wrapping_mul(31) ^ u64::from(b)),
    );
    let what_len = rng.range(0, 6_000) as usize;
    EpisodeBuilder::new()
        .when(UNIX_EPOCH + Duration::from_secs(round))
        .what("z".repeat(what_len))
        .embedding(create_test_embedding(round as f32))
        .id(id)
        .build()
}

fn run_threads<T: Send + 'static>(n: u64, f: impl Fn(u64) -> T + Send + Sync + 'static) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n as usize));
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|t| {
            let (barrier, f) = (Arc::clone(&barrier), Arc::clone(&f));
            std::thread::spawn(move || {
                barrier.wait();
                f(t)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("thread panicked"))
        .collect()
}

#[test]
fn stats_bytes_equal_the_sum_of_record_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let tier = Arc::new(WarmTier::open_with(dir.path(), options()).unwrap());

    // Phase 1: distinct ids, concurrently.
    let t = Arc::clone(&tier);
    let written: Vec<(String, u64, u64)> = run_threads(THREADS, move |thread| {
        (0..PER_THREAD)
            .map(|seq| {
                let e = episode(id(thread, seq), 0);
                let version = t.store(&e).expect("store");
                (e.id.clone(), version, e.record_bytes())
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    let sum: u64 = written.iter().map(|w| w.2).sum();
    let stats = tier.stats();
    assert_eq!(stats.keys, THREADS * PER_THREAD);
    assert_eq!(stats.bytes, sum, "bytes != sum of record lengths");
    assert_eq!(
        stats.live_bytes, sum,
        "nothing was overwritten, so every byte is live"
    );
    assert_eq!(stats.dead_bytes, 0);
    assert_eq!(stats.live_ratio, 1.0);
    assert_eq!(stats.aborted, 0);
    assert!(stats.segments > 10, "only {} segments", stats.segments);
    assert!(
        stats.bytes + stats.padding_bytes <= stats.segments * stats.segment_bytes,
        "more bytes than the segments hold"
    );

    // Phase 2: THREADS - 1 overwriters each store every shared id once more (all racing on the
    // same ids); one forgetter removes ids nobody else touches.
    let t = Arc::clone(&tier);
    let phase2: Vec<Vec<(String, u64, u64)>> = run_threads(THREADS, move |thread| {
        if thread == 0 {
            (0..FORGOTTEN)
                .map(|seq| {
                    assert!(t.forget(&id(0, seq)).expect("forget"), "t0-e{seq} existed");
                    (id(0, seq), 0, 0)
                })
                .collect::<Vec<_>>()
        } else {
            (0..SHARED)
                .map(|k| {
                    let e = episode(id(THREADS - 1, k), thread);
                    let version = t.store(&e).expect("store");
                    (e.id.clone(), version, e.record_bytes())
                })
                .collect()
        }
    });
    let tombstone_bytes = |id: &str| record_bytes(id.len(), 0);
    let overwrites: Vec<&(String, u64, u64)> = phase2[1..].iter().flatten().collect();
    let expected_bytes = sum
        + overwrites.iter().map(|w| w.2).sum::<u64>()
        + phase2[0].iter().map(|w| tombstone_bytes(&w.0)).sum::<u64>();

    // Each id's current record: the highest version stored, or the tombstone.
    let mut current: HashMap<String, (u64, u64)> = HashMap::new();
    for (id, version, bytes) in written.iter().chain(overwrites.iter().copied()) {
        let entry = current.entry(id.clone()).or_insert((*version, *bytes));
        if *version > entry.0 {
            *entry = (*version, *bytes);
        }
    }
    for (id, _, _) in &phase2[0] {
        // A forgotten id's tombstone is dead bytes (it goes once nothing older can return).
        current.remove(id);
    }
    let expected_live: u64 = current.values().map(|c| c.1).sum();

    let check = |tier: &WarmTier, when: &str| {
        let stats = tier.stats();
        assert_eq!(stats.keys, THREADS * PER_THREAD - FORGOTTEN, "{when}: keys");
        assert_eq!(
            stats.bytes, expected_bytes,
            "{when}: bytes != sum of record lengths"
        );
        assert_eq!(
            stats.live_bytes, expected_live,
            "{when}: live_bytes != sum of current records"
        );
        assert_eq!(
            stats.dead_bytes,
            expected_bytes - expected_live,
            "{when}: dead_bytes"
        );
        // The winners are what the tier shows.
        for k in 0..SHARED {
            let winner = overwrites
                .iter()
                .filter(|w| w.0 == id(THREADS - 1, k))
                .max_by_key(|w| w.1)
                .unwrap();
            let round = phase2[1..]
                .iter()
                .position(|ws| ws.iter().any(|w| w.1 == winner.1))
                .unwrap() as u64
                + 1;
            assert_eq!(
                tier.recall(&winner.0).unwrap(),
                episode(winner.0.clone(), round),
                "{when}"
            );
        }
        for seq in 0..FORGOTTEN {
            assert!(
                tier.recall(&id(0, seq)).is_err(),
                "{when}: t0-e{seq} was forgotten"
            );
        }
    };
    check(&tier, "live");

    // Reopening replays the log: the same records, the same sums.
    drop(Arc::try_unwrap(tier).expect("threads are done"));
    let tier = WarmTier::open_with(dir.path(), options()).unwrap();
    check(&tier, "after reopen");
}
