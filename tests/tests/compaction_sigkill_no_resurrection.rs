//! No removed key comes back (issue 15's resurrection test): writer threads in a child process
//! put every key several times (its older puts spread over many small segments by the other
//! keys interleaved with it), remove it, sometimes put it again after the remove, and keep
//! bringing new keys; automatic compaction runs beside them and a thread calls `compact` at
//! random moments, so index rebuilds forget the removed keys and passes drop their tombstones
//! in whatever order the threads make. The parent SIGKILLs the child at random moments and
//! reopens the log (with a deadline): every key must hold exactly the state after its writer's
//! last acknowledged operation or after the one operation it had in flight — a key whose last
//! acknowledged operation removed it is absent, never an older value.
//!
//! Tombstone dropping is checked to happen: each child writes its statistics to a file the
//! parent reads after the kill (`tombstones_dropped` is counted per process, and counts drops
//! whose segment a kill left on disk again in the next run), and after the kills the parent runs
//! a deterministic tail in-process (more removes, then `compact` until tombstones are dropped)
//! and reopens once more. Dropping forgotten tombstones outside the oldest segment (a mutation
//! of `compaction/relocate.rs` tried in a scratch copy) fails the first run: a removed key is
//! back with an older put's value.
//!
//! Size: `SEGLOG_RESURRECTION_KILLS=N` kills (else `SEGLOG_CRASH_KILLS`, else 60). The harness
//! is `seglog_tests::crash`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use seglog::{Log, Options};
use seglog_tests::crash::{self, Crasher};
use seglog_tests::{SplitMix64, pattern};

const WRITERS: u64 = 2;
/// Keys each writer has under way at once; one operation of each per round.
const SLOTS: u64 = 48;
/// Operations of one generation of a slot's key (see [`op`]).
const PHASES: u64 = 8;
/// Odd slots cycle over this many key names, so a key comes back long after its removal (its
/// tombstone often dropped by then); even slots get a new key each generation.
const CYCLE: u64 = 16;
const SEGMENT_BYTES: u64 = 8 * 1024;
/// The seed of the kill delays; a child's compaction timing is seeded from it and its run.
const SEED: u64 = 0x7E50_57A1;
/// No open, in the child or the parent, may take longer.
const OPEN_DEADLINE: Duration = Duration::from_secs(60);

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .index_capacity(1024)
        .compact_dead_bytes(4 * SEGMENT_BYTES)
        .auto_compact(true)
}

fn kills() -> u64 {
    std::env::var("SEGLOG_RESURRECTION_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| crash::kills(60))
}

#[derive(Clone, PartialEq, Eq)]
enum Op {
    /// The value is `value(writer, seq)` of the operation's own `seq`.
    Put(Vec<u8>),
    Remove(Vec<u8>),
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Put(k) => write!(f, "put {}", String::from_utf8_lossy(k)),
            Op::Remove(k) => write!(f, "remove {}", String::from_utf8_lossy(k)),
        }
    }
}

impl Op {
    fn key(&self) -> &[u8] {
        match self {
            Op::Put(k) | Op::Remove(k) => k,
        }
    }
}

/// The value of put `(writer, seq)`: the writer and seq, then a pattern of 0..400 bytes, so a
/// value found after a crash names the put that wrote it.
fn value(writer: u64, seq: u64) -> Vec<u8> {
    let len = (seq * 37 + writer * 13) as usize % 400;
    let mut v = Vec::with_capacity(16 + len);
    v.extend_from_slice(&writer.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&pattern(writer, seq, len));
    v
}

/// Which put wrote `v`, as `(writer, seq)`, if it is one of [`value`]'s.
fn put_of(v: &[u8]) -> Option<(u64, u64)> {
    let writer = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    (value(writer, seq) == v).then_some((writer, seq))
}

fn describe(v: Option<&[u8]>) -> String {
    match v {
        None => "absent".into(),
        Some(v) => match put_of(v) {
            Some((w, s)) => format!("the value of put ({w}, {s})"),
            None => format!("{} bytes nobody wrote", v.len()),
        },
    }
}

