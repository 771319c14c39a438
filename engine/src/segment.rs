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

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};
use seglog_format::{SEGMENT_HEADER_BYTES, SegmentHeader};

use crate::error::{Error, Result};
use crate::sync::{AtomicU64, Ordering};

/// File name of segment `id`: 16 lowercase hex digits and `.seg`.
pub(crate) fn segment_file_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

/// Parses a segment file name back into its id.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

enum Backing {
    File {
        map: MmapRaw,
        path: PathBuf,
        // The file descriptor is closed once mapped: the mapping keeps the file, msync needs no
        // descriptor, and a log of thousands of segments must not hold thousands of them.
    },
    Heap {
        // `u64` so the memory is 8-byte aligned, like a page-aligned mapping.
        _memory: Box<[u64]>,
    },
}

/// A mapped segment.
pub(crate) struct Segment {
    id: u64,
    salt: u32,
    len: usize,
    base: *mut u8,
    backing: Backing,
    /// Bytes of this segment's records that the index points at (compaction's live ratio).
    live_bytes: AtomicU64,
    /// Records published here whose index install has not finished (see
    /// `AppendLog::append_record`'s `hold`).
    pending_installs: AtomicU64,
    /// The lowest version of any record in the segment (`u64::MAX` if none): a tombstone may
    /// be dropped only when no segment holds anything older.
    min_version: AtomicU64,
    /// Set when compaction retires the segment: its file (and hint) are deleted when it drops.
    delete_on_drop: std::sync::atomic::AtomicBool,
    /// Set when compaction retires the segment's file, before its hint is removed.
    retired: std::sync::atomic::AtomicBool,
    /// Where a retired segment's file waits to be reused once the segment is unmapped.
    recycle: std::sync::Mutex<Option<(PathBuf, std::sync::Arc<RecyclePool>)>>,
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
            live_bytes: AtomicU64::new(0),
            pending_installs: AtomicU64::new(0),
            min_version: AtomicU64::new(u64::MAX),
            delete_on_drop: std::sync::atomic::AtomicBool::new(false),
            retired: std::sync::atomic::AtomicBool::new(false),
            recycle: std::sync::Mutex::new(None),
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

