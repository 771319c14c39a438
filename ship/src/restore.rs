//! Restore: rebuilds a log directory from the newest manifest under a prefix.
//!
//! The directory is built beside `dest` under `.<dest name>.seglog-restore`, each segment file
//! written from its objects at their offsets and padded with zeros to the segment size
//! (allocated, as the engine allocates its own), each hint beside it, every object checked
//! against its manifest's length and CRC-32C; then every file and the directory are fsynced and
//! it is renamed to `dest`. A restore killed midway leaves no `dest`; the next one removes the
//! leftover. An object that disappears while it is read (a newer manifest made it garbage and a
//! shipper collected it) sends the restore on to the newest manifest, keeping every segment
//! already written that the newest still names (`mirror.rs`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
use seglog::SyncedFrontier;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, ObjectEntry, at, get_bytes, latest_manifest};
use crate::mirror::{Held, bring_to, to_download};
use crate::shipper::Progress;
use crate::upload::blocking;

/// What a restore did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// The manifest restored.
    pub manifest: u64,
    /// Its synced frontier: the restored log holds every write synced before it.
    pub synced: SyncedFrontier,
    /// Objects downloaded.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Rebuilds the log shipped under `prefix` in `dest`, which must be absent or an empty
/// directory. When this returns `Ok`, `dest` is a durable log directory that opens (with
/// [`seglog::Log::open`]) to the state of the newest manifest: every write synced on the
/// shipping log before the round that published it.
///
/// Errors: nothing was shipped there ([`Error::NoManifest`]), `dest` is not empty, an object
/// is damaged ([`Error::Corrupt`]), the store is unreachable, or an I/O error.
pub async fn restore(
    store: Arc<dyn ObjectStore>,
    prefix: &Path,
    dest: &FsPath,
) -> Result<RestoreReport> {
    restore_with_progress(store, prefix, dest, |_| {}).await
}

/// [`restore`], calling `on_progress` after each object.
pub async fn restore_with_progress(
    store: Arc<dyn ObjectStore>,
    prefix: &Path,
    dest: &FsPath,
    on_progress: impl Fn(&Progress) + Send + Sync,
) -> Result<RestoreReport> {
    restore_to(&*store, prefix, dest, &on_progress)
        .await
        .map(|(_, report)| report)
}

/// [`restore_with_progress`], also returning the manifest restored.
pub(crate) async fn restore_to(
    store: &dyn ObjectStore,
    prefix: &Path,
    dest: &FsPath,
    on_progress: &(dyn Fn(&Progress) + Send + Sync),
) -> Result<(Manifest, RestoreReport)> {
    check_dest(dest)?;
    let (parent, build) = build_path(dest)?;
    let restored = restore_into(store, prefix, &build, on_progress).await?;
    if let Err(e) = fs::rename(&build, dest) {
        let _ = fs::remove_dir_all(&build);
        return Err(Error::io(dest, e));
    }
    sync_dir(&parent)?;
    Ok(restored)
}

/// Downloads the newest manifest's log into the directory `build` (created, or emptied if it
/// exists), durably. If an object vanishes meanwhile (a newer manifest made it garbage), goes on
/// toward the newest manifest from the segments already in place (`mirror.rs`).
pub(crate) async fn restore_into(
    store: &dyn ObjectStore,
    prefix: &Path,
    build: &FsPath,
    on_progress: &(dyn Fn(&Progress) + Send + Sync),
) -> Result<(Manifest, RestoreReport)> {
    let no_manifest = || Error::NoManifest {
        prefix: if prefix.as_ref().is_empty() {
            format!("the root of {store}")
        } else {
            format!("{prefix} in {store}")
        },
    };
    // Before anything is created: nothing shipped there leaves nothing behind.
    let mut manifest = latest_manifest(store, prefix)
        .await?
        .ok_or_else(no_manifest)?;
    fresh_dir(build)?;
    let have = Held::default();
    let tracker = Tracker::new(Progress::default(), on_progress);
    // An attempt that downloaded something made progress toward the newest manifest: only 8
    // attempts in a row without any (or 1,000 in all) end the restore.
    let (mut stalled, mut attempts) = (0, 0);
    loop {
        let (objects, bytes) = to_download(&have, &manifest);
        tracker.add_total(objects, bytes);
        let done_before = tracker.progress().objects_done;
        match bring_to(store, prefix, build, &have, &manifest, &tracker).await {
            Ok(()) => break,
            Err(e) if e.is_not_found() && stalled < 8 && attempts < 1000 => {
                attempts += 1;
                if tracker.progress().objects_done == done_before {
                    stalled += 1;
                } else {
                    stalled = 0;
                }
            }
            Err(e) => {
                let _ = fs::remove_dir_all(build);
                return Err(e);
            }
        }
        manifest = match latest_manifest(store, prefix).await {
            Ok(Some(newest)) => newest,
            Ok(None) => {
                let _ = fs::remove_dir_all(build);
                return Err(no_manifest());
            }
            Err(e) => {
                let _ = fs::remove_dir_all(build);
                return Err(e);
            }
        };
    }
    let progress = tracker.progress();
    let report = RestoreReport {
        manifest: manifest.seq,
        synced: manifest.synced(),
        objects: progress.objects_done,
        bytes: progress.bytes_done,
    };
    Ok((manifest, report))
}

