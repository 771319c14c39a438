//! Power loss: guarantee 2 of docs/durability.md, checked on crash images.
//!
//! A log runs on a simulated disk (`seglog::sim::SimDisk`), which keeps the page cache apart
//! from what is durable: writers put, overwrite and remove their own keys across many small
//! segments (roll-overs, hints, automatic and explicit compaction with relocation, retirement
//! and file recycling), and call `sync` under each sync policy. While they run, the test takes
//! snapshots at random moments; from each it draws several crash images (the durable state plus
//! any subset of the unsynced pages, whole or torn at 512 bytes, and any prefix of the unsynced
//! directory operations), writes each to a real directory and opens it with `Log::open`.
//!
//! For every image: the open succeeds (no panic, no hang); for each key the value recovered is
//! the one its last operation acknowledged before a completed `sync()` left, or one a later
//! operation wrote (never an older one, never a removed one, never bytes nobody wrote); the log
//! holds no other key; and on some images, writes after recovery work and survive a reopen.
//!
//! `SEGLOG_POWER_LOSS_IMAGES` sets how many images to check (default 2000).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use seglog::sim::{CrashState, SimDisk};
use seglog::{Error, Log, Options, SyncPolicy};
use seglog_tests::SplitMix64;

const SEGMENT_BYTES: u64 = 8 * 1024;
const WRITERS: u64 = 2;
const KEYS_PER_WRITER: u64 = 24;
const OPS_PER_WRITER: u64 = 700;
const SNAPSHOTS_PER_ROUND: usize = 12;
const IMAGES_PER_SNAPSHOT: usize = 6;
/// How long recovering and checking one image may take before the test calls it a hang.
const OPEN_DEADLINE: Duration = Duration::from_secs(60);

fn options(policy: SyncPolicy) -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .sync_policy(policy)
        // Compact early and often: many segments are dead soon, so retirement and recycling
        // happen inside every round.
        .compact_live_ratio(0.6)
        // A small index grows (migrates) several times a round, and each migration forgets
        // the tombstones below the settled frontier: compaction then drops them from the
        // oldest segment, inside the rounds (counted in the summary line).
        .index_capacity(16)
}

/// Keys a writer puts once and removes at once (`TEMPORARY_KEYS..`): they fill the index with
/// tombstones, which migrations forget and compaction drops.
const TEMPORARY_KEYS: u64 = 1_000;

fn key_of(writer: u64, index: u64) -> Vec<u8> {
    format!("w{writer}-k{index:02}").into_bytes()
}

/// The value of a writer's `op`-th operation, a put of `key`: names both and has a length and
/// filler of its own, so any byte that was not written by exactly that put is noticed.
fn value_of(key: &[u8], op: u64) -> Vec<u8> {
    let mut value = format!("{}@{op}:", String::from_utf8_lossy(key)).into_bytes();
    let len = 8 + ((op * 7919 + key.len() as u64 * 31) % 700) as usize;
    let mut x = op.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ key.len() as u64;
    while value.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        value.push(x as u8);
    }
    value
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Put,
    Remove,
}

/// One acknowledged operation: which key, what, the writer's op number, and its place in the
/// global order of acknowledgments.
#[derive(Clone, Copy, Debug)]
struct Acked {
    key: u64,
    kind: Kind,
    op: u64,
    seq: u64,
}

/// What the writers share with the snapshot taker.
struct Shared {
    /// Acknowledgments so far: an operation's `seq` is this counter's value when it returned.
    acked: AtomicU64,
    /// Every operation with `seq` below this was acknowledged before a `sync()` (or, under
    /// `EveryWrite`, its own write) that completed.
    durable_before: AtomicU64,
    /// Operations each writer has started (read after a snapshot: an upper bound of what the
    /// snapshot can hold).
    started: Vec<AtomicU64>,
    done: AtomicBool,
}

struct Snapshot {
    state: CrashState,
    durable_before: u64,
    started: Vec<u64>,
}

