//! `Log`: the key-value API a linking database sees, built from the append log and the index.
//!
//! # Semantics
//! Every `put` and `remove` appends a record whose version is its log position, so versions are
//! unique and grow in log order. The index keeps, for each key, the record with the highest
//! `(version, position)`; an install that finds a higher one already there changes nothing (a
//! slower writer never overwrites a newer one). Recovery replays the log through the same
//! rule, so reopening shows exactly the state that was visible before.
//!
//! `put` linearizes at its index install, or, if a newer *put* of the key won, just before that
//! put's install. If a newer *tombstone* won, the remove that wrote it never saw this put, so
//! the put appends its value again (a newer version) and installs that: it takes effect after
//! the remove. `remove` first reads the key: if it is absent it returns `false` without writing
//! anything (linearized at that read). Otherwise it appends a tombstone and installs it; if a
//! newer record of the key beat the tombstone, the tombstone is dead on arrival (it can never
//! become current, in memory or after recovery) and the remove starts over against the newer
//! record, so `existed` always describes the value the tombstone actually replaced.
//!
//! Every write holds its segment from publish to install, so compaction never takes a record
//! that is published but not yet in the index for dead.

use std::path::Path;

use seglog_format::RecordKind;

use crate::appendlog::{AppendLog, Appended, RecordRef};
use crate::error::Result;
use crate::index::{Index, IndexOptions, RecordSource, Resolved, Upserted};
use crate::options::{Options, SyncPolicy};
use crate::recovery::{RecoveryReport, open_dir};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::compaction::{CompactionStats, Compactor};
use crate::hints::{HintOutcome, write_hint};
use crate::sync::AtomicU64;
use crate::sync::Ordering;
use crate::sync::epoch::{self, Guard};

impl RecordSource for AppendLog {
    fn resolve<'g>(&'g self, address: u64, guard: &'g Guard) -> Resolved<'g> {
        // Cannot fail: the index holds only addresses of records validated when they were
        // written or recovered, in segments that are retired only once no index table that
        // could hold them is reachable and every thread pinned then has unpinned (see
        // `Compactor::relocate`).
        let record = self
            .read_address(address, guard)
            .unwrap_or_else(|e| panic!("the index holds an unreadable address: {e}"));
        Resolved {
            key: record.key,
            version: record.version,
            live: record.kind == RecordKind::Put,
        }
    }
}

/// A key-value log: records by key in a lock-free segmented append log.
///
/// `Log` is `Send + Sync`; share it between threads with `Arc`. Dropping it closes the log and
/// releases the directory lock.
///
/// Keys are byte strings of 0 to [`crate::MAX_KEY_BYTES`] bytes: the empty key is a key like any
/// other. A longer key is `Error::KeyTooLarge`; a value that cannot fit in one segment with its
/// key is `Error::ValueTooLarge`; neither changes anything.
///
/// ```
/// use seglog::{Log, Options};
///
/// let dir = tempfile::tempdir()?;
/// let log = Log::open_with(dir.path(), Options::default().segment_bytes(64 * 1024))?;
/// let version = log.put(b"episode-1", b"what happened")?;
/// assert_eq!(log.get(b"episode-1").as_deref(), Some(&b"what happened"[..]));
/// assert_eq!(log.get_with(b"episode-1", |value| value.len()), Some(13));
/// assert!(log.put(b"episode-1", b"revised")? > version);
/// assert!(log.remove(b"episode-1")?);
/// assert!(!log.contains_key(b"episode-1"));
///
/// log.put(b"embedding", bytemuck::cast_slice(&[0.5f32; 4]))?;
/// let pinned = log.pin();
/// let value = pinned.get(b"embedding").unwrap();
/// let floats: &[f32] = bytemuck::cast_slice(value); // zero-copy: values are 8-byte aligned
/// assert_eq!(floats, &[0.5; 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Log {
    inner: Arc<Inner>,
    maintenance: Option<Maintenance>,
}

struct Inner {
    log: AppendLog,
    index: Index,
    report: RecoveryReport,
    sync_policy: SyncPolicy,
    /// Bytes of the records the index points at (puts and tombstones).
    live_bytes: AtomicU64,
    /// The last error the background thread met (a failed sync or hint write).
    background_error: Mutex<Option<String>>,
    compactor: Compactor,
}

