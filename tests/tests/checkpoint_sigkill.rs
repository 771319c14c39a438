//! SIGKILL during checkpoints: a child process runs 2 writers (overwriting their keys, so
//! automatic compaction runs) and takes checkpoints back to back until it is killed at a random
//! moment. After each kill:
//! - the source reopens with every acknowledged put (nothing a checkpoint did cost it a byte);
//! - every checkpoint under its final name is complete: it opens, undamaged, and holds every
//!   put acknowledged before its call began (exact bytes, or a later put of the key);
//! - a checkpoint the kill interrupted left no directory under its final name, only its build
//!   directory `.<name>.seglog-checkpoint` (which no open takes for the checkpoint), and a new
//!   checkpoint to the same name takes the leftover over and succeeds.
//!
//! `SEGLOG_CHECKPOINT_KILLS=N` runs N kills (default 12, a few seconds).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use seglog::{Log, Options};
use seglog_tests::crash::{self, Crasher};
use seglog_tests::pattern;

const WRITERS: u64 = 2;
const KEYS_PER_WRITER: u64 = 200;
/// Tells a writer's ack from a checkpoint's.
const PUT: u64 = 0;
const CHECKPOINT_BEGINS: u64 = 1;
const CHECKPOINT_DONE: u64 = 2;

fn options() -> Options {
    Options::default()
        .segment_bytes(64 * 1024)
        .compact_dead_bytes(128 * 1024)
}

fn value(writer: u64, seq: u64) -> Vec<u8> {
    let len = 16 + (seq * 37 + writer * 11) as usize % 2000;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&writer.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&pattern(writer, seq, len - 16));
    v
}

fn key(writer: u64, seq: u64) -> Vec<u8> {
    format!("w{writer}-k{}", seq % KEYS_PER_WRITER).into_bytes()
}

/// The newest put of each key: (writer, seq).
type Latest = HashMap<Vec<u8>, (u64, u64)>;

fn checkpoint_dir(backups: &Path, run: u64, i: u64) -> PathBuf {
    backups.join(format!("checkpoint-{run}-{i}"))
}

/// The child: writers put until killed, acking `0 writer seq`; a checkpointer takes
/// checkpoints back to back, acking `1 i acked0 acked1` before each call (the puts each writer
/// had acknowledged) and `2 i` after it returned.
#[test]
fn checkpoint_child() {
    let Some(child) = crash::child() else {
        return;
    };
    let (run, backups) = child.start.split_once(' ').unwrap();
    let run: u64 = run.parse().unwrap();
    let backups = PathBuf::from(backups);
    let log = Arc::new(Log::open_with(&child.dir, options()).unwrap());
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let start_seq = run * 1_000_000;
    for writer in 0..WRITERS {
        let (log, acked) = (Arc::clone(&log), Arc::clone(&acked));
        std::thread::spawn(move || {
            for seq in start_seq..start_seq + 1_000_000 {
                log.put(&key(writer, seq), &value(writer, seq)).unwrap();
                acked[writer as usize].store(seq + 1, Ordering::SeqCst);
                crash::ack(&[PUT, writer, seq]);
            }
        });
    }
    for i in 0.. {
        let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        crash::ack(&[CHECKPOINT_BEGINS, i, before[0], before[1]]);
        log.checkpoint(checkpoint_dir(&backups, run, i)).unwrap();
        crash::ack(&[CHECKPOINT_DONE, i]);
    }
}

/// Checks that `log` holds, for every key, a put at least as new as `latest[key]` (exact bytes
/// of whichever put it holds), and only keys the writers write.
fn check(log: &Log, what: &str, latest: &Latest) {
    let report = log.recovery_report();
    assert!(report.corrupt.is_empty(), "{what}: damage: {report:?}");
    for (k, &(writer, seq)) in latest {
        let found = log
            .get(k)
            .unwrap_or_else(|| panic!("{what}: acknowledged key {k:?} lost"));
        let found_seq = u64::from_le_bytes(found[8..16].try_into().unwrap());
        assert!(
            found_seq >= seq,
            "{what}: {k:?} went back from put {seq} to {found_seq}"
        );
        assert_eq!(found, value(writer, found_seq), "{what}: {k:?}");
    }
    for (k, v) in log.iter() {
        let writer = u64::from_le_bytes(v[..8].try_into().unwrap());
        let seq = u64::from_le_bytes(v[8..16].try_into().unwrap());
        assert_eq!(k, key(writer, seq), "{what}: a value under the wrong key");
        assert_eq!(v, value(writer, seq), "{what}: bytes nobody wrote");
    }
}

