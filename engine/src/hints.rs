//! Hint files for sealed segments (see `seglog_format::HintWriter`): written once every record
//! of a sealed segment is published, read at open instead of scanning the segment.

use std::path::{Path, PathBuf};

use seglog_format::{HintEntry, HintWriter, LogFile, RecordKind};

use crate::error::{Error, Result};
use crate::log::{AppendLog, read_record};
use crate::segment::FIRST_RECORD_OFFSET;

pub(crate) fn hint_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(LogFile::Hint(id).name())
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
    /// A record of the segment is damaged: no hint (an open scans the segment and reports it).
    Damaged,
}

/// Writes the hint of sealed segment `id`, if every record in it is published.
///
/// Durability order: the segment's bytes are flushed first, then the hint is written to a
/// temporary file, fsynced, and renamed into place, so a hint that survives a power loss never
/// describes pages that did not (and the checksum of the whole segment in the hint catches any
/// that changed anyway, see `recovery::apply_hint`).
///
/// With `skip_sparse`, segments less than half live are skipped (the background thread's
/// choice: compaction is likely to reclaim them first).
pub(crate) fn write_hint(log: &AppendLog, id: u64, skip_sparse: bool) -> Result<HintOutcome> {
    let Some(dir) = log.storage_path() else {
        return Ok(HintOutcome::NoSegment);
    };
    // One writer at a time: two writing the same hint would race on its temporary file.
    let _writing = log.lock_hints();
    let path = hint_path(dir, id);
    let fs = log.fs();
    if fs.exists(&path) {
        return Ok(HintOutcome::Exists);
    }
    // Held while the segment is read, not across its flush or the hint's own file I/O: a pin
    // held for milliseconds would hold back every retirement in the log.
    let guard = crate::sync::epoch::pin();
    let Some(segment) = log.directory().get(id, &guard) else {
        return Ok(HintOutcome::NoSegment);
    };
    if segment.is_retired() {
        return Ok(HintOutcome::NoSegment);
    }
    if segment.live_bytes() * 2 < segment.len() as u64 && skip_sparse {
        // Mostly dead: compaction will likely reclaim it soon, so a hint is wasted work.
        return Ok(HintOutcome::Skipped);
    }
    let mut writer = HintWriter::new(id, segment.salt());
    let mut filler_bytes = 0u32;
    let mut offset = FIRST_RECORD_OFFSET;
    while offset < segment.len() {
        let position = log.position(id, offset as u64);
        match read_record(segment, offset, position) {
            Ok(Some(record)) => {
                match record.kind {
                    RecordKind::Put | RecordKind::Tombstone => writer.push(&HintEntry {
                        offset: offset as u32,
                        record_bytes: record.record_bytes,
                        version: record.version,
                        kind: record.kind,
                        key: record.key,
                    }),
                    // A batch's header is filler; its members come next as puts and
                    // tombstones (`read_record`).
                    RecordKind::Aborted | RecordKind::Batch => filler_bytes += record.record_bytes,
                    RecordKind::Padding => {}
                    RecordKind::BatchPut | RecordKind::BatchTombstone => {
                        unreachable!("read_record reads a member as what it stands for")
                    }
                }
                offset += record.record_bytes as usize;
            }
            // An in-flight writer: try later.
            Ok(None) => return Ok(HintOutcome::NotReady),
            // Damage, which the scan at open will report; never ready, so move on.
            Err(_) => return Ok(HintOutcome::Damaged),
        }
    }
    // SAFETY: every byte of the segment is published and immutable: the header was written
    // before the segment was installed (published by the directory's Release CAS, read through
    // its Acquire load), and the walk above Acquire-loaded the commit word of every record from
    // the first to the segment's end, each stored with Release after its bytes.
    let whole = unsafe { segment.slice(0, segment.len()) };
    let segment_crc = seglog_format::crc32c(whole);
    let (flusher, segment_len) = (segment.flusher(), segment.len());
    drop(guard);
    // The segment first: a hint must never be more durable than what it describes. Flushed
    // after the pin ends (see `Segment::flusher`).
    if let Some(flusher) = flusher {
        flusher
            .flush_range(0, segment_len)
            .map_err(|e| log.flush_failed(e))?;
    }
    let bytes = writer.finish(segment_crc, filler_bytes);
    let tmp = dir.join(LogFile::HintTmp(id).name());
    fs.write_synced(&tmp, &bytes)?;
    // Rename makes the hint appear whole or not at all. The directory is not fsynced: a hint
    // lost in a power failure is only a slower open.
    fs.rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    let guard = crate::sync::epoch::pin();
    if log
        .directory()
        .get(id, &guard)
        .is_none_or(|segment| segment.is_retired())
    {
        // Compaction retired the segment meanwhile and may have removed its hint before we
        // renamed ours into place (it sets the flag first, then removes the hint, and only then
        // takes the segment out of the directory): remove it ourselves.
        let _ = fs.remove_file(&path);
        return Ok(HintOutcome::NoSegment);
    }
    Ok(HintOutcome::Written)
}
