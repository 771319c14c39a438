//! Version 1 hint files are ignored and replaced: a log whose sealed segments have hints in the
//! format before the whole-segment checksum (a 32-byte header, written up to `fbf35da`) opens
//! to exactly the state and report of the same log without hints; no v1 hint is used
//! (`hinted_segments == 0`) and every one is removed at open; `write_hints` then writes
//! version 2 hints, and the next open uses them.
//!
//! The fixture `tests/fixtures/v1-hints` was made by `generate_v1_hints_fixture` (ignored; run
//! it with `--ignored` to rebuild it, then commit the result, as for `recovery_fixtures.rs`):
//! a log written by this build, its hints written by `write_hints` and then rewritten by
//! [`V1HintWriter`], the v1 writer of `fbf35da:log-format/src/hint.rs` reimplemented. Both
//! versions list the same entries, encoded alike; only the header differs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use seglog::{Log, Options, RecoveryReport};
use seglog_format::{
    HINT_MAGIC, HINT_TRAILER, HintEntry, HintError, RecordKind, SegmentHeader, align8, crc32c,
    decode_hint,
};
use seglog_tests::{copy_fixture, files_with_extension, fixture_dir, pattern, segment_path};

const SEGMENT_BYTES: u64 = 4096;
const FIXTURE: &str = "v1-hints";
/// Byte offset of a hint file's format version, in every version.
const VERSION_OFFSET: usize = 8;

const NOTES: &str = "\
A log of 4 KiB segments whose sealed segments have hint files in format version 1 (a 32-byte
header: magic, version = 1, entry count, segment id, salt, CRC32C of bytes 0..28; then the
entries, the body CRC and the trailer), the format written up to commit fbf35da.

Made by `generate_v1_hints_fixture` in tests/tests/recovery_v1_hints.rs (ignored; run
`cargo test --release -p seglog-tests --test recovery_v1_hints -- --ignored
generate_v1_hints_fixture`): 100 puts over 40 keys and 3 removes written by seglog, then
`write_hints` (version 2), then each hint rewritten with the same entries by the version 1
writer that test reimplements. The segments' salts are random, so a rebuild changes every
file. This file is not part of the log: an open reports it as a foreign file.
";

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .prefault(false)
        .auto_compact(false)
}

/// The operations the fixture was written with, in order: `(key, Some(value))` puts,
/// `(key, None)` removes. 100 puts over keys 0..40; key-07 and key-31 removed and put again,
/// key-39 removed for good.
fn ops() -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut ops = Vec::new();
    for i in 0..100u64 {
        ops.push((
            format!("key-{:02}", i % 40).into_bytes(),
            Some(pattern(12, i, (i * 13 % 150) as usize)),
        ));
        let removed = match i {
            45 => 7,
            70 => 31,
            90 => 39,
            _ => continue,
        };
        ops.push((format!("key-{removed:02}").into_bytes(), None));
    }
    ops
}

fn expected() -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut state = BTreeMap::new();
    for (key, value) in ops() {
        match value {
            Some(value) => state.insert(key, value),
            None => state.remove(&key),
        };
    }
    state
}

/// The v1 hint writer of `fbf35da`: a 32-byte header whose CRC covers bytes 0..28, no segment
/// checksum and no filler count.
struct V1HintWriter {
    bytes: Vec<u8>,
    count: u32,
}

impl V1HintWriter {
    fn new(segment_id: u64, salt: u32) -> Self {
        let mut bytes = Vec::with_capacity(4096);
        bytes.extend_from_slice(&HINT_MAGIC);
        bytes.extend_from_slice(&1u32.to_le_bytes()); // format_version
        bytes.extend_from_slice(&0u32.to_le_bytes()); // entry_count, set by `finish`
        bytes.extend_from_slice(&segment_id.to_le_bytes());
        bytes.extend_from_slice(&salt.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes()); // header_crc, set by `finish`
        Self { bytes, count: 0 }
    }

