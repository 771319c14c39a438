//! A simulated disk for power-loss testing: the page cache and the disk kept apart.
//!
//! A log opened on a [`SimDisk`] (`Log::open_sim`) runs its real code, with every file operation
//! routed here instead of to the operating system. Writes land in *cache* pages (the memory a
//! segment is mapped to, or what a hint writer wrote); only a flush (`msync`/`fsync` of a range)
//! makes pages *durable*. File creation, rename and removal change the live namespace at once
//! but reach the disk only at the directory's fsync; until then they queue, in order, as
//! pending directory operations.
//!
//! At any moment [`SimDisk::snapshot`] captures what a power cut could leave behind, and
//! [`CrashState::image`] draws one such outcome, a **crash image**: the durable namespace plus
//! a prefix of the pending directory operations (a journaling file system commits them in
//! order), and for each file its durable bytes with any subset of its dirty pages written back
//! whole, or torn (each 512-byte sector of the page old or new). [`CrashImage::write_to`] puts
//! the image in a real directory, where `Log::open` recovers it through the real file code.
//!
//! [`SimDisk::fail_flushes`] injects I/O errors: a failing flush leaves the disk as it was
//! *and* marks the pages clean, as Linux does after a failed writeback (the "fsyncgate" lesson:
//! a retried fsync then reports success without writing them). So data written before a
//! failed sync is lost from the disk's point of view, and only an engine that remembers the
//! failure can avoid reporting a later sync as a success.
//!
//! Follows the fault-injecting file layers of SQLite's test VFS and RocksDB's
//! `FaultInjectionTestFS`, and LazyFS's model of a page cache that loses unsynced writes.

use std::cell::UnsafeCell;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::splitmix::SplitMix64 as Rng;

/// Size of a page of the simulated page cache: the unit written back.
pub const PAGE_BYTES: usize = 4096;
/// Size of a sector: the unit a torn page write is made of.
pub const SECTOR_BYTES: usize = 512;

/// A simulated disk with its page cache. Shared by the log that runs on it and the test that
/// takes crash images of it.
#[derive(Default)]
pub struct SimDisk {
    namespace: Mutex<Namespace>,
    next_file: AtomicU64,
    /// Flushes still to fail (see [`SimDisk::fail_flushes`]).
    failing_flushes: AtomicU64,
}

#[derive(Default)]
struct Namespace {
    live: BTreeMap<String, Arc<SimFile>>,
    durable: BTreeMap<String, Arc<SimFile>>,
    pending: Vec<DirOp>,
}

#[derive(Clone)]
enum DirOp {
    Link { name: String, file: Arc<SimFile> },
    Rename { from: String, to: String },
    Unlink { name: String },
}

/// One file of the simulated disk: its cache pages and its durable bytes.
pub(crate) struct SimFile {
    id: u64,
    /// The page cache: what the log reads and writes (through a segment's base pointer).
    /// `u64`s so the memory is 8-byte aligned, like a mapping.
    cache: Box<[UnsafeCell<u64>]>,
    len: usize,
    disk: Mutex<FileDisk>,
}

// SAFETY: the cache is shared memory, written by the log's threads under the log's own
// protocols (each record's bytes by the writer that reserved them, published by its commit
// word); the simulator only copies it (`read_cache`, volatile, as a disk controller would), and
// everything else is behind the mutex.
unsafe impl Sync for SimFile {}
// SAFETY: as above; the file owns its memory.
unsafe impl Send for SimFile {}

/// What the disk holds of one file.
struct FileDisk {
    /// The bytes on the disk (as long as the cache; past `durable_len` they do not exist yet).
    durable: Vec<u8>,
    /// The file's length on the disk: set by its first flush.
    durable_len: usize,
    /// What the page cache believes is on the disk: a page that differs from it is dirty. Equal
    /// to `durable` except where a failed flush dropped pages.
    written_back: Vec<u8>,
}

