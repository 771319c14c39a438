//! `seglog stats`, `dump`, `export` and `verify` change nothing in the directory they inspect
//! (issue 17): every file's bytes, size, name and modification time are the same afterwards,
//! on a log closed cleanly and on one a crash left with a torn tail and a half-written hint (a
//! writable open would zero the one and remove the other). They also work while another
//! process holds the log read-only.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use seglog::{Log, Options};

fn seglog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seglog"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the seglog binary")
}

/// Every file of `dir`: name → (length, modification time, CRC32C of the bytes).
fn fingerprint(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime, u32)> {
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

fn make_log(dir: &Path) {
    let log = Log::open_with(dir, Options::default().segment_bytes(16 * 1024)).unwrap();
    for i in 0..400u32 {
        log.put(format!("key-{i}").as_bytes(), &[i as u8; 60])
            .unwrap();
    }
    log.remove(b"key-7").unwrap();
    log.close().unwrap();
}

fn inspect_all(dir: &Path) {
    let before = fingerprint(dir);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let d = dir.to_str().unwrap();
    for args in [
        vec!["stats", d],
        vec!["dump", d],
        vec!["dump", d, "--json"],
        vec!["dump", d, "--key", "key-3"],
        vec!["export", d],
        vec!["verify", d],
        vec!["verify", d, "--json"],
    ] {
        let output = seglog(&args);
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "seglog {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            fingerprint(dir),
            before,
            "seglog {args:?} changed the directory"
        );
    }
}

#[test]
fn inspecting_a_clean_log_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    inspect_all(dir.path());
}

#[test]
fn inspecting_a_crashed_log_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    // What a crash can leave: bytes after the tail's last record, a half-written hint.
    let tail = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&tail).unwrap();
    let end = bytes.len() - 256;
    bytes[end..end + 48].fill(0x5A);
    std::fs::write(&tail, &bytes).unwrap();
    std::fs::write(dir.path().join(format!("{:016x}.hint.tmp", 0)), b"half").unwrap();
    inspect_all(dir.path());
}

#[test]
fn inspecting_works_beside_a_read_only_open() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    let held = Log::open_with(dir.path(), Options::default().read_only(true)).unwrap();
    let output = seglog(&["stats", dir.path().to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    drop(held);
}