#[test]
fn sigkill_during_checkpoints_leaves_source_intact_and_no_partial_checkpoint() {
    let kills = std::env::var("SEGLOG_CHECKPOINT_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(12);
    let backups = tempfile::tempdir().unwrap();
    let mut crasher = Crasher::new("checkpoint_child", 0xC4EC_C0DE, (30, 250));
    // The newest acknowledged put of each key, across runs.
    let mut acked_latest: Latest = HashMap::new();
    let (mut complete, mut interrupted, mut partial_builds) = (0, 0, 0);
    for run in 0..kills {
        let lines = crasher.run_and_kill(&format!("{run} {}", backups.path().display()));
        // What each checkpoint must hold: the newest put of each key acked before its call.
        let mut begun: Vec<(u64, Latest)> = Vec::new();
        let mut per_writer_seq = [Vec::new(), Vec::new()];
        for fields in &lines {
            match fields[..] {
                [PUT, writer, seq] => {
                    acked_latest.insert(key(writer, seq), (writer, seq));
                    per_writer_seq[writer as usize].push(seq);
                }
                [CHECKPOINT_BEGINS, i, acked0, acked1] => {
                    let mut must_hold = HashMap::new();
                    for (writer, acked) in [(0, acked0), (1, acked1)] {
                        for &seq in per_writer_seq[writer as usize]
                            .iter()
                            .filter(|&&s| s < acked)
                        {
                            must_hold.insert(key(writer, seq), (writer, seq));
                        }
                    }
                    begun.push((i, must_hold));
                }
                _ => {}
            }
        }

        let source = Log::open_with(crasher.dir(), options()).unwrap();
        check(&source, &format!("run {run}: the source"), &acked_latest);

        for (i, must_hold) in &begun {
            let dest = checkpoint_dir(backups.path(), run, *i);
            let build = backups
                .path()
                .join(format!(".checkpoint-{run}-{i}.seglog-checkpoint"));
            if dest.exists() {
                complete += 1;
                assert!(
                    !build.exists(),
                    "run {run}: {} left behind",
                    build.display()
                );
                let copy = Log::open_with(&dest, options()).unwrap();
                check(&copy, &format!("run {run}: checkpoint {i}"), must_hold);
            } else {
                // Interrupted: only the build directory (if the kill came after it was made).
                interrupted += 1;
                partial_builds += usize::from(build.exists());
                source.checkpoint(&dest).unwrap();
                assert!(
                    !build.exists(),
                    "run {run}: the leftover was not taken over"
                );
                let copy = Log::open_with(&dest, options()).unwrap();
                check(
                    &copy,
                    &format!("run {run}: checkpoint {i} retaken"),
                    &acked_latest,
                );
            }
        }
        // Nothing else was left in the backup directory: every name is one of the above.
        for entry in std::fs::read_dir(backups.path()).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                name.starts_with("checkpoint-"),
                "run {run}: stray {name} in the backup directory"
            );
        }
        drop(source);
        std::fs::remove_dir_all(backups.path()).unwrap();
        std::fs::create_dir(backups.path()).unwrap();
    }
    eprintln!(
        "{kills} kills: {complete} complete checkpoints checked, {interrupted} interrupted and \
         retaken ({partial_builds} had left a partial build)"
    );
    assert!(partial_builds > 0, "no kill left a partial build");
    assert!(interrupted > 0, "no kill landed in a checkpoint");
    assert!(complete > 0, "no checkpoint completed");
}
