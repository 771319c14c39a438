//! A failed comparison never comes back (issue 16): four threads in a child process race
//! `compare_and_put` and `compare_and_remove`, all on one key at a time (a burst of attempts on
//! each of 48 keys in turn), mostly expecting the version they read just before, so many
//! comparisons fail, and many of those only at the index CAS, after the pre-check passed: those
//! have appended their record (value and all) before they fail. A key's last record then stays
//! its last until its next turn, often a failed one: exactly the record recovery's
//! highest-version rule would take if it were valid. Automatic compaction and a thread calling
//! `compact` at random moments move records through small segments meanwhile. The parent
//! SIGKILLs the child at random moments, reopens the log (with a deadline), checks it, compacts
//! it in-process, checks it again, and starts the next child on it.
//!
//! Every attempt writes a value of its own (`value(id)`, which names the attempt), and the
//! child reports each attempt before it starts (its key, kind and expectation) and after it
//! returns (success with the new version, or the mismatch). After every reopen and every
//! compaction:
//!
//! - no failed attempt's value is anywhere in the log (`iter`, every key);
//! - each key holds exactly what its acknowledged successes leave: every write on these keys is
//!   conditional, so the successes form one chain per key, ordered by version (a removal sits
//!   just after the put whose version it expected). The key holds the last one's value at its
//!   version (absent after a removal), or the effect of an attempt still in flight at the kill
//!   that succeeded after it (a put at a higher version whose expectation held, or a removal);
//! - an acknowledged success's value, if found, has exactly the version it was acknowledged
//!   with.
//!
//! That comparisons fail after the pre-check is checked two ways: the child reports
//! `Stats::aborted` (records of conditional writes whose CAS failed), and before each reopen
//! the parent scans the segment files' bytes for the values of failed attempts, which only a
//! comparison that passed its pre-check can have written; both must be nonzero over the run.
//!
//! What it catches: conditional writes that publish their record before the comparison is
//! decided (`broken_publish_first` in `engine/src/kv/conditional.rs` switched on in a scratch
//! copy: a failed comparison leaves a valid record) fail the first reopen with a failed
//! attempt's value under its key.
//!
//! Size: `SEGLOG_FAILED_COMPARISON_KILLS=N` kills (else `SEGLOG_CRASH_KILLS`, else 16, a few
//! seconds). The harness is `seglog_tests::crash`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use seglog::{Error, Log, Options};
use seglog_tests::crash::{self, Crasher};
use seglog_tests::{SplitMix64, pattern};

const THREADS: u64 = 4;
/// Keys the threads race on, all on one key at a time: `BURST` attempts (counted over all
/// threads) on a key, then on the next. A key then rests while the others have their turn, so
/// its last record stays last (and live, for compaction to relocate) until long after.
const KEYS: u64 = 48;
const BURST: u64 = 12;
const SEGMENT_BYTES: u64 = 16 * 1024;
const SEED: u64 = 0xFA11_ED0C;
/// No open, in the child or the parent, may take longer.
const OPEN_DEADLINE: Duration = Duration::from_secs(60);
/// The first 8 bytes of every value, so the parent can find values in raw segment bytes.
const MAGIC: u64 = 0x5EED_FA11_EDC0_DE42;
/// `None` in a line's fields.
const NONE: u64 = u64::MAX;
/// Line tags: an attempt starts, an attempt returned, the child's statistics.
const INTENT: u64 = 1;
const RESULT: u64 = 2;
const STATS: u64 = 3;
/// Result codes.
const PUT_OK: u64 = 0;
const PUT_MISMATCH: u64 = 1;
const REMOVE_OK: u64 = 2;
const REMOVE_MISMATCH: u64 = 3;

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .compact_dead_bytes(2 * SEGMENT_BYTES)
        .compact_live_ratio(0.8)
        .auto_compact(true)
}

