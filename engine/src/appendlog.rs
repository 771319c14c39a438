//! The segmented append log: reservation, publish, roll-over, reads by position, and scans.
//!
//! # Reservation
//! One atomic tail word (see [`crate::tail`]) holds the segment id and the next free offset.
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

use std::path::{Path, PathBuf};

use seglog_format::{
    CommitWord, MAX_KEY_BYTES, RECORD_HEADER_BYTES, RecordError, RecordHeader, RecordKind, Verify,
    decode_record, record_layout,
};

use crate::directory::Directory;
use crate::error::{Error, Result};
use crate::segment::{FIRST_RECORD_OFFSET, Segment};
use crate::sync::epoch::Guard;
use crate::sync::{AtomicU64, Backoff, Ordering};
use crate::tail::{Reserved, SEGMENT_ID_BITS, Tail};

/// Retired segment files kept for reuse instead of deleted.
const RECYCLED_SEGMENTS: usize = 16;

/// Bits of an index address (a position within the directory's ring, see
/// [`AppendLog::address_of`]): kept below 2^51 so the index can store `address >> 3` in 48
/// bits. Positions themselves are unbounded u64s.
pub(crate) const POSITION_BITS: u32 = 51;
const _: () = assert!(
    1u64 << POSITION_BITS == crate::index::ADDRESS_LIMIT,
    "index addresses cover the directory's ring exactly"
);

/// The largest segment id a log of `segment_bytes` segments uses: positions of every byte of
/// it and of the segment after it fit in a u64 (a log reaching it has appended 2^63 bytes).
pub(crate) const fn max_segment_id(segment_bytes: u64) -> u64 {
    (u64::MAX >> segment_bytes.trailing_zeros()) >> 1
}

/// Where a log keeps its segments.
pub(crate) enum Storage {
    /// Segment files in a directory.
    Dir { path: PathBuf, prefault: bool },
    /// Heap memory: for tests and loom models; nothing survives the process.
    Heap,
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

/// A published record, borrowed from the log for as long as the epoch guard it was read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'g> {
    /// The record's position.
    pub position: u64,
    /// Put or tombstone (scans skip padding and aborted records).
    pub kind: RecordKind,
    /// The record's version.
    pub version: u64,
    /// The key.
    pub key: &'g [u8],
    /// The value: empty for tombstones; starts on an 8-byte boundary.
    pub value: &'g [u8],
    /// The record's length in the log.
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
    records: AtomicU64,
    record_bytes: AtomicU64,
    aborted: AtomicU64,
    rollovers: AtomicU64,
    padding_bytes: AtomicU64,
}

/// The segmented append log. `Send + Sync`; every method takes `&self`.
pub struct AppendLog {
    /// The packed [`Tail`] word.
    tail: AtomicU64,
    directory: Directory,
    segment_bytes: u64,
    shift: u32,
    storage: Storage,
    /// How many segment ids have been claimed for creation: ids below it exist or are being
    /// created (see `ensure_segment`).
    claimed: AtomicU64,
    /// The lowest segment id that may still hold records (scans start here).
    first_segment: AtomicU64,
    counters: Counters,
    /// The directory lock, for file-backed logs; released when the log drops.
    lock: std::sync::OnceLock<crate::recovery::DirLock>,
    /// Everything below this position is published and flushed.
    synced: AtomicU64,
    /// Segments created since the directory was last fsynced.
    unsynced_segments: AtomicU64,
    /// Serializes flushes; concurrent `sync` calls wait here and share one flush (group
    /// commit). Never taken by appends or reads.
    sync_lock: std::sync::Mutex<()>,
    /// Retired segment files kept for reuse.
    recycle: std::sync::Arc<crate::segment::RecyclePool>,
    /// Whether a [`crate::Log`]'s index points into this log's segments.
    indexed: bool,
    /// Serializes hint writers (the background thread and `Log::write_hints`), which share a
    /// temporary file name per segment. Never taken by appends or reads.
    hint_lock: std::sync::Mutex<()>,
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

    pub(crate) fn with_storage(storage: Storage, segment_bytes: u64, max_segments: u64) -> Self {
        let shift = segment_bytes.trailing_zeros();
        let slots = Self::directory_slots(segment_bytes, max_segments);
        let max_segments = max_segments.clamp(1, slots);
        Self {
            tail: AtomicU64::new(Tail::new(0, FIRST_RECORD_OFFSET as u64).raw()),
            directory: Directory::new(max_segments, slots),
            segment_bytes,
            shift,
            storage,
            claimed: AtomicU64::new(0),
            first_segment: AtomicU64::new(0),
            counters: Counters::default(),
            lock: std::sync::OnceLock::new(),
            synced: AtomicU64::new(0),
            unsynced_segments: AtomicU64::new(0),
            sync_lock: std::sync::Mutex::new(()),
            recycle: std::sync::Arc::new(crate::segment::RecyclePool::new(RECYCLED_SEGMENTS)),
            indexed: false,
            hint_lock: std::sync::Mutex::new(()),
            #[cfg(seglog_loom)]
            segment_token: crate::sync::Arc::new(()),
        }
    }

