//! Online compaction: reclaim segments whose records are mostly dead, while readers and writers
//! run, without a lock on their paths.
//!
//! # Protocol
//! 1. **Pick** sealed segments (below the tail's segment, every record published) whose live
//!    ratio (bytes the index points at / record space) is at or below the threshold, lowest
//!    first, and every segment more than half of `max_segments` behind the tail whatever its
//!    ratio: segment ids are reused through the directory's ring, and a segment nobody
//!    overwrites must move before the tail comes round to its slot (see `crate::directory`).
//! 2. **Relocate** each record the index still points at: append a copy at the head of the log
//!    with the record's *original version*, then switch the index entry from the old address to
//!    the copy only if it still holds exactly the old address (`Index::replace_exact`). A put or
//!    remove that lands first wins; the copy is then simply dead. Because versions, not
//!    positions, decide which record of a key is current, a copy never beats a newer record,
//!    in memory or after a crash, and a crash anywhere leaves the original or the copy (same
//!    version, same bytes) or both.
//! 3. **Settle the index**: if a resize is in flight, finish it, so the old root table is
//!    unlinked. A relocation that met the key's slot already frozen in the old root wrote the
//!    copy's address into the successor only; the old root's frozen slot still holds the
//!    original's address, and every probe whose tag matches would resolve it after the segment
//!    is gone. Once the old root is unlinked, only threads pinned before can reach it.
//! 4. **Retire** the segment through the epoch: a deferred function marks it safe once every
//!    thread pinned at that point has unpinned (any reader that could have loaded an old
//!    address, from the newest table or an unlinked one, any `Pinned` borrowing its bytes, any
//!    scan inside it). Then the copies are synced, the segment leaves the directory, its file
//!    and hint are deleted, and its mapping is dropped when the epoch collector frees it.
//!
//! Tombstones are relocated like puts while the index holds them. A pass first moves the
//! settled frontier (`log/settled.rs`) and lets the index rebuild without the tombstones it may
//! forget (`Index::forget_tombstones`); a tombstone the index forgot is then dropped if it is in
//! the oldest segment, and kept (copied, with no index entry) otherwise; `relocate.rs` says why
//! that is safe (the tombstone order, TO). The oldest segment's tombstones count as dead when
//! choosing victims, so a pass that finds them worth it sweeps the log from its oldest end.
//!
//! Follows the log-cleaning of LFS and the copy-then-CAS relocation of FASTER's compaction.

use std::cell::Cell;

use seglog_format::RecordKind;

use crate::error::Result;
use crate::index::Index;
use crate::log::{AppendLog, PassFlag, read_record};
use crate::options::CompactionPolicy;
use crate::segment::FIRST_RECORD_OFFSET;
mod relocate;

pub(crate) use self::relocate::{Relocated, append_copy, relocate_record, repair_order};

use crate::sync::epoch;
use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, Ordering};

/// Writes a thread makes between two looks at whether compaction is due (see
/// [`Compactor::writer_should_check`]).
const WRITES_BETWEEN_CHECKS: u32 = 16;

/// What compaction has done since the log was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionStats {
    /// Compaction passes that reclaimed at least one segment.
    pub runs: u64,
    /// Segments reclaimed (files deleted).
    pub segments_reclaimed: u64,
    /// Records copied to the head of the log.
    pub records_relocated: u64,
    /// Bytes of those copies.
    pub bytes_relocated: u64,
    /// Bytes of segment files deleted.
    pub bytes_reclaimed: u64,
    /// Tombstones left out of the log for good (forgotten by the index, in the oldest segment).
    pub tombstones_dropped: u64,
}

struct Retiring {
    id: u64,
    /// Set by a deferred function once every thread pinned at retirement has unpinned.
    safe: Arc<AtomicBool>,
    /// Tombstones were dropped from it because every older segment was gone or retiring: its
    /// removal must follow theirs, durably (see `finish_retirements`).
    after_older: bool,
}

/// Segments a pass sweeps from the oldest end at most, when forgotten tombstones wait.
const SWEEP_SEGMENTS: u64 = 4;

/// Compaction state of one log.
pub(crate) struct Compactor {
    policy: CompactionPolicy,
    retiring: Mutex<Vec<Retiring>>,
    /// Length of `retiring`, readable without the mutex.
    retiring_count: AtomicU64,
    runs: AtomicU64,
    segments_reclaimed: AtomicU64,
    records_relocated: AtomicU64,
    bytes_relocated: AtomicU64,
    bytes_reclaimed: AtomicU64,
    tombstones_dropped: AtomicU64,
}

