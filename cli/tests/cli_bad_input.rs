//! The `seglog` binary on good and bad directories: what a user sees.
//!
//! Every failure must be exactly one line on stderr starting with `seglog: `, with a non-zero
//! exit and no panic; `verify` must name the damaged file and offset.

use std::path::Path;
use std::process::{Command, Output};

use seglog::{Log, Options};

fn seglog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seglog"))
        .args(args)
        .output()
        .expect("run the seglog binary")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts a failure reported the way users should see it, and returns the message.
fn one_line_failure(output: &Output) -> String {
    let err = stderr(output);
    assert!(!output.status.success(), "expected failure, stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line on stderr, got: {err:?}");
    assert!(err.starts_with("seglog: "), "got: {err:?}");
    assert!(!err.contains("panicked"), "got: {err:?}");
    err
}

/// A closed log with `n` keys in 64 KiB segments; returns the position of key 0's record.
fn make_log(dir: &Path, n: u32) -> u64 {
    let log = Log::open_with(dir, Options::default().segment_bytes(64 * 1024)).unwrap();
    let first = log.put(b"key-0", b"value number 0").unwrap();
    for i in 1..n {
        log.put(
            format!("key-{i}").as_bytes(),
            format!("value number {i}").as_bytes(),
        )
        .unwrap();
    }
    log.remove(b"key-1").unwrap();
    first
}

#[test]
fn stats_verify_and_dump_a_good_log() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path(), 3000);
    let path = dir.path().to_str().unwrap();

    let stats = seglog(&["stats", path]);
    assert!(stats.status.success(), "{}", stderr(&stats));
    assert!(
        stdout(&stats).contains("keys             2999"),
        "{}",
        stdout(&stats)
    );

    let verify = seglog(&["verify", path]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(stdout(&verify).contains("3001 records (3000 puts, 1 tombstones)"));

    let dump = seglog(&["dump", path, "--limit", "2"]);
    assert!(dump.status.success(), "{}", stderr(&dump));
    let lines: Vec<_> = stdout(&dump).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("key=\"key-0\"") && lines[0].contains("\"value number 0\""));

    let one = seglog(&["dump", path, "--key", "key-42"]);
    assert!(
        stdout(&one).contains("\"value number 42\""),
        "{}",
        stdout(&one)
    );
    let gone = seglog(&["dump", path, "--key", "key-1"]);
    assert!(one_line_failure(&gone).contains("no value"));
}

#[test]
fn a_missing_directory_is_refused_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for command in ["stats", "verify", "dump", "compact"] {
        let output = seglog(&[command, missing.to_str().unwrap()]);
        assert!(one_line_failure(&output).contains("no such directory"));
        assert!(!missing.exists(), "{command} created the directory");
    }
}

#[test]
fn a_directory_without_segments_is_not_a_log() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    for command in ["stats", "verify", "dump"] {
        let output = seglog(&[command, dir.path().to_str().unwrap()]);
        assert!(one_line_failure(&output).contains("not a seglog directory"));
    }
    let file = dir.path().join("notes.txt");
    let output = seglog(&["stats", file.to_str().unwrap()]);
    assert!(one_line_failure(&output).contains("not a seglog directory"));
}

#[test]
fn a_locked_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path(), 10);
    let _open = Log::open(dir.path()).unwrap();
    for command in ["stats", "verify", "dump"] {
        let output = seglog(&[command, dir.path().to_str().unwrap()]);
        assert!(one_line_failure(&output).contains("locked"), "{command}");
    }
}

#[test]
fn a_corrupt_record_is_named_by_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let position = make_log(dir.path(), 100);
    let segment = dir.path().join("0000000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    // A byte of key-0's value: the header is 40 bytes, the key 5 (padded to 8).
    let at = position as usize + 40 + 8 + 3;
    bytes[at] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();
    let path = dir.path().to_str().unwrap();

    let verify = seglog(&["verify", path]);
    let err = one_line_failure(&verify);
    assert!(
        err.contains("0000000000000000.seg") && err.contains(&format!("offset {position}")),
        "{err}"
    );
    assert!(stdout(&verify).contains("checksum"), "{}", stdout(&verify));

    for command in ["stats", "dump"] {
        let err = one_line_failure(&seglog(&[command, path]));
        assert!(err.contains("corrupt") && err.contains(&format!("offset {position}")));
    }
    // Refused untouched: the damage is still there for verify to find.
    assert_eq!(std::fs::read(&segment).unwrap()[at], bytes[at]);
}

/// `verify` uses recovery's own walk, so it refuses what a strict open refuses: here a put
/// whose version is ahead of its position, with a valid checksum (which an earlier `verify`,
/// with a walk of its own, passed as "ok").
#[test]
fn verify_refuses_a_version_ahead_of_its_position_as_an_open_does() {
    use seglog_format::{LogFile, RecordHeader, RecordKind, encode_record};
    let dir = tempfile::tempdir().unwrap();
    let position = make_log(dir.path(), 100);
    let segment = dir.path().join(LogFile::Segment(0).name());
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = position as usize;
    let salt = RecordHeader::read(&bytes[at..]).unwrap().salt();
    let record = encode_record(
        RecordKind::Put,
        b"key-0",
        b"value number 0",
        position + 8,
        position,
        salt,
    )
    .unwrap();
    bytes[at..at + record.len()].copy_from_slice(&record);
    std::fs::write(&segment, &bytes).unwrap();
    let path = dir.path().to_str().unwrap();

    let verify = seglog(&["verify", path]);
    let err = one_line_failure(&verify);
    assert!(
        err.contains(&format!("offset {position}")) && err.contains("ahead of its position"),
        "{err}"
    );
    let err = one_line_failure(&seglog(&["stats", path]));
    assert!(err.contains("ahead of its position"), "{err}");
}

#[test]
fn compact_retires_dead_segments_and_keeps_every_value() {
    let dir = tempfile::tempdir().unwrap();
    {
        let options = Options::default()
            .segment_bytes(64 * 1024)
            .auto_compact(false);
        let log = Log::open_with(dir.path(), options).unwrap();
        for round in 0..20 {
            for i in 0..200 {
                let value = format!("round {round} value {i}");
                log.put(format!("key-{i}").as_bytes(), value.as_bytes())
                    .unwrap();
            }
        }
    }
    let path = dir.path().to_str().unwrap();
    let segments = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("seg".as_ref()))
            .count()
    };
    let before = segments();
    let output = seglog(&["compact", path]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("retired"), "{}", stdout(&output));
    assert!(
        segments() < before,
        "{} segments before, {} after",
        before,
        segments()
    );
    assert!(seglog(&["verify", path]).status.success());
    let value = seglog(&["dump", path, "--key", "key-7"]);
    assert!(
        stdout(&value).contains("\"round 19 value 7\""),
        "{}",
        stdout(&value)
    );
}
