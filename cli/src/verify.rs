//! `seglog verify DIR`: reads every segment file and checks every record against its CRC,
//! changing nothing.
//!
//! It walks each segment with the walk recovery uses (`seglog_format::SegmentWalk`) and
//! classifies what it finds the way a strict open does, so `verify` fails where
//! `Options::strict(true)` would refuse to open (one exception below):
//! - a record that fails validation with a non-zero commit word is **corrupt** (reported with its
//!   file and offset; the walk resumes at the next valid record, found 8 bytes at a time by its
//!   position, salt and CRC, so every damaged range is listed). A put or tombstone whose version
//!   is ahead of its position is corrupt too, as it is to recovery;
//! - a zero commit word followed later by a valid record is a **hole**: a writer reserved space
//!   and died before publishing. A crash leaves these; they are reported, not failures;
//! - in the last segment, unpublished bytes after the last record are a **torn tail**, also a
//!   crash artifact;
//! - a bad segment header is corruption, unless everything after the header is zeros: a segment
//!   whose creation a crash interrupted, which a normal open removes (a strict open refuses it;
//!   `verify` only notes it, since no record is lost);
//! - a damaged hint file is reported but not a failure: an open ignores it and scans instead.
//!
//! The directory's lock is taken for the duration (if its lock file exists), so a log open in
//! another process is refused rather than read while it changes.

use std::fs::File;
use std::path::{Path, PathBuf};

use clap::Args;
use seglog_format::{
    CORRUPT_SEGMENT_SUFFIX, LogFile, RecordError, RecordKind, SegmentHeader, SegmentItem,
    SegmentWalk, Verify, decode_hint, is_blank_after_header, join_position,
};

use crate::inspect::{bytes, segment_files};
use crate::{Exit, Failure};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The log directory.
    dir: PathBuf,
    /// Print one JSON object: {"dir", "ok", "segments", "segment_bytes", "puts",
    /// "tombstones", "aborted", "notes": [text], "corrupt": [{"path", "offset", "what"}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default)]
struct Report {
    segments: u64,
    segment_bytes: Option<u64>,
    puts: u64,
    tombstones: u64,
    aborted: u64,
    /// (file, offset, what): damage that fails verification.
    corrupt: Vec<(PathBuf, u64, String)>,
    /// Crash artifacts and other findings that do not fail verification.
    notes: Vec<String>,
}

impl Report {
    fn corrupt(&mut self, path: &Path, offset: u64, what: impl Into<String>) {
        self.corrupt.push((path.to_path_buf(), offset, what.into()));
    }
}

/// Holds the directory's lock while verifying.
fn lock(dir: &Path) -> Result<Option<File>, Failure> {
    let path = dir.join(LogFile::Lock.name());
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure(format!("{}: {e}", path.display()))),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Failure(format!(
            "{} is locked: another seglog instance has this directory open; close it first",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Failure(format!("{}: {e}", path.display()))),
    }
}