    /// Slots of the directory's ring for `segment_bytes` segments, at most `max_segments` at
    /// once: a power of two, at most what index addresses and the tail's segment bits can name.
    pub(crate) fn directory_slots(segment_bytes: u64, max_segments: u64) -> u64 {
        let shift = segment_bytes.trailing_zeros();
        let slot_limit = 1u64 << (POSITION_BITS - shift).min(SEGMENT_ID_BITS);
        max_segments
            .clamp(1, slot_limit)
            .next_power_of_two()
            .min(slot_limit)
    }

    pub(crate) fn set_lock(&self, lock: crate::recovery::DirLock) {
        let _ = self.lock.set(lock);
    }

    /// Installs a segment found on disk by recovery.
    pub(crate) fn install_recovered(&self, segment: Segment, guard: &Guard) -> Result<()> {
        let id = segment.id();
        let (max, slots) = (self.directory.max_segments(), self.directory.slots());
        self.directory
            .install(segment, guard)
            .map_err(|s| Error::InvalidOption {
                name: "max_segments",
                reason: format!(
                    "the log holds more segments than {max} (or ids more than {slots} apart); \
                     segment {id} ({}) does not fit: reopen with a larger max_segments",
                    s.path()
                        .map(Path::display)
                        .map(|p| p.to_string())
                        .unwrap_or_default()
                ),
            })?;
        self.claimed.fetch_max(id + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Counts a record found by recovery in the log's totals.
    pub(crate) fn note_recovered(&self, record_bytes: u32) {
        // Relaxed: statistics only.
        self.counters.records.fetch_add(1, Ordering::Relaxed);
        self.counters
            .record_bytes
            .fetch_add(u64::from(record_bytes), Ordering::Relaxed);
    }

    /// Counts the bytes of aborted records found by recovery (or listed by a hint) in the
    /// log's totals, as the live log counts the aborted records it writes: retiring a segment
    /// takes out every non-padding record it holds.
    pub(crate) fn note_recovered_filler(&self, bytes: u64) {
        // Relaxed: statistics only.
        self.counters
            .record_bytes
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// Sets where writing resumes after recovery, and where scans start.
    /// Records that everything below the tail is durable (after recovery synced the file
    /// system).
    pub(crate) fn mark_synced_to_tail(&self) {
        // Relaxed: nothing else runs yet; later `sync` calls read it under `sync_lock`.
        self.synced.store(self.tail_position(), Ordering::Relaxed);
    }

    pub(crate) fn set_recovered_tail(&self, segment: u64, offset: u64, first_segment: u64) {
        self.tail
            .store(Tail::new(segment, offset).raw(), Ordering::Release);
        self.first_segment.store(first_segment, Ordering::Release);
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
    /// the ring's slots, then the offset), below 2^[`POSITION_BITS`]. The ring never holds two
    /// segments with the same slot, so the address names the record as well as the position.
    pub(crate) fn address_of(&self, position: u64) -> u64 {
        position & ((self.directory.slots() << self.shift) - 1)
    }

    /// The position of the record at index `address` (see [`AppendLog::address_of`]), if its
    /// segment is installed.
    pub(crate) fn position_of(&self, address: u64, guard: &Guard) -> Option<u64> {
        let (slot, offset) = self.split(address);
        let segment = self.directory.in_slot(slot, guard)?;
        Some(self.position(segment.id(), offset))
    }

    /// Reads the published record at index `address`; see [`AppendLog::read`].
    pub(crate) fn read_address<'g>(
        &'g self,
        address: u64,
        guard: &'g Guard,
    ) -> Result<RecordRef<'g>> {
        match self.position_of(address, guard) {
            Some(position) => self.read_at(position, guard),
            None => Err(Error::NoRecord {
                position: address,
                reason: "no segment holds this index address".into(),
            }),
        }
    }

    /// The tail's segment id and offset (the offset may run past the segment end while a
    /// roll-over is due). `guard` must have been pinned before the call, so the segment the
    /// tail names cannot be retired and its slot reused while we look it up.
    fn tail(&self, guard: &Guard) -> (u64, u64) {
        let backoff = Backoff::new();
        loop {
            // Acquire: pairs with the Release swaps in `roll_over`, so the segment the tail
            // names is installed in the directory.
            let tail = Tail::from_raw(self.tail.load(Ordering::Acquire));
            let slot = tail.segment() % self.directory.slots();
            if let Some(segment) = self.directory.in_slot(slot, guard) {
                return (segment.id(), tail.offset());
            }
            // Only `retire_segment` can empty the slot of a segment the tail named: the tail
            // has moved on since our load. Load it again.
            backoff.snooze();
        }
    }

    /// The segment whose id's low bits (as the tail keeps them) are `bits`: the tail's segment,
    /// or one the tail has just left. The roll-over installs a segment before the tail moves to
    /// it, and a segment is retired only when sealed and fully published, after every thread
    /// pinned at the time has unpinned: a thread that read the tail while pinned finds it.
    fn tail_segment<'g>(&self, bits: u64, guard: &'g Guard) -> &'g Segment {
        self.directory
            .in_slot(bits % self.directory.slots(), guard)
            .expect("the tail's segment is installed before the tail moves to it")
    }

