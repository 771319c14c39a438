//! An existing log keeps the segment size it was created with. By default a different
//! `Options::segment_bytes` is ignored (and `ValueTooLarge` says so rather than advising to
//! raise it); with `segment_bytes_must_match(true)` the open is refused, naming both sizes,
//! before anything in the directory changes.

use std::collections::BTreeMap;
use std::path::Path;

use seglog::{Error, Log, Options};

/// Every file's name and bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_different_segment_size_is_kept_or_refused_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let small = Options::default().segment_bytes(8 * 1024);
    let log = Log::open_with(dir.path(), small.clone()).unwrap();
    for i in 0..200u32 {
        log.put(&i.to_le_bytes(), &[7; 100]).unwrap();
    }
    log.close().unwrap();

    // Default: the log's own size wins, and the error for a large value tells the truth.
    let log = Log::open_with(dir.path(), Options::default().segment_bytes(1 << 20)).unwrap();
    assert_eq!(log.stats().segment_bytes, 8 * 1024);
    let error = log.put(b"big", &[0; 64 * 1024]).unwrap_err();
    assert!(matches!(error, Error::ValueTooLarge { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("fixed when it is created"), "{message}");
    assert!(!message.contains("raise"), "{message}");
    log.close().unwrap();

    // Must match: refused, naming both sizes, and nothing changed.
    let before = snapshot(dir.path());
    let strict = Options::default()
        .segment_bytes(1 << 20)
        .segment_bytes_must_match(true);
    match Log::open_with(dir.path(), strict) {
        Err(
            e @ Error::InvalidOption {
                name: "segment_bytes",
                ..
            },
        ) => {
            let message = e.to_string();
            assert!(message.contains("8192-byte segments"), "{message}");
            assert!(message.contains("1048576"), "{message}");
        }
        other => panic!("expected the open to be refused, got {other:?}"),
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a refused open changed the directory"
    );

    // The right size opens; so does a new log with the option set.
    let log = Log::open_with(dir.path(), small.segment_bytes_must_match(true)).unwrap();
    assert_eq!(log.len(), 200);
    drop(log);
    let fresh = tempfile::tempdir().unwrap();
    let log = Log::open_with(
        fresh.path(),
        Options::default()
            .segment_bytes(16 * 1024)
            .segment_bytes_must_match(true),
    )
    .unwrap();
    assert_eq!(log.stats().segment_bytes, 16 * 1024);
}
