//! One segment: a fixed-size region of memory, backed by a memory-mapped file or (for tests and
//! loom models) by the heap, that writers fill with records.
//!
//! A segment is mapped once, at full size, and never remapped or truncated while mapped, so
//! raw pointers into it stay valid for as long as the `Segment` lives. The directory hands out
//! `&Segment` only under an epoch guard, and a segment is dropped (unmapped) only after every
//! guard that could have seen it is gone.
//!
//! Concurrency: a writer owns the bytes of its reservation exclusively until it stores the
//! record's commit word with `Release`; after that the bytes are immutable. Readers touch the
//! bytes of a record only after an `Acquire` load of its commit word returned non-zero. The
//! commit word itself is only ever accessed atomically. Under loom, the commit words live in a
//! side table of loom atomics, and every byte access is reported to a loom cell per 8-byte word,
//! so the models check the publish protocol itself (a read not ordered after the write is a
//! reported race).

use std::path::{Path, PathBuf};

use memmap2::MmapRaw;
use seglog_format::{CommitWord, LogFile, SEGMENT_HEADER_BYTES, SegmentHeader};

use crate::error::{Error, Result};

mod counts;
mod file;
mod recycle;

pub(crate) use self::file::map_allocation_error;
pub(crate) use self::recycle::RecyclePool;
use crate::files::Fs;
use crate::sim::{SimDisk, SimFile};
use crate::stripes::Striped;
use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, Ordering};

enum Backing {
    File {
        /// Shared with [`SegmentFlusher`]s, so a flush can outlive the pin that found the
        /// segment (std's `Arc`: a lifetime, not a protocol loom needs to see).
        map: std::sync::Arc<MmapRaw>,
        path: PathBuf,
        // The file descriptor is closed once mapped: the mapping keeps the file, msync needs no
        // descriptor, and a log of thousands of segments must not hold thousands of them.
    },
    /// A file of a simulated disk (`crate::sim`): the memory is its page cache.
    Sim {
        file: std::sync::Arc<SimFile>,
        disk: std::sync::Arc<SimDisk>,
        path: PathBuf,
    },
    Heap {
        // `u64` so the memory is 8-byte aligned, like a page-aligned mapping.
        _memory: Box<[u64]>,
    },
}

impl Backing {
    /// The file system holding the segment's file, and its path there (`None` on the heap).
    fn file(&self) -> Option<(Fs, &Path)> {
        match self {
            Self::File { path, .. } => Some((Fs::Os, path)),
            Self::Sim { disk, path, .. } => Some((Fs::Sim(std::sync::Arc::clone(disk)), path)),
            Self::Heap { .. } => None,
        }
    }

    fn set_path(&mut self, to: &Path) {
        if let Self::File { path, .. } | Self::Sim { path, .. } = self {
            *path = to.to_path_buf();
        }
    }
}

/// A mapped segment.
pub(crate) struct Segment {
    id: u64,
    salt: u32,
    len: usize,
    base: *mut u8,
    backing: Backing,
    /// What the writers of this segment count, striped: every put adds to both on the
    /// segment it writes, so one shared counter would be a line every core writes.
    counts: Striped<counts::SegmentCounts>,
    /// The lowest version of any record in the segment (`u64::MAX` if none): a tombstone may
    /// be dropped only when no segment holds anything older.
    min_version: AtomicU64,
    /// Set when compaction retires the segment: its file (and hint) are deleted when it drops.
    delete_on_drop: AtomicBool,
    /// Set when compaction retires the segment's file, before its hint is removed.
    retired: AtomicBool,
    /// Where a retired segment's file waits to be reused once the segment is unmapped.
    recycle: Mutex<Option<(PathBuf, Arc<RecyclePool>)>>,
    #[cfg(seglog_loom)]
    commit_words: Box<[AtomicU64]>,
    #[cfg(seglog_loom)]
    cells: Box<[crate::sync::UnsafeCell<()>]>,
    /// Loom only: the creating log's token (see `AppendLog::__live_segments`).
    #[cfg(seglog_loom)]
    pub(crate) token: Option<crate::sync::Arc<()>>,
}

