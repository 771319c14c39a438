//! Oversized keys and values get errors that say what and how large, change nothing, and leave
//! the log usable.

use seglog::{AppendLog, Error, MAX_KEY_BYTES, Options};

#[test]
fn oversized_records_are_rejected_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = AppendLog::open(dir.path(), &Options::default().segment_bytes(64 * 1024)).unwrap();
    let first = log.append(b"k", b"v").unwrap();

    let big_key = vec![7u8; MAX_KEY_BYTES + 1];
    match log.append(&big_key, b"v") {
        Err(Error::KeyTooLarge { len, max }) => {
            // The longest key this log takes: 64 KiB segments hold slightly less than the
            // format's MAX_KEY_BYTES with an empty value.
            assert_eq!((len, max), (MAX_KEY_BYTES + 1, log.max_key_len()));
            assert_eq!(max, (64 * 1024 - 64 - 40).min(MAX_KEY_BYTES));
        }
        other => panic!("expected KeyTooLarge, got {other:?}"),
    }

    let max = log.max_value_len(3);
    assert_eq!(max, 64 * 1024 - 64 - 40 - 8);
    match log.append(b"key", &vec![1u8; max + 1]) {
        Err(error @ Error::ValueTooLarge { .. }) => {
            let Error::ValueTooLarge { len, max: m } = error else {
                unreachable!()
            };
            assert_eq!((len, m), (max + 1, max));
            let message = error.to_string();
            assert!(message.contains(&(max + 1).to_string()), "{message}");
            assert!(message.contains("segment_bytes"), "{message}");
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    assert_eq!(
        log.stats().records,
        1,
        "a rejected record must not be counted"
    );

    // The largest value fits: it takes a whole segment of its own.
    let largest = log.append(b"key", &vec![2u8; max]).unwrap();
    let after = log.append(b"after", b"ok").unwrap();
    let guard = seglog::pin();
    assert_eq!(log.read(first.position, &guard).unwrap().value, b"v");
    assert_eq!(
        log.read(largest.position, &guard).unwrap().value,
        vec![2u8; max].as_slice()
    );
    assert_eq!(log.read(after.position, &guard).unwrap().value, b"ok");
    assert_eq!(log.scan(&guard).count(), 3);
}

#[test]
fn invalid_positions_are_errors_not_wrong_records() {
    let log = AppendLog::in_memory(4096, 16).unwrap();
    let a = log.append(b"a", b"alpha").unwrap();
    let guard = seglog::pin();
    for bad in [
        0,
        8,
        a.position + 8,
        a.position + 3,
        a.position + 4096 * 5,
        u64::MAX,
    ] {
        assert!(
            matches!(log.read(bad, &guard), Err(Error::NoRecord { .. })),
            "position {bad:#x} should hold no record"
        );
    }
    assert_eq!(log.read(a.position, &guard).unwrap().value, b"alpha");
}

#[test]
fn a_file_where_the_directory_should_be_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    let error = AppendLog::open(&file, &Options::default()).unwrap_err();
    assert!(matches!(error, Error::NotALog { .. }), "{error:?}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"hello",
        "the file must be left alone"
    );
}

#[test]
fn a_second_open_of_a_directory_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let log = AppendLog::open(dir.path(), &Options::default().segment_bytes(4096)).unwrap();
    log.append(b"k", b"v").unwrap();
    let error = AppendLog::open(dir.path(), &Options::default().segment_bytes(4096)).unwrap_err();
    match &error {
        Error::Locked { path } => assert!(path.starts_with(dir.path())),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(error.to_string().contains("locked"));
    drop(log);
    let reopened = AppendLog::open(dir.path(), &Options::default().segment_bytes(4096)).unwrap();
    let guard = seglog::pin();
    assert_eq!(reopened.scan(&guard).count(), 1);
}
