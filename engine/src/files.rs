//! The log directory as a file-system object: its lock, and flushing its entries.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::error::{Error, Result};

/// Name of the lock file in a log directory.
pub(crate) const LOCK_FILE: &str = seglog_format::LOCK_FILE_NAME;

/// The exclusive lock on a log directory, held for as long as the log is open.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// Retries of a lock held by someone else, waiting 1, 2, 4 ... ms (63 ms in all).
const LOCK_RETRIES: u32 = 6;

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Self::lock_with_retries(file, path, File::try_lock)
    }

    /// The directory's lock taken shared, for a read-only open: on its `LOCK` file, opened for
    /// reading only (neither created nor written), or, in a directory without one (a copy made
    /// by `Log::checkpoint`), on the directory itself. Read-only opens share it; a writer's
    /// exclusive lock on `LOCK` excludes them, and they exclude it.
    pub(crate) fn acquire_shared(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let (file, path) = match File::open(&path) {
            Ok(file) => (file, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                File::open(dir).map_err(|e| Error::io(dir, e))?,
                dir.to_path_buf(),
            ),
            Err(e) => return Err(Error::io(&path, e)),
        };
        Self::lock_with_retries(file, path, File::try_lock_shared)
    }

    /// Takes `file`'s lock with `try_lock`, retrying briefly. A lock can outlive its log by a
    /// moment: a child process forked by another thread holds a copy of every descriptor (the
    /// lock's too) until it execs, so a directory closed just before such a fork stays locked
    /// for microseconds. Retry for a few milliseconds before reporting `Locked`; a log that is
    /// really open stays locked.
    fn lock_with_retries(
        file: File,
        path: std::path::PathBuf,
        try_lock: impl Fn(&File) -> std::result::Result<(), std::fs::TryLockError>,
    ) -> Result<Self> {
        let mut wait = std::time::Duration::from_millis(1);
        for attempt in 0..=LOCK_RETRIES {
            match try_lock(&file) {
                Ok(()) => return Ok(Self { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if attempt < LOCK_RETRIES => {
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                Err(std::fs::TryLockError::WouldBlock) => break,
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
            }
        }
        Err(Error::Locked { path })
    }
}

/// Flushes every dirty page of the file system holding `dir` (Linux `syncfs`).
pub(crate) fn sync_file_system(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let handle = File::open(dir).map_err(|e| Error::io(dir, e))?;
    // SAFETY: syncfs takes an open descriptor and touches no memory of ours.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(Error::io(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// At most `max` bytes from the start of the file at `path`, so a file of any size costs at
/// most a segment's worth of memory.
pub(crate) fn read_prefix(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    File::open(path)?.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Makes a directory's entries (new segment files) durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// The file system a log's files live on: the operating system's, or a simulated disk for
/// power-loss tests (`crate::sim`). The operations the log performs at run time go through it;
/// recovery reads only real directories.
#[derive(Clone, Debug)]
pub(crate) enum Fs {
    Os,
    Sim(std::sync::Arc<crate::sim::SimDisk>),
}

impl Fs {
    pub(crate) fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        match self {
            Self::Os => std::fs::rename(from, to),
            Self::Sim(disk) => disk.rename(from, to),
        }
    }

    pub(crate) fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        match self {
            Self::Os => std::fs::remove_file(path),
            Self::Sim(disk) => disk.remove(path),
        }
    }

    pub(crate) fn exists(&self, path: &Path) -> bool {
        match self {
            Self::Os => path.exists(),
            Self::Sim(disk) => disk.exists(path),
        }
    }

    /// Makes the directory's entries (created, renamed and removed files) durable.
    pub(crate) fn sync_dir(&self, dir: &Path) -> Result<()> {
        match self {
            Self::Os => sync_dir(dir),
            Self::Sim(disk) => {
                disk.sync_dir();
                Ok(())
            }
        }
    }

    /// Writes `bytes` to a new file at `path` and fsyncs it.
    pub(crate) fn write_synced(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        match self {
            Self::Os => {
                use std::io::Write;
                let mut file = File::create(path).map_err(|e| Error::io(path, e))?;
                file.write_all(bytes)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| Error::io(path, e))
            }
            Self::Sim(disk) => disk
                .write_synced(path, bytes)
                .map_err(|e| Error::io(path, e)),
        }
    }
}