// SAFETY: `base` points into `backing`, which the segment owns and never moves or frees before
// it drops. Shared access follows the publish protocol in the module docs: a region is written
// only by the writer that reserved it, and read only after its commit word was published.
unsafe impl Send for Segment {}
// SAFETY: as for `Send`; all shared mutable state is either atomic or behind that protocol.
unsafe impl Sync for Segment {}

impl Segment {
    fn from_parts(id: u64, salt: u32, len: usize, base: *mut u8, backing: Backing) -> Self {
        debug_assert_eq!(
            base as usize % 8,
            0,
            "segment memory must be 8-byte aligned"
        );
        Self {
            id,
            salt,
            len,
            base,
            backing,
            counts: Striped::new(),
            min_version: AtomicU64::new(u64::MAX),
            delete_on_drop: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            recycle: Mutex::new(None),
            #[cfg(seglog_loom)]
            commit_words: (0..len / 8).map(|_| AtomicU64::new(0)).collect(),
            #[cfg(seglog_loom)]
            cells: (0..len / 8)
                .map(|_| crate::sync::UnsafeCell::new(()))
                .collect(),
            #[cfg(seglog_loom)]
            token: None,
        }
    }

    /// A heap-backed segment with its header written.
    pub(crate) fn new_heap(id: u64, segment_bytes: u64, salt: u32) -> Self {
        let len = segment_bytes as usize;
        let mut memory = vec![0u64; len / 8].into_boxed_slice();
        let base = memory.as_mut_ptr().cast::<u8>();
        let segment = Self::from_parts(id, salt, len, base, Backing::Heap { _memory: memory });
        let header = SegmentHeader::new(id, segment_bytes, salt);
        // SAFETY: the segment is not shared yet, so this thread owns all of its bytes, and the
        // header fits (segment_bytes >= MIN_SEGMENT_BYTES > SEGMENT_HEADER_BYTES).
        unsafe { segment.write(0, header.as_bytes()) };
        segment
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn salt(&self) -> u32 {
        self.salt
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The lowest version of any record written to the segment.
    #[allow(
        dead_code,
        reason = "for dropping tombstones, which needs index support first"
    )]
    pub(crate) fn min_version(&self) -> u64 {
        // Acquire: pairs with the Release in `note_version`, so a compaction that reads it after
        // a record's publish sees that record's version.
        self.min_version.load(Ordering::Acquire)
    }

    /// Notes that a record of `version` was written to the segment.
    pub(crate) fn note_version(&self, version: u64) {
        // Versions mostly grow with positions, so after a segment's first record the minimum
        // is almost always lower already: a load, which leaves the line shared between the
        // writers' cores, instead of an RMW on every append. Relaxed is enough for the
        // shortcut: this load happens-before the record's publish, so by read-read coherence
        // whoever Acquires that publish reads a minimum at least as low as the one seen here.
        if self.min_version.load(Ordering::Relaxed) <= version {
            return;
        }
        // Release: pairs with the Acquire in `min_version`.
        self.min_version.fetch_min(version, Ordering::Release);
    }

