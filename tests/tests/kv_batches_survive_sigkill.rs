//! Write batches are all or nothing across SIGKILL (issue 16): writer threads in a child
//! process write batches of 1 to 64 operations (puts and removes over a key space each
//! writer's batches share across runs, the last operation on a key winning inside a batch) while automatic
//! compaction and a thread calling `compact` at random moments relocate their members through
//! small segments; the parent kills the child at random moments and reopens the log (with a
//! deadline) after every kill.
//!
//! Every batch `id` is decided by its id alone ([`Batch::of`]), so the parent knows what any
//! batch wrote without being told, and every value names the batch and the key it was written
//! for. Each batch also puts its own witness key `w/<id>` that nothing else touches: the batch
//! is in the log exactly when its witness is, and the witness's version is the batch's. After
//! each reopen the parent checks:
//!
//! - every acknowledged batch is present, with the version `write_batch` returned; a batch no
//!   writer acknowledged is present only as the one its writer had in flight;
//! - every shared key holds exactly what recovery's highest-version rule makes of the present
//!   batches: the effect of the present batch with the highest version that touches it (absent
//!   if that batch removed it), or a put of a lower batch written again above it (a batch's put
//!   beaten by a newer batch's tombstone is written again with a newer version, as `put` does:
//!   then a present batch removed the key between the two versions). So a present batch with a
//!   member missing, or a member of a batch that is not present, fails the check;
//! - no key or value that no batch wrote; `len()` equals what `iter()` yields.
//!
//! Acknowledged means returned: a SIGKILL keeps the page cache, so no sync is needed for that.
//! Every other run uses `SyncPolicy::EveryWrite` all the same, so batches go through its sync
//! path too. The child reports its compaction statistics as extra ack lines; the test requires
//! relocations to have happened (every record here is a batch member or a member written
//! again).
//!
//! What it catches: batches written member by member (`broken_members_alone` in
//! `engine/src/kv/batch.rs` switched on in a scratch copy, returning the witness's version)
//! fail the first reopen (a key holds an older batch's value above a newer one's version).
//! The last reopen also runs two controls on copies of the log: one member of a present batch
//! removed, one acknowledged witness removed; the check must reject both.
//!
//! Size: `SEGLOG_BATCH_KILLS=N` kills (else `SEGLOG_CRASH_KILLS`, else 16, a few seconds). The
//! harness is `seglog_tests::crash`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use seglog::{Log, Options, SyncPolicy};
use seglog_tests::crash::{self, Crasher};
use seglog_tests::{SplitMix64, pattern};

const WRITERS: u64 = 3;
/// Keys every batch draws from.
const KEYS: u64 = 96;
/// The most operations of a batch, its witness included.
const MAX_OPS: u64 = 64;
const SEGMENT_BYTES: u64 = 32 * 1024;
const SEED: u64 = 0xBA7C_4E55;
/// No open, in the child or the parent, may take longer.
const OPEN_DEADLINE: Duration = Duration::from_secs(60);
/// The first field of the child's statistics lines (a writer number no writer has).
const STATS_LINE: u64 = u64::MAX;

fn options(run: u64) -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .index_capacity(256)
        .compact_dead_bytes(2 * SEGMENT_BYTES)
        .compact_live_ratio(0.7)
        .auto_compact(true)
        .sync_policy(if run % 2 == 1 {
            SyncPolicy::EveryWrite
        } else {
            SyncPolicy::default()
        })
}

fn kills() -> u64 {
    std::env::var("SEGLOG_BATCH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| crash::kills(16))
}

/// The id of batch `seq` of `writer` in `run`: unique over the whole test.
fn batch_id(run: u64, writer: u64, seq: u64) -> u64 {
    (run << 40) | (writer << 32) | seq
}

fn shared_key(k: u64) -> Vec<u8> {
    format!("k/{k:03}").into_bytes()
}

fn witness_key(id: u64) -> Vec<u8> {
    format!("w/{id:016x}").into_bytes()
}

/// The value batch `id` puts under shared key `k`: the batch, the key, then bytes derived from
/// both (0 to 119 of them).
fn value(id: u64, k: u64) -> Vec<u8> {
    let len = (id.wrapping_mul(31).wrapping_add(k * 7) % 120) as usize;
    let mut v = Vec::with_capacity(16 + len);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&k.to_le_bytes());
    v.extend_from_slice(&pattern(id, k, len));
    v
}

