//! The lock-free hash index: key → log address of the key's current record.
//!
//! # Shape
//!
//! In the spirit of FASTER's hash index (Chandramouli et al., "FASTER: A Concurrent Key-Value
//! Store with In-Place Updates", SIGMOD 2018, §3), the index stores no keys: a slot is one
//! `AtomicU64` packing a frozen bit, a 15-bit tag and the record's address (see [`entry`]), and a
//! probe whose tag matches asks the log for the record's key through [`RecordSource`]. A key's
//! entries are ordered by `(version, address)`; the higher one is current, whether a put or a
//! tombstone. Tables use open addressing with linear probing; each grows into one 1.5 times its size (twice, below 1024 slots).
//!
//! # Invariants
//!
//! 1. **A slot keeps its key.** Slots are never emptied; once a slot holds key K it holds only
//!    K's entries in that table. So concurrent inserts of a new key meet at the same slot (the
//!    first vacant one of its probe sequence), and if a probe for K reaches a vacant slot, K is
//!    not in the table.
//! 2. **Frozen is final.** The frozen bit is set once (by `fetch_or`) and never cleared; a frozen
//!    slot never changes again. A table with a frozen slot has a successor.
//! 3. **Writers freeze before they move on.** A writer (an upsert or a relocation) that meets a
//!    frozen slot finishes its probe in that table, freezes K's slot there (or the vacant slot
//!    where K would go, which seals K out of the table), copies the frozen entry into the
//!    successor, and only then writes in the successor. So anything the successor holds for K
//!    was written after K's slot in the older table froze, and is at least as new as the frozen
//!    entry.
//! 4. **Chain of at most two.** Only the root table starts a resize, into a larger successor
//!    (1.5 times its size; twice below 1024 slots); the root moves to the successor only when every slot of the old root is frozen
//!    and copied, and the old root is then retired through crossbeam-epoch.
//! 5. **A migration target is never full.** A successor gets at most one copy per slot of the
//!    table it follows; while it is not yet the root, a new key is admitted only if one of its
//!    slots stays vacant even should every slot not yet migrated still bring a copy (see
//!    `Table::admits_new_key`). A writer turned away finishes the
//!    migration itself and starts over.
//!
//! # Reading
//!
//! `get` never writes. In a table it finds K's slot, or the first vacant slot:
//! - K's slot unfrozen: its entry is current (no writer can have written K further along the
//!   chain without freezing this slot first, invariant 3);
//! - K's slot frozen: the successor's answer wins if it has K (invariant 3), else the frozen
//!   entry is current (absent if it is a forgotten tombstone);
//! - an unfrozen vacant slot: K is absent (a writer would have frozen this very slot before
//!   writing K further along);
//! - a frozen vacant slot, or no vacant slot at all: look in the successor, if any.
//!
//! # Migration
//!
//! Migrating a slot freezes it and, if it holds an address, copies the entry into the successor
//! unless the successor already has K (anything there is at least as new, invariant 3). It is
//! idempotent, so any thread may migrate any slot any number of times. Writers that find the
//! root migrating claim a chunk of slots and migrate it (so resizing is amortised over writes,
//! as in FASTER's cooperative resize); whoever completes the count moves the root and retires
//! the old table. A writer that needs the migration finished while every chunk is claimed but
//! some claimer is stalled migrates every slot itself instead of waiting. Freezing slots and
//! copying them into a larger table follows Click's non-blocking hash map and Maier, Sanders and
//! Dementiev's growt ("Concurrent Hash Tables: Fast and General(?)!", TOPC 2019).
//!
//! # Forgetting tombstones
//!
//! A migration may leave a tombstone behind instead of copying it, when the log says no older
//! record of its key can still be installed ([`RecordSource::may_forget`]): `migrate_slot`
//! freezes it with the forgotten bit (one CAS, so one thread reports it to the log), and
//! nothing reaches the successor. The slot keeps its address, so invariant 1 holds and probes
//! of other keys pass it as before. A root of at least 1024 slots full of such tombstones is
//! rebuilt at its own size rather than grown; it keeps its last eighth from new keys so that a
//! same-size successor never fills (invariant 5). See docs/design.md, section 3b.
//!
//! Neither the copy nor a reader compares `(version, address)` across tables: by invariant 3 the
//! newer table's entry for K is always at least as new, so it simply wins. Comparing would give
//! the same answers, except after a relocation (`replace_exact` keeps the version and may move a
//! record to a lower address), which a late copy or a merging reader would then undo.
//!
//! No operation waits for another thread: every loop either makes progress of its own or retries
//! because some other thread made progress (a CAS it lost).

