//! The segmented append log: reservation, publish, roll-over, reads by position, and scans.
//!
//! # Reservation
//! One atomic tail word (see `tail.rs`) holds the segment id and the next free offset.
//! A writer reserves `len` bytes with a single `fetch_add(len)` and classifies the old value:
//! - the region fits: it is the writer's alone;
//! - the region contains the segment's end: this writer, the only one for this segment, rolls
//!   the log over: it makes sure the next segment is installed, then moves the tail to it with
//!   its own record already reserved at the start (so a record as large as a segment allows
//!   always gets in, however many small writers wait for the roll-over), then pads the rest of
//!   the old segment;
//! - the region starts past the end: another writer is rolling over; wait for the tail to leave
//!   this segment and retry.
//!
//! This is the tail-bump of Aeron's term appender and FASTER's HybridLog allocator, with the
//! roll-over done by the thread whose reservation crossed the end. The next segment is created
//! and faulted in ahead of need (right after each roll-over, outside the critical section), so a
//! roll-over normally installs an existing segment and never waits on file creation.
//!
//! If the next segment cannot be created (disk full), the crossing writer pads the segment,
//! resets the tail to exactly the segment end, and returns the error: the next writer to reserve
//! becomes the crossing writer and tries again. Nothing published is touched.
//!
//! # Publish
//! The writer copies the key and value into its region, then the header body (everything but
//! the commit word), then stores the commit word with `Release`. A reader loads the commit word
//! with `Acquire`: zero means unpublished, anything else means the whole record is there.
//! A writer whose fill closure panics leaves an *aborted* record, written by a drop guard, so a
//! scan never stalls behind it.

mod batch;
mod bookkeeping;
mod flush;
mod lease;
mod provision;
mod publish;
mod read;
mod reserve;
mod settled;
mod tail;

use std::path::{Path, PathBuf};

use seglog_format::{MAX_KEY_BYTES, RECORD_HEADER_BYTES};

use crate::address::{ADDRESS_BITS, Address};
use crate::directory::Directory;
use crate::error::{Error, Result};
use crate::segment::FIRST_RECORD_OFFSET;
use crate::stripes::{Striped, signed_sum};
use crate::sync::{AtomicU64, Ordering};

pub(crate) use self::batch::{AppendedBatch, BatchOp};
pub(crate) use self::lease::{Leases, SegmentLease};
pub(crate) use self::read::read_record;
pub use self::read::{RecordRef, Scan};
pub(crate) use self::settled::PassFlag;
use self::tail::{SEGMENT_ID_BITS, Tail, TailWord};

/// Retired segment files kept for reuse instead of deleted. Few: free files are disk the log
/// holds (`disk_bytes` counts them), and a sweep of the oldest segments retires several at
/// once; the log needs one file ahead of the tail, rarely more.
const RECYCLED_SEGMENTS: usize = 4;

pub(crate) use seglog_format::max_segment_id;

/// Where a log keeps its segments.
pub(crate) enum Storage {
    /// Segment files in a directory.
    Dir { path: PathBuf, prefault: bool },
    /// Segment files on a simulated disk, for power-loss tests (`crate::sim`); `path` is a
    /// stand-in directory whose file names the disk keys its files by.
    Sim {
        disk: std::sync::Arc<crate::sim::SimDisk>,
        path: PathBuf,
    },
    /// Heap memory: for tests and loom models; nothing survives the process.
    Heap,
}

/// The first flush of the log that failed: which file, and the error.
#[derive(Debug)]
pub(crate) struct SyncFailure {
    path: PathBuf,
    reason: String,
}

/// What an append produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Where the record starts: `segment id << log2(segment_bytes) | offset`. Segment ids grow
    /// by one per segment and are never reused, so positions are unique for the log's life.
    pub position: u64,
    /// The record's version (for a fresh record, equal to its position).
    pub version: u64,
    /// The record's length in the log, header and alignment included.
    pub record_bytes: u32,
}

/// Counters of the log's records: those found at open plus those appended since.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendStats {
    /// Records in the log: puts and tombstones found at open, plus records published since
    /// (puts, tombstones and aborted records).
    pub records: u64,
    /// Bytes of those records.
    pub record_bytes: u64,
    /// Records aborted by a panicking fill closure.
    pub aborted: u64,
    /// Segments rolled over (each leaves one padding record, unless it was exactly full).
    pub rollovers: u64,
    /// Bytes of padding written at segment ends.
    pub padding_bytes: u64,
}

