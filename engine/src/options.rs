//! Options for opening a log.

use seglog_format::{
    MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES, SEGMENT_HEADER_BYTES, SegmentHeader, valid_segment_bytes,
};

use crate::error::{Error, Result};

/// When published records are flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// Only when [`crate::Log::sync`] is called (and whenever the OS writes dirty pages back).
    /// A process crash loses nothing published; a power loss may lose what was not synced.
    #[default]
    Never,
    /// Every `put` and `remove` syncs before it returns.
    EveryWrite,
    /// A background thread syncs every this many milliseconds.
    IntervalMs(u64),
}

/// How to open a log. Build with the methods, starting from `Options::default()`.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) segment_bytes: u64,
    pub(crate) index_capacity: usize,
    pub(crate) index_load_factor: f64,
    pub(crate) prefault: bool,
    pub(crate) strict: bool,
    pub(crate) sync_policy: SyncPolicy,
    pub(crate) index_seed: Option<u64>,
    pub(crate) max_segments: u64,
    pub(crate) compact_live_ratio: f64,
    pub(crate) compact_dead_bytes: Option<u64>,
    pub(crate) auto_compact: bool,
    pub(crate) segment_bytes_must_match: bool,
    pub(crate) read_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            index_capacity: 1024,
            index_load_factor: 0.75,
            prefault: true,
            strict: false,
            sync_policy: SyncPolicy::Never,
            index_seed: None,
            max_segments: u64::MAX,
            compact_live_ratio: 0.5,
            compact_dead_bytes: None,
            auto_compact: true,
            segment_bytes_must_match: false,
            read_only: false,
        }
    }
}

impl Options {
    /// Size of each segment file of a new log: a power of two from 256 bytes to 1 GiB (default
    /// 64 MiB). The largest record is a little smaller than one segment. A log's segment size
    /// is fixed when it is created: an existing log keeps its own size, whatever this says,
    /// unless [`Options::segment_bytes_must_match`] makes a different size an error.
    #[must_use]
    pub fn segment_bytes(mut self, segment_bytes: u64) -> Self {
        self.segment_bytes = segment_bytes;
        self
    }

    /// Whether opening an existing log whose segments are not [`Options::segment_bytes`] long
    /// is an error (`true`: [`Error::InvalidOption`] naming both sizes, before anything in the
    /// directory is touched) or keeps the log's own size (`false`, the default). Set it when
    /// the size matters to you, e.g. because you raised it to store larger values.
    #[must_use]
    pub fn segment_bytes_must_match(mut self, must_match: bool) -> Self {
        self.segment_bytes_must_match = must_match;
        self
    }

    /// Slots the index starts with (at least 4); it grows online (by 1.5x from 1024 slots on).
    #[must_use]
    pub fn index_capacity(mut self, slots: usize) -> Self {
        self.index_capacity = slots;
        self
    }

    /// Fraction of index slots filled before it grows (0.25 to 0.95; default 0.75).
    #[must_use]
    pub fn index_load_factor(mut self, load_factor: f64) -> Self {
        self.index_load_factor = load_factor;
        self
    }

    /// Seed for the index's hasher; random by default. Fixed seeds make tests reproducible.
    #[must_use]
    pub fn index_seed(mut self, seed: u64) -> Self {
        self.index_seed = Some(seed);
        self
    }

    /// Caps the number of segment ids (default: as many as positions allow). The segment
    /// directory's top level is sized from it, so loom models set it small.
    #[doc(hidden)]
    #[must_use]
    pub fn max_segments(mut self, max_segments: u64) -> Self {
        self.max_segments = max_segments;
        self
    }

    /// Segments whose live ratio (bytes of current records / record space) is at or below this
    /// are compacted (0.0 to 1.0; default 0.5).
    #[must_use]
    pub fn compact_live_ratio(mut self, ratio: f64) -> Self {
        self.compact_live_ratio = ratio;
        self
    }

    /// Automatic compaction starts once this many bytes are dead and the segment files take
    /// more than twice the live bytes (default: four segments' worth).
    #[must_use]
    pub fn compact_dead_bytes(mut self, bytes: u64) -> Self {
        self.compact_dead_bytes = Some(bytes);
        self
    }

    /// Whether the log compacts on its own (default true): a writer that finds the log over the
    /// thresholds runs one pass (others skip), and the background thread does too.
    /// [`crate::Log::compact`] works either way.
    #[must_use]
    pub fn auto_compact(mut self, auto: bool) -> Self {
        self.auto_compact = auto;
        self
    }