impl Compactor {
    pub(crate) fn new(policy: CompactionPolicy) -> Self {
        Self {
            policy,
            retiring: Mutex::new(Vec::new()),
            retiring_count: AtomicU64::new(0),
            runs: AtomicU64::new(0),
            segments_reclaimed: AtomicU64::new(0),
            records_relocated: AtomicU64::new(0),
            bytes_relocated: AtomicU64::new(0),
            bytes_reclaimed: AtomicU64::new(0),
            tombstones_dropped: AtomicU64::new(0),
        }
    }

    /// Whether writers and the background thread compact on their own.
    pub(crate) fn is_auto(&self) -> bool {
        self.policy.auto
    }

    pub(crate) fn stats(&self) -> CompactionStats {
        // Relaxed: statistics.
        CompactionStats {
            runs: self.runs.load(Ordering::Relaxed),
            segments_reclaimed: self.segments_reclaimed.load(Ordering::Relaxed),
            records_relocated: self.records_relocated.load(Ordering::Relaxed),
            bytes_relocated: self.bytes_relocated.load(Ordering::Relaxed),
            bytes_reclaimed: self.bytes_reclaimed.load(Ordering::Relaxed),
            tombstones_dropped: self.tombstones_dropped.load(Ordering::Relaxed),
        }
    }

    /// Whether a writer that just finished a write should look at [`Compactor::due`]: on
    /// every [`WRITES_BETWEEN_CHECKS`]-th write of its thread, and on the first write after
    /// the log rolled over (the disk grows only then, which is what usually makes a pass due).
    /// `due` sums striped counters; doing that after every write would cost more than the
    /// write. Dead bytes grow by at most one record per write, so a check skipped is at most a
    /// few records late.
    pub(crate) fn writer_should_check(&self, log: &AppendLog) -> bool {
        if !self.policy.auto {
            return false;
        }
        if cfg!(seglog_loom) {
            // Loom runs every modeled thread on one OS thread; keep the models' schedules
            // exactly those of a check after every write.
            return true;
        }
        thread_local! {
            // (the log last written, its roll-overs then, writes left before the next check)
            static LAST_CHECK: Cell<(usize, u64, u32)> = const { Cell::new((0, 0, 0)) };
        }
        let log_id = std::ptr::from_ref(log) as usize;
        let rollovers = log.rollovers();
        LAST_CHECK.with(|last| {
            let (seen_log, seen_rollovers, left) = last.get();
            let check = seen_log != log_id || seen_rollovers != rollovers || left == 0;
            let left = if check {
                WRITES_BETWEEN_CHECKS
            } else {
                left - 1
            };
            last.set((log_id, rollovers, left));
            check
        })
    }

    /// Whether automatic compaction should run: at least the minimum of dead bytes, and the
    /// segment files, with two segments of headroom, take more than twice the live bytes.
    ///
    /// The headroom is for what compaction cannot shrink: the tail segment being filled and the
    /// one provisioned ahead of it hold no dead bytes. Triggering only once the files exceed
    /// twice the live bytes would let those two, plus whatever is written before the pass
    /// retires its first victim, sit above that mark; starting two segments early keeps the
    /// files at about twice the live bytes, not two segments over it.
    pub(crate) fn due(&self, log: &AppendLog, live_bytes: u64) -> bool {
        if !self.policy.auto {
            return false;
        }
        if Self::too_old(log, log.tail_segment_id(), log.first_segment()) {
            return true;
        }
        let dead = log.stats().record_bytes.saturating_sub(live_bytes);
        // Segments already retired leave the disk once their readers unpin: count them gone,
        // so a pass stops when it has done enough instead of retiring every candidate.
        // Relaxed: an estimate.
        let leaving = self.retiring_count.load(Ordering::Relaxed) * log.segment_bytes();
        let disk = log.disk_bytes().saturating_sub(leaving);
        let headroom = 2 * log.segment_bytes();
        dead >= self.policy.min_dead_bytes && disk + headroom > live_bytes.saturating_mul(2)
    }

    /// Runs one compaction pass unless another is running (then returns `Ok(None)` at once).
    /// `until_done` stops the pass as soon as it returns false.
    pub(crate) fn try_run(
        &self,
        log: &AppendLog,
        index: &Index,
        until_done: impl Fn() -> bool,
    ) -> Result<Option<u64>> {
        // Acquire/Release on the flag: the pass of one thread happens-before the next pass.
        let Some(_running) = PassFlag::claim(log.compaction_flag()) else {
            return Ok(None);
        };
        self.run(log, index, until_done).map(Some)
    }

