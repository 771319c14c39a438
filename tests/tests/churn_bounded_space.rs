//! Key churn with automatic compaction: a rolling window of live keys (new keys keep arriving,
//! the oldest are removed, random live ones are overwritten), as a session store or a queue
//! does. At every checkpoint the segment files stay within twice the live keys' record bytes
//! plus two segments, and the index (settled: no resize in flight) within twice the memory the
//! live keys need (a table of them at the default load factor); every key reads its value
//! during the run and after a reopen, and no removed key comes back.
//!
//! Size: `SEGLOG_CHURN_OPS` operations (default 2,000,000, a few seconds) over a window of
//! ops / 100 live keys; issue 15's full size is `SEGLOG_CHURN_OPS=10000000` (100k live keys),
//! whose summary line docs/benchmarks.md quotes.

use std::collections::VecDeque;
use std::time::Instant;

use seglog::{Log, Options};
use seglog_tests::{SplitMix64, pattern, segment_file_bytes};

fn ops() -> u64 {
    std::env::var("SEGLOG_CHURN_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000)
}

fn segment_bytes(window: u64) -> u64 {
    // The power of two nearest an eighth of the live bytes (about 195 B a key), at least
    // 64 KiB: the "+ 2 segments" slack is about a quarter of the live bytes, not the default
    // 64 MiB segments that would dwarf them.
    let eighth = window * 195 / 8;
    let below = (eighth / 2).next_power_of_two();
    let nearest = if eighth - below < below * 2 - eighth {
        below
    } else {
        below * 2
    };
    nearest.clamp(64 << 10, 64 << 20)
}

fn key(id: u64) -> [u8; 16] {
    let mut key = *b"session-00000000";
    key[8..].copy_from_slice(&id.to_be_bytes());
    key
}

/// A record's length in the log: 40-byte header, key and value, padded to 8.
fn record_bytes(value_len: usize) -> u64 {
    (40 + 16 + value_len as u64).next_multiple_of(8)
}

fn value(id: u64, generation: u64) -> Vec<u8> {
    let len = 16 + ((id * 7919 + generation * 104_729) % 241) as usize;
    pattern(id, generation, len)
}

#[test]
fn churn_keeps_disk_and_index_bounded_and_loses_nothing() {
    let ops = ops();
    let window = (ops / 100).max(1_000);
    let seg = segment_bytes(window);
    let options = Options::default().segment_bytes(seg);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path(), options.clone()).unwrap();

    // The live window, oldest first: (id, generation, value length).
    let mut live: VecDeque<(u64, u64, usize)> = VecDeque::new();
    let mut live_bytes = 0u64;
    let mut next_id = 0u64;
    let mut rng = SplitMix64::new(15);
    let mut done = 0u64;
    let checkpoint_every = (ops / 50).max(1_000);
    let (mut worst_disk, mut worst_index, mut worst_transient) = (0f64, 0f64, 0f64);
    let started = Instant::now();
    while done < ops {
        // One new key; the oldest removed once the window is full; one live key overwritten.
        let id = next_id;
        next_id += 1;
        let v = value(id, 0);
        log.put(&key(id), &v).unwrap();
        live_bytes += record_bytes(v.len());
        live.push_back((id, 0, v.len()));
        done += 1;
        if live.len() as u64 > window {
            let (old, _, len) = live.pop_front().unwrap();
            assert!(log.remove(&key(old)).unwrap(), "key {old} was live");
            live_bytes -= record_bytes(len);
            done += 1;
        }
        let pick = rng.range(0, live.len() as u64 - 1) as usize;
        let (id, generation, len) = live[pick];
        let v = value(id, generation + 1);
        log.put(&key(id), &v).unwrap();
        live_bytes = live_bytes - record_bytes(len) + record_bytes(v.len());
        live[pick] = (id, generation + 1, v.len());
        done += 1;

        if done / checkpoint_every != (done - 3) / checkpoint_every && live.len() as u64 == window {
            let disk = segment_file_bytes(dir.path());
            let disk_bound = 2 * live_bytes + 2 * seg;
            worst_disk = worst_disk.max(disk as f64 / disk_bound as f64);
            assert!(
                disk <= disk_bound,
                "after {done} ops: {disk} bytes of segments > 2 × {live_bytes} live + 2 segments \
                 ({:?})",
                log.stats()
            );
            // What the live keys need: a table of them at the default load factor, 8 B a slot.
            let needed = (live.len() as f64 / 0.75 * 8.0) as u64;
            let transient = log.stats().index_bytes;
            worst_transient = worst_transient.max(transient as f64 / needed as f64);
            log.__settle_index();
            let stats = log.stats();
            worst_index = worst_index.max(stats.index_bytes as f64 / needed as f64);
            assert!(
                stats.index_bytes <= 2 * needed,
                "after {done} ops: index {} bytes > 2 × {needed} for {} live keys ({stats:?})",
                stats.index_bytes,
                live.len()
            );
            assert_eq!(stats.keys, live.len() as u64, "after {done} ops");
            for &(id, generation, _) in live.iter().step_by(97) {
                assert_eq!(log.get(&key(id)), Some(value(id, generation)), "key {id}");
            }
            for id in (0..live[0].0).step_by(101) {
                assert_eq!(log.get(&key(id)), None, "removed key {id} came back");
            }
        }
    }
    let elapsed = started.elapsed();
    let stats = log.stats();
    log.close().unwrap();

    let reopen_started = Instant::now();
    let log = Log::open_with(dir.path(), options).unwrap();
    let reopen = reopen_started.elapsed();
    assert!(log.recovery_report().corrupt.is_empty());
    assert_eq!(log.len(), live.len());
    for &(id, generation, _) in &live {
        assert_eq!(
            log.get(&key(id)),
            Some(value(id, generation)),
            "key {id} after reopen"
        );
    }
    for id in 0..live[0].0 {
        assert_eq!(
            log.get(&key(id)),
            None,
            "removed key {id} came back after reopen"
        );
    }
    eprintln!(
        "churn: {ops} ops over {window} live keys in {:.1} s ({:.0} ops/s), {seg} B segments; \
         worst disk / (2 live + 2 segments) {worst_disk:.2}, worst settled index / needed \
         {worst_index:.2} (during a resize {worst_transient:.2}); {} tombstones dropped, {} \
         segments reclaimed, {} records relocated; reopen {:.2} s",
        elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64(),
        stats.compaction.tombstones_dropped,
        stats.compaction.segments_reclaimed,
        stats.compaction.records_relocated,
        reopen.as_secs_f64(),
    );
}
