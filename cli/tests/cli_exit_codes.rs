//! Every exit code of `seglog`, as `--help` documents them: 0 clean, 1 damage found, 2 usage
//! error, bad input, or a log that cannot be opened. And `--json` output of `verify` and
//! `dump` parses, with the same verdicts.

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

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

fn make_log(dir: &Path) -> u64 {
    let log = Log::open_with(dir, Options::default().segment_bytes(64 * 1024)).unwrap();
    let first = log.put(b"key-0", b"value number 0").unwrap();
    for i in 1..100u32 {
        log.put(format!("key-{i}").as_bytes(), &[0xFF, i as u8])
            .unwrap();
    }
    log.remove(b"key-1").unwrap();
    first
}

#[test]
fn help_documents_the_exit_codes() {
    let help = seglog(&["--help"]);
    assert_eq!(code(&help), 0);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Exit codes:"), "{text}");
    assert!(
        text.contains("1  damage found") && text.contains("2  usage error"),
        "{text}"
    );
    let export = String::from_utf8_lossy(&seglog(&["export", "--help"]).stdout).into_owned();
    assert!(export.contains("log order"), "{export}");
}

#[test]
fn clean_is_0_damage_is_1_usage_and_unopenable_are_2() {
    let dir = tempfile::tempdir().unwrap();
    let position = make_log(dir.path());
    let path = dir.path().to_str().unwrap();

    // 0: clean, text and JSON.
    for args in [
        &["verify", path][..],
        &["verify", path, "--json"],
        &["dump", path],
        &["dump", path, "--json"],
        &["stats", path],
        &["export", path],
    ] {
        let output = seglog(args);
        assert_eq!(
            code(&output),
            0,
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let verify = seglog(&["verify", path, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["puts"], 100);
    assert_eq!(report["tombstones"], 1);
    let dump = seglog(&["dump", path, "--json"]);
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&dump.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0]["key"], "key-0");
    assert_eq!(records[0]["value"], "value number 0");
    assert_eq!(records[0]["kind"], "put");
    assert_eq!(records[0]["offset"], 64);
    // A value that is not UTF-8 is base64: key-2's is [0xFF, 2].
    assert_eq!(records[2]["value_b64"], "/wI=", "{}", records[2]);
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "tombstone" && r["key"] == "key-1")
    );

    // 2: usage errors (clap's and ours), a missing directory, not a log, locked.
    assert_eq!(code(&seglog(&["verify"])), 2);
    assert_eq!(code(&seglog(&["no-such-command"])), 2);
    assert_eq!(code(&seglog(&["dump", path, "--key-hex", "abc"])), 2);
    let missing = dir.path().join("missing");
    assert_eq!(code(&seglog(&["stats", missing.to_str().unwrap()])), 2);
    assert_eq!(code(&seglog(&["export", missing.to_str().unwrap()])), 2);
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        code(&seglog(&["verify", empty.path().to_str().unwrap()])),
        2
    );
    {
        let _open = Log::open(dir.path()).unwrap();
        for command in ["verify", "stats", "dump", "export"] {
            let output = seglog(&[command, path]);
            assert_eq!(code(&output), 2, "{command} on a locked log");
        }
        let dest = empty.path().join("copy");
        assert_eq!(
            code(&seglog(&["checkpoint", path, dest.to_str().unwrap()])),
            2
        );
    }
    // A checkpoint to a non-empty directory: 2, nothing written there.
    let occupied = empty.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("x"), b"x").unwrap();
    assert_eq!(
        code(&seglog(&["checkpoint", path, occupied.to_str().unwrap()])),
        2
    );

    // Bad import input: 2, with the line named.
    let bad = empty.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"key\":\"a\",\"value\":\"b\"}\n{\"key\":\"a\"}\n").unwrap();
    let target = empty.path().join("imported");
    let output = seglog(&[
        "import",
        target.to_str().unwrap(),
        "--input",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code(&output), 2);
    assert!(String::from_utf8_lossy(&output.stderr).contains("input line 2"));
    std::fs::write(&bad, "{\"key_b64\":\"!!\",\"value\":\"b\"}\n").unwrap();
    assert_eq!(
        code(&seglog(&[
            "import",
            target.to_str().unwrap(),
            "-i",
            bad.to_str().unwrap()
        ])),
        2
    );

    // 1: damage found, by verify (text and JSON), dump, export, stats, checkpoint.
    let segment = dir.path().join("0000000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[position as usize + 40 + 8 + 3] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();
    let dest = empty.path().join("copy-of-damaged");
    for args in [
        &["verify", path][..],
        &["verify", path, "--json"],
        &["dump", path],
        &["dump", path, "--json"],
        &["stats", path],
        &["export", path],
        &["checkpoint", path, dest.to_str().unwrap()],
    ] {
        let output = seglog(args);
        assert_eq!(
            code(&output),
            1,
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let verify = seglog(&["verify", path, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["corrupt"][0]["offset"], position);
    assert!(!dest.exists());
}
