//! Finding what a log directory holds: segment files and hints, their headers (salvaged where
//! damaged), the segment size, ids a log can hold, and which segment is the tail.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use seglog_format::{LogFile, SEGMENT_HEADER_BYTES, SegmentHeader};

use super::RecoveryReport;

use super::report::Damage;
use crate::error::{Error, Result};
use crate::files::read_prefix;
use crate::log::AppendLog;
use crate::options::Options;

/// Segment files (id, path) in id order, and the ids that have a hint file; removes leftovers
/// (retired files kept for reuse, temporary hints) and lists foreign files in `report`.
/// Segment files found in a directory (id, path), and the ids with a hint file.
type Found = (Vec<(u64, PathBuf)>, Vec<u64>);

/// Validated segment headers with their files, and the segment size they settled (if any).
type Headers = (Vec<(SegmentHeader, PathBuf)>, Option<u64>);

pub(super) fn files(dir: &Path, report: &mut RecoveryReport, read_only: bool) -> Result<Found> {
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    let mut hints: Vec<u64> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        match LogFile::parse_os(&entry.file_name()) {
            Some(LogFile::Lock) => {}
            // A retired segment file kept for reuse, or a hint a crash left half-written: they
            // hold nothing of the log.
            Some(LogFile::FreeSegment(_) | LogFile::HintTmp(_)) => {
                if !read_only {
                    let _ = fs::remove_file(&path);
                }
            }
            // Checked when their segment is opened.
            Some(LogFile::Hint(id)) => hints.push(id),
            Some(LogFile::Segment(id)) if path.is_file() => found.push((id, path)),
            // Set aside by an earlier open, and anything else: not ours to touch.
            _ => report.foreign_files.push(path),
        }
    }
    found.sort();

    Ok((found, hints))
}

/// Validates every segment's header and settles the segment size: a damaged header is rebuilt
/// from its records where they survive; a segment that never held a record is removed; any
/// other bad one is set aside as `.seg.corrupt`. Strict opens refuse instead.
pub(super) fn headers(
    found: Vec<(u64, PathBuf)>,
    options: &Options,
    report: &mut RecoveryReport,
) -> Result<Headers> {
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
                            offset: SegmentHeader::SEGMENT_BYTES_OFFSET as u64,
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
                    if options.read_only {
                        // Read into memory whole, zeros after (`Segment::open_read_only`).
                        headers.push((header, path));
                        continue;
                    }
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
                    offset: SegmentHeader::SEGMENT_ID_OFFSET as u64,
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
                let salvaged = salvage_header(
                    &path,
                    id,
                    segment_bytes.unwrap_or(options.segment_bytes),
                    !options.read_only,
                );
                match salvaged {
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
                        if !options.read_only {
                            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                            report.removed_partial_segments.push(path);
                        }
                    }
                    None if options.read_only => {
                        report.corrupt.push(Damage {
                            path: path.clone(),
                            offset: 0,
                            bytes: fs::metadata(&path).map_or(0, |m| m.len()),
                            reason: format!(
                                "bad segment header, segment skipped (a writable open sets it \
                                 aside): {reason}"
                            ),
                        });
                    }
                    None => {
                        let aside = path.with_file_name(LogFile::CorruptSegment(id).name());
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

    Ok((headers, segment_bytes))
}

/// Refuses ids a seglog never writes (positions of such a segment would not fit in a u64), or
/// spread over more ids than the directory's ring: a foreign or crafted directory, not a log.
pub(super) fn check_ids(
    headers: &[(SegmentHeader, PathBuf)],
    segment_bytes: u64,
    options: &Options,
) -> Result<()> {
    let slots = AppendLog::directory_slots(segment_bytes, options.max_segments);
    let max_id = crate::log::max_segment_id(segment_bytes);
    for (header, path) in headers {
        if header.segment_id() > max_id {
            return Err(Error::Corrupt {
                path: path.clone(),
                offset: SegmentHeader::SEGMENT_ID_OFFSET as u64,
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
            offset: SegmentHeader::SEGMENT_ID_OFFSET as u64,
            reason: format!(
                "segment ids {} to {} span more than the {} a log of these segments holds at once; \
                 the directory was not written by seglog (or by one with a larger max_segments)",
                oldest.segment_id(),
                newest.segment_id(),
                slots
            ),
        });
    }
    Ok(())
}

/// The tail is the last segment holding a record (the first, if none does). The empty ones
/// after it were created ahead of need: keep those that follow it without a gap, remove the
/// rest, or a roll-over would wait for a missing id that nobody is creating. Returns the
/// segments kept and the tail's index among them.
pub(super) fn settle_tail(
    mut headers: Vec<(SegmentHeader, PathBuf)>,
    report: &mut RecoveryReport,
    read_only: bool,
) -> Result<(Vec<(SegmentHeader, PathBuf)>, usize)> {
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
            if !read_only {
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                report.removed_empty_segments.push(path);
            }
        }
    }
    Ok((headers, tail_index))
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
        if !seglog_format::is_all_zero(&buffer[body_start..n]) {
            return Ok(true);
        }
        at += n;
    }
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
    read_prefix(path, segment_bytes).is_ok_and(|bytes| seglog_format::is_blank_after_header(&bytes))
}

/// Rebuilds the header of segment `id` whose header is damaged, from the first record in it
/// that validates completely (position, CRC) under the salt it carries, and writes it back.
fn salvage_header(path: &Path, id: u64, segment_bytes: u64, write: bool) -> Option<SegmentHeader> {
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
    let bytes = read_prefix(path, segment_bytes).ok()?;
    let base = seglog_format::join_position(id, 0, segment_bytes);
    let (_, salt) = seglog_format::salvage_salt(&bytes, base)?;
    let header = SegmentHeader::new(id, segment_bytes, salt);
    if !write {
        // A read-only open: the segment is read with the header rebuilt here (its salt is all
        // the reads need), and the file keeps its damaged one.
        return Some(header);
    }
    let file = OpenOptions::new().write(true).open(path).ok()?;
    use std::os::unix::fs::FileExt;
    file.write_all_at(header.as_bytes(), 0).ok()?;
    Some(header)
}