    /// Whether new segments are faulted into memory when created (default true), so the first
    /// writes to a segment do not stall on page faults.
    #[must_use]
    pub fn prefault(mut self, prefault: bool) -> Self {
        self.prefault = prefault;
        self
    }

    /// Open an existing log without changing anything in its directory, ever: no byte, file,
    /// name or timestamp (no hints written, no holes sealed, no torn tail zeroed, no file
    /// created, removed or extended; what recovery would repair is repaired in memory only).
    /// Takes the directory's lock shared, so read-only opens coexist and a writer's open meets
    /// [`Error::Locked`] (as does a read-only open while a writer holds it). Every write,
    /// `sync` and `compact` returns [`Error::ReadOnly`]. A directory that does not exist or
    /// holds no log is an error, never created. Damage is reported as by a normal open.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Refuse to open a log with any corrupt record instead of skipping and reporting it. A
    /// strict open verifies every record's checksum, ignoring hint files.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// When records are flushed to stable storage (default [`SyncPolicy::Never`]).
    #[must_use]
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync_policy = policy;
        self
    }

    pub(crate) fn compaction_policy(&self, segment_bytes: u64) -> CompactionPolicy {
        CompactionPolicy {
            live_ratio: self.compact_live_ratio,
            min_dead_bytes: self.compact_dead_bytes.unwrap_or(4 * segment_bytes),
            auto: self.auto_compact,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !valid_segment_bytes(self.segment_bytes) {
            return Err(Error::InvalidOption {
                name: "segment_bytes",
                reason: format!(
                    "{} is not a power of two from {MIN_SEGMENT_BYTES} to {MAX_SEGMENT_BYTES}",
                    self.segment_bytes
                ),
            });
        }
        if !(0.25..=0.95).contains(&self.index_load_factor) {
            return Err(Error::InvalidOption {
                name: "index_load_factor",
                reason: format!("{} is outside 0.25..=0.95", self.index_load_factor),
            });
        }
        if self.index_capacity == 0 || self.index_capacity > 1 << 40 {
            return Err(Error::InvalidOption {
                name: "index_capacity",
                reason: format!("{} is outside 1..=2^40", self.index_capacity),
            });
        }
        if !(0.0..=1.0).contains(&self.compact_live_ratio) {
            return Err(Error::InvalidOption {
                name: "compact_live_ratio",
                reason: format!("{} is outside 0.0..=1.0", self.compact_live_ratio),
            });
        }
        if let SyncPolicy::IntervalMs(0) = self.sync_policy {
            return Err(Error::InvalidOption {
                name: "sync_policy",
                reason: "IntervalMs(0): the interval must be at least 1 ms".into(),
            });
        }
        Ok(())
    }
}

impl Options {
    /// With [`Options::segment_bytes_must_match`], refuses an existing log in `dir` whose
    /// segments have another size: the first segment file (by id) with a valid header decides,
    /// as recovery's does. Reads headers only; a directory with none passes (recovery reports
    /// what it finds there).
    pub(crate) fn check_existing_segment_bytes(&self, dir: &std::path::Path) -> Result<()> {
        if !self.segment_bytes_must_match {
            return Ok(());
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        let mut segments: Vec<(u64, std::path::PathBuf)> = entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                match seglog_format::LogFile::parse_os(&entry.file_name()) {
                    Some(seglog_format::LogFile::Segment(id)) => Some((id, entry.path())),
                    _ => None,
                }
            })
            .collect();
        segments.sort();
        for (id, path) in segments {
            let Ok(bytes) = crate::files::read_prefix(&path, SEGMENT_HEADER_BYTES as u64) else {
                continue;
            };
            let Ok(header) = SegmentHeader::decode(&bytes) else {
                continue;
            };
            if header.segment_id() != id {
                continue;
            }
            let existing = header.segment_bytes();
            if existing == self.segment_bytes {
                return Ok(());
            }
            return Err(Error::InvalidOption {
                name: "segment_bytes",
                reason: format!(
                    "the log in {} was created with {existing}-byte segments and \
                     Options::segment_bytes asks for {}; a log's segment size cannot change: \
                     open it with segment_bytes({existing}), or without \
                     segment_bytes_must_match to keep its own size (for larger segments, \
                     export it and import into a new log)",
                    dir.display(),
                    self.segment_bytes
                ),
            });
        }
        Ok(())
    }
}

/// When and how much to compact.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompactionPolicy {
    /// Segments at or below this live ratio are compacted.
    pub(crate) live_ratio: f64,
    /// Automatic compaction waits until at least this many bytes are dead.
    pub(crate) min_dead_bytes: u64,
    /// Whether writers and the background thread compact on their own.
    pub(crate) auto: bool,
}
