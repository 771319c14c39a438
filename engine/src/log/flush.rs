//! Durability: `sync` flushes everything published before the call (group commit behind one
//! mutex that appends and reads never take), and the headers of segments created ahead.

use super::AppendLog;
use super::read::read_record;
use std::path::Path;

use super::SyncFailure;
use crate::error::{Error, Result};
use crate::segment::FIRST_RECORD_OFFSET;
use crate::sync::Ordering;
use crate::sync::epoch::Guard;

impl AppendLog {
    /// Marks the log read-only (a read-only open, before the log is shared).
    pub(crate) fn set_read_only(&mut self) {
        self.read_only = true;
    }

    /// Whether the log was opened read-only.
    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The position below which everything is durable (as of the last `sync`). Relaxed: a
    /// stale value is lower, which only makes a caller sync when it need not. One caller needs
    /// it fresh, `Log::segment_files`: a value older than a retirement's sync would put the
    /// retired segment's copies past the listing's frontier. It reads this after acquiring a
    /// lease, whose mutex (`Leases::exclude`, held by `finish_retirements` across each
    /// retirement, which runs after its `sync` stored `synced`) orders the load after that
    /// store.
    pub(crate) fn synced_position(&self) -> u64 {
        self.synced.load(Ordering::Relaxed)
    }

    /// Flushes every record published before the call to stable storage, and the directory
    /// entries of segments created since the last sync. Concurrent calls share flushes: a caller
    /// that finds its records already flushed by another returns without flushing again.
    ///
    /// **A failed flush is sticky.** When an msync, fsync or directory fsync fails, the kernel
    /// may already have dropped the pages it could not write and marked them clean, so a
    /// retried flush would report success without writing them (PostgreSQL's "fsyncgate"). So
    /// the first failure is remembered: that call returns the I/O error, and every later
    /// `sync` and every append returns [`Error::SyncFailed`] naming it, until the log is
    /// reopened; the open then recovers what reached the disk.
    pub fn sync(&self) -> Result<()> {
        self.check_not_failed()?;
        let target = self.tail_position();
        let _flushing = self.sync_lock.lock();
        // Again under the lock: a sync that waited behind a failed one must not succeed.
        self.check_not_failed()?;
        // Relaxed: `synced` is only written under `sync_lock`, which orders it.
        let start = self.synced.load(Ordering::Relaxed);
        if start >= target {
            return Ok(());
        }
        // Cover everything published by now, for the callers queued behind us too.
        let target = self.tail_position();
        // Find the published frontier *before* flushing: every record below it was published
        // before the flush, so the flush covers its bytes.
        let guard = crate::sync::epoch::pin();
        let frontier = self.published_frontier(start, target, &guard);
        // What to flush, found under the pin and flushed after it (see `Segment::flusher`):
        // each msync waits for the disk, and a pin held across it would hold back every
        // retirement in the process.
        let mut flushes = Vec::new();
        let (first_segment, first_offset) = self.split(start);
        let (last_segment, last_offset) = self.split(target);
        let last_offset = if target == self.position(last_segment, 0) && last_segment > 0 {
            // `target` is the very start of a segment: nothing of it to flush.
            0
        } else {
            last_offset
        };
        for id in first_segment..=last_segment {
            let Some(segment) = self.directory.get(id, &guard) else {
                continue;
            };
            let from = if id == first_segment {
                // The header of a segment entered since the last sync must be flushed too.
                if first_offset <= FIRST_RECORD_OFFSET as u64 {
                    0
                } else {
                    first_offset
                }
            } else {
                0
            };
            let to = if id == last_segment {
                last_offset
            } else {
                self.segment_bytes
            };
            if to > from
                && let Some(flusher) = segment.flusher()
            {
                flushes.push((flusher, from as usize, (to - from) as usize));
            }
        }
        // Segments created ahead of the tail (prefetched) have a header but no flushed byte
        // yet; recovery trusts only a segment whose header survived, so flush those headers too,
        // or a power loss could keep a later segment and lose this one (a gap after the tail).
        // Acquire: pairs with the claim CAS in `ensure_segment` (AcqRel); an id below it whose
        // segment `Directory::get` finds is installed, and its header written, before.
        let claimed = self.claimed.load(Ordering::Acquire);
        let after = if last_offset == 0 {
            last_segment
        } else {
            last_segment + 1
        };
        for id in after..claimed {
            match self.directory.get(id, &guard) {
                Some(segment) => flushes.extend(
                    segment
                        .flusher()
                        .map(|flusher| (flusher, 0, FIRST_RECORD_OFFSET)),
                ),
                // Still being created: its creator has not installed it yet, and the next sync
                // flushes it.
                None => break,
            }
        }
        drop(guard);
        for (flusher, from, len) in &flushes {
            flusher
                .flush_range(*from, *len)
                .map_err(|e| self.flush_failed(e))?;
        }
        // Relaxed: read-modify-write under `sync_lock`.
        if self.unsynced_segments.swap(0, Ordering::Relaxed) > 0
            && let Some(path) = self.storage_path()
        {
            self.fs().sync_dir(path).map_err(|e| self.flush_failed(e))?;
        }
        self.synced.store(frontier, Ordering::Relaxed);
        Ok(())
    }

