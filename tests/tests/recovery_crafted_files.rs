//! Files no seglog wrote, crafted to pass every checksum: an open refuses them or reads around
//! them with a clear error or report, never a panic, a hang or an absurd allocation.
//!
//! Random damage (`recovery_corruption.rs`) almost never passes a CRC; these files do, because
//! CRCs are not secret: a segment with an id no log reaches, two segments further apart than
//! the directory can hold at once, a hint whose checksums are right but whose entries lie about
//! the records, a hint header claiming billions of entries, and a record whose version is ahead
//! of its position (it would win every comparison, so a put or remove of its key would retry
//! forever).

use std::collections::BTreeMap;
use std::path::Path;

use seglog::{Error, Log, Options};
use seglog_format::{HintEntry, HintWriter, RecordKind, SegmentHeader, crc32c, encode_record};
use seglog_tests::{hint_path, segment_path};

const SEGMENT_BYTES: u64 = 4096;

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .prefault(false)
        .auto_compact(false)
}

/// A segment file for `id` holding only a header.
fn write_empty_segment(dir: &Path, id: u64, salt: u32) {
    let mut bytes = vec![0u8; SEGMENT_BYTES as usize];
    let header = SegmentHeader::new(id, SEGMENT_BYTES, salt);
    bytes[..header.as_bytes().len()].copy_from_slice(header.as_bytes());
    std::fs::write(segment_path(dir, id), bytes).unwrap();
}

/// A small log: `key-i` -> `value-i`, over a few segments, closed. Returns its state.
fn small_log(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    small_log_with(dir, options())
}

fn small_log_with(dir: &Path, options: Options) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let log = Log::open_with(dir, options).unwrap();
    for i in 0..60u32 {
        log.put(
            format!("key-{i}").as_bytes(),
            format!("value-{i:0>100}").as_bytes(),
        )
        .unwrap();
    }
    log.iter().collect()
}

#[test]
fn a_segment_id_no_log_reaches_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    small_log(dir.path());
    let id = u64::MAX >> 4;
    write_empty_segment(dir.path(), id, 7);
    match Log::open_with(dir.path(), options()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, segment_path(dir.path(), id)),
        other => panic!("expected Corrupt naming the segment, got {other:?}"),
    }
}

#[test]
fn segments_further_apart_than_the_directory_holds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    small_log(dir.path());
    // With max_segments(16) the directory holds 16 segments at once: ids 0 and 1000 cannot both
    // be live.
    write_empty_segment(dir.path(), 1000, 7);
    match Log::open_with(dir.path(), options().max_segments(16)) {
        Err(Error::Corrupt { path, reason, .. }) => {
            assert_eq!(path, segment_path(dir.path(), 1000));
            assert!(reason.contains("span"), "{reason}");
        }
        other => panic!("expected Corrupt naming the segment, got {other:?}"),
    }
}

/// Writes a hint for sealed segment 0 with valid checksums (its segment CRC included) whose
/// entries are `entries`.
fn write_lying_hint(dir: &Path, entries: &[HintEntry<'_>]) {
    let segment = std::fs::read(segment_path(dir, 0)).unwrap();
    let salt = SegmentHeader::decode(&segment[..64]).unwrap().salt();
    let mut writer = HintWriter::new(0, salt);
    for entry in entries {
        writer.push(entry);
    }
    std::fs::write(hint_path(dir, 0), writer.finish(crc32c(&segment), 0)).unwrap();
}

#[test]
fn a_hint_whose_entries_lie_is_ignored_and_the_segment_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let state = small_log(dir.path());
    // The first record of segment 0 is `key-0` at offset 64; the hint says it is another key,
    // with another version, and adds an entry in the middle of a record.
    write_lying_hint(
        dir.path(),
        &[
            HintEntry {
                offset: 64,
                record_bytes: 160,
                version: 64,
                kind: RecordKind::Put,
                key: b"not-key-0",
            },
            HintEntry {
                offset: 232,
                record_bytes: 160,
                version: 1 << 40,
                kind: RecordKind::Tombstone,
                key: b"key-1",
            },
        ],
    );
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_eq!(
        log.recovery_report().hinted_segments,
        0,
        "the hint is not used"
    );
    let after: BTreeMap<_, _> = log.iter().collect();
    assert_eq!(after, state, "the state is the scan's");
    assert!(log.get(b"not-key-0").is_none());
    assert!(
        !hint_path(dir.path(), 0).exists(),
        "the lying hint is removed"
    );
}

