//! `Options::read_only(true)` (issue 17): a read-only open of a clean, damaged, torn or
//! half-created log leaves every file's bytes, size, name and modification time as they were
//! (each file hashed before and after), reads what a normal open would, refuses every write with
//! `Error::ReadOnly`, and takes the directory's lock shared: read-only opens coexist, and a
//! writer and a reader exclude each other, across processes (this test binary runs itself as
//! the other process).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use seglog::{Batch, Error, Log, Options};
use seglog_tests::{hint_path, segment_path};

/// Every file of `dir`: name → (length, modification time, CRC32C of the bytes).
type Fingerprint = BTreeMap<String, (u64, std::time::SystemTime, u32)>;

fn fingerprint(dir: &Path) -> Fingerprint {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                (
                    meta.len(),
                    meta.modified().unwrap(),
                    seglog_format::crc32c(&bytes),
                ),
            )
        })
        .collect()
}

fn options() -> Options {
    Options::default()
        .segment_bytes(16 * 1024)
        .auto_compact(false)
}

fn read_only() -> Options {
    options().read_only(true)
}

/// A closed log of 600 keys over several segments (hints written by the close); returns its
/// contents.
fn written_log(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let log = Log::open_with(dir, options()).unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..600u32 {
        let key = format!("key-{i:04}").into_bytes();
        let value = format!("value-{i}-").repeat(3).into_bytes();
        log.put(&key, &value).unwrap();
        expected.insert(key, value);
    }
    for i in (0..600u32).step_by(7) {
        let key = format!("key-{i:04}").into_bytes();
        log.remove(&key).unwrap();
        expected.remove(&key);
    }
    log.close().unwrap();
    expected
}

fn contents(log: &Log) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let view = log.pin();
    view.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

/// Opens `dir` read-only, reads everything, checks every write is refused, and checks the
/// files are exactly as before. Returns what it read and the recovery report's damage count.
fn open_read_only_changes_nothing(dir: &Path) -> (BTreeMap<Vec<u8>, Vec<u8>>, usize) {
    let before = fingerprint(dir);
    // Past the file system's timestamp granularity: a write would move an mtime.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (read, damage) = {
        let log = Log::open_with(dir, read_only()).unwrap();
        let read = contents(&log);
        for (key, value) in &read {
            assert_eq!(log.get(key).as_ref(), Some(value));
        }
        assert!(matches!(log.put(b"k", b"v"), Err(Error::ReadOnly)));
        assert!(matches!(
            log.put_with(b"k", 4, |_| {}),
            Err(Error::ReadOnly)
        ));
        assert!(matches!(log.remove(b"key-0001"), Err(Error::ReadOnly)));
        assert!(matches!(log.remove(b"absent"), Err(Error::ReadOnly)));
        let mut batch = Batch::new();
        batch.put(b"k", b"v");
        assert!(matches!(log.write_batch(&batch), Err(Error::ReadOnly)));
        assert!(matches!(
            log.compare_and_put(b"k", None, b"v"),
            Err(Error::ReadOnly)
        ));
        assert!(matches!(
            log.compare_and_remove(b"key-0001", 1),
            Err(Error::ReadOnly)
        ));
        assert!(matches!(log.sync(), Err(Error::ReadOnly)));
        assert!(matches!(log.compact(), Err(Error::ReadOnly)));
        let damage = log.recovery_report().corrupt.len();
        log.close().unwrap();
        (read, damage)
    };
    assert_eq!(
        fingerprint(dir),
        before,
        "a read-only open changed the directory"
    );
    (read, damage)
}

#[test]
fn a_clean_log_reads_whole_with_and_without_hints_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let expected = written_log(dir.path());
    let (read, damage) = open_read_only_changes_nothing(dir.path());
    assert_eq!((read, damage), (expected.clone(), 0));
    for path in seglog_tests::files_with_extension(dir.path(), "hint") {
        std::fs::remove_file(path).unwrap();
    }
    let (read, damage) = open_read_only_changes_nothing(dir.path());
    assert_eq!((read, damage), (expected, 0));
}

#[test]
fn a_damaged_log_is_reported_not_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let expected = written_log(dir.path());
    // A flipped byte in the middle of sealed segment 1 (its hint's checksum now fails, and the
    // scan finds the record).
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8 * 1024] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert!(hint_path(dir.path(), 1).exists());
    let (read, damage) = open_read_only_changes_nothing(dir.path());
    assert!(damage > 0, "the damage is reported");
    assert!(read.len() < expected.len() && read.len() > expected.len() / 2);
    for (key, value) in &read {
        assert_eq!(expected.get(key), Some(value), "never a wrong value");
    }
    // A second read-only open finds the same: nothing was repaired (the bad hint is still
    // there, the damaged record still unsealed).
    assert!(hint_path(dir.path(), 1).exists());
    assert_eq!(open_read_only_changes_nothing(dir.path()), (read, damage));
}

