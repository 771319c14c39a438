//! Helpers shared by the ship tests (each test file includes this module with `mod common;`):
//! a watchdog, writer threads that record what they did and when it was synced, the check that
//! a restored log is a state the log was in at a manifest's frontier, a check of every manifest
//! under a prefix, and an auditing `ObjectStore` wrapper that checks the shipper's protocol on
//! every request.

#![allow(dead_code)] // each test file uses some of these

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use seglog::Log;
use seglog_ship::Manifest;

// ---------------------------------------------------------------------------------------------
// Bounds

/// Kills the test process if it is still alive after `limit`: a test that could hang fails
/// instead, with `what` and the limit in the message. Disarmed on drop.
#[must_use = "the watchdog is disarmed when dropped"]
pub struct Watchdog {
    done: Arc<AtomicBool>,
}

/// Arms a [`Watchdog`].
pub fn watchdog(what: &'static str, limit: Duration) -> Watchdog {
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !flag.load(Ordering::SeqCst) {
                eprintln!(
                    "watchdog: {what} still running after {limit:?}; killing the test process"
                );
                std::process::exit(101);
            }
        })
        .expect("the watchdog thread");
    Watchdog { done }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// A number from the environment variable `name`, or `default` (sizes of a test: CI's defaults
/// are small, a longer run sets them higher).
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `f` with a time limit: panics with `what` if it takes longer.
pub async fn bounded<T>(what: &str, limit: Duration, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(value) => value,
        Err(_) => panic!("{what} took more than {limit:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Keys, values and the writers' history

/// Key `index` of writer `writer`'s key space (writers never share a key).
pub fn key_of(writer: u64, index: u64) -> Vec<u8> {
    format!("w{writer:02}-k{index:05}").into_bytes()
}

/// Parses a key made by [`key_of`].
pub fn parse_key(key: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(key).ok()?;
    let (w, k) = text.strip_prefix('w')?.split_once("-k")?;
    Some((w.parse().ok()?, k.parse().ok()?))
}

/// The value of writer `writer`'s operation `seq`: its writer and seq (16 bytes), then `len`
/// bytes that depend on both, so a value read back names the write it came from and is checked
/// byte for byte.
pub fn value_of(writer: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 + len);
    value.extend_from_slice(&writer.to_le_bytes());
    value.extend_from_slice(&seq.to_le_bytes());
    value.extend_from_slice(&seglog_tests::pattern(writer, seq, len));
    value
}

/// The (writer, seq) a value made by [`value_of`] names, if its bytes are exactly that value's.
pub fn parse_value(value: &[u8]) -> Option<(u64, u64)> {
    if value.len() < 16 {
        return None;
    }
    let writer = u64::from_le_bytes(value[..8].try_into().unwrap());
    let seq = u64::from_le_bytes(value[8..16].try_into().unwrap());
    (value_of(writer, seq, value.len() - 16) == value).then_some((writer, seq))
}

/// One operation a writer did.
#[derive(Clone, Debug)]
pub struct Op {
    /// Its index in the writer's key space.
    pub key: u64,
    /// `Some(len)`: a put of `value_of(writer, seq, len)`; `None`: a remove.
    pub put: Option<usize>,
    /// When the writer started it.
    pub started: Instant,
    /// When it had returned (None: still running).
    pub returned: Option<Instant>,
    /// When a `sync` that started after it returned had returned (None: not synced yet).
    pub synced: Option<Instant>,
}

/// What the writers do.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub writers: u64,
    /// Keys per writer: fewer keys, more overwrites (dead bytes for compaction).
    pub keys: u64,
    /// Percent of operations that remove a key.
    pub remove_percent: u64,
    /// Value lengths are 0..=max_value bytes (plus the 16-byte header).
    pub max_value: usize,
    /// Operations between two syncs of one writer.
    pub sync_every: usize,
    /// Operations per writer at most.
    pub max_ops: u64,
    /// A thread calling `Log::compact` this often, if set.
    pub compact_every: Option<Duration>,
    /// A pause after each sync, so the writing lasts (and the shipper runs rounds meanwhile).
    pub pace: Option<Duration>,
    pub seed: u64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            writers: 4,
            keys: 256,
            remove_percent: 20,
            max_value: 2048,
            sync_every: 16,
            max_ops: u64::MAX,
            compact_every: Some(Duration::from_millis(50)),
            pace: None,
            seed: 1,
        }
    }
}

