//! The shipper: copies a log's durable state to object storage, round after round.
//!
//! # A round
//! 0. **Sync**: read the log's tail, then `sync` until the synced frontier reaches it
//!    (`settle`), so every write that returned before the round is durable and listed.
//! 1. **List** the log's files up to its synced frontier, under a lease
//!    ([`seglog::Log::segment_files`]): compaction retires none of them while they are read.
//! 2. **Upload what is new**, each object exactly once (`upload.rs`): a sealed segment not yet
//!    shipped whole (trailing zeros trimmed) and its hint; of the frontier's segment, the bytes
//!    from where the last manifest's ranges end to the frontier, as one more range object. Each
//!    file is given back to compaction as soon as it is read (`release_below`).
//! 3. **Publish a manifest** naming every listed segment's objects and the frontier, created
//!    with `PutMode::Create` under the next sequence number, only after all of them are stored.
//!    A round that changed nothing publishes nothing.
//! 4. **Collect garbage**: delete the manifests older than the kept ones (the newest
//!    [`ShipOptions::keep_manifests`], 8 by default), *then* every object none of them names
//!    (segments compaction retired, ranges of a segment since shipped whole, uploads of a
//!    round a crash cut short). So no manifest left under the prefix ever names a deleted
//!    object, and a reader of a manifest has `keep_manifests - 1` rounds to finish.
//!
//! # Crashes and restarts
//! A new shipper reads the newest manifest and lists the objects under the prefix. Objects a
//! round uploaded before it was killed, and that no manifest names yet, are checked (length and
//! CRC-32C, downloading them) against the bytes they would get, and adopted instead of uploaded
//! again. A manifest whose upload failed may still have been stored (a lost response): after any
//! failed round, the next one starts by reading the newest manifest again.
//!
//! # Lag
//! A write that returned is in a published manifest at most one interval plus one round later
//! ([`Shipper::run_until`]), whether or not the application synced it (the round does), unless
//! a write before it is still being written after an interval.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use seglog::{Log, SyncedFrontier};

use crate::error::{Error, Result};
use crate::manifest::{
    MANIFEST_FORMAT, Manifest, ObjectEntry, SegmentEntry, at, hint_key, latest_manifest,
    list_objects, manifest_seqs, read_manifest, relative, segment_key, tail_key,
};
use crate::upload::{Stored, put_once, read_file, read_range, same_bytes, trim_zeros};

/// How a [`Shipper`] ships.
#[derive(Clone, Debug)]
pub struct ShipOptions {
    /// The time between rounds in [`Shipper::run_until`]: the remote copy lags the log by at
    /// most this plus one round. Also the longest a round waits for writes in flight to
    /// publish (see [`Shipper::ship_once`]). Default 1 s.
    pub interval: Duration,
    /// Objects of at least this many bytes are uploaded in parts. Default 8 MiB.
    pub multipart_bytes: u64,
    /// The size of each part of a multipart upload (at least 5 MiB, S3's minimum). Default
    /// 8 MiB.
    pub part_bytes: usize,
    /// Uploads in flight at once (each holds one object's bytes in memory: up to a whole
    /// segment). Default 4.
    pub concurrency: usize,
    /// Manifests kept under the prefix (at least 2): garbage is collected only once none of
    /// them names it, so a restore or a follower reading a manifest has this many rounds minus
    /// one to fetch its objects before they may go. Default 8.
    pub keep_manifests: usize,
    /// [`Shipper::run_until`] gives up after this many failed rounds in a row (each retried
    /// after a backoff that doubles, up to 30 s). Default 8.
    pub max_failed_rounds: u32,
}

impl Default for ShipOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            multipart_bytes: 8 << 20,
            part_bytes: 8 << 20,
            concurrency: 4,
            keep_manifests: 8,
            max_failed_rounds: 8,
        }
    }
}

