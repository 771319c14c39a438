//! Follow: a read-only replica in a local directory that applies newer manifests as they
//! appear, serving reads meanwhile.
//!
//! # Applying a manifest
//! The follower's directory holds the log of the manifest it applied, and a [`Log`] opened
//! read-only on it serves reads. To apply a newer manifest it brings the directory to the new
//! manifest's files without touching a byte the open log reads:
//! - a segment new to it is downloaded under a temporary name and renamed into place, and so is
//!   a segment that was the frontier's and is now sealed (rename replaces the name; the open
//!   log keeps the old file mapped);
//! - the frontier's segment gains its new ranges, written past the old frontier, where the
//!   open log never reads (its tail is the old frontier);
//! - a segment the new manifest no longer names (compaction retired it) is unlinked, which an
//!   open mapping survives.
//!
//! Then it opens the directory read-only again (recovery, with the hints) and swaps the new
//! log in; readers holding the old one finish on it. An object that vanishes meanwhile (the
//! shipper collected it) sends the apply to the newest manifest, which it reaches from the same
//! directory state, since every step above is idempotent.
//!
//! # Lag
//! A follower polling every interval `i` applies a manifest at most `i` plus two applies (an
//! apply is the downloads and a read-only open of the whole log) after it is published: a
//! manifest published just after a poll read the previous one waits for that apply, the
//! interval, then its own apply (`ship/tests/ship_follower_lag.rs` measures it: 40-410 ms at a
//! 200 ms interval). A leader shipping every interval `i` publishes a write at most `i` plus one
//! round after it returned, so a read on the follower sees a write about two intervals plus
//! two applies after the leader's write returned.
//!
//! # After a crash
//! The directory is a cache of the remote log, not a log of its own: it is not fsynced, and
//! [`Follower::open`] starts from an empty directory (a crashed follower's directory is removed
//! and restored again).

use std::future::Future;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path;
use seglog::{Log, Options, SyncedFrontier};
use seglog_format::LogFile;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, SegmentEntry, latest_manifest};
use crate::restore::{Tracker, fetch, restore_to, write_parts, write_segment};
use crate::shipper::{Progress, backoff};
use crate::upload::blocking;

/// A read-only replica of a shipped log: see the module docs.
pub struct Follower {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    dir: PathBuf,
    interval: Duration,
    /// The manifest the directory holds; held across an apply, so applies never overlap.
    applied: tokio::sync::Mutex<Manifest>,
    /// The log serving reads, its manifest's seq and frontier.
    current: RwLock<Current>,
}

