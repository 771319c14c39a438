//! A segment file that cannot be memory-mapped (the address space is exhausted) fails the write
//! that needed it, and nothing else: once memory is available again, writes resume, like after
//! a full disk. The half-created file must not be left behind, or every later attempt to create
//! that segment fails with "file exists" and the log can never grow again.
//!
//! The mapping failure is injected with `RLIMIT_AS`: the soft limit is lowered to just above the
//! address space in use, so the next 16 MiB segment mapping fails with `ENOMEM` while small
//! allocations still succeed, then restored. The limit applies to the whole process, so this
//! file holds exactly one test.

use std::path::Path;

use seglog::{Log, Options};
use seglog_tests::{pattern, segment_file_count};

const SEGMENT_BYTES: u64 = 16 << 20;
const VALUE_BYTES: usize = 1 << 20;

/// Address space in use, from `/proc/self/status`.
fn address_space_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .expect("VmSize in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmSize in kB");
    kib * 1024
}

/// Lowers the soft `RLIMIT_AS` while it lives; restores the old limit when dropped.
struct AddressSpaceLimit {
    old: libc::rlimit,
}

impl AddressSpaceLimit {
    fn headroom(bytes: u64) -> Self {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write only the struct passed.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut old), 0);
            let new = libc::rlimit {
                rlim_cur: address_space_bytes() + bytes,
                rlim_max: old.rlim_max,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &new), 0);
        }
        Self { old }
    }
}

impl Drop for AddressSpaceLimit {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe {
            libc::setrlimit(libc::RLIMIT_AS, &self.old);
        }
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("value-{i:02}").into_bytes()
}

fn fill_first_segment(log: &Log) -> usize {
    // 15 values of 1 MiB fit in the first 16 MiB segment; the 16th needs the next segment.
    let value = pattern(0, 0, VALUE_BYTES);
    for i in 0..15 {
        log.put(&key(i), &value).unwrap();
    }
    15
}

#[test]
fn a_segment_that_cannot_be_mapped_fails_one_write_and_writes_resume() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(
        dir.path(),
        Options::default()
            .segment_bytes(SEGMENT_BYTES)
            .auto_compact(false),
    )
    .unwrap();
    let written = fill_first_segment(&log);
    assert_eq!(segment_file_count(dir.path()), 1, "no segment prepared yet");
    let value = pattern(0, 1, VALUE_BYTES);

    // Everything the failing call needs is allocated already; 8 MiB of headroom is plenty for
    // its small allocations (an error message) and too little for a 16 MiB mapping.
    let failed = {
        let _limit = AddressSpaceLimit::headroom(8 << 20);
        log.put(&key(written), &value)
    };
    assert!(
        failed.is_err(),
        "the put needing a new segment cannot succeed without mapping it: {failed:?}"
    );

    let mut problems = Vec::new();
    if segment_file_count(dir.path()) != 1 {
        problems.push(format!(
            "the segment that could not be mapped was left behind: {} segment files",
            segment_file_count(dir.path())
        ));
    }
    // Memory is back: the same put must now succeed, and so must the ones after it.
    for attempt in 0..3 {
        if let Err(e) = log.put(&key(written), &value) {
            problems.push(format!(
                "put {attempt} after the limit was lifted failed: {e}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "after the put that could not map a segment ({}): {}",
        failed.unwrap_err(),
        problems.join("; ")
    );
    assert_eq!(log.get(&key(written)), Some(value.clone()));
    drop(log);
    reopen_and_check(dir.path(), written);
}

fn reopen_and_check(dir: &Path, written: usize) {
    let log = Log::open_with(dir, Options::default().segment_bytes(SEGMENT_BYTES)).unwrap();
    for i in 0..written {
        assert_eq!(
            log.get(&key(i)),
            Some(pattern(0, 0, VALUE_BYTES)),
            "key {i}"
        );
    }
    assert_eq!(log.get(&key(written)), Some(pattern(0, 1, VALUE_BYTES)));
}