#[test]
fn a_hint_header_claiming_billions_of_entries_sizes_nothing() {
    // Large segments: the most records a 64 MiB segment could hold (1.6 million) is no bound
    // worth having, so only the hint file's own length can keep the count honest.
    let options = || options().segment_bytes(64 << 20);
    let dir = tempfile::tempdir().unwrap();
    let state = small_log_with(dir.path(), options());
    write_lying_hint(dir.path(), &[]);
    let path = hint_path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    // The entry count, with the header CRC recomputed so only the whole-file checks see it.
    bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32c(&bytes[..36]);
    bytes[36..40].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();

    let log = Log::open_with(dir.path(), options()).unwrap();
    let stats = log.stats();
    assert!(
        stats.index_capacity <= 1 << 12,
        "the index was sized for records that do not exist: {} slots",
        stats.index_capacity
    );
    let after: BTreeMap<_, _> = log.iter().collect();
    assert_eq!(after, state);
}

#[test]
fn a_record_whose_version_is_ahead_of_its_position_is_reported_not_installed() {
    let dir = tempfile::tempdir().unwrap();
    let state = small_log(dir.path());
    let path = segment_path(dir.path(), 0);
    let mut segment = std::fs::read(&path).unwrap();
    let salt = SegmentHeader::decode(&segment[..64]).unwrap().salt();
    // Replace the first record (`key-0`, 160 bytes at 64) with a valid tombstone of `key-0`
    // claiming the highest version there is, padded with an aborted-size gap of the same length.
    let tombstone = encode_record(RecordKind::Tombstone, b"key-0", b"", u64::MAX, 64, salt)
        .expect("a tombstone encodes");
    segment[64..64 + tombstone.len()].copy_from_slice(&tombstone);
    // The rest of the old record's bytes stay: recovery searches past them for the next record.
    std::fs::write(&path, &segment).unwrap();

    let log = Log::open_with(dir.path(), options()).unwrap();
    let report = log.recovery_report();
    assert!(
        report
            .corrupt
            .iter()
            .any(|d| d.path == path && d.offset == 64 && d.reason.contains("ahead")),
        "the record is reported: {report:?}"
    );
    // `key-0` lost its only record; everything else is intact, and writes of `key-0` finish.
    let mut expected = state;
    expected.remove(b"key-0".as_slice());
    let after: BTreeMap<_, _> = log.iter().collect();
    assert_eq!(after, expected);
    log.put(b"key-0", b"again").unwrap();
    assert_eq!(log.get(b"key-0").as_deref(), Some(&b"again"[..]));
    assert!(log.remove(b"key-0").unwrap());
    assert!(log.get(b"key-0").is_none());
}

#[test]
fn a_hint_whose_segment_is_gone_is_removed_at_open() {
    // What a crash leaves when a hint is renamed into place just as compaction deletes its
    // segment: a hint nobody would ever read or remove.
    let dir = tempfile::tempdir().unwrap();
    let state = small_log(dir.path());
    write_lying_hint(dir.path(), &[]);
    let orphan = hint_path(dir.path(), 77);
    std::fs::rename(hint_path(dir.path(), 0), &orphan).unwrap();
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert!(!orphan.exists(), "the orphan hint is removed");
    let after: BTreeMap<_, _> = log.iter().collect();
    assert_eq!(after, state);
}