#[derive(Clone)]
struct Current {
    log: Arc<Log>,
    seq: u64,
    synced: SyncedFrontier,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("prefix", &self.prefix)
            .field("dir", &self.dir)
            .field("manifest", &self.manifest())
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// Restores the log shipped under `prefix` into `dir` (absent or empty) and opens it
    /// read-only; [`Follower::poll`] or [`Follower::run_until`] then keep it current.
    ///
    /// Errors: as [`crate::restore`]'s, and the log failing to open.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        dir: &FsPath,
        interval: Duration,
    ) -> Result<Self> {
        let (manifest, _) = restore_to(&*store, &prefix, dir, &|_| {}).await?;
        let log = open_read_only(dir).await?;
        let current = Current {
            log,
            seq: manifest.seq,
            synced: manifest.synced(),
        };
        Ok(Self {
            store,
            prefix,
            dir: dir.to_path_buf(),
            interval,
            applied: tokio::sync::Mutex::new(manifest),
            current: RwLock::new(current),
        })
    }

    /// The log serving reads now (the newest applied). Reads on it see the state of
    /// [`Follower::manifest`]; a later apply swaps in a new one and leaves this one as it is.
    pub fn log(&self) -> Arc<Log> {
        Arc::clone(&self.current().log)
    }

    /// The value of `key` in the newest applied manifest's state.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.log().get(key)
    }

    /// The sequence number of the manifest applied.
    pub fn manifest(&self) -> u64 {
        self.current().seq
    }

    /// The synced frontier of the manifest applied.
    pub fn synced(&self) -> SyncedFrontier {
        self.current().synced
    }

    fn current(&self) -> Current {
        // A poisoned lock means a panic between two plain stores of a clone; the value is whole.
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Applies the newest manifest under the prefix if it is newer than the applied one.
    /// Returns whether it applied one.
    pub async fn poll(&self) -> Result<bool> {
        let mut applied = self.applied.lock().await;
        let mut attempts = 0;
        let latest = loop {
            let Some(latest) = latest_manifest(&*self.store, &self.prefix).await? else {
                return Ok(false);
            };
            if latest.seq <= applied.seq {
                return Ok(false);
            }
            match self.apply(&applied, &latest).await {
                Ok(()) => break latest,
                Err(e) if e.is_not_found() && attempts < 8 => attempts += 1,
                Err(e) => return Err(e),
            }
        };
        let log = open_read_only(&self.dir).await?;
        let current = Current {
            log,
            seq: latest.seq,
            synced: latest.synced(),
        };
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = current;
        *applied = latest;
        Ok(true)
    }

    /// Brings the directory from `old`'s files to `new`'s.
    async fn apply(&self, old: &Manifest, new: &Manifest) -> Result<()> {
        let store = &*self.store;
        let quiet = |_: &Progress| {};
        let tracker = Tracker::new(Progress::default(), &quiet);
        for segment in &new.segments {
            let before = old.segments.iter().find(|s| s.id == segment.id);
            let path = self.dir.join(LogFile::Segment(segment.id).name());
            match before {
                Some(b) if b.parts == segment.parts => {}
                Some(b) if !b.sealed && !segment.sealed && segment.parts.starts_with(&b.parts) => {
                    // The frontier's segment grew: write the new ranges past the old frontier.
                    let file = {
                        let path = path.clone();
                        blocking(&path.clone(), move || {
                            std::fs::OpenOptions::new()
                                .write(true)
                                .open(&path)
                                .map(Arc::new)
                                .map_err(|e| Error::io(&path, e))
                        })
                        .await?
                    };
                    let fresh = &segment.parts[b.parts.len()..];
                    write_parts(store, &self.prefix, &file, fresh, &path, &tracker).await?;
                }
                _ => {
                    let tmp = self
                        .dir
                        .join(format!("{}.follow", LogFile::Segment(segment.id).name()));
                    write_segment(store, &self.prefix, new, &segment.parts, &tmp, &tracker).await?;
                    rename(&tmp, &path)?;
                }
            }
            self.apply_hint(before, segment).await?;
        }
        for gone in old
            .segments
            .iter()
            .filter(|s| !new.segments.iter().any(|n| n.id == s.id))
        {
            for name in [
                LogFile::Segment(gone.id).name(),
                LogFile::Hint(gone.id).name(),
            ] {
                let path = self.dir.join(name);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&path, e)),
                }
            }
        }
        Ok(())
    }

    /// Downloads `segment`'s hint if the directory does not hold it yet.
    async fn apply_hint(
        &self,
        before: Option<&SegmentEntry>,
        segment: &SegmentEntry,
    ) -> Result<()> {
        let Some(hint) = &segment.hint else {
            return Ok(());
        };
        if before.and_then(|b| b.hint.as_ref()) == Some(hint) {
            return Ok(());
        }
        let bytes = fetch(&*self.store, &self.prefix, hint).await?;
        let path = self.dir.join(LogFile::Hint(segment.id).name());
        let tmp = self.dir.join(LogFile::HintTmp(segment.id).name());
        let write_tmp = tmp.clone();
        blocking(&tmp, move || {
            std::fs::write(&write_tmp, &bytes).map_err(|e| Error::io(&write_tmp, e))
        })
        .await?;
        rename(&tmp, &path)
    }

    /// Polls every interval until `stop` completes. A poll that fails on an error a retry may
    /// fix ([`Error::is_transient`]) is retried after a backoff (the interval, doubling per
    /// failure, at most 30 s); eight failures in a row, or any other error, end the loop with
    /// that error. Reads keep being served from the last applied manifest throughout.
    pub async fn run_until<F: Future<Output = ()>>(&self, stop: F) -> Result<()> {
        let mut stop = std::pin::pin!(stop);
        let mut failures = 0u32;
        loop {
            let delay = match self.poll().await {
                Ok(_) => {
                    failures = 0;
                    self.interval
                }
                Err(e) if e.is_transient() => {
                    failures += 1;
                    if failures >= 8 {
                        return Err(e);
                    }
                    backoff(self.interval, failures)
                }
                Err(e) => return Err(e),
            };
            tokio::select! {
                () = &mut stop => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

fn rename(from: &FsPath, to: &FsPath) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))
}

async fn open_read_only(dir: &FsPath) -> Result<Arc<Log>> {
    let dir = dir.to_path_buf();
    blocking(&dir.clone(), move || {
        Ok(Arc::new(Log::open_with(
            &dir,
            Options::default().read_only(true),
        )?))
    })
    .await
}