    /// The position the next reservation would start at, if it fits in the current segment
    /// (the start of the next segment if the current one is full).
    pub fn tail_position(&self) -> u64 {
        let guard = crate::sync::epoch::pin();
        let (segment, offset) = self.tail(&guard);
        self.position(segment, offset.min(self.segment_bytes))
    }

    /// Appends a put record of `key` and `value`.
    pub fn append(&self, key: &[u8], value: &[u8]) -> Result<Appended> {
        self.append_record(RecordKind::Put, key, value.len(), None, false, |buf| {
            buf.copy_from_slice(value);
        })
    }

    /// Appends a tombstone for `key`.
    pub fn append_tombstone(&self, key: &[u8]) -> Result<Appended> {
        self.append_record(RecordKind::Tombstone, key, 0, None, false, |_| {})
    }

    /// Appends a put record of `key` with a `value_len`-byte value that `fill` writes in place,
    /// straight into the log (zero-copy). The buffer starts on an 8-byte boundary and holds
    /// zeros.
    ///
    /// If `fill` panics, an aborted record is left in the reserved space (scans pass it) and the
    /// panic continues.
    pub fn append_with(
        &self,
        key: &[u8],
        value_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Appended> {
        self.append_record(RecordKind::Put, key, value_len, None, false, fill)
    }

    /// Checks a record's sizes before anything is reserved, so bad input changes nothing.
    pub(crate) fn check_sizes(&self, key_len: usize, value_len: usize) -> Result<u32> {
        let max_key = self.max_key_len();
        if key_len > max_key {
            // Also a key that fits the format but not this log's segments, even with an empty
            // value: such a record would cross every segment and never be written.
            return Err(Error::KeyTooLarge {
                len: key_len,
                max: max_key,
            });
        }
        let max = self.max_value_len(key_len);
        if value_len > max {
            return Err(Error::ValueTooLarge {
                len: value_len,
                max,
            });
        }
        let layout = record_layout(key_len, value_len).expect("sizes checked against the segment");
        Ok(layout.record_bytes)
    }

    /// Appends one record. `version` is the record's version, or `None` to use its position.
    ///
    /// With `hold`, the record's segment counts it as *awaiting its index install* from before
    /// it is published until the caller calls [`AppendLog::release_hold`]: compaction leaves a
    /// segment alone while any record in it is published but not yet installed (it would look
    /// dead, and the install would then point into a retired segment).
    pub(crate) fn append_record(
        &self,
        kind: RecordKind,
        key: &[u8],
        value_len: usize,
        version: Option<u64>,
        hold: bool,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Appended> {
        debug_assert!(matches!(kind, RecordKind::Put | RecordKind::Tombstone));
        let record_bytes = self.check_sizes(key.len(), value_len)?;
        let layout = record_layout(key.len(), value_len).expect("checked by check_sizes");
        let guard = crate::sync::epoch::pin();
        let (segment, offset) = self.reserve(u64::from(record_bytes), &guard)?;
        let position = self.position(segment.id(), offset);
        let version = version.unwrap_or(position);
        segment.note_version(version);
        let offset = offset as usize;

        // If `fill` panics, this guard publishes an aborted record over the reservation.
        let abort = AbortOnUnwind {
            segment,
            offset,
            record_bytes,
            position,
            counters: &self.counters,
        };
        // SAFETY: `reserve` gave this thread `[offset, offset + record_bytes)` exclusively, and
        // nothing in it is published until the commit word is stored below.
        unsafe { segment.write(offset + layout.key_offset as usize, key) };
        let value_offset = offset + layout.value_offset as usize;
        {
            // SAFETY: as above; the slice ends before the commit store below.
            let value = unsafe { segment.slice_mut(value_offset, value_len) };
            fill(value);
        }
        std::mem::forget(abort);

        // SAFETY: as above; reading back our own unpublished bytes to checksum them.
        let value = unsafe { segment.slice(value_offset, value_len) };
        let header = RecordHeader::new(
            kind,
            key.len(),
            value_len,
            version,
            position,
            segment.salt(),
        )
        .expect("sizes checked")
        .sealed(key, value);
        // SAFETY: as above.
        unsafe { segment.write(offset + RecordHeader::COMMIT_BYTES, header.body_bytes()) };
        if hold {
            // Before the publish: a compactor that sees the record published sees the hold.
            segment.hold_install();
        }
        publish(segment, offset, header.commit_word());
        // Relaxed: statistics only.
        self.counters.records.fetch_add(1, Ordering::Relaxed);
        self.counters
            .record_bytes
            .fetch_add(u64::from(record_bytes), Ordering::Relaxed);
        Ok(Appended {
            position,
            version,
            record_bytes,
        })
    }

    /// Reserves `len` bytes; returns the segment and offset of the region.
    fn reserve<'g>(&'g self, len: u64, guard: &'g Guard) -> Result<(&'g Segment, u64)> {
        debug_assert!(len <= self.segment_bytes - FIRST_RECORD_OFFSET as u64);
        loop {
            let old = self.bump_tail(len);
            match old.classify(len, self.segment_bytes) {
                Reserved::Fits { segment, offset } => {
                    return Ok((self.tail_segment(segment, guard), offset));
                }
                Reserved::Crosses { segment, offset } => {
                    return self.roll_over(segment, offset, len, guard);
                }
                Reserved::Overshot { segment } => self.wait_for_roll_over(segment),
            }
        }
    }

    /// One atomic bump of the tail by `len`; returns the value before the bump.
    fn bump_tail(&self, len: u64) -> Tail {
        #[cfg(seglog_loom)]
        if crate::sync::broken::is(crate::sync::broken::Broken::LoadThenAdd) {
            // The seed design's allocation (read, then add): two writers can read the same
            // tail and get the same region. Only for the loom twin that must catch it.
            let old = self.tail.load(Ordering::Acquire);
            self.tail.store(old + len, Ordering::Release);
            return Tail::from_raw(old);
        }
        // Acquire: pairs with the Release store in `roll_over` that moved the tail to this
        // segment, so the directory entry installed before that store is visible to the
        // `Directory::get` that follows. Atomicity alone makes regions disjoint.
        Tail::from_raw(self.tail.fetch_add(len, Ordering::Acquire))
    }

    /// Waits until the tail leaves `segment` or is reset to its end (after a failed roll-over).
    fn wait_for_roll_over(&self, segment: u64) {
        let backoff = Backoff::new();
        loop {
            // Acquire: pairs with the Release stores in `roll_over`.
            let tail = Tail::from_raw(self.tail.load(Ordering::Acquire));
            if tail.segment() != segment || tail.offset() <= self.segment_bytes {
                return;
            }
            backoff.snooze();
        }
    }

    /// Run by the one writer whose reservation of `len` bytes at `offset` crossed the end of
    /// the segment the tail names with `bits`. Moves the tail to the next segment with this
    /// writer's `len` bytes already reserved at its start, and returns them.
    fn roll_over<'g>(
        &'g self,
        bits: u64,
        offset: u64,
        len: u64,
        guard: &'g Guard,
    ) -> Result<(&'g Segment, u64)> {
        let current = self.tail_segment(bits, guard);
        let segment = current.id();
        let next = segment + 1;
        let installed = self.ensure_segment(next, guard);
        if let Err(error) = installed {
            self.write_padding(current, offset);
            // Release: pairs with the Acquire in `wait_for_roll_over`/`bump_tail`. The next
            // bump sees offset == end and makes its writer the crossing writer, who retries.
            let overshot = Tail::from_raw(self.tail.swap(
                Tail::new(segment, self.segment_bytes).raw(),
                Ordering::Release,
            ));
            debug_assert!(
                overshot.segment() == bits && overshot.offset() > self.segment_bytes,
                "only the crossing writer moves the tail: {overshot:?}"
            );
            return Err(error);
        }
        let next_segment = self
            .directory
            .get(next, guard)
            .expect("ensure_segment installed it, and only compaction removes sealed segments");
        // Release: publishes the installed next segment (and everything before) to the Acquire
        // `fetch_add` in `bump_tail` and the load in `wait_for_roll_over`. Only this thread
        // changes the segment field, and every bump since ours saw an overshot offset and will
        // retry, so overwriting their bumps loses no reservation. A swap rather than a store:
        // equivalent here, but a read-modify-write keeps loom 0.7 from letting a later
        // `fetch_add` read a value from before it (tokio-rs/loom#254), and it lets us assert
        // what we replaced. The new tail already covers this writer's own record at the start
        // of the segment: the record that crossed the end is the first in the next one, so a
        // record of any allowed size gets in however many writers wait for the roll-over.
        let overshot = Tail::from_raw(self.tail.swap(
            Tail::new(next, FIRST_RECORD_OFFSET as u64 + len).raw(),
            Ordering::Release,
        ));
        debug_assert!(
            overshot.segment() == bits && overshot.offset() > self.segment_bytes,
            "only the crossing writer moves the tail off its segment: {overshot:?}"
        );
        self.write_padding(current, offset);
        // Relaxed: statistics only.
        self.counters.rollovers.fetch_add(1, Ordering::Relaxed);
        // Prepare the segment after next now, outside the critical section. A failure here is
        // not an error for this writer: the next roll-over tries again and reports it.
        let _ = self.ensure_segment(next + 1, guard);
        Ok((next_segment, FIRST_RECORD_OFFSET as u64))
    }

