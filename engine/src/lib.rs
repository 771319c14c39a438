//! seglog: a lock-free segmented mmap append log with an epoch-reclaimed ID index.
//!
//! Higher-level databases link seglog to keep records by id. Writers reserve space in the log
//! with one atomic bump of a tail word, copy their bytes in and publish with a release store;
//! readers never take a lock. See `docs/design.md` for the protocols and their invariants.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod address;
mod checkpoint;
mod compaction;
mod directory;
mod error;
mod files;
mod guard;
mod hints;
mod huge_pages;
mod index;
mod kv;
mod log;
mod options;
mod recovery;
mod segment;
mod segment_files;
pub mod sim;
mod splitmix;
mod stripes;
mod sync;

pub use compaction::CompactionStats;
pub use error::{Error, Result};
pub use guard::{Guard, pin};
pub use kv::{Batch, Iter, Log, Pinned, Stats};
pub use log::{AppendLog, AppendStats, Appended, RecordRef, Scan};
pub use options::{Options, SyncPolicy};
pub use recovery::{Damage, RecoveryReport};
pub use seglog_format::{MAX_KEY_BYTES, RecordKind};
pub use segment_files::{SegmentFile, SegmentFiles, SyncedFrontier};

/// The loom twins' switch to deliberately broken protocol variants (loom builds only).
#[cfg(seglog_loom)]
#[doc(hidden)]
pub use sync::broken as __broken;