/// Counts describing a log.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Live keys (keys whose current record is a put).
    pub keys: u64,
    /// Bytes of all records in the log (puts, tombstones, aborted records), headers included.
    pub bytes: u64,
    /// Bytes of the records that are current for their key (puts and tombstones).
    pub live_bytes: u64,
    /// Bytes of records no longer current: what compaction could reclaim.
    pub dead_bytes: u64,
    /// `live_bytes / bytes` (1.0 for an empty log).
    pub live_ratio: f64,
    /// Segments in the log.
    pub segments: u64,
    /// Size of each segment.
    pub segment_bytes: u64,
    /// Index memory in bytes (all tables currently reachable).
    pub index_bytes: u64,
    /// Index slots.
    pub index_capacity: u64,
    /// Times the index doubled since open.
    pub index_resizes: u64,
    /// Padding written at segment ends since open.
    pub padding_bytes: u64,
    /// Records aborted by panicking writers since open.
    pub aborted: u64,
    /// What compaction has done since open.
    pub compaction: CompactionStats,
    /// The last error the background thread met (a failed interval sync or hint write).
    pub background_error: Option<String>,
}

impl Log {
    /// Opens the log in `dir` with default options, creating it if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, Options::default())
    }

    /// Opens the log in `dir` with `options`, creating it if needed. An existing log is
    /// recovered: its index is rebuilt from the log by the same rule as live operation.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        options.validate()?;
        let index = std::cell::OnceCell::new();
        let live_bytes = AtomicU64::new(0);
        let size_index = |records: u64| {
            // Room for every record found at the default load factor, so rebuilding never
            // resizes (an upper bound: overwritten keys count once per version).
            let mut index_options = index_options(&options);
            let needed = (records as f64 / index_options.load_factor).ceil() as usize + 1;
            index_options.initial_capacity = index_options.initial_capacity.max(needed);
            let _ = index.set(Index::new(index_options));
        };
        // One pin for the whole rebuild: the per-record pins below nest in it and cost a
        // counter increment each.
        let outer = epoch::pin();
        let (mut log, report) = open_dir(dir.as_ref(), &options, size_index, |log, record| {
            let guard = epoch::pin();
            let index = index.get().expect("sized before the first record");
            log.note_segment_version(record.position, record.version, &guard);
            install(index, log, record.into(), &live_bytes, &guard);
        })?;
        drop(outer);
        log.mark_indexed();
        let index = index
            .into_inner()
            .unwrap_or_else(|| Index::new(index_options(&options)));
        let first_segment = log.first_segment();
        let compactor = Compactor::new(options.compaction_policy(log.segment_bytes()));
        let inner = Arc::new(Inner {
            log,
            index,
            report,
            sync_policy: options.sync_policy,
            live_bytes,
            background_error: Mutex::new(None),
            compactor,
        });
        let maintenance = Maintenance::start(&inner, first_segment, options.sync_policy)?;
        Ok(Self {
            inner,
            maintenance: Some(maintenance),
        })
    }

    /// A log in heap memory: nothing touches the disk and nothing survives the process. For
    /// tests, caches and models; `sync` does nothing.
    pub fn in_memory(options: Options) -> Result<Self> {
        options.validate()?;
        let mut log = AppendLog::in_memory(options.segment_bytes, options.max_segments)?;
        log.mark_indexed();
        Ok(Self {
            inner: Arc::new(Inner {
                log,
                index: Index::new(index_options(&options)),
                report: RecoveryReport::default(),
                sync_policy: SyncPolicy::Never,
                live_bytes: AtomicU64::new(0),
                background_error: Mutex::new(None),
                compactor: Compactor::new(options.compaction_policy(options.segment_bytes)),
            }),
            maintenance: None,
        })
    }

    /// Stores `value` under `key` and returns the new record's version. When it returns, the
    /// value is visible to `get` on every thread (unless a concurrent `put` or `remove` of the
    /// same key replaced it meanwhile).
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<u64> {
        let append = || {
            self.inner
                .log
                .append_record(RecordKind::Put, key, value.len(), None, true, |buf| {
                    buf.copy_from_slice(value);
                })
        };
        self.put_appended(key, append()?, |_| append())
    }

    /// Stores a `value_len`-byte value under `key`, written in place by `fill` (zero-copy). If
    /// `fill` panics, nothing is stored and the panic continues.
    pub fn put_with(
        &self,
        key: &[u8],
        value_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<u64> {
        let first =
            self.inner
                .log
                .append_record(RecordKind::Put, key, value_len, None, true, fill)?;
        // A retry copies the value this call already wrote into the log. `put_appended` still
        // holds the previous record's segment here, so compaction cannot have retired it.
        let again = |previous: Appended| {
            let guard = epoch::pin();
            let value = self.inner.log.read_at(previous.position, &guard)?.value;
            self.inner
                .log
                .append_record(RecordKind::Put, key, value_len, None, true, |buf| {
                    buf.copy_from_slice(value);
                })
        };
        self.put_appended(key, first, again)
    }

    /// Installs a put, retrying past a tombstone that beat it.
    ///
    /// A put that loses to a higher *put* is simply overwritten (the higher version wins). A
    /// put that loses to a higher *tombstone* is different: that remove read the key before this
    /// put was installed, so it cannot have removed it (it may even have reported the key
    /// absent). The put then takes effect after the remove: it appends its value again, with a
    /// newer version, and installs that.
    fn put_appended(
        &self,
        key: &[u8],
        mut appended: Appended,
        mut again: impl FnMut(Appended) -> Result<Appended>,
    ) -> Result<u64> {
        let mut hold = self.inner.log.install_hold(appended.position);
        loop {
            match self.install_appended(key, RecordKind::Put, appended) {
                Outcome::Superseded { by_tombstone: true } => {
                    // Copy the value while this record's hold still keeps its segment from
                    // being compacted away, then let it go (the assignment drops the old hold).
                    appended = again(appended)?;
                    hold = self.inner.log.install_hold(appended.position);
                }
                Outcome::Installed { .. } | Outcome::Superseded { .. } => {
                    drop(hold);
                    self.after_write()?;
                    return Ok(appended.version);
                }
            }
        }
    }

    /// The follow-ups of a finished write: automatic compaction, the `EveryWrite` sync.
    fn after_write(&self) -> Result<()> {
        self.inner.maybe_compact();
        if self.inner.sync_policy == SyncPolicy::EveryWrite {
            self.sync()?;
        }
        Ok(())
    }

    /// Installs a record appended with a hold. The caller holds it in an `InstallHold` and drops
    /// that once it no longer needs the record's segment, then runs [`Log::after_write`].
    fn install_appended(&self, key: &[u8], kind: RecordKind, appended: Appended) -> Outcome {
        let guard = epoch::pin();
        let record = Published {
            key,
            position: appended.position,
            version: appended.version,
            kind,
            record_bytes: appended.record_bytes,
        };
        match install(
            &self.inner.index,
            &self.inner.log,
            record,
            &self.inner.live_bytes,
            &guard,
        ) {
            Upserted::Installed { replaced } => Outcome::Installed {
                replaced_live: replaced.is_some_and(|previous| previous.live),
            },
            Upserted::Superseded { current } => Outcome::Superseded {
                by_tombstone: self
                    .inner
                    .log
                    .read_address(current, &guard)
                    .is_ok_and(|r| r.kind == RecordKind::Tombstone),
            },
        }
    }

    /// The current value of `key`, copied out.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get_with(key, <[u8]>::to_vec)
    }

    /// Calls `f` with the current value of `key` in place (zero-copy) and returns its result.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let guard = epoch::pin();
        current(&self.inner.index, &self.inner.log, key, &guard).map(|r| f(r.value))
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get_with(key, |_| ()).is_some()
    }

    /// Removes `key` by appending a tombstone. Returns whether it had a value; removing an
    /// absent key writes nothing.
    pub fn remove(&self, key: &[u8]) -> Result<bool> {
        self.inner.log.check_sizes(key.len(), 0)?;
        loop {
            {
                let guard = epoch::pin();
                if current(&self.inner.index, &self.inner.log, key, &guard).is_none() {
                    return Ok(false);
                }
            }
            let appended =
                self.inner
                    .log
                    .append_record(RecordKind::Tombstone, key, 0, None, true, |_| {})?;
            let hold = self.inner.log.install_hold(appended.position);
            let outcome = self.install_appended(key, RecordKind::Tombstone, appended);
            drop(hold);
            match outcome {
                Outcome::Installed { replaced_live } => {
                    self.after_write()?;
                    return Ok(replaced_live);
                }
                // A newer record of this key won; our tombstone is dead. Start over against it.
                Outcome::Superseded { .. } => {}
            }
        }
    }

    /// Number of live keys. Exact when no write is in flight.
    pub fn len(&self) -> usize {
        self.inner.index.len()
    }

    /// Whether the log has no live keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates over `(key, value)` pairs, copied out. Weakly consistent: a key live for the
    /// whole iteration appears exactly once, with a value that was current at some moment
    /// during it; keys written during the iteration may or may not appear. The iterator holds
    /// an epoch pin while it lives (which delays reclaiming compacted segments).
    pub fn iter(&self) -> Iter<'_> {
        let guard = epoch::pin();
        let addresses = key_addresses(&self.inner.index, &self.inner.log, &guard);
        Iter {
            log: self,
            guard,
            addresses: addresses.into_iter(),
        }
    }

    /// Pins the current thread: values read through the returned handle are borrowed from the
    /// log, zero-copy, and stay valid while it lives.
    pub fn pin(&self) -> Pinned<'_> {
        Pinned {
            log: self,
            guard: crate::pin(),
        }
    }

    /// Flushes every published record to stable storage; when it returns, all records published
    /// before the call survive a power loss.
    pub fn sync(&self) -> Result<()> {
        self.inner.log.sync()
    }

    /// Counts describing the log.
    pub fn stats(&self) -> Stats {
        let append = self.inner.log.stats();
        let index = self.inner.index.stats();
        let live_bytes = self.inner.live_bytes();
        let bytes = append.record_bytes;
        Stats {
            keys: index.live_keys as u64,
            bytes,
            live_bytes,
            dead_bytes: bytes.saturating_sub(live_bytes),
            live_ratio: if bytes == 0 {
                1.0
            } else {
                live_bytes as f64 / bytes as f64
            },
            segments: self.inner.log.segment_count(),
            segment_bytes: self.inner.log.segment_bytes(),
            index_bytes: index.memory_bytes as u64,
            index_capacity: index.capacity as u64,
            index_resizes: index.resizes,
            padding_bytes: append.padding_bytes,
            aborted: append.aborted,
            compaction: self.inner.compactor.stats(),
            background_error: self
                .inner
                .background_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    /// What opening the log found and did (records recovered, holes and corrupt records
    /// skipped, bytes truncated).
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// Compacts now: relocates the live records of every sealed segment at or below the
    /// live-ratio threshold and retires those segments; their files are deleted once no reader
    /// can reach them (at once if nothing is pinned, otherwise by a later write, compaction or
    /// the background thread). Returns the number of segments retired by this call. Waits for
    /// a compaction already running on another thread.
    pub fn compact(&self) -> Result<u64> {
        self.inner
            .compactor
            .run_now(&self.inner.log, &self.inner.index)
    }

    /// Relocates the current record of `key` the way compaction does (a copy with the same
    /// version at the head, switched in only if the index still points at the original).
    /// Returns the copy's position if it was switched in. For the loom models and tests.
    #[doc(hidden)]
    pub fn __relocate(&self, key: &[u8]) -> Result<Option<u64>> {
        let guard = epoch::pin();
        let Some(address) = self.inner.index.get(key, &self.inner.log, &guard) else {
            return Ok(None);
        };
        let record = self.inner.log.read_address(address, &guard)?;
        let copy = crate::compaction::relocate_record(
            &self.inner.log,
            &self.inner.index,
            &record,
            &guard,
        )?;
        Ok(copy.map(|c| c.position))
    }

    /// Relocates the live records of sealed segment `id` and retires it the way a compaction
    /// pass does, without finishing the retirement (a later pass or [`Log::compact`] does, once
    /// no reader can reach the segment). Returns whether it was retired. For the loom models.
    #[doc(hidden)]
    pub fn __compact_segment(&self, id: u64) -> Result<bool> {
        self.inner
            .compactor
            .compact_one(&self.inner.log, &self.inner.index, id)
    }

    /// Loom only: index tables alive on this OS thread (loom runs a whole model on one), so a
    /// model can check that a table retired by a resize is freed once no guard holds it.
    #[cfg(seglog_loom)]
    #[doc(hidden)]
    pub fn __live_index_tables(&self) -> usize {
        crate::index::live_tables_count()
    }

    /// Writes the hint files of all sealed segments whose records are all published (the
    /// background thread does this on its own; this does it now, for tools and benchmarks).
    pub fn write_hints(&self) -> Result<()> {
        let (tail_segment, _) = self.inner.log.split(self.inner.log.tail_position());
        for id in self.inner.log.first_segment()..tail_segment {
            write_hint(&self.inner.log, id, false)?;
        }
        Ok(())
    }

    /// The append log underneath, for scans in log order and reads by position.
    pub fn append_log(&self) -> &AppendLog {
        &self.inner.log
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Some(maintenance) = self.maintenance.take() {
            maintenance.stop();
        }
    }
}

/// How far behind the tail a sealed segment must be before the background thread writes its
/// hint file.
const HINT_LAG_BYTES: u64 = 8 << 20;

/// The background thread of a file-backed log: writes hint files for sealed segments and, with
/// [`SyncPolicy::IntervalMs`], syncs on that interval. It never touches the write path.
struct Maintenance {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Maintenance {
    fn start(inner: &Arc<Inner>, first_segment: u64, policy: SyncPolicy) -> Result<Self> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (inner, thread_stop) = (Arc::clone(inner), Arc::clone(&stop));
        let period = match policy {
            SyncPolicy::IntervalMs(ms) => Duration::from_millis(ms),
            _ => Duration::from_millis(100),
        };
        let thread = std::thread::Builder::new()
            .name("seglog-maintenance".into())
            .spawn(move || {
                let mut next_hint = first_segment;
                let body = std::panic::AssertUnwindSafe(|| {
                    // std atomics: this flag is process plumbing, not part of any modeled protocol.
                    while !thread_stop.load(std::sync::atomic::Ordering::Acquire) {
                        std::thread::park_timeout(period);
                        if let SyncPolicy::IntervalMs(_) = policy
                            && let Err(e) = inner.log.sync()
                        {
                            inner.note_background_error(&e);
                        }
                        inner.maybe_compact();
                        let (tail_segment, _) = inner.log.split(inner.log.tail_position());
                        next_hint = next_hint.max(inner.log.first_segment());
                        // Hints only for segments at least HINT_LAG_BYTES behind the tail: younger
                        // ones are often still being emptied by overwrites and compacted soon.
                        let lag = (HINT_LAG_BYTES / inner.log.segment_bytes()).max(1);
                        while next_hint + lag <= tail_segment {
                            match write_hint(&inner.log, next_hint, true) {
                                Ok(HintOutcome::NotReady) => break,
                                Ok(_) => next_hint += 1,
                                Err(e) => {
                                    inner.note_background_error(&e);
                                    break;
                                }
                            }
                        }
                    }
                });
                // A panic here is a bug; say so in `stats().background_error` rather than let
                // syncs and hints stop without a word.
                if let Err(panic) = std::panic::catch_unwind(body) {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    inner.note_background_panic(&what);
                }
            })
            .map_err(|e| crate::Error::io("seglog-maintenance thread", e))?;
        Ok(Self { stop, thread })
    }

    fn stop(self) {
        // Release: pairs with the Acquire load in the thread's loop.
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

impl Inner {
    /// The current put record of the key stored at `address` (some record of that key, as
    /// `Index::for_each_key` reports), if the key is live.
    fn current_of<'g>(&'g self, address: u64, guard: &'g Guard) -> Option<RecordRef<'g>> {
        // Cannot fail: `address` came from the index under `guard` (see `RecordSource::resolve`
        // for why such an address stays readable while the guard lives).
        let key = self
            .log
            .read_address(address, guard)
            .expect("addresses stay readable while pinned")
            .key;
        current(&self.index, &self.log, key, guard)
    }

    fn live_bytes(&self) -> u64 {
        // Relaxed: statistics.
        let bytes = self.live_bytes.load(Ordering::Relaxed);
        // A replacement's subtraction can land before the install's addition: transiently
        // "negative" (wrapped), which reads as 0.
        if bytes > i64::MAX as u64 { 0 } else { bytes }
    }

    /// Runs a compaction pass if the log is over its thresholds and no other thread is
    /// compacting. Writers call it after each write; errors are left for the next pass.
    fn maybe_compact(&self) {
        if !self.compactor.due(&self.log, self.live_bytes()) {
            if let Err(e) = self.compactor.try_finish_retirements(&self.log) {
                self.note_background_error(&e);
            }
            return;
        }
        let still_due = || self.compactor.due(&self.log, self.live_bytes());
        if let Err(e) = self.compactor.try_run(&self.log, &self.index, still_due) {
            self.note_background_error(&e);
        }
    }

    fn note_background_panic(&self, what: &str) {
        *self
            .background_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(format!(
            "the maintenance thread panicked and stopped: {what}"
        ));
    }

    fn note_background_error(&self, error: &crate::Error) {
        *self
            .background_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error.to_string());
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("log", &self.inner.log)
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

/// How a write's install went.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// The record is current; the record it replaced was a put.
    Installed { replaced_live: bool },
    /// A record with a higher version was current; it is a tombstone.
    Superseded { by_tombstone: bool },
}

/// What the index and the space accounting need to know of a published record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Published<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) position: u64,
    pub(crate) version: u64,
    pub(crate) kind: RecordKind,
    pub(crate) record_bytes: u32,
}

impl<'a> From<&RecordRef<'a>> for Published<'a> {
    fn from(record: &RecordRef<'a>) -> Self {
        Self {
            key: record.key,
            position: record.position,
            version: record.version,
            kind: record.kind,
            record_bytes: record.record_bytes,
        }
    }
}

/// Installs a published record in the index, keeping the log's and the segments' live bytes
/// in step.
pub(crate) fn install(
    index: &Index,
    log: &AppendLog,
    record: Published<'_>,
    live_bytes: &AtomicU64,
    guard: &Guard,
) -> Upserted {
    let live = record.kind == RecordKind::Put;
    let result = index.upsert(
        record.key,
        log.address_of(record.position),
        record.version,
        live,
        log,
        guard,
    );
    if let Upserted::Installed { replaced } = result {
        let bytes = u64::from(record.record_bytes);
        // Relaxed: statistics.
        live_bytes.fetch_add(bytes, Ordering::Relaxed);
        log.add_segment_live_bytes(record.position, bytes as i64, guard);
        if let Some(previous) = replaced {
            // Cannot fail: the index held this address under `guard` (see
            // `RecordSource::resolve`).
            let old = log
                .read_address(previous.address, guard)
                .expect("a replaced record is still readable under the guard");
            let old_bytes = u64::from(old.record_bytes);
            live_bytes.fetch_sub(old_bytes, Ordering::Relaxed);
            log.add_segment_live_bytes(old.position, -(old_bytes as i64), guard);
        }
    }
    result
}

/// The current put record of `key`, if any.
fn current<'g>(
    index: &Index,
    log: &'g AppendLog,
    key: &[u8],
    guard: &'g Guard,
) -> Option<RecordRef<'g>> {
    let address = index.get(key, log, guard)?;
    // Cannot fail: see `RecordSource::resolve`.
    let record = log
        .read_address(address, guard)
        .expect("the index holds only readable addresses");
    (record.kind == RecordKind::Put).then_some(record)
}