    /// Publishes a padding record from `offset` to the end of `segment`.
    fn write_padding(&self, segment: &Segment, offset: u64) {
        let remaining = self.segment_bytes - offset;
        if remaining == 0 {
            return;
        }
        let offset = offset as usize;
        let commit = CommitWord::new(RecordKind::Padding, remaining as u32);
        if remaining as usize >= RECORD_HEADER_BYTES {
            let header = RecordHeader::filler(
                RecordKind::Padding,
                remaining as u32,
                self.position(segment.id(), offset as u64),
                segment.salt(),
            );
            // SAFETY: the crossing writer owns `[offset, end)` of this segment (its reservation
            // contains it) and publishes it below.
            unsafe { segment.write(offset + RecordHeader::COMMIT_BYTES, header.body_bytes()) };
        }
        publish(segment, offset, commit);
        // Relaxed: statistics only.
        self.counters
            .padding_bytes
            .fetch_add(remaining, Ordering::Relaxed);
    }

    /// Makes sure segment `id` exists in the directory, creating it if no other thread has
    /// claimed it. If another thread is creating it, waits for that thread.
    pub(crate) fn ensure_segment(&self, id: u64, guard: &Guard) -> Result<()> {
        let backoff = Backoff::new();
        loop {
            if self.directory.get(id, guard).is_some() {
                return Ok(());
            }
            if id > max_segment_id(self.segment_bytes) {
                // 2^63 bytes appended: positions would no longer fit.
                return Err(Error::LogFull {
                    max_segments: self.directory.max_segments(),
                });
            }
            if !self.directory.has_room_for(id, guard) {
                if self.directory.get(id, guard).is_some() {
                    // Installed by its creator since we looked.
                    return Ok(());
                }
                // The ring slot still holds a segment `slots` ids older, or the log holds
                // `max_segments`: compaction must retire old segments first.
                return Err(Error::LogFull {
                    max_segments: self.directory.max_segments(),
                });
            }
            // Claims go up one id at a time: claiming `id` moves the count from `id` to `id + 1`.
            // Acquire on success pairs with the Release in the failure path below (a creator
            // that gave up), Release is not needed: the segment is published by its own CAS in
            // `Directory::install`. Relaxed on failure: we re-check the directory.
            let claimed =
                self.claimed
                    .compare_exchange(id, id + 1, Ordering::AcqRel, Ordering::Relaxed);
            match claimed {
                Ok(_) => {
                    return match self.create_segment(id) {
                        Ok(segment) => match self.directory.install(segment, guard) {
                            Ok(()) => Ok(()),
                            Err(refused) => {
                                // Only a claim can install `id`, so the ring slot or the count
                                // filled up meanwhile (recovery's installs never race this).
                                refused.discard();
                                self.claimed.store(id, Ordering::Release);
                                Err(Error::LogFull {
                                    max_segments: self.directory.max_segments(),
                                })
                            }
                        },
                        Err(error) => {
                            // Give the claim back so the next attempt retries the creation.
                            self.claimed.store(id, Ordering::Release);
                            Err(error)
                        }
                    };
                }
                // The segment before `id` is not claimed yet: create it first (only when
                // preparation fell behind).
                Err(count) if count < id => self.ensure_segment(id - 1, guard)?,
                // Another thread is creating `id`: wait for it.
                Err(_) => backoff.snooze(),
            }
        }
    }

