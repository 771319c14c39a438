//! Bringing a local directory to a manifest's files: what restore and follow share.
//!
//! The directory holds some segments as some manifest described them (`have`: nothing, for a
//! restore starting out; the applied manifest's segments, for a follower). [`bring_to`] makes it
//! hold exactly `target`'s, touching only what differs, and without changing a byte a log open
//! on the directory reads:
//! - a segment it lacks, or whose bytes differ other than by growing (the frontier's segment now
//!   sealed), is downloaded under a temporary name, fsynced and renamed into place (a log open on
//!   the old file keeps it mapped);
//! - the frontier's segment that grew gets its new ranges written past its old end, where a log
//!   open on it never reads (its tail is the old end);
//! - a hint it lacks is written under a temporary name and renamed;
//! - every file of a segment `target` does not name is unlinked (whatever `held` says), and
//!   so is every temporary file.
//!
//! `have` is updated as each segment is done, so when an object vanishes midway (a newer
//! manifest made it garbage and a shipper collected it) the caller goes on toward the newest
//! manifest from what is already in place, instead of starting over.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;
use seglog_format::LogFile;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, SegmentEntry};
use crate::restore::{Tracker, fetch, write_parts, write_segment};
use crate::upload::blocking;

/// Segments brought up to date at once (each holds one object's bytes in memory while it is
/// written).
const SEGMENTS_IN_FLIGHT: usize = 4;

/// The segments a directory holds, by id, as the manifest entries they were written from.
pub(crate) type Held = Mutex<BTreeMap<u64, SegmentEntry>>;

/// Objects and bytes `bring_to` will download to go from `have` to `target`.
pub(crate) fn to_download(have: &Held, target: &Manifest) -> (u64, u64) {
    let have = lock(have);
    let mut objects = 0;
    let mut bytes = 0;
    for segment in &target.segments {
        let before = have.get(&segment.id);
        if before.is_none_or(|b| b.parts != segment.parts) {
            let fresh = match before {
                Some(b) if grows(b, segment) => &segment.parts[b.parts.len()..],
                _ => &segment.parts[..],
            };
            objects += fresh.len() as u64;
            bytes += fresh.iter().map(|p| p.len).sum::<u64>();
        }
        if let Some(hint) = &segment.hint
            && before.and_then(|b| b.hint.as_ref()) != Some(hint)
        {
            objects += 1;
            bytes += hint.len;
        }
    }
    (objects, bytes)
}

/// Makes `dir` hold exactly `target`'s segments and hints, durably. See the module docs.
pub(crate) async fn bring_to(
    store: &dyn ObjectStore,
    prefix: &Path,
    dir: &FsPath,
    have: &Held,
    target: &Manifest,
    tracker: &Tracker<'_>,
) -> Result<()> {
    // Collected first: a lazy `map` with a borrowing closure held across the awaits makes the
    // future not `Send` (rustc's "not general enough").
    let pending: Vec<_> = target
        .segments
        .iter()
        .map(|segment| bring_segment(store, prefix, dir, have, target, segment, tracker))
        .collect();
    futures::stream::iter(pending)
        .buffer_unordered(SEGMENTS_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    // Every file of a segment `target` does not name goes, whatever `held` says: a segment a
    // failed attempt put in place and could not record (its hint vanished, or another
    // download failed first and dropped it) must not outlive the attempt, or the log would open
    // with a retired segment's old versions.
    let named: std::collections::BTreeSet<u64> = target.segments.iter().map(|s| s.id).collect();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stale = match LogFile::parse(&name) {
            Some(LogFile::Segment(id) | LogFile::Hint(id)) => !named.contains(&id),
            Some(LogFile::HintTmp(_)) => true,
            _ => name.ends_with(".seg.partial"),
        };
        if stale {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
    }
    lock(have).retain(|id, _| named.contains(id));
    crate::restore::sync_dir(dir)
}

/// Whether `after` is `before` grown: the frontier's segment with more ranges.
fn grows(before: &SegmentEntry, after: &SegmentEntry) -> bool {
    !before.sealed
        && !after.sealed
        && before.header_crc32c == after.header_crc32c
        && after.parts.starts_with(&before.parts)
}

async fn bring_segment(
    store: &dyn ObjectStore,
    prefix: &Path,
    dir: &FsPath,
    have: &Held,
    target: &Manifest,
    segment: &SegmentEntry,
    tracker: &Tracker<'_>,
) -> Result<()> {
    let before = lock(have).get(&segment.id).cloned();
    let path = dir.join(LogFile::Segment(segment.id).name());
    match &before {
        Some(b) if b.parts == segment.parts && b.header_crc32c == segment.header_crc32c => {}
        Some(b) if grows(b, segment) => {
            let file = {
                let path = path.clone();
                blocking(&path.clone(), move || {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map(Arc::new)
                        .map_err(|e| Error::io(&path, e))
                })
                .await?
            };
            let fresh = &segment.parts[b.parts.len()..];
            write_parts(store, prefix, &file, fresh, &path, tracker).await?;
            let sync_path = path.clone();
            blocking(&path, move || {
                file.sync_all().map_err(|e| Error::io(&sync_path, e))
            })
            .await?;
        }
        _ => {
            let tmp = dir.join(format!("{}.partial", LogFile::Segment(segment.id).name()));
            write_segment(store, prefix, target, &segment.parts, &tmp, tracker).await?;
            rename(&tmp, &path)?;
        }
    }
    // The segment's bytes are in place: recorded before the next await, so `held` never lags
    // the directory (a hint is recorded once it is in place too).
    let mut recorded = segment.clone();
    recorded.hint = before.as_ref().and_then(|b| b.hint.clone());
    lock(have).insert(segment.id, recorded);
    if let Some(hint) = &segment.hint
        && before.as_ref().and_then(|b| b.hint.as_ref()) != Some(hint)
    {
        let bytes = fetch(store, prefix, hint).await?;
        let tmp = dir.join(LogFile::HintTmp(segment.id).name());
        let write_tmp = tmp.clone();
        blocking(&tmp, move || {
            std::fs::write(&write_tmp, &bytes)
                .and_then(|()| File::open(&write_tmp)?.sync_all())
                .map_err(|e| Error::io(&write_tmp, e))
        })
        .await?;
        rename(&tmp, &dir.join(LogFile::Hint(segment.id).name()))?;
        tracker.done(hint.len);
    }
    lock(have).insert(segment.id, segment.clone());
    Ok(())
}

fn rename(from: &FsPath, to: &FsPath) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))
}

/// The held segments; a poisoned lock's map is whole (each change is one insert or remove).
fn lock(have: &Held) -> std::sync::MutexGuard<'_, BTreeMap<u64, SegmentEntry>> {
    have.lock().unwrap_or_else(PoisonError::into_inner)
}
