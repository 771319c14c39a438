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
//! the remove. The same if a conditional write may have run between its append and its install
//! (`kv/conditional_race.rs`): that write compared the key's version without this put. `remove` first reads the key: if it is absent it returns `false` without writing
//! anything (linearized at that read). Otherwise it appends a tombstone and installs it; if a
//! newer record of the key beat the tombstone, the tombstone is dead on arrival (it can never
//! become current, in memory or after recovery) and the remove starts over against the newer
//! record, so `existed` always describes the value the tombstone actually replaced.
//!
//! Every write holds its segment from publish to install, so compaction never takes a record
//! that is published but not yet in the index for dead.
mod batch;
mod conditional;
mod conditional_race;
mod install;
mod maintenance;
mod stats;
mod view;
mod write;

use std::path::Path;

use crate::address::Address;
use crate::error::Result;
use crate::index::{Index, IndexOptions};
use crate::log::{AppendLog, RecordRef};
use crate::options::{Options, SyncPolicy};
use crate::recovery::{RecoveryReport, open_dir};

use crate::compaction::{Compactor, repair_order};
use crate::hints::write_hint;
use crate::sync::epoch::{self, Guard};
use crate::sync::{Arc, Mutex};

pub use self::batch::Batch;
pub(crate) use self::install::Published;
use self::install::{LiveBytes, current};
use self::maintenance::Maintenance;
pub use self::stats::Stats;
use self::view::key_addresses;
pub use self::view::{Iter, Pinned};

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
    live_bytes: LiveBytes,
    /// The last error the background thread met (a failed sync or hint write).
    background_error: Mutex<Option<String>>,
    /// The first one, for [`Log::close`].
    first_background_error: std::sync::OnceLock<String>,
    compactor: Compactor,
    /// Conditional installs started and finished (`kv/conditional_race.rs`).
    conditional_race: conditional_race::ConditionalRace,
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
        options.check_existing_segment_bytes(dir.as_ref())?;
        // Every recovered put and tombstone is collected (hash, address, version, length), and
        // the index is built from them at once (`Index::from_bulk`) instead of one upsert per
        // record: each key's winner by the same highest-(version, address) rule, in one table
        // sized for the keys found, so rebuilding never resizes.
        let index_options = index_options(&options);
        let new_batch = || Index::bulk_load(&index_options);
        let (mut log, report, loads) = open_dir(
            dir.as_ref(),
            &options,
            &new_batch,
            &|load, log, record, _guard| {
                load.push(
                    record.key,
                    log.address_of(record.position),
                    record.version,
                    record.kind == seglog_format::RecordKind::Put,
                    record.record_bytes,
                );
            },
        )?;
        // Live bytes as installs count them: each key's winner (put or tombstone) while the
        // index holds it, and nothing of the records it beat. Summed per segment (by ring
        // slot, counted from the first segment's) on each building thread first, so each
        // segment's striped count is touched once per thread.
        let (ring_first, ring_mask) = (
            log.directory().ring_slot(log.first_segment()),
            log.directory().slots() - 1,
        );
        let mut misordered = Vec::new();
        let (index, tallies) = Index::from_bulk(
            index_options,
            loads,
            &log,
            Index::KEEP_TOMBSTONE_WINNERS,
            &LiveTally::default,
            &|tally: &mut LiveTally, winner| {
                let bytes = i64::from(winner.bytes);
                tally.records += bytes;
                if winner.live {
                    tally.puts += bytes;
                }
                let (slot, _) = log.split(winner.address.get());
                let at = (slot.wrapping_sub(ring_first) & ring_mask) as usize;
                if at >= tally.per_segment.len() {
                    tally.per_segment.resize(at + 1, (None, 0));
                }
                let sum = &mut tally.per_segment[at];
                sum.0.get_or_insert(winner.address);
                sum.1 += bytes;
            },
            |tombstone, put_at| misordered.push((tombstone, put_at)),
        );
        let live_bytes = LiveBytes::default();
        let guard = epoch::pin();
        for tally in &tallies {
            live_bytes.records.add(tally.records);
            live_bytes.puts.add(tally.puts);
            for &(address, bytes) in &tally.per_segment {
                if let Some(address) = address {
                    log.add_live_bytes_at(address, bytes, false, &guard);
                }
            }
        }
        drop(guard);
        log.mark_indexed();
        let first_segment = log.first_segment();
        let compactor = Compactor::new(options.compaction_policy(log.segment_bytes()));
        let inner = Arc::new(Inner {
            log,
            index,
            report,
            sync_policy: options.sync_policy,
            live_bytes,
            background_error: Mutex::new(None),
            first_background_error: std::sync::OnceLock::new(),
            conditional_race: Default::default(),
            compactor,
        });
        {
            // A crash between a relocation's copy and its tombstone repair leaves an older put
            // after the key's tombstone: repair it as the live log would have
            // (`compaction/relocate.rs`), before any tombstone may be forgotten or dropped.
            let guard = epoch::pin();
            // A read-only open repairs nothing: it never drops a tombstone either.
            let misordered = if options.read_only {
                Vec::new()
            } else {
                misordered
            };
            for (tombstone, put_at) in misordered {
                let key = inner.log.read_address(tombstone, &guard)?.key;
                repair_order(&inner.log, &inner.index, key, put_at, &guard)?;
            }
            // Every record is installed and nothing else runs yet: every segment below the
            // tail is settled (`log/settled.rs`).
            inner.log.set_settled_below(inner.log.tail_segment_id());
        }
        // A read-only log has no background work: no hints, no syncs, no compaction.
        let maintenance = if options.read_only {
            None
        } else {
            Some(Maintenance::start(
                &inner,
                first_segment,
                options.sync_policy,
            )?)
        };
        Ok(Self { inner, maintenance })
    }

    /// `Err(Error::ReadOnly)` if the log was opened read-only: the first check of every call
    /// that would write, so it refuses before looking at anything else.
    pub(crate) fn refuse_if_read_only(&self) -> Result<()> {
        if self.inner.log.is_read_only() {
            return Err(crate::Error::ReadOnly);
        }
        Ok(())
    }

    /// A new, empty log on a simulated disk ([`crate::sim::SimDisk`]), for power-loss tests:
    /// everything runs as on a real directory (sync policies, hints, compaction, file
    /// recycling), but files live in the disk's model of page cache and platters, from which a
    /// test takes crash images to recover with [`Log::open`].
    pub fn open_sim(disk: &std::sync::Arc<crate::sim::SimDisk>, options: Options) -> Result<Self> {
        options.validate()?;
        let mut log = AppendLog::on_sim(disk, &options)?;
        log.mark_indexed();
        let first_segment = log.first_segment();
        let inner = Arc::new(Inner {
            log,
            index: Index::new(index_options(&options)),
            report: RecoveryReport::default(),
            sync_policy: options.sync_policy,
            live_bytes: LiveBytes::default(),
            background_error: Mutex::new(None),
            first_background_error: std::sync::OnceLock::new(),
            conditional_race: Default::default(),
            compactor: Compactor::new(options.compaction_policy(options.segment_bytes)),
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
                live_bytes: LiveBytes::default(),
                background_error: Mutex::new(None),
                first_background_error: std::sync::OnceLock::new(),
                conditional_race: Default::default(),
                compactor: Compactor::new(options.compaction_policy(options.segment_bytes)),
            }),
            maintenance: None,
        })
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

    /// Closes the log and says whether everything went well: syncs (whatever the sync policy),
    /// stops and joins the background thread, writes the hint of every sealed segment that has
    /// none (so the next open reads hints instead of scanning), and returns the first error of
    /// those steps, or else the first error the background thread met while the log was open
    /// ([`crate::Error::Background`]). Dropping a `Log` only stops the background thread, and
    /// reports nothing.
    pub fn close(mut self) -> Result<()> {
        if self.inner.log.is_read_only() {
            // Nothing to sync or hint, and nothing may be written.
            return Ok(());
        }
        let synced = self.sync();
        if let Some(maintenance) = self.maintenance.take() {
            maintenance.stop();
        }
        synced?;
        // A hint for every sealed segment that lacks one (the background thread leaves the
        // segments near the tail, and sparse ones, to compaction), so the next open reads hints
        // instead of scanning. Each is written after its segment is flushed (`write_hint`).
        self.write_hints()?;
        match self.inner.first_background_error.get() {
            Some(reason) => Err(crate::Error::Background {
                reason: reason.clone(),
            }),
            None => Ok(()),
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
        self.refuse_if_read_only()?;
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
        // Never the oldest segment's forgotten tombstone: the index points at this record.
        let relocated = crate::compaction::relocate_record(
            &self.inner.log,
            &self.inner.index,
            &record,
            false,
            &guard,
        )?;
        Ok(match relocated {
            crate::compaction::Relocated::Moved(copy) => Some(copy.position),
            _ => None,
        })
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

    /// What an open of this log's records would recover, in memory: every published put and
    /// tombstone of the segments the log still holds (retiring ones included: their files are
    /// still there), replayed by recovery's rule (highest version, then highest position),
    /// keeping the keys whose winner is a put. For the loom models, which cannot reopen an
    /// in-memory log, to check that nothing removed could come back.
    #[doc(hidden)]
    pub fn __recovered_state(&self) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
        let guard = crate::pin();
        let mut winners = std::collections::BTreeMap::<Vec<u8>, (u64, u64, Option<Vec<u8>>)>::new();
        for record in self.inner.log.scan(&guard) {
            let value =
                (record.kind == seglog_format::RecordKind::Put).then(|| record.value.to_vec());
            let entry = (record.version, record.position, value);
            match winners.get_mut(record.key) {
                Some(winner) if (winner.0, winner.1) >= (entry.0, entry.1) => {}
                Some(winner) => *winner = entry,
                None => {
                    winners.insert(record.key.to_vec(), entry);
                }
            }
        }
        winners
            .into_iter()
            .filter_map(|(key, (_, _, value))| value.map(|value| (key, value)))
            .collect()
    }

    /// Appends a copy of the record at `position` with its version, as a relocation does, and
    /// switches nothing: what a relocation that lost its race to a remove, and crashed before
    /// its repair, leaves in the log. Returns the copy's position. For tests of recovery.
    #[doc(hidden)]
    pub fn __append_copy_of(&self, position: u64) -> Result<u64> {
        let guard = epoch::pin();
        let record = self.inner.log.read_at(position, &guard)?;
        let copy = crate::compaction::append_copy(&self.inner.log, &record, false)?;
        Ok(copy.position)
    }

    /// Finishes the index resize in flight, if any, as compaction does before it retires a
    /// segment: afterwards one table is reachable. For tests that measure the index's steady
    /// memory.
    #[doc(hidden)]
    pub fn __settle_index(&self) {
        let guard = epoch::pin();
        self.inner.index.settle(&self.inner.log, &guard);
    }

    /// Migrates the index into a larger table now, as a resize does (forgetting the
    /// tombstones the log allows). For the loom models, whose tables are too small to be
    /// rebuilt by compaction.
    #[doc(hidden)]
    pub fn __resize_index(&self) {
        let guard = epoch::pin();
        self.inner.index.resize_now(&self.inner.log, &guard);
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

impl Inner {
    /// The current put record of the key stored at `address` (some record of that key, as
    /// `Index::for_each_key` reports), if the key is live.
    fn current_of<'g>(&'g self, address: Address, guard: &'g Guard) -> Option<RecordRef<'g>> {
        // Cannot fail: `address` came from the index under `guard` (see `RecordSource::resolve`
        // for why such an address stays readable while the guard lives).
        let key = self
            .log
            .read_address(address, guard)
            .expect("addresses stay readable while pinned")
            .key;
        current(&self.index, &self.log, key, guard)
    }

    /// The bytes compaction cannot reclaim now: every key's current record, puts and the
    /// tombstones the index still holds. Tombstones the index forgot are out
    /// (`log/settled.rs`), though their segments still count them until compaction drops them.
    fn retained_bytes(&self) -> u64 {
        // A replacement's subtraction can land before the install's addition: transiently
        // "negative", which reads as 0.
        self.live_bytes
            .records
            .get()
            .saturating_sub(self.log.forgotten_bytes())
    }

    /// Bytes of the live keys' current records (puts only), as `Stats::live_bytes` reports.
    fn live_bytes(&self) -> u64 {
        self.live_bytes.puts.get()
    }

    /// Runs a compaction pass if the log is over its thresholds and no other thread is
    /// compacting. Writers call it after each write; errors are left for the next pass.
    fn maybe_compact(&self) {
        if !self.compactor.due(&self.log, self.retained_bytes()) {
            if let Err(e) = self.compactor.try_finish_retirements(&self.log) {
                self.note_background_error(&e);
            }
            return;
        }
        let still_due = || self.compactor.due(&self.log, self.retained_bytes());
        if let Err(e) = self.compactor.try_run(&self.log, &self.index, still_due) {
            self.note_background_error(&e);
        }
    }

    /// Makes room for a writer that found the log full: finishes the retirements whose readers
    /// are gone, runs a whole compaction pass (if no other thread is compacting), and finishes
    /// what that pass retired. Errors are left for `stats().background_error`.
    fn make_room(&self) {
        if let Err(e) = self.compactor.try_finish_retirements(&self.log) {
            self.note_background_error(&e);
        }
        if let Err(e) = self.compactor.try_run(&self.log, &self.index, || true) {
            self.note_background_error(&e);
        }
        // A retired segment leaves once every thread pinned at its retirement has unpinned,
        // which the epoch learns only as threads pin and flush: give it a bounded while (this
        // is the full-log slow path), then let the writer retry and, if still full, fail.
        for _ in 0..MAKE_ROOM_ROUNDS {
            if !self.compactor.has_retiring() {
                break;
            }
            std::thread::yield_now();
            if let Err(e) = self.compactor.try_finish_retirements(&self.log) {
                self.note_background_error(&e);
                break;
            }
        }
    }

    fn note_background_panic(&self, what: &str) {
        self.note_background(format!(
            "the maintenance thread panicked and stopped: {what}"
        ));
    }

    fn note_background_error(&self, error: &crate::Error) {
        self.note_background(error.to_string());
    }

    fn note_background(&self, what: String) {
        let _ = self.first_background_error.set(what.clone());
        *self.background_error.lock() = Some(what);
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

/// How many times a writer that found the log full lets the epoch advance while retired
/// segments wait for their readers (each round yields and flushes the collector).
const MAKE_ROOM_ROUNDS: usize = 1000;

/// What one thread building the index at open counted of the winners it placed: the bytes of
/// every record the index holds and of the puts among them, and per segment (by ring slot,
/// from the first segment's) an address in it and its records' bytes.
#[derive(Default)]
struct LiveTally {
    records: i64,
    puts: i64,
    per_segment: Vec<(Option<Address>, i64)>,
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
