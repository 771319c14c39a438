//! File-backed segments: creating one at full size (or reusing a retired file), mapping it,
//! and retiring its file when compaction is done with it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::MmapOptions;
use seglog_format::{SEGMENT_HEADER_BYTES, SegmentHeader};

use seglog_format::LogFile;

use super::{Backing, RecyclePool, Segment};
use crate::error::{Error, Result};
use crate::files::Fs;
use crate::sim::{SimDisk, SimFile};
use crate::sync::{Arc, Ordering};

impl Segment {
    /// Creates the file for segment `id` in `dir` on `fs` at full size (blocks allocated, so
    /// later writes through the mapping cannot hit a full disk), maps it, and writes its header.
    /// A retired segment's file is reused when `pool` has one (see [`Segment::reuse_file`]).
    /// The one way segment files are made, on the OS and on the simulated disk alike, so the
    /// power-loss suite checks the protocol the OS runs.
    pub(crate) fn create_file(
        fs: &Fs,
        dir: &Path,
        id: u64,
        segment_bytes: u64,
        salt: u32,
        prefault: bool,
        pool: &RecyclePool,
    ) -> Result<Self> {
        let path = dir.join(LogFile::Segment(id).name());
        if let Some(free) = pool.take() {
            match Self::reuse_file(fs, &free, &path, id, segment_bytes, salt, prefault) {
                Ok(segment) => return Ok(segment),
                // Could not reuse it: drop it and create a fresh file.
                Err(_) => {
                    let _ = fs.remove_file(&free);
                }
            }
        }
        let segment = match fs {
            Fs::Os => Self::create_os_file(&path, id, segment_bytes, salt, prefault)?,
            Fs::Sim(disk) => {
                let file = disk
                    .create(&path, segment_bytes as usize)
                    .map_err(|e| Error::io(&path, e))?;
                Self::on_sim_file(disk, file, path, id, segment_bytes, salt)?
            }
        };
        let header = SegmentHeader::new(id, segment_bytes, salt);
        // SAFETY: the segment is not shared yet, so this thread owns all of its bytes.
        unsafe { segment.write(0, header.as_bytes()) };
        Ok(segment)
    }

    /// A new, allocated and mapped OS file for segment `id`; removed again if that fails.
    fn create_os_file(
        path: &Path,
        id: u64,
        segment_bytes: u64,
        salt: u32,
        prefault: bool,
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        if let Err(e) = fs4::FileExt::allocate(&file, segment_bytes) {
            drop(file);
            // A half-created file would confuse recovery; it holds nothing yet.
            let _ = std::fs::remove_file(path);
            return Err(map_allocation_error(path.to_path_buf(), segment_bytes, e));
        }
        Self::map_file(file, path.to_path_buf(), id, segment_bytes, salt, prefault).inspect_err(
            |_| {
                // Not mapped: remove the file, or every later attempt at this id fails on it.
                let _ = std::fs::remove_file(path);
            },
        )
    }