/// Each writer's operations, in its program order.
pub type History = Vec<Vec<Op>>;

/// Writer threads (and a compactor) on a log, recording every operation.
pub struct Writers {
    stop: Arc<AtomicBool>,
    ops: Arc<Vec<Mutex<Vec<Op>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    compacted: Arc<AtomicU64>,
}

impl Writers {
    pub fn start(log: &Arc<Log>, config: &WriterConfig) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let ops: Arc<Vec<Mutex<Vec<Op>>>> = Arc::new(
            (0..config.writers)
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        );
        let compacted = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for writer in 0..config.writers {
            let (log, stop, ops, config) = (
                Arc::clone(log),
                Arc::clone(&stop),
                Arc::clone(&ops),
                config.clone(),
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("writer-{writer}"))
                    .spawn(move || write(&log, writer, &config, &stop, &ops[writer as usize]))
                    .expect("a writer thread"),
            );
        }
        if let Some(every) = config.compact_every {
            let (log, stop, compacted) =
                (Arc::clone(log), Arc::clone(&stop), Arc::clone(&compacted));
            threads.push(
                std::thread::Builder::new()
                    .name("compactor".into())
                    .spawn(move || {
                        while !stop.load(Ordering::SeqCst) {
                            let retired = log.compact().expect("compact");
                            compacted.fetch_add(retired, Ordering::SeqCst);
                            std::thread::sleep(every);
                        }
                    })
                    .expect("the compactor thread"),
            );
        }
        Writers {
            stop,
            ops,
            threads,
            compacted,
        }
    }

    /// A copy of the history so far.
    pub fn history(&self) -> History {
        self.ops
            .iter()
            .map(|ops| ops.lock().unwrap().clone())
            .collect()
    }

    /// Operations done so far, all writers.
    pub fn count(&self) -> usize {
        self.ops.iter().map(|ops| ops.lock().unwrap().len()).sum()
    }

    /// Segments the compactor thread's `compact` calls retired.
    pub fn compacted(&self) -> u64 {
        self.compacted.load(Ordering::SeqCst)
    }

    /// Stops and joins the threads; returns the whole history. Panics if a thread panicked.
    pub fn stop(mut self) -> History {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            thread.join().expect("a writer or the compactor panicked");
        }
        self.history()
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn write(log: &Log, writer: u64, config: &WriterConfig, stop: &AtomicBool, ops: &Mutex<Vec<Op>>) {
    let mut rng = seglog_tests::SplitMix64::new(config.seed ^ (writer << 40) ^ 0x5eed);
    let mut unsynced = 0usize;
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) && seq < config.max_ops {
        let key = rng.range(0, config.keys - 1);
        let put = (rng.range(0, 99) >= config.remove_percent)
            .then(|| rng.range(0, config.max_value as u64) as usize);
        ops.lock().unwrap().push(Op {
            key,
            put,
            started: Instant::now(),
            returned: None,
            synced: None,
        });
        match put {
            Some(len) => {
                log.put(&key_of(writer, key), &value_of(writer, seq, len))
                    .expect("put");
            }
            None => {
                log.remove(&key_of(writer, key)).expect("remove");
            }
        }
        ops.lock()
            .unwrap()
            .last_mut()
            .expect("pushed above")
            .returned = Some(Instant::now());
        seq += 1;
        unsynced += 1;
        if unsynced >= config.sync_every {
            log.sync().expect("sync");
            let now = Instant::now();
            let mut ops = ops.lock().unwrap();
            for op in ops.iter_mut().rev().take(unsynced) {
                op.synced = Some(now);
            }
            unsynced = 0;
            if let Some(pace) = config.pace {
                std::thread::sleep(pace);
            }
        }
    }
}

/// Everything `log` holds.
pub fn state_of(log: &Log) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let pinned = log.pin();
    pinned
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

/// The state after every operation of `history`.
pub fn final_state(history: &History) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut state = BTreeMap::new();
    for (writer, ops) in history.iter().enumerate() {
        let writer = writer as u64;
        for (seq, op) in ops.iter().enumerate() {
            let key = key_of(writer, op.key);
            match op.put {
                Some(len) => state.insert(key, value_of(writer, seq as u64, len)),
                None => state.remove(&key),
            };
        }
    }
    state
}