fn kills() -> u64 {
    std::env::var("SEGLOG_FAILED_COMPARISON_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| crash::kills(16))
}

fn key(k: u64) -> Vec<u8> {
    format!("lease-{k}").into_bytes()
}

fn key_index(key: &[u8]) -> Option<u64> {
    let k = std::str::from_utf8(key)
        .ok()?
        .strip_prefix("lease-")?
        .parse()
        .ok()?;
    (k < KEYS).then_some(k)
}

/// The id of attempt `seq` of `thread` in `run`: unique over the whole test.
fn attempt_id(run: u64, thread: u64, seq: u64) -> u64 {
    (run << 40) | (thread << 32) | seq
}

/// The value attempt `id` writes: `MAGIC`, the id, then 0 to 63 bytes derived from it.
fn value(id: u64) -> Vec<u8> {
    let len = (id.wrapping_mul(0x9E37_79B9) % 64) as usize;
    let mut v = Vec::with_capacity(16 + len);
    v.extend_from_slice(&MAGIC.to_le_bytes());
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&pattern(id, 7, len));
    v
}

/// The attempt that wrote `v`, if `v` is exactly one of [`value`]'s.
fn attempt_of(v: &[u8]) -> Option<u64> {
    let id = u64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    (value(id) == v).then_some(id)
}

fn field(version: Option<u64>) -> u64 {
    version.unwrap_or(NONE)
}

fn unfield(f: u64) -> Option<u64> {
    (f != NONE).then_some(f)
}

/// Opens the log on another thread and fails the test if that takes longer than the deadline.
fn open_within(dir: &Path, context: &str) -> Log {
    let (sender, receiver) = mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = sender.send(Log::open_with(&dir, options()));
    });
    match receiver.recv_timeout(OPEN_DEADLINE) {
        Ok(log) => log.unwrap_or_else(|e| panic!("{context}: open failed: {e}")),
        Err(_) => panic!("{context}: open did not finish within {OPEN_DEADLINE:?}"),
    }
}

/// One thread of the child: attempts until killed. Lines: `INTENT thread seq key remove
/// expected` before an attempt, `RESULT thread seq key code version current` after it.
fn race(log: &Log, attempts: &AtomicU64, run: u64, thread: u64) {
    let mut rng = SplitMix64::new(SEED ^ run.wrapping_mul(0x9E37_79B9) ^ thread);
    let mut seen = [None; KEYS as usize];
    for seq in 0..10_000_000 {
        // Relaxed: only spreads the attempts over the keys.
        let k = attempts.fetch_add(1, Ordering::Relaxed) / BURST % KEYS;
        let id = attempt_id(run, thread, seq);
        // Mostly the version just read (fails only if another thread gets in between, often
        // after the pre-check); sometimes the one this thread saw last (often stale).
        let fresh = log.version(&key(k));
        let expected = if rng.range(0, 4) == 0 {
            seen[k as usize]
        } else {
            fresh
        };
        let remove = expected.is_some() && rng.range(0, 2) == 0;
        crash::ack(&[INTENT, thread, seq, k, u64::from(remove), field(expected)]);
        let (code, version, current) = if remove {
            match log.compare_and_remove(&key(k), expected.unwrap()) {
                Ok(()) => (REMOVE_OK, None, None),
                Err(Error::VersionMismatch { current }) => (REMOVE_MISMATCH, None, current),
                Err(e) => panic!("compare_and_remove: {e}"),
            }
        } else {
            match log.compare_and_put(&key(k), expected, &value(id)) {
                Ok(version) => (PUT_OK, Some(version), None),
                Err(Error::VersionMismatch { current }) => (PUT_MISMATCH, None, current),
                Err(e) => panic!("compare_and_put: {e}"),
            }
        };
        seen[k as usize] = if code == PUT_OK { version } else { current };
        if code == REMOVE_OK {
            seen[k as usize] = None;
        }
        crash::ack(&[RESULT, thread, seq, k, code, field(version), field(current)]);
    }
}