    fn push(&mut self, entry: &HintEntry<'_>) {
        assert!(matches!(
            entry.kind,
            RecordKind::Put | RecordKind::Tombstone
        ));
        self.bytes.extend_from_slice(&entry.offset.to_le_bytes());
        self.bytes
            .extend_from_slice(&entry.record_bytes.to_le_bytes());
        self.bytes.extend_from_slice(&entry.version.to_le_bytes());
        self.bytes.extend_from_slice(&[entry.kind as u8, 0, 0, 0]);
        self.bytes
            .extend_from_slice(&(entry.key.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(entry.key);
        let padded = align8(entry.key.len() as u64) as usize;
        self.bytes
            .resize(self.bytes.len() + padded - entry.key.len(), 0);
        self.count += 1;
    }

    fn finish(mut self) -> Vec<u8> {
        self.bytes[12..16].copy_from_slice(&self.count.to_le_bytes());
        let header_crc = crc32c(&self.bytes[..28]);
        self.bytes[28..32].copy_from_slice(&header_crc.to_le_bytes());
        let body_crc = crc32c(&self.bytes);
        self.bytes.extend_from_slice(&body_crc.to_le_bytes());
        self.bytes.extend_from_slice(&HINT_TRAILER.to_le_bytes());
        self.bytes
    }
}

/// The segment id a hint file is named for.
fn hint_segment_id(hint: &Path) -> u64 {
    let stem = hint.file_stem().unwrap().to_str().unwrap();
    u64::from_str_radix(stem, 16).unwrap()
}

fn salt_of_segment(dir: &Path, id: u64) -> u32 {
    let bytes = std::fs::read(segment_path(dir, id)).unwrap();
    SegmentHeader::decode(&bytes).unwrap().salt()
}

fn hint_version(hint: &Path) -> u32 {
    let bytes = std::fs::read(hint).unwrap();
    u32::from_le_bytes(
        bytes[VERSION_OFFSET..VERSION_OFFSET + 4]
            .try_into()
            .unwrap(),
    )
}

fn file_names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// `report` with every path cut to its file name, so that opens of two copies compare equal.
fn without_dirs(report: &RecoveryReport) -> RecoveryReport {
    let mut report = report.clone();
    let strip = |paths: &mut Vec<PathBuf>| {
        for path in paths.iter_mut() {
            *path = PathBuf::from(path.file_name().unwrap());
        }
    };
    strip(&mut report.foreign_files);
    strip(&mut report.removed_partial_segments);
    strip(&mut report.removed_empty_segments);
    for damage in &mut report.corrupt {
        damage.path = PathBuf::from(damage.path.file_name().unwrap());
    }
    report
}

#[test]
#[ignore = "rebuilds tests/fixtures/v1-hints; run by hand"]
fn generate_v1_hints_fixture() {
    let dir = fixture_dir(FIXTURE);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = Log::open_with(&dir, options()).unwrap();
    for (key, value) in ops() {
        match value {
            Some(value) => {
                log.put(&key, &value).unwrap();
            }
            None => {
                log.remove(&key).unwrap();
            }
        }
    }
    log.write_hints().unwrap();
    drop(log);
    let _ = std::fs::remove_file(dir.join(seglog_format::LOCK_FILE_NAME));
    let hints = files_with_extension(&dir, "hint");
    assert!(hints.len() >= 3, "only {} sealed segments", hints.len());
    for path in hints {
        let id = hint_segment_id(&path);
        let salt = salt_of_segment(&dir, id);
        let v2 = std::fs::read(&path).unwrap();
        let hint = decode_hint(&v2, id, salt).unwrap();
        let mut v1 = V1HintWriter::new(id, salt);
        for entry in hint.entries() {
            v1.push(&entry);
        }
        std::fs::write(&path, v1.finish()).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), NOTES).unwrap();
}

/// Checks that `bytes` is a complete, valid v1 hint of segment `id` with `salt`, as the v1
/// reader of `fbf35da` checked it (so the test below is about real v1 hints, not damaged ones).
fn assert_valid_v1_hint(bytes: &[u8], id: u64, salt: u32) {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let end = bytes.len();
    assert!(end >= 40, "segment {id}: a hint of {end} bytes");
    assert_eq!(bytes[..8], HINT_MAGIC, "segment {id}");
    assert_eq!(u32_at(8), 1, "segment {id}: version");
    assert!(u32_at(12) > 0, "segment {id}: no entries");
    assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), id);
    assert_eq!(u32_at(24), salt, "segment {id}: salt");
    assert_eq!(crc32c(&bytes[..28]), u32_at(28), "segment {id}: header CRC");
    assert_eq!(
        crc32c(&bytes[..end - 8]),
        u32_at(end - 8),
        "segment {id}: body CRC"
    );
    assert_eq!(u32_at(end - 4), HINT_TRAILER, "segment {id}: trailer");
}

#[test]
fn v1_hints_are_ignored_removed_and_replaced_by_v2() {
    let work = copy_fixture(FIXTURE);
    let dir = work.path();
    let v1_hints = files_with_extension(dir, "hint");
    assert!(
        v1_hints.len() >= 3,
        "the fixture has {} hints",
        v1_hints.len()
    );
    for hint in &v1_hints {
        let id = hint_segment_id(hint);
        let salt = salt_of_segment(dir, id);
        let bytes = std::fs::read(hint).unwrap();
        assert_valid_v1_hint(&bytes, id, salt);
        assert_eq!(
            decode_hint(&bytes, id, salt).map(|_| ()),
            Err(HintError::UnsupportedVersion(1))
        );
    }
    // The same log without its hints: what the open must give.
    let hintless = copy_fixture(FIXTURE);
    for hint in files_with_extension(hintless.path(), "hint") {
        std::fs::remove_file(hint).unwrap();
    }
    let scanned = Log::open_with(hintless.path(), options()).unwrap();
    let want_report = without_dirs(scanned.recovery_report());
    assert_eq!(want_report.hinted_segments, 0);
    assert!(
        want_report.corrupt.is_empty() && want_report.holes == 0,
        "{want_report:?}"
    );
    assert_eq!(file_names(&want_report.foreign_files), ["notes.txt"]);
    assert_eq!(scanned.iter().collect::<BTreeMap<_, _>>(), expected());
    drop(scanned);

    let log = Log::open_with(dir, options()).unwrap();
    let report = log.recovery_report();
    assert_eq!(report.hinted_segments, 0, "a v1 hint was used: {report:?}");
    assert_eq!(without_dirs(report), want_report);
    assert_eq!(log.iter().collect::<BTreeMap<_, _>>(), expected());
    let left: Vec<_> = v1_hints.iter().filter(|h| h.exists()).collect();
    assert!(left.is_empty(), "v1 hints left after the open: {left:?}");

    // New hints are version 2, one for each sealed segment that had a v1 hint.
    log.write_hints().unwrap();
    let new_hints = files_with_extension(dir, "hint");
    assert_eq!(file_names(&new_hints), file_names(&v1_hints));
    for hint in &new_hints {
        assert_eq!(hint_version(hint), 2, "{hint:?}");
    }
    drop(log);

    // And the next open reads them instead of scanning.
    let log = Log::open_with(dir, options()).unwrap();
    let report = log.recovery_report();
    assert_eq!(report.hinted_segments, new_hints.len() as u64, "{report:?}");
    assert!(report.hinted_segments > 0);
    assert!(report.corrupt.is_empty(), "{report:?}");
    assert_eq!(log.iter().collect::<BTreeMap<_, _>>(), expected());
    assert_eq!(log.len(), expected().len());
}
