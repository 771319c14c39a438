//! Compaction while the index is resizing never leaves an address in a retired segment behind:
//! a log that keeps gaining keys (so its index doubles again and again) while it overwrites a
//! hot set (so compaction keeps finding victims) answers every get, put, iteration and
//! compaction without a panic, and every key reads back its last value, byte for byte, before
//! and after reopen.
//!
//! Why this combination: compaction relocates a key by switching its index entry from the old
//! address to the copy. If the key's slot in the old root table is already frozen by the
//! migration, the switch can only happen in the successor, and the frozen slot must not keep
//! serving the old address: the old root stays reachable until the migration finishes, and the
//! segment behind that address is retired by then. Anything that still looks at the old root (a
//! get of the key, a write probing past its slot, the migration itself, an iteration) would meet
//! an address in a segment that is gone.
//!
//! The window is the rest of the migration, which writes pay for 64 slots at a time, so the
//! tests stop writing while a large migration is in flight and compact then: the first test
//! does it on one thread, step by step; the second with concurrent writers, a compacting thread
//! and readers, in rounds separated by barriers, one round per resize.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::{Duration, Instant};

use seglog::{Log, Options};
use seglog_tests::{SplitMix64, key, pattern};

/// Every test runs its scenario on its own thread and fails if it has not finished by then, so
/// a hang is a failure rather than a stuck test run.
const TIMEOUT: Duration = Duration::from_secs(60);

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Runs `scenario` on its own thread; fails the test with the scenario's panic message, or if
/// it does not finish within [`TIMEOUT`].
fn run_bounded(scenario: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(scenario))
            .map_err(|payload| panic_message(payload.as_ref()));
        let _ = tx.send(outcome);
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(Ok(())) => {}
        Ok(Err(message)) => panic!("{message}"),
        Err(_) => panic!("the scenario did not finish within {TIMEOUT:?} (hung)"),
    }
}

/// Whether the index is migrating: while it is, the old root and its successor (twice the
/// size) are both reachable, so the index holds half as much memory again as its newest table
/// of 8-byte slots alone. (Meant for tables of thousands of slots: the few hundred bytes a
/// table has besides its slots are within the margin.)
fn resize_in_flight(log: &Log) -> bool {
    let stats = log.stats();
    stats.index_bytes >= stats.index_capacity * 8 * 5 / 4 + 4096
}

/// Compacts, and waits until the segments that pass retired have left the log: they leave once
/// no thread is pinned in an older epoch, and other tests of this binary pin the same (global)
/// collector, so this helps the epoch along and finishes retirements (each `compact` call
/// does) until they are all gone. Returns the number of segments the pass retired.
fn compact_to_the_end(log: &Log) -> u64 {
    let before = log.stats().compaction.segments_reclaimed;
    let retired = log.compact().unwrap();
    // Normally a matter of microseconds; bounded, in case the retirements wait for something
    // else (the test's checks do not depend on them).
    let deadline = Instant::now() + Duration::from_millis(250);
    for round in 0.. {
        let done = log.stats().compaction.segments_reclaimed >= before + retired;
        if (round >= 3 && done) || Instant::now() > deadline {
            break;
        }
        seglog::pin().flush();
        log.compact().unwrap();
        std::thread::yield_now();
    }
    retired
}