/// Checks that `state` (a restored log's contents) is the state of the writers' keys after a
/// prefix of each writer's operations that holds every operation that returned before
/// `returned_before` (the start of the manifest's round: guarantee 13 of docs/durability.md,
/// the round syncs them itself) and none started at or after `started_before`: every write
/// acknowledged before the round is there with exact bytes, nothing removed before it is back,
/// nothing written after it is there, and nothing is half of one write and half of another.
/// Returns, per writer, the length of the prefix found.
#[allow(clippy::needless_range_loop)] // k is the prefix length, not only an index
pub fn check_prefix(
    state: &BTreeMap<Vec<u8>, Vec<u8>>,
    history: &History,
    returned_before: Instant,
    started_before: Instant,
) -> Result<Vec<usize>, String> {
    // Each present key names the write it holds.
    let mut present: Vec<HashMap<u64, u64>> = vec![HashMap::new(); history.len()];
    for (key, value) in state {
        let Some((writer, index)) = parse_key(key) else {
            return Err(format!(
                "a key no writer wrote: {:?}",
                String::from_utf8_lossy(key)
            ));
        };
        let Some(ops) = history.get(writer as usize) else {
            return Err(format!(
                "key {:?} of an unknown writer",
                String::from_utf8_lossy(key)
            ));
        };
        let Some((w, seq)) = parse_value(value) else {
            return Err(format!(
                "key {:?} holds {} bytes that are no write's value",
                String::from_utf8_lossy(key),
                value.len()
            ));
        };
        let op = ops.get(seq as usize);
        if w != writer || op.is_none_or(|op| op.key != index || op.put != Some(value.len() - 16)) {
            return Err(format!(
                "key {:?} holds the value of writer {w}'s write {seq}, which is not a put of it",
                String::from_utf8_lossy(key)
            ));
        }
        present[writer as usize].insert(index, seq);
    }
    let mut prefixes = Vec::new();
    for (writer, ops) in history.iter().enumerate() {
        let lo = ops
            .iter()
            .rposition(|op| op.returned.is_some_and(|t| t < returned_before))
            .map_or(0, |i| i + 1);
        let hi = ops
            .iter()
            .position(|op| op.started >= started_before)
            .unwrap_or(ops.len());
        if lo > hi {
            return Err(format!(
                "writer {writer}: {lo} writes returned before the round but only {hi} started \
                 before it ended (the clock went backwards?)"
            ));
        }
        // Walk k from 0 to hi keeping the state after ops[..k] and how many keys differ from
        // what is present.
        let present = &present[writer];
        let mut model: HashMap<u64, u64> = HashMap::new();
        let differs = |model: &HashMap<u64, u64>, key: u64| model.get(&key) != present.get(&key);
        let mut mismatched: usize = present.keys().filter(|k| differs(&model, **k)).count();
        let mut found = None;
        for k in 0..=hi {
            if k >= lo && mismatched == 0 {
                found = Some(k);
                break;
            }
            if k == hi {
                break;
            }
            let op = &ops[k];
            let before = differs(&model, op.key);
            match op.put {
                Some(_) => model.insert(op.key, k as u64),
                None => model.remove(&op.key),
            };
            let after = differs(&model, op.key);
            mismatched = mismatched + usize::from(after) - usize::from(before);
        }
        let Some(k) = found else {
            // Say what is wrong at the lowest allowed prefix, the state every write returned
            // before the round makes.
            let mut model: HashMap<u64, u64> = HashMap::new();
            for (i, op) in ops[..lo].iter().enumerate() {
                match op.put {
                    Some(_) => model.insert(op.key, i as u64),
                    None => model.remove(&op.key),
                };
            }
            let mut wrong: Vec<String> = model
                .keys()
                .chain(present.keys())
                .filter(|key| model.get(key) != present.get(key))
                .take(5)
                .map(|key| {
                    format!(
                        "key {key}: acknowledged state write {:?}, restored write {:?}",
                        model.get(key),
                        present.get(key)
                    )
                })
                .collect();
            wrong.dedup();
            return Err(format!(
                "writer {writer}: the restored keys are the state after no prefix of its writes \
                 from {lo} (returned before the round) to {hi} (started before it ended); e.g. \
                 {wrong:?}"
            ));
        };
        prefixes.push(k);
    }
    Ok(prefixes)
}

