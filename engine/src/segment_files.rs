//! Segment files for copying elsewhere: a listing of the files that make up the durable log,
//! under a lease that keeps them on disk while they are read.
//!
//! A log shipper (the `seglog-ship` crate), a backup tool or a replicator reads a log's files
//! by name while writers and compaction run. It needs three things from the engine, which this
//! module gives:
//!
//! 1. **Which files make up the log**, and which of them will never change again. Every
//!    segment below the synced frontier's segment is sealed and every record in it is published
//!    and durable (the frontier is `sync`'s published frontier, see `log/flush.rs`): its file
//!    never changes again while the log is open, nor after a crash. The frontier's own segment
//!    is durable up to the frontier's offset, and those bytes never change either.
//! 2. **The synced frontier**, read after the lease is taken: every write acknowledged by a
//!    `sync` that returned before the listing lies below it.
//! 3. **A lease** (`log/lease.rs`), so compaction does not retire a listed file (rename it aside
//!    for reuse, zero it, remove its hint) while it is read. [`SegmentFiles::release_below`]
//!    lets the holder give files back one by one as it finishes with them; dropping the listing
//!    gives back the rest.
//!
//! # Why the listing is a state the log could have crashed into
//! The same argument as a checkpoint's (`checkpoint.rs`): a segment absent from the listing was
//! retired before the lease, after its live records were copied forward *and synced*, so they
//! lie below the frontier read after the lease. A listed segment that compaction is retiring is
//! still whole, and its records are older versions that recovery orders by version. So the
//! listed files, the frontier segment cut at the frontier, open to every write synced before
//! the listing.
//!
//! "Below the frontier" rests on one more step: `sync` stores `synced` as the *published*
//! frontier, which stops at the first record still unpublished even though the flush covered
//! bytes up to the tail. A copy that compaction wrote after a writer reserved space (and before
//! that writer published) lies past such a hole. It is still below the frontier by the time the
//! segment it was copied from retires, because retirement waits for an epoch: the writer is
//! pinned from its reservation to its publish, so the retirement, and the `sync` that precedes
//! it, come after that publish. `loom-models/tests/lease.rs` checks both halves (a listed
//! segment stays until released; a missing one's copies are below the frontier).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::files::Fs;
use crate::kv::Log;
use crate::log::SegmentLease;
use crate::segment::FIRST_RECORD_OFFSET;

/// A position in the log, as a segment and an offset in it: the synced frontier (everything
/// before it is published and durable) or the tail ([`Log::tail_frontier`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SyncedFrontier {
    /// The segment the frontier is in.
    pub segment: u64,
    /// The offset in it: bytes `0..offset` of the segment's file are durable and never change.
    pub offset: u64,
}

/// One segment file of a [`SegmentFiles`] listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    /// The segment's id (its file is named `<id>.seg`, see `seglog_format::LogFile`).
    pub id: u64,
    /// The segment file.
    pub path: PathBuf,
    /// Its hint file, if one had been written when the listing was taken (hints are written
    /// under a temporary name and renamed, so a listed hint is whole).
    pub hint: Option<PathBuf>,
    /// The segment is sealed and all of it is durable: the whole file is final.
    pub sealed: bool,
    /// The bytes of the file that make up the log: the whole file (`segment_bytes`) for a sealed
    /// segment, the synced frontier's offset for the frontier's segment. Bytes past `len` are
    /// not part of the durable log; a copy holds zeros there.
    pub len: u64,
}

/// The files of a log up to its synced frontier, kept on disk until released.
///
/// Taken with [`Log::segment_files`]. While it lives, compaction relocates records as usual but
/// retires no listed segment's file from the lowest not yet released (see
/// [`SegmentFiles::release_below`]); it retires them at its next pass after the release.
#[derive(Debug)]
pub struct SegmentFiles<'a> {
    lease: SegmentLease<'a>,
    dir: PathBuf,
    segment_bytes: u64,
    synced: SyncedFrontier,
    files: Vec<SegmentFile>,
}

impl SegmentFiles<'_> {
    /// The listed segments, in id order: every sealed segment below the frontier's segment that
    /// is still in the log, then the frontier's segment (if it holds a record byte).
    pub fn segments(&self) -> &[SegmentFile] {
        &self.files
    }

    /// The synced frontier the listing was cut at.
    pub fn synced(&self) -> SyncedFrontier {
        self.synced
    }

    /// The size of every segment file.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Gives back the files of segments below `id`: compaction may retire them again. Only
    /// moves up; a lower `id` than an earlier call's changes nothing.
    pub fn release_below(&self, id: u64) {
        self.lease.advance_to(id);
    }
}

