//! Online checkpoints: a consistent, durable copy of a running log in another directory.
//!
//! # What is copied
//! 1. A **lease** from segment 0 on (`log/lease.rs`): from here until the files are in place,
//!    compaction retires no segment file, so every segment in the directory keeps its file and
//!    hint under their names. (Compaction still relocates; only the file step waits.)
//! 2. The **target**: the tail position, read after the lease. Every record published before
//!    the call lies below it. The log is synced, so the source is durable up to it too.
//! 3. Every segment from the first to the target's: a sealed segment whose records are all
//!    published is immutable, so it is **hard-linked** (copied if the link fails, e.g. `EXDEV`
//!    across file systems), with its hint if it has one (hints are written under a temporary
//!    name and renamed, so the name is always a whole hint). The target's segment, and a sealed
//!    one with a write still in flight, are **copied** through the kernel up to the target (the
//!    rest of the file is zeros), so the copy's own recovery, which may seal holes and zero a
//!    torn tail, writes only to files the source does not share.
//! 4. Nothing else: not `LOCK` (the copy gets its own when opened), not the recycle pool's
//!    `*.seg.free` files, not foreign files.
//!
//! A write racing with the checkpoint is whole or absent in it: a record published before the
//! copy read its bytes is copied whole; one still being written is a hole (or, if its bytes are
//! read half written, fails its CRC), which the copy's recovery skips as it skips a crash's.
//! The copy is a state a SIGKILL of the source could have left, so it opens by the same rules.
//!
//! # Where it is built
//! In `.<dest name>.seglog-checkpoint` beside `dest`, locked while it is built, then fsynced
//! (every file, the directory), renamed to `dest` and the parent fsynced. A checkpoint killed
//! midway leaves no `dest` (or the empty one that was there) and a partial build under the
//! temporary name, which no open takes for the checkpoint; the next checkpoint to the same
//! `dest` removes it (its lock is free once its builder died).
//!
//! # Sharing files
//! A hard-linked segment shares its inode with the source. Neither side writes a sealed,
//! published segment, and neither recycles a file that has another link (`Segment::reuse_file`
//! refuses it and unlinks its own name instead), so the two logs never see each other's writes.
//! Damage to a shared file's blocks (a bad disk) is damage to both: keep backups that must
//! survive the disk on another file system, where the checkpoint copies.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use seglog_format::LogFile;

use crate::error::{Error, Result};
use crate::files::{DirLock, Fs, sync_dir};
use crate::kv::Log;
use crate::log::AppendLog;
use crate::segment::FIRST_RECORD_OFFSET;

/// How one segment file reaches the checkpoint.
enum Plan {
    /// Sealed and fully published: a hard link (or a whole copy), with its hint if any.
    Share { id: u64, path: PathBuf },
    /// Copied through the kernel: the first `len` bytes, zeros after.
    Copy { id: u64, path: PathBuf, len: u64 },
}

impl Log {
    /// Writes a consistent, durable copy of the log to `dest`, while writers and compaction
    /// keep running.
    ///
    /// `dest` must not exist or be an empty directory. When this returns `Ok`, `dest` is a log
    /// that opens (with [`Log::open`]) holding every write acknowledged before the call began;
    /// each write racing with the call is in it whole or not at all. Its files and directory
    /// are fsynced. Sealed segments are hard-linked when `dest` is on the same file system
    /// (sharing blocks, never written by either log again) and copied otherwise; the segment
    /// being written is copied. The source loses nothing and waits for nothing but the sync;
    /// compaction only defers deleting segment files until the checkpoint has linked them.
    ///
    /// If the process dies midway, `dest` is not created: the copy is built under
    /// `.<dest name>.seglog-checkpoint` beside it and renamed at the end, and the next
    /// checkpoint to `dest` removes such a leftover. See `docs/durability.md`, *Checkpoints*.
    ///
    /// Errors: `dest` exists and is not an empty directory, its parent does not exist, another
    /// checkpoint to `dest` is running ([`Error::Locked`]), the log is in memory or on a
    /// simulated disk, an earlier sync failed ([`Error::SyncFailed`]), or an I/O error.
    pub fn checkpoint(&self, dest: impl AsRef<Path>) -> Result<()> {
        checkpoint(self.append_log(), dest.as_ref())
    }
}

fn unsupported(dest: &Path, reason: &str) -> Error {
    Error::io(dest, io::Error::new(io::ErrorKind::Unsupported, reason))
}

fn checkpoint(log: &AppendLog, dest: &Path) -> Result<()> {
    let Some(source) = log.storage_path() else {
        return Err(unsupported(
            dest,
            "an in-memory log has no files to checkpoint",
        ));
    };
    if matches!(log.fs(), Fs::Sim(_)) {
        return Err(unsupported(
            dest,
            "checkpoints of a log on a simulated disk are not supported",
        ));
    }
    check_dest(dest)?;
    let (parent, build) = build_path(dest)?;
    let lock = prepare_build_dir(&build)?;
    match fill(log, source, &build) {
        Ok(()) => {}
        Err(e) => {
            drop(lock);
            let _ = fs::remove_dir_all(&build);
            return Err(e);
        }
    }
    // `rename` replaces an empty `dest` directory atomically, and fails if it is not empty.
    if let Err(e) = fs::rename(&build, dest) {
        drop(lock);
        let _ = fs::remove_dir_all(&build);
        let e = if dest.is_dir() {
            io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("the checkpoint destination was filled meanwhile ({e})"),
            )
        } else {
            e
        };
        return Err(Error::io(dest, e));
    }
    sync_dir(&parent)?;
    drop(lock);
    Ok(())
}