/// Which batch wrote `v` under shared key `k`, if `v` is exactly a value [`value`] makes.
fn batch_of_value(v: &[u8], k: u64) -> Option<u64> {
    let id = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    (value(id, k) == v).then_some(id)
}

/// What a batch does to one shared key: the last of its operations on the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Effect {
    Put,
    Remove,
}

/// A batch as its id decides it.
struct Batch {
    /// Operations in the order they are added: shared key and whether it is a put.
    ops: Vec<(u64, Effect)>,
}

impl Batch {
    /// Batch `id`: 0 to 63 operations on shared keys (a quarter of them removes, keys drawn
    /// with repeats, so a batch sometimes puts and removes one key), then its witness.
    fn of(id: u64) -> Self {
        let mut rng = SplitMix64::new(id ^ SEED);
        // Small batches as often as large ones.
        let n = if rng.range(0, 1) == 0 {
            rng.range(0, 4)
        } else {
            rng.range(0, MAX_OPS - 1)
        };
        let ops = (0..n)
            .map(|_| {
                // A writer's own share of the keys: batches of one writer come one after the
                // other, so no two batches race on a key (a member that loses such a race is
                // written again with a newer version, `Log::write_batch`, which
                // `kv_linearizable_with_conditional_writes` checks; here every key's version is
                // exactly its batch's). Runs and compaction still interleave them all.
                let per_writer = KEYS / WRITERS;
                let k = ((id >> 32) & 0xFF) % WRITERS * per_writer + rng.range(0, per_writer - 1);
                let effect = if rng.range(0, 3) == 0 {
                    Effect::Remove
                } else {
                    Effect::Put
                };
                (k, effect)
            })
            .collect();
        Self { ops }
    }

    /// The `seglog::Batch` to write.
    fn to_write(&self, id: u64) -> seglog::Batch {
        let mut batch = seglog::Batch::new();
        for &(k, effect) in &self.ops {
            match effect {
                Effect::Put => batch.put(&shared_key(k), &value(id, k)),
                Effect::Remove => batch.remove(&shared_key(k)),
            };
        }
        batch.put(&witness_key(id), &id.to_le_bytes());
        assert!(batch.len() as u64 <= MAX_OPS);
        batch
    }

    /// The effect on each shared key it touches: the last operation on it.
    fn effects(&self) -> BTreeMap<u64, Effect> {
        self.ops.iter().copied().collect()
    }
}

/// Opens the log on another thread and fails the test if that takes longer than the deadline.
fn open_within(dir: &Path, options: Options, context: &str) -> Log {
    let (sender, receiver) = mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = sender.send(Log::open_with(&dir, options));
    });
    match receiver.recv_timeout(OPEN_DEADLINE) {
        Ok(log) => log.unwrap_or_else(|e| panic!("{context}: open failed: {e}")),
        Err(_) => panic!("{context}: open did not finish within {OPEN_DEADLINE:?}"),
    }
}