/// Operation `seq` of writer `writer` (a run's sequence numbers continue across kills).
///
/// Round `seq / SLOTS`, slot `seq % SLOTS`; slot `j` is `j % PHASES` phases ahead, so removes
/// and new keys are spread over every round. One generation of a slot's key:
/// phases 0..=4 put it (five puts, each a round of the other keys apart: many segments),
/// phase 5 removes it; then for one generation in four phase 6 puts it again and phase 7
/// either removes it again or overwrites it (it stays), and otherwise phase 6 puts a
/// short-lived key and phase 7 removes that.
fn op(writer: u64, seq: u64) -> Op {
    let slot = seq % SLOTS;
    let t = seq / SLOTS + slot % PHASES;
    let (generation, phase) = (t / PHASES, t % PHASES);
    let key = if slot.is_multiple_of(2) {
        format!("w{writer}-s{slot}-g{generation}")
    } else {
        format!("w{writer}-s{slot}-c{}", generation % CYCLE)
    }
    .into_bytes();
    let again = (generation + slot).is_multiple_of(4);
    let temporary = || format!("w{writer}-s{slot}-t{generation}").into_bytes();
    match phase {
        0..=4 => Op::Put(key),
        5 => Op::Remove(key),
        6 if again => Op::Put(key),
        6 => Op::Put(temporary()),
        7 if again && (generation / 4 + slot).is_multiple_of(2) => Op::Remove(key),
        7 if again => Op::Put(key),
        _ => Op::Remove(temporary()),
    }
}

/// Whether the key of remove `seq` is live just before it: the put before it in its
/// generation happened (slot `j`'s first generation starts at phase `j % PHASES`). Cycling keys
/// are removed in every generation before they come back, so nothing older can hold them.
fn removes_live_key(seq: u64) -> bool {
    let slot = seq % SLOTS;
    let t = seq / SLOTS + slot % PHASES;
    let (generation, phase) = (t / PHASES, t % PHASES);
    generation > 0 || slot % PHASES < phase
}

/// One writer's keys: the seq of the put that holds each live key.
#[derive(Debug, Default, Clone)]
struct State(HashMap<Vec<u8>, u64>);

impl State {
    fn apply(&mut self, seq: u64, op: &Op) {
        match op {
            Op::Put(k) => {
                self.0.insert(k.clone(), seq);
            }
            Op::Remove(k) => {
                self.0.remove(k);
            }
        }
    }

    fn expected(&self, writer: u64, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key).map(|&seq| value(writer, seq))
    }
}

/// The writer a key belongs to.
fn writer_of(key: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(key).ok()?;
    text.strip_prefix('w')?.split_once('-')?.0.parse().ok()
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

/// What the child's start string carries: where each writer starts, the run, and the file
/// the child writes its statistics to.
struct Start {
    first: Vec<u64>,
    run: u64,
    stats_file: PathBuf,
}

impl Start {
    fn encode(&self) -> String {
        let first: Vec<String> = self.first.iter().map(u64::to_string).collect();
        format!(
            "{};{};{}",
            first.join(","),
            self.run,
            self.stats_file.display()
        )
    }

    fn decode(s: &str) -> Self {
        let mut parts = s.splitn(3, ';');
        let first = parts.next().unwrap();
        let run = parts.next().unwrap().parse().unwrap();
        let stats_file = PathBuf::from(parts.next().unwrap());
        Self {
            first: first.split(',').map(|s| s.parse().unwrap()).collect(),
            run,
            stats_file,
        }
    }
}

/// Child statistics: `tombstones_dropped segments_reclaimed index_resizes`.
fn write_stats(log: &Log, file: &Path) {
    let stats = log.stats();
    let text = format!(
        "{} {} {}\n",
        stats.compaction.tombstones_dropped,
        stats.compaction.segments_reclaimed,
        stats.index_resizes
    );
    let tmp = file.with_extension("tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, file);
    }
}

fn read_stats(file: &Path) -> [u64; 3] {
    let Ok(text) = std::fs::read_to_string(file) else {
        return [0; 3];
    };
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0));
    [(); 3].map(|()| fields.next().unwrap_or(0))
}