    fn create_segment(&self, id: u64) -> Result<Segment> {
        match &self.storage {
            Storage::Heap => {
                #[allow(unused_mut)]
                let mut segment = Segment::new_heap(id, self.segment_bytes, heap_salt(id));
                #[cfg(seglog_loom)]
                {
                    segment.token = Some(crate::sync::Arc::clone(&self.segment_token));
                }
                Ok(segment)
            }
            Storage::Dir { path, prefault } => {
                let segment = Segment::create_file(
                    path,
                    id,
                    self.segment_bytes,
                    random_salt(),
                    *prefault,
                    &self.recycle,
                )?;
                // Relaxed: read under `sync_lock` by `sync`, which only needs to see it
                // eventually for segments it flushes (those are installed, published through
                // the tail's Release/Acquire).
                self.unsynced_segments.fetch_add(1, Ordering::Relaxed);
                Ok(segment)
            }
        }
    }

    /// Reads the published record at `position`.
    ///
    /// `position` should come from an append, a scan or the index. A position that does not
    /// start a published record gives an error, never a wrong record. (Positions inside a record
    /// that is still being written are outside this contract: they read a word the writer is
    /// filling.)
    ///
    /// The guard must come from [`crate::pin`] (or [`crate::Pinned::guard`]): the record's
    /// segment stays mapped while it lives.
    pub fn read<'g>(&'g self, position: u64, guard: &'g crate::Guard) -> Result<RecordRef<'g>> {
        self.read_at(position, guard.epoch())
    }

