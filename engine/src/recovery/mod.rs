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

mod discover;
mod replay;
mod report;

use std::fs;
use std::path::Path;

use crate::error::{Error, Result};
use crate::files::{DirLock, sync_file_system};
use crate::log::{AppendLog, RecordRef, Storage};
use crate::options::Options;
use crate::segment::FIRST_RECORD_OFFSET;
use crate::sync::epoch::Guard;

pub use self::report::{Damage, RecoveryReport};

/// Opens (creating if needed) the log in `dir`, calling `on_record` for every valid put and
/// tombstone, into batches made by `new_batch`: one per thread that replays (hinted segments
/// are read on several threads), returned with the log. Records come in no particular order
/// (each batch gets whole segments, in id order); those read from a hint file come with an
/// empty `value`.
pub(crate) fn open_dir<B: Send>(
    dir: &Path,
    options: &Options,
    new_batch: &(impl Fn() -> B + Sync),
    on_record: &(impl Fn(&mut B, &AppendLog, &RecordRef<'_>, &Guard) + Sync),
) -> Result<(AppendLog, RecoveryReport, Vec<B>)> {
    options.validate()?;
    if dir.exists() && !dir.is_dir() {
        return Err(Error::NotALog {
            path: dir.to_path_buf(),
            reason: "it is a file, not a directory".into(),
        });
    }
    let read_only = options.read_only;
    let lock = if read_only {
        if !dir.is_dir() {
            return Err(Error::NotALog {
                path: dir.to_path_buf(),
                reason: "no such directory (a read-only open creates nothing)".into(),
            });
        }
        DirLock::acquire_shared(dir)?
    } else {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        DirLock::acquire(dir)?
    };
    let mut report = RecoveryReport::default();
    let (found, hints) = discover::files(dir, &mut report, read_only)?;
    let (headers, segment_bytes) = discover::headers(found, options, &mut report)?;
    let segment_bytes = segment_bytes.unwrap_or(options.segment_bytes);
    discover::check_ids(&headers, segment_bytes, options)?;
    let (headers, tail_index) = discover::settle_tail(headers, &mut report, read_only)?;
    if read_only && headers.is_empty() {
        return Err(Error::NotALog {
            path: dir.to_path_buf(),
            reason: "it holds no segment with a valid header (a read-only open creates none)"
                .into(),
        });
    }

    let mut log = AppendLog::with_storage(
        Storage::Dir {
            path: dir.to_path_buf(),
            prefault: options.prefault,
        },
        segment_bytes,
        options.max_segments,
    );
    let guard = crate::sync::epoch::pin();
    if headers.is_empty() {
        log.set_recovered_tail(0, FIRST_RECORD_OFFSET as u64, 0);
        log.ensure_segment(0, &guard)?;
        drop(guard);
        log.set_lock(lock);
        return Ok((log, report, Vec::new()));
    }

    // No count of the records first: the index is sized after the replay, from the keys it
    // found (`Index::from_bulk`), so the replay never resizes it.
    let first = headers[0].0.segment_id();
    let replay::Replayed {
        tail,
        installed,
        batches,
    } = replay::segments(
        &log,
        headers,
        tail_index,
        &hints,
        dir,
        options,
        &mut report,
        new_batch,
        on_record,
        &guard,
    )?;
    log.set_recovered_tail(tail.0, tail.1, first);
    drop(guard);
    if read_only {
        log.set_read_only();
        log.set_lock(lock);
        return Ok((log, report, batches));
    }
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
    Ok((log, report, batches))
}

impl AppendLog {
    /// Opens the append log in `dir`, creating the directory and its first segment if needed,
    /// and recovering it otherwise. The directory stays locked until the log is dropped; a
    /// second open gets [`Error::Locked`].
    pub fn open(dir: impl AsRef<Path>, options: &Options) -> Result<Self> {
        let (log, _report, _) = open_dir(dir.as_ref(), options, &|| (), &|_, _, _, _| {})?;
        Ok(log)
    }
}
