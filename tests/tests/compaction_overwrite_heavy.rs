//! An overwrite-heavy workload (1M puts over 10k keys, mixed sizes, 64 KiB segments) with
//! compaction running: disk usage stays within 2× live bytes plus two segments, and every key
//! reads its latest value during, after, and after reopen.

use seglog::{Log, Options};
use seglog_tests::{SplitMix64, pattern, segment_file_bytes};

const SEGMENT_BYTES: u64 = 64 * 1024;
const KEYS: u64 = 10_000;
const PUTS: u64 = 1_000_000;

fn options() -> Options {
    Options::default().segment_bytes(SEGMENT_BYTES)
}

fn value(key: u64, seq: u64) -> Vec<u8> {
    // Mixed sizes, 1 B to ~2 KiB, self-checking.
    pattern(key, seq, 1 + ((key * 7919 + seq * 104_729) % 2048) as usize)
}

#[test]
fn disk_usage_stays_bounded_and_every_key_reads_its_latest_value() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path(), options()).unwrap();
    let mut latest = vec![u64::MAX; KEYS as usize];
    let mut rng = SplitMix64::new(42);
    let mut worst_ratio = 0.0f64;
    let mut checks = 0;
    for seq in 0..PUTS {
        let key = rng.range(0, KEYS - 1);
        log.put(&key.to_le_bytes(), &value(key, seq)).unwrap();
        latest[key as usize] = seq;
        if seq % 20_000 == 19_999 {
            let stats = log.stats();
            let disk = segment_file_bytes(dir.path());
            let bound = 2 * stats.live_bytes + 2 * SEGMENT_BYTES;
            worst_ratio = worst_ratio.max(disk as f64 / bound as f64);
            assert!(
                disk <= bound,
                "after {} puts: {disk} bytes of segments > 2 × {} live + 2 segments ({stats:?})",
                seq + 1,
                stats.live_bytes
            );
            // Every key reads its latest value during the run.
            for k in (0..KEYS).step_by(97) {
                let want = (latest[k as usize] != u64::MAX).then(|| value(k, latest[k as usize]));
                assert_eq!(log.get(&k.to_le_bytes()), want, "key {k} during the run");
            }
            checks += 1;
        }
    }
    let stats = log.stats();
    assert!(stats.compaction.segments_reclaimed > 100, "{stats:?}");
    let check_all = |log: &Log, when: &str| {
        for k in 0..KEYS {
            let want = (latest[k as usize] != u64::MAX).then(|| value(k, latest[k as usize]));
            assert_eq!(log.get(&k.to_le_bytes()), want, "key {k} {when}");
        }
        assert_eq!(
            log.len() as u64,
            latest.iter().filter(|&&s| s != u64::MAX).count() as u64
        );
    };
    check_all(&log, "after the run");
    drop(log);
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert!(log.recovery_report().corrupt.is_empty());
    check_all(&log, "after reopen");
    eprintln!(
        "{checks} checks; worst disk/bound {worst_ratio:.2}; {:?}",
        stats.compaction
    );
}