    /// [`AppendLog::read`] under an epoch guard of the engine's collector.
    pub(crate) fn read_at<'g>(&'g self, position: u64, guard: &'g Guard) -> Result<RecordRef<'g>> {
        let no_record = |reason: String| Error::NoRecord { position, reason };
        let (segment_id, offset) = self.split(position);
        if offset < FIRST_RECORD_OFFSET as u64 || !offset.is_multiple_of(8) {
            return Err(no_record("not a record boundary".into()));
        }
        let Some(segment) = self.directory.get(segment_id, guard) else {
            return Err(no_record(format!("segment {segment_id} is not in the log")));
        };
        match read_record(segment, offset as usize, position) {
            Ok(Some(record)) => match record.kind {
                RecordKind::Put | RecordKind::Tombstone => Ok(record),
                kind => Err(no_record(format!("position holds a {kind:?} record"))),
            },
            Ok(None) => Err(no_record("nothing is published there".into())),
            Err(error) => Err(no_record(format!("no valid record starts there ({error})"))),
        }
    }

    /// Iterates over the published puts and tombstones in log order, from the oldest segment,
    /// skipping padding and aborted records, and stopping at the first position not yet
    /// published. The guard must come from [`crate::pin`] (or [`crate::Pinned::guard`]).
    pub fn scan<'g>(&'g self, guard: &'g crate::Guard) -> Scan<'g> {
        self.scan_at(guard.epoch())
    }

    /// [`AppendLog::scan`] under an epoch guard of the engine's collector.
    pub(crate) fn scan_at<'g>(&'g self, guard: &'g Guard) -> Scan<'g> {
        // Acquire: pairs with the Release store in `set_recovered_tail` (and compaction).
        let first = self.first_segment.load(Ordering::Acquire);
        Scan {
            log: self,
            guard,
            segment: first,
            offset: FIRST_RECORD_OFFSET as u64,
            error: None,
        }
    }

    /// Removes segment `id` from the log; it is dropped once every reader pinned before the call
    /// has unpinned. Refuses the tail's segment and later ones, a segment with a write still
    /// being installed, and every segment of a log a [`crate::Log`] indexes (its index may point
    /// into any of them; compaction retires those). For the loom models.
    #[doc(hidden)]
    pub fn retire_segment(&self, id: u64) -> bool {
        if self.indexed {
            return false;
        }
        let guard = crate::sync::epoch::pin();
        let (tail_segment, _) = self.tail(&guard);
        match self.directory.get(id, &guard) {
            Some(segment)
                if id < tail_segment
                    && !segment.installs_pending()
                    && self.fully_published(segment) =>
            {
                self.directory.remove(id, &guard)
            }
            _ => false,
        }
    }

