//! A full disk (here: a file-size limit below the segment size, set with RLIMIT_FSIZE after the
//! log is open) makes appends fail with `Error::DiskFull`; nothing acknowledged is lost, the log
//! stays usable, and once space is back, writes succeed and everything survives reopen.
//!
//! This file holds one test: the limit is process-wide.

use seglog::{AppendLog, Error, Options};
use seglog_tests::{key, pattern};

const SEGMENT_BYTES: u64 = 64 * 1024;

fn set_file_size_limit(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass; no memory is shared.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) };
    assert_eq!(
        rc,
        0,
        "setrlimit failed: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn disk_full_is_an_error_and_loses_nothing() {
    // Exceeding RLIMIT_FSIZE raises SIGXFSZ, which kills the process by default; ignored, the
    // system call fails with EFBIG instead.
    // SAFETY: installing SIG_IGN for SIGXFSZ has no handler code to run.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_bytes(SEGMENT_BYTES);
    let log = AppendLog::open(dir.path(), &options).unwrap();
    set_file_size_limit(SEGMENT_BYTES / 2);

    let mut acked = Vec::new();
    let mut failures = 0;
    for seq in 0..200u64 {
        let value = pattern(0, seq, 1000);
        match log.append(&key(0, seq), &value) {
            Ok(appended) => {
                assert_eq!(failures, 0, "an append succeeded after the disk filled");
                acked.push((appended.position, seq));
            }
            Err(Error::DiskFull { path, needed }) => {
                assert_eq!(needed, SEGMENT_BYTES);
                assert!(path.starts_with(dir.path()), "{path:?}");
                failures += 1;
                if failures == 5 {
                    break;
                }
            }
            Err(other) => panic!("expected DiskFull, got {other:?}"),
        }
    }
    assert_eq!(failures, 5, "the segment limit was never reached");
    assert!(!acked.is_empty());

    // Everything acknowledged is still readable.
    let check = |log: &AppendLog, expected: &[(u64, u64)]| {
        let guard = seglog::pin();
        let scanned: Vec<_> = log
            .scan(&guard)
            .map(|r| (r.position, r.value.to_vec()))
            .collect();
        assert_eq!(scanned.len(), expected.len());
        for ((position, value), (want_position, seq)) in scanned.iter().zip(expected) {
            assert_eq!(position, want_position);
            assert_eq!(value, &pattern(0, *seq, 1000));
        }
    };
    check(&log, &acked);

    // Space comes back: writes succeed again.
    set_file_size_limit(u64::MAX);
    for seq in 1000..1100u64 {
        let appended = log.append(&key(0, seq), &pattern(0, seq, 1000)).unwrap();
        acked.push((appended.position, seq));
    }
    check(&log, &acked);

    drop(log);
    let reopened = AppendLog::open(dir.path(), &options).unwrap();
    check(&reopened, &acked);
}