/// `dest` must be absent or an empty directory.
fn check_dest(dest: &Path) -> Result<()> {
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::io(
                    dest,
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "the checkpoint destination exists and is not empty; name a new \
                         directory",
                    ),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(Error::io(
            dest,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the checkpoint destination is a file; name a new directory",
            ),
        )),
        Err(e) => Err(Error::io(dest, e)),
    }
}

/// The parent of `dest` and the temporary directory the checkpoint is built in.
fn build_path(dest: &Path) -> Result<(PathBuf, PathBuf)> {
    let name = dest.file_name().ok_or_else(|| {
        Error::io(
            dest,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the checkpoint destination must end in a directory name",
            ),
        )
    })?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::io(
            &parent,
            io::Error::new(
                io::ErrorKind::NotFound,
                "the checkpoint destination's parent directory does not exist",
            ),
        ));
    }
    let mut build = std::ffi::OsString::from(".");
    build.push(name);
    build.push(BUILD_SUFFIX);
    Ok((parent.clone(), parent.join(build)))
}

/// What the temporary directory's name ends with: `.<dest name>.seglog-checkpoint`.
pub(crate) const BUILD_SUFFIX: &str = ".seglog-checkpoint";

/// Creates (or takes over from a dead checkpoint) the locked, empty build directory.
fn prepare_build_dir(build: &Path) -> Result<DirLock> {
    match fs::create_dir(build) {
        Ok(()) => return DirLock::acquire(build),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(build, e)),
    }
    // Left by a checkpoint that died, or being built by one running now: its lock says which.
    let lock = DirLock::acquire(build)?;
    let lock_name = LogFile::Lock.name();
    for entry in fs::read_dir(build).map_err(|e| Error::io(build, e))? {
        let entry = entry.map_err(|e| Error::io(build, e))?;
        if entry.file_name().to_str() == Some(lock_name.as_str()) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|e| Error::io(&path, e))?;
    }
    Ok(lock)
}

/// Puts every file of the checkpoint in `build`, durably.
fn fill(log: &AppendLog, source: &Path, build: &Path) -> Result<()> {
    let lease = log.leases().acquire(0);
    let target = log.tail_position();
    log.sync()?;
    let plans = plan(log, target);
    let mut written = Vec::with_capacity(plans.len() * 2);
    for plan in &plans {
        match plan {
            Plan::Share { id, path } => {
                let to = build.join(LogFile::Segment(*id).name());
                share(path, &to)?;
                written.push(to);
                let hint = source.join(LogFile::Hint(*id).name());
                let hint_to = build.join(LogFile::Hint(*id).name());
                match fs::hard_link(&hint, &hint_to) {
                    Ok(()) => written.push(hint_to),
                    // No hint yet: the copy's open scans the segment.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(_) => match fs::copy(&hint, &hint_to) {
                        Ok(_) => written.push(hint_to),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io(&hint_to, e)),
                    },
                }
            }
            Plan::Copy { id, path, len } => {
                let to = build.join(LogFile::Segment(*id).name());
                copy_prefix(path, &to, *len, log.segment_bytes())?;
                written.push(to);
            }
        }
    }
    // Every file is in place under its own name: compaction may retire the originals now.
    drop(lease);
    for path in &written {
        File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(path, e))?;
    }
    sync_dir(build)
}

/// How each segment from the first to the target's reaches the checkpoint. The caller holds
/// a lease, so every file named here stays under its name until it is released.
fn plan(log: &AppendLog, target: u64) -> Vec<Plan> {
    let (target_segment, target_offset) = log.split(target);
    let guard = crate::sync::epoch::pin();
    let mut plans = Vec::new();
    for id in log.first_segment()..=target_segment {
        // Absent: retired before the lease (its live records were copied forward, and synced,
        // before its file went).
        let Some(segment) = log.directory().get(id, &guard) else {
            continue;
        };
        let Some(path) = segment.path().map(Path::to_path_buf) else {
            continue;
        };
        if id < target_segment && log.fully_published(segment) {
            plans.push(Plan::Share { id, path });
        } else {
            let len = if id == target_segment {
                target_offset.max(FIRST_RECORD_OFFSET as u64)
            } else {
                log.segment_bytes()
            };
            plans.push(Plan::Copy { id, path, len });
        }
    }
    plans
}

/// Hard-links `from` to `to`, or copies it if the file system cannot link it there.
fn share(from: &Path, to: &Path) -> Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        // EXDEV (another file system), EPERM or ENOTSUP (no hard links there), EMLINK: copy.
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            fs::copy(from, to).map(|_| ()).map_err(|e| Error::io(to, e))
        }
        Err(e) => Err(Error::io(from, e)),
    }
}

/// Copies the first `len` bytes of `from` into a new file `to` of `segment_bytes`, allocated
/// (as every segment file is), zeros after `len`.
fn copy_prefix(from: &Path, to: &Path, len: u64, segment_bytes: u64) -> Result<()> {
    use std::io::Read;
    let source = File::open(from).map_err(|e| Error::io(from, e))?;
    let mut copy = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| Error::io(to, e))?;
    // Through the kernel (copy_file_range where it can), never through the mapping: bytes a
    // writer is still filling are read as the page cache holds them, which the CRC judges.
    io::copy(&mut source.take(len), &mut copy).map_err(|e| Error::io(to, e))?;
    copy.set_len(segment_bytes).map_err(|e| Error::io(to, e))?;
    fs4::FileExt::allocate(&copy, segment_bytes)
        .map_err(|e| crate::segment::map_allocation_error(to.to_path_buf(), segment_bytes, e))
}
