//! Replaying segments: every valid record reported in log order (from a hint where the
//! segment's checksum allows), holes sealed, damage reported, the tail's torn end zeroed.

use std::fs;
use std::path::{Path, PathBuf};

use seglog_format::{
    CommitWord, RECORD_HEADER_BYTES, RecordError, RecordHeader, RecordKind, SegmentHeader,
    SegmentItem,
};

use super::RecoveryReport;
use super::report::Damage;
use crate::error::{Error, Result};
use crate::files::read_prefix;
use crate::log::{AppendLog, RecordRef};
use crate::options::Options;
use crate::segment::{FIRST_RECORD_OFFSET, Segment};
use crate::sync::epoch::Guard;

/// Installs every segment in `headers` and replays those up to the tail (`tail_index`):
/// returns where writing resumes (segment, offset) and the ids installed, in order.
#[allow(clippy::too_many_arguments)] // one call site: the steps of an open
pub(super) fn segments(
    log: &AppendLog,
    headers: Vec<(SegmentHeader, PathBuf)>,
    tail_index: usize,
    hints: &[u64],
    dir: &Path,
    options: &Options,
    report: &mut RecoveryReport,
    on_record: &mut impl FnMut(&AppendLog, &RecordRef<'_>),
    guard: &Guard,
) -> Result<((u64, u64), Vec<u64>)> {
    let segment_bytes = log.segment_bytes();
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
        log.install_recovered(segment, guard)?;
        installed.push(id);
        if i > tail_index {
            // Empty (checked above): nothing to recover.
            continue;
        }
        let Some(segment) = log.directory().get(id, guard) else {
            unreachable!("segment {id} was installed just above");
        };
        // Strict opens verify every record, so they never trust a hint.
        let hinted = !options.strict && i != tail_index && hints.contains(&id) && {
            let applied = apply_hint(log, segment, dir, on_record);
            if applied {
                report.hinted_segments += 1;
            }
            applied
        };
        let end = if hinted {
            segment_bytes
        } else {
            recover_segment(
                log,
                segment,
                i == tail_index,
                options.strict,
                report,
                on_record,
            )?
        };
        if i == tail_index {
            tail = (id, end);
        }
    }
    Ok((tail, installed))
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
                crate::log::read_record(segment, entry.offset as usize, position),
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
    let base = log.position(segment.id(), 0);
    let mut offset = FIRST_RECORD_OFFSET;
    let mut end_of_valid = FIRST_RECORD_OFFSET;
    // The walk is the one `seglog verify` uses (`seglog_format::SegmentWalk`): records, holes
    // (a zero commit word: a writer reserved and died before publishing, a normal crash
    // artifact), damage (a non-zero commit word that fails validation), and what trails the
    // last valid record. Each item is acted on before the next is read.
    while let Some(item) = seglog_format::next_item(bytes_of(0), base, segment.salt(), offset) {
        offset = item.end();
        match item {
            SegmentItem::Record { offset: at, view } => {
                match view.kind {
                    RecordKind::Put | RecordKind::Tombstone => {
                        report.records += 1;
                        log.note_recovered(view.record_bytes);
                        let position = base + at as u64;
                        on_record(log, &RecordRef::from_view(position, &view));
                    }
                    // Counted like the live log counts them, so retiring the segment later
                    // takes out exactly what was put in.
                    RecordKind::Aborted => log.note_recovered_filler(view.record_bytes.into()),
                    RecordKind::Padding => {}
                }
                end_of_valid = offset;
            }
            SegmentItem::Hole { offset: at, bytes } => {
                report.holes += 1;
                seal_aborted(log, segment, base, at, bytes);
            }
            SegmentItem::Damaged {
                offset: at,
                bytes,
                error,
            } => {
                damage(strict, report, &path, at, bytes as u64, &error)?;
                seal_aborted(log, segment, base, at, bytes);
            }
            SegmentItem::Trailing {
                offset: at,
                bytes,
                error,
                all_zero,
            } => {
                let hole = error == RecordError::Unwritten;
                if is_last {
                    if !all_zero {
                        if !hole && strict {
                            return Err(Error::Corrupt {
                                path,
                                offset: at as u64,
                                reason: error.to_string(),
                            });
                        }
                        if !hole {
                            // A published record that fails validation with nothing valid
                            // after it: a write torn by a power loss, or damage. Zeroed either
                            // way (writing resumes here), and reported.
                            report.corrupt.push(Damage {
                                path: path.clone(),
                                offset: at as u64,
                                bytes: bytes as u64,
                                reason: format!(
                                    "{error}; at the tail, after the last valid record: zeroed \
                                     as a torn write"
                                ),
                            });
                        }
                        // Unpublished or torn bytes after the last record: new writes resume
                        // here and expect zeros.
                        report.bytes_truncated += bytes as u64;
                        // SAFETY: exclusive access during recovery (see above).
                        unsafe { segment.write(at, &vec![0u8; bytes]) };
                    }
                    return Ok(end_of_valid as u64);
                }
                if hole {
                    if !all_zero {
                        report.holes += 1;
                    }
                } else {
                    damage(strict, report, &path, at, bytes as u64, &error)?;
                }
                seal(segment, at, bytes, base + at as u64, RecordKind::Padding);
                return Ok(len as u64);
            }
        }
    }
    Ok(end_of_valid as u64)
}

/// Seals a hole or damaged range of `bytes` at `offset` with an aborted record, counted like the
/// aborted records the live log writes.
fn seal_aborted(log: &AppendLog, segment: &Segment, base: u64, offset: usize, bytes: usize) {
    let position = base + offset as u64;
    if seal(segment, offset, bytes, position, RecordKind::Aborted) {
        log.note_recovered_filler(bytes as u64);
    }
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
    segment.commit(offset).store_unshared(commit);
    true
}