#[test]
fn a_torn_tail_and_half_created_files_are_left_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let expected = written_log(dir.path());
    let tail = (0..64u64)
        .rev()
        .find(|&id| segment_path(dir.path(), id).exists())
        .unwrap();
    // A torn record after the tail's last one: a commit word and garbage, nothing valid after.
    let path = segment_path(dir.path(), tail);
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.len() - 512;
    bytes[end..end + 64].fill(0x5A);
    std::fs::write(&path, &bytes).unwrap();
    // What a crash leaves mid-creation or mid-hint: a segment file with a blank header after the
    // tail, a half-written hint, a retired file kept for reuse.
    std::fs::write(segment_path(dir.path(), tail + 2), vec![0u8; 16 * 1024]).unwrap();
    std::fs::write(dir.path().join(format!("{:016x}.hint.tmp", 1)), b"half").unwrap();
    std::fs::write(
        dir.path().join(format!("{:016x}.seg.free", 99)),
        vec![0u8; 1024],
    )
    .unwrap();
    let (read, _) = open_read_only_changes_nothing(dir.path());
    assert_eq!(read, expected, "the torn bytes hid nothing");
    // A writable open does repair all of it, so there was something to leave alone.
    let before = fingerprint(dir.path());
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert!(log.recovery_report().bytes_truncated > 0);
    assert_eq!(contents(&log), expected);
    drop(log);
    assert_ne!(fingerprint(dir.path()), before);
}

#[test]
fn a_truncated_segment_is_read_in_memory_and_stays_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let expected = written_log(dir.path());
    let path = segment_path(dir.path(), 0);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(10 * 1024).unwrap();
    drop(file);
    let (read, damage) = open_read_only_changes_nothing(dir.path());
    assert!(damage > 0);
    assert!(!read.is_empty());
    for (key, value) in &read {
        assert_eq!(expected.get(key), Some(value), "never a wrong value");
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 10 * 1024);
}

#[test]
fn what_is_not_a_log_is_refused_and_never_created() {
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("missing");
    assert!(matches!(
        Log::open_with(&missing, read_only()),
        Err(Error::NotALog { .. })
    ));
    assert!(!missing.exists(), "a read-only open created the directory");
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    match Log::open_with(&empty, read_only()) {
        Err(e @ Error::NotALog { .. }) => assert!(e.to_string().contains("no segment"), "{e}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing created"
    );
}

/// The other process of the lock tests: opens `SEGLOG_RO_CHILD_DIR` as a writer or read-only
/// (`SEGLOG_RO_CHILD` = `writer` / `reader`), prints `open` or the error, and holds the log
/// until its stdin closes. Does nothing in a normal test run.
#[test]
fn lock_child_process() {
    let Ok(role) = std::env::var("SEGLOG_RO_CHILD") else {
        return;
    };
    let dir = std::env::var("SEGLOG_RO_CHILD_DIR").unwrap();
    let options = if role == "reader" {
        read_only()
    } else {
        options()
    };
    let log = Log::open_with(&dir, options);
    // On a line of its own: libtest has already printed `test lock_child_process ... `.
    match &log {
        Ok(_) => println!("\nCHILD open"),
        Err(e) => println!("\nCHILD error {e}"),
    }
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(log);
}

/// The other process, with its stdout kept open until it exits (closing it early would make the
/// child's test harness fail writing its summary).
struct Child(std::process::Child, BufReader<std::process::ChildStdout>);

impl Child {
    /// Starts the other process as `role` on `dir` and waits for it to report its open.
    fn open(role: &str, dir: &Path) -> (Self, String) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "lock_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SEGLOG_RO_CHILD", role)
            .env("SEGLOG_RO_CHILD_DIR", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !line.starts_with("CHILD ") {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "the child said nothing"
            );
            assert!(std::time::Instant::now() < deadline, "the child hangs");
        }
        let said = line["CHILD ".len()..].trim().to_string();
        (Self(child, reader), said)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        // Read what is left (the harness's summary), so the child never writes to a closed
        // pipe, then reap it.
        let _ = std::io::Read::read_to_end(&mut self.1, &mut Vec::new());
        let _ = self.0.wait();
    }
}

#[test]
fn readers_share_the_lock_and_exclude_a_writer_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    written_log(dir.path());
    {
        let (_reader, said) = Child::open("reader", dir.path());
        assert_eq!(said, "open");
        // Another reader, here: shared.
        let here = Log::open_with(dir.path(), read_only()).unwrap();
        // A writer, in a third process and here: locked out.
        let (_writer, said) = Child::open("writer", dir.path());
        assert!(
            said.starts_with("error") && said.contains("locked"),
            "{said}"
        );
        assert!(matches!(
            Log::open_with(dir.path(), options()),
            Err(Error::Locked { .. })
        ));
        drop(here);
    }
    {
        let (_writer, said) = Child::open("writer", dir.path());
        assert_eq!(said, "open");
        assert!(matches!(
            Log::open_with(dir.path(), read_only()),
            Err(Error::Locked { .. })
        ));
    }
    // Both gone: a writer opens.
    Log::open_with(dir.path(), options()).unwrap();
}
