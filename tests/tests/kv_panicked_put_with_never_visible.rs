//! A `put_with` that panics is never visible: a panic injected inside the zero-copy fill
//! (`put_with`, reached through `WarmTier::store_with_fault`) under contention: four writers,
//! every fifth store panicking halfway through serializing its episode, half of those over an
//! id that already has an episode, while a reader iterates. The panic reaches the caller;
//! nothing of a panicked store is ever visible (a fresh id stays absent, an overwritten id
//! keeps its old episode); every other episode is exact; the aborted records are counted, in
//! `aborted` and in `bytes`; and reopening the log resurrects none of them.
//!
//! Warm-tier suite: the review's missing scenario "panic inside the zero-copy fill" of the
//! warm-tier task (task 017); this file was `warm_tier_panic_in_fill.rs`.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Once};
use std::time::{Duration, Instant, UNIX_EPOCH};

use seglog::Options;
use seglog_tests::SplitMix64;
use seglog_tests::warm_tier::{Episode, EpisodeBuilder, WarmTier, create_test_embedding};

const WRITERS: u64 = 4;
const PER_WRITER: u64 = 300;
const INJECTED: &str = "injected panic in fill";

/// Compaction off: it would reclaim the aborted records, whose bytes the test counts.
fn options() -> Options {
    Options::default()
        .segment_bytes(64 * 1024)
        .auto_compact(false)
}

/// Keeps the injected panics out of the test output; every other panic is still printed.
fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&INJECTED) {
                default(info);
            }
        }));
    });
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Stored normally.
    Kept,
    /// Panics while storing a fresh id.
    PanicsFresh,
    /// Panics while overwriting the id of `seq - 1` (which was kept).
    PanicsOverwrite,
}

fn fate(seq: u64) -> Fate {
    match seq % 10 {
        4 => Fate::PanicsFresh,
        9 => Fate::PanicsOverwrite,
        _ => Fate::Kept,
    }
}

fn id(writer: u64, seq: u64) -> String {
    let seq = if fate(seq) == Fate::PanicsOverwrite {
        seq - 1
    } else {
        seq
    };
    format!("w{writer}-e{seq}")
}

fn episode(writer: u64, seq: u64) -> Episode {
    let mut rng = SplitMix64::new((writer << 32) | seq);
    EpisodeBuilder::new()
        .id(id(writer, seq))
        .when(UNIX_EPOCH + Duration::from_secs(seq))
        .what(format!("{writer}/{seq} ").repeat(rng.range(0, 2_000) as usize))
        .embedding(create_test_embedding((writer * 1_000 + seq) as f32))
        .confidence(0.75)
        .build()
}

/// The episode each id should show: its last kept store.
fn expected_visible() -> Vec<Episode> {
    (0..WRITERS)
        .flat_map(|w| {
            (0..PER_WRITER)
                .filter(|&s| fate(s) == Fate::Kept)
                .map(move |s| episode(w, s))
        })
        .collect()
}

#[test]
fn panics_inside_the_zero_copy_fill_leave_nothing_visible() {
    quiet_injected_panics();
    let dir = tempfile::tempdir().unwrap();
    let tier = Arc::new(WarmTier::open_with(dir.path(), options()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(WRITERS as usize + 1));

    let reader = {
        let (tier, done, barrier) = (Arc::clone(&tier), Arc::clone(&done), Arc::clone(&barrier));
        std::thread::spawn(move || {
            barrier.wait();
            let mut passes = 0u64;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !done.load(Ordering::Acquire) && Instant::now() < deadline {
                let mut seen = HashSet::new();
                for item in tier.try_iter_memories() {
                    let (id, got) = item.unwrap_or_else(|e| panic!("iteration: {e}"));
                    assert!(seen.insert(id.clone()), "{id} iterated twice");
                    let (w, s) = id[1..].split_once("-e").unwrap();
                    let (w, s): (u64, u64) = (w.parse().unwrap(), s.parse().unwrap());
                    assert_eq!(fate(s), Fate::Kept, "{id}: a panicked store became visible");
                    // The id shows its kept episode, or (after the overwrite was attempted) the
                    // same one: a panicked overwrite changes nothing.
                    assert_eq!(got, episode(w, s), "{id}: torn or foreign episode");
                }
                passes += 1;
            }
            passes
        })
    };

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (tier, barrier) = (Arc::clone(&tier), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut bytes = 0u64;
                for seq in 0..PER_WRITER {
                    let e = episode(writer, seq);
                    bytes += e.record_bytes();
                    let doomed = fate(seq) != Fate::Kept;
                    let result = catch_unwind(AssertUnwindSafe(|| {
                        tier.store_with_fault(&e, |buf| {
                            if doomed {
                                // Half the value is already in the log's buffer.
                                assert!(buf[..3072].iter().any(|&b| b != 0));
                                std::panic::panic_any(INJECTED);
                            }
                        })
                    }));
                    match result {
                        Ok(stored) => {
                            assert!(
                                !doomed,
                                "w{writer} s{seq}: the panic did not reach the caller"
                            );
                            stored.expect("store");
                        }
                        Err(payload) => {
                            assert!(doomed, "w{writer} s{seq}: unexpected panic");
                            assert_eq!(
                                payload.downcast_ref::<&str>(),
                                Some(&INJECTED),
                                "the caller got another panic"
                            );
                        }
                    }
                    if doomed {
                        match fate(seq) {
                            Fate::PanicsFresh => assert!(tier.recall(&e.id).is_err()),
                            _ => assert_eq!(tier.recall(&e.id).unwrap(), episode(writer, seq - 1)),
                        }
                    }
                }
                bytes
            })
        })
        .collect();
    let bytes: u64 = writers
        .into_iter()
        .map(|h| h.join().expect("writer panicked"))
        .sum();
    done.store(true, Ordering::Release);
    let passes = reader.join().expect("reader panicked");
    assert!(passes > 0);

    let doomed = WRITERS * (0..PER_WRITER).filter(|&s| fate(s) != Fate::Kept).count() as u64;
    let expected = expected_visible();
    let check = |tier: &WarmTier, when: &str| {
        assert_eq!(tier.count(), expected.len(), "{when}: count");
        for e in &expected {
            assert_eq!(&tier.recall(&e.id).unwrap(), e, "{when}");
        }
        for w in 0..WRITERS {
            for s in (0..PER_WRITER).filter(|&s| fate(s) == Fate::PanicsFresh) {
                assert!(
                    tier.recall(&id(w, s)).is_err(),
                    "{when}: w{w} s{s} resurrected"
                );
            }
        }
    };
    check(&tier, "live");
    let stats = tier.stats();
    assert_eq!(stats.aborted, doomed, "aborted records");
    assert_eq!(
        stats.bytes, bytes,
        "bytes count every record, aborted ones included"
    );
    assert_eq!(
        stats.live_bytes,
        expected.iter().map(Episode::record_bytes).sum::<u64>(),
        "aborted records are never live"
    );

    drop(Arc::try_unwrap(tier).expect("threads are done"));
    let tier = WarmTier::open_with(dir.path(), options()).unwrap();
    check(&tier, "after reopen");
}
