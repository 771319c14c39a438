//! 10 writers × 10,000 appends of 1 B to 8 KiB across many 64 KiB segment roll-overs: every
//! record reads back byte-exact by position, positions are unique and never overlap, and a scan
//! sees each record exactly once.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use seglog::{AppendLog, Options, RecordKind};
use seglog_tests::{SplitMix64, key, parse_key, pattern};

const WRITERS: u64 = 10;
const PER_WRITER: u64 = 10_000;
const SEGMENT_BYTES: u64 = 64 * 1024;

#[test]
fn concurrent_appends_round_trip_across_rollovers() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        AppendLog::open(dir.path(), &Options::default().segment_bytes(SEGMENT_BYTES)).unwrap(),
    );
    let barrier = Arc::new(Barrier::new(WRITERS as usize));
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let log = Arc::clone(&log);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut rng = SplitMix64::new(writer);
                let mut written = Vec::with_capacity(PER_WRITER as usize);
                barrier.wait();
                for seq in 0..PER_WRITER {
                    let len = rng.range(1, 8192) as usize;
                    let appended = log
                        .append(&key(writer, seq), &pattern(writer, seq, len))
                        .unwrap();
                    written.push((appended, writer, seq, len));
                }
                written
            })
        })
        .collect();
    let mut all: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(all.len() as u64, WRITERS * PER_WRITER);

    // Positions are unique and regions never overlap.
    all.sort_by_key(|(a, ..)| a.position);
    for pair in all.windows(2) {
        let (a, b) = (&pair[0].0, &pair[1].0);
        assert!(
            a.position + u64::from(a.record_bytes) <= b.position,
            "records at {:#x} (+{}) and {:#x} overlap",
            a.position,
            a.record_bytes,
            b.position
        );
    }
    // A fresh record's version is its position.
    assert!(all.iter().all(|(a, ..)| a.version == a.position));

    // Every record reads back byte-exact by position.
    let guard = seglog::pin();
    for (appended, writer, seq, len) in &all {
        let record = log.read(appended.position, &guard).unwrap();
        assert_eq!(record.kind, RecordKind::Put);
        assert_eq!(record.key, key(*writer, *seq).as_slice());
        assert_eq!(record.value, pattern(*writer, *seq, *len).as_slice());
        assert_eq!(record.value.as_ptr() as usize % 8, 0, "value not 8-aligned");
    }

    // The scan sees each record exactly once, in position order.
    let mut seen = HashSet::new();
    let mut last = 0;
    let mut scan = log.scan(&guard);
    for record in scan.by_ref() {
        assert!(record.position > last || last == 0);
        last = record.position;
        let (writer, seq) = parse_key(record.key).unwrap();
        assert!(
            seen.insert((writer, seq)),
            "scan returned {writer}/{seq} twice"
        );
        let at = all
            .binary_search_by_key(&record.position, |(a, ..)| a.position)
            .expect("scan returned a position no append returned");
        assert_eq!((all[at].1, all[at].2), (writer, seq));
        assert_eq!(record.value, pattern(writer, seq, all[at].3).as_slice());
    }
    assert!(scan.error().is_none(), "scan stopped on {:?}", scan.error());
    assert_eq!(seen.len() as u64, WRITERS * PER_WRITER);

    let stats = log.stats();
    eprintln!("{stats:?}");
    assert!(stats.rollovers >= 50, "only {} roll-overs", stats.rollovers);
    assert_eq!(stats.records, WRITERS * PER_WRITER);
    assert_eq!(stats.aborted, 0);
}