/// How far a round (or a restore) has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Objects stored (or downloaded) so far.
    pub objects_done: u64,
    /// Objects to store (or download) in all.
    pub objects_total: u64,
    /// Bytes so far.
    pub bytes_done: u64,
    /// Bytes in all.
    pub bytes_total: u64,
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShipReport {
    /// The newest manifest after the round (0: none yet).
    pub manifest: u64,
    /// Whether the round published it.
    pub wrote_manifest: bool,
    /// The frontier it covers.
    pub synced: SyncedFrontier,
    /// Objects this round stored.
    pub objects_uploaded: u64,
    /// Their bytes.
    pub bytes_uploaded: u64,
    /// Objects found already stored with the right bytes (by a round a crash cut short).
    pub objects_adopted: u64,
    /// Objects and old manifests deleted as garbage.
    pub objects_deleted: u64,
    /// Collecting garbage failed after the manifest was published (the store refused a list or
    /// a delete); the next round that publishes a manifest collects it.
    pub garbage_left: bool,
}

type ProgressFn = Box<dyn Fn(&Progress) + Send + Sync>;

/// One upload of a round: `index` is its segment's place in the listing.
enum Job {
    /// A sealed segment, whole.
    Sealed {
        index: usize,
        id: u64,
        path: std::path::PathBuf,
        len: u64,
    },
    /// A sealed segment's hint.
    Hint {
        index: usize,
        id: u64,
        path: std::path::PathBuf,
    },
    /// Bytes `start..end` of the frontier's segment.
    Range {
        index: usize,
        id: u64,
        path: std::path::PathBuf,
        start: u64,
        end: u64,
    },
}

impl Job {
    fn index(&self) -> usize {
        match self {
            Self::Sealed { index, .. } | Self::Hint { index, .. } | Self::Range { index, .. } => {
                *index
            }
        }
    }

    /// The bytes it will read, as far as the plan knows (a sealed segment's trailing zeros are
    /// trimmed only when read; hints count as none).
    fn planned_bytes(&self) -> u64 {
        match self {
            Self::Sealed { len, .. } => *len,
            Self::Hint { .. } => 0,
            Self::Range { start, end, .. } => end - start,
        }
    }
}

/// Ships a [`Log`] to object storage: see the module docs for the protocol.
pub struct Shipper {
    log: Arc<Log>,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    options: ShipOptions,
    /// The newest manifest under the prefix, as this shipper knows it.
    last: Option<Manifest>,
    /// The manifests kept under the prefix (at most `keep_manifests`), oldest first, the newest
    /// last.
    recent: std::collections::VecDeque<Manifest>,
    /// Objects under the prefix that no manifest named when they were listed (name, size):
    /// maybe uploaded by a round a crash cut short.
    found: HashMap<String, u64>,
    /// A round failed: read the remote state again before the next.
    stale: bool,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .field("manifest", &self.last.as_ref().map(|m| m.seq))
            .finish_non_exhaustive()
    }
}

impl Shipper {
    /// A shipper of `log` to `prefix` in `store`, taking up from the newest manifest there.
    ///
    /// Errors: the store is unreachable, or what is under the prefix is not this log's
    /// ([`Error::Mismatch`]: another segment size, or a frontier past this log's).
    pub async fn new(
        log: Arc<Log>,
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        options: ShipOptions,
    ) -> Result<Self> {
        let mut shipper = Self {
            log,
            store,
            prefix,
            options,
            last: None,
            recent: std::collections::VecDeque::new(),
            found: HashMap::new(),
            stale: true,
            progress: None,
        };
        shipper.refresh().await?;
        Ok(shipper)
    }

    /// Calls `f` as each object of a round is stored.
    pub fn on_progress(&mut self, f: impl Fn(&Progress) + Send + Sync + 'static) {
        self.progress = Some(Box::new(f));
    }