#[derive(Default)]
struct Totals {
    images: u64,
    acked_checked: u64,
    keys_checked: u64,
    pages_torn: u64,
    pages_written: u64,
    pages_lost: u64,
    reopened_after_writes: u64,
    images_with_hints: u64,
    images_with_recycled_files: u64,
    tombstones_dropped: u64,
}

fn writer(log: &Log, shared: &Shared, writer: u64, policy: SyncPolicy, seed: u64) -> Vec<Acked> {
    let mut rng = SplitMix64::new(seed);
    let mut history = Vec::new();
    for op in 0..OPS_PER_WRITER {
        shared.started[writer as usize].store(op + 1, Ordering::SeqCst);
        let roll = rng.range(0, 99);
        let index = rng.range(0, KEYS_PER_WRITER - 1);
        // Set by an operation on a temporary key instead of `index`.
        let mut history_index = None;
        let key = key_of(writer, index);
        let kind = match roll {
            0..=7 => {
                // A temporary key: put, acknowledged, then removed, acknowledged.
                let index = TEMPORARY_KEYS + op;
                let key = key_of(writer, index);
                log.put(&key, &value_of(&key, op)).unwrap();
                let seq = shared.acked.fetch_add(1, Ordering::SeqCst);
                if policy == SyncPolicy::EveryWrite {
                    shared.durable_before.fetch_max(seq + 1, Ordering::SeqCst);
                }
                history.push(Acked {
                    key: index,
                    kind: Kind::Put,
                    op,
                    seq,
                });
                log.remove(&key).unwrap();
                history_index = Some(index);
                Some(Kind::Remove)
            }
            8..=71 => {
                log.put(&key, &value_of(&key, op)).unwrap();
                Some(Kind::Put)
            }
            72..=86 => {
                log.remove(&key).unwrap();
                Some(Kind::Remove)
            }
            87..=95 => {
                let covered = shared.acked.load(Ordering::SeqCst);
                log.sync().unwrap();
                shared.durable_before.fetch_max(covered, Ordering::SeqCst);
                None
            }
            96..=97 => {
                log.compact().unwrap();
                None
            }
            _ => {
                // The background thread hints only segments 8 MiB behind the tail, which these
                // small logs never are: write the hints of every sealed segment now.
                log.write_hints().unwrap();
                None
            }
        };
        if let Some(kind) = kind {
            let seq = shared.acked.fetch_add(1, Ordering::SeqCst);
            if policy == SyncPolicy::EveryWrite {
                shared.durable_before.fetch_max(seq + 1, Ordering::SeqCst);
            }
            history.push(Acked {
                key: history_index.take().unwrap_or(index),
                kind,
                op,
                seq,
            });
        }
    }
    history
}

/// One round: a fresh log on a fresh disk, the writers, and snapshots taken while they run.
fn round(policy: SyncPolicy, seed: u64) -> (Vec<Snapshot>, Vec<Vec<Acked>>, u64) {
    let disk = SimDisk::new();
    let log = Arc::new(Log::open_sim(&disk, options(policy)).unwrap());
    let shared = Arc::new(Shared {
        acked: AtomicU64::new(0),
        durable_before: AtomicU64::new(0),
        started: (0..WRITERS).map(|_| AtomicU64::new(0)).collect(),
        done: AtomicBool::new(false),
    });
    let start = Arc::new(Barrier::new(WRITERS as usize + 1));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (log, shared, start) = (Arc::clone(&log), Arc::clone(&shared), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                writer(&log, &shared, w, policy, seed ^ ((w + 1) * 0x1234_5678))
            })
        })
        .collect();
    let mut rng = SplitMix64::new(seed);
    let take = |snapshots: &mut Vec<Snapshot>| {
        // The syncs counted before the snapshot completed before it, so it holds their flushes;
        // the operations started are read after it, so it holds nothing beyond them.
        let durable_before = shared.durable_before.load(Ordering::SeqCst);
        let state = disk.snapshot();
        let started = shared
            .started
            .iter()
            .map(|s| s.load(Ordering::SeqCst))
            .collect();
        snapshots.push(Snapshot {
            state,
            durable_before,
            started,
        });
    };
    let mut snapshots = Vec::new();
    start.wait();
    while snapshots.len() < SNAPSHOTS_PER_ROUND - 1 && !shared.done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_micros(rng.range(50, 1500)));
        take(&mut snapshots);
        if writers.iter().all(|w| w.is_finished()) {
            shared.done.store(true, Ordering::SeqCst);
        }
    }
    let histories: Vec<Vec<Acked>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    // One more once everything is acknowledged (with what the background thread did since).
    take(&mut snapshots);
    let dropped = log.stats().compaction.tombstones_dropped;
    drop(log);
    (snapshots, histories, dropped)
}