fn key_addresses(index: &Index, log: &AppendLog, guard: &Guard) -> Vec<u64> {
    let mut addresses = Vec::with_capacity(index.len());
    index.for_each_key(log, guard, |address| addresses.push(address));
    addresses
}

/// Iterator over owned `(key, value)` pairs; see [`Log::iter`].
pub struct Iter<'a> {
    log: &'a Log,
    guard: Guard,
    addresses: std::vec::IntoIter<u64>,
}

impl Iterator for Iter<'_> {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        for address in self.addresses.by_ref() {
            if let Some(record) = self.log.inner.current_of(address, &self.guard) {
                return Some((record.key.to_vec(), record.value.to_vec()));
            }
        }
        None
    }
}

/// A pinned view of a [`Log`]: reads borrow values from the log without copying, valid while
/// the `Pinned` lives. Not `Send`: it pins the thread that created it.
pub struct Pinned<'a> {
    log: &'a Log,
    guard: crate::Guard,
}

impl Pinned<'_> {
    /// The current value of `key`, borrowed from the log.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        current(
            &self.log.inner.index,
            &self.log.inner.log,
            key,
            self.guard.epoch(),
        )
        .map(|r| r.value)
    }

    /// The current record of `key` (a put), with its version and position, borrowed from the
    /// log.
    pub fn get_record(&self, key: &[u8]) -> Option<RecordRef<'_>> {
        current(
            &self.log.inner.index,
            &self.log.inner.log,
            key,
            self.guard.epoch(),
        )
    }

    /// Iterates over `(key, value)` pairs borrowed from the log, with [`Log::iter`]'s
    /// consistency.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let guard = self.guard.epoch();
        let addresses = key_addresses(&self.log.inner.index, &self.log.inner.log, guard);
        addresses.into_iter().filter_map(move |address| {
            self.log
                .inner
                .current_of(address, guard)
                .map(|r| (r.key, r.value))
        })
    }

    /// The epoch guard, for reads through [`Log::append_log`].
    pub fn guard(&self) -> &crate::Guard {
        &self.guard
    }
}

fn index_options(options: &Options) -> IndexOptions {
    IndexOptions {
        initial_capacity: options.index_capacity,
        load_factor: options.index_load_factor,
        seed: options.index_seed.unwrap_or_else(random_seed),
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now())
}