#[test]
fn comparison_child() {
    let Some(child) = crash::child() else {
        return; // Only runs as the parent's child process.
    };
    let run: u64 = child.start.parse().unwrap();
    let log = Arc::new(open_within(&child.dir, "child"));
    let compactor = {
        let log = Arc::clone(&log);
        let mut rng = SplitMix64::new(SEED ^ run);
        std::thread::spawn(move || {
            // Bounded: the parent kills the child long before this ends.
            for _ in 0..1_000_000 {
                std::thread::sleep(Duration::from_micros(rng.range(0, 4_000)));
                log.compact().unwrap();
                let stats = log.stats();
                crash::ack(&[STATS, stats.aborted, stats.compaction.records_relocated]);
            }
        })
    };
    let attempts = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (log, attempts) = (Arc::clone(&log), Arc::clone(&attempts));
            std::thread::spawn(move || race(&log, &attempts, run, thread))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    compactor.join().unwrap();
}

/// One key's successes as the parent knows them, ordered by rank: a put at version `v` ranks
/// `2v`, a removal expecting `v` ranks `2v + 1` (just after the put it removed).
#[derive(Clone, Default, Debug)]
struct Chain {
    /// rank -> the put's attempt id, or `None` for a removal.
    events: BTreeMap<u128, Option<u64>>,
}

impl Chain {
    fn put(&mut self, version: u64, id: u64) {
        self.events.insert(2 * u128::from(version), Some(id));
    }

    fn removal(&mut self, expected: u64) {
        self.events.insert(2 * u128::from(expected) + 1, None);
    }

    /// The last success: its rank and the state it leaves (the put's id and version).
    fn last(&self) -> Option<(u128, Option<(u64, u64)>)> {
        let (&rank, &id) = self.events.last_key_value()?;
        Some((rank, id.map(|id| (id, (rank / 2) as u64))))
    }
}

/// An attempt the parent was told of.
#[derive(Clone, Copy, Debug)]
struct Intent {
    key: u64,
    remove: bool,
    expected: Option<u64>,
}

#[derive(Clone)]
struct Known {
    /// One per key.
    chains: Vec<Chain>,
    /// Puts whose comparison failed, and their keys.
    failed: HashMap<u64, u64>,
    /// Acknowledged successful puts and their versions.
    put_versions: HashMap<u64, u64>,
}

impl Known {
    fn new() -> Self {
        Self {
            chains: (0..KEYS).map(|_| Chain::default()).collect(),
            failed: HashMap::new(),
            put_versions: HashMap::new(),
        }
    }
}

/// Fails the check with a message unless `condition` holds.
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

/// Checks the reopened (or compacted) log; `in_flight` holds the attempts of the last child
/// that started but were not acknowledged, and those found to have taken effect are added to
/// `known`. Returns how many were.
fn check(log: &Log, known: &mut Known, in_flight: &HashMap<u64, Intent>) -> Result<usize, String> {
    let pinned = log.pin();
    let mut found: [Option<(u64, u64)>; KEYS as usize] = [None; KEYS as usize];
    let mut yielded = 0;
    for (k, v) in pinned.iter() {
        yielded += 1;
        let name = String::from_utf8_lossy(k);
        let index = key_index(k).ok_or_else(|| format!("a key nobody wrote: {name}"))?;
        let id =
            attempt_of(v).ok_or_else(|| format!("{name} holds {} bytes nobody wrote", v.len()))?;
        ensure!(
            !known.failed.contains_key(&id),
            "{name} holds the value of attempt {id:#x}, whose comparison failed"
        );
        let version = pinned.get_record(k).expect("iterated, so found").version;
        if let Some(&acked) = known.put_versions.get(&id) {
            ensure!(
                version == acked,
                "{name} holds attempt {id:#x}'s value at version {version}, not the {acked} it \
                 was acknowledged with"
            );
        }
        found[index as usize] = Some((id, version));
    }
    ensure!(
        log.len() == yielded,
        "len() is {} but iter() yields {yielded}",
        log.len()
    );
    let mut took_effect = 0;
    for k in 0..KEYS {
        let chain = &mut known.chains[k as usize];
        let last = chain.last();
        let (last_rank, expected) = last.map_or((None, None), |(r, s)| (Some(r), s));
        let now = found[k as usize];
        if now == expected {
            continue;
        }
        let flying = |remove: bool| {
            in_flight
                .iter()
                .filter(move |(_, i)| i.key == k && i.remove == remove)
        };
        let describe = || {
            let mut events: Vec<String> = chain_events(chain);
            events.truncate(8);
            format!(
                "key lease-{k} holds {now:x?} (attempt, version), its last acknowledged \
                 success leaves {expected:x?}; latest successes (newest first): {events:?}; in \
                 flight at the kill: {in_flight:x?}"
            )
        };
        match now {
            None => {
                // A removal in flight that succeeded.
                ensure!(
                    flying(true).next().is_some(),
                    "an acknowledged put is gone: {}",
                    describe()
                );
                let (_, version) = expected.expect("now differs from expected");
                chain.removal(version);
            }
            Some((id, version)) => {
                let Some(intent) = in_flight.get(&id) else {
                    return Err(format!(
                        "a value that is neither the last success nor in flight: {}",
                        describe()
                    ));
                };
                ensure!(
                    intent.key == k
                        && !intent.remove
                        && last_rank.is_none_or(|r| 2 * u128::from(version) > r),
                    "attempt {id:#x} ({intent:?}) is not a put of this key newer than \
                     its last success: {}",
                    describe()
                );
                // Its expectation held: it expected the state the last success left, or the
                // state another attempt in flight left first (a put of it, installed and then
                // lost unpublished or overwritten; or a removal).
                let before = expected.map(|(_, v)| v);
                let held = intent.expected == before
                    || match intent.expected {
                        Some(e) => {
                            before.is_none_or(|b| e > b)
                                && flying(false).any(|(&other, _)| other != id)
                        }
                        None => flying(true).next().is_some(),
                    };
                ensure!(
                    held,
                    "attempt {id:#x} took effect though it expected {:?}: {}",
                    intent.expected,
                    describe()
                );
                chain.put(version, id);
            }
        }
        took_effect += 1;
    }
    Ok(took_effect)
}