// ---------------------------------------------------------------------------------------------
// Ship rounds

/// One round a test ran, with when it started and ended.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    pub started: Instant,
    pub ended: Instant,
    pub report: seglog_ship::ShipReport,
}

/// The bounds of manifest `seq` from the rounds that reported it: every write returned before
/// the start of the latest round that reported it is in it (a round that changed nothing
/// reports the manifest it found, which then holds everything returned before that round),
/// and no write started after the end of the round that published it. `None` if no round
/// published it.
pub fn manifest_bounds(rounds: &[Round], seq: u64) -> Option<(Instant, Instant)> {
    let published = rounds
        .iter()
        .find(|r| r.report.wrote_manifest && r.report.manifest == seq)?;
    let returned_before = rounds
        .iter()
        .filter(|r| r.report.manifest == seq)
        .map(|r| r.started)
        .max()?;
    Some((returned_before, published.ended))
}

// ---------------------------------------------------------------------------------------------
// The remote side

/// Every object under `prefix` (path relative to it → size).
pub async fn objects(store: &dyn ObjectStore, prefix: &Path) -> BTreeMap<String, u64> {
    let metas: Vec<ObjectMeta> = store
        .list(Some(prefix))
        .try_collect()
        .await
        .expect("listing the prefix");
    metas
        .into_iter()
        .map(|m| {
            let full = m.location.to_string();
            let rel = full
                .strip_prefix(prefix.as_ref())
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or(&full)
                .to_owned();
            (rel, m.size)
        })
        .collect()
}

/// Every manifest under `prefix`, parsed, in seq order.
pub async fn manifests(store: &dyn ObjectStore, prefix: &Path) -> Vec<Manifest> {
    let mut found = Vec::new();
    for (rel, _) in objects(store, prefix).await {
        if rel.starts_with("manifests/") {
            let path = Path::from(format!("{prefix}/{rel}"));
            let bytes = store
                .get(&path)
                .await
                .expect("reading a listed manifest")
                .bytes()
                .await
                .expect("reading a listed manifest");
            let manifest: Manifest = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("manifest {rel} does not parse: {e}"));
            assert_eq!(
                rel,
                format!("manifests/{:020}.json", manifest.seq),
                "a manifest's name is its seq"
            );
            found.push(manifest);
        }
    }
    found.sort_by_key(|m| m.seq);
    found
}

/// Checks the remote copy while no shipper runs: every manifest present names only objects
/// that exist with the length it says (and their bytes match its CRC-32C), and the objects
/// under `segments/` and `tail/` are exactly the ones the manifests name (garbage collected).
/// Returns the manifests' seqs.
pub async fn check_remote(store: &dyn ObjectStore, prefix: &Path, collected: bool) -> Vec<u64> {
    let listed = objects(store, prefix).await;
    let manifests = manifests(store, prefix).await;
    let mut named = std::collections::BTreeSet::new();
    for manifest in &manifests {
        for entry in manifest.entries() {
            let size = listed.get(&entry.key).unwrap_or_else(|| {
                panic!(
                    "manifest {} names {}, which does not exist; objects: {:?}",
                    manifest.seq,
                    entry.key,
                    listed.keys().collect::<Vec<_>>()
                )
            });
            assert_eq!(
                *size, entry.len,
                "manifest {} says {} has {} bytes",
                manifest.seq, entry.key, entry.len
            );
            if named.insert(entry.key.clone()) {
                let bytes = store
                    .get(&Path::from(format!("{prefix}/{}", entry.key)))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                assert_eq!(
                    crc32c::crc32c(&bytes),
                    entry.crc32c,
                    "{}'s bytes differ from what manifest {} says",
                    entry.key,
                    manifest.seq
                );
            }
        }
    }
    if collected {
        let unnamed: Vec<_> = listed
            .keys()
            .filter(|k| !k.starts_with("manifests/") && !named.contains(*k))
            .collect();
        assert!(unnamed.is_empty(), "objects no manifest names: {unnamed:?}");
        let keep = seglog_ship::ShipOptions::default().keep_manifests;
        assert!(
            manifests.len() <= keep,
            "more than {keep} manifests kept: {}",
            manifests.len()
        );
    }
    manifests.iter().map(|m| m.seq).collect()
}