#[test]
fn keys_relocated_while_the_index_migrates_stay_readable() {
    run_bounded(|| {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default()
            .segment_bytes(4096)
            // The first resize starts at 6,144 keys: a migration of 128 chunks of 64 slots,
            // each paid for by one write.
            .index_capacity(8192)
            .index_seed(1)
            .auto_compact(false);
        let log = Log::open_with(dir.path(), options.clone()).unwrap();
        // Twenty keys that stay live, each in a segment made almost all dead by overwrites of
        // one hot key: those segments are compaction's victims, the twenty keys its copies.
        let mut expected: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for i in 0..20u64 {
            let (k, v) = (key(0, i), pattern(0, i, 16));
            log.put(&k, &v).unwrap();
            expected.insert(k, v);
            for j in 0..10u64 {
                let (k, v) = (b"hot".to_vec(), pattern(1, j, 200));
                log.put(&k, &v).unwrap();
                expected.insert(k, v);
            }
        }
        // New keys until the index starts to double.
        let mut seq = 0u64;
        let mut fill = |log: &Log, expected: &mut BTreeMap<Vec<u8>, Vec<u8>>| {
            let (k, v) = (key(2, seq), pattern(2, seq, 8));
            log.put(&k, &v).unwrap();
            expected.insert(k, v);
            seq += 1;
        };
        while !resize_in_flight(&log) {
            fill(&log, &mut expected);
        }
        // 100 more writes migrate 100 of the 128 chunks: most of the twenty keys' slots in the
        // old root are frozen now, and the migration is still in flight.
        for _ in 0..100 {
            fill(&log, &mut expected);
        }
        if !resize_in_flight(&log) {
            eprintln!("note: the migration is no longer in flight; the scenario needs it to be");
        }
        let retired = compact_to_the_end(&log);
        assert!(retired >= 10, "only {retired} segments retired");

        // Every key reads back its value while the migration is still in flight ...
        for (k, v) in &expected {
            assert_eq!(
                log.get(k).as_deref(),
                Some(&v[..]),
                "key {:?}",
                String::from_utf8_lossy(k)
            );
        }
        assert_eq!(log.iter().count(), expected.len());
        // ... and writes that finish the migration (each migrates one more chunk) go through.
        for _ in 0..100 {
            fill(&log, &mut expected);
        }
        let state: BTreeMap<_, _> = log.iter().collect();
        assert!(
            state == expected,
            "the iteration differs from what was written"
        );
        assert_eq!(log.len(), expected.len());
        drop(log);

        let log = Log::open_with(dir.path(), options).unwrap();
        let state: BTreeMap<_, _> = log.iter().collect();
        assert!(
            state == expected,
            "after reopen the log differs from what was written"
        );
        assert_eq!(log.len(), expected.len());
    });
}

const WRITERS: u64 = 2;
/// New keys each writer inserts at most; each is followed by one overwrite of a hot key.
const NEW_KEYS: u64 = 12_000;
/// Keys per writer that are overwritten over and over (they make the dead bytes).
const HOT_KEYS: u64 = 24;
/// Hot keys are at sequence numbers from here on, apart from the new keys.
const HOT_BASE: u64 = 9_000_000;

fn concurrent_options(seed: u64) -> Options {
    Options::default()
        // Small segments: many of them, so compaction always has victims.
        .segment_bytes(16 * 1024)
        // A tiny first table: the index doubles a dozen times during the run, the last few
        // times with migrations of hundreds of chunks.
        .index_capacity(8)
        .index_seed(seed)
        .auto_compact(true)
        .compact_live_ratio(0.5)
        .compact_dead_bytes(16 * 1024)
}

/// The value writer `w` stores under key `(w, seq)` at its `version`-th write of that key:
/// small for the new keys (written once, live for good) and large for the hot keys (their
/// overwrites make segments mostly dead).
fn value(writer: u64, seq: u64, version: u64) -> Vec<u8> {
    let len = if seq >= HOT_BASE {
        600 + ((seq * 31 + version * 17) % 64) as usize
    } else {
        8 + (seq % 16) as usize
    };
    pattern(writer, seq ^ (version << 24), len)
}

/// What a writer last wrote: key → (seq, version of its last write).
type Written = BTreeMap<Vec<u8>, (u64, u64)>;

/// Every key reads back its last value and `len` counts exactly the live keys.
fn check_state(log: &Log, written: &[Written], when: &str) {
    let mut keys = 0;
    for (w, mine) in written.iter().enumerate() {
        for (k, &(seq, version)) in mine {
            let want = value(w as u64, seq, version);
            let got = log.get(k);
            assert!(
                got.as_deref() == Some(&want[..]),
                "key {:?} {when}: got {:?} bytes, want its last value ({} bytes)",
                String::from_utf8_lossy(k),
                got.map(|v| v.len()),
                want.len()
            );
            keys += 1;
        }
    }
    assert_eq!(log.len(), keys, "live keys {when}");
    assert_eq!(log.iter().count(), keys, "keys iterated {when}");
}

