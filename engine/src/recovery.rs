//! Opening a log directory: the lock, segment discovery, and the recovery scan.
//!
//! Recovery reads every segment in id order and validates every record with its CRC. Where a
//! record is missing (a *hole*: zeros left by a writer that reserved space and died before
//! publishing) or damaged, it searches forward 8 bytes at a time for the next record whose
//! position, salt and CRC all match; a value's bytes can never pass for a header, because a
//! header must name its own position and its segment's random salt. Bad ranges are sealed with
//! aborted records so that live scans pass them, and reported. In the tail segment (the last one
//! holding a record), whatever follows the last valid record is zeroed, and writing resumes
//! there: an open never abandons the rest of the tail. Empty segments after the tail (created
//! ahead of need) are kept if they follow it without a gap and removed otherwise, so every id
//! the next roll-overs need is either installed or free to create.
//!
//! A sealed segment with a hint file is read from the hint only if the whole segment still has
//! the checksum the hint recorded; otherwise it is scanned like any other, so a damaged record
//! is found and skipped exactly as without hints.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use seglog_format::{
    CommitWord, RECORD_HEADER_BYTES, RecordError, RecordHeader, RecordKind, SEGMENT_HEADER_BYTES,
    SegmentHeader, Verify, decode_record,
};

use crate::appendlog::{AppendLog, RecordRef, Storage};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::segment::{FIRST_RECORD_OFFSET, Segment, parse_segment_file_name};
use crate::sync::Ordering;

/// Name of the lock file in a log directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// The exclusive lock on a log directory, held for as long as the log is open.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { path }),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
        }
    }
}

/// A record recovery skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset of the damaged range within the file.
    pub offset: u64,
    /// Length of the range skipped.
    pub bytes: u64,
    /// What was wrong at its start.
    pub reason: String,
}

/// What [`crate::Log::open`] found and did while recovering a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files opened.
    pub segments: u64,
    /// Valid puts and tombstones read.
    pub records: u64,
    /// Unpublished reservations skipped (writers that died between reserving and publishing:
    /// a zero commit word, possibly with part of their bytes behind it).
    pub holes: u64,
    /// Corrupt records and damaged ranges skipped, with where they are.
    pub corrupt: Vec<Damage>,
    /// Bytes after the last valid record of the last segment, zeroed because they held no
    /// valid record (a torn tail).
    pub bytes_truncated: u64,
    /// Files in the directory that are not part of the log, left untouched.
    pub foreign_files: Vec<PathBuf>,
    /// Segment files that were never completely created (no valid header), removed.
    pub removed_partial_segments: Vec<PathBuf>,
    /// Empty segment files after the tail that did not follow it without a gap (left by a power
    /// loss that kept a segment created ahead of need but not the one before it), removed.
    pub removed_empty_segments: Vec<PathBuf>,
    /// Sealed segments whose records were read from their hint file instead of a scan.
    pub hinted_segments: u64,
}