/// Checks one recovered image against what the writers had acknowledged.
fn check_image(
    log: &Log,
    snapshot: &Snapshot,
    by_key: &HashMap<(u64, u64), Vec<Acked>>,
    totals: &mut Totals,
    what: &str,
) {
    let mut present = 0;
    // Every regular key, and every temporary key some writer touched.
    let mut keys: Vec<(u64, u64)> = (0..WRITERS)
        .flat_map(|w| (0..KEYS_PER_WRITER).map(move |k| (w, k)))
        .collect();
    keys.extend(by_key.keys().filter(|&&(_, k)| k >= TEMPORARY_KEYS));
    for (w, k) in keys {
        {
            let key = key_of(w, k);
            let ops = by_key.get(&(w, k)).map_or(&[][..], Vec::as_slice);
            let covered = ops.iter().rposition(|a| a.seq < snapshot.durable_before);
            // The states the key may be in: after its last covered operation (absent if none),
            // or after any later operation the snapshot can hold.
            let first_allowed = covered.unwrap_or(0);
            let allowed: Vec<&Acked> = ops[first_allowed..]
                .iter()
                .filter(|a| a.op < snapshot.started[w as usize])
                .collect();
            let absent_allowed =
                covered.is_none() || allowed.iter().any(|a| a.kind == Kind::Remove);
            let got = log.get(&key);
            totals.keys_checked += 1;
            if covered.is_some() {
                totals.acked_checked += 1;
            }
            match got {
                None => assert!(
                    absent_allowed,
                    "{what}: {} is gone, but its last durable operation was {:?}",
                    String::from_utf8_lossy(&key),
                    covered.map(|c| ops[c])
                ),
                Some(value) => {
                    present += 1;
                    let matched = allowed
                        .iter()
                        .find(|a| a.kind == Kind::Put && value == value_of(&key, a.op));
                    assert!(
                        matched.is_some(),
                        "{what}: {} reads {:?}, which is not its last durable value ({:?}) \
                         nor a later one",
                        String::from_utf8_lossy(&key),
                        String::from_utf8_lossy(&value[..value.len().min(24)]),
                        covered.map(|c| ops[c])
                    );
                }
            }
        }
    }
    assert_eq!(
        log.len(),
        present,
        "{what}: the log holds keys nobody wrote"
    );
}

/// Runs `check` on another thread, so a hang fails the test (naming `what`) instead of
/// stalling it.
fn with_deadline<T: Send + 'static>(what: &str, check: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            check,
        )));
    });
    match receive.recv_timeout(OPEN_DEADLINE) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => {
            panic!("{what}: recovery or the checks after it did not finish in {OPEN_DEADLINE:?}")
        }
    }
}

