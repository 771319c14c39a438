//! Issue 18, done when: a follower that stays within one interval of the leader.
//!
//! A leader log takes puts and removes from 4 writers (compaction running) and ships to moto
//! every 200 ms; a `Follower` on another directory polls every 200 ms, as `Follower::run_until`
//! does (poll, then sleep one interval), while 2 reader threads get keys from it all along.
//!
//! For every manifest the leader publishes, the time from its publication (the manifest's PUT
//! returning, seen by an auditing store) to the follower serving it is measured. `follow.rs`
//! documents the lag as "at most `i` plus one apply". A manifest published just after a poll
//! read the previous one waits for that poll's apply, the interval, then its own apply, so the
//! test asserts lag <= interval + the apply in progress + its own apply + 100 ms of scheduling
//! slack, prints every figure, and says how many manifests were within "interval + one apply".
//!
//! Each applied manifest's state is checked on the follower's log (every write returned before
//! its round, nothing after it), every get returns the exact bytes of a put of that key, a
//! key's version never goes back, and at the end the follower (driven by `run_until`) holds
//! exactly the leader's state.
//!
//! Sizes: `SEGLOG_SHIP_FOLLOW_MS` (default 3000) of following.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Audited, Shipping, WriterConfig, Writers, check_prefix, key_of, parse_value};
use object_store::ObjectStore;
use object_store::path::Path;
use seglog::{Log, Options};
use seglog_ship::{Follower, ShipOptions, Shipper};
use seglog_tests::moto::Moto;