/// Opens (creating if needed) the log in `dir`, calling `on_record` for every valid put and
/// tombstone in log order. Records read from a hint file come with an empty `value`.
pub(crate) fn open_dir(
    dir: &Path,
    options: &Options,
    on_start: impl FnOnce(u64),
    mut on_record: impl FnMut(&AppendLog, &RecordRef<'_>),
) -> Result<(AppendLog, RecoveryReport)> {
    options.validate()?;
    if dir.exists() && !dir.is_dir() {
        return Err(Error::NotALog {
            path: dir.to_path_buf(),
            reason: "it is a file, not a directory".into(),
        });
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let lock = DirLock::acquire(dir)?;
    let mut report = RecoveryReport::default();

    // Discover segment files.
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    let mut hints: Vec<u64> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == LOCK_FILE {
            continue;
        }
        if name.ends_with(".seg.free") {
            // A retired segment file kept for reuse: holds nothing of the log.
            let _ = fs::remove_file(&path);
            continue;
        }
        if let Some(id) = crate::hints::parse_hint_file_name(&name) {
            // Hints are checked when their segment is opened; a leftover temporary is removed.
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
            } else {
                hints.push(id);
            }
            continue;
        }
        match parse_segment_file_name(&name) {
            Some(id) if path.is_file() => found.push((id, path)),
            _ => report.foreign_files.push(path),
        }
    }
    found.sort();

    // Validate headers; settle the segment size.
    let mut segment_bytes = None;
    let mut headers = Vec::new();
    for (id, path) in found {
        match read_header(&path) {
            Ok(header) if header.segment_id() == id => {
                let size = header.segment_bytes();
                match segment_bytes {
                    None => segment_bytes = Some(size),
                    Some(s) if s != size => {
                        return Err(Error::Corrupt {
                            path,
                            offset: 24,
                            reason: format!(
                                "segment size {size} differs from the log's {s}; \
                                 the file does not belong to this log"
                            ),
                        });
                    }
                    Some(_) => {}
                }
                let len = fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
                if len < size {
                    if options.strict {
                        return Err(Error::Corrupt {
                            path,
                            offset: len,
                            reason: format!("segment truncated to {len} of {size} bytes"),
                        });
                    }
                    report.corrupt.push(Damage {
                        path: path.clone(),
                        offset: len,
                        bytes: size - len,
                        reason: format!("segment truncated to {len} of {size} bytes"),
                    });
                    // Restore the full size (zeros) so it can be mapped; what was cut is lost.
                    // Allocated, not sparse: writes through the mapping must never meet a full
                    // disk (a SIGBUS), so a disk too full for it fails the open instead.
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| Error::io(&path, e))?;
                    file.set_len(size).map_err(|e| Error::io(&path, e))?;
                    fs4::FileExt::allocate(&file, size)
                        .map_err(|e| crate::segment::map_allocation_error(path.clone(), size, e))?;
                }
                headers.push((header, path));
            }
            Ok(header) => {
                return Err(Error::Corrupt {
                    path,
                    offset: 16,
                    reason: format!(
                        "header names segment {} but the file name names {id}",
                        header.segment_id()
                    ),
                });
            }
            Err(reason) => {
                if options.strict {
                    return Err(Error::Corrupt {
                        path,
                        offset: 0,
                        reason,
                    });
                }
                match salvage_header(&path, id, segment_bytes.unwrap_or(options.segment_bytes)) {
                    // Records survive behind a damaged header: rewrite the header from them.
                    Some(header) => {
                        report.corrupt.push(Damage {
                            path: path.clone(),
                            offset: 0,
                            bytes: SEGMENT_HEADER_BYTES as u64,
                            reason: format!(
                                "bad segment header, rebuilt from its records: {reason}"
                            ),
                        });
                        segment_bytes.get_or_insert(header.segment_bytes());
                        headers.push((header, path));
                    }
                    // No record anywhere: a segment that never got past creation (or one with
                    // nothing left to save). Its id must be free for reuse.
                    None if no_records_after_header(
                        &path,
                        segment_bytes.unwrap_or(options.segment_bytes),
                    ) =>
                    {
                        fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                        report.removed_partial_segments.push(path);
                    }
                    None => {
                        let aside = path.with_extension("seg.corrupt");
                        fs::rename(&path, &aside).map_err(|e| Error::io(&path, e))?;
                        report.corrupt.push(Damage {
                            path: aside.clone(),
                            offset: 0,
                            bytes: fs::metadata(&aside).map_or(0, |m| m.len()),
                            reason: format!("bad segment header, segment set aside: {reason}"),
                        });
                        report.foreign_files.push(aside);
                    }
                }
            }
        }
    }

    let segment_bytes = segment_bytes.unwrap_or(options.segment_bytes);

    let slots = AppendLog::directory_slots(segment_bytes, options.max_segments);
    // Ids a seglog never writes (positions of such a segment would not fit in a u64), or spread
    // over more ids than the directory's ring: a foreign or crafted directory, not a log.
    let max_id = crate::appendlog::max_segment_id(segment_bytes);
    for (header, path) in &headers {
        if header.segment_id() > max_id {
            return Err(Error::Corrupt {
                path: path.clone(),
                offset: 16,
                reason: format!(
                    "segment id {:#x} is beyond {max_id:#x}, the largest a log of {segment_bytes}-byte \
                     segments can address",
                    header.segment_id()
                ),
            });
        }
    }
    if let (Some((oldest, _)), Some((newest, path))) = (headers.first(), headers.last())
        && newest.segment_id() - oldest.segment_id() >= slots
    {
        return Err(Error::Corrupt {
            path: path.clone(),
            offset: 16,
            reason: format!(
                "segment ids {} to {} span more than the {} a log of these segments holds at once; \
                 the directory was not written by seglog (or by one with a larger max_segments)",
                oldest.segment_id(),
                newest.segment_id(),
                slots
            ),
        });
    }
    // The tail is the last segment holding a record (the first, if none does). The empty ones
    // after it were created ahead of need: keep those that follow it without a gap, remove the
    // rest, or a roll-over would wait for a missing id that nobody is creating.
    let mut tail_index = headers.len().saturating_sub(1);
    while tail_index > 0 && !holds_records(&headers[tail_index].1)? {
        tail_index -= 1;
    }
    if let Some((tail_header, _)) = headers.get(tail_index) {
        let tail_id = tail_header.segment_id();
        let contiguous = headers[tail_index + 1..]
            .iter()
            .enumerate()
            .take_while(|(i, (header, _))| header.segment_id() == tail_id + 1 + *i as u64)
            .count();
        for (_, path) in headers.drain(tail_index + 1 + contiguous..) {
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            report.removed_empty_segments.push(path);
        }
    }

    let log = AppendLog::with_storage(
        Storage::Dir {
            path: dir.to_path_buf(),
            prefault: options.prefault,
        },
        segment_bytes,
        options.max_segments,
    );
    let guard = crate::sync::epoch::pin();
    if headers.is_empty() {
        on_start(0);
        log.set_recovered_tail(0, FIRST_RECORD_OFFSET as u64, 0);
        log.ensure_segment(0, &guard)?;
        drop(guard);
        log.set_lock(lock);
        return Ok((log, report));
    }

    // Count the records first (hint headers, or a walk of commit words), so the index can be
    // sized once instead of doubling, and re-reading every key, a dozen times.
    let expected_records: u64 = headers
        .iter()
        .map(|(header, path)| {
            let hinted = !options.strict && hints.contains(&header.segment_id());
            let from_hint = hinted
                .then(|| hint_record_count(dir, header.segment_id(), header.salt()))
                .flatten();
            // A hint's header is not validated yet: never trust it beyond what fits.
            let most = (segment_bytes - FIRST_RECORD_OFFSET as u64) / RECORD_HEADER_BYTES as u64;
            from_hint
                .unwrap_or_else(|| count_records(path, segment_bytes))
                .min(most)
        })
        .sum();
    on_start(expected_records);

    let first = headers[0].0.segment_id();
    let mut tail = (first, FIRST_RECORD_OFFSET as u64);
    let mut installed = Vec::with_capacity(headers.len());
    for (i, (header, path)) in headers.into_iter().enumerate() {
        let id = header.segment_id();
        // The tail and the segments after it will be written: allocate them (see `open_file`).
        let segment = Segment::open_file(path, id, segment_bytes, header.salt(), i >= tail_index)?;
        report.segments += 1;
        // Installed before its records are reported, so `on_record` can read them through the
        // log (the index resolves keys through it). Nobody else can reach the log yet.
        log.install_recovered(segment, &guard)?;
        installed.push(id);
        if i > tail_index {
            // Empty (checked above): nothing to recover.
            continue;
        }
        let Some(segment) = log.directory().get(id, &guard) else {
            unreachable!("segment {id} was installed just above");
        };
        // Strict opens verify every record, so they never trust a hint.
        let hinted = !options.strict && i != tail_index && hints.contains(&id) && {
            let applied = apply_hint(&log, segment, dir, &mut on_record);
            if applied {
                report.hinted_segments += 1;
            }
            applied
        };
        let end = if hinted {
            segment_bytes
        } else {
            recover_segment(
                &log,
                segment,
                i == tail_index,
                options.strict,
                &mut report,
                &mut on_record,
            )?
        };
        if i == tail_index {
            tail = (id, end);
        }
    }
    log.set_recovered_tail(tail.0, tail.1, first);
    drop(guard);
    // Hints of segments that are gone (a hint written while its segment was being retired, then
    // a crash): they would never be read, nor removed by anyone.
    for id in hints {
        if installed.binary_search(&id).is_err() {
            let _ = fs::remove_file(crate::hints::hint_path(dir, id));
        }
    }
    // What the previous process published may still be only in the page cache (it crashed, or
    // never synced). One syncfs makes all of it durable, so `sync` can start from the tail
    // instead of msyncing every recovered segment on its first call.
    sync_file_system(dir)?;
    log.mark_synced_to_tail();
    log.set_lock(lock);
    Ok((log, report))
}