/// The child: writes batches until killed, printing `ack writer seq version` after each
/// `write_batch` returns, and `ack STATS_LINE records_relocated segments_reclaimed` now and
/// then.
#[test]
fn batch_child() {
    let Some(child) = crash::child() else {
        return; // Only runs as the parent's child process.
    };
    let run: u64 = child.start.parse().unwrap();
    let log = Arc::new(open_within(&child.dir, options(run), "child"));
    let compactor = {
        let log = Arc::clone(&log);
        let mut rng = SplitMix64::new(SEED ^ run.wrapping_mul(0x9E37_79B9));
        std::thread::spawn(move || {
            // Bounded: the parent kills the child long before this ends.
            for _ in 0..1_000_000 {
                std::thread::sleep(Duration::from_micros(rng.range(0, 5_000)));
                log.compact().unwrap();
                let stats = log.stats().compaction;
                crash::ack(&[
                    STATS_LINE,
                    stats.records_relocated,
                    stats.segments_reclaimed,
                ]);
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for seq in 0..1_000_000 {
                    let id = batch_id(run, writer, seq);
                    let version = log.write_batch(&Batch::of(id).to_write(id)).unwrap();
                    crash::ack(&[writer, seq, version]);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    compactor.join().unwrap();
}

/// What the parent knows of the batches so far.
#[derive(Default)]
struct Known {
    /// Acknowledged batches and the versions `write_batch` returned.
    acked: HashMap<u64, u64>,
    /// Per run and writer, the last acknowledged seq.
    last_acked: HashMap<(u64, u64), u64>,
}

/// Fails the check with a message unless `condition` holds.
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

/// What a check of a reopened log found.
struct Found {
    /// Batches present (their witness is), with their versions.
    present: HashMap<u64, u64>,
    /// Each shared key's value: the batch that wrote it and its version.
    shared: BTreeMap<u64, (u64, u64)>,
}

/// Checks the reopened log against the batches present in it (see the module docs).
fn check(log: &Log, known: &Known, runs: u64) -> Result<Found, String> {
    let pinned = log.pin();
    let mut present: HashMap<u64, u64> = HashMap::new();
    let mut shared: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut yielded = 0;
    for (key, v) in pinned.iter() {
        yielded += 1;
        let name = String::from_utf8_lossy(key).into_owned();
        let Some(record) = pinned.get_record(key) else {
            return Err(format!("{name} iterated but not found"));
        };
        if let Some(hex) = name.strip_prefix("w/") {
            let id =
                u64::from_str_radix(hex, 16).map_err(|_| format!("a key nobody wrote: {name}"))?;
            ensure!(v == id.to_le_bytes(), "witness {name} holds {v:?}");
            present.insert(id, record.version);
        } else if let Some(k) = name.strip_prefix("k/").and_then(|k| k.parse::<u64>().ok()) {
            let id = batch_of_value(v, k)
                .ok_or_else(|| format!("{name} holds {} bytes nobody wrote", v.len()))?;
            shared.insert(k, (id, record.version));
        } else {
            return Err(format!("a key nobody wrote: {name}"));
        }
    }
    ensure!(
        log.len() == yielded,
        "len() is {} but iter() yields {yielded}",
        log.len()
    );

    // Acknowledged batches are present, at their versions; others only as the one in flight.
    for (&id, &version) in &known.acked {
        ensure!(
            present.get(&id) == Some(&version),
            "acknowledged batch {id:#x} (version {version}) is not in the log (witness: {:?})",
            present.get(&id)
        );
    }
    for &id in present.keys() {
        if known.acked.contains_key(&id) {
            continue;
        }
        let (run, writer, seq) = (id >> 40, (id >> 32) & 0xff, id & 0xffff_ffff);
        let next = known
            .last_acked
            .get(&(run, writer))
            .map_or(0, |&last| last + 1);
        ensure!(
            run < runs && writer < WRITERS && seq == next,
            "batch {id:#x} is present but is not the batch writer {writer} had in flight in run \
             {run} (that was seq {next})"
        );
    }

    // Each shared key: what the highest-version rule makes of the present batches.
    let mut touching: BTreeMap<u64, Vec<(u64, u64, Effect)>> = BTreeMap::new();
    for (&id, &version) in &present {
        for (k, effect) in Batch::of(id).effects() {
            touching.entry(k).or_default().push((version, id, effect));
        }
    }
    for k in 0..KEYS {
        let mut batches = touching.remove(&k).unwrap_or_default();
        batches.sort();
        let top = batches.last().copied();
        let found = shared.get(&k).copied();
        let describe = || {
            let list: Vec<String> = batches
                .iter()
                .map(|(v, id, e)| format!("{v} {id:#x} {e:?}"))
                .collect();
            format!(
                "key k/{k:03} holds {}; present batches touching it (version, id, effect): \
                 {}",
                match found {
                    None => "nothing".to_string(),
                    Some((id, v)) => format!("batch {id:#x}'s value at version {v}"),
                },
                list.join(", ")
            )
        };
        match (found, top) {
            (None, None) | (None, Some((_, _, Effect::Remove))) => {}
            (None, Some((_, _, Effect::Put))) => {
                return Err(format!("the newest batch's put is missing: {}", describe()));
            }
            (Some(_), None) => return Err(format!("a value of no present batch: {}", describe())),
            (Some((id, version)), Some((top_version, top_id, _))) => {
                let Some(&(own_version, _, effect)) = batches.iter().find(|b| b.1 == id) else {
                    return Err(format!("a value of a batch not present: {}", describe()));
                };
                ensure!(
                    effect == Effect::Put,
                    "the value of a batch whose last operation on the key removed it: {}",
                    describe()
                );
                // The top batch's own value, or a lower one's written again above it.
                ensure!(
                    version == top_version && id == top_id || version > top_version,
                    "an older batch's value under a newer one: {}",
                    describe()
                );
                ensure!(
                    version == own_version
                        || batches.iter().any(|&(v, _, e)| {
                            e == Effect::Remove && own_version < v && v < version
                        }),
                    "a value at a version its batch never had, and no tombstone it could have \
                     been written again after: {}",
                    describe()
                );
            }
        }
    }
    Ok(Found { present, shared })
}

/// The check must be able to fail: on a copy of the final log, one member of a present batch
/// removed (a batch in part), and one acknowledged batch's witness removed (a lost batch).
fn check_rejects_damage(dir: &Path, known: &Known, runs: u64, found: &Found) {
    let top_put = found
        .shared
        .iter()
        .find(|&(_, &(id, version))| found.present.get(&id) == Some(&version))
        .map(|(&k, _)| k)
        .expect("some key holds its batch's own value");
    let acked = *known
        .acked
        .keys()
        .next()
        .expect("some batch was acknowledged");
    for (damage, key) in [
        ("a member removed", shared_key(top_put)),
        ("a witness removed", witness_key(acked)),
    ] {
        let copy = tempfile::tempdir().unwrap();
        seglog_tests::copy_log_dir(dir, copy.path(), false);
        let log = open_within(copy.path(), options(0), damage);
        assert!(log.remove(&key).unwrap(), "{damage}: the key was there");
        match check(&log, known, runs) {
            Ok(_) => panic!("{damage}: the check accepted a log with {damage}"),
            Err(e) => println!("control, {damage}: rejected as {e:.160}"),
        }
    }
}

#[test]
fn sigkill_keeps_every_batch_whole_or_not_at_all() {
    let kills = kills();
    let started = Instant::now();
    let mut crasher = Crasher::new("batch_child", SEED, (30, 250));
    let mut known = Known::default();
    let (mut relocated, mut reclaimed) = (0, 0);
    let mut in_flight_present = HashSet::new();
    let mut present = 0;
    for run in 0..kills {
        let (mut run_relocated, mut run_reclaimed) = (0, 0);
        for fields in crasher.run_and_kill(&run.to_string()) {
            match fields[..] {
                [STATS_LINE, r, s] => (run_relocated, run_reclaimed) = (r, s),
                [writer, seq, version] => {
                    let id = batch_id(run, writer, seq);
                    assert!(
                        known.acked.insert(id, version).is_none(),
                        "batch {id:#x} acknowledged twice"
                    );
                    // One thread writes a writer's acks, in order.
                    let next = known.last_acked.get(&(run, writer)).map_or(0, |&s| s + 1);
                    assert_eq!(seq, next, "run {run}: writer {writer}'s acks out of order");
                    known.last_acked.insert((run, writer), seq);
                }
                _ => {}
            }
        }
        relocated += run_relocated;
        reclaimed += run_reclaimed;
        let context = format!("run {run}");
        let log = open_within(crasher.dir(), options(run), &context);
        let report = log.recovery_report();
        assert!(
            report.corrupt.is_empty(),
            "{context}: corruption after kill: {report:?}"
        );
        let found = check(&log, &known, run + 1).unwrap_or_else(|e| panic!("{context}: {e}"));
        present = found.present.len();
        in_flight_present.extend(
            found
                .present
                .keys()
                .filter(|id| !known.acked.contains_key(id))
                .copied(),
        );
        if run + 1 == kills {
            drop(log);
            check_rejects_damage(crasher.dir(), &known, run + 1, &found);
        }
    }
    let acked = known.acked.len();
    println!(
        "{kills} kills in {:.1} s: {acked} batches acknowledged, {present} present at the end \
         ({} of them never acknowledged: in flight at a kill); \
         compaction relocated {relocated} records and reclaimed {reclaimed} segments",
        started.elapsed().as_secs_f64(),
        in_flight_present.len()
    );
    assert!(
        acked as u64 > kills * WRITERS,
        "children acknowledged almost nothing ({acked})"
    );
    assert!(
        relocated > 0 && reclaimed > 0,
        "compaction relocated {relocated} records and reclaimed {reclaimed} segments: batch \
         members were never moved"
    );
}