/// Opens the image in `dir`, checks it, and (with `reopen`) writes to it and reopens it.
fn recover_and_check(
    dir: &Path,
    policy: SyncPolicy,
    snapshot: &Snapshot,
    by_key: &HashMap<(u64, u64), Vec<Acked>>,
    reopen: bool,
    what: &str,
) -> Totals {
    let mut totals = Totals::default();
    let log = open(dir, policy);
    check_image(&log, snapshot, by_key, &mut totals, what);
    if reopen {
        // Writes after recovery work and survive a reopen.
        let key = key_of(0, 0);
        let fresh = value_of(&key, 1_000_000);
        log.put(&key, &fresh).unwrap();
        log.remove(&key_of(1, 0)).unwrap();
        log.sync().unwrap();
        let len = log.len();
        drop(log);
        let log = open(dir, policy);
        assert_eq!(log.get(&key), Some(fresh), "{what}: a write after recovery");
        assert_eq!(
            log.get(&key_of(1, 0)),
            None,
            "{what}: a remove after recovery"
        );
        assert_eq!(log.len(), len, "{what}: reopen after recovery");
        totals.reopened_after_writes += 1;
    }
    totals
}

fn open(dir: &Path, policy: SyncPolicy) -> Log {
    Log::open_with(dir, options(policy))
        .unwrap_or_else(|e| panic!("the open of a crash image failed: {e}"))
}

fn images_wanted() -> u64 {
    std::env::var("SEGLOG_POWER_LOSS_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

#[test]
fn every_crash_image_recovers_what_sync_acknowledged() {
    let wanted = images_wanted();
    let policies = [
        SyncPolicy::Never,
        SyncPolicy::EveryWrite,
        SyncPolicy::IntervalMs(1),
    ];
    let scratch = tempfile::tempdir().unwrap();
    let mut totals = Totals::default();
    let mut round_seed = 0xC0FFEE;
    let mut rounds = 0;
    'rounds: loop {
        let policy = policies[rounds % policies.len()];
        rounds += 1;
        round_seed += 1;
        let (snapshots, histories, dropped) = round(policy, round_seed);
        totals.tombstones_dropped += dropped;
        let mut by_key: HashMap<(u64, u64), Vec<Acked>> = HashMap::new();
        for (w, history) in histories.iter().enumerate() {
            for acked in history {
                by_key
                    .entry((w as u64, acked.key))
                    .or_default()
                    .push(*acked);
            }
        }
        let by_key = Arc::new(by_key);
        let snapshots: Vec<Arc<Snapshot>> = snapshots.into_iter().map(Arc::new).collect();
        for (s, snapshot) in snapshots.iter().enumerate() {
            for i in 0..IMAGES_PER_SNAPSHOT {
                let image_seed = round_seed * 1_000_003 + (s * IMAGES_PER_SNAPSHOT + i) as u64;
                let image = snapshot.state.image(image_seed);
                totals.pages_torn += image.pages_torn;
                totals.pages_written += image.pages_written;
                totals.pages_lost += image.pages_lost;
                let has = |suffix: &str| image.files.keys().any(|name| name.ends_with(suffix));
                totals.images_with_hints += u64::from(has(".hint"));
                totals.images_with_recycled_files += u64::from(has(".seg.free"));
                let dir = scratch.path().join(format!("image-{}", totals.images));
                image.write_to(&dir).unwrap();
                let what = format!(
                    "round {rounds} ({policy:?}, seed {round_seed}), snapshot {s}, image seed \
                     {image_seed} ({} of {} dir ops)",
                    image.dir_ops_applied.0, image.dir_ops_applied.1
                );
                let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    with_deadline(&what, {
                        let (dir, what) = (dir.clone(), what.clone());
                        let snapshot = Arc::clone(snapshot);
                        let by_key = Arc::clone(&by_key);
                        let reopen = totals.images % 10 == 0;
                        move || recover_and_check(&dir, policy, &snapshot, &by_key, reopen, &what)
                    })
                }));
                let checked = checked.unwrap_or_else(|panic| {
                    // Keep the image that failed, as it was before recovery touched it.
                    let kept = std::env::temp_dir().join("seglog-power-loss-failure");
                    let _ = std::fs::remove_dir_all(&kept);
                    image.write_to(&kept).unwrap();
                    eprintln!("{what}: the image is kept in {}", kept.display());
                    std::panic::resume_unwind(panic)
                });
                totals.keys_checked += checked.keys_checked;
                totals.acked_checked += checked.acked_checked;
                totals.reopened_after_writes += checked.reopened_after_writes;
                std::fs::remove_dir_all(&dir).unwrap();
                totals.images += 1;
                if totals.images >= wanted {
                    break 'rounds;
                }
            }
        }
    }
    // Past the test harness's capture, so a CI log shows what was checked.
    use std::io::Write;
    writeln!(
        std::io::stderr(),
        "power loss: {} images over {rounds} rounds, {} key checks ({} of keys with an \
         acknowledged durable operation), pages torn {}, written {}, lost {}; {} images with \
         hints, {} with recycled files; {} reopened after writes; {} tombstones dropped in the \
         rounds; 0 lost, 0 resurrected, 0 panics",
        totals.images,
        totals.keys_checked,
        totals.acked_checked,
        totals.pages_torn,
        totals.pages_written,
        totals.pages_lost,
        totals.images_with_hints,
        totals.images_with_recycled_files,
        totals.reopened_after_writes,
        totals.tombstones_dropped
    )
    .unwrap();
    assert!(
        totals.tombstones_dropped > 0,
        "no round dropped a tombstone"
    );
    assert!(totals.images_with_hints > 0 && totals.images_with_recycled_files > 0);
    assert!(totals.pages_torn > 0 && totals.pages_lost > 0 && totals.pages_written > 0);
}