    /// Whether every record of sealed `segment` is published: no writer still owns a region of
    /// it (or will look the segment up again to write it).
    fn fully_published(&self, segment: &Segment) -> bool {
        let mut offset = FIRST_RECORD_OFFSET;
        while offset < segment.len() {
            let position = self.position(segment.id(), offset as u64);
            match read_record(segment, offset, position) {
                Ok(Some(record)) => offset += record.record_bytes as usize,
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }

    /// Held while a hint file is written (see `hints::write_hint`).
    pub(crate) fn lock_hints(&self) -> std::sync::MutexGuard<'_, ()> {
        self.hint_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks this log as indexed by a [`crate::Log`] (see [`AppendLog::retire_segment`]).
    pub(crate) fn mark_indexed(&mut self) {
        self.indexed = true;
    }

    /// Loom only: segments not yet dropped (installed, or retired and still deferred).
    #[cfg(seglog_loom)]
    #[doc(hidden)]
    pub fn __live_segments(&self) -> usize {
        crate::sync::Arc::strong_count(&self.segment_token) - 1
    }

    /// Counters since the log was opened.
    pub fn stats(&self) -> AppendStats {
        // Relaxed: statistics, each counter read on its own.
        AppendStats {
            records: self.counters.records.load(Ordering::Relaxed),
            record_bytes: self.counters.record_bytes.load(Ordering::Relaxed),
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

    /// Ends the hold `append_record(.., hold: true, ..)` took on the record at `position`, once
    /// its index install is done.
    pub(crate) fn release_hold(&self, position: u64) {
        let guard = crate::sync::epoch::pin();
        let segment = self
            .directory
            .get(self.split(position).0, &guard)
            .expect("a held segment is never retired");
        segment.release_install();
    }

    /// The install hold of the record at `position`, appended with `hold: true`, as a guard
    /// that releases it when dropped.
    pub(crate) fn install_hold(&self, position: u64) -> InstallHold<'_> {
        InstallHold {
            log: self,
            position,
        }
    }

    /// Adds `delta` to the live bytes of the segment holding `position`.
    pub(crate) fn add_segment_live_bytes(&self, position: u64, delta: i64, guard: &Guard) {
        if let Some(segment) = self.directory.get(self.split(position).0, guard) {
            segment.add_live_bytes(delta);
        }
    }

    /// Takes a reclaimed segment's records out of the log's totals.
    pub(crate) fn note_reclaimed_record_bytes(&self, bytes: u64) {
        // Relaxed: statistics. Saturating: the totals count every non-padding record found at
        // open or written since, so this never exceeds them; if it ever did, a wrapped total
        // would make compaction due forever.
        let _ = self.counters.record_bytes.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |total| Some(total.saturating_sub(bytes)),
        );
    }

    /// Moves the first segment past ids compaction removed, so scans and victim searches
    /// start at the oldest segment that exists.
    pub(crate) fn advance_first_segment(&self, guard: &Guard) {
        let (tail_segment, _) = self.split(self.tail_position());
        let mut first = self.first_segment();
        while first < tail_segment && self.directory.get(first, guard).is_none() {
            first += 1;
        }
        // Release: pairs with the Acquire loads in `scan` and `first_segment`.
        self.first_segment.fetch_max(first, Ordering::Release);
    }

    /// Notes a recovered record's version in its segment's minimum.
    pub(crate) fn note_segment_version(&self, position: u64, version: u64, guard: &Guard) {
        if let Some(segment) = self.directory.get(self.split(position).0, guard) {
            segment.note_version(version);
        }
    }

    /// Segments in the log.
    pub fn segment_count(&self) -> u64 {
        self.directory.count()
    }

    /// Flushes every record published before the call to stable storage, and the directory
    /// entries of segments created since the last sync. Concurrent calls share flushes: a caller
    /// that finds its records already flushed by another returns without flushing again.
    pub fn sync(&self) -> Result<()> {
        let target = self.tail_position();
        let _flushing = self
            .sync_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
            if to > from {
                segment.flush_range(from as usize, (to - from) as usize)?;
            }
        }
        // Segments created ahead of the tail (prefetched) have a header but no flushed byte
        // yet; recovery trusts only a segment whose header survived, so flush those headers too,
        // or a power loss could keep a later segment and lose this one (a gap after the tail).
        let claimed = self.claimed.load(Ordering::Acquire);
        let after = if last_offset == 0 {
            last_segment
        } else {
            last_segment + 1
        };
        for id in after..claimed {
            match self.directory.get(id, &guard) {
                Some(segment) => segment.flush_range(0, FIRST_RECORD_OFFSET)?,
                // Still being created: its creator has not installed it yet, and the next sync
                // flushes it.
                None => break,
            }
        }
        // Relaxed: read-modify-write under `sync_lock`.
        if self.unsynced_segments.swap(0, Ordering::Relaxed) > 0
            && let Some(path) = self.storage_path()
        {
            sync_dir(path)?;
        }
        self.synced.store(frontier, Ordering::Relaxed);
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

    /// Retired segment files kept for reuse.
    pub(crate) fn recycle_pool(&self) -> &std::sync::Arc<crate::segment::RecyclePool> {
        &self.recycle
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
            Storage::Dir { path, .. } => Some(path),
            Storage::Heap => None,
        }
    }
}

impl std::fmt::Debug for AppendLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendLog")
            .field("segment_bytes", &self.segment_bytes)
            .field("tail", &Tail::from_raw(self.tail.load(Ordering::Relaxed)))
            .field("path", &self.storage_path())
            .finish_non_exhaustive()
    }
}

/// Stores the commit word that publishes the record at `offset`.
fn publish(segment: &Segment, offset: usize, commit: CommitWord) {
    #[cfg(seglog_loom)]
    if crate::sync::broken::is(crate::sync::broken::Broken::RelaxedCommit) {
        // The broken twin for the loom model: a Relaxed commit publishes nothing.
        segment
            .commit_word(offset)
            .store(commit.raw(), Ordering::Relaxed);
        return;
    }
    // Release: publishes the header body, key and value written before it. Pairs with the
    // Acquire load in `read_record`.
    segment
        .commit_word(offset)
        .store(commit.raw(), Ordering::Release);
}

/// Reads the record at `offset` of `segment`: `Ok(None)` if nothing is published there, any
/// kind otherwise, and an error if the bytes there are not a valid record.
pub(crate) fn read_record(
    segment: &Segment,
    offset: usize,
    position: u64,
) -> Result<Option<RecordRef<'_>>, RecordError> {
    // Acquire: pairs with the Release store in `publish`, so the record's bytes are visible.
    let commit = CommitWord::from_raw(segment.commit_word(offset).load(Ordering::Acquire));
    let corrupt = |reason: RecordError| reason;
    let (kind, record_bytes) = match commit.decode() {
        Ok(decoded) => decoded,
        Err(RecordError::Unwritten) => return Ok(None),
        Err(e) => return Err(corrupt(e)),
    };
    let available = segment.len() - offset;
    if record_bytes as usize > available {
        return Err(corrupt(RecordError::Truncated {
            needed: u64::from(record_bytes),
            available: available as u64,
        }));
    }
    if (record_bytes as usize) < RECORD_HEADER_BYTES {
        // Short padding: only its commit word, and it must reach the end of the segment.
        if offset + record_bytes as usize != segment.len() {
            return Err(corrupt(RecordError::BadCommitWord { raw: commit.raw() }));
        }
        return Ok(Some(RecordRef {
            position,
            kind,
            version: 0,
            key: &[],
            value: &[],
            record_bytes,
        }));
    }
    if kind == RecordKind::Padding && offset + record_bytes as usize != segment.len() {
        return Err(RecordError::BadCommitWord { raw: commit.raw() });
    }
    // SAFETY: in bounds (checked), and published: the Acquire load above returned the commit
    // word its writer stored with Release after writing these bytes. The slice ends at the
    // record's end, so the decoder's "padding reaches the end" check holds by construction and
    // was made just above against the real segment end.
    let bytes = unsafe { segment.slice(offset, record_bytes as usize) };
    let view = decode_record(commit, bytes, position, segment.salt(), Verify::Structure)
        .map_err(corrupt)?;
    Ok(Some(RecordRef::from_view(position, &view)))
}