// ---------------------------------------------------------------------------------------------
// An auditing store

/// One request the [`Audited`] store saw.
#[derive(Clone, Debug)]
pub struct Event {
    /// When the request returned.
    pub at: Instant,
    pub kind: &'static str,
    pub path: String,
    pub ok: bool,
}

/// An `ObjectStore` wrapper that records every write and delete (with when it returned) and
/// checks the shipper's protocol as it goes, against the store behind it:
/// - before a manifest is put, every object it names exists with its length;
/// - before an object is deleted, no manifest present names it (unless it is a manifest);
/// - no object is created twice (a successful put or completed multipart upload of a name
///   already created through this wrapper).
///
/// Violations are collected, not panicked on, so the shipper's own error handling is not
/// disturbed: a test asserts [`Audited::violations`] is empty.
#[derive(Debug)]
pub struct Audited {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    log: Arc<Mutex<AuditLog>>,
}

#[derive(Debug, Default)]
struct AuditLog {
    events: Vec<Event>,
    violations: Vec<String>,
    created: HashMap<String, u64>,
}

impl Audited {
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: Path) -> Arc<Audited> {
        Arc::new(Audited {
            inner,
            prefix,
            log: Arc::default(),
        })
    }

    pub fn events(&self) -> Vec<Event> {
        self.log.lock().unwrap().events.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.log.lock().unwrap().violations.clone()
    }

    /// When the put of manifest `seq` returned successfully.
    pub fn published(&self, seq: u64) -> Option<Instant> {
        let name = format!("manifests/{seq:020}.json");
        self.log
            .lock()
            .unwrap()
            .events
            .iter()
            .find(|e| e.ok && e.kind == "put" && e.path.ends_with(&name))
            .map(|e| e.at)
    }

    /// Names created more than once through this wrapper.
    pub fn created_twice(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.created
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn record(&self, kind: &'static str, path: &Path, ok: bool) {
        let mut log = self.log.lock().unwrap();
        log.events.push(Event {
            at: Instant::now(),
            kind,
            path: path.to_string(),
            ok,
        });
        if ok && kind == "put" {
            let n = log.created.entry(path.to_string()).or_default();
            *n += 1;
            if *n > 1 && !path.as_ref().contains("/manifests/") {
                log.violations.push(format!("{path} created twice"));
            }
        }
    }

    fn violation(&self, what: String) {
        self.log.lock().unwrap().violations.push(what);
    }

    /// Before a manifest put: everything it names exists with its length.
    async fn check_manifest(&self, location: &Path, payload: &PutPayload) {
        let bytes: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
        let manifest: Manifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => return self.violation(format!("{location} does not parse: {e}")),
        };
        for entry in manifest.entries() {
            let path = Path::from(format!("{}/{}", self.prefix, entry.key));
            match self.inner.head(&path).await {
                Ok(meta) if meta.size == entry.len => {}
                Ok(meta) => self.violation(format!(
                    "manifest {} put naming {} of {} bytes, stored with {}",
                    manifest.seq, entry.key, entry.len, meta.size
                )),
                Err(e) => self.violation(format!(
                    "manifest {} put naming {}, which is not stored: {e}",
                    manifest.seq, entry.key
                )),
            }
        }
    }

    /// Before a delete of an object: no manifest present names it.
    async fn check_delete(&self, location: &Path) {
        let rel = location
            .as_ref()
            .strip_prefix(self.prefix.as_ref())
            .unwrap_or(location.as_ref())
            .trim_start_matches('/')
            .to_owned();
        if rel.starts_with("manifests/") {
            return;
        }
        for manifest in manifests(&*self.inner, &self.prefix).await {
            if manifest.entries().any(|e| e.key == rel) {
                self.violation(format!(
                    "{rel} deleted while manifest {} names it",
                    manifest.seq
                ));
            }
        }
    }
}