impl SimFile {
    fn new(id: u64, len: usize) -> Self {
        Self {
            id,
            cache: (0..len.div_ceil(8)).map(|_| UnsafeCell::new(0)).collect(),
            len,
            disk: Mutex::new(FileDisk {
                durable: vec![0; len],
                durable_len: 0,
                written_back: vec![0; len],
            }),
        }
    }

    /// The start of the cache memory (8-byte aligned, `len` bytes): a segment's base pointer.
    pub(crate) fn base(&self) -> *mut u8 {
        // `UnsafeCell<u64>` has the layout of `u64`, so the slice is one contiguous buffer.
        self.cache.as_ptr().cast::<u8>().cast_mut()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copies `range` of the cache as it is now.
    fn read_cache(&self, offset: usize, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        let base = self.base();
        for (i, byte) in bytes.iter_mut().enumerate() {
            // SAFETY: `offset + len <= self.len` (checked by the callers), so the read is inside
            // the cache. Volatile: other threads may be writing these bytes right now (the log
            // writes a record while a flush copies its page, as a real page cache allows); a
            // copy that sees a mix of old and new bytes is what a disk would capture too.
            *byte = unsafe { base.add(offset + i).read_volatile() };
        }
        bytes
    }

    /// Writes `bytes` into the cache at `offset` (for files written with `write`, not mapped).
    fn write_cache(&self, offset: usize, bytes: &[u8]) {
        assert!(
            offset + bytes.len() <= self.len,
            "write past the end of a sim file"
        );
        // SAFETY: inside the cache (asserted); the file is not shared with a mapping (only hint
        // files are written this way, by one thread, before anyone else can see them).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base().add(offset), bytes.len());
        }
    }

