//! Hint files for sealed segments (see `seglog_format::HintWriter`): written once every record
//! of a sealed segment is published, read at open instead of scanning the segment.

use std::fs;
use std::path::{Path, PathBuf};

use seglog_format::{HintEntry, HintWriter, RecordKind};

use crate::appendlog::{AppendLog, read_record};
use crate::error::{Error, Result};
use crate::segment::FIRST_RECORD_OFFSET;

/// File name of the hint of segment `id`.
pub(crate) fn hint_file_name(id: u64) -> String {
    format!("{id:016x}.hint")
}

/// Parses a hint file name (or its temporary name) back into its segment id.
pub(crate) fn parse_hint_file_name(name: &str) -> Option<u64> {
    let hex = name
        .strip_suffix(".hint")
        .or_else(|| name.strip_suffix(".hint.tmp"))?;
    crate::segment::parse_segment_file_name(&format!("{hex}.seg"))
}

pub(crate) fn hint_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(hint_file_name(id))
}

/// What `write_hint` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HintOutcome {
    /// The hint file was written.
    Written,
    /// A hint already existed.
    Exists,
    /// Some record of the segment is not published yet (a writer is still copying): try later.
    NotReady,
    /// The segment is not in the log, or the log has no directory.
    NoSegment,
    /// The segment is mostly dead and was skipped.
    Skipped,
}

/// Writes the hint of sealed segment `id`, if every record in it is published.
///
/// With `skip_sparse`, segments less than half live are skipped (the background thread's
/// choice: compaction is likely to reclaim them first).
pub(crate) fn write_hint(log: &AppendLog, id: u64, skip_sparse: bool) -> Result<HintOutcome> {
    let Some(dir) = log.storage_path() else {
        return Ok(HintOutcome::NoSegment);
    };
    let path = hint_path(dir, id);
    if path.exists() {
        return Ok(HintOutcome::Exists);
    }
    let guard = crate::sync::epoch::pin();
    let Some(segment) = log.directory().get(id, &guard) else {
        return Ok(HintOutcome::NoSegment);
    };
    if segment.live_bytes() * 2 < segment.len() as u64 && skip_sparse {
        // Mostly dead: compaction will likely reclaim it soon, so a hint is wasted work.
        return Ok(HintOutcome::Skipped);
    }
    let mut writer = HintWriter::new(id, segment.salt());
    let mut offset = FIRST_RECORD_OFFSET;
    while offset < segment.len() {
        let position = log.position(id, offset as u64);
        match read_record(segment, offset, position) {
            Ok(Some(record)) => {
                if matches!(record.kind, RecordKind::Put | RecordKind::Tombstone) {
                    writer.push(&HintEntry {
                        offset: offset as u32,
                        record_bytes: record.record_bytes,
                        version: record.version,
                        kind: record.kind,
                        key: record.key,
                    });
                }
                offset += record.record_bytes as usize;
            }
            // An in-flight writer; or a damaged record, which the scan at open will report.
            Ok(None) | Err(_) => return Ok(HintOutcome::NotReady),
        }
    }
    drop(guard);
    let bytes = writer.finish();
    let tmp = dir.join(format!("{}.tmp", hint_file_name(id)));
    fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
    // Rename makes the hint appear whole or not at all. A hint lost in a power failure is only a
    // slower open, so it is not fsynced.
    fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(HintOutcome::Written)
}
