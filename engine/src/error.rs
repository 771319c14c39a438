//! The one error type a linking database sees.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in seglog, with variants a caller can act on.
///
/// Every message says what happened, to which file or position, and where it helps, what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key is longer than seglog accepts.
    #[error("key of {len} bytes exceeds the maximum of {max} bytes")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The largest key accepted.
        max: usize,
    },
    /// The value does not fit in one segment together with its key and header.
    #[error(
        "value of {len} bytes exceeds the maximum of {max} bytes for this key: a record \
         must fit in one segment, and a log's segment size is fixed when it is created \
         (Options::segment_bytes sizes new logs only; for larger values, export this log and \
         import it into a new one created with larger segments)"
    )]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The largest value accepted with this key.
        max: usize,
    },
    /// Another `Log` (in this process or another) has the directory open.
    #[error("{path} is locked: another seglog instance has this directory open")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The file system is out of space (or over a file-size limit) for a new segment. Records
    /// published before stay readable; writes succeed again once space is freed.
    #[error("no space to create segment {path} of {needed} bytes; free disk space and retry")]
    DiskFull {
        /// The segment file that could not be created.
        path: PathBuf,
        /// Its size.
        needed: u64,
    },
    /// An I/O error on a file of the log.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file of the log does not hold what seglog wrote.
    #[error("corrupt log file {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset within it.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The directory exists but is not a seglog log.
    #[error("{path} is not a seglog directory: {reason}")]
    NotALog {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An option is out of range.
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// Every segment id the position format allows has been used.
    #[error("the log has used all {max_segments} segment ids; compact it or use larger segments")]
    LogFull {
        /// The number of segment ids available.
        max_segments: u64,
    },
    /// An earlier flush to stable storage failed, so data written before it may not be on the
    /// disk even if a later flush reports success (the kernel drops pages whose writeback
    /// failed). Every `sync` and write returns this until the log is reopened; the open then
    /// recovers what reached the disk.
    #[error(
        "an earlier sync failed on {path} ({reason}): writes acknowledged since the last \
         successful sync may not be on disk; reopen the log to recover what reached it"
    )]
    SyncFailed {
        /// The file (or directory) whose flush failed.
        path: PathBuf,
        /// The error that flush met.
        reason: String,
    },
    /// The log's background thread (interval syncs, hints, compaction) met an error while the
    /// log was open; [`crate::Log::close`] reports the first one.
    #[error("the log's background work failed: {reason}")]
    Background {
        /// What failed.
        reason: String,
    },
    /// A position that holds no readable record (never returned by an append, or reclaimed).
    #[error("no record at position {position:#x}: {reason}")]
    NoRecord {
        /// The position asked for.
        position: u64,
        /// Why nothing is there.
        reason: String,
    },
    /// A write, `sync` or compaction on a log opened with `Options::read_only(true)`.
    #[error("the log was opened read-only (Options::read_only): it accepts no writes")]
    ReadOnly,
    /// A batch whose records together do not fit in one segment: nothing of it was written.
    #[error(
        "batch of {operations} operations needs {bytes} bytes, more than the {max} a record can          have in this log's segments: split it into smaller batches (a batch is one record, so          it must fit in one segment)"
    )]
    BatchTooLarge {
        /// Operations in the batch (after the last operation on each key won).
        operations: usize,
        /// The bytes the batch's record would need.
        bytes: u64,
        /// The largest record this log's segments hold.
        max: u64,
    },
    /// A conditional write's comparison failed: the key's current version is not the one
    /// expected. Nothing was written.
    #[error("version mismatch: the key's current version is {current:?}")]
    VersionMismatch {
        /// The version of the key's current value, `None` if the key is absent.
        current: Option<u64>,
    },
}

/// Shorthand for results in seglog.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