    fn lock_disk(&self) -> MutexGuard<'_, FileDisk> {
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn name_of(path: &Path) -> io::Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Namespace> {
        self.namespace.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next `count` flushes (msync or fsync of any file) fail with an I/O error,
    /// dropping the pages they should have written (see the module docs).
    pub fn fail_flushes(&self, count: u64) {
        // SeqCst, as every access to this counter: it orders nothing else (the disk's state is
        // behind its mutexes); one total order keeps a test's reasoning simple.
        self.failing_flushes.store(count, Ordering::SeqCst);
    }

    /// Creates a file of `len` zero bytes at `path` (which must not exist), as `create_new` and
    /// `fallocate` do; the new name reaches the disk at the next directory sync.
    pub(crate) fn create(&self, path: &Path, len: usize) -> io::Result<Arc<SimFile>> {
        let name = name_of(path)?;
        let mut ns = self.lock();
        if ns.live.contains_key(&name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{name} exists"),
            ));
        }
        // Relaxed: only unique ids are needed, and the RMW gives them.
        let id = self.next_file.fetch_add(1, Ordering::Relaxed);
        let file = Arc::new(SimFile::new(id, len));
        ns.live.insert(name.clone(), Arc::clone(&file));
        ns.pending.push(DirOp::Link {
            name,
            file: Arc::clone(&file),
        });
        Ok(file)
    }

    /// The live file at `path`.
    pub(crate) fn open(&self, path: &Path) -> io::Result<Arc<SimFile>> {
        let name = name_of(path)?;
        self.lock()
            .live
            .get(&name)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name} not found")))
    }

    pub(crate) fn exists(&self, path: &Path) -> bool {
        name_of(path).is_ok_and(|name| self.lock().live.contains_key(&name))
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (name_of(from)?, name_of(to)?);
        let mut ns = self.lock();
        let file = ns
            .live
            .remove(&from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{from} not found")))?;
        ns.live.insert(to.clone(), file);
        ns.pending.push(DirOp::Rename { from, to });
        Ok(())
    }

    pub(crate) fn remove(&self, path: &Path) -> io::Result<()> {
        let name = name_of(path)?;
        let mut ns = self.lock();
        if ns.live.remove(&name).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} not found"),
            ));
        }
        ns.pending.push(DirOp::Unlink { name });
        Ok(())
    }

    /// The directory's fsync: every pending operation reaches the disk.
    pub(crate) fn sync_dir(&self) {
        let mut ns = self.lock();
        ns.durable = ns.live.clone();
        ns.pending.clear();
    }

    /// Writes `bytes` as a new file at `path` (replacing any) and fsyncs it.
    pub(crate) fn write_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let name = name_of(path)?;
        let file = {
            let mut ns = self.lock();
            // Relaxed: as in `create`.
            let id = self.next_file.fetch_add(1, Ordering::Relaxed);
            let file = Arc::new(SimFile::new(id, bytes.len()));
            if ns.live.insert(name.clone(), Arc::clone(&file)).is_some() {
                ns.pending.push(DirOp::Unlink { name: name.clone() });
            }
            ns.pending.push(DirOp::Link {
                name,
                file: Arc::clone(&file),
            });
            file
        };
        file.write_cache(0, bytes);
        self.flush(&file, 0, bytes.len())
    }

    /// msync/fsync of `len` bytes of `file` from `offset`: those cache pages become durable, and
    /// so does the file's length. An injected failure drops them instead.
    pub(crate) fn flush(&self, file: &SimFile, offset: usize, len: usize) -> io::Result<()> {
        let end = (offset + len).min(file.len);
        let offset = offset.min(end);
        // The cache is read under the file's lock, so two flushes (or a flush and a snapshot)
        // of one file are ordered and the disk never goes back to bytes older than a completed
        // flush wrote.
        let mut disk = file.lock_disk();
        let bytes = file.read_cache(offset, end - offset);
        let fail = self
            .failing_flushes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        // The page cache forgets the pages either way: written, or dropped by the failure.
        disk.written_back[offset..end].copy_from_slice(&bytes);
        if fail {
            return Err(io::Error::other("injected I/O error (simulated disk)"));
        }
        disk.durable[offset..end].copy_from_slice(&bytes);
        disk.durable_len = file.len;
        Ok(())
    }

    /// Everything a power cut at this moment could leave behind (see [`CrashState::image`]).
    /// Safe to call while the log runs: the cache is copied page by page as it is.
    pub fn snapshot(&self) -> CrashState {
        let ns = self.lock();
        let mut files = HashMap::new();
        let mut add = |file: &Arc<SimFile>| {
            files.entry(file.id).or_insert_with(|| {
                // Under the file's lock, as in `flush`: cache and disk from one moment.
                let disk = file.lock_disk();
                let cache = file.read_cache(0, file.len);
                FileState {
                    cache,
                    durable: disk.durable.clone(),
                    durable_len: disk.durable_len,
                    written_back: disk.written_back.clone(),
                }
            });
        };
        for file in ns.durable.values() {
            add(file);
        }
        let mut pending = Vec::with_capacity(ns.pending.len());
        for op in &ns.pending {
            pending.push(match op {
                DirOp::Link { name, file } => {
                    add(file);
                    SnapOp::Link(name.clone(), file.id)
                }
                DirOp::Rename { from, to } => SnapOp::Rename(from.clone(), to.clone()),
                DirOp::Unlink { name } => SnapOp::Unlink(name.clone()),
            });
        }
        CrashState {
            durable: ns.durable.iter().map(|(n, f)| (n.clone(), f.id)).collect(),
            pending,
            files,
        }
    }
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = self.lock();
        f.debug_struct("SimDisk")
            .field("live", &ns.live.keys().collect::<Vec<_>>())
            .field("durable", &ns.durable.keys().collect::<Vec<_>>())
            .field("pending_dir_ops", &ns.pending.len())
            .finish()
    }
}

/// What a power cut at one moment could leave: the durable namespace, the directory operations
/// not yet synced, and for each file its cache, disk and written-back bytes.
pub struct CrashState {
    durable: BTreeMap<String, u64>,
    pending: Vec<SnapOp>,
    files: HashMap<u64, FileState>,
}

enum SnapOp {
    Link(String, u64),
    Rename(String, String),
    Unlink(String),
}

struct FileState {
    cache: Vec<u8>,
    durable: Vec<u8>,
    durable_len: usize,
    written_back: Vec<u8>,
}