pub fn run(args: &VerifyArgs) -> Result<(), Exit> {
    let segments = segment_files(&args.dir)?;
    let _lock = lock(&args.dir)?;
    let total: u64 = segments
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let progress = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(
            "verifying {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {elapsed}",
        )
        .expect("a valid progress template")
        .progress_chars("=> "),
    );
    let mut report = Report::default();
    let last = segments.last().map(|(id, _)| *id);
    for (id, path) in &segments {
        progress.set_message(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let bytes = std::fs::read(path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        check_segment(*id, path, bytes, Some(*id) == last, &mut report);
        progress.inc(std::fs::metadata(path).map_or(0, |m| m.len()));
    }
    progress.finish_and_clear();
    if args.json {
        print_json(&args.dir, &report)?;
    } else {
        print(&args.dir, &report);
    }
    match report.corrupt.first() {
        None => Ok(()),
        Some((path, offset, what)) => Err(Exit::Damaged(format!(
            "{} is corrupt: {} damaged range{}; the first is in {} at offset {offset}: {what}",
            args.dir.display(),
            report.corrupt.len(),
            if report.corrupt.len() == 1 { "" } else { "s" },
            path.display()
        ))),
    }
}

fn print_json(dir: &Path, report: &Report) -> Result<(), Exit> {
    let corrupt: Vec<_> = report
        .corrupt
        .iter()
        .map(|(path, offset, what)| serde_json::json!({"path": path, "offset": offset, "what": what}))
        .collect();
    let json = serde_json::json!({
        "dir": dir,
        "ok": report.corrupt.is_empty(),
        "segments": report.segments,
        "segment_bytes": report.segment_bytes,
        "puts": report.puts,
        "tombstones": report.tombstones,
        "aborted": report.aborted,
        "notes": report.notes,
        "corrupt": corrupt,
    });
    use std::io::Write;
    crate::inspect::output(writeln!(std::io::stdout().lock(), "{json}"))
}

fn print(dir: &Path, report: &Report) {
    println!(
        "{}: {} segment{} of {}, {} records ({} puts, {} tombstones), {} aborted",
        dir.display(),
        report.segments,
        if report.segments == 1 { "" } else { "s" },
        report
            .segment_bytes
            .map_or_else(|| "unknown size".into(), bytes),
        report.puts + report.tombstones,
        report.puts,
        report.tombstones,
        report.aborted,
    );
    for note in &report.notes {
        println!("note:    {note}");
    }
    for (path, offset, what) in &report.corrupt {
        println!("corrupt: {} at offset {offset}: {what}", path.display());
    }
    if report.corrupt.is_empty() {
        println!("ok: every record checks out");
    }
}

fn check_segment(id: u64, path: &Path, mut data: Vec<u8>, is_last: bool, report: &mut Report) {
    let header = match SegmentHeader::decode(&data) {
        Ok(header) => header,
        Err(e) => {
            if is_blank_after_header(&data) {
                report.notes.push(format!(
                    "{}: a segment whose creation was interrupted (no header); the next open \
                     removes it",
                    path.display()
                ));
            } else {
                report.corrupt(
                    path,
                    0,
                    format!(
                        "bad segment header: {e} (a non-strict open rebuilds it from the first \
                         valid record, or sets the file aside as {CORRUPT_SEGMENT_SUFFIX})"
                    ),
                );
            }
            return;
        }
    };
    report.segments += 1;
    if header.segment_id() != id {
        let named = header.segment_id();
        report.corrupt(
            path,
            SegmentHeader::SEGMENT_ID_OFFSET as u64,
            format!("the header names segment {named}, the file name {id}"),
        );
        return;
    }
    let size = header.segment_bytes();
    match report.segment_bytes {
        None => report.segment_bytes = Some(size),
        Some(log_size) if log_size != size => {
            report.corrupt(
                path,
                SegmentHeader::SEGMENT_BYTES_OFFSET as u64,
                format!("segment size {size} differs from the log's {log_size}"),
            );
            return;
        }
        Some(_) => {}
    }
    let Ok(len) = usize::try_from(size) else {
        report.corrupt(
            path,
            SegmentHeader::SEGMENT_BYTES_OFFSET as u64,
            format!("segment size {size} does not fit in memory"),
        );
        return;
    };
    if data.len() < len {
        report.corrupt(
            path,
            data.len() as u64,
            format!("segment truncated to {} of {size} bytes", data.len()),
        );
        // Walk what is there; the cut part reads as zeros, as an open would restore it.
        data.resize(len, 0);
    }
    let base = join_position(id, 0, size);
    walk(path, &data[..len], base, header.salt(), is_last, report);
    if !is_last {
        check_hint(id, path, header.salt(), &data[..len], report);
    }
}

/// Reports what recovery's walk finds in one segment: records counted, damage as corruption,
/// holes and unpublished tails as notes.
fn walk(path: &Path, data: &[u8], base: u64, salt: u32, is_last: bool, report: &mut Report) {
    for item in SegmentWalk::new(data, base, salt) {
        match item {
            SegmentItem::Record { view, offset } => match view.kind {
                RecordKind::Put => report.puts += 1,
                RecordKind::Tombstone => report.tombstones += 1,
                RecordKind::Aborted => report.aborted += 1,
                RecordKind::Padding => {}
                RecordKind::Batch => {
                    let position = base + offset as u64;
                    for member in
                        seglog_format::batch_members(&view, position, salt, Verify::Structure)
                    {
                        match member {
                            Ok((_, member)) if member.kind == RecordKind::BatchPut => {
                                report.puts += 1
                            }
                            Ok(_) => report.tombstones += 1,
                            Err(error) => {
                                report.corrupt(
                                    path,
                                    offset as u64,
                                    format!("batch member: {error}"),
                                );
                            }
                        }
                    }
                }
                RecordKind::BatchPut | RecordKind::BatchTombstone => report.notes.push(format!(
                    "{} at offset {offset}: a member of a batch that was never published (its \
                     writer died first); it means nothing, and an open seals it",
                    path.display()
                )),
            },
            SegmentItem::Damaged { offset, error, .. } => {
                report.corrupt(path, offset as u64, error.to_string());
            }
            SegmentItem::Trailing { offset, error, .. } if error != RecordError::Unwritten => {
                report.corrupt(path, offset as u64, error.to_string());
            }
            SegmentItem::Hole { offset, bytes } => report.notes.push(format!(
                "{} at offset {offset}: a hole of {bytes} bytes (a writer reserved them and died \
                 before publishing; an open seals it)",
                path.display()
            )),
            SegmentItem::Trailing { all_zero: true, .. } => {}
            SegmentItem::Trailing { offset, bytes, .. } if is_last => report.notes.push(format!(
                "{} at offset {offset}: a torn tail of {bytes} bytes never published (a crash \
                 mid-write; an open zeroes it)",
                path.display()
            )),
            SegmentItem::Trailing { offset, bytes, .. } => report.notes.push(format!(
                "{} at offset {offset}: {bytes} unpublished bytes at the end of a sealed segment \
                 (an open seals them)",
                path.display()
            )),
        }
    }
}

fn check_hint(id: u64, segment: &Path, salt: u32, data: &[u8], report: &mut Report) {
    let hint = segment.with_file_name(LogFile::Hint(id).name());
    let Ok(bytes) = std::fs::read(&hint) else {
        return;
    };
    match decode_hint(&bytes, id, salt) {
        Err(e) => report.notes.push(format!(
            "{}: damaged or outdated hint file ({e}); an open ignores it and scans the segment",
            hint.display()
        )),
        Ok(decoded) if decoded.segment_crc() != seglog_format::crc32c(data) => {
            report.notes.push(format!(
                "{}: the segment changed since its hint was written; an open ignores the hint \
                 and scans the segment",
                hint.display()
            ));
        }
        Ok(_) => {}
    }
}
