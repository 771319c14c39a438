//! Bad input to the key-value API gets a clear error and changes nothing.

use seglog::{Error, Log, MAX_KEY_BYTES, Options};

fn open(dir: &std::path::Path) -> Log {
    Log::open_with(dir, Options::default().segment_bytes(64 * 1024)).unwrap()
}

#[test]
fn the_empty_key_is_a_key_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.put(b"", b"empty key's value").unwrap();
    log.put(b"x", b"other").unwrap();
    assert_eq!(log.get(b"").unwrap(), b"empty key's value");
    assert_eq!(log.len(), 2);
    assert!(log.remove(b"").unwrap());
    assert!(!log.contains_key(b""));
    log.put(b"", b"again").unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.get(b"").unwrap(), b"again");
}

#[test]
fn oversized_keys_and_values_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.put(b"k", b"v1").unwrap();
    let before = log.stats();

    let key = vec![b'a'; MAX_KEY_BYTES + 1];
    assert!(matches!(
        log.put(&key, b"v"),
        Err(Error::KeyTooLarge { len, max })
            if len == MAX_KEY_BYTES + 1 && max == log.append_log().max_key_len()
    ));
    assert!(matches!(log.remove(&key), Err(Error::KeyTooLarge { .. })));
    let huge = vec![0u8; 64 * 1024];
    match log.put(b"k", &huge) {
        Err(Error::ValueTooLarge { len, max }) => {
            assert_eq!(len, 64 * 1024);
            assert!(max < len);
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    assert_eq!(
        log.get(b"k").unwrap(),
        b"v1",
        "a rejected put must not change the key"
    );
    let after = log.stats();
    assert_eq!((after.keys, after.bytes), (before.keys, before.bytes));
}

#[test]
fn a_locked_directory_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.put(b"k", b"v").unwrap();
    match Log::open(dir.path()) {
        Err(Error::Locked { path }) => assert!(path.starts_with(dir.path())),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert_eq!(log.get(b"k").unwrap(), b"v");
    log.put(b"k2", b"v2").unwrap();
    drop(log);
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(log.len(), 2);
}

#[test]
fn removing_an_absent_key_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert!(!log.remove(b"never").unwrap());
    assert_eq!(log.stats().bytes, 0);
    log.put(b"k", b"v").unwrap();
    assert!(log.remove(b"k").unwrap());
    assert!(!log.remove(b"k").unwrap(), "a second remove finds nothing");
    assert_eq!(log.len(), 0);
}