/// Flushes every dirty page of the file system holding `dir` (Linux `syncfs`).
fn sync_file_system(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let handle = File::open(dir).map_err(|e| Error::io(dir, e))?;
    // SAFETY: syncfs takes an open descriptor and touches no memory of ours.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(Error::io(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The entry count in a hint file's header (a sizing estimate only): `None` unless the header
/// checks out for this segment, and never more entries than the file's length can hold, so a
/// damaged hint cannot make the index allocate for records that do not exist.
fn hint_record_count(dir: &Path, id: u64, salt: u32) -> Option<u64> {
    use std::io::Read;
    let mut file = File::open(crate::hints::hint_path(dir, id)).ok()?;
    let len = file.metadata().ok()?.len();
    let mut header = [0u8; seglog_format::HINT_HEADER_BYTES];
    file.read_exact(&mut header).ok()?;
    let count = seglog_format::decode_hint_header(&header, id, salt).ok()?;
    Some(u64::from(count).min(len / seglog_format::HINT_MIN_ENTRY_BYTES as u64))
}

/// Counts the records of a segment file by following commit words until the first that does
/// not decode (a sizing estimate only; the recovery scan validates).
fn count_records(path: &Path, segment_bytes: u64) -> u64 {
    let Ok(bytes) = read_prefix(path, segment_bytes) else {
        return 0;
    };
    let mut offset = FIRST_RECORD_OFFSET;
    let mut count = 0;
    while let Some(word) = bytes.get(offset..offset + 8) {
        let commit = CommitWord::from_raw(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        let Ok((kind, len)) = commit.decode() else {
            break;
        };
        if matches!(kind, RecordKind::Put | RecordKind::Tombstone) {
            count += 1;
        }
        offset += len as usize;
    }
    count
}

/// Whether a segment file holds anything after its header (a record, a hole with bytes behind
/// it, damage): only an all-zero body is empty. Reads until the first non-zero byte.
fn holds_records(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut at = 0usize;
    loop {
        let n = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(false);
        }
        let body_start = SEGMENT_HEADER_BYTES.saturating_sub(at).min(n);
        if buffer[body_start..n].iter().any(|&b| b != 0) {
            return Ok(true);
        }
        at += n;
    }
}

/// Reports a sealed segment's records from its hint file. Returns `false` (and reports nothing)
/// if the hint is missing, unreadable or does not match the segment, or the segment's bytes do
/// not have the checksum the hint recorded; the caller then scans.
fn apply_hint(
    log: &AppendLog,
    segment: &Segment,
    dir: &Path,
    on_record: &mut impl FnMut(&AppendLog, &RecordRef<'_>),
) -> bool {
    let path = crate::hints::hint_path(dir, segment.id());
    // A hint lists at most every record of its segment: anything longer is not a hint.
    let Ok(bytes) = read_prefix(&path, seglog_format::max_hint_bytes(segment.len() as u64)) else {
        return false;
    };
    let Ok(hint) = seglog_format::decode_hint(&bytes, segment.id(), segment.salt()) else {
        let _ = fs::remove_file(&path);
        return false;
    };
    // SAFETY: recovery has exclusive access to the segment (see `recover_segment`).
    let whole = unsafe { segment.slice(0, segment.len()) };
    if seglog_format::crc32c(whole) != hint.segment_crc() {
        // Some byte changed since the hint was written (damage, or pages a power loss took):
        // scan the segment, which finds and skips exactly what is damaged.
        let _ = fs::remove_file(&path);
        return false;
    }
    // Each entry must describe the record really at its offset (kind, length, version, key),
    // in order: a hint is a shortcut, never a second source of truth. The segment was just read
    // whole, so these reads of headers and keys hit the page cache.
    let mut last_end = FIRST_RECORD_OFFSET as u64;
    for entry in hint.entries() {
        let (offset, record_bytes) = (u64::from(entry.offset), u64::from(entry.record_bytes));
        let position = log.position(segment.id(), offset);
        let matches = offset >= last_end
            && record_bytes >= RECORD_HEADER_BYTES as u64
            && offset + record_bytes <= segment.len() as u64
            && matches!(
                crate::appendlog::read_record(segment, entry.offset as usize, position),
                Ok(Some(record)) if record.kind == entry.kind
                    && record.record_bytes == entry.record_bytes
                    && record.version == entry.version
                    && record.version <= position
                    && record.key == entry.key
            );
        if !matches {
            let _ = fs::remove_file(&path);
            return false;
        }
        last_end = offset + record_bytes;
    }
    if u64::from(hint.filler_bytes()) > segment.len() as u64 {
        let _ = fs::remove_file(&path);
        return false;
    }
    log.note_recovered_filler(u64::from(hint.filler_bytes()));
    for entry in hint.entries() {
        let position = log.position(segment.id(), u64::from(entry.offset));
        log.note_recovered(entry.record_bytes);
        on_record(
            log,
            &RecordRef {
                position,
                kind: entry.kind,
                version: entry.version,
                key: entry.key,
                value: &[],
                record_bytes: entry.record_bytes,
            },
        );
    }
    true
}

fn read_header(path: &Path) -> std::result::Result<SegmentHeader, String> {
    use std::io::Read;
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    let mut read = 0;
    while read < bytes.len() {
        match file.read(&mut bytes[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    SegmentHeader::decode(&bytes[..read]).map_err(|e| e.to_string())
}

/// Whether nothing but zeros follows the header area of a segment file (it never held a
/// record).
fn no_records_after_header(path: &Path, segment_bytes: u64) -> bool {
    match read_prefix(path, segment_bytes) {
        Ok(bytes) => bytes
            .get(SEGMENT_HEADER_BYTES..)
            .is_none_or(|rest| rest.iter().all(|&b| b == 0)),
        Err(_) => false,
    }
}

/// Rebuilds the header of segment `id` whose header is damaged, from the first record in it
/// that validates completely (position, CRC) under the salt it carries, and writes it back.
fn salvage_header(path: &Path, id: u64, segment_bytes: u64) -> Option<SegmentHeader> {
    // The size the log's other headers settled, or else the file's own length if it is a valid
    // segment size (the damaged header may be the first one read).
    let len = fs::metadata(path).ok()?.len();
    let segment_bytes = if len == segment_bytes || !seglog_format::valid_segment_bytes(len) {
        segment_bytes
    } else {
        len
    };
    if len != segment_bytes || !seglog_format::valid_segment_bytes(segment_bytes) {
        return None;
    }
    let mut bytes = read_prefix(path, segment_bytes).ok()?;
    let shift = segment_bytes.trailing_zeros();
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset + RECORD_HEADER_BYTES <= bytes.len() {
        let salt = u32::from_le_bytes(bytes[offset + 32..offset + 36].try_into().ok()?);
        let position = (id << shift) | offset as u64;
        if decode_at(&bytes[offset..], position, salt).is_ok() {
            let header = SegmentHeader::new(id, segment_bytes, salt);
            bytes[..SEGMENT_HEADER_BYTES].copy_from_slice(header.as_bytes());
            let file = OpenOptions::new().write(true).open(path).ok()?;
            use std::os::unix::fs::FileExt;
            file.write_all_at(header.as_bytes(), 0).ok()?;
            return Some(header);
        }
        offset += 8;
    }
    None
}

/// Recovers one segment: reports its valid records, seals bad ranges, and returns the offset
/// just past its last valid record.
fn recover_segment(
    log: &AppendLog,
    segment: &Segment,
    is_last: bool,
    strict: bool,
    report: &mut RecoveryReport,
    on_record: &mut impl FnMut(&AppendLog, &RecordRef<'_>),
) -> Result<u64> {
    let len = segment.len();
    let bytes_of = |from: usize| {
        // SAFETY: recovery holds the directory lock and the segment is not shared yet, so no
        // other thread touches it. Views are re-taken for every step and none is used after
        // `seal` or the zeroing below writes.
        unsafe { segment.slice(from, len - from) }
    };
    let path = segment.path().map(Path::to_path_buf).unwrap_or_default();
    let mut offset = FIRST_RECORD_OFFSET;
    let mut end_of_valid = FIRST_RECORD_OFFSET;
    while offset < len {
        let bytes = bytes_of(offset);
        let position = log.position(segment.id(), offset as u64);
        match decode_at(bytes, position, segment.salt()) {
            Ok(view) => {
                match view.kind {
                    RecordKind::Put | RecordKind::Tombstone => {
                        report.records += 1;
                        log.note_recovered(view.record_bytes);
                        on_record(log, &RecordRef::from_view(position, &view));
                    }
                    // Counted like the live log counts them, so retiring the segment later
                    // takes out exactly what was put in.
                    RecordKind::Aborted => log.note_recovered_filler(view.record_bytes.into()),
                    RecordKind::Padding => {}
                }
                offset += view.record_bytes as usize;
                end_of_valid = offset;
            }
            Err(first_error) => {
                // A record is at least a header long, so the next one starts that far on at least:
                // searching closer could leave a gap too short to seal.
                let next = find_next_record(log, segment, offset + RECORD_HEADER_BYTES);
                let gap_end = next.unwrap_or(len);
                let zeros = bytes_of(offset)[..gap_end - offset].iter().all(|&b| b == 0);
                // A zero commit word is a writer that reserved space and died before publishing
                // (its key and value may be partly there): a hole, a normal crash artifact. A
                // non-zero commit word that fails validation is a torn or corrupt record.
                let hole = first_error == RecordError::Unwritten;
                match next {
                    Some(next) => {
                        if hole {
                            report.holes += 1;
                        } else {
                            damage(
                                strict,
                                report,
                                &path,
                                offset,
                                (next - offset) as u64,
                                &first_error,
                            )?;
                        }
                        if seal(
                            segment,
                            offset,
                            next - offset,
                            position,
                            RecordKind::Aborted,
                        ) {
                            log.note_recovered_filler((next - offset) as u64);
                        }
                        offset = next;
                    }
                    None if is_last => {
                        if !zeros {
                            if !hole && strict {
                                return Err(Error::Corrupt {
                                    path,
                                    offset: offset as u64,
                                    reason: first_error.to_string(),
                                });
                            }
                            if !hole {
                                // A published record that fails validation with nothing valid
                                // after it: a write torn by a power loss, or damage. Zeroed
                                // either way (writing resumes here), and reported.
                                report.corrupt.push(Damage {
                                    path: path.clone(),
                                    offset: offset as u64,
                                    bytes: (len - offset) as u64,
                                    reason: format!(
                                        "{first_error}; at the tail, after the last valid record: \
                                         zeroed as a torn write"
                                    ),
                                });
                            }
                            // Unpublished or torn bytes after the last record: new writes
                            // resume here and expect zeros.
                            report.bytes_truncated += (len - offset) as u64;
                            // SAFETY: exclusive access during recovery (see above).
                            unsafe { segment.write(offset, &vec![0u8; len - offset]) };
                        }
                        return Ok(end_of_valid as u64);
                    }
                    None => {
                        if hole {
                            if !zeros {
                                report.holes += 1;
                            }
                        } else {
                            damage(
                                strict,
                                report,
                                &path,
                                offset,
                                (len - offset) as u64,
                                &first_error,
                            )?;
                        }
                        seal(segment, offset, len - offset, position, RecordKind::Padding);
                        return Ok(len as u64);
                    }
                }
            }
        }
    }
    Ok(end_of_valid as u64)
}

fn decode_at(
    bytes: &[u8],
    position: u64,
    salt: u32,
) -> std::result::Result<seglog_format::RecordView<'_>, RecordError> {
    let Some(word) = bytes.get(..8) else {
        return Err(RecordError::Truncated {
            needed: 8,
            available: bytes.len() as u64,
        });
    };
    let commit = CommitWord::from_raw(u64::from_le_bytes(word.try_into().expect("8 bytes")));
    let view = decode_record(commit, bytes, position, salt, Verify::Checksum)?;
    // A version is the position where its record was first written, and copies only move
    // forward: a version ahead of its position was never written by seglog (and would win every
    // comparison forever, so puts or removes of its key would retry without end).
    if view.kind.checksums_payload() && view.header.version() > position {
        return Err(RecordError::VersionAhead {
            version: view.header.version(),
            position,
        });
    }
    Ok(view)
}

/// At most `max` bytes from the start of the file at `path`, so a file of any size costs at
/// most a segment's worth of memory.
fn read_prefix(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    File::open(path)?.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The offset of the next valid record at or after `from`, searching 8 bytes at a time.
fn find_next_record(log: &AppendLog, segment: &Segment, from: usize) -> Option<usize> {
    let len = segment.len();
    let mut offset = from;
    while offset + 8 <= len {
        // SAFETY: exclusive access during recovery (see `recover_segment`).
        let bytes = unsafe { segment.slice(offset, len - offset) };
        let position = log.position(segment.id(), offset as u64);
        if decode_at(bytes, position, segment.salt()).is_ok() {
            return Some(offset);
        }
        offset += 8;
    }
    None
}

fn damage(
    strict: bool,
    report: &mut RecoveryReport,
    path: &Path,
    offset: usize,
    bytes: u64,
    error: &RecordError,
) -> Result<()> {
    if strict {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason: error.to_string(),
        });
    }
    report.corrupt.push(Damage {
        path: path.to_path_buf(),
        offset: offset as u64,
        bytes,
        reason: error.to_string(),
    });
    Ok(())
}

/// Covers `[offset, offset + bytes)` with one filler record so live scans pass it, and says
/// whether it did. A range shorter than a header can only be sealed at the end of the segment
/// (short padding); a shorter range elsewhere cannot arise from whole records and is left for
/// the scan to report.
fn seal(segment: &Segment, offset: usize, bytes: usize, position: u64, kind: RecordKind) -> bool {
    let commit = CommitWord::new(kind, bytes as u32);
    if bytes >= RECORD_HEADER_BYTES {
        let header = RecordHeader::filler(kind, bytes as u32, position, segment.salt());
        // SAFETY: exclusive access during recovery (see `recover_segment`).
        unsafe { segment.write(offset + RecordHeader::COMMIT_BYTES, header.body_bytes()) };
    } else if kind != RecordKind::Padding || offset + bytes != segment.len() {
        return false;
    }
    // Relaxed: recovery runs before the log is shared; publishing happens when the log is
    // handed out.
    segment
        .commit_word(offset)
        .store(commit.raw(), Ordering::Relaxed);
    true
}

impl AppendLog {
    /// Opens the append log in `dir`, creating the directory and its first segment if needed,
    /// and recovering it otherwise. The directory stays locked until the log is dropped; a
    /// second open gets [`Error::Locked`].
    pub fn open(dir: impl AsRef<Path>, options: &Options) -> Result<Self> {
        let (log, _report) = open_dir(dir.as_ref(), options, |_| {}, |_, _| {})?;
        Ok(log)
    }
}