/// Shared state of the concurrent scenario.
struct Shared {
    log: Log,
    /// Set by the first thread that panics; every thread then stops at the end of the round.
    failed: AtomicBool,
    failures: Mutex<Vec<String>>,
    /// Writers done with the current write phase.
    writers_done: AtomicUsize,
    /// Writers that have run out of new keys.
    writers_exhausted: AtomicUsize,
    exhausted: Vec<AtomicBool>,
    rounds: AtomicU64,
    barrier: Barrier,
}

impl Shared {
    /// Runs `work`, recording its panic (the thread stays in the rounds, so nobody is left
    /// waiting at a barrier).
    fn guarded(&self, who: &str, work: impl FnOnce()) {
        if self.failed.load(Ordering::Acquire) {
            return;
        }
        if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(work)) {
            self.failed.store(true, Ordering::Release);
            self.failures
                .lock()
                .unwrap()
                .push(format!("{who}: {}", panic_message(payload.as_ref())));
        }
    }

    /// Whether the run is over, decided by every thread alike after a round's last barrier.
    fn over(&self) -> bool {
        self.failed.load(Ordering::Acquire)
            || self.writers_exhausted.load(Ordering::Acquire) == WRITERS as usize
    }
}

/// How far a writer writes in one write phase.
#[derive(Clone, Copy)]
enum Goal {
    /// Until the index is this many keys short of its next resize.
    NearResize { margin: u64 },
    /// Until the index has started a resize, then a little further into its migration.
    IntoResize,
}

/// One writer's keys and what it last wrote to each.
struct WriterState {
    w: u64,
    mine: Written,
    hot_versions: Vec<u64>,
    next: u64,
}

impl WriterState {
    /// A new key (the index gains a slot; the record stays live for good, so compaction
    /// relocates it), then an overwrite of the hot set (dead bytes, so segments become
    /// victims). Returns false once the writer has no new keys left.
    fn step(&mut self, log: &Log) -> bool {
        let (w, i) = (self.w, self.next);
        if i >= NEW_KEYS {
            return false;
        }
        self.next += 1;
        log.put(&key(w, i), &value(w, i, 0)).unwrap();
        self.mine.insert(key(w, i), (i, 0));
        let h = i % HOT_KEYS;
        self.hot_versions[h as usize] += 1;
        let version = self.hot_versions[h as usize];
        log.put(&key(w, HOT_BASE + h), &value(w, HOT_BASE + h, version))
            .unwrap();
        self.mine
            .insert(key(w, HOT_BASE + h), (HOT_BASE + h, version));
        true
    }

    fn write_phase(&mut self, shared: &Shared, goal: Goal) {
        let log = &shared.log;
        match goal {
            Goal::NearResize { margin } => {
                // Load factor 0.75: the root doubles once it holds more keys than that.
                let limit = (log.stats().index_capacity * 3 / 4).saturating_sub(margin);
                while !shared.failed.load(Ordering::Acquire) && log.stats().keys < limit {
                    if !self.step(log) {
                        break;
                    }
                }
            }
            Goal::IntoResize => {
                let resizes = log.stats().index_resizes;
                while !shared.failed.load(Ordering::Acquire) && log.stats().index_resizes == resizes
                {
                    if !self.step(log) {
                        return;
                    }
                }
                // The old root has capacity / 64 chunks; each write migrates one. Two writes
                // per step and two writers: together they migrate about a quarter of them,
                // leaving most of the migration to go.
                let chunks = log.stats().index_capacity / 2 / 64;
                for _ in 0..(chunks / 16).max(1) {
                    if shared.failed.load(Ordering::Acquire) || !self.step(log) {
                        break;
                    }
                }
            }
        }
    }
}

