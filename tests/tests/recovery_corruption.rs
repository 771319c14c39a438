//! Corruption: thousands of random bit flips, truncations, zeroed pages and garbage files across
//! a populated directory. Opening never panics, every value returned is one that was written
//! for its key, and every record a flip damaged is reported (or, strict, refused by name).
//!
//! `SEGLOG_CORRUPTION_ROUNDS=N` runs N rounds (default 600, about 2,500 bit flips).

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use seglog::{Error, Log, Options};
use seglog_format::LogFile;
use seglog_tests::{SplitMix64, copy_log_dir, files_with_extension, pattern, segment_path};

const SEGMENT_BYTES: u64 = 16 * 1024;

fn options() -> Options {
    // No compaction: the records a flip damages must stay where the pristine scan found them.
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .auto_compact(false)
}

/// Bytes a reader relies on, per segment file: (record offset, covered ranges).
type Coverage = HashMap<PathBuf, Vec<(u64, Vec<(u64, u64)>)>>;

struct Pristine {
    dir: tempfile::TempDir,
    written: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    coverage: Coverage,
    keys: Vec<Vec<u8>>,
}

fn build_pristine() -> Pristine {
    let dir = tempfile::tempdir().unwrap();
    let mut written: HashMap<Vec<u8>, HashSet<Vec<u8>>> = HashMap::new();
    {
        let log = Log::open_with(dir.path(), options()).unwrap();
        for i in 0..1_500u64 {
            let key = format!("key-{}", i % 400).into_bytes();
            let value = pattern(1, i, (i * 7 % 900) as usize + 1);
            log.put(&key, &value).unwrap();
            written.entry(key).or_default().insert(value);
            if i % 11 == 0 {
                log.remove(format!("key-{}", (i * 3) % 400).as_bytes())
                    .unwrap();
            }
        }
    }
    let log = Log::open_with(dir.path(), options()).unwrap();
    let shift = SEGMENT_BYTES.trailing_zeros();
    let mut coverage: Coverage = HashMap::new();
    let pinned = log.pin();
    for record in log.append_log().scan(pinned.guard()) {
        let file = segment_path(dir.path(), record.position >> shift);
        let offset = record.position & (SEGMENT_BYTES - 1);
        let key_len = record.key.len() as u64;
        let value_offset = 40 + key_len.div_ceil(8) * 8;
        let ranges = vec![
            (offset, offset + 40 + key_len),
            (
                offset + value_offset,
                offset + value_offset + record.value.len() as u64,
            ),
        ];
        coverage.entry(file).or_default().push((offset, ranges));
    }
    drop(pinned);
    drop(log);
    // Without hints every segment is verified at open (hinted segments are trusted; see
    // docs/durability.md), which is what this test is about. Removed last: every open above
    // may have written some in the background.
    for hint in files_with_extension(dir.path(), "hint") {
        std::fs::remove_file(hint).unwrap();
    }
    let keys = written.keys().cloned().collect();
    Pristine {
        dir,
        written,
        coverage,
        keys,
    }
}

#[derive(Debug)]
enum Mutation {
    /// (file, byte offset, bit)
    Flips(Vec<(PathBuf, u64, u8)>),
    Truncate(PathBuf, u64),
    ZeroPage(PathBuf, u64),
    Garbage(PathBuf),
}

