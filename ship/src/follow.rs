//! Follow: a read-only replica in a local directory that applies newer manifests as they
//! appear, serving reads meanwhile.
//!
//! # Applying a manifest
//! The follower's directory holds the log of the manifest it applied, and a [`Log`] opened
//! read-only on it serves reads. To apply a newer manifest it brings the directory to the new
//! manifest's files without touching a byte the open log reads (`mirror.rs`, shared with
//! restore: new and newly sealed segments are downloaded under a temporary name and renamed in,
//! the frontier's segment gets its new ranges past its old end, retired segments are
//! unlinked), then opens the directory read-only again (recovery, with the hints) and swaps the
//! new log in; readers holding the old one finish on it. An object that vanishes meanwhile (the
//! shipper collected it) sends the apply on to the newest manifest, from what is already in
//! place.
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
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path;
use seglog::{Log, Options, SyncedFrontier};

use crate::error::Result;
use crate::manifest::latest_manifest;
use crate::mirror::{Held, bring_to};
use crate::restore::{Tracker, restore_to};
use crate::shipper::{Progress, backoff};
use crate::upload::blocking;

/// A read-only replica of a shipped log: see the module docs.
pub struct Follower {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    dir: PathBuf,
    interval: Duration,
    /// What the directory holds; locked across an apply, so applies never overlap.
    applied: tokio::sync::Mutex<Applied>,
    /// The log serving reads, its manifest's seq and frontier.
    current: RwLock<Current>,
}

/// The directory's state: the last manifest applied whole, and each segment as written.
struct Applied {
    seq: u64,
    held: Held,
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
            applied: tokio::sync::Mutex::new(Applied {
                seq: manifest.seq,
                held: Mutex::new(
                    manifest
                        .segments
                        .iter()
                        .map(|s| (s.id, s.clone()))
                        .collect(),
                ),
            }),
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
        let quiet = |_: &Progress| {};
        let tracker = Tracker::new(Progress::default(), &quiet);
        let latest = loop {
            let Some(latest) = latest_manifest(&*self.store, &self.prefix).await? else {
                return Ok(false);
            };
            if latest.seq <= applied.seq {
                return Ok(false);
            }
            // `held` follows the directory even when this fails midway, so the next attempt
            // (or poll) redoes only what differs.
            let store = &*self.store;
            match bring_to(
                store,
                &self.prefix,
                &self.dir,
                &applied.held,
                &latest,
                &tracker,
            )
            .await
            {
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
        applied.seq = latest.seq;
        Ok(true)
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