/// One writer, round after round: write up to just short of the next resize, wait while the
/// victims are compacted, write into the resize, wait while the compactor runs in the middle
/// of the migration, then read back everything it wrote.
fn writer(shared: &Shared, w: u64) -> Written {
    let mut state = WriterState {
        w,
        mine: Written::new(),
        hot_versions: vec![0; HOT_KEYS as usize],
        next: 0,
    };
    loop {
        for goal in [Goal::NearResize { margin: 48 }, Goal::IntoResize] {
            shared.barrier.wait(); // write phase
            shared.guarded(&format!("writer {w} writing"), || {
                state.write_phase(shared, goal);
            });
            shared.writers_done.fetch_add(1, Ordering::AcqRel);
            shared.barrier.wait(); // write phase over
            shared.barrier.wait(); // compaction over
        }
        if state.next >= NEW_KEYS && !shared.exhausted[w as usize].swap(true, Ordering::AcqRel) {
            shared.writers_exhausted.fetch_add(1, Ordering::AcqRel);
        }
        shared.guarded(&format!("writer {w} reading back"), || {
            for (k, &(seq, version)) in &state.mine {
                let got = shared.log.get(k);
                assert!(
                    got == Some(value(w, seq, version)),
                    "key {:?}: got {:?} bytes",
                    String::from_utf8_lossy(k),
                    got.map(|v| v.len())
                );
            }
        });
        shared.barrier.wait(); // read phase over
        if shared.over() {
            return state.mine;
        }
    }
}

/// The compacting thread: compacts in a loop while the writers write, and once more after
/// each write phase with the writers waiting (the second time in the middle of a migration),
/// then iterates the whole log while the writers read.
fn compactor(shared: &Shared) {
    let log = &shared.log;
    let mut rng = SplitMix64::new(7);
    loop {
        for _ in 0..2 {
            shared.barrier.wait(); // write phase
            shared.guarded("compactor during writes", || {
                while shared.writers_done.load(Ordering::Acquire) < WRITERS as usize {
                    log.compact().unwrap();
                    // A few random reads in between.
                    for _ in 0..8 {
                        let (w, seq) = (rng.range(0, WRITERS - 1), rng.range(0, 2_000));
                        if let Some(v) = log.get(&key(w, seq)) {
                            assert_eq!(v, value(w, seq, 0), "key ({w}, {seq})");
                        }
                    }
                }
            });
            shared.barrier.wait(); // write phase over
            shared.guarded("compactor", || {
                compact_to_the_end(log);
            });
            shared.writers_done.store(0, Ordering::Release);
            shared.barrier.wait(); // compaction over
        }
        shared.guarded("iteration", || {
            let keys = log.iter().count();
            assert_eq!(keys, log.len());
        });
        shared.rounds.fetch_add(1, Ordering::Relaxed);
        shared.barrier.wait(); // read phase over
        if shared.over() {
            return;
        }
    }
}

/// One run of the concurrent scenario with index seed `seed`.
fn concurrent_run(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(Shared {
        log: Log::open_with(dir.path(), concurrent_options(seed)).unwrap(),
        failed: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
        writers_done: AtomicUsize::new(0),
        writers_exhausted: AtomicUsize::new(0),
        exhausted: (0..WRITERS).map(|_| AtomicBool::new(false)).collect(),
        rounds: AtomicU64::new(0),
        barrier: Barrier::new(WRITERS as usize + 1),
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || writer(&shared, w))
        })
        .collect();
    let compacting = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || compactor(&shared))
    };
    let written: Vec<Written> = writers
        .into_iter()
        .map(|h| h.join().expect("writers catch their panics"))
        .collect();
    compacting.join().expect("the compactor catches its panics");
    let shared = Arc::try_unwrap(shared).unwrap_or_else(|_| unreachable!("threads joined"));
    let failures = shared.failures.into_inner().unwrap();
    let stats = shared.log.stats();
    assert!(
        failures.is_empty(),
        "seed {seed:#x}: {} thread(s) panicked after {} complete rounds; first: {}",
        failures.len(),
        shared.rounds.load(Ordering::Relaxed),
        failures[0]
    );
    // The run really mixed the two: a dozen resizes and many reclaimed segments.
    assert!(stats.index_resizes >= 10, "{stats:?}");
    assert!(stats.compaction.segments_reclaimed >= 50, "{stats:?}");
    check_state(&shared.log, &written, "after the run");
    drop(shared.log);
    let log = Log::open_with(dir.path(), concurrent_options(seed)).unwrap();
    check_state(&log, &written, "after reopen");
}

#[test]
fn concurrent_writers_and_compaction_across_index_resizes_lose_no_key() {
    run_bounded(|| {
        // Three runs, each with its own hash seed (so its own slot layout): whether a
        // relocated key's slot is already frozen depends on where its hash puts it.
        for seed in [0x5EED, 0xC0FFEE, 0xFACADE] {
            concurrent_run(seed);
        }
    });
}