fn mutate(dir: &Path, rng: &mut SplitMix64) -> Mutation {
    let files = files_with_extension(dir, "seg");
    let file = files[rng.range(0, files.len() as u64 - 1) as usize].clone();
    match rng.range(0, 9) {
        0..=5 => {
            let count = rng.range(1, 12);
            let mut flips = Vec::new();
            for _ in 0..count {
                let file = files[rng.range(0, files.len() as u64 - 1) as usize].clone();
                let mut bytes = std::fs::read(&file).unwrap();
                // Flip in the record area mostly, sometimes in the segment header.
                let at = rng.range(0, bytes.len() as u64 - 1);
                let bit = rng.range(0, 7) as u8;
                bytes[at as usize] ^= 1 << bit;
                std::fs::write(&file, &bytes).unwrap();
                flips.push((file, at, bit));
            }
            Mutation::Flips(flips)
        }
        6 => {
            let len = rng.range(0, SEGMENT_BYTES - 1);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .set_len(len)
                .unwrap();
            Mutation::Truncate(file, len)
        }
        7 => {
            let page = rng.range(0, SEGMENT_BYTES / 4096 - 1) * 4096;
            let mut bytes = std::fs::read(&file).unwrap();
            bytes[page as usize..page as usize + 4096].fill(0);
            std::fs::write(&file, &bytes).unwrap();
            Mutation::ZeroPage(file, page)
        }
        _ => {
            let name = match rng.range(0, 2) {
                0 => LogFile::Segment(0xF000 + rng.range(0, 100)).name(),
                1 => format!("junk-{}.dat", rng.next_u64()),
                _ => LogFile::Hint(rng.range(0, 3)).name(),
            };
            let len = rng.range(0, 3 * 4096) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            Mutation::Garbage(path)
        }
    }
}

/// Records whose covered bytes a flip hit: (file, record offset).
fn damaged_records(
    pristine: &Pristine,
    work: &Path,
    flips: &[(PathBuf, u64, u8)],
) -> HashSet<(PathBuf, u64)> {
    let mut damaged = HashSet::new();
    let mut flipped: HashMap<(PathBuf, u64), u8> = HashMap::new();
    for (file, at, bit) in flips {
        *flipped.entry((file.clone(), *at)).or_default() ^= 1 << bit;
    }
    for ((file, at), mask) in flipped {
        if mask == 0 {
            continue; // Two flips of the same bit cancel out.
        }
        let name = file.file_name().unwrap();
        let Some(records) = pristine.coverage.get(&pristine.dir.path().join(name)) else {
            continue;
        };
        for (offset, ranges) in records {
            if ranges.iter().any(|&(a, b)| (a..b).contains(&at)) {
                damaged.insert((work.join(name), *offset));
            }
        }
    }
    damaged
}

fn check_values(log: &Log, pristine: &Pristine, what: &str) {
    for key in &pristine.keys {
        if let Some(value) = log.get(key) {
            assert!(
                pristine.written[key].contains(&value),
                "{what}: {:?} returned a value that was never written",
                String::from_utf8_lossy(key)
            );
        }
    }
    for (key, value) in log.iter() {
        let allowed = pristine.written.get(&key);
        assert!(
            allowed.is_some_and(|a| a.contains(&value)),
            "{what}: iter returned an unwritten pair"
        );
    }
}

