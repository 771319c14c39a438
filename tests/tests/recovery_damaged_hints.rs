//! A hint file must never make a damaged segment look intact. A default (non-strict) open that
//! reads a sealed segment's hint instead of scanning it must end up in the same state as an
//! open that scans the segment and verifies every record's checksum: it must not panic, every
//! key must read the same value (or none), iteration and `len()` must agree, and a record whose
//! checksum fails must never be returned.
//!
//! Each test builds a log of 64 KiB segments with hints for every sealed segment, picks one
//! record in a hinted segment, and damages it the same way in two copies of the directory: A
//! keeps its hint files, B has them deleted. A is then compared with B. Damage:
//! - the record's commit word zeroed (a hole, as if its writer had died before publishing);
//! - the same, for a record whose key has older and newer versions in other segments;
//! - one bit of its value flipped;
//! - one bit of its key flipped;
//! - one bit of its header flipped (the position field; the version field).
//!
//! (`docs/durability.md` currently documents hinted segments as not re-verified at open; a
//! default open must still never panic on them nor return a record whose checksum fails.)

use std::collections::{BTreeMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use seglog::{Log, Options, RecordKind};
use seglog_tests::{copy_log_dir, pattern, segment_path};

const SEGMENT_BYTES: u64 = 64 * 1024;
const SHIFT: u32 = SEGMENT_BYTES.trailing_zeros();
const TIMEOUT: Duration = Duration::from_secs(30);

fn options() -> Options {
    // No compaction, so every record stays where the fixture's scan found it, and both copies
    // are compared exactly as recovery left them.
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .auto_compact(false)
}

/// One record as written, found by a scan before the log was closed.
#[derive(Debug, Clone)]
struct Record {
    segment: u64,
    offset: u64,
    kind: RecordKind,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Record {
    fn file(&self, dir: &Path) -> PathBuf {
        segment_path(dir, self.segment)
    }

    /// File offset of the first byte of the value.
    fn value_offset(&self) -> u64 {
        self.offset + 40 + (self.key.len() as u64).div_ceil(8) * 8
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    /// Every record, in log order.
    records: Vec<Record>,
    /// Segments with a hint file.
    hinted: HashSet<u64>,
    /// Every key ever written, and every value written for it.
    written: BTreeMap<Vec<u8>, HashSet<Vec<u8>>>,
}

impl Fixture {
    fn build() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut written: BTreeMap<Vec<u8>, HashSet<Vec<u8>>> = BTreeMap::new();
        let log = Log::open_with(dir.path(), options()).unwrap();
        // ~2 MB over 600 keys: about 30 segments, most keys with versions in several of them.
        for i in 0..5_000u64 {
            let k = (i * 7_919) % 600;
            let key = format!("key-{k:04}").into_bytes();
            let value = pattern(k, i, 100 + (i * 37 % 500) as usize);
            log.put(&key, &value).unwrap();
            written.entry(key).or_default().insert(value);
            if i % 17 == 0 {
                log.remove(format!("key-{:04}", (i * 13) % 600).as_bytes())
                    .unwrap();
            }
        }
        log.write_hints().unwrap();
        let pinned = log.pin();
        let records: Vec<Record> = log
            .append_log()
            .scan(pinned.guard())
            .map(|r| Record {
                segment: r.position >> SHIFT,
                offset: r.position & (SEGMENT_BYTES - 1),
                kind: r.kind,
                key: r.key.to_vec(),
                value: r.value.to_vec(),
            })
            .collect();
        drop(pinned);
        drop(log);
        let hinted: HashSet<u64> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(
                |e| match seglog_format::LogFile::parse_os(&e.unwrap().file_name())? {
                    seglog_format::LogFile::Hint(id) => Some(id),
                    _ => None,
                },
            )
            .collect();
        assert!(hinted.len() >= 10, "only {} hinted segments", hinted.len());
        Self {
            dir,
            records,
            hinted,
            written,
        }
    }

    /// The records of `key`, in log order.
    fn history(&self, key: &[u8]) -> Vec<&Record> {
        self.records.iter().filter(|r| r.key == key).collect()
    }

    /// The first put in a hinted segment that is the latest record of its key and has an
    /// older put of the key in an earlier segment, so both opens have a well-defined answer.
    fn latest_put_with_older_version(&self) -> &Record {
        self.records
            .iter()
            .find(|r| {
                let history = self.history(&r.key);
                r.kind == RecordKind::Put
                    && self.hinted.contains(&r.segment)
                    && !r.value.is_empty()
                    && std::ptr::eq(*history.last().unwrap(), *r)
                    && history
                        .iter()
                        .any(|o| o.kind == RecordKind::Put && o.segment < r.segment)
            })
            .expect("the workload has such a record")
    }

    /// A put in a hinted segment whose key has a put in an earlier segment and another put in
    /// a later one.
    fn middle_put(&self) -> &Record {
        self.records
            .iter()
            .find(|r| {
                let history = self.history(&r.key);
                r.kind == RecordKind::Put
                    && self.hinted.contains(&r.segment)
                    && history
                        .iter()
                        .any(|o| o.kind == RecordKind::Put && o.segment < r.segment)
                    && history
                        .iter()
                        .any(|o| o.kind == RecordKind::Put && o.segment > r.segment)
            })
            .expect("the workload has such a record")
    }
}

/// What an open shows.
#[derive(Debug, PartialEq, Eq)]
struct State {
    /// `get` of every key ever written.
    gets: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// `iter()`, sorted.
    iter: Vec<(Vec<u8>, Vec<u8>)>,
    len: usize,
}

struct Observed {
    state: State,
    hinted_segments: u64,
    corrupt: usize,
    holes: u64,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".into())
}

/// Opens `dir` and reads everything, on its own thread: a panic or a hang becomes an `Err`.
fn observe(dir: &Path, keys: &[Vec<u8>]) -> Result<Observed, String> {
    let (dir, keys) = (dir.to_path_buf(), keys.to_vec());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let phase = std::cell::Cell::new("opening");
        let result = catch_unwind(AssertUnwindSafe(|| {
            let log = Log::open_with(&dir, options()).unwrap();
            phase.set("reading (after a successful open)");
            let report = log.recovery_report().clone();
            let gets = keys.iter().map(|k| (k.clone(), log.get(k))).collect();
            let mut iter: Vec<_> = log.iter().collect();
            iter.sort();
            Observed {
                state: State {
                    gets,
                    iter,
                    len: log.len(),
                },
                hinted_segments: report.hinted_segments,
                corrupt: report.corrupt.len(),
                holes: report.holes,
            }
        }));
        let _ = tx.send(
            result.map_err(|p| format!("panicked while {}: {}", phase.get(), panic_message(&*p))),
        );
    });
    rx.recv_timeout(TIMEOUT)
        .unwrap_or_else(|_| Err(format!("did not finish within {TIMEOUT:?}")))
}

