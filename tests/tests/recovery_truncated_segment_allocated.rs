//! A truncated segment file that recovery extends back to full size is fully allocated again,
//! like every segment file the log creates.
//!
//! Segments are written through a shared memory mapping, so a write into a part of the file
//! with no disk blocks behind it allocates them on the spot, and on a full disk that fails with
//! SIGBUS instead of an error. That is why new segments are created with `fallocate`. A segment
//! whose tail was cut off (a copy interrupted, a file system repaired) and is extended again
//! with `set_len` alone is sparse past the cut: in the segment where writing resumes, the next
//! appends land in that hole. The check is `st_blocks`: a fully allocated file has at least
//! `len / 512` blocks.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use seglog::{Log, Options};
use seglog_tests::{pattern, segment_path};

const SEGMENT_BYTES: u64 = 64 * 1024;
const CUT_AT: u64 = 16 * 1024;

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .auto_compact(false)
}

fn allocated_bytes(path: &Path) -> u64 {
    path.metadata().unwrap().blocks() * 512
}

/// Writes about three and a half segments of records; returns the id of the tail segment (the
/// one holding the last record), where writing resumes after a reopen.
fn fill(dir: &Path) -> u64 {
    let log = Log::open_with(dir, options()).unwrap();
    let mut last = 0;
    for i in 0..700u64 {
        last = log
            .put(format!("key-{i:04}").as_bytes(), &pattern(1, i, 300))
            .unwrap();
    }
    let tail = last >> SEGMENT_BYTES.trailing_zeros();
    assert!(tail >= 3, "tail segment {tail}");
    tail
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn assert_fully_allocated(dir: &Path, id: u64, what: &str) {
    let path = segment_path(dir, id);
    let len = path.metadata().unwrap().len();
    assert_eq!(
        len, SEGMENT_BYTES,
        "{what}: recovery restores the full size"
    );
    assert!(
        allocated_bytes(&path) >= len,
        "{what}: segment {id} is sparse after recovery: {} of {len} bytes allocated",
        allocated_bytes(&path)
    );
}

#[test]
fn new_segments_are_fully_allocated() {
    // The baseline the other tests hold recovery to.
    let dir = tempfile::tempdir().unwrap();
    let last = fill(dir.path());
    for id in 0..=last + 1 {
        let path = segment_path(dir.path(), id);
        assert!(allocated_bytes(&path) >= SEGMENT_BYTES, "segment {id}");
    }
}

#[test]
fn a_truncated_last_segment_is_fully_allocated_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let last = fill(dir.path());
    truncate(&segment_path(dir.path(), last), CUT_AT);

    let log = Log::open_with(dir.path(), options()).unwrap();
    assert!(
        !log.recovery_report().corrupt.is_empty(),
        "recovery reports the cut: {:?}",
        log.recovery_report()
    );
    assert_fully_allocated(dir.path(), last, "the segment where writing resumes");
    // Writing does resume in it, and fills it past the cut.
    let first = log.put(b"more-0000", &pattern(2, 0, 300)).unwrap();
    assert_eq!(first >> SEGMENT_BYTES.trailing_zeros(), last);
    for i in 1..200u64 {
        log.put(format!("more-{i:04}").as_bytes(), &pattern(2, i, 300))
            .unwrap();
    }
}

#[test]
fn a_truncated_sealed_segment_is_fully_allocated_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    truncate(&segment_path(dir.path(), 1), CUT_AT);

    let log = Log::open_with(dir.path(), options()).unwrap();
    assert!(
        !log.recovery_report().corrupt.is_empty(),
        "recovery reports the cut: {:?}",
        log.recovery_report()
    );
    assert_fully_allocated(dir.path(), 1, "a sealed segment");
}
