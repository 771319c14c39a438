//! `put` on a full disk (a file-size limit below the segment size, via RLIMIT_FSIZE) returns
//! `Error::DiskFull`, changes nothing, and the log stays usable; everything acknowledged before
//! stays readable and survives reopen. One test per file: the limit is process-wide.

use std::collections::BTreeMap;

use seglog::{Error, Log, Options};
use seglog_tests::pattern;

const SEGMENT_BYTES: u64 = 64 * 1024;

fn set_file_size_limit(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct passed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
}

#[test]
fn put_on_a_full_disk_is_an_error_and_loses_nothing() {
    // SAFETY: SIG_IGN installs no handler code; EFBIG is returned instead of the signal.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_bytes(SEGMENT_BYTES);
    let log = Log::open_with(dir.path(), options.clone()).unwrap();
    set_file_size_limit(SEGMENT_BYTES / 2);

    let mut model = BTreeMap::new();
    let mut failures = 0;
    for i in 0..500u64 {
        let key = format!("k{}", i % 40).into_bytes();
        let value = pattern(3, i, 900);
        match log.put(&key, &value) {
            Ok(_) => {
                assert_eq!(failures, 0, "a put succeeded after the disk filled");
                model.insert(key, value);
            }
            Err(Error::DiskFull { needed, .. }) => {
                assert_eq!(needed, SEGMENT_BYTES);
                // The failed put changed nothing.
                assert_eq!(log.get(&key), model.get(&key).cloned());
                failures += 1;
                if failures == 3 {
                    break;
                }
            }
            Err(other) => panic!("expected DiskFull, got {other:?}"),
        }
    }
    assert_eq!(failures, 3, "the limit was never reached");
    assert_eq!(log.iter().collect::<BTreeMap<_, _>>(), model);
    // Removes need space too, and fail the same way without changing anything.
    let some_key = model.keys().next().unwrap().clone();
    assert!(matches!(log.remove(&some_key), Err(Error::DiskFull { .. })));
    assert!(log.contains_key(&some_key));

    set_file_size_limit(u64::MAX);
    for i in 1000..1100u64 {
        let key = format!("k{}", i % 40).into_bytes();
        let value = pattern(3, i, 900);
        log.put(&key, &value).unwrap();
        model.insert(key, value);
    }
    assert_eq!(log.iter().collect::<BTreeMap<_, _>>(), model);
    drop(log);
    let log = Log::open_with(dir.path(), options).unwrap();
    assert!(log.recovery_report().corrupt.is_empty());
    assert_eq!(log.iter().collect::<BTreeMap<_, _>>(), model);
}