/// Applies `edits` (file offset, XOR mask) to the record's segment file in `dir`.
fn damage(dir: &Path, record: &Record, edits: &[(u64, u8)]) {
    let file = record.file(dir);
    let mut bytes = std::fs::read(&file).unwrap();
    for &(at, mask) in edits {
        bytes[at as usize] ^= mask;
    }
    std::fs::write(&file, &bytes).unwrap();
}

/// Damages `record` identically in a hinted copy (A) and a hint-less copy (B), opens both, and
/// asserts A shows exactly what B shows, and only values that were written.
fn hinted_open_matches_scan(fixture: &Fixture, record: &Record, edits: &[(u64, u8)], what: &str) {
    let keys: Vec<Vec<u8>> = fixture.written.keys().cloned().collect();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy_log_dir(fixture.dir.path(), a.path(), true);
    copy_log_dir(fixture.dir.path(), b.path(), false);
    damage(a.path(), record, edits);
    damage(b.path(), record, edits);
    let context = format!(
        "{what}: record of {:?} at segment {} offset {}",
        String::from_utf8_lossy(&record.key),
        record.segment,
        record.offset
    );

    // The scanning open is the reference: it must see the damage (a hole or a corrupt record).
    let scanned = observe(b.path(), &keys).unwrap_or_else(|e| panic!("{context}: B {e}"));
    assert_eq!(scanned.hinted_segments, 0);
    assert!(
        scanned.corrupt + scanned.holes as usize > 0,
        "{context}: the scan did not notice the damage"
    );

    let hinted = observe(a.path(), &keys)
        .unwrap_or_else(|e| panic!("{context}: opening and reading the hinted copy {e}"));
    assert!(
        hinted.hinted_segments > 0,
        "{context}: the hinted copy read no hints, so this test tests nothing"
    );
    for (key, value) in hinted
        .state
        .gets
        .iter()
        .filter_map(|(k, v)| Some((k, v.as_ref()?)))
        .chain(hinted.state.iter.iter().map(|(k, v)| (k, v)))
    {
        assert!(
            fixture
                .written
                .get(key)
                .is_some_and(|vs| vs.contains(value)),
            "{context}: the hinted copy returned a value never written for {:?} \
             ({} bytes): a record that fails its checksum was trusted",
            String::from_utf8_lossy(key),
            value.len()
        );
    }
    let differing: Vec<String> = hinted
        .state
        .gets
        .iter()
        .filter(|(k, v)| scanned.state.gets.get(*k) != Some(v))
        .take(5)
        .map(|(k, v)| {
            format!(
                "{:?}: hinted {:?} bytes, scanned {:?} bytes",
                String::from_utf8_lossy(k),
                v.as_ref().map(Vec::len),
                scanned.state.gets[k].as_ref().map(Vec::len)
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "{context}: get differs between the hinted and the scanned copy: {differing:?}"
    );
    assert!(
        hinted.state.iter == scanned.state.iter,
        "{context}: iter() differs ({} vs {} pairs)",
        hinted.state.iter.len(),
        scanned.state.iter.len()
    );
    assert_eq!(
        hinted.state.len, scanned.state.len,
        "{context}: len() differs (hinted vs scanned)"
    );
}

#[test]
fn undamaged_hinted_and_scanned_opens_agree() {
    // The baseline: without damage, both opens show the same state, and A really uses hints.
    let fixture = Fixture::build();
    let keys: Vec<Vec<u8>> = fixture.written.keys().cloned().collect();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy_log_dir(fixture.dir.path(), a.path(), true);
    copy_log_dir(fixture.dir.path(), b.path(), false);
    let hinted = observe(a.path(), &keys).unwrap();
    let scanned = observe(b.path(), &keys).unwrap();
    assert_eq!(hinted.hinted_segments, fixture.hinted.len() as u64);
    assert_eq!(scanned.hinted_segments, 0);
    assert!(hinted.state == scanned.state);
}

/// The edits that zero the record's commit word: each byte XORed with itself.
fn zero_commit_word(fixture: &Fixture, record: &Record) -> Vec<(u64, u8)> {
    let bytes = std::fs::read(record.file(fixture.dir.path())).unwrap();
    (record.offset..record.offset + 8)
        .map(|at| (at, bytes[at as usize]))
        .collect()
}

#[test]
fn a_zeroed_commit_word_in_a_hinted_segment_reads_as_a_hole() {
    let fixture = Fixture::build();
    let record = fixture.latest_put_with_older_version().clone();
    let edits = zero_commit_word(&fixture, &record);
    hinted_open_matches_scan(&fixture, &record, &edits, "zeroed commit word");
}

#[test]
fn a_zeroed_commit_word_between_older_and_newer_versions_reads_as_a_hole() {
    let fixture = Fixture::build();
    let record = fixture.middle_put().clone();
    let edits = zero_commit_word(&fixture, &record);
    hinted_open_matches_scan(
        &fixture,
        &record,
        &edits,
        "zeroed commit word, key rewritten later",
    );
}

#[test]
fn a_flipped_value_bit_in_a_hinted_segment_is_never_returned() {
    let fixture = Fixture::build();
    let record = fixture.latest_put_with_older_version().clone();
    let at = record.value_offset() + record.value.len() as u64 / 2;
    hinted_open_matches_scan(&fixture, &record, &[(at, 0x10)], "flipped value bit");
}

#[test]
fn a_flipped_key_bit_in_a_hinted_segment_is_detected() {
    let fixture = Fixture::build();
    let record = fixture.latest_put_with_older_version().clone();
    // "key-0123": flip a bit of a digit, making it another plausible key.
    hinted_open_matches_scan(
        &fixture,
        &record,
        &[(record.offset + 40 + 6, 0x01)],
        "key bit",
    );
}

#[test]
fn a_flipped_position_bit_in_a_hinted_record_header_is_detected() {
    let fixture = Fixture::build();
    let record = fixture.latest_put_with_older_version().clone();
    // Header bytes 24..32 hold the record's own position.
    hinted_open_matches_scan(
        &fixture,
        &record,
        &[(record.offset + 24, 0x08)],
        "position bit",
    );
}

#[test]
fn a_flipped_version_bit_in_a_hinted_record_header_is_detected() {
    let fixture = Fixture::build();
    let record = fixture.latest_put_with_older_version().clone();
    // Header bytes 16..24 hold the record's version; the hint keeps the original one.
    hinted_open_matches_scan(
        &fixture,
        &record,
        &[(record.offset + 16, 0x01)],
        "version bit",
    );
}