mod bulk;
mod entry;
mod migrate;
mod table;
mod write;

#[cfg(all(test, not(seglog_loom)))]
mod tests;

/// Loom only: index tables alive on this OS thread (see `table::live_tables`).
#[cfg(seglog_loom)]
pub(crate) fn live_tables_count() -> usize {
    table::live_tables::count()
}

use std::hash::{BuildHasher, Hasher};

use foldhash::quality::FixedState;

use self::entry::{Entry, KeyHash};
use self::table::{Chain, Probe, Table};
use self::write::{WriteOp, WriteOutcome};
use crate::address::Address;
use crate::stripes::StripedCount;
use crate::sync::epoch::{self, Guard};
use crate::sync::{AtomicU64, Ordering};

/// What the index needs from the log.
pub(crate) trait RecordSource {
    /// What resolving an address yields: the log's whole record, so that a lookup can hand
    /// back what it resolved to compare keys instead of the caller reading it again.
    type Record<'g>: IndexedRecord<'g>
    where
        Self: 'g;

    /// The published record at `address`. Only called with addresses the index holds. Valid
    /// while `guard` is pinned.
    fn resolve<'g>(&'g self, address: Address, guard: &'g Guard) -> Self::Record<'g>;

    /// Hints that `address` will be resolved soon (migration resolves a chunk of addresses in
    /// a row, each a cache miss in the log). Does nothing by default.
    fn prefetch(&self, address: Address, guard: &Guard) {
        let _ = (address, guard);
    }

    /// Whether a migration may leave `record`, the current entry of its key, behind instead of
    /// copying it into the successor table: only a tombstone against which no older record of
    /// its key can still be installed (see the module docs, *Forgetting tombstones*). Must be
    /// monotone: once true for a record, true for it forever. Never forgets by default.
    fn may_forget(&self, record: &Self::Record<'_>) -> bool {
        let _ = record;
        false
    }

    /// Called once for each record a migration left behind ([`RecordSource::may_forget`]), by
    /// the thread whose freeze forgot it: the index no longer counts it.
    fn forgot(&self, record: &Self::Record<'_>, guard: &Guard) {
        let _ = (record, guard);
    }

    /// Called before the index decides whether to rebuild a table at its own size, so that
    /// [`RecordSource::may_forget`] is as up to date as it cheaply can be. Does nothing by
    /// default.
    fn before_rebuild(&self, guard: &Guard) {
        let _ = guard;
    }
}

/// What the index reads of a record: its key, version and liveness.
pub(crate) trait IndexedRecord<'g>: Copy {
    fn key(&self) -> &'g [u8];
    fn version(&self) -> u64;
    /// A put (true) or a tombstone (false).
    fn is_live(&self) -> bool;
    /// Where the record is in the log (a copy's position differs from its version).
    fn position(&self) -> u64;
    /// The record's length in the log. The index only hands it back (in [`Previous`]), so that
    /// the caller's space accounting need not read the replaced record again.
    fn bytes(&self) -> u32;
}