    /// Relocates and retires segment `id` alone, as one step of a pass (the retirement finishes
    /// in a later pass); `Ok(false)` if another compaction is running or the segment is not
    /// ready. For `Log::__compact_segment` (the loom models).
    pub(crate) fn compact_one(&self, log: &AppendLog, index: &Index, id: u64) -> Result<bool> {
        let Some(_running) = PassFlag::claim(log.compaction_flag()) else {
            return Ok(false);
        };
        self.relocate(log, index, id)
    }

    /// Runs a full pass, waiting for a concurrent one to finish first.
    pub(crate) fn run_now(&self, log: &AppendLog, index: &Index) -> Result<u64> {
        loop {
            if let Some(reclaimed) = self.try_run(log, index, || true)? {
                return Ok(reclaimed);
            }
            std::thread::yield_now();
        }
    }

    /// One pass; returns the number of segments it retired (their live records moved; their
    /// files go once no reader can reach them).
    fn run(&self, log: &AppendLog, index: &Index, keep_going: impl Fn() -> bool) -> Result<u64> {
        self.finish_retirements(log)?;
        {
            // With the pass flag held (see `log/settled.rs`): move the settled frontier, then
            // let the index forget the tombstones below it, so this pass can drop them.
            let guard = epoch::pin();
            let frontier = log.advance_settled(&guard);
            let repairs = log.take_settled_repairs(frontier);
            if !repairs.is_empty() {
                for repair in &repairs {
                    repair_order(log, index, &repair.key, repair.put_position, &guard)?;
                }
                // The repairs no longer hold the frontier back.
                log.advance_settled(&guard);
            }
            index.forget_tombstones(log, &guard);
        }
        let mut retired = 0;
        for id in self.victims(log) {
            if !keep_going() {
                break;
            }
            if self.relocate(log, index, id)? {
                retired += 1;
            }
        }
        if retired > 0 {
            // Relaxed: statistics.
            self.runs.fetch_add(1, Ordering::Relaxed);
            // Let the deferred functions run: each flush hands this thread's garbage to the
            // collector and lets the global epoch advance once if no thread lags behind.
            for _ in 0..3 {
                epoch::pin().flush();
            }
            self.finish_retirements(log)?;
        }
        Ok(retired)
    }

    /// Whether segment `id` is so far behind the tail that it must move whatever its live
    /// ratio: more than half of `max_segments` ids back.
    /// `tail_segment` is [`AppendLog::tail_segment_id`], read once by the caller.
    fn too_old(log: &AppendLog, tail_segment: u64, id: u64) -> bool {
        let age_limit = (log.max_segments() / 2).max(1);
        id + age_limit <= tail_segment
    }

    /// Sealed segments at or below the live-ratio threshold, emptiest first, and those too old
    /// to stay (see [`Compactor::too_old`]).
    fn victims(&self, log: &AppendLog) -> Vec<u64> {
        let guard = epoch::pin();
        // Below the segment the tail names, not below `tail_position`'s: see
        // `AppendLog::tail_segment_id`.
        let tail_segment = log.tail_segment_id();
        let retiring: Vec<u64> = self.retiring.lock().iter().map(|r| r.id).collect();
        let room = (log.segment_bytes() - FIRST_RECORD_OFFSET as u64) as f64;
        let first = log.first_segment();
        let mut waiting_tombstones = 0;
        let mut victims: Vec<(f64, u64)> = (first..tail_segment)
            .filter(|id| !retiring.contains(id))
            .filter_map(|id| {
                let segment = log.directory().get(id, &guard)?;
                let mut live = segment.live_bytes();
                if id == first {
                    // The oldest segment's forgotten tombstones are dropped (`relocate.rs`).
                    live = live.saturating_sub(segment.forgotten_bytes());
                } else {
                    waiting_tombstones += segment.forgotten_bytes();
                }
                let ratio = live as f64 / room;
                (ratio <= self.policy.live_ratio || Self::too_old(log, tail_segment, id))
                    .then_some((ratio, id))
            })
            .collect();
        // Forgotten tombstones in younger segments wait for every older segment to go: once
        // half a segment of them waits, the oldest segments go whatever their ratio (their live
        // records move to the head), up to SWEEP_SEGMENTS in a row, in id order, so each is the
        // oldest when its turn comes (`relocate`) and its tombstones are dropped.
        if waiting_tombstones as f64 >= room / 2.0 {
            victims.retain(|&(_, id)| id >= first + SWEEP_SEGMENTS);
            for id in first..(first + SWEEP_SEGMENTS).min(tail_segment) {
                if !retiring.contains(&id) && log.directory().get(id, &guard).is_some() {
                    victims.push((f64::NEG_INFINITY, id));
                }
            }
        }
        victims.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        victims.into_iter().map(|(_, id)| id).collect()
    }