#[test]
fn random_corruption_never_panics_and_never_returns_wrong_values() {
    let rounds: u64 = std::env::var("SEGLOG_CORRUPTION_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(600);
    let pristine = build_pristine();
    let mut rng = SplitMix64::new(0xBAD_5EED);
    let (mut flips_total, mut reported_total) = (0usize, 0usize);
    for round in 0..rounds {
        let work = tempfile::tempdir().unwrap();
        copy_log_dir(pristine.dir.path(), work.path(), true);
        let mutation = mutate(work.path(), &mut rng);
        let what = format!("round {round} ({mutation:?})");
        let opened = catch_unwind(AssertUnwindSafe(|| Log::open_with(work.path(), options())))
            .unwrap_or_else(|_| panic!("{what}: open panicked"));
        let log = match opened {
            Ok(log) => log,
            // A garbage file posing as a segment of another size is refused with a clear error.
            Err(Error::Corrupt { path, .. }) if matches!(&mutation, Mutation::Garbage(g) if *g == path) =>
            {
                continue;
            }
            Err(error) => panic!("{what}: open failed: {error}"),
        };
        check_values(&log, &pristine, &what);
        let report = log.recovery_report().clone();
        match &mutation {
            Mutation::Flips(flips) => {
                flips_total += flips.len();
                for (file, offset) in damaged_records(&pristine, work.path(), flips) {
                    let header_hit = report
                        .corrupt
                        .iter()
                        .any(|d| d.path == file && d.offset == 0 && d.reason.contains("header"));
                    let reported = header_hit
                        || report.corrupt.iter().any(|d| {
                            d.path == file && (d.offset..d.offset + d.bytes).contains(&offset)
                        });
                    assert!(
                        reported,
                        "{what}: damaged record {file:?}@{offset} not reported: {report:?}"
                    );
                    reported_total += 1;
                }
            }
            Mutation::ZeroPage(file, page) => {
                let name = file.file_name().unwrap();
                let hit = pristine
                    .coverage
                    .get(&pristine.dir.path().join(name))
                    .is_some_and(|records| {
                        records.iter().any(|(_, ranges)| {
                            ranges.iter().any(|&(a, b)| a < page + 4096 && *page < b)
                        })
                    });
                if hit {
                    assert!(
                        !report.corrupt.is_empty()
                            || report.holes > 0
                            || report.bytes_truncated > 0,
                        "{what}: zeroed records went unreported: {report:?}"
                    );
                }
            }
            Mutation::Truncate(file, len) => {
                let reported = report.corrupt.iter().any(|d| d.path == *file)
                    || report.removed_partial_segments.contains(file);
                assert!(
                    reported || *len >= SEGMENT_BYTES,
                    "{what}: truncation unreported: {report:?}"
                );
            }
            Mutation::Garbage(path) => {
                // A bad hint is ignored (and rewritten by the background thread); anything
                // else is reported, or removed if it is a segment that never got a header.
                let is_hint = path.extension().is_some_and(|e| e == "hint");
                let aside = path.with_extension("seg.corrupt");
                assert!(
                    is_hint
                        || report.foreign_files.contains(path)
                        || report.foreign_files.contains(&aside)
                        || report.removed_partial_segments.contains(path),
                    "{what}: garbage file not reported: {report:?}"
                );
            }
        }
        // Writing after recovery works, and a second open agrees with the first.
        log.put(b"after-recovery", b"ok").unwrap();
        let first: HashMap<_, _> = log.iter().collect();
        drop(log);
        let log = Log::open_with(work.path(), options()).unwrap();
        let second: HashMap<_, _> = log.iter().collect();
        assert_eq!(
            first, second,
            "{what}: a second open disagrees with the first"
        );
        assert_eq!(log.get(b"after-recovery").unwrap(), b"ok");
    }
    eprintln!(
        "{rounds} rounds, {flips_total} bit flips, {reported_total} damaged records all reported"
    );
}

#[test]
fn strict_open_names_the_file_and_offset() {
    let pristine = build_pristine();
    let work = tempfile::tempdir().unwrap();
    copy_log_dir(pristine.dir.path(), work.path(), true);
    // Flip a bit in the value of the first record of the second segment.
    let (file, records) = pristine
        .coverage
        .iter()
        .find(|(f, _)| f.file_name().unwrap().to_string_lossy().ends_with("01.seg"))
        .unwrap();
    let (offset, ranges) = &records[0];
    let target = work.path().join(file.file_name().unwrap());
    let mut bytes = std::fs::read(&target).unwrap();
    bytes[ranges[1].0 as usize] ^= 0x10;
    std::fs::write(&target, &bytes).unwrap();

    match Log::open_with(work.path(), options().strict(true)) {
        Err(Error::Corrupt {
            path,
            offset: at,
            reason,
        }) => {
            assert_eq!(path, target);
            assert_eq!(at, *offset);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("strict open should refuse, got {other:?}"),
    }
    // Refusing changed nothing: the default open still finds and reports the same record.
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    let log = Log::open_with(work.path(), options()).unwrap();
    assert_eq!(log.recovery_report().corrupt.len(), 1);
    assert_eq!(log.recovery_report().corrupt[0].offset, *offset);
    check_values(&log, &pristine, "after strict refusal");
}