const INTERVAL: Duration = Duration::from_millis(200);
const SLACK: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_stays_within_an_interval_and_serves_exact_gets() {
    let _watchdog = common::watchdog("follower_lag", Duration::from_secs(100));
    let moto = Moto::start();
    let store = moto.store();
    let prefix = Path::from("replicated");
    let work = tempfile::tempdir().unwrap();
    let leader = Arc::new(
        Log::open_with(
            work.path().join("leader"),
            Options::default().segment_bytes(1 << 20),
        )
        .unwrap(),
    );
    let audited = Audited::new(Arc::clone(&store), prefix.clone());
    let shipper = Shipper::new(
        Arc::clone(&leader),
        audited.clone() as Arc<dyn ObjectStore>,
        prefix.clone(),
        ShipOptions {
            interval: INTERVAL,
            ..ShipOptions::default()
        },
    )
    .await
    .unwrap();
    let config = WriterConfig {
        keys: 128,
        pace: Some(Duration::from_millis(10)),
        max_ops: 1_000_000,
        ..WriterConfig::default()
    };
    let writers = Writers::start(&leader, &config);
    let shipping = Shipping::start(shipper, INTERVAL);
    shipping.wait_for_manifest(1, Duration::from_secs(10)).await;

    let follower = Arc::new(
        Follower::open(
            Arc::clone(&store),
            prefix.clone(),
            &work.path().join("follower"),
            INTERVAL,
        )
        .await
        .unwrap(),
    );

    // Readers: every get is a put of that key, byte for byte, and never older than before.
    let stop_readers = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (follower, stop, gets, writers) = (
                Arc::clone(&follower),
                Arc::clone(&stop_readers),
                Arc::clone(&gets),
                config.writers,
            );
            std::thread::spawn(move || {
                let mut rng = seglog_tests::SplitMix64::new(r + 99);
                let mut newest: HashMap<(u64, u64), u64> = HashMap::new();
                while !stop.load(Ordering::SeqCst) {
                    let (w, k) = (rng.range(0, writers - 1), rng.range(0, 127));
                    let got = follower.get(&key_of(w, k));
                    gets.fetch_add(1, Ordering::Relaxed);
                    let Some(value) = got else { continue };
                    let (writer, seq) = parse_value(&value).unwrap_or_else(|| {
                        panic!("w{w} k{k}: {} bytes that are no write's value", value.len())
                    });
                    assert_eq!(writer, w, "w{w} k{k} holds another writer's value");
                    let seen = newest.entry((w, k)).or_default();
                    assert!(
                        seq >= *seen,
                        "w{w} k{k}: read write {seq} after write {seen}: went back"
                    );
                    *seen = seq;
                    if rng.range(0, 255) == 0 {
                        // Let the follower, the leader and moto have the cores now and then.
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            })
        })
        .collect();

    // Follow as run_until does, timing each poll.
    let follow_for = Duration::from_millis(common::env_u64("SEGLOG_SHIP_FOLLOW_MS", 3000));
    let began = Instant::now();
    // seq -> (when the follower served it, the poll's duration, the previous poll's duration)
    let mut served: BTreeMap<u64, (Instant, Duration, Duration)> = BTreeMap::new();
    let mut previous_poll = Duration::ZERO;
    let mut applies = Vec::new();
    while began.elapsed() < follow_for {
        let started = Instant::now();
        let applied = common::bounded("a poll", Duration::from_secs(20), follower.poll())
            .await
            .unwrap();
        let took = started.elapsed();
        if applied {
            let seq = follower.manifest();
            served.insert(seq, (Instant::now(), took, previous_poll));
            applies.push(took);
            // The state it serves is the leader's at that manifest.
            let rounds = shipping
                .wait_for_manifest(seq, Duration::from_secs(10))
                .await;
            let (returned_before, started_before) = common::manifest_bounds(&rounds, seq).unwrap();
            let state = common::state_of(&follower.log());
            check_prefix(&state, &writers.history(), returned_before, started_before)
                .unwrap_or_else(|e| panic!("follower at manifest {seq}: {e}"));
        }
        previous_poll = took;
        tokio::time::sleep(INTERVAL).await;
    }
    let history = writers.stop();
    leader.sync().unwrap();
    let (mut shipper, rounds) = shipping.stop().await;
    let last = shipper.ship_once().await.unwrap();

    // The lag of every manifest published while following.
    let published: Vec<u64> = rounds
        .iter()
        .filter(|r| r.report.wrote_manifest)
        .map(|r| r.report.manifest)
        .collect();
    let mut lags = Vec::new();
    let mut margins = Vec::new();
    let mut within_doc = 0;
    for &seq in &published {
        let Some(at) = audited.published(seq) else {
            panic!("manifest {seq}'s publication was not seen")
        };
        if at < began {
            continue;
        }
        // The first manifest served at or after seq (a poll may skip to a newer one).
        let Some((&served_seq, &(when, apply, previous))) = served.range(seq..).next() else {
            continue; // published after the last poll
        };
        let lag = when.saturating_duration_since(at);
        let bound = INTERVAL + previous + apply + SLACK;
        assert!(
            lag <= bound,
            "manifest {seq} (served as {served_seq}) {lag:?} after its publication: over \
             interval {INTERVAL:?} + the previous poll {previous:?} + its apply {apply:?} + \
             {SLACK:?}"
        );
        if lag <= INTERVAL + apply {
            within_doc += 1;
        }
        lags.push((seq, lag));
        margins.push(bound.saturating_sub(lag));
    }
    assert!(
        lags.len() >= 5,
        "too few manifests followed to measure: {lags:?}"
    );

    // The end: run_until catches up with the last manifest, and the state is the leader's.
    let stop = Arc::new(tokio::sync::Notify::new());
    let runner = {
        let (follower, stop) = (Arc::clone(&follower), Arc::clone(&stop));
        tokio::spawn(async move { follower.run_until(stop.notified()).await })
    };
    // The last manifest was published before run_until starts: its first poll applies it.
    let max_apply = applies.iter().copied().max().unwrap_or_default();
    let catch_up_bound = INTERVAL + 2 * max_apply + SLACK;
    let caught_up = Instant::now();
    while follower.manifest() < last.manifest {
        assert!(
            caught_up.elapsed() < catch_up_bound,
            "run_until did not reach manifest {} in {:?}",
            last.manifest,
            caught_up.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let catch_up = caught_up.elapsed();
    stop.notify_one();
    common::bounded("run_until's return", Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();
    stop_readers.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.join().expect("a reader found a wrong value");
    }
    let expected = common::final_state(&history);
    assert!(
        common::state_of(&follower.log()) == expected,
        "the follower's final state differs from the leader's"
    );
    assert_eq!(follower.synced(), leader.synced_frontier());
    // Segments compaction retired were dropped: the follower's directory holds exactly the
    // segments of the last manifest.
    assert!(
        leader.stats().compaction.segments_reclaimed > 0,
        "no compaction to follow"
    );
    let newest = seglog_ship::latest_manifest(&*store, &prefix)
        .await
        .unwrap()
        .unwrap();
    let named: Vec<u64> = newest.segments.iter().map(|s| s.id).collect();
    let mut on_disk: Vec<u64> =
        seglog_tests::files_with_extension(&work.path().join("follower"), "seg")
            .iter()
            .map(|p| u64::from_str_radix(p.file_stem().unwrap().to_str().unwrap(), 16).unwrap())
            .collect();
    on_disk.sort();
    assert_eq!(on_disk, named, "the follower's segment files");
    let violations = audited.violations();
    assert!(violations.is_empty(), "{violations:#?}");

    let mut sorted: Vec<Duration> = lags.iter().map(|(_, l)| *l).collect();
    sorted.sort();
    applies.sort();
    let served_gets = gets.load(Ordering::Relaxed);
    eprintln!(
        "interval {INTERVAL:?}: {} manifests followed, lag min {:?} median {:?} max {:?}; \
         {within_doc} within interval + one apply; applies min {:?} median {:?} max {:?}; \
         run_until caught up in {catch_up:?}; {served_gets} gets served; smallest margin to the \
         bound {:?}; lags {lags:?}",
        lags.len(),
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        applies[0],
        applies[applies.len() / 2],
        applies[applies.len() - 1],
        margins.iter().min().unwrap(),
    );
}
