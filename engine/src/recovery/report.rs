//! What an open found and did: `RecoveryReport` and the damage it lists.

use std::path::PathBuf;

/// A record recovery skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset of the damaged range within the file.
    pub offset: u64,
    /// Length of the range skipped.
    pub bytes: u64,
    /// What was wrong at its start.
    pub reason: String,
}

/// What [`crate::Log::open`] found and did while recovering a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files opened.
    pub segments: u64,
    /// Valid puts and tombstones read.
    pub records: u64,
    /// Unpublished reservations skipped (writers that died between reserving and publishing:
    /// a zero commit word, possibly with part of their bytes behind it).
    pub holes: u64,
    /// Corrupt records and damaged ranges skipped, with where they are.
    pub corrupt: Vec<Damage>,
    /// Bytes after the last valid record of the last segment, zeroed because they held no
    /// valid record (a torn tail).
    pub bytes_truncated: u64,
    /// Files in the directory that are not part of the log, left untouched.
    pub foreign_files: Vec<PathBuf>,
    /// Segment files that were never completely created (no valid header), removed.
    pub removed_partial_segments: Vec<PathBuf>,
    /// Empty segment files after the tail that did not follow it without a gap (left by a power
    /// loss that kept a segment created ahead of need but not the one before it), removed.
    pub removed_empty_segments: Vec<PathBuf>,
    /// Sealed segments whose records were read from their hint file instead of a scan.
    pub hinted_segments: u64,
}
