//! `seglog export` then `seglog import` into a new directory round-trips every live key and
//! value byte for byte: 100k keys (`SEGLOG_EXPORT_KEYS` for another count), binary and text,
//! empty ones, overwritten and removed ones; and `seglog checkpoint` copies a log that opens
//! with the same contents.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use seglog::{Log, Options};

fn seglog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seglog"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the seglog binary")
}

fn contents(dir: &std::path::Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    Log::open(dir).unwrap().iter().collect()
}

#[test]
fn export_then_import_round_trips_binary_keys_and_values() {
    let keys: u64 = std::env::var("SEGLOG_EXPORT_KEYS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let root = tempfile::tempdir().unwrap();
    let source = root.path().join("source");
    let log = Log::open_with(&source, Options::default().segment_bytes(1 << 20)).unwrap();
    let mut rng = seglog_tests_rng(0xE4_0A7);
    for i in 0..keys {
        // Binary keys (not UTF-8 for most), a few text ones and the empty key.
        let key: Vec<u8> = match i % 4 {
            0 => format!("text-key-{i}").into_bytes(),
            _ => {
                let mut k = i.to_le_bytes().to_vec();
                k.push(0xFF);
                k
            }
        };
        let len = (rng() % 200) as usize;
        let value: Vec<u8> = (0..len).map(|_| rng() as u8).collect();
        log.put(&key, &value).unwrap();
    }
    log.put(b"", b"the empty key").unwrap();
    log.put(b"empty value", b"").unwrap();
    log.put("ünïcødé".as_bytes(), "välue \"quoted\"\n".as_bytes())
        .unwrap();
    for i in (0..keys).step_by(7) {
        let mut k = i.to_le_bytes().to_vec();
        k.push(0xFF);
        log.remove(&k).unwrap();
    }
    log.put(b"text-key-0", b"overwritten").unwrap();
    log.close().unwrap();
    let expected = contents(&source);

    let export = seglog(&["export", source.to_str().unwrap()]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let lines = export
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(lines, expected.len(), "one line a live key");
    let file = root.path().join("export.jsonl");
    std::fs::write(&file, &export.stdout).unwrap();

    let target = root.path().join("target");
    let import = seglog(&[
        "import",
        target.to_str().unwrap(),
        "--input",
        file.to_str().unwrap(),
        "--segment-bytes",
        "4194304",
    ]);
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let imported = contents(&target);
    assert_eq!(imported.len(), expected.len());
    assert!(imported == expected, "the import differs from the source");
    let reopened = Log::open(&target).unwrap();
    assert_eq!(reopened.stats().segment_bytes, 4 << 20);
    drop(reopened);

    // From standard input too.
    let piped = root.path().join("piped");
    let mut child = Command::new(env!("CARGO_BIN_EXE_seglog"))
        .args(["import", piped.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &export.stdout).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(contents(&piped) == expected);

    // And a checkpoint of the source holds the same.
    let copy = root.path().join("copy");
    let checkpoint = seglog(&[
        "checkpoint",
        source.to_str().unwrap(),
        copy.to_str().unwrap(),
    ]);
    assert!(
        checkpoint.status.success(),
        "{}",
        String::from_utf8_lossy(&checkpoint.stderr)
    );
    assert!(contents(&copy) == expected);
}

/// A small deterministic generator (SplitMix64).
fn seglog_tests_rng(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