/// Sizing and hashing of an [`Index`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct IndexOptions {
    /// Slots of the first table; at least 4.
    pub initial_capacity: usize,
    /// Fraction of a table's slots claimed before it is resized; clamped to `0.25..=0.95`.
    pub load_factor: f64,
    /// Seed of the key hash (fixed, so loom runs and tests are deterministic).
    pub seed: u64,
}

impl IndexOptions {
    pub(crate) const DEFAULT_LOAD_FACTOR: f64 = 0.75;
    const MIN_CAPACITY: usize = 4;
    const MIN_LOAD_FACTOR: f64 = 0.25;
    const MAX_LOAD_FACTOR: f64 = 0.95;

    fn capacity(&self) -> usize {
        self.initial_capacity.max(Self::MIN_CAPACITY)
    }

    fn load_factor(&self) -> f64 {
        if self.load_factor.is_nan() {
            Self::DEFAULT_LOAD_FACTOR
        } else {
            self.load_factor
                .clamp(Self::MIN_LOAD_FACTOR, Self::MAX_LOAD_FACTOR)
        }
    }
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            initial_capacity: 1024,
            load_factor: Self::DEFAULT_LOAD_FACTOR,
            seed: 0,
        }
    }
}

/// The outcome of [`Index::upsert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Upserted {
    /// Our entry is now current; `replaced` is the entry it replaced for this key, if any.
    Installed { replaced: Option<Previous> },
    /// A record with a higher (version, address) was already current; nothing changed.
    /// `live`: whether that record is a put.
    Superseded { current: Address, live: bool },
}

/// What a conditional install did ([`Index::install_if`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conditional {
    /// The comparison held and our entry is now current; `replaced` as for
    /// [`Upserted::Installed`].
    Installed { replaced: Option<Previous> },
    /// The key's current record is not what was expected: the version of its put, or `None` if
    /// the key is absent (or its current record is a tombstone). Nothing changed.
    Mismatch { current: Option<u64> },
    /// The comparison held, but the current record (a tombstone) has a higher version than
    /// ours: nothing changed; write again with a newer version.
    Stale,
}

/// The entry an install replaced: its address, whether it was a put, and its length in the
/// log ([`IndexedRecord::bytes`]), as the install's probe resolved it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Previous {
    pub address: Address,
    pub live: bool,
    pub bytes: u32,
    /// Its position in the log ([`IndexedRecord::position`]).
    pub position: u64,
}

/// A snapshot of the index's size, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexStats {
    /// Slots in the newest table.
    pub capacity: usize,
    /// Claimed slots in the newest table (keys, including tombstoned ones).
    pub occupied: usize,
    /// Keys whose current entry is a put (as [`Index::len`]).
    pub live_keys: usize,
    /// Bytes of all tables currently reachable (two while a resize is in flight).
    pub memory_bytes: usize,
    /// Resizes started since the index was created.
    pub resizes: u64,
}

/// The lock-free, epoch-reclaimed hash index. See the module docs.
pub(crate) struct Index {
    chain: Chain,
    hasher: FixedState,
    load_factor: f64,
    /// Keys whose current entry is a put, striped (every new key bumps it). Sums transiently
    /// below zero when a put's −1 lands before the +1 of the install it replaced (see
    /// [`Index::len`]).
    live_keys: StripedCount,
    resizes: AtomicU64,
}

impl Index {
    pub(crate) fn new(options: IndexOptions) -> Self {
        let load_factor = options.load_factor();
        Self {
            chain: Chain::new(Table::new(options.capacity(), load_factor)),
            hasher: FixedState::with_seed(options.seed),
            load_factor,
            live_keys: StripedCount::default(),
            resizes: AtomicU64::new(0),
        }
    }

    /// Address of the current (highest (version, address)) record of `key`, put or tombstone.
    pub(crate) fn get<S: RecordSource>(
        &self,
        key: &[u8],
        source: &S,
        guard: &Guard,
    ) -> Option<Address> {
        self.get_record(key, source, guard)
            .map(|(address, _)| address)
    }