    /// Creates the file for segment `id` in `dir` at full size (blocks allocated, so later
    /// writes through the mapping cannot hit a full disk), maps it, and writes its header. A
    /// retired segment's file is reused when `pool` has one.
    pub(crate) fn create_file(
        dir: &Path,
        id: u64,
        segment_bytes: u64,
        salt: u32,
        prefault: bool,
        pool: &RecyclePool,
    ) -> Result<Self> {
        let path = dir.join(segment_file_name(id));
        if let Some(free) = pool.take() {
            match Self::reuse_file(&free, &path, id, segment_bytes, salt, prefault) {
                Ok(segment) => return Ok(segment),
                // Could not reuse it: drop it and create a fresh file.
                Err(_) => {
                    let _ = std::fs::remove_file(&free);
                }
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if let Err(e) = fs4::FileExt::allocate(&file, segment_bytes) {
            drop(file);
            // A half-created file would confuse recovery; it holds nothing yet.
            let _ = std::fs::remove_file(&path);
            return Err(map_allocation_error(path, segment_bytes, e));
        }
        let segment = match Self::map_file(file, path.clone(), id, segment_bytes, salt, prefault) {
            Ok(segment) => segment,
            Err(error) => {
                // Not mapped: remove the file, or every later attempt at this id fails on it.
                let _ = std::fs::remove_file(&path);
                return Err(error);
            }
        };
        let header = SegmentHeader::new(id, segment_bytes, salt);
        // SAFETY: the segment is not shared yet, so this thread owns all of its bytes.
        unsafe { segment.write(0, header.as_bytes()) };
        Ok(segment)
    }

    /// Marks a segment that was never installed for deletion: its file goes when it drops.
    pub(crate) fn discard(&self) {
        // std atomic, Relaxed: read only by `drop`, which has exclusive access.
        self.delete_on_drop
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether compaction has retired the segment's file (see [`Segment::retire_file`]).
    pub(crate) fn is_retired(&self) -> bool {
        // SeqCst: with the store in `retire_file`, one of a hint writer and the retirement sees
        // the other (see `hints::write_hint`).
        self.retired.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Turns a retired segment's file into segment `id`: zeroes it, writes the new header, and
    /// only then renames it into place, so a crash leaves either a `.seg.free` file (removed at
    /// open) or a valid empty segment.
    fn reuse_file(
        free: &Path,
        path: &Path,
        id: u64,
        segment_bytes: u64,
        salt: u32,
        prefault: bool,
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(free)
            .map_err(|e| Error::io(free, e))?;
        zero_file(&file, segment_bytes).map_err(|e| Error::io(free, e))?;
        fs4::FileExt::allocate(&file, segment_bytes)
            .map_err(|e| map_allocation_error(path.to_path_buf(), segment_bytes, e))?;
        let mut segment =
            Self::map_file(file, free.to_path_buf(), id, segment_bytes, salt, prefault)?;
        let header = SegmentHeader::new(id, segment_bytes, salt);
        // SAFETY: the segment is not shared yet, so this thread owns all of its bytes.
        unsafe { segment.write(0, header.as_bytes()) };
        std::fs::rename(free, path).map_err(|e| Error::io(path, e))?;
        if let Backing::File { path: p, .. } = &mut segment.backing {
            *p = path.to_path_buf();
        }
        Ok(segment)
    }

    /// Maps an existing segment file whose header has been validated as `id`, `salt`.
    /// With `allocate`, first makes sure every block of the file is allocated (cheap when it
    /// is): a segment that will be written must never meet a full disk through its mapping (a
    /// SIGBUS), so a file made sparse outside seglog fails the open with `DiskFull` instead.
    pub(crate) fn open_file(
        path: PathBuf,
        id: u64,
        segment_bytes: u64,
        salt: u32,
        allocate: bool,
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if allocate {
            fs4::FileExt::allocate(&file, segment_bytes)
                .map_err(|e| map_allocation_error(path.clone(), segment_bytes, e))?;
        }
        Self::map_file(file, path, id, segment_bytes, salt, false)
    }

    fn map_file(
        file: File,
        path: PathBuf,
        id: u64,
        segment_bytes: u64,
        salt: u32,
        prefault: bool,
    ) -> Result<Self> {
        let map = MmapOptions::new()
            .len(segment_bytes as usize)
            .map_raw(&file)
            .map_err(|e| Error::io(&path, e))?;
        let base = map.as_mut_ptr();
        if prefault {
            // MAP_POPULATE maps a shared file's pages read-only, so every first write would
            // still fault; MADV_POPULATE_WRITE (Linux 5.14+) faults them in writable. Best
            // effort: on older kernels the first writes fault as usual.
            // SAFETY: the range is exactly the mapping just created, which stays mapped; the
            // advice only populates page tables.
            let _ = unsafe {
                libc::madvise(
                    base.cast(),
                    segment_bytes as usize,
                    libc::MADV_POPULATE_WRITE,
                )
            };
        }
        Ok(Self::from_parts(
            id,
            salt,
            segment_bytes as usize,
            base,
            Backing::File { map, path },
        ))
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

    /// Bytes of records in this segment that are current for their key.
    pub(crate) fn live_bytes(&self) -> u64 {
        // Relaxed: an estimate for choosing compaction victims.
        let bytes = self.live_bytes.load(Ordering::Relaxed);
        // A replacement's subtraction can land before the install's addition: transiently
        // "negative" (wrapped), which reads as 0.
        if bytes > i64::MAX as u64 { 0 } else { bytes }
    }

    /// Adds `delta` (wrapping: subtraction passes a negated value) to the live bytes.
    pub(crate) fn add_live_bytes(&self, delta: i64) {
        // Relaxed: an estimate; exact once writers are quiescent.
        self.live_bytes.fetch_add(delta as u64, Ordering::Relaxed);
    }

    /// Counts a record about to be published whose index install is still to come.
    pub(crate) fn hold_install(&self) {
        // Relaxed: the commit word's Release store that follows publishes the increment to a
        // compactor that Acquire-loads the commit word before reading this counter.
        self.pending_installs.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends a hold once the record's index install is done.
    pub(crate) fn release_install(&self) {
        // Release: pairs with the Acquire load in `installs_pending`, so a compactor that reads
        // zero also sees the index entry the install wrote.
        self.pending_installs.fetch_sub(1, Ordering::Release);
    }

    /// Whether some record published here still awaits its index install.
    pub(crate) fn installs_pending(&self) -> bool {
        // Acquire: pairs with the Release in `release_install`.
        self.pending_installs.load(Ordering::Acquire) != 0
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
        // Release: pairs with the Acquire in `min_version`.
        self.min_version.fetch_min(version, Ordering::Release);
    }

    /// Retires the segment's file: renames it aside for reuse if `pool` has room (it joins the
    /// pool once the segment is unmapped), otherwise deletes it. Its hint goes either way.
    pub(crate) fn retire_file(&self, pool: &std::sync::Arc<RecyclePool>) {
        let Backing::File { path, .. } = &self.backing else {
            return;
        };
        // SeqCst: before the hint is removed, so a hint writer that renames its file into place
        // after this removal sees the flag and removes the file itself (`hints::write_hint`).
        self.retired
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::fs::remove_file(path.with_extension("hint"));
        let aside = path.with_extension("seg.free");
        let recycled = pool.reserve()
            && match std::fs::rename(path, &aside) {
                Ok(()) => true,
                Err(_) => {
                    // Give the pool its room back: nothing will ever fill it.
                    pool.unreserve();
                    false
                }
            };
        if recycled {
            *self
                .recycle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((aside, std::sync::Arc::clone(pool)));
        } else {
            // Unlinking a mapped file is fine: the blocks go when the mapping does.
            let _ = std::fs::remove_file(path);
            // std atomic, Relaxed: read only by `drop`, which has exclusive access.
            self.delete_on_drop
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The file behind the segment, if it has one.
    pub(crate) fn path(&self) -> Option<&Path> {
        match &self.backing {
            Backing::File { path, .. } => Some(path),
            Backing::Heap { .. } => None,
        }
    }

    /// The commit word of the record starting at `offset`.
    ///
    /// # Panics
    /// If `offset` is not 8-aligned or not inside the segment.
    pub(crate) fn commit_word(&self, offset: usize) -> &AtomicU64 {
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

    /// Flushes `len` bytes from `offset` to stable storage (a no-op on the heap).
    pub(crate) fn flush_range(&self, offset: usize, len: usize) -> Result<()> {
        match &self.backing {
            Backing::File { map, path, .. } => map
                .flush_range(offset, len)
                .map_err(|e| Error::io(path.clone(), e)),
            Backing::Heap { .. } => Ok(()),
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let recycle = self
            .recycle
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((aside, pool)) = recycle {
            // Nobody can read this mapping any more (we are dropping it), so the file may be
            // zeroed and reused from now on.
            pool.put(aside);
            return;
        }
        if !*self.delete_on_drop.get_mut() {
            return;
        }
        if let Backing::File { path, .. } = &self.backing {
            // Unlinking a mapped file is fine: the mapping goes when `backing` drops, right
            // after this. Failure leaves a file that recovery will read as a segment of
            // superseded records, which is harmless.
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(path.with_extension("hint"));
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

pub(crate) fn map_allocation_error(path: PathBuf, needed: u64, e: io::Error) -> Error {
    // ENOSPC, and EFBIG from RLIMIT_FSIZE or a file-size limit of the file system.
    let out_of_space = e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::FileTooLarge
        || matches!(e.raw_os_error(), Some(28 | 27));
    if out_of_space {
        Error::DiskFull { path, needed }
    } else {
        Error::io(path, e)
    }
}

/// Retired segment files waiting to be reused, so a busy log does not create and delete a file
/// per segment (inode allocation dominates segment creation on some file systems). Holds at
/// most `limit` files, counting those reserved by segments not yet unmapped.
#[derive(Debug)]
pub(crate) struct RecyclePool {
    files: std::sync::Mutex<(Vec<PathBuf>, usize)>,
    limit: usize,
}

impl RecyclePool {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            files: std::sync::Mutex::new((Vec::new(), 0)),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<PathBuf>, usize)> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims room for one more file; `false` if the pool is full.
    fn reserve(&self) -> bool {
        let mut files = self.lock();
        if files.0.len() + files.1 >= self.limit {
            return false;
        }
        files.1 += 1;
        true
    }

    /// Gives back room claimed by `reserve` for a file that will not come.
    fn unreserve(&self) {
        self.lock().1 -= 1;
    }

    /// Adds a reserved file, now unmapped.
    fn put(&self, path: PathBuf) {
        let mut files = self.lock();
        files.1 -= 1;
        files.0.push(path);
    }

    fn take(&self) -> Option<PathBuf> {
        self.lock().0.pop()
    }

    /// Files in the pool or on their way to it.
    pub(crate) fn len(&self) -> usize {
        let files = self.lock();
        files.0.len() + files.1
    }
}

/// Zeroes a file's first `len` bytes: punches a hole (no data written), or writes zeros where
/// the file system cannot.
fn zero_file(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate only reads its integer arguments; the descriptor is open for writing.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            len as libc::off_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// The segment header size as a `usize` offset.
pub(crate) const FIRST_RECORD_OFFSET: usize = SEGMENT_HEADER_BYTES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(segment_file_name(0x2a), "000000000000002a.seg");
        assert_eq!(parse_segment_file_name("000000000000002a.seg"), Some(0x2a));
        assert_eq!(parse_segment_file_name("000000000000002A.seg"), None);
        assert_eq!(parse_segment_file_name("2a.seg"), None);
        assert_eq!(parse_segment_file_name("000000000000002a.tmp"), None);
    }
}