impl<'a> RecordRef<'a> {
    /// The record `view`, decoded at `position`.
    pub(crate) fn from_view(position: u64, view: &seglog_format::RecordView<'a>) -> Self {
        Self {
            position,
            kind: view.kind,
            version: view.header.version(),
            key: view.key,
            value: view.value,
            record_bytes: view.record_bytes,
        }
    }
}

/// The install hold of one record (see [`AppendLog::append_record`]), released when dropped:
/// also when its install panics, since a hold left behind would keep compaction off the
/// record's segment for the log's life.
pub(crate) struct InstallHold<'a> {
    log: &'a AppendLog,
    position: u64,
}

impl Drop for InstallHold<'_> {
    fn drop(&mut self) {
        self.log.release_hold(self.position);
    }
}

/// Publishes an aborted record over a reservation whose fill closure panicked.
struct AbortOnUnwind<'a> {
    segment: &'a Segment,
    offset: usize,
    record_bytes: u32,
    position: u64,
    counters: &'a Counters,
}

impl Drop for AbortOnUnwind<'_> {
    fn drop(&mut self) {
        let header = RecordHeader::filler(
            RecordKind::Aborted,
            self.record_bytes,
            self.position,
            self.segment.salt(),
        );
        // SAFETY: the panicking writer still owns its reservation (nothing was published), and
        // the value slice handed to the closure is gone with the unwinding closure.
        unsafe {
            self.segment.write(
                self.offset + RecordHeader::COMMIT_BYTES,
                header.body_bytes(),
            );
        }
        publish(self.segment, self.offset, header.commit_word());
        // Relaxed: statistics only.
        self.counters.aborted.fetch_add(1, Ordering::Relaxed);
        self.counters.records.fetch_add(1, Ordering::Relaxed);
        self.counters
            .record_bytes
            .fetch_add(u64::from(self.record_bytes), Ordering::Relaxed);
    }
}

/// A scan over the log in order. See [`AppendLog::scan`].
pub struct Scan<'g> {
    log: &'g AppendLog,
    guard: &'g Guard,
    segment: u64,
    offset: u64,
    error: Option<Error>,
}

impl Scan<'_> {
    /// The error that ended the scan early, if any (a record that failed validation).
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// The position the scan will look at next.
    pub fn position(&self) -> u64 {
        self.log.position(self.segment, self.offset)
    }
}

impl<'g> Iterator for Scan<'g> {
    type Item = RecordRef<'g>;

    fn next(&mut self) -> Option<RecordRef<'g>> {
        if self.error.is_some() {
            return None;
        }
        loop {
            if self.offset >= self.log.segment_bytes {
                self.segment += 1;
                self.offset = FIRST_RECORD_OFFSET as u64;
            }
            let segment = match self.log.directory.get(self.segment, self.guard) {
                Some(segment) => segment,
                None => {
                    // A gap left by compaction: skip to the next segment, but not past the tail.
                    let (tail_segment, _) = self.log.tail(self.guard);
                    if self.segment < tail_segment {
                        self.segment += 1;
                        self.offset = FIRST_RECORD_OFFSET as u64;
                        continue;
                    }
                    return None;
                }
            };
            let position = self.log.position(self.segment, self.offset);
            match read_record(segment, self.offset as usize, position) {
                Ok(None) => return None,
                Ok(Some(record)) => {
                    self.offset += u64::from(record.record_bytes);
                    match record.kind {
                        RecordKind::Put | RecordKind::Tombstone => return Some(record),
                        RecordKind::Padding | RecordKind::Aborted => continue,
                    }
                }
                Err(reason) => {
                    self.error = Some(Error::Corrupt {
                        path: segment.path().map(Path::to_path_buf).unwrap_or_default(),
                        offset: self.offset,
                        reason: reason.to_string(),
                    });
                    return None;
                }
            }
        }
    }
}

/// Makes a directory's entries (new segment files) durable.
fn sync_dir(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// A random salt for a new segment file, from the standard library's per-process random keys.
fn random_salt() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one(nanos) as u32
}

/// A fixed salt for heap segments, so loom runs are deterministic.
fn heap_salt(id: u64) -> u32 {
    (id as u32).wrapping_mul(0x9E37_79B9) ^ 0x5EC1_06AA
}
