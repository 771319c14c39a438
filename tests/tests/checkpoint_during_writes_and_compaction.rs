//! Online checkpoints while 4 writers put and remove and automatic compaction retires and
//! recycles segments: every checkpoint opens and holds every write acknowledged before its
//! call, byte for byte; each write racing with it is whole or absent; no other key exists.
//!
//! Checkpoints are taken every few milliseconds on 16 KiB segments, so each one hard-links
//! sealed segments that compaction retires (and whose files it would recycle) right after.
//! They are checked only at the end, after the source wrote on for a while: a checkpoint
//! whose linked files the source rewrote in place would fail then. The source is then checked
//! too, after a reopen. `SEGLOG_CHECKPOINTS=N` takes N checkpoints (default 40, a few seconds).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use seglog::{Log, Options};
use seglog_tests::{SplitMix64, pattern};

const WRITERS: u64 = 4;
/// Keys per writer (a prime, so every key sees puts and removes).
const KEYS: u64 = 61;

fn options() -> Options {
    Options::default()
        .segment_bytes(16 * 1024)
        .compact_dead_bytes(32 * 1024)
}

fn key(writer: u64, seq: u64) -> Vec<u8> {
    format!("w{writer}-k{}", seq % KEYS).into_bytes()
}

/// Every fourth operation on a key removes it; the others put `value(writer, seq)`.
fn is_remove(seq: u64) -> bool {
    (seq / KEYS) % 4 == 3
}

/// Self-describing: writer and sequence number, then a pattern.
fn value(writer: u64, seq: u64) -> Vec<u8> {
    let len = 16 + (seq * 37 + writer * 11) as usize % 700;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&writer.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&pattern(writer, seq, len - 16));
    v
}

/// The state of the key of operation `seq` right after it.
fn state_after(writer: u64, seq: u64) -> Option<Vec<u8>> {
    (!is_remove(seq)).then(|| value(writer, seq))
}

/// The states key `j` of `writer` may be in within a checkpoint whose call began after the
/// writer's operations below `acked` returned, and returned before any at or above `started`
/// began: the state after the last operation below `acked` (absent if none), or after any
/// operation in between.
fn allowed(writer: u64, j: u64, acked: u64, started: u64) -> Vec<Option<Vec<u8>>> {
    let mut states = Vec::new();
    let ops_on_key = (j..started).step_by(KEYS as usize);
    let last_before = ops_on_key.clone().filter(|&s| s < acked).last();
    states.push(last_before.and_then(|s| state_after(writer, s)));
    for seq in ops_on_key.filter(|&s| s >= acked) {
        states.push(state_after(writer, seq));
    }
    states
}

struct Taken {
    dir: PathBuf,
    acked: Vec<u64>,
    started: Vec<u64>,
}

fn check_log(log: &Log, what: &str, acked: &[u64], started: &[u64]) {
    let report = log.recovery_report();
    assert!(report.corrupt.is_empty(), "{what}: damage: {report:?}");
    let mut expected_live = 0;
    for writer in 0..WRITERS {
        for j in 0..KEYS {
            let k = key(writer, j);
            let found = log.get(&k);
            let states = allowed(writer, j, acked[writer as usize], started[writer as usize]);
            assert!(
                states.contains(&found),
                "{what}: key {} holds {:?} (acked below {}, started below {}), allowed: {:?}",
                String::from_utf8_lossy(&k),
                found.as_ref().map(|v| (v.len(), &v[..16])),
                acked[writer as usize],
                started[writer as usize],
                states
                    .iter()
                    .map(|s| s.as_ref().map(|v| (v.len(), v[8])))
                    .collect::<Vec<_>>()
            );
            expected_live += usize::from(found.is_some());
        }
    }
    // No key nobody wrote, and `len` agrees with what `get` found.
    assert_eq!(log.iter().count(), expected_live, "{what}: extra keys");
    assert_eq!(log.len(), expected_live, "{what}: len");
}

#[test]
fn every_checkpoint_holds_every_write_acknowledged_before_it() {
    let checkpoints: usize = std::env::var("SEGLOG_CHECKPOINTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40);
    let source = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open_with(source.path(), options()).unwrap());
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let started: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (log, acked, started, stop) = (
                Arc::clone(&log),
                Arc::clone(&acked),
                Arc::clone(&started),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let w = writer as usize;
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    started[w].store(seq + 1, Ordering::SeqCst);
                    if is_remove(seq) {
                        log.remove(&key(writer, seq)).unwrap();
                    } else {
                        log.put(&key(writer, seq), &value(writer, seq)).unwrap();
                    }
                    acked[w].store(seq + 1, Ordering::SeqCst);
                    seq += 1;
                }
                seq
            })
        })
        .collect();

    let mut rng = SplitMix64::new(0xC4EC);
    let mut taken = Vec::new();
    let mut shared_files = 0;
    for i in 0..checkpoints {
        std::thread::sleep(Duration::from_millis(rng.range(1, 6)));
        let dir = backups.path().join(format!("checkpoint-{i}"));
        let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        log.checkpoint(&dir).unwrap();
        let after: Vec<u64> = started.iter().map(|s| s.load(Ordering::SeqCst)).collect();
        shared_files += seglog_tests::files_with_extension(&dir, "seg")
            .iter()
            .filter(|p| {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(p).is_ok_and(|m| m.nlink() > 1)
            })
            .count();
        taken.push(Taken {
            dir,
            acked: before,
            started: after,
        });
    }
    // Let the source write on, compact and recycle past every checkpoint's files.
    let reclaimed_at_last_checkpoint = log.stats().compaction.segments_reclaimed;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while log.stats().compaction.segments_reclaimed < reclaimed_at_last_checkpoint + 20
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let ops: Vec<u64> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    let stats = log.stats();
    assert!(
        stats.compaction.segments_reclaimed > reclaimed_at_last_checkpoint,
        "compaction must run during and after the checkpoints: {stats:?}"
    );
    assert!(shared_files > 0, "no checkpoint hard-linked a segment");

    for (i, t) in taken.iter().enumerate() {
        let copy = Log::open_with(&t.dir, options()).unwrap();
        check_log(&copy, &format!("checkpoint {i}"), &t.acked, &t.started);
        drop(copy);
    }
    Arc::into_inner(log).unwrap().close().unwrap();
    let reopened = Log::open_with(source.path(), options()).unwrap();
    check_log(&reopened, "the source after the checkpoints", &ops, &ops);
    eprintln!(
        "{checkpoints} checkpoints over {} ops; {shared_files} segment files shared; {} \
         segments reclaimed",
        ops.iter().sum::<u64>(),
        stats.compaction.segments_reclaimed
    );
}