    /// The file behind the segment, if it has one.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.backing.file().map(|(_, path)| path)
    }

    /// The commit word of the record starting at `offset`: the one cell of a record accessed
    /// atomically, which owns the publish protocol's two orderings.
    ///
    /// # Panics
    /// If `offset` is not 8-aligned or not inside the segment.
    pub(crate) fn commit(&self, offset: usize) -> CommitCell<'_> {
        CommitCell(self.commit_word(offset))
    }

    fn commit_word(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.len,
            "commit word offset {offset} out of range"
        );
        #[cfg(seglog_loom)]
        {
            &self.commit_words[offset / 8]
        }
        #[cfg(not(seglog_loom))]
        {
            // SAFETY: checked above that the 8 bytes are inside the mapping and 8-aligned
            // (the base is page- or u64-aligned). The mapping lives as long as `self`. The
            // commit word is only ever accessed through this atomic (see module docs), and
            // `AtomicU64` has the size and alignment of `u64`.
            unsafe { &*self.base.add(offset).cast::<AtomicU64>() }
        }
    }

    #[cfg(seglog_loom)]
    fn track(&self, offset: usize, len: usize, write: bool) {
        let first = offset / 8;
        let last = (offset + len).div_ceil(8);
        for cell in &self.cells[first..last] {
            if write {
                cell.with_mut(|_| ());
            } else {
                cell.with(|_| ());
            }
        }
    }

    /// Copies `bytes` into the segment at `offset`.
    ///
    /// # Safety
    /// The caller must ensure:
    /// - `offset + bytes.len()` is within the segment;
    /// - no other thread reads or writes these bytes until the caller publishes them (the
    ///   caller reserved them, or the segment is not shared yet).
    pub(crate) unsafe fn write(&self, offset: usize, bytes: &[u8]) {
        debug_assert!(offset + bytes.len() <= self.len, "write past segment end");
        #[cfg(seglog_loom)]
        self.track(offset, bytes.len(), true);
        // SAFETY: in bounds and exclusively owned by the caller (the function's contract);
        // `bytes` cannot overlap the segment since the caller holds no reference into this
        // unpublished region.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(offset), bytes.len());
        }
    }

    /// A mutable view of `len` bytes at `offset`, for a writer filling its reservation in place.
    ///
    /// # Safety
    /// As for [`Segment::write`], for the whole lifetime of the returned slice.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        debug_assert!(offset + len <= self.len, "slice past segment end");
        #[cfg(seglog_loom)]
        self.track(offset, len, true);
        // SAFETY: in bounds, and nobody else touches these bytes while the slice lives (the
        // function's contract).
        unsafe { std::slice::from_raw_parts_mut(self.base.add(offset), len) }
    }

    /// A view of `len` published bytes at `offset`.
    ///
    /// # Safety
    /// The caller must ensure `offset + len` is within the segment and the bytes are
    /// published: an `Acquire` load of the commit word of the record containing them returned
    /// the value its writer stored with `Release`, or no other thread has ever had access to the
    /// segment (recovery). Published bytes are never written again while the segment lives.
    pub(crate) unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        debug_assert!(offset + len <= self.len, "slice past segment end");
        #[cfg(seglog_loom)]
        self.track(offset, len, false);
        // SAFETY: in bounds and immutable for the segment's lifetime (the contract).
        unsafe { std::slice::from_raw_parts(self.base.add(offset), len) }
    }

    /// Asks the CPU to start loading the cache lines of a record header and a short key at
    /// `offset`, for a caller about to read them. Only a hint: it reads nothing, cannot fault,
    /// and does nothing under loom or off x86-64.
    #[inline]
    pub(crate) fn prefetch_record(&self, offset: usize) {
        #[cfg(all(target_arch = "x86_64", not(seglog_loom)))]
        if offset < self.len {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // The header (40 bytes) and a key of up to 24 bytes end within 64 bytes of the
            // record's start, which may straddle two lines.
            let last = (offset + 63).min(self.len - 1);
            // `wrapping_add`: computing the address is all a prefetch needs; it is never
            // dereferenced, and both offsets are inside the mapping anyway.
            let first = self.base.wrapping_add(offset).cast::<i8>();
            let second = self.base.wrapping_add(last).cast::<i8>();
            // SAFETY: a prefetch has no memory effects and never faults, whatever the address.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(first);
                _mm_prefetch::<_MM_HINT_T0>(second);
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(seglog_loom))))]
        let _ = offset;
    }

    /// A handle that flushes this segment's mapping without a pin (`None` on the heap, which
    /// has nothing to flush).
    ///
    /// An msync waits for the disk, for milliseconds; a guard held that long holds back every
    /// retirement in the process (a compacted segment stays on disk until then). So callers
    /// take the handle under their pin and flush after it ends.
    pub(crate) fn flusher(&self) -> Option<SegmentFlusher> {
        let target = match &self.backing {
            Backing::File { map, .. } => FlushTarget::Map(std::sync::Arc::clone(map)),
            Backing::Sim { file, disk, .. } => {
                FlushTarget::Sim(std::sync::Arc::clone(file), std::sync::Arc::clone(disk))
            }
            Backing::Heap { .. } => return None,
        };
        let path = self.path().map(Path::to_path_buf).unwrap_or_default();
        Some(SegmentFlusher { target, path })
    }
}