    /// Fsyncs the log's directory now (compaction, between removals that must reach the disk
    /// in order). A failure is sticky, as every flush's.
    pub(crate) fn sync_directory(&self) -> Result<()> {
        self.check_not_failed()?;
        let _serial = self.sync_lock.lock();
        if let Some(path) = self.storage_path() {
            self.fs().sync_dir(path).map_err(|e| self.flush_failed(e))?;
        }
        Ok(())
    }

    /// The first position at or after `from` (and below `to`) that is not published yet, or
    /// `to`.
    fn published_frontier(&self, from: u64, to: u64, guard: &Guard) -> u64 {
        let (mut segment_id, mut offset) = self.split(from);
        if offset < FIRST_RECORD_OFFSET as u64 {
            offset = FIRST_RECORD_OFFSET as u64;
        }
        loop {
            let position = self.position(segment_id, offset);
            if position >= to {
                return to;
            }
            if offset >= self.segment_bytes {
                segment_id += 1;
                offset = FIRST_RECORD_OFFSET as u64;
                continue;
            }
            let Some(segment) = self.directory.get(segment_id, guard) else {
                segment_id += 1;
                offset = FIRST_RECORD_OFFSET as u64;
                continue;
            };
            match read_record(segment, offset as usize, position) {
                Ok(Some(record)) => offset += u64::from(record.record_bytes),
                Ok(None) | Err(_) => return position,
            }
        }
    }

    /// Records that everything below the tail is durable (after recovery synced the file
    /// system).
    pub(crate) fn mark_synced_to_tail(&self) {
        // Relaxed: nothing else runs yet; later `sync` calls read it under `sync_lock`.
        self.synced.store(self.tail_position(), Ordering::Relaxed);
    }

    /// Remembers a failed flush (the first one only) and hands its error back, for the caller
    /// to return: from now on the log refuses syncs and appends (see [`AppendLog::sync`]).
    pub(crate) fn flush_failed(&self, error: Error) -> Error {
        let (path, reason) = match &error {
            Error::Io { path, source } => (path.clone(), source.to_string()),
            other => (
                self.storage_path()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
                other.to_string(),
            ),
        };
        let _ = self.sync_failure.set(SyncFailure { path, reason });
        error
    }

    /// `Err(Error::SyncFailed)` once a flush has failed (see [`AppendLog::sync`]).
    pub(crate) fn check_not_failed(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        match self.sync_failure.get() {
            None => Ok(()),
            Some(failure) => Err(Error::SyncFailed {
                path: failure.path.clone(),
                reason: failure.reason.clone(),
            }),
        }
    }
}