/// Counts finished objects and reports them; shared by concurrent downloads.
pub(crate) struct Tracker<'a> {
    progress: std::sync::Mutex<Progress>,
    on_progress: &'a (dyn Fn(&Progress) + Send + Sync),
}

impl<'a> Tracker<'a> {
    pub(crate) fn new(total: Progress, on_progress: &'a (dyn Fn(&Progress) + Send + Sync)) -> Self {
        Self {
            progress: std::sync::Mutex::new(total),
            on_progress,
        }
    }

    /// Adds work found to do (a restore that goes on toward a newer manifest).
    pub(crate) fn add_total(&self, objects: u64, bytes: u64) {
        let mut progress = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        progress.objects_total += objects;
        progress.bytes_total += bytes;
    }

    pub(crate) fn done(&self, bytes: u64) {
        let mut progress = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        progress.objects_done += 1;
        progress.bytes_done += bytes;
        (self.on_progress)(&progress);
    }

    pub(crate) fn progress(&self) -> Progress {
        *self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Creates segment file `path` from `parts` (written at their offsets), zeros to the segment
/// size, allocated and fsynced.
pub(crate) async fn write_segment(
    store: &dyn ObjectStore,
    prefix: &Path,
    manifest: &Manifest,
    parts: &[ObjectEntry],
    path: &FsPath,
    tracker: &Tracker<'_>,
) -> Result<()> {
    let segment_bytes = manifest.segment_bytes;
    let file = {
        let path = path.to_path_buf();
        blocking(&path.clone(), move || {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            file.set_len(segment_bytes)
                .map_err(|e| Error::io(&path, e))?;
            fs4::FileExt::allocate(&file, segment_bytes).map_err(|e| Error::io(&path, e))?;
            Ok(Arc::new(file))
        })
        .await?
    };
    write_parts(store, prefix, &file, parts, path, tracker).await?;
    let sync_path = path.to_path_buf();
    blocking(path, move || {
        file.sync_all().map_err(|e| Error::io(&sync_path, e))
    })
    .await
}

/// Writes each of `parts` into `file` at its offset.
pub(crate) async fn write_parts(
    store: &dyn ObjectStore,
    prefix: &Path,
    file: &Arc<File>,
    parts: &[ObjectEntry],
    path: &FsPath,
    tracker: &Tracker<'_>,
) -> Result<()> {
    for part in parts {
        let bytes = fetch(store, prefix, part).await?;
        let (file, at_path, start) = (Arc::clone(file), path.to_path_buf(), part.start);
        blocking(path, move || {
            file.write_all_at(&bytes, start)
                .map_err(|e| Error::io(&at_path, e))
        })
        .await?;
        tracker.done(part.len);
    }
    Ok(())
}

/// Downloads one object and checks it against its entry.
pub(crate) async fn fetch(
    store: &dyn ObjectStore,
    prefix: &Path,
    entry: &ObjectEntry,
) -> Result<bytes::Bytes> {
    let path = at(prefix, &entry.key);
    let bytes = get_bytes(store, &path).await?;
    if bytes.len() as u64 != entry.len {
        return Err(Error::corrupt(
            &path,
            format!("{} bytes, its manifest says {}", bytes.len(), entry.len),
        ));
    }
    if crc32c::crc32c(&bytes) != entry.crc32c {
        return Err(Error::corrupt(
            &path,
            "its checksum does not match its manifest's",
        ));
    }
    Ok(bytes)
}

/// `dest` must be absent or an empty directory.
fn check_dest(dest: &FsPath) -> Result<()> {
    match fs::read_dir(dest).map(|mut entries| entries.next().is_some()) {
        Ok(true) => Err(Error::io(
            dest,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the restore destination exists and is not empty; name a new directory",
            ),
        )),
        Ok(false) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(Error::io(
            dest,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the restore destination is a file; name a new directory",
            ),
        )),
        Err(e) => Err(Error::io(dest, e)),
    }
}

/// The parent of `dest` and the directory the restore is built in beside it.
fn build_path(dest: &FsPath) -> Result<(PathBuf, PathBuf)> {
    let name = dest.file_name().ok_or_else(|| {
        Error::io(
            dest,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the restore destination must end in a directory name",
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
                "the restore destination's parent directory does not exist",
            ),
        ));
    }
    let mut build = std::ffi::OsString::from(".");
    build.push(name);
    build.push(".seglog-restore");
    Ok((parent.clone(), parent.join(build)))
}

/// Creates `dir` empty (removing what a killed restore left there).
fn fresh_dir(dir: &FsPath) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    fs::create_dir(dir).map_err(|e| Error::io(dir, e))
}

pub(crate) fn sync_dir(dir: &FsPath) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
