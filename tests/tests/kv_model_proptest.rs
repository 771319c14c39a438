//! Random sequences of put/get/remove/reopen agree with a `BTreeMap` model, including across
//! reopens (recovery rebuilds exactly the visible state) and segment roll-overs.

use std::collections::BTreeMap;

use proptest::prelude::*;
use seglog::{Log, Options};

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Vec<u8>),
    Get(u8),
    Remove(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..12, proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(k, v)| Op::Put(k, v)),
        3 => (0u8..12).prop_map(Op::Get),
        2 => (0u8..12).prop_map(Op::Remove),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u8) -> Vec<u8> {
    // Key 0 is the empty key, which seglog accepts like any other.
    if k == 0 {
        Vec::new()
    } else {
        format!("key-{k}").into_bytes()
    }
}

fn options() -> Options {
    Options::default()
        .segment_bytes(4096)
        .index_capacity(4)
        .index_seed(7)
}

fn check_all(log: &Log, model: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.len(), model.len());
    prop_assert_eq!(log.is_empty(), model.is_empty());
    let mut pairs: Vec<_> = log.iter().collect();
    pairs.sort();
    let expected: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    prop_assert_eq!(&pairs, &expected);
    let pinned = log.pin();
    let mut borrowed: Vec<_> = pinned
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    borrowed.sort();
    prop_assert_eq!(&borrowed, &expected);
    for k in 0..12 {
        prop_assert_eq!(log.get(&key(k)), model.get(&key(k)).cloned());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn log_agrees_with_a_btreemap(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open_with(dir.path(), options()).unwrap();
        let mut model = BTreeMap::new();
        let mut last_version = 0;
        for op in ops {
            match op {
                Op::Put(k, value) => {
                    let version = log.put(&key(k), &value).unwrap();
                    prop_assert!(version > last_version, "versions must grow");
                    last_version = version;
                    model.insert(key(k), value);
                }
                Op::Get(k) => {
                    prop_assert_eq!(log.get(&key(k)), model.get(&key(k)).cloned());
                    prop_assert_eq!(log.contains_key(&key(k)), model.contains_key(&key(k)));
                    prop_assert_eq!(
                        log.get_with(&key(k), |v| v.len()),
                        model.get(&key(k)).map(Vec::len)
                    );
                }
                Op::Remove(k) => {
                    let existed = log.remove(&key(k)).unwrap();
                    prop_assert_eq!(existed, model.remove(&key(k)).is_some());
                }
                Op::Reopen => {
                    drop(log);
                    log = Log::open_with(dir.path(), options()).unwrap();
                    prop_assert!(log.recovery_report().corrupt.is_empty());
                    prop_assert_eq!(log.recovery_report().holes, 0);
                }
            }
            prop_assert_eq!(log.len(), model.len());
        }
        check_all(&log, &model)?;
        drop(log);
        let log = Log::open_with(dir.path(), options()).unwrap();
        check_all(&log, &model)?;
    }
}