    /// A segment over `file` of the simulated disk (its page cache is the segment's memory).
    fn on_sim_file(
        disk: &std::sync::Arc<SimDisk>,
        file: std::sync::Arc<SimFile>,
        path: PathBuf,
        id: u64,
        segment_bytes: u64,
        salt: u32,
    ) -> Result<Self> {
        if file.len() != segment_bytes as usize {
            let reason = format!(
                "a {}-byte file for a {segment_bytes}-byte segment",
                file.len()
            );
            return Err(Error::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
            ));
        }
        let base = file.base();
        Ok(Self::from_parts(
            id,
            salt,
            segment_bytes as usize,
            base,
            Backing::Sim {
                file,
                disk: std::sync::Arc::clone(disk),
                path,
            },
        ))
    }

    /// Marks a segment that was never installed for deletion: its file goes when it drops.
    pub(crate) fn discard(&self) {
        // std atomic, Relaxed: read only by `drop`, which has exclusive access.
        self.delete_on_drop.store(true, Ordering::Relaxed);
    }

    /// Whether compaction has retired the segment's file (see [`Segment::retire_file`]).
    pub(crate) fn is_retired(&self) -> bool {
        // SeqCst: with the store in `retire_file`, one of a hint writer and the retirement sees
        // the other (see `hints::write_hint`).
        self.retired.load(Ordering::SeqCst)
    }

    /// Turns a retired segment's file into segment `id`: makes the rename that retired it
    /// durable, zeroes it, writes the new header and flushes it, and only then renames it into
    /// place, so a crash leaves either a `.seg.free` file (removed at open) or a valid empty
    /// segment.
    fn reuse_file(
        fs: &Fs,
        free: &Path,
        path: &Path,
        id: u64,
        segment_bytes: u64,
        salt: u32,
        prefault: bool,
    ) -> Result<Self> {
        // The rename that retired the file must be durable before its bytes change: otherwise
        // a power cut could bring back the old segment's name over the new header.
        if let Some(dir) = path.parent() {
            fs.sync_dir(dir)?;
        }
        let mut segment = match fs {
            Fs::Os => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(free)
                    .map_err(|e| Error::io(free, e))?;
                refuse_shared_file(&file, free)?;
                zero_file(&file, segment_bytes).map_err(|e| Error::io(free, e))?;
                fs4::FileExt::allocate(&file, segment_bytes)
                    .map_err(|e| map_allocation_error(path.to_path_buf(), segment_bytes, e))?;
                Self::map_file(file, free.to_path_buf(), id, segment_bytes, salt, prefault)?
            }
            Fs::Sim(disk) => {
                let file = disk.open(free).map_err(|e| Error::io(free, e))?;
                let segment =
                    Self::on_sim_file(disk, file, free.to_path_buf(), id, segment_bytes, salt)?;
                // SAFETY: the segment is not shared yet, and the file's previous segment was
                // dropped before the file joined the pool, so this thread owns all of its
                // bytes. (Zeroing writes the cache, as `zero_file`'s fallback writes zeros.)
                unsafe { std::ptr::write_bytes(segment.base, 0, segment_bytes as usize) };
                segment
            }
        };
        let header = SegmentHeader::new(id, segment_bytes, salt);
        // SAFETY: the segment is not shared yet, so this thread owns all of its bytes.
        unsafe { segment.write(0, header.as_bytes()) };
        segment.flush_header_before_rename()?;
        fs.rename(free, path).map_err(|e| Error::io(path, e))?;
        segment.backing.set_path(path);
        Ok(segment)
    }

    /// Flushes a reused file's new header before the rename that gives it the new segment's
    /// name. The rename may reach the disk before the next sync (a journal commits it on its
    /// own schedule), and without the flush the file would then carry the new name over the
    /// old segment's header, which recovery must refuse as a file no log wrote. With it, a
    /// power cut leaves the new header and, behind it, zeros or the old segment's bytes, which
    /// fail every record's position and salt check (the salt is new).
    fn flush_header_before_rename(&self) -> Result<()> {
        match self.flusher() {
            Some(flusher) => flusher.flush_range(0, SEGMENT_HEADER_BYTES),
            None => Ok(()),
        }
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

    /// Maps an existing segment file for a read-only open: the file is opened for reading only
    /// (and without updating its access time where the kernel allows), and mapped *private*,
    /// copy-on-write, so what recovery repairs in memory (sealed holes, a zeroed torn tail)
    /// never reaches the file. A file shorter than a segment (truncated) is read into memory
    /// instead, zeros after, since a mapping past its end would fault.
    pub(crate) fn open_read_only(
        path: PathBuf,
        id: u64,
        segment_bytes: u64,
        salt: u32,
    ) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(&path)
            // O_NOATIME is refused on files this user does not own.
            .or_else(|_| OpenOptions::new().read(true).open(&path))
            .map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len < segment_bytes {
            use std::io::Read;
            let mut bytes = Vec::with_capacity(len as usize);
            (&file)
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(&path, e))?;
            let segment = Self::new_heap(id, segment_bytes, salt);
            // SAFETY: the segment is not shared yet, so this thread owns all of its bytes;
            // `bytes` is shorter than the segment.
            unsafe { segment.write(0, &bytes[..bytes.len().min(segment_bytes as usize)]) };
            return Ok(segment);
        }
        // SAFETY: a private mapping of a file this open holds the shared lock of: no seglog
        // process writes it meanwhile (a writer's open is refused), and writes through the
        // mapping go to this process's copies of the pages, never to the file. Another program
        // truncating the file would fault a read, as for every mapped segment.
        let map = unsafe {
            MmapOptions::new()
                .len(segment_bytes as usize)
                .map_copy(&file)
        }
        .map_err(|e| Error::io(&path, e))?;
        Ok(Self::from_map(id, salt, memmap2::MmapRaw::from(map), path))
    }

    /// The segment `id` over its file's mapping `map` (a whole segment long).
    fn from_map(id: u64, salt: u32, map: memmap2::MmapRaw, path: PathBuf) -> Self {
        let base = map.as_mut_ptr();
        let len = map.len();
        Self::from_parts(
            id,
            salt,
            len,
            base,
            Backing::File {
                map: std::sync::Arc::new(map),
                path,
            },
        )
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
        Ok(Self::from_map(id, salt, map, path))
    }

    /// Retires the segment's file: renames it aside for reuse if `pool` has room (it joins the
    /// pool once the segment is unmapped), otherwise deletes it. Its hint goes either way.
    pub(crate) fn retire_file(&self, pool: &Arc<RecyclePool>) {
        let Some((fs, path)) = self.backing.file() else {
            return;
        };
        // SeqCst: before the hint is removed, so a hint writer that renames its file into place
        // after this removal sees the flag and removes the file itself (`hints::write_hint`).
        self.retired.store(true, Ordering::SeqCst);
        let _ = fs.remove_file(&path.with_file_name(LogFile::Hint(self.id).name()));
        let aside = path.with_file_name(LogFile::FreeSegment(self.id).name());
        let recycled = pool.reserve()
            && match fs.rename(path, &aside) {
                Ok(()) => true,
                Err(_) => {
                    // Give the pool its room back: nothing will ever fill it.
                    pool.unreserve();
                    false
                }
            };
        if recycled {
            *self.recycle.lock() = Some((aside, Arc::clone(pool)));
        } else {
            // Unlinking a mapped file is fine: the blocks go when the mapping does.
            let _ = fs.remove_file(path);
            // std atomic, Relaxed: read only by `drop`, which has exclusive access.
            self.delete_on_drop.store(true, Ordering::Relaxed);
        }
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

/// Refuses to reuse a file that has another name: a checkpoint hard-linked it (see
/// `log/lease.rs`), in another directory or from another log, and zeroing it in place would
/// change that copy's bytes. The caller unlinks this name instead; the other keeps the file.
fn refuse_shared_file(file: &File, path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let links = file.metadata().map_err(|e| Error::io(path, e))?.nlink();
    if links > 1 {
        let reason = format!("the file has {links} links (a checkpoint shares it); not reused");
        return Err(Error::io(path, io::Error::other(reason)));
    }
    Ok(())
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