    /// The current record of `key` and its address: [`Index::get`], handing back the record
    /// the probe resolved to recognise the key, so the caller need not read it again.
    pub(crate) fn get_record<'g, S: RecordSource>(
        &self,
        key: &[u8],
        source: &'g S,
        guard: &'g Guard,
    ) -> Option<(Address, S::Record<'g>)> {
        let hash = self.hash_key(key);
        // The record behind the last entry `find` recognised as the key's.
        let mut resolved = None;
        // The frozen entry of K in an older table: current unless a newer table has K.
        let mut frozen_answer = None;
        let mut table = self.chain.root(guard);
        loop {
            let probe = table.find(hash, |entry: Entry| {
                resolved = resolve_if_key(entry, hash, key, source, guard);
                resolved.is_some()
            });
            let next = match probe {
                Probe::Key(entry) if !entry.is_frozen() => return entry.address().zip(resolved),
                Probe::Key(entry) => {
                    // A forgotten tombstone is not an answer: the index no longer holds the
                    // key (compaction relies on that to keep or drop the tombstone).
                    frozen_answer = if entry.is_forgotten() {
                        None
                    } else {
                        entry.address().zip(resolved)
                    };
                    Some(table.get().successor_of_frozen(guard))
                }
                Probe::Vacant(entry) if !entry.is_frozen() => return frozen_answer,
                Probe::Vacant(_) => Some(table.get().successor_of_frozen(guard)),
                Probe::Exhausted => table.get().successor(guard),
            };
            match next {
                Some(next) => table = next,
                None => return frozen_answer,
            }
        }
    }

    /// Install `address` (a published record of `key` with `version`, a put if `live`) if it is
    /// newer than the current entry by (version, address) order.
    pub(crate) fn upsert<S: RecordSource>(
        &self,
        key: &[u8],
        address: Address,
        version: u64,
        live: bool,
        source: &S,
        guard: &Guard,
    ) -> Upserted {
        match self.write(
            key,
            address,
            WriteOp::Upsert { version, live },
            source,
            guard,
        ) {
            WriteOutcome::Upserted(upserted) => upserted,
            _ => unreachable!("an upsert reports an Upserted"),
        }
    }

    /// A conditional install (`Log::compare_and_put`, `Log::compare_and_remove`): makes the
    /// record at `address` (of `version`; a put if `live`) current for `key` only if the key's
    /// current record is a put of version `expected` (`None`: absent or a tombstone), in one CAS
    /// on the entry it compared, like an upsert's. See [`Conditional`].
    #[allow(clippy::too_many_arguments)] // the upsert's arguments and the expectation
    pub(crate) fn install_if<S: RecordSource>(
        &self,
        key: &[u8],
        address: Address,
        version: u64,
        live: bool,
        expected: Option<u64>,
        source: &S,
        guard: &Guard,
    ) -> Conditional {
        let op = WriteOp::Conditional {
            version,
            live,
            expected,
        };
        match self.write(key, address, op, source, guard) {
            WriteOutcome::Conditional(outcome) => outcome,
            _ => unreachable!("a conditional install reports a Conditional"),
        }
    }

    /// Compaction's relocation: replace the entry for `key` with `new_address` only if it is still
    /// exactly `old_address` (same version; a concurrent upsert wins). Returns whether it replaced.
    pub(crate) fn replace_exact<S: RecordSource>(
        &self,
        key: &[u8],
        old_address: Address,
        new_address: Address,
        source: &S,
        guard: &Guard,
    ) -> bool {
        match self.write(
            key,
            new_address,
            WriteOp::Relocate { old_address },
            source,
            guard,
        ) {
            WriteOutcome::Relocated(replaced) => replaced,
            _ => unreachable!("a relocation reports a bool"),
        }
    }

    /// Finishes the resize in flight, if any, without waiting for anyone: afterwards no table
    /// older than the root is reachable except through guards pinned before the call.
    ///
    /// Compaction calls it before retiring a segment: a write that met its key's slot frozen
    /// (the root migrating) wrote only into the successor, so the frozen slot in the old root
    /// can still hold the address the write replaced. Once the old root is unlinked, no thread
    /// that pins afterwards can reach that address.
    pub(crate) fn settle<S: RecordSource>(&self, source: &S, guard: &Guard) {
        self.finish_migration(source, guard);
    }

    /// Number of keys whose current entry is live (a put). Exact when no operation is in flight.
    pub(crate) fn len(&self) -> usize {
        // A statistic: quiescence (threads joined) supplies the happens-before that makes it
        // exact; a transiently "negative" count (see the field) reads as 0.
        self.live_keys.get() as usize
    }

    /// Calls `f` once per distinct key present in the index (live or tombstoned), with the
    /// address of SOME entry of that key (the caller resolves the current value with `get`).
    /// Weakly consistent: a key present for the whole call is reported exactly once.
    ///
    /// A key is reported from the oldest table of the chain that holds it: table `i > 0` reports
    /// a slot only if no older table has a slot (frozen or not) for its key. A slot keeps its key
    /// for the table's life, so a key present in an older table is found there again.
    pub(crate) fn for_each_key<S: RecordSource>(
        &self,
        source: &S,
        guard: &Guard,
        mut f: impl FnMut(Address),
    ) {
        let mut older = Vec::new();
        for table in self.chain.tables(guard) {
            for index in 0..table.capacity() {
                let Some(address) = table.slot(index).load().address() else {
                    continue;
                };
                if !older.is_empty() {
                    let key = source.resolve(address, guard).key();
                    let hash = self.hash_key(key);
                    let is_key =
                        |entry: Entry| resolve_if_key(entry, hash, key, source, guard).is_some();
                    let seen = older.iter().any(|older: &table::TablePtr<'_>| {
                        matches!(older.find(hash, is_key), Probe::Key(_))
                    });
                    if seen {
                        continue;
                    }
                }
                f(address);
            }
            older.push(table);
        }
    }

    /// A snapshot of the index's size. Pins the current thread briefly.
    pub(crate) fn stats(&self) -> IndexStats {
        let guard = epoch::pin();
        let mut stats = IndexStats {
            capacity: 0,
            occupied: 0,
            live_keys: self.len(),
            memory_bytes: 0,
            // Relaxed: a statistic; see `Index::grow`.
            resizes: self.resizes.load(Ordering::Relaxed),
        };
        for table in self.chain.tables(&guard) {
            stats.capacity = table.capacity();
            stats.occupied = table.occupied().min(table.capacity());
            stats.memory_bytes += table.memory_bytes();
        }
        stats
    }

    fn hash_key(&self, key: &[u8]) -> KeyHash {
        // `write` rather than `Hash for [u8]`: no length prefix; foldhash folds the length in.
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key);
        KeyHash::new(hasher.finish())
    }

    /// Adjusts the live-key count for an install that replaced `replaced` with a record of
    /// liveness `live`.
    fn account_install(&self, replaced: Option<Previous>, live: bool) {
        let was_live = replaced.is_some_and(|previous| previous.live);
        // A counter; it orders nothing (`StripedCount::add` is Relaxed), and the RMWs keep every
        // adjustment.
        match (was_live, live) {
            (false, true) => self.live_keys.add(1),
            (true, false) => self.live_keys.add(-1),
            _ => {}
        }
    }
}

/// The record behind `entry` if the entry belongs to `key`: the tag must match, then the log
/// decides.
fn resolve_if_key<'g, S: RecordSource>(
    entry: Entry,
    hash: KeyHash,
    key: &[u8],
    source: &'g S,
    guard: &'g Guard,
) -> Option<S::Record<'g>> {
    let address = entry.address()?;
    if entry.tag() != hash.tag() {
        return None;
    }
    let record = source.resolve(address, guard);
    (record.key() == key).then_some(record)
}