/// Runs operation `seq` of `writer` on `log` and checks what the log says back at once (the
/// writer owns the key, so nobody else changes it): a remove finds the key live, and the key
/// then reads what the operation left. Returns 0, or a code naming what was wrong.
fn run_op(log: &Log, writer: u64, seq: u64) -> u64 {
    match op(writer, seq) {
        Op::Put(k) => {
            let v = value(writer, seq);
            log.put(&k, &v).unwrap();
            if log.get(&k).as_deref() != Some(&v[..]) {
                return 1;
            }
        }
        Op::Remove(k) => {
            if log.remove(&k).unwrap() != removes_live_key(seq) {
                return 2;
            }
            if log.get(&k).is_some() {
                return 3;
            }
        }
    }
    0
}

#[test]
fn resurrection_child() {
    let Some(child) = crash::child() else {
        return; // Only runs as the parent's child process.
    };
    let start = Start::decode(&child.start);
    let log = Arc::new(open_within(&child.dir, options(), "child"));
    let compactor = {
        let log = Arc::clone(&log);
        let mut rng = SplitMix64::new(SEED ^ start.run.wrapping_mul(0x9E37_79B9));
        std::thread::spawn(move || {
            // Bounded: the parent kills the child long before this ends.
            for _ in 0..1_000_000 {
                std::thread::sleep(Duration::from_micros(rng.range(0, 3_000)));
                log.compact().unwrap();
            }
        })
    };
    let reporter = {
        let log = Arc::clone(&log);
        let file = start.stats_file.clone();
        std::thread::spawn(move || {
            for _ in 0..1_000_000 {
                write_stats(&log, &file);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let log = Arc::clone(&log);
            let first = start.first[writer as usize];
            std::thread::spawn(move || {
                for seq in first..first + 10_000_000 {
                    let wrong = run_op(&log, writer, seq);
                    crash::ack(&[writer, seq, wrong]);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    compactor.join().unwrap();
    reporter.join().unwrap();
}

/// The parent's view of one writer: its last acknowledged operation and the state after it.
#[derive(Debug, Default, Clone)]
struct Writer {
    acked: Option<u64>,
    state: State,
}

impl Writer {
    fn next(&self) -> u64 {
        self.acked.map_or(0, |s| s + 1)
    }

    fn ack(&mut self, writer: u64, seq: u64) {
        assert_eq!(seq, self.next(), "writer {writer}: acks out of order");
        self.state.apply(seq, &op(writer, seq));
        self.acked = Some(seq);
    }
}

/// Checks a reopened log against the writers: every key holds the state after its writer's
/// last acknowledged op, except the key of the op in flight (if `in_flight`), which may also
/// hold that op's effect. Returns, per writer, whether the in-flight op took effect. `touched`
/// are keys to read one by one besides the listed ones (recently removed keys).
fn check(
    log: &Log,
    writers: &[Writer],
    in_flight: bool,
    touched: &[Vec<u8>],
    context: &str,
) -> Vec<bool> {
    let listed: HashMap<Vec<u8>, Vec<u8>> = log.iter().collect();
    assert_eq!(
        log.len(),
        listed.len(),
        "{context}: len() disagrees with iter()"
    );
    let mut took_effect = vec![false; writers.len()];
    for (key, found) in &listed {
        let name = String::from_utf8_lossy(key);
        let writer = writer_of(key).unwrap_or_else(|| panic!("{context}: key {name} nobody wrote"));
        let w = &writers[writer as usize];
        let expected = w.state.expected(writer, key);
        if expected.as_deref() == Some(found.as_slice()) {
            continue;
        }
        let next = w.next();
        let pending = op(writer, next);
        if in_flight && pending == Op::Put(key.clone()) && *found == value(writer, next) {
            took_effect[writer as usize] = true;
            continue;
        }
        panic!(
            "{context} (seed {SEED:#x}): key {name} of writer {writer} holds {}, expected {} \
             (last acknowledged op {:?}, in flight {pending:?})",
            describe(Some(found)),
            describe(expected.as_deref()),
            w.acked,
        );
    }
    for (writer, w) in writers.iter().enumerate() {
        let writer = writer as u64;
        // Every live key is listed, unless the in-flight op removed it.
        let pending = op(writer, w.next());
        for (key, &seq) in &w.state.0 {
            if listed.contains_key(key) {
                continue;
            }
            if in_flight && pending == Op::Remove(key.clone()) {
                took_effect[writer as usize] = true;
                continue;
            }
            panic!(
                "{context} (seed {SEED:#x}): key {} of writer {writer} is absent, expected the \
                 value of put ({writer}, {seq}) (last acknowledged op {:?})",
                String::from_utf8_lossy(key),
                w.acked,
            );
        }
    }
    // Read keys one by one too: the index must agree with the listing.
    for key in touched {
        let found = log.get(key);
        let listed_value = listed.get(key);
        assert_eq!(
            found.as_ref(),
            listed_value,
            "{context} (seed {SEED:#x}): get({}) is {} but iter() lists {}",
            String::from_utf8_lossy(key),
            describe(found.as_deref()),
            describe(listed_value.map(Vec::as_slice)),
        );
    }
    took_effect
}

/// The keys of `writer`'s ops `from..=to`, without repeats.
fn keys_of_ops(writer: u64, from: u64, to: u64, into: &mut Vec<Vec<u8>>) {
    let mut seen = std::collections::HashSet::new();
    for seq in from..=to {
        let op = op(writer, seq);
        if seen.insert(op.key().to_vec()) {
            into.push(op.key().to_vec());
        }
    }
}

#[test]
fn sigkill_during_tombstone_dropping_resurrects_no_removed_key() {
    let kills = kills();
    let mut crasher = Crasher::new("resurrection_child", SEED, (30, 300));
    let stats_dir = tempfile::tempdir().unwrap();
    let mut writers = vec![Writer::default(); WRITERS as usize];
    // Over all children: tombstones dropped, segments reclaimed, index resizes.
    let mut child_totals = [0u64; 3];
    let mut runs_with_drops = 0;
    let started = Instant::now();
    let mut checking = Duration::ZERO;
    for run in 0..kills {
        let from: Vec<u64> = writers.iter().map(Writer::next).collect();
        let stats_file = stats_dir.path().join(format!("run-{run}"));
        let start = Start {
            first: from.clone(),
            run,
            stats_file: stats_file.clone(),
        };
        for fields in crasher.run_and_kill(&start.encode()) {
            let [writer, seq, wrong] = fields[..] else {
                continue; // Not one of this child's acks.
            };
            assert_eq!(
                wrong,
                0,
                "run {run} (seed {SEED:#x}): writer {writer}'s op {seq} ({:?}) read back wrong \
                 in the child (code {wrong}: 1 a put's value, 2 a remove's result, 3 a removed \
                 key still there)",
                op(writer, seq)
            );
            writers[writer as usize].ack(writer, seq);
        }
        let stats = read_stats(&stats_file);
        for (total, s) in child_totals.iter_mut().zip(stats) {
            *total += s;
        }
        if stats[0] > 0 {
            runs_with_drops += 1;
        }

        let context = format!("run {run}");
        let check_started = Instant::now();
        let log = open_within(crasher.dir(), options().auto_compact(false), &context);
        assert!(
            log.recovery_report().corrupt.is_empty(),
            "{context}: {:?}",
            log.recovery_report()
        );
        let mut touched = Vec::new();
        for (writer, w) in writers.iter().enumerate() {
            keys_of_ops(writer as u64, from[writer], w.next(), &mut touched);
        }
        let took_effect = check(&log, &writers, true, &touched, &context);
        drop(log);
        // An in-flight op that took effect counts as done: the next run continues after it.
        for (writer, took) in took_effect.into_iter().enumerate() {
            if took {
                let next = writers[writer].next();
                writers[writer].ack(writer as u64, next);
            }
        }
        checking += check_started.elapsed();
    }
    let kill_loop = started.elapsed();
    let progress: Vec<Option<u64>> = writers.iter().map(|w| w.acked).collect();
    assert!(
        writers
            .iter()
            .all(|w| w.acked.is_some_and(|s| s > 2 * SLOTS * PHASES)),
        "too little progress: {progress:?}"
    );

    // The tail, in-process and deterministic: each writer's next generations (hundreds more
    // removes) with automatic compaction, then passes until tombstones are dropped.
    let tail_started = Instant::now();
    let log = open_within(crasher.dir(), options(), "tail");
    let segments_after_kills = log.stats().segments;
    let tail_ops = 12 * SLOTS * PHASES;
    let from: Vec<u64> = writers.iter().map(Writer::next).collect();
    for i in 0..tail_ops {
        for (writer, w) in writers.iter_mut().enumerate() {
            let (writer, seq) = (writer as u64, w.next());
            let wrong = run_op(&log, writer, seq);
            assert_eq!(wrong, 0, "tail: writer {writer}'s op {seq} read back wrong");
            w.ack(writer, seq);
        }
        if i % 256 == 0 {
            log.compact().unwrap();
        }
    }
    for _ in 0..200 {
        log.compact().unwrap();
        if log.stats().compaction.tombstones_dropped > 0 {
            break;
        }
    }
    // A few more passes after the first drops: a pass that dropped may leave more to sweep.
    for _ in 0..16 {
        log.compact().unwrap();
    }
    let tail_stats = log.stats();
    let tail_time = tail_started.elapsed();
    let mut touched = Vec::new();
    for (writer, w) in writers.iter().enumerate() {
        keys_of_ops(writer as u64, from[writer], w.next() - 1, &mut touched);
    }
    check(&log, &writers, false, &touched, "tail");
    log.close().unwrap();
    assert!(
        tail_stats.compaction.tombstones_dropped > 0,
        "the tail's passes dropped no tombstone: {tail_stats:?}"
    );

    // Every key any op ever touched, read one by one after a last reopen.
    let log = open_within(crasher.dir(), options().auto_compact(false), "final reopen");
    let mut every_key = Vec::new();
    for (writer, w) in writers.iter().enumerate() {
        keys_of_ops(writer as u64, 0, w.next() - 1, &mut every_key);
    }
    check(&log, &writers, false, &every_key, "final reopen");
    for key in &every_key {
        let writer = writer_of(key).unwrap();
        assert_eq!(
            log.get(key),
            writers[writer as usize].state.expected(writer, key),
            "final reopen (seed {SEED:#x}): key {}",
            String::from_utf8_lossy(key)
        );
    }
    let live = log.len();
    log.close().unwrap();

    // Most runs are long enough for a pass to drop tombstones; a handful of kills may not be.
    if kills >= 20 {
        assert!(
            child_totals[0] > 0,
            "no child dropped a tombstone before its kill: {child_totals:?}"
        );
    }
    eprintln!(
        "{kills} kills; last acked {progress:?}; children: {} tombstones dropped ({runs_with_drops} \
         of {kills} runs), {} segments reclaimed, {} index resizes; tail: {} tombstones dropped, \
         {} segments reclaimed; {} keys checked at the end, {live} live; {segments_after_kills} segments after the kills; kill loop {kill_loop:.1?} \
         (reopen and check {checking:.1?}), tail {tail_time:.1?}, total {:.1?}",
        child_totals[0],
        child_totals[1],
        child_totals[2],
        tail_stats.compaction.tombstones_dropped,
        tail_stats.compaction.segments_reclaimed,
        every_key.len(),
        started.elapsed(),
    );
}