impl Log {
    /// Lists the files that make up the log up to its synced frontier, and keeps them on disk
    /// until the listing is dropped (or [`SegmentFiles::release_below`] gives them back).
    ///
    /// This is what a log shipper or a backup tool copies: the sealed segments whole, the
    /// frontier's segment up to the frontier. Copied, with zeros after each `len`, they open
    /// (with [`Log::open`]) to every write synced before this call. Writes after the last
    /// `sync` are not listed; call [`Log::sync`] first to include them. A log opened
    /// read-only cannot sync: its frontier is the end of what recovery found.
    ///
    /// Errors: the log is in memory or on a simulated disk (it has no files), or an I/O error
    /// looking for hints.
    pub fn segment_files(&self) -> Result<SegmentFiles<'_>> {
        let log = self.append_log();
        let dir = match log.storage_path() {
            Some(dir) => dir.to_path_buf(),
            // Loom only: the models' heap logs are listed too, by id with empty paths (hints
            // are looked for relative to the working directory; the models ignore them), so
            // `loom-models/tests/lease.rs` runs this very listing against compaction. Normal
            // builds refuse them.
            #[cfg(seglog_loom)]
            None => PathBuf::new(),
            #[cfg(not(seglog_loom))]
            None => return Err(unsupported("an in-memory log has no files to list")),
        };
        if matches!(log.fs(), Fs::Sim(_)) {
            return Err(unsupported(
                "the files of a log on a simulated disk cannot be listed",
            ));
        }
        // The lease first: from here no segment file leaves the disk, so every segment the
        // directory still holds below the frontier read next keeps its file.
        let lease = log.leases().acquire(0);
        let synced = self.synced_frontier();
        let guard = crate::sync::epoch::pin();
        let mut files = Vec::new();
        for id in log.first_segment()..=synced.segment {
            let Some(segment) = log.directory().get(id, &guard) else {
                // Retired before the lease: its live records were copied forward and synced.
                continue;
            };
            let path = match segment.path() {
                Some(path) => path.to_path_buf(),
                // Loom only: a heap segment (see above).
                #[cfg(seglog_loom)]
                None => PathBuf::new(),
                #[cfg(not(seglog_loom))]
                None => continue,
            };
            let sealed = id < synced.segment;
            if !sealed && synced.offset <= FIRST_RECORD_OFFSET as u64 {
                // The frontier's segment holds no durable record yet.
                continue;
            }
            let hint_path = crate::hints::hint_path(&dir, id);
            // (A heap segment under loom has no directory: no hint to look for.)
            let hint =
                (sealed && !dir.as_os_str().is_empty() && hint_path.is_file()).then_some(hint_path);
            let len = if sealed {
                log.segment_bytes()
            } else {
                synced.offset
            };
            files.push(SegmentFile {
                id,
                path,
                hint,
                sealed,
                len,
            });
        }
        // The frontier's segment holds no record: the listing ends where the segment before it
        // does, which is where a copy of it opens.
        let synced = if synced.offset <= FIRST_RECORD_OFFSET as u64 {
            SyncedFrontier {
                segment: synced.segment,
                offset: 0,
            }
        } else {
            synced
        };
        // A read-only open never syncs, and what recovery found may be only in the page cache
        // (a writer killed before its sync): flush it, so the listing is durable as a writable
        // log's is (syncfs works through a read-only descriptor, and changes no file).
        if log.is_read_only() && !dir.as_os_str().is_empty() {
            crate::files::sync_file_system(&dir)?;
        }
        Ok(SegmentFiles {
            lease,
            dir,
            segment_bytes: log.segment_bytes(),
            synced,
            files,
        })
    }

    /// The tail: every reservation so far ends at or before it, so every write that has
    /// returned lies below it (in the coordinates of [`Log::synced_frontier`]). Once the synced
    /// frontier reaches a tail read after a write returned, a listing holds that write.
    ///
    /// The synced frontier can lag a returned `sync`: it is the *published* frontier, which
    /// stops at the first reservation still being written, even when the caller's own record,
    /// past it, was flushed. A shipper that must hold every write acknowledged before its round
    /// reads the tail, then syncs until the synced frontier reaches it (`seglog-ship` does).
    pub fn tail_frontier(&self) -> SyncedFrontier {
        let log = self.append_log();
        let (segment, offset) = log.split(log.tail_position());
        SyncedFrontier { segment, offset }
    }

    /// The synced frontier: every record before it is published and durable. Only moves
    /// forward. It is the *published* frontier of the last [`Log::sync`], so it can stop short
    /// of a record that sync made durable: when a reservation before that record was still
    /// being written, the frontier stops at it (see [`Log::tail_frontier`] for how to wait
    /// until it covers a write). For a log opened read-only, which never syncs, it is the end
    /// of the log recovery found, which may be only in the page cache until
    /// [`Log::segment_files`] flushes it.
    pub fn synced_frontier(&self) -> SyncedFrontier {
        let log = self.append_log();
        let position = if log.is_read_only() {
            log.tail_position()
        } else {
            log.synced_position()
        };
        let (segment, offset) = log.split(position);
        SyncedFrontier { segment, offset }
    }
}

fn unsupported(reason: &str) -> Error {
    Error::io(
        Path::new(""),
        std::io::Error::new(std::io::ErrorKind::Unsupported, reason),
    )
}