    /// The log shipped.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// The newest manifest under the prefix, as of the last round.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.last.as_ref()
    }

    /// Reads the remote state: the newest manifest, and the objects no manifest names.
    async fn refresh(&mut self) -> Result<()> {
        let last = latest_manifest(&*self.store, &self.prefix).await?;
        if let Some(m) = &last {
            let segment_bytes = self.log.append_log().segment_bytes();
            if m.segment_bytes != segment_bytes {
                return Err(Error::Mismatch {
                    reason: format!(
                        "manifest {} has {}-byte segments, this log {segment_bytes}-byte ones",
                        m.seq, m.segment_bytes
                    ),
                });
            }
            let local = self.log.synced_frontier();
            if m.synced() > local {
                return Err(Error::Mismatch {
                    reason: format!(
                        "manifest {} reaches {:?}, past this log's synced frontier {local:?}: \
                         it is another log's, or this log lost synced writes",
                        m.seq,
                        m.synced()
                    ),
                });
            }
        }
        if let Some(m) = &last {
            self.check_identity(m).await?;
        }
        // The kept manifests, oldest first: garbage is what none of them names.
        let mut recent = std::collections::VecDeque::new();
        if let Some(m) = &last {
            let seqs = manifest_seqs(&*self.store, &self.prefix).await?;
            let keep = self.options.keep_manifests.max(2);
            for &seq in seqs.iter().rev().skip(1).take(keep - 1).rev() {
                match read_manifest(&*self.store, &self.prefix, seq).await {
                    Ok(older) => recent.push_back(older),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            recent.push_back(m.clone());
        }
        let mut found = HashMap::new();
        for dir in ["segments", "tail"] {
            for meta in list_objects(&*self.store, &self.prefix, dir).await? {
                if let Some(rel) = relative(&self.prefix, &meta.location) {
                    found.insert(rel.to_string(), meta.size);
                }
            }
        }
        if let Some(m) = &last {
            for entry in m.entries() {
                found.remove(&entry.key);
            }
        }
        self.last = last;
        self.recent = recent;
        self.found = found;
        self.stale = false;
        Ok(())
    }

    /// Checks that every segment `manifest` names and this log still has is the same segment
    /// (by its header's CRC, which covers the random salt it was created with): another log's
    /// manifest is refused before anything of it is reused.
    async fn check_identity(&self, manifest: &Manifest) -> Result<()> {
        let log = Arc::clone(&self.log);
        let files = log.segment_files()?;
        for file in files.segments() {
            let Some(entry) = manifest.segments.iter().find(|s| s.id == file.id) else {
                continue;
            };
            if header_crc(&file.path).await? != entry.header_crc32c {
                return Err(Error::Mismatch {
                    reason: format!(
                        "segment {} of this log is not the segment {} that manifest {} names \
                         (their headers differ): another log was shipped to this prefix; ship to \
                         a new one",
                        file.id, file.id, manifest.seq
                    ),
                });
            }
        }
        Ok(())
    }

    /// One round: syncs the log, uploads what is new since the last manifest, publishes a
    /// manifest if anything changed, and deletes what no manifest needs any more. See the
    /// module docs.
    ///
    /// The manifest holds every write that returned before the call: the round syncs until the
    /// synced frontier reaches the tail it read first. A write still being written then (a
    /// reservation not yet published) holds back the frontier, and every write after it, for up
    /// to [`ShipOptions::interval`]; past that the round ships what is covered and the rest goes
    /// in the next round.
    pub async fn ship_once(&mut self) -> Result<ShipReport> {
        if self.stale {
            self.refresh().await?;
        }
        let round = self.round().await;
        if round.is_err() {
            self.stale = true;
        }
        round
    }

    async fn round(&mut self) -> Result<ShipReport> {
        self.settle().await?;
        let log = Arc::clone(&self.log);
        let files = log.segment_files()?;
        let synced = files.synced();
        if let Some(last) = &self.last
            && synced < last.synced()
        {
            return Err(Error::Mismatch {
                reason: format!(
                    "this log's synced frontier {synced:?} is behind manifest {}'s {:?}",
                    last.seq,
                    last.synced()
                ),
            });
        }
        let previous: HashMap<u64, SegmentEntry> = self
            .last
            .iter()
            .flat_map(|m| m.segments.iter().map(|s| (s.id, s.clone())))
            .collect();
        // Plan: each listed segment's entry, with the uploads it still needs.
        let mut segments = Vec::with_capacity(files.segments().len());
        let mut jobs = Vec::new();
        let mut progress = Progress::default();
        for (index, file) in files.segments().iter().enumerate() {
            let old = previous.get(&file.id);
            let header_crc32c = match old {
                Some(o) => o.header_crc32c,
                None => header_crc(&file.path).await?,
            };
            let mut entry = SegmentEntry {
                id: file.id,
                sealed: file.sealed,
                header_crc32c,
                parts: Vec::new(),
                hint: None,
            };
            if file.sealed {
                match old {
                    Some(o) if o.sealed => entry.parts = o.parts.clone(),
                    _ => jobs.push(Job::Sealed {
                        index,
                        id: file.id,
                        path: file.path.clone(),
                        len: file.len,
                    }),
                }
                match (old.and_then(|o| o.hint.clone()), &file.hint) {
                    (Some(hint), _) => entry.hint = Some(hint),
                    (None, Some(path)) => jobs.push(Job::Hint {
                        index,
                        id: file.id,
                        path: path.clone(),
                    }),
                    (None, None) => {}
                }
            } else {
                if let Some(o) = old.filter(|o| !o.sealed) {
                    entry.parts = o.parts.clone();
                }
                let covered = entry.end();
                if file.len < covered {
                    return Err(Error::Mismatch {
                        reason: format!(
                            "segment {} holds {} durable bytes here and {covered} in the last \
                             manifest",
                            file.id, file.len
                        ),
                    });
                }
                if file.len > covered {
                    jobs.push(Job::Range {
                        index,
                        id: file.id,
                        path: file.path.clone(),
                        start: covered,
                        end: file.len,
                    });
                }
            }
            segments.push(entry);
        }
        progress.objects_total = jobs.len() as u64;
        progress.bytes_total = jobs.iter().map(Job::planned_bytes).sum();

        // Upload, `concurrency` objects at a time, results in plan order: each file is given
        // back to compaction once every upload of it and of the files before it is done (the
        // manifest names it either way).
        let mut report = ShipReport {
            synced,
            ..ShipReport::default()
        };
        let mut stored_keys = Vec::with_capacity(jobs.len());
        {
            // Collected first: a lazy `map` with a borrowing closure held across the awaits
            // makes the round's future not `Send` (rustc's "not general enough").
            let pending: Vec<_> = jobs.iter().map(|job| self.run(job)).collect();
            let mut uploads =
                futures::stream::iter(pending).buffered(self.options.concurrency.max(1));
            let mut job_index = 0;
            while let Some(result) = uploads.next().await {
                let (entry, stored) = result?;
                let job = &jobs[job_index];
                job_index += 1;
                match stored {
                    Stored::Uploaded => {
                        report.objects_uploaded += 1;
                        report.bytes_uploaded += entry.len;
                    }
                    Stored::Existed => report.objects_adopted += 1,
                }
                progress.objects_done += 1;
                progress.bytes_done += job.planned_bytes();
                self.report_progress(&progress);
                stored_keys.push(entry.key.clone());
                let segment = &mut segments[job.index()];
                match job {
                    Job::Sealed { .. } | Job::Range { .. } => segment.parts.push(entry),
                    Job::Hint { .. } => segment.hint = Some(entry),
                }
                let next_file = jobs.get(job_index).map_or(usize::MAX, Job::index);
                if next_file > job.index() {
                    files.release_below(files.segments()[job.index()].id + 1);
                }
            }
        }
        drop(files);
        for key in &stored_keys {
            self.found.remove(key);
        }

        let unchanged = match &self.last {
            Some(last) => last.segments == segments && last.synced() == synced,
            // Nothing durable yet: no manifest, so a restore says nothing was shipped rather
            // than restoring a directory with no log in it.
            None => segments.is_empty(),
        };
        if unchanged {
            report.manifest = self.last.as_ref().map_or(0, |m| m.seq);
            return Ok(report);
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            seq: self.last.as_ref().map_or(1, |m| m.seq + 1),
            segment_bytes: self.log.append_log().segment_bytes(),
            synced_segment: synced.segment,
            synced_offset: synced.offset,
            segments,
        };
        let path = Manifest::path(&self.prefix, manifest.seq);
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::io("manifest", std::io::Error::other(e)))?;
        let crc = crc32c::crc32c(&json);
        match put_once(&*self.store, &path, Bytes::from(json), crc, u64::MAX, 0).await {
            Ok(_) => {}
            Err(Error::Conflict { object, .. }) => {
                return Err(Error::Conflict {
                    object,
                    reason: "another shipper published this manifest: two shippers (or two \
                             logs) are shipping to this prefix"
                        .into(),
                });
            }
            Err(e) => return Err(e),
        }
        report.manifest = manifest.seq;
        report.wrote_manifest = true;
        self.recent.push_back(manifest.clone());
        while self.recent.len() > self.options.keep_manifests.max(2) {
            self.recent.pop_front();
        }
        self.last = Some(manifest);
        // The manifest is published: a failure to collect garbage now fails nothing (the next
        // manifest's collection deletes it too), unless it found a second shipper.
        match self.collect_garbage(&mut report).await {
            Ok(()) => {}
            Err(e @ Error::Conflict { .. }) => return Err(e),
            Err(_) => report.garbage_left = true,
        }
        Ok(report)
    }

    /// Makes every write that returned before the round durable and covered by the synced
    /// frontier: reads the tail, then syncs until the synced frontier reaches it. A `sync` alone
    /// does not always get there: its frontier stops at a reservation still being written
    /// (`Log::tail_frontier`), so writes past it wait for it to publish; this waits up to an
    /// interval for that (polling every millisecond), then ships what it has, and the writes
    /// still waiting go in the next round. A read-only log never syncs: its frontier is its
    /// end.
    async fn settle(&self) -> Result<()> {
        let target = self.log.tail_frontier();
        let deadline = std::time::Instant::now() + self.options.interval;
        loop {
            match self.log.sync() {
                Ok(()) | Err(seglog::Error::ReadOnly) => {}
                Err(e) => return Err(e.into()),
            }
            if self.log.synced_frontier() >= target || std::time::Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Runs one upload: reads its bytes and stores them once (or adopts them, if a round a
    /// crash cut short stored them).
    async fn run(&self, job: &Job) -> Result<(ObjectEntry, Stored)> {
        let (key, bytes, start) = match job {
            Job::Sealed { id, path, .. } => {
                let bytes = trim_zeros(read_file(path).await?);
                if bytes.is_empty() {
                    return Err(Error::io(
                        path,
                        std::io::Error::other("a sealed segment file holds only zeros"),
                    ));
                }
                (segment_key(*id), bytes, 0)
            }
            Job::Hint { id, path, .. } => (hint_key(*id), read_file(path).await?, 0),
            Job::Range {
                id,
                path,
                start,
                end,
                ..
            } => (
                tail_key(*id, *start, *end),
                read_range(path, *start, *end).await?,
                *start,
            ),
        };
        let crc = crc32c::crc32c(&bytes);
        let len = bytes.len() as u64;
        let path = at(&self.prefix, &key);
        let payload = Bytes::from(bytes);
        let put = || {
            put_once(
                &*self.store,
                &path,
                payload.clone(),
                crc,
                self.options.multipart_bytes,
                self.options.part_bytes,
            )
        };
        let stored = if self.found.contains_key(&key) {
            match same_bytes(&*self.store, &path, len, crc).await {
                Ok(stored) => stored,
                // Named by no manifest, with other bytes, under a prefix whose newest manifest
                // is this log's (its segments' headers were checked): left by a round of this
                // prefix's earlier writer that was cut short (a machine lost after an upload,
                // before its manifest; its replacement restored from the manifest and wrote on).
                // Garbage: replaced. Under a prefix with no manifest nothing says whose it is,
                // so it stays a conflict; a second live shipper is caught by the manifest's
                // `Create` either way.
                Err(Error::Conflict { .. }) if self.last.is_some() => {
                    self.delete(&path).await?;
                    put().await?
                }
                Err(e) => return Err(e),
            }
        } else {
            put().await?
        };
        let entry = ObjectEntry {
            key,
            start,
            len,
            crc32c: crc,
        };
        Ok((entry, stored))
    }

    /// Deletes the manifests older than the kept ones ([`ShipOptions::keep_manifests`]), then
    /// every object no kept manifest names, counting them in `report`.
    async fn collect_garbage(&mut self, report: &mut ShipReport) -> Result<()> {
        let newest = self
            .last
            .as_ref()
            .expect("called after a manifest was published");
        let seqs = manifest_seqs(&*self.store, &self.prefix).await?;
        if let Some(&top) = seqs.last()
            && top > newest.seq
        {
            return Err(Error::Conflict {
                object: Manifest::path(&self.prefix, top).to_string(),
                reason: "a newer manifest than this shipper's appeared: two shippers are \
                         shipping to this prefix"
                    .into(),
            });
        }
        let oldest_kept = self.recent.front().map_or(newest.seq, |m| m.seq);
        for &seq in seqs.iter().filter(|&&seq| seq < oldest_kept) {
            report.objects_deleted += self.delete(&Manifest::path(&self.prefix, seq)).await?;
        }
        let keep: HashSet<&str> = self
            .recent
            .iter()
            .flat_map(Manifest::entries)
            .chain(newest.entries())
            .map(|e| e.key.as_str())
            .collect();
        let mut garbage = Vec::new();
        for dir in ["segments", "tail"] {
            for meta in list_objects(&*self.store, &self.prefix, dir).await? {
                if relative(&self.prefix, &meta.location).is_some_and(|rel| !keep.contains(rel)) {
                    garbage.push(meta.location);
                }
            }
        }
        for path in garbage {
            report.objects_deleted += self.delete(&path).await?;
        }
        self.found.clear();
        Ok(())
    }

    async fn delete(&self, path: &Path) -> Result<u64> {
        match self.store.delete(path).await {
            Ok(()) => Ok(1),
            Err(object_store::Error::NotFound { .. }) => Ok(0),
            Err(e) => Err(Error::store(path, e)),
        }
    }

    fn report_progress(&self, progress: &Progress) {
        if let Some(f) = &self.progress {
            f(progress);
        }
    }

    /// Ships a round every [`ShipOptions::interval`] until `stop` completes, then one last
    /// round (so everything synced before the stop is shipped). A round that fails on an error
    /// a retry may fix ([`Error::is_transient`]: the store unreachable or failing) is retried
    /// after a backoff (the interval, doubling per failure, at most 30 s);
    /// [`ShipOptions::max_failed_rounds`] failures in a row, or any other error, end the loop
    /// with that error. Nothing a failed round uploaded is named by a manifest until a round
    /// succeeds.
    pub async fn run_until<F: Future<Output = ()>>(&mut self, stop: F) -> Result<()> {
        let stop = std::pin::pin!(stop);
        let mut stop = stop;
        let mut failures = 0u32;
        loop {
            let delay = match self.ship_once().await {
                Ok(_) => {
                    failures = 0;
                    self.options.interval
                }
                Err(e) if e.is_transient() => {
                    failures += 1;
                    if failures >= self.options.max_failed_rounds {
                        return Err(e);
                    }
                    backoff(self.options.interval, failures)
                }
                Err(e) => return Err(e),
            };
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        self.ship_once().await.map(|_| ())
    }
}

/// A segment file's header CRC: the CRC-32C the header ends with, over everything before it
/// (id, size and the random salt). (A CRC of the whole header would be the same for every
/// header: a CRC over bytes followed by their own CRC is a constant.)
async fn header_crc(path: &std::path::Path) -> Result<u32> {
    let header = read_range(path, 0, seglog_format::SEGMENT_HEADER_BYTES as u64).await?;
    let crc = &header[seglog_format::SEGMENT_HEADER_BYTES - 4..];
    Ok(u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]))
}

/// The wait before retrying after `failures` failed rounds in a row.
pub(crate) fn backoff(interval: Duration, failures: u32) -> Duration {
    let base = interval.max(Duration::from_millis(50));
    base.saturating_mul(1 << failures.min(10))
        .min(Duration::from_secs(30))
}