    /// Relocates the live records of segment `id` and retires it. Returns `false` (doing
    /// nothing) if some record in it is not published yet or is damaged.
    fn relocate(&self, log: &AppendLog, index: &Index, id: u64) -> Result<bool> {
        let guard = epoch::pin();
        let Some(segment) = log.directory().get(id, &guard) else {
            return Ok(false);
        };
        // Every record must be published: an in-flight writer still owns part of it.
        let mut records = Vec::new();
        let mut offset = FIRST_RECORD_OFFSET;
        let mut record_bytes_total = 0u64;
        let mut holds_batch = false;
        while offset < segment.len() {
            let position = log.position(id, offset as u64);
            match read_record(segment, offset, position) {
                Ok(Some(record)) => {
                    if record.kind != RecordKind::Padding {
                        record_bytes_total += u64::from(record.record_bytes);
                    }
                    holds_batch |= record.kind == RecordKind::Batch;
                    if matches!(record.kind, RecordKind::Put | RecordKind::Tombstone) {
                        records.push(record);
                    }
                    offset += record.record_bytes as usize;
                }
                Ok(None) | Err(_) => return Ok(false),
            }
        }
        // Every record is published; a writer may still be installing one (it would look dead
        // now and point the index into this segment after it is retired). Come back later.
        if segment.installs_pending() {
            return Ok(false);
        }
        // Every segment below this one is gone or retiring (and `finish_retirements` removes
        // this one only after them, durably): its forgotten tombstones may go.
        let oldest = {
            let retiring = self.retiring.lock();
            (log.first_segment()..id).all(|older| {
                retiring.iter().any(|r| r.id == older)
                    || log.directory().get(older, &guard).is_none()
            })
        };
        let mut dropped = false;
        // Segment-level reclaim: a segment with no live bytes (no current record, no tombstone
        // kept for the index's sake or forgotten and waiting to be dropped) is retired as it is,
        // without a lookup per record. Exact here: every install into this segment added its
        // bytes before releasing its hold, which `installs_pending` just saw released, and a
        // subtraction is only ever made for a record that is dead.
        if segment.live_bytes() == 0 {
            records.clear();
        }
        if holds_batch && !records.is_empty() && log.synced_position() < log.position(id + 1, 0) {
            // A batch's members are copied one by one, as plain records: were some copies
            // durable and the batch not, a power loss would keep part of it. So the segment is
            // made durable before any of them is copied (a rare flush: a sealed segment is
            // usually synced long before compaction reaches it).
            log.sync()?;
        }
        for record in records {
            match relocate_record(log, index, &record, oldest, &guard)? {
                Relocated::Moved(copy) => {
                    // Relaxed: statistics.
                    self.records_relocated.fetch_add(1, Ordering::Relaxed);
                    self.bytes_relocated
                        .fetch_add(u64::from(copy.record_bytes), Ordering::Relaxed);
                }
                Relocated::Dropped => {
                    dropped = true;
                    // Relaxed: a statistic.
                    self.tombstones_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Relocated::Dead => {}
            }
        }
        // Step 3: no reachable index table may hold an address into this segment once the
        // deferred function below is registered.
        if !broken_retire_during_resize() {
            index.settle(log, &guard);
        }
        log.note_reclaimed_record_bytes(record_bytes_total);
        let safe = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&safe);
        // Runs once every thread pinned now (any reader that could still reach this segment
        // through an old address, a borrowed value or a scan) has unpinned.
        // Release: pairs with the Acquire load in `finish_retirements`.
        guard.defer(move || flag.store(true, Ordering::Release));
        self.retiring.lock().push(Retiring {
            id,
            safe,
            after_older: dropped,
        });
        // Relaxed: a hint for `has_retiring`.
        self.retiring_count.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Removes retired segments no reader can reach any more: syncs the copies first, so a
    /// power loss cannot take both the copies (unsynced) and the originals (deleted).
    ///
    /// A segment whose forgotten tombstones were dropped (`after_older`) goes only after every
    /// older retiring segment, with the directory fsynced between: a power cut must not keep an
    /// older segment (with older puts of those keys) while losing this one.
    pub(crate) fn finish_retirements(&self, log: &AppendLog) -> Result<u64> {
        let ready: Vec<Retiring> = {
            let mut retiring = self.retiring.lock();
            // The oldest segment still waiting for its readers: a segment whose tombstones were
            // dropped waits behind it. Acquire: pairs with the Release store in the deferred
            // function.
            let oldest_unsafe = retiring
                .iter()
                .filter(|r| !r.safe.load(Ordering::Acquire))
                .map(|r| r.id)
                .min();
            let (mut ready, waiting): (Vec<_>, Vec<_>) = retiring.drain(..).partition(|r| {
                r.safe.load(Ordering::Acquire)
                    && (!r.after_older || oldest_unsafe.is_none_or(|oldest| oldest > r.id))
            });
            *retiring = waiting;
            // Relaxed: a hint for `has_retiring`.
            self.retiring_count
                .store(retiring.len() as u64, Ordering::Relaxed);
            ready.sort_by_key(|r| r.id);
            ready
        };
        if ready.is_empty() {
            return Ok(0);
        }
        // Also fsyncs the directory if an earlier call removed segments.
        log.sync()?;
        let guard = epoch::pin();
        // No lease is taken while files are retired, and a leased segment stays (its file is
        // being read by a checkpoint): it goes back to the list for a later call. Leases hold a
        // suffix of ids, so a held segment holds back every younger one too (`log/lease.rs`).
        let leases = log.leases().exclude();
        let (ready, held): (Vec<_>, Vec<_>) = ready
            .into_iter()
            .partition(|r| broken_lease_ignored() || !leases.holds(r.id));
        if !held.is_empty() {
            let mut retiring = self.retiring.lock();
            retiring.extend(held);
            // Relaxed: a hint for `has_retiring`.
            self.retiring_count
                .store(retiring.len() as u64, Ordering::Relaxed);
        }
        for retired in &ready {
            // Every older segment's removal (this call's, or an earlier one's: `sync` skips the
            // directory when nothing was appended since it last ran) is durable before this
            // one's.
            if retired.after_older {
                log.sync_directory()?;
            }
            if let Some(segment) = log.directory().get(retired.id, &guard) {
                segment.retire_file(log.recycle_pool());
            }
            log.directory().remove(retired.id, &guard);
            // Relaxed: statistics.
            self.segments_reclaimed.fetch_add(1, Ordering::Relaxed);
            self.bytes_reclaimed
                .fetch_add(log.segment_bytes(), Ordering::Relaxed);
        }
        drop(leases);
        if ready.is_empty() {
            return Ok(0);
        }
        // The next sync fsyncs the directory (this call's first step, next time), for segments
        // whose tombstones a later retirement drops.
        log.note_directory_changed();
        log.advance_first_segment(&guard);
        guard.flush();
        Ok(ready.len() as u64)
    }

    /// Whether retired segments are waiting for readers to unpin.
    pub(crate) fn has_retiring(&self) -> bool {
        // Relaxed: a hint; the list itself is read under its mutex.
        self.retiring_count.load(Ordering::Relaxed) > 0
    }

    /// Finishes ready retirements unless a compaction is running (it will).
    pub(crate) fn try_finish_retirements(&self, log: &AppendLog) -> Result<()> {
        if !self.has_retiring() {
            return Ok(());
        }
        let Some(_running) = PassFlag::claim(log.compaction_flag()) else {
            return Ok(());
        };
        for _ in 0..2 {
            epoch::pin().flush();
        }
        self.finish_retirements(log).map(|_| ())
    }
}

/// Whether compaction retires a segment without settling an index resize first: the twin of
/// `Broken::RetireDuringResize` that the loom model of compaction racing a resize must catch.
/// A constant `false` in normal builds.
#[inline(always)]
fn broken_retire_during_resize() -> bool {
    #[cfg(seglog_loom)]
    if crate::sync::broken::is(crate::sync::broken::Broken::RetireDuringResize) {
        return true;
    }
    false
}

/// Whether compaction retires segments without consulting the lease table: the twin of
/// `Broken::LeaseIgnored` that the loom model of segment leases must catch. A constant `false`
/// in normal builds.
#[inline(always)]
fn broken_lease_ignored() -> bool {
    #[cfg(seglog_loom)]
    if crate::sync::broken::is(crate::sync::broken::Broken::LeaseIgnored) {
        return true;
    }
    false
}