impl std::fmt::Display for Audited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Audited({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Audited {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if location.as_ref().contains("/manifests/") {
            self.check_manifest(location, &payload).await;
        }
        let result = self.inner.put_opts(location, payload, opts).await;
        self.record("put", location, result.is_ok());
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(AuditedUpload {
            inner: upload,
            location: location.clone(),
            log: Arc::clone(&self.log),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        self.check_delete(location).await;
        let result = self.inner.delete(location).await;
        self.record("delete", location, result.is_ok());
        result
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.violation(format!("copy {from} -> {to}: the shipper never copies"));
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.violation(format!("copy {from} -> {to}: the shipper never copies"));
        self.inner.copy_if_not_exists(from, to).await
    }
}

#[derive(Debug)]
struct AuditedUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    log: Arc<Mutex<AuditLog>>,
}

#[async_trait::async_trait]
impl MultipartUpload for AuditedUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.inner.complete().await;
        let mut log = self.log.lock().unwrap();
        log.events.push(Event {
            at: Instant::now(),
            kind: "put",
            path: self.location.to_string(),
            ok: result.is_ok(),
        });
        if result.is_ok() {
            let n = log.created.entry(self.location.to_string()).or_default();
            *n += 1;
            if *n > 1 {
                let what = format!("{} created twice (multipart)", self.location);
                log.violations.push(what);
            }
        }
        result
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

/// `bytes` as a payload.
pub fn payload(bytes: &[u8]) -> PutPayload {
    PutPayload::from(Bytes::copy_from_slice(bytes))
}

// ---------------------------------------------------------------------------------------------
// A slow reader

/// An `ObjectStore` wrapper whose reads each take `delay` longer, so a restore spans several
/// shipping rounds (and their garbage collection); counts the reads that found nothing.
#[derive(Debug)]
pub struct Delayed {
    inner: Arc<dyn ObjectStore>,
    delay: Duration,
    not_found: AtomicU64,
}

impl Delayed {
    pub fn new(inner: Arc<dyn ObjectStore>, delay: Duration) -> Arc<Delayed> {
        Arc::new(Delayed {
            inner,
            delay,
            not_found: AtomicU64::new(0),
        })
    }

    /// Reads that found no object.
    pub fn not_found(&self) -> u64 {
        self.not_found.load(Ordering::SeqCst)
    }
}

impl std::fmt::Display for Delayed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Delayed({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Delayed {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        tokio::time::sleep(self.delay).await;
        let result = self.inner.get_opts(location, options).await;
        if matches!(result, Err(object_store::Error::NotFound { .. })) {
            self.not_found.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        self.inner.delete(location).await
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

// ---------------------------------------------------------------------------------------------
// A shipper running in a task

/// A shipper running rounds every `interval` in a task, recording each round, until stopped.
pub struct Shipping {
    stop: Arc<AtomicBool>,
    rounds: Arc<Mutex<Vec<Round>>>,
    task: tokio::task::JoinHandle<seglog_ship::Shipper>,
}

impl Shipping {
    pub fn start(mut shipper: seglog_ship::Shipper, interval: Duration) -> Shipping {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (stop, rounds) = (Arc::clone(&stop), Arc::clone(&rounds));
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let report = shipper.ship_once().await.expect("a shipping round");
                    rounds.lock().unwrap().push(Round {
                        started,
                        ended: Instant::now(),
                        report,
                    });
                    tokio::time::sleep(interval).await;
                }
                shipper
            })
        };
        Shipping { stop, rounds, task }
    }

    pub fn rounds(&self) -> Vec<Round> {
        self.rounds.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until a round that published manifest `seq` is recorded.
    pub async fn wait_for_manifest(&self, seq: u64, limit: Duration) -> Vec<Round> {
        let deadline = Instant::now() + limit;
        loop {
            let rounds = self.rounds();
            if rounds
                .iter()
                .any(|r| r.report.wrote_manifest && r.report.manifest == seq)
            {
                return rounds;
            }
            assert!(
                Instant::now() < deadline,
                "no round published manifest {seq} within {limit:?}"
            );
            assert!(!self.task.is_finished(), "the shipping task ended");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops after the current round; returns the shipper and every round.
    pub async fn stop(self) -> (seglog_ship::Shipper, Vec<Round>) {
        self.stop.store(true, Ordering::SeqCst);
        let shipper = bounded("stopping the shipper", Duration::from_secs(30), self.task)
            .await
            .expect("the shipping task panicked");
        let rounds = self.rounds.lock().unwrap().clone();
        (shipper, rounds)
    }
}