/// The check must be able to fail: on copies of the final log, a failed attempt's value put
/// back under its key (a failed comparison come back), and a key whose last success is a put
/// removed (an acknowledged value lost).
fn check_rejects_damage(dir: &Path, known: &Known) {
    let (&failed, &failed_key) = known.failed.iter().next().expect("some put failed");
    let holding = (0..KEYS)
        .find(|&k| matches!(known.chains[k as usize].last(), Some((_, Some(_)))))
        .expect("some key holds a value");
    for (damage, k, put) in [
        ("a failed value back", failed_key, Some(value(failed))),
        ("a value lost", holding, None),
    ] {
        let copy = tempfile::tempdir().unwrap();
        seglog_tests::copy_log_dir(dir, copy.path(), false);
        let log = open_within(copy.path(), damage);
        match &put {
            Some(v) => {
                log.put(&key(k), v).unwrap();
            }
            None => assert!(log.remove(&key(k)).unwrap()),
        }
        let mut known = known.clone();
        match check(&log, &mut known, &HashMap::new()) {
            Ok(_) => panic!("the check accepted a log with {damage}"),
            Err(e) => println!("control, {damage}: rejected as {e:.160}"),
        }
    }
}

fn chain_events(chain: &Chain) -> Vec<String> {
    chain
        .events
        .iter()
        .rev()
        .map(|(&rank, id)| match id {
            Some(id) => format!("put {id:#x} at {}", rank / 2),
            None => format!("removal of {}", rank / 2),
        })
        .collect()
}

/// How many of `failed`'s values appear in the raw bytes of the log's segment files.
fn failed_values_on_disk(dir: &Path, failed: &HashMap<u64, u64>) -> usize {
    let mut on_disk = HashSet::new();
    for path in seglog_tests::files_with_extension(dir, "seg") {
        let Ok(bytes) = std::fs::read(&path) else {
            continue; // Retired meanwhile.
        };
        // Values start on 8-byte boundaries.
        for at in (0..bytes.len().saturating_sub(16)).step_by(8) {
            if bytes[at..at + 8] == MAGIC.to_le_bytes() {
                let id = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
                if failed.contains_key(&id) {
                    on_disk.insert(id);
                }
            }
        }
    }
    on_disk.len()
}