/// A segment's mapping, kept mapped to be flushed after the pin that found the segment ended.
///
/// The segment may be retired meanwhile: its file then is deleted, or zeroed and reused by
/// another segment. Flushing the old mapping is still harmless: msync writes back the file's
/// dirty pages in the range, whichever mapping dirtied them, and never reads or faults them.
pub(crate) struct SegmentFlusher {
    target: FlushTarget,
    path: PathBuf,
}

enum FlushTarget {
    Map(std::sync::Arc<MmapRaw>),
    Sim(std::sync::Arc<SimFile>, std::sync::Arc<SimDisk>),
}

impl SegmentFlusher {
    /// Flushes `len` bytes from `offset` to stable storage (msync, `MS_SYNC`).
    pub(crate) fn flush_range(&self, offset: usize, len: usize) -> Result<()> {
        match &self.target {
            FlushTarget::Map(map) => map.flush_range(offset, len),
            FlushTarget::Sim(file, disk) => disk.flush(file, offset, len),
        }
        .map_err(|e| Error::io(self.path.clone(), e))
    }
}

/// A record's commit word (see [`Segment::commit`]): written last, with `Release`, to publish
/// the record; read with `Acquire` before any other byte of it.
pub(crate) struct CommitCell<'a>(&'a AtomicU64);

impl CommitCell<'_> {
    /// Publishes the record: its header body, key and value, written before this call by the
    /// thread that owns the reservation, become visible to every [`CommitCell::published`]
    /// that reads `word`. Release: pairs with the Acquire in [`CommitCell::published`].
    pub(crate) fn publish(&self, word: CommitWord) {
        #[cfg(seglog_loom)]
        if crate::sync::broken::is(crate::sync::broken::Broken::RelaxedCommit) {
            // The broken twin for the loom model: a Relaxed commit publishes nothing.
            self.0.store(word.raw(), Ordering::Relaxed);
            return;
        }
        self.0.store(word.raw(), Ordering::Release);
    }

    /// The commit word as published: zero (nothing published yet) or the word a writer stored
    /// after the record's bytes. Acquire: pairs with the Release in [`CommitCell::publish`], so
    /// those bytes are visible.
    pub(crate) fn published(&self) -> CommitWord {
        CommitWord::from_raw(self.0.load(Ordering::Acquire))
    }

    /// Stores the commit word of a batch's member, inside the batch's unpublished region.
    /// Relaxed: whoever reads the member first acquires something stored after this with
    /// Release by the same writer (the batch's commit word, or the index entry of the member).
    pub(crate) fn store_unpublished(&self, word: CommitWord) {
        self.0.store(word.raw(), Ordering::Relaxed);
    }

    /// Stores `word` in a segment no other thread can reach yet (recovery). Relaxed: the log
    /// is handed to other threads afterwards, which orders this store before any read.
    pub(crate) fn store_unshared(&self, word: CommitWord) {
        self.0.store(word.raw(), Ordering::Relaxed);
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let recycle = self.recycle.lock().take();
        if let Some((aside, pool)) = recycle {
            // Nobody can read this mapping any more (we are dropping it), so the file may be
            // zeroed and reused from now on.
            pool.put(aside);
            return;
        }
        // Relaxed: `drop` has exclusive access; the store was made by a thread that handed the
        // segment to the epoch collector afterwards.
        if !self.delete_on_drop.load(Ordering::Relaxed) {
            return;
        }
        if let Some((fs, path)) = self.backing.file() {
            // Unlinking a mapped file is fine: the mapping goes when `backing` drops, right
            // after this. Failure leaves a file that recovery will read as a segment of
            // superseded records, which is harmless.
            let _ = fs.remove_file(path);
            let _ = fs.remove_file(&path.with_file_name(LogFile::Hint(self.id).name()));
        }
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("id", &self.id)
            .field("len", &self.len)
            .field("path", &self.path())
            .finish()
    }
}

/// The segment header size as a `usize` offset.
pub(crate) const FIRST_RECORD_OFFSET: usize = SEGMENT_HEADER_BYTES;