#[derive(Default)]
struct Counters {
    /// What every append adds to, striped so that writers on different cores do not share
    /// the cache line (see `crate::stripes`).
    written: Striped<Written>,
    aborted: AtomicU64,
    rollovers: AtomicU64,
    padding_bytes: AtomicU64,
}

/// One stripe of [`Counters::written`]: both counts an append adds to, on one cache line.
#[derive(Default)]
struct Written {
    records: AtomicU64,
    /// Wraps: compaction subtracts reclaimed bytes on whichever stripe its thread has.
    record_bytes: AtomicU64,
}

impl Counters {
    /// Counts one record of `bytes`.
    fn count_record(&self, bytes: u32) {
        self.count_records(1, u64::from(bytes));
    }

    /// Counts `records` records of `bytes` in all.
    fn count_records(&self, records: u64, bytes: u64) {
        let written = self.written.mine();
        // Relaxed: statistics only; the RMWs keep every count.
        written.records.fetch_add(records, Ordering::Relaxed);
        written.record_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds `bytes` to the record bytes alone (aborted records found by recovery).
    fn count_bytes(&self, bytes: u64) {
        // Relaxed: as `count_record`.
        self.written
            .mine()
            .record_bytes
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes `bytes` out of the record bytes.
    fn uncount_bytes(&self, bytes: u64) {
        // Relaxed: as `count_record`.
        self.written
            .mine()
            .record_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
    }

    fn records(&self) -> u64 {
        // Relaxed: statistics, each stripe read on its own.
        self.written
            .all()
            .map(|w| w.records.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// The record bytes: 0 if the stripes sum "negative" (reclaimed bytes subtracted before a
    /// reader saw the appends that added them; never once writers are quiescent).
    fn record_bytes(&self) -> u64 {
        // Relaxed: as `records`.
        signed_sum(
            self.written
                .all()
                .map(|w| w.record_bytes.load(Ordering::Relaxed)),
        )
    }
}

/// The segmented append log. `Send + Sync`; every method takes `&self`.
pub struct AppendLog {
    /// The packed [`Tail`] word.
    tail: TailWord,
    directory: Directory,
    segment_bytes: u64,
    shift: u32,
    storage: Storage,
    /// How many segment ids have been claimed for creation: ids below it exist or are being
    /// created (see `ensure_segment`).
    claimed: AtomicU64,
    /// The lowest segment id that may still hold records (scans start here).
    first_segment: AtomicU64,
    /// Segments below this id have every record installed (see `settled.rs`).
    settled_below: AtomicU64,
    /// Held by one compaction pass at a time, and by whoever moves `settled_below` (see
    /// `settled.rs`): other compactors skip instead of waiting.
    compaction_running: crate::sync::AtomicBool,
    /// Tombstone-order repairs that wait for their copies' segments to settle (`settled.rs`).
    pending_repairs: crate::sync::Mutex<Vec<self::settled::PendingRepair>>,
    /// Bytes of tombstones the index forgot (see `settled.rs`).
    forgotten_bytes: crate::stripes::StripedCount,
    counters: Counters,
    /// The directory lock, for file-backed logs; released when the log drops.
    lock: Option<crate::files::DirLock>,
    /// Everything below this position is published and flushed.
    synced: AtomicU64,
    /// Opened with `Options::read_only`: every append and sync is refused
    /// ([`AppendLog::check_not_failed`]), so nothing ever writes the (privately mapped) segments.
    read_only: bool,
    /// Segments created since the directory was last fsynced.
    unsynced_segments: AtomicU64,
    /// Serializes flushes; concurrent `sync` calls wait here and share one flush (group
    /// commit). Never taken by appends or reads.
    sync_lock: crate::sync::Mutex<()>,
    /// Retired segment files kept for reuse.
    recycle: crate::sync::Arc<crate::segment::RecyclePool>,
    /// Held by checkpoints and `segment_files` listings: segments they read are not retired
    /// meanwhile (`lease.rs`).
    leases: Leases,
    /// Whether a [`crate::Log`]'s index points into this log's segments.
    indexed: bool,
    /// Serializes hint writers (the background thread and `Log::write_hints`), which share a
    /// temporary file name per segment. Never taken by appends or reads.
    hint_lock: crate::sync::Mutex<()>,
    /// Set by the first flush that fails; from then on every sync and append fails (see
    /// `AppendLog::sync`). std's `OnceLock`: set once, read with one load per append.
    sync_failure: std::sync::OnceLock<SyncFailure>,
    /// Loom only: cloned into every segment this log creates, so the models can count live
    /// segments and loom's leak check reports one that is never dropped.
    #[cfg(seglog_loom)]
    segment_token: crate::sync::Arc<()>,
}

impl AppendLog {
    /// A log in heap memory, for tests and models: segments of `segment_bytes` (a power of two,
    /// 256 B to 1 GiB), at most `max_segments` of them at once.
    pub fn in_memory(segment_bytes: u64, max_segments: u64) -> Result<Self> {
        if !seglog_format::valid_segment_bytes(segment_bytes) {
            return Err(Error::InvalidOption {
                name: "segment_bytes",
                reason: format!("{segment_bytes} is not a power of two from 256 to 2^30"),
            });
        }
        let log = Self::with_storage(Storage::Heap, segment_bytes, max_segments);
        let guard = crate::sync::epoch::pin();
        log.ensure_segment(0, &guard)?;
        Ok(log)
    }

    /// A new, empty log on a simulated disk (`crate::sim`), for power-loss tests. Its first
    /// segment is created as an open of an empty directory creates it.
    pub(crate) fn on_sim(
        disk: &std::sync::Arc<crate::sim::SimDisk>,
        options: &crate::options::Options,
    ) -> Result<Self> {
        let storage = Storage::Sim {
            disk: std::sync::Arc::clone(disk),
            path: crate::sim::sim_root(),
        };
        let log = Self::with_storage(storage, options.segment_bytes, options.max_segments);
        let guard = crate::sync::epoch::pin();
        log.set_recovered_tail(0, FIRST_RECORD_OFFSET as u64, 0);
        log.ensure_segment(0, &guard)?;
        Ok(log)
    }

    pub(crate) fn with_storage(storage: Storage, segment_bytes: u64, max_segments: u64) -> Self {
        let shift = segment_bytes.trailing_zeros();
        let slots = Self::directory_slots(segment_bytes, max_segments);
        let max_segments = max_segments.clamp(1, slots);
        Self {
            tail: TailWord::new(Tail::new(0, FIRST_RECORD_OFFSET as u64)),
            directory: Directory::new(max_segments, slots),
            segment_bytes,
            shift,
            storage,
            claimed: AtomicU64::new(0),
            first_segment: AtomicU64::new(0),
            settled_below: AtomicU64::new(0),
            compaction_running: crate::sync::AtomicBool::new(false),
            pending_repairs: crate::sync::Mutex::new(Vec::new()),
            forgotten_bytes: crate::stripes::StripedCount::default(),
            counters: Counters::default(),
            lock: None,
            synced: AtomicU64::new(0),
            read_only: false,
            unsynced_segments: AtomicU64::new(0),
            sync_lock: crate::sync::Mutex::new(()),
            recycle: crate::sync::Arc::new(crate::segment::RecyclePool::new(RECYCLED_SEGMENTS)),
            leases: Leases::new(),
            indexed: false,
            hint_lock: crate::sync::Mutex::new(()),
            sync_failure: std::sync::OnceLock::new(),
            #[cfg(seglog_loom)]
            segment_token: crate::sync::Arc::new(()),
        }
    }

    /// Slots of the directory's ring for `segment_bytes` segments, at most `max_segments` at
    /// once: a power of two, at most what index addresses and the tail's segment bits can name.
    pub(crate) fn directory_slots(segment_bytes: u64, max_segments: u64) -> u64 {
        let shift = segment_bytes.trailing_zeros();
        let slot_limit = 1u64 << (ADDRESS_BITS - shift).min(SEGMENT_ID_BITS);
        max_segments
            .clamp(1, slot_limit)
            .next_power_of_two()
            .min(slot_limit)
    }

    /// Size of each segment.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// The largest value that fits in one record with a key of `key_len` bytes (0 if the key
    /// itself is longer than [`AppendLog::max_key_len`]).
    pub fn max_value_len(&self, key_len: usize) -> usize {
        if key_len > self.max_key_len() {
            return 0;
        }
        let room = self.segment_bytes as usize - FIRST_RECORD_OFFSET - RECORD_HEADER_BYTES;
        room - seglog_format::align8(key_len as u64) as usize
    }

    /// The longest key a record of this log can have (with an empty value): [`MAX_KEY_BYTES`],
    /// or less if the segments are smaller than that.
    pub fn max_key_len(&self) -> usize {
        let room = self.segment_bytes as usize - FIRST_RECORD_OFFSET - RECORD_HEADER_BYTES;
        // `room` is a multiple of 8 (a power of two >= 256, minus 64 and 40), so a key of
        // exactly `room` bytes takes no alignment padding.
        room.min(MAX_KEY_BYTES)
    }

    /// Segments this log can hold at once. Segment ids themselves never run out: they grow by
    /// one per segment, and a retired segment's slot in the directory is reused.
    pub fn max_segments(&self) -> u64 {
        self.directory.max_segments()
    }

    /// The position of `offset` in segment `segment`. `offset` may be `segment_bytes` (the end
    /// of the segment), which is the position where the next segment starts.
    pub(crate) fn position(&self, segment: u64, offset: u64) -> u64 {
        debug_assert!(
            offset <= self.segment_bytes,
            "offset {offset} past the segment"
        );
        // `+`, not `|`: at `offset == segment_bytes` the offset carries into the segment id.
        (segment << self.shift) + offset
    }

    pub(crate) fn split(&self, position: u64) -> (u64, u64) {
        (position >> self.shift, position & (self.segment_bytes - 1))
    }

    /// The index address of `position`: its place in the directory's ring (segment id modulo
    /// the ring's slots, then the offset), below 2^[`ADDRESS_BITS`]. The ring never holds two
    /// segments with the same slot, so the address names the record as well as the position.
    ///
    /// # Panics
    /// If `position` is not a record's (0 within its slot, or misaligned): a bug, not damage.
    pub(crate) fn address_of(&self, position: u64) -> Address {
        // The mask keeps ADDRESS_BITS bits at most: `directory_slots` caps the ring at
        // 2^(ADDRESS_BITS - shift) slots.
        Address::new(position & ((self.directory.slots() << self.shift) - 1))
    }

    /// Segments rolled over since the log was opened: one Relaxed load of a counter written
    /// once per segment, cheap enough for every write to look at.
    pub(crate) fn rollovers(&self) -> u64 {
        // Relaxed: statistics; a stale count only delays a compaction check by a few writes.
        self.counters.rollovers.load(Ordering::Relaxed)
    }

    /// Counters since the log was opened.
    pub fn stats(&self) -> AppendStats {
        // Relaxed: statistics, each counter read on its own.
        AppendStats {
            records: self.counters.records(),
            record_bytes: self.counters.record_bytes(),
            aborted: self.counters.aborted.load(Ordering::Relaxed),
            rollovers: self.counters.rollovers.load(Ordering::Relaxed),
            padding_bytes: self.counters.padding_bytes.load(Ordering::Relaxed),
        }
    }

    /// The lowest segment id that may hold records.
    pub fn first_segment(&self) -> u64 {
        // Acquire: pairs with the Release store in `set_recovered_tail`.
        self.first_segment.load(Ordering::Acquire)
    }

    /// Segments in the log.
    pub fn segment_count(&self) -> u64 {
        self.directory.count()
    }

    /// Retired segment files kept for reuse.
    pub(crate) fn recycle_pool(&self) -> &crate::sync::Arc<crate::segment::RecyclePool> {
        &self.recycle
    }

    /// The leases that keep segments on disk (see `lease.rs`).
    pub(crate) fn leases(&self) -> &Leases {
        &self.leases
    }

    /// Bytes of segment files on disk: the log's segments and the retired files kept for reuse.
    pub fn disk_bytes(&self) -> u64 {
        (self.segment_count() + self.recycle.len() as u64) * self.segment_bytes
    }

    pub(crate) fn directory(&self) -> &Directory {
        &self.directory
    }

    pub(crate) fn storage_path(&self) -> Option<&Path> {
        match &self.storage {
            Storage::Dir { path, .. } | Storage::Sim { path, .. } => Some(path),
            Storage::Heap => None,
        }
    }

    /// The file system the log's files are on (the OS's for heap logs, which have none).
    pub(crate) fn fs(&self) -> crate::files::Fs {
        match &self.storage {
            Storage::Sim { disk, .. } => crate::files::Fs::Sim(std::sync::Arc::clone(disk)),
            Storage::Dir { .. } | Storage::Heap => crate::files::Fs::Os,
        }
    }

    /// Loom only: segments not yet dropped (installed, or retired and still deferred).
    #[cfg(seglog_loom)]
    #[doc(hidden)]
    pub fn __live_segments(&self) -> usize {
        crate::sync::Arc::strong_count(&self.segment_token) - 1
    }
}

impl std::fmt::Debug for AppendLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendLog")
            .field("segment_bytes", &self.segment_bytes)
            .field("tail", &self.tail.snapshot())
            .field("path", &self.storage_path())
            .finish_non_exhaustive()
    }
}