/// One possible content of the disk after a power cut.
#[derive(Debug, Default)]
pub struct CrashImage {
    /// Each file's name and bytes.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Dirty pages that reached the disk whole.
    pub pages_written: u64,
    /// Dirty pages that reached it torn (some sectors old, some new).
    pub pages_torn: u64,
    /// Dirty pages that did not reach it.
    pub pages_lost: u64,
    /// Pending directory operations that reached the disk, of how many.
    pub dir_ops_applied: (usize, usize),
}

impl CrashState {
    /// Draws one crash image from `seed`: a prefix of the pending directory operations, and
    /// for each dirty page of each file one of old, new or torn. Some seeds draw the extremes
    /// (nothing unsynced survives, or everything does) more often than chance would.
    pub fn image(&self, seed: u64) -> CrashImage {
        let mut rng = Rng(seed);
        // Mode: 0 = random per page, 1 = nothing unsynced survives, 2 = everything does.
        let mode = match rng.below(8) {
            0 => 1,
            1 => 2,
            _ => 0,
        };
        let total = self.pending.len();
        let applied = match mode {
            1 => 0,
            2 => total,
            _ => rng.below(total as u64 + 1) as usize,
        };
        let mut names = self.durable.clone();
        for op in &self.pending[..applied] {
            match op {
                SnapOp::Link(name, id) => {
                    names.insert(name.clone(), *id);
                }
                SnapOp::Rename(from, to) => {
                    if let Some(id) = names.remove(from) {
                        names.insert(to.clone(), id);
                    }
                }
                SnapOp::Unlink(name) => {
                    names.remove(name);
                }
            }
        }
        let mut image = CrashImage {
            dir_ops_applied: (applied, total),
            ..CrashImage::default()
        };
        // A file may have two names only transiently; each inode's outcome is drawn once.
        let mut drawn: HashMap<u64, Vec<u8>> = HashMap::new();
        for (name, id) in names {
            let bytes = drawn
                .entry(id)
                .or_insert_with(|| self.files[&id].draw(&mut rng, mode, &mut image))
                .clone();
            image.files.insert(name, bytes);
        }
        image
    }
}

impl FileState {
    fn draw(&self, rng: &mut Rng, mode: u64, image: &mut CrashImage) -> Vec<u8> {
        let full = self.cache.len();
        // The length: the durable one, or (if the file grew since) the new one.
        let len = if self.durable_len == full || mode == 1 {
            self.durable_len
        } else if mode == 2 || rng.below(2) == 0 {
            full
        } else {
            self.durable_len
        };
        let mut bytes = self.durable[..len].to_vec();
        for start in (0..len).step_by(PAGE_BYTES) {
            let end = (start + PAGE_BYTES).min(len);
            if self.cache[start..end] == self.written_back[start..end] {
                continue; // clean: the disk has what the cache believes, or lost it for good
            }
            let choice = match mode {
                1 => 0,
                2 => 1,
                _ => rng.below(3),
            };
            match choice {
                0 => image.pages_lost += 1,
                1 => {
                    bytes[start..end].copy_from_slice(&self.cache[start..end]);
                    image.pages_written += 1;
                }
                _ => {
                    let mut torn = false;
                    for sector in (start..end).step_by(SECTOR_BYTES) {
                        let sector_end = (sector + SECTOR_BYTES).min(end);
                        if rng.below(2) == 0 {
                            bytes[sector..sector_end]
                                .copy_from_slice(&self.cache[sector..sector_end]);
                            torn = true;
                        }
                    }
                    if torn {
                        image.pages_torn += 1;
                    } else {
                        image.pages_lost += 1;
                    }
                }
            }
        }
        bytes
    }
}

impl CrashImage {
    /// Writes the image's files into `dir` (created if needed; files already there are left).
    pub fn write_to(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        for (name, bytes) in &self.files {
            fs::write(dir.join(name), bytes)?;
        }
        Ok(())
    }
}

/// The path the log's files live under on a simulated disk (only its file names matter).
pub(crate) fn sim_root() -> PathBuf {
    PathBuf::from("/seglog-sim")
}
