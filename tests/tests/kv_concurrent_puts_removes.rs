//! 8 threads on disjoint keys, then 8 threads racing puts and removes on 16 shared keys, through
//! many index resizes: afterwards every key holds its highest-version record's value, exactly
//! as the log says, and reopening shows the same state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Barrier};

use seglog::{Log, Options, RecordKind};
use seglog_tests::{SplitMix64, key, parse_key, pattern};

const THREADS: u64 = 8;

fn options() -> Options {
    Options::default()
        .segment_bytes(64 * 1024)
        .index_capacity(4)
}

/// A key's best record so far: (version, position, value or `None` for a tombstone).
type Best = (u64, u64, Option<Vec<u8>>);

/// The state the log itself implies: for each key, its highest-version record.
fn state_from_log(log: &Log) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    let pinned = log.pin();
    let mut best: HashMap<Vec<u8>, Best> = HashMap::new();
    for record in log.append_log().scan(pinned.guard()) {
        let value = (record.kind == RecordKind::Put).then(|| record.value.to_vec());
        let candidate = (record.version, record.position, value);
        best.entry(record.key.to_vec())
            .and_modify(|b| {
                if (candidate.0, candidate.1) > (b.0, b.1) {
                    *b = candidate.clone();
                }
            })
            .or_insert(candidate);
    }
    best.into_iter().map(|(k, (_, _, v))| (k, v)).collect()
}

fn assert_matches_log(log: &Log) {
    let truth = state_from_log(log);
    let live = truth.values().filter(|v| v.is_some()).count();
    assert_eq!(log.len(), live, "len disagrees with the log");
    for (key, value) in &truth {
        assert_eq!(
            &log.get(key),
            value,
            "key {:?}",
            String::from_utf8_lossy(key)
        );
    }
    let mut pairs: Vec<_> = log.iter().collect();
    pairs.sort();
    let expected: Vec<_> = truth
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    assert_eq!(pairs, expected, "iteration disagrees with the log");
}

#[test]
fn disjoint_keys_then_shared_keys_racing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open_with(dir.path(), options()).unwrap());

    // Phase 1: disjoint keys.
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (log, barrier) = (Arc::clone(&log), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..5_000 {
                    log.put(&key(t, i), &pattern(t, i, (i % 200) as usize))
                        .unwrap();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(log.len(), (THREADS * 5_000) as usize);
    for t in 0..THREADS {
        for i in 0..5_000 {
            assert_eq!(
                log.get(&key(t, i)).unwrap(),
                pattern(t, i, (i % 200) as usize)
            );
        }
    }
    let resizes_after_disjoint = log.stats().index_resizes;
    assert!(
        resizes_after_disjoint >= 10,
        "only {resizes_after_disjoint} resizes"
    );

    // Phase 2: 16 shared keys; puts (returning versions) and removes race, while filler keys
    // keep the index resizing.
    let shared: Vec<Vec<u8>> = (0..16).map(|k| format!("hot-{k}").into_bytes()).collect();
    let shared = Arc::new(shared);
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (log, barrier, shared) =
                (Arc::clone(&log), Arc::clone(&barrier), Arc::clone(&shared));
            std::thread::spawn(move || {
                let mut rng = SplitMix64::new(t + 1000);
                let mut puts = Vec::new();
                barrier.wait();
                for i in 0..4_000u64 {
                    let k = rng.range(0, 15) as usize;
                    if rng.range(0, 3) == 0 {
                        log.remove(&shared[k]).unwrap();
                    } else {
                        let value = pattern(t, i, 24);
                        let version = log.put(&shared[k], &value).unwrap();
                        puts.push((k, version, value));
                    }
                    // Filler keys grow the index through more resizes.
                    log.put(&key(100 + t, i), b"filler").unwrap();
                }
                puts
            })
        })
        .collect();
    let puts: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        log.stats().index_resizes > resizes_after_disjoint,
        "no resize during the race"
    );

    // Versions are unique.
    let mut versions: Vec<u64> = puts.iter().map(|p| p.1).collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        puts.len(),
        "two puts returned the same version"
    );

    // Every shared key holds its highest-version record; if that is a put, it is the value
    // of the put that returned that version.
    let truth = state_from_log(&log);
    for (k, name) in shared.iter().enumerate() {
        let current = log.get(name);
        assert_eq!(&current, truth.get(name).unwrap_or(&None));
        if let Some(value) = current {
            let max_put = puts
                .iter()
                .filter(|p| p.0 == k)
                .max_by_key(|p| p.1)
                .unwrap();
            // The current value came from some put of this key with the highest version
            // among puts; a later tombstone would have made it absent.
            assert_eq!(
                value, max_put.2,
                "hot-{k} holds a value older than its newest put"
            );
        }
    }
    assert_matches_log(&log);
    for key_bytes in truth.keys() {
        if let Some((t, _)) = parse_key(key_bytes) {
            assert!(t < THREADS || (100..100 + THREADS).contains(&t));
        }
    }

    // Reopen: exactly the same visible state.
    let before: BTreeMap<_, _> = log.iter().collect();
    drop(log);
    let log = Log::open_with(dir.path(), options()).unwrap();
    let after: BTreeMap<_, _> = log.iter().collect();
    assert_eq!(before, after);
    assert_matches_log(&log);
}