#[test]
fn failed_comparisons_never_come_back_after_compaction_and_sigkill() {
    let kills = kills();
    let started = Instant::now();
    let mut crasher = Crasher::new("comparison_child", SEED, (20, 200));
    let mut known = Known::new();
    let (mut succeeded, mut mismatched, mut aborted, mut relocated) = (0, 0, 0, 0);
    let (mut failed_on_disk, mut took_effect) = (0, 0);
    for run in 0..kills {
        let mut intents: HashMap<u64, Intent> = HashMap::new();
        let (mut run_aborted, mut run_relocated) = (0, 0);
        for fields in crasher.run_and_kill(&run.to_string()) {
            match fields[..] {
                [INTENT, thread, seq, k, remove, expected] => {
                    let intent = Intent {
                        key: k,
                        remove: remove == 1,
                        expected: unfield(expected),
                    };
                    intents.insert(attempt_id(run, thread, seq), intent);
                }
                [RESULT, thread, seq, k, code, version, current] => {
                    let id = attempt_id(run, thread, seq);
                    let intent = intents
                        .remove(&id)
                        .unwrap_or_else(|| panic!("run {run}: a result of no attempt {id:#x}"));
                    assert_eq!(intent.key, k);
                    let chain = &mut known.chains[k as usize];
                    match code {
                        PUT_OK => {
                            chain.put(version, id);
                            known.put_versions.insert(id, version);
                            succeeded += 1;
                        }
                        REMOVE_OK => {
                            chain.removal(intent.expected.expect("a removal expects a version"));
                            succeeded += 1;
                        }
                        PUT_MISMATCH | REMOVE_MISMATCH => {
                            assert_ne!(
                                unfield(current),
                                intent.expected,
                                "run {run}: a mismatch that found what it expected"
                            );
                            if code == PUT_MISMATCH {
                                known.failed.insert(id, k);
                            }
                            mismatched += 1;
                        }
                        _ => panic!("run {run}: unknown result code {code}"),
                    }
                }
                [STATS, a, r] => (run_aborted, run_relocated) = (a, r),
                _ => {}
            }
        }
        aborted += run_aborted;
        relocated += run_relocated;
        failed_on_disk += failed_values_on_disk(crasher.dir(), &known.failed);

        let context = format!("run {run}, after the kill");
        let log = open_within(crasher.dir(), &context);
        let report = log.recovery_report();
        assert!(
            report.corrupt.is_empty(),
            "{context}: corruption after kill: {report:?}"
        );
        took_effect +=
            check(&log, &mut known, &intents).unwrap_or_else(|e| panic!("{context}: {e}"));
        // In-process compaction moves whatever is left; nothing may change.
        let log = Arc::new(log);
        let (done, compacted) = mpsc::channel();
        let compacting = Arc::clone(&log);
        std::thread::spawn(move || {
            for _ in 0..3 {
                compacting.compact().unwrap();
            }
            // Before the signal: the next child must find the log closed once the parent's
            // handle goes.
            drop(compacting);
            let _ = done.send(());
        });
        compacted
            .recv_timeout(OPEN_DEADLINE)
            .unwrap_or_else(|e| panic!("run {run}: compaction did not finish: {e}"));
        check(&log, &mut known, &HashMap::new())
            .unwrap_or_else(|e| panic!("run {run}, compacted after the reopen: {e}"));
        if run + 1 == kills {
            drop(log);
            check_rejects_damage(crasher.dir(), &known);
        }
    }
    let failed = known.failed.len();
    println!(
        "{kills} kills in {:.1} s: {succeeded} comparisons succeeded, {mismatched} failed \
         ({failed} failed puts, none came back); {aborted} records aborted after passing the \
         pre-check; values of {failed_on_disk} failed puts found in segment bytes before a \
         reopen; {took_effect} unacknowledged attempts found to have taken effect; \
         compaction relocated {relocated} records",
        started.elapsed().as_secs_f64()
    );
    assert!(
        succeeded > kills && failed as u64 > kills,
        "too few comparisons: {succeeded} succeeded, {failed} puts failed"
    );
    assert!(
        aborted > 0 && failed_on_disk > 0,
        "no comparison failed after its pre-check ({aborted} aborted records, \
         {failed_on_disk} failed values on disk): the index CAS was never contended"
    );
    assert!(relocated > 0, "compaction never relocated a record");
}