/// An injected msync/fsync error fails that `sync()` and every later one, and every write;
/// nothing a successful earlier sync acknowledged is lost; the next open recovers.
#[test]
fn a_failed_sync_is_sticky_and_loses_nothing_synced_before() {
    let disk = SimDisk::new();
    let log = Log::open_sim(&disk, options(SyncPolicy::Never)).unwrap();
    for i in 0..200u64 {
        let key = key_of(0, i % KEYS_PER_WRITER);
        log.put(&key, &value_of(&key, i)).unwrap();
    }
    log.sync().unwrap();
    let synced: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..KEYS_PER_WRITER)
        .map(|k| (key_of(0, k), log.get(&key_of(0, k))))
        .collect();
    // Written after the last good sync: the failing sync drops them from the disk's view.
    for i in 200..260u64 {
        let key = key_of(1, i % KEYS_PER_WRITER);
        log.put(&key, &value_of(&key, i)).unwrap();
    }
    disk.fail_flushes(1);
    let first = log.sync().unwrap_err();
    assert!(
        matches!(first, Error::Io { .. }),
        "the failing sync: {first}"
    );
    // The disk works again, but the log must not claim the dropped pages reached it.
    let again = log.sync().unwrap_err();
    assert!(
        matches!(again, Error::SyncFailed { .. }),
        "a later sync: {again}"
    );
    let put = log.put(b"after", b"the failure").unwrap_err();
    assert!(
        matches!(put, Error::SyncFailed { .. }),
        "a later put: {put}"
    );
    let remove = log.remove(&key_of(0, 0)).unwrap_err();
    assert!(
        matches!(remove, Error::SyncFailed { .. }),
        "a later remove: {remove}"
    );
    assert!(log.sync().is_err(), "still failing");

    // Power loss now: every image recovers what the good sync acknowledged.
    let state = disk.snapshot();
    drop(log);
    let scratch = tempfile::tempdir().unwrap();
    for seed in 0..40 {
        let dir = scratch.path().join(format!("image-{seed}"));
        state.image(seed).write_to(&dir).unwrap();
        let log = open(&dir, SyncPolicy::Never);
        for (key, value) in &synced {
            assert_eq!(
                &log.get(key),
                value,
                "image {seed}: {}",
                String::from_utf8_lossy(key)
            );
        }
        assert_eq!(
            log.get(b"after"),
            None,
            "image {seed}: a put refused after the failure"
        );
        // The reopened log works.
        log.put(b"after", b"the reopen").unwrap();
        log.sync().unwrap();
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
