//! One open-addressing table of the index, and the chain of tables that a resize creates.
//!
//! The chain is `root → root.next → …`. `root` is the oldest table still in use; a table gets a
//! larger successor only while it is the root, so at most two tables are live at once:
//! the root being migrated, and its successor. Once every slot of the root is migrated, the root
//! moves to the successor and the old root is retired through crossbeam-epoch. A thread pinned
//! before the retirement may still walk an old root and its `next`; nothing else points at it.
//!
//! All `unsafe` of the index lives in this file: dereferencing a table pointer, retiring a table,
//! and freeing the chain on drop.

use std::ops::Range;

use crossbeam_utils::CachePadded;

use super::entry::{Entry, KeyHash, Slot};
use crate::sync::epoch::{self, Atomic, Guard, Owned, Shared};
use crate::sync::{AtomicUsize, Ordering};

/// Slots a migration helper claims at a time. Small under loom so that a 4-slot model table
/// migrates in several chunks and helpers interleave.
#[cfg(not(seglog_loom))]
const MIGRATION_CHUNK: usize = 64;
#[cfg(seglog_loom)]
const MIGRATION_CHUNK: usize = 2;

/// Tables below this many slots double when they grow; larger ones grow by 1.5x (see
/// [`Table::successor_capacity`]). The index starts at 1024 slots by default, so by default
/// every resize is by 1.5x.
const SMALL_TABLE: usize = 1024;

/// An open-addressing table with linear probing.
pub(super) struct Table {
    slots: Box<[Slot]>,
    /// A resize starts when `occupied` exceeds this (`capacity × load_factor`, rounded down).
    resize_threshold: usize,
    /// Set once, from null, while this table is the root: where migration copies go.
    next: Atomic<Table>,
    /// Slots claimed by a key, plus reservations in flight (see [`Table::reserve_slot`]).
    occupied: CachePadded<AtomicUsize>,
    /// Next slot index for a migration helper to claim; grows past the capacity when all are
    /// claimed.
    migrate_claim: CachePadded<AtomicUsize>,
    /// Slots whose migration is complete (frozen and copied), counted by the helpers that
    /// claimed them.
    migrate_done: CachePadded<AtomicUsize>,
    /// Whether this table was made the same size as its predecessor, to leave its forgettable
    /// tombstones behind (see [`Table::is_productive_rebuild`]).
    rebuilt: bool,
    /// Tombstones the migration into this table left behind (`Index::migrate_slot`).
    forgotten: AtomicUsize,
}

/// `capacity` empty slots. A large table is asked for huge pages first: filled by an open (or a
/// resize) at random, its small pages each faulted once, a tenth of building a large index.
fn empty_slots(capacity: usize) -> Box<[Slot]> {
    let mut slots = Vec::with_capacity(capacity);
    #[cfg(not(seglog_loom))]
    crate::huge_pages::advise(slots.spare_capacity_mut());
    slots.extend((0..capacity).map(|_| Slot::new()));
    slots.into_boxed_slice()
}

impl Table {
    /// A table of `capacity` empty slots (at least 4).
    pub(super) fn new(capacity: usize, load_factor: f64) -> Self {
        Self::with_role(capacity, load_factor, false)
    }

    /// A table of `capacity` empty slots; `rebuilt` if it replaces one of the same size.
    fn with_role(capacity: usize, load_factor: f64, rebuilt: bool) -> Self {
        assert!(capacity >= 4, "bad table capacity {capacity}");
        // The float product is at most `0.95 × capacity`, so it fits and leaves one slot free.
        let resize_threshold = ((capacity as f64 * load_factor) as usize).min(capacity - 1);
        #[cfg(seglog_loom)]
        live_tables::created();
        Self {
            slots: empty_slots(capacity),
            resize_threshold,
            next: Atomic::null(),
            occupied: CachePadded::new(AtomicUsize::new(0)),
            migrate_claim: CachePadded::new(AtomicUsize::new(0)),
            migrate_done: CachePadded::new(AtomicUsize::new(0)),
            rebuilt,
            forgotten: AtomicUsize::new(0),
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes this table holds: the struct and its slot array.
    pub(super) fn memory_bytes(&self) -> usize {
        size_of::<Self>() + size_of_val::<[Slot]>(&self.slots)
    }

    pub(super) fn slot(&self, index: usize) -> &Slot {
        &self.slots[index]
    }

    /// The slots of `hash`'s probe sequence: every slot once, starting at the home slot.
    pub(super) fn probe(&self, hash: KeyHash) -> impl Iterator<Item = &Slot> {
        let capacity = self.slots.len();
        let home = hash.home(capacity);
        (0..capacity).map(move |step| {
            // `home + step < 2 × capacity`: one conditional subtraction wraps it.
            let index = home + step;
            &self.slots[if index >= capacity {
                index - capacity
            } else {
                index
            }]
        })
    }

    /// Where `hash`'s key stands in this table, without writing. `is_key` says whether a
    /// non-vacant entry belongs to the key (it checks the tag, then asks the log).
    pub(super) fn find(&self, hash: KeyHash, mut is_key: impl FnMut(Entry) -> bool) -> Probe {
        for slot in self.probe(hash) {
            let entry = slot.load();
            if entry.is_vacant() {
                return Probe::Vacant(entry);
            }
            if is_key(entry) {
                return Probe::Key(entry);
            }
        }
        Probe::Exhausted
    }

    // --- Occupancy -------------------------------------------------------------------------

    /// Counts one more slot about to be claimed, before the claiming CAS; returns the count
    /// before this one. A failed CAS gives it back with [`Table::release_slot`].
    ///
    /// Relaxed: the count publishes nothing. Its only uses are the resize trigger (a heuristic)
    /// and the admission bound in `Index::claim_vacant`, which relies on the RMWs' single total
    /// order, not on ordering other memory.
    pub(super) fn reserve_slot(&self) -> usize {
        self.occupied.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts `n` slots claimed at once (a bulk build, before the table is shared). Relaxed, as
    /// [`Table::reserve_slot`].
    pub(super) fn reserve_slots(&self, n: usize) {
        self.occupied.fetch_add(n, Ordering::Relaxed);
    }

    /// Gives back a reservation whose CAS failed. Relaxed, as [`Table::reserve_slot`].
    pub(super) fn release_slot(&self) {
        self.occupied.fetch_sub(1, Ordering::Relaxed);
    }

    /// Claimed slots (and reservations in flight). Relaxed, as [`Table::reserve_slot`].
    pub(super) fn occupied(&self) -> usize {
        self.occupied.load(Ordering::Relaxed)
    }

    /// Whether a resize should start: more slots claimed than the load factor allows.
    pub(super) fn is_over_threshold(&self, occupied: usize) -> bool {
        occupied > self.resize_threshold
    }

    /// Whether a *new* key (not a migration copy) may claim a slot of this table while it is
    /// still a migration target: `before` is what [`Table::reserve_slot`] returned for it, and
    /// `pending_copies` the predecessor's slots not yet counted as migrated, read *before* that
    /// reservation ([`Table::unmigrated_slots`]).
    ///
    /// The key is admitted if, even should every pending slot still bring a copy, one slot stays
    /// empty: `before + 1 + pending_copies <= capacity - 1`. Why that bounds the table: take the
    /// last new key admitted, N. Every claim before N's reservation in `occupied`'s order is in
    /// N's `before`. After it come only copies (a new key that reserved later was refused and
    /// gave its reservation back), one at most per predecessor slot. A slot N counted as migrated
    /// made its copy before the Release in [`Table::finish_chunk`] that N's Acquire read saw,
    /// and N read that before reserving, so the copy's reservation precedes N's and is already
    /// in `before`; each other slot brings at most one copy, and `pending_copies` counts it. So
    /// the table never holds more than `capacity - 1` claims: a migration target is never full,
    /// and a migration copy never needs a third table.
    pub(super) fn admits_new_key(&self, before: usize, pending_copies: usize) -> bool {
        before + 1 + pending_copies < self.slots.len()
    }

    /// Whether a new key may claim a slot of this table while it is the root: `before` is what
    /// [`Table::reserve_slot`] returned for it.
    ///
    /// A table that may be rebuilt at its own size ([`Table::may_rebuild`]) keeps an eighth of
    /// its slots from new keys: its successor then receives at most `capacity - capacity / 8`
    /// copies, so a successor of the same size is never filled by copies (invariant 5). A key
    /// turned away makes sure the successor exists and tries again. Smaller tables always grow,
    /// so their successor has room for a copy of every slot and they need no bound.
    pub(super) fn root_admits_new_key(&self, before: usize) -> bool {
        !self.may_rebuild() || before < self.root_claim_limit()
    }

    fn root_claim_limit(&self) -> usize {
        self.slots.len() - self.slots.len() / 8
    }

    /// Whether this table's successor may have its own capacity (a rebuild that leaves dead
    /// tombstones behind) rather than a larger one: only tables of at least [`SMALL_TABLE`]
    /// slots, so the loom models' 4- and 8-slot tables always double.
    pub(super) fn may_rebuild(&self) -> bool {
        self.slots.len() >= SMALL_TABLE
    }

    /// Counts one tombstone that the migration into this table left behind. Relaxed: a
    /// statistic for the next resize's choice.
    pub(super) fn note_forgotten(&self) {
        self.forgotten.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a rebuild into this table was worth it: it was not a rebuild, or it left at
    /// least a thirty-second of its slots' worth of tombstones behind. A resize of a table
    /// that is not grows rather than rebuilds again, so a table full of tombstones that may
    /// not be forgotten yet (the settled frontier stuck behind a damaged segment, say) is not
    /// rebuilt over and over. Relaxed, as [`Table::note_forgotten`].
    pub(super) fn is_productive_rebuild(&self) -> bool {
        !self.rebuilt || self.forgotten.load(Ordering::Relaxed) >= self.slots.len() / 32
    }

    /// The capacity of a grown successor: 1.5 times this one's, or twice for a table below
    /// [`SMALL_TABLE`] slots.
    ///
    /// Growing by 1.5 rather than 2 keeps a table between `load_factor / 1.5` and `load_factor`
    /// full, so at the default 0.75 an index costs 10.7 to 16 bytes per key instead of 10.7 to
    /// 21.3; the price is that a key is copied about twice over the index's growth instead of
    /// once. Home slots by multiply-shift (`KeyHash::home`) make any capacity as cheap as a
    /// power of two. A small table doubles: its memory does not matter, and the loom models'
    /// 4- and 8-slot tables keep the layouts they are written for.
    pub(super) fn grown_capacity(&self) -> usize {
        let capacity = self.capacity();
        let growth = if capacity < SMALL_TABLE {
            capacity
        } else {
            capacity / 2
        };
        capacity
            .checked_add(growth)
            .expect("index capacity overflows usize")
    }

    // --- Migration claims ------------------------------------------------------------------

    /// Claims the next chunk of slots to migrate, or `None` if every slot is claimed.
    ///
    /// Relaxed: the claim only divides the work. Each slot's own freeze and copy carry the data,
    /// and completion is published through `migrate_done`.
    pub(super) fn claim_chunk(&self) -> Option<Range<usize>> {
        let capacity = self.slots.len();
        // Check before adding, so the counter stays near the capacity however often helpers look.
        if self.migrate_claim.load(Ordering::Relaxed) >= capacity {
            return None;
        }
        // Relaxed: the RMW alone makes claims disjoint; the copies a claimer makes are ordered
        // by `finish_chunk`'s Release and `is_migrated`'s Acquire, not by this counter.
        let start = self
            .migrate_claim
            .fetch_add(MIGRATION_CHUNK, Ordering::Relaxed);
        (start < capacity).then(|| start..(start + MIGRATION_CHUNK).min(capacity))
    }

    /// Records that `count` claimed slots are migrated; returns whether that completed the table.
    ///
    /// AcqRel: every helper's Release makes its copies part of the release sequence on
    /// `migrate_done`; the helper that completes the count Acquires all of them before it moves
    /// the root (pairs with itself in the other helpers, and with `Table::is_migrated`).
    pub(super) fn finish_chunk(&self, count: usize) -> bool {
        self.migrate_done.fetch_add(count, Ordering::AcqRel) + count == self.slots.len()
    }

    /// Slots of this table not yet counted as migrated: an upper bound on the migration copies
    /// still to come into its successor (see [`Table::admits_new_key`]).
    ///
    /// Acquire: pairs with the Release in [`Table::finish_chunk`], so the copies of every slot
    /// counted here were reserved in the successor before anything the caller does next.
    pub(super) fn unmigrated_slots(&self) -> usize {
        self.slots.len() - self.migrate_done.load(Ordering::Acquire)
    }

    /// Whether the claimed chunks add up to the whole table.
    ///
    /// Acquire: pairs with the Release in [`Table::finish_chunk`], so every copy is visible to
    /// the caller before it moves the root.
    pub(super) fn is_migrated(&self) -> bool {
        self.migrate_done.load(Ordering::Acquire) == self.slots.len()
    }

    // --- Successor -------------------------------------------------------------------------

    /// The table migration copies into, if a resize of this table has started.
    pub(super) fn successor<'g>(&'g self, guard: &'g Guard) -> Option<TablePtr<'g>> {
        // Acquire: pairs with the Release in `install_successor`, so the new table's
        // initialised slots are visible.
        TablePtr::new(self.next.load(Ordering::Acquire, guard))
    }

    /// The successor of a table in which a frozen slot was seen.
    ///
    /// A slot is frozen only after its freezer loaded a non-null `next`, and the freeze's Release
    /// (observed through the Acquire slot load) carries that load with it.
    pub(super) fn successor_of_frozen<'g>(&'g self, guard: &'g Guard) -> TablePtr<'g> {
        self.successor(guard)
            .expect("index invariant: a table with a frozen slot has a successor")
    }

    /// Installs a successor of `capacity` slots (this table's own, for a rebuild, or
    /// [`Table::grown_capacity`]) if there is none; returns the successor and whether this call
    /// created it. The caller makes sure this table is the root.
    pub(super) fn install_successor<'g>(
        &'g self,
        capacity: usize,
        load_factor: f64,
        guard: &'g Guard,
    ) -> (TablePtr<'g>, bool) {
        if let Some(next) = self.successor(guard) {
            return (next, false);
        }
        debug_assert!(
            capacity > self.capacity() || (self.may_rebuild() && capacity == self.capacity())
        );
        let rebuilt = capacity == self.capacity();
        let fresh = Owned::new(Table::with_role(capacity, load_factor, rebuilt));
        // Release on success publishes the new table's initialisation (pairs with the Acquire in
        // `successor`); Acquire on failure lets us use the winner's table. The loser's
        // allocation was never shared and is dropped here.
        match self.next.compare_exchange(
            Shared::null(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
            guard,
        ) {
            Ok(next) => (TablePtr::new(next).expect("just installed"), true),
            Err(lost) => (
                TablePtr::new(lost.current).expect("CAS from null failed"),
                false,
            ),
        }
    }
}

/// Where a key stands in one table (see [`Table::find`]).
#[derive(Clone, Copy, Debug)]
pub(super) enum Probe {
    /// The key's slot, frozen or not.
    Key(Entry),
    /// The first vacant slot of the probe sequence: the key is not in this table. If the slot
    /// is unfrozen, it is not anywhere else either; if frozen, it may be in the successor.
    Vacant(Entry),
    /// Every slot holds another key.
    Exhausted,
}

/// A table reached from the index's chain while `'g`'s guard is pinned.
///
/// Invariant: the pointer is non-null and was loaded, under the guard of lifetime `'g`, from the
/// chain's `root` or from the `next` of a table itself reached this way, and `'g` also borrows
/// the chain (every constructor takes `&'g self`). Tables are freed only by
/// [`Chain::advance_root`]'s deferred destruction or by the chain's `Drop`, so the table outlives
/// `'g`.
#[derive(Clone, Copy)]
pub(super) struct TablePtr<'g>(Shared<'g, Table>);

impl<'g> TablePtr<'g> {
    /// Private: only the chain's own loads construct table pointers (see the type's invariant).
    fn new(shared: Shared<'g, Table>) -> Option<Self> {
        (!shared.is_null()).then_some(Self(shared))
    }

    /// The table, for as long as the guard stays pinned.
    pub(super) fn get(self) -> &'g Table {
        // SAFETY: by the type's invariant the pointer is non-null and was loaded under the guard
        // of lifetime 'g from `root` or a `next`. A table is destroyed only after it is unlinked
        // from `root` (and deferred past every guard pinned at that moment, which includes ours)
        // or when the chain is dropped, which needs `&mut Chain` and so cannot overlap 'g, a
        // borrow of the chain.
        unsafe { self.0.deref() }
    }
}

impl PartialEq for TablePtr<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl std::ops::Deref for TablePtr<'_> {
    type Target = Table;

    fn deref(&self) -> &Table {
        self.get()
    }
}

/// The chain of tables: `root` owns the oldest table still in use.
pub(super) struct Chain {
    root: Atomic<Table>,
}

impl Chain {
    pub(super) fn new(first: Table) -> Self {
        Self {
            root: Atomic::new(first),
        }
    }

    /// The oldest table still in use.
    pub(super) fn root<'g>(&'g self, guard: &'g Guard) -> TablePtr<'g> {
        // Acquire: pairs with the Release in `advance_root`, so every migration copy into the new
        // root is visible before we probe it without looking at the old one.
        TablePtr::new(self.root.load(Ordering::Acquire, guard)).expect("the chain is never empty")
    }

    pub(super) fn is_root(&self, table: TablePtr<'_>, guard: &Guard) -> bool {
        self.root(guard) == table
    }

    /// Moves the root from `from` to its successor `to` once `from` is fully migrated, and
    /// retires `from`. Returns whether this call moved it (so exactly one caller retires `from`).
    ///
    /// The caller must have observed every slot of `from` migrated (through `finish_chunk`/
    /// `is_migrated`, or by migrating every slot itself).
    pub(super) fn advance_root(&self, from: TablePtr<'_>, to: TablePtr<'_>, guard: &Guard) -> bool {
        debug_assert!(
            from.successor(guard) == Some(to),
            "root advances to its own successor"
        );
        // Release on success publishes the migration copies the caller has seen (pairs with the
        // Acquire in `root`). Acquire on failure is not needed for anything but keeps the CAS
        // symmetrical with the load.
        match self
            .root
            .compare_exchange(from.0, to.0, Ordering::AcqRel, Ordering::Acquire, guard)
        {
            Ok(_) => {
                // SAFETY: `from` was non-null and is now unlinked: root moves only forward along
                // `next`, so a thread that pins after this point cannot reach it. The only other
                // pointer to it is the `next` of its own predecessor, retired earlier and reachable
                // only by threads pinned before *that* retirement, hence before this one too, so
                // the deferred destruction waits for them. Only the CAS winner gets here, so
                // `from` is retired exactly once.
                unsafe { guard.defer_destroy(from.0) };
                // A retired table is the largest thing the index ever frees, and crossbeam-epoch
                // only hands a thread's deferred garbage to the global queue once its local bag
                // (64 entries) fills: without this flush every table a growing index retires
                // stays allocated, doubling its steady memory. A resize is rare, so the cost of
                // flushing (one global push and a collection attempt) is paid once per doubling.
                guard.flush();
                true
            }
            Err(_) => false,
        }
    }

    /// Every table reachable from the root, oldest first (the root and its successors).
    pub(super) fn tables<'g>(&'g self, guard: &'g Guard) -> impl Iterator<Item = TablePtr<'g>> {
        std::iter::successors(Some(self.root(guard)), move |table| {
            table.get().successor(guard)
        })
    }
}

#[cfg(seglog_loom)]
impl Drop for Table {
    fn drop(&mut self) {
        live_tables::dropped();
    }
}

/// Loom only: how many index tables exist, so a model can see a retired table freed (tables
/// are plain allocations loom does not track). Loom runs every modeled thread on the OS thread
/// that called it, so a thread-local counts exactly the model's tables.
#[cfg(seglog_loom)]
pub(crate) mod live_tables {
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) fn created() {
        LIVE.with(|n| n.set(n.get() + 1));
    }

    pub(super) fn dropped() {
        LIVE.with(|n| n.set(n.get() - 1));
    }

    /// Tables created on this OS thread and not yet dropped.
    pub(crate) fn count() -> usize {
        LIVE.with(Cell::get)
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        // SAFETY: `&mut self` means no other thread holds a reference into the chain, so no guard
        // is needed to read it and nothing can be reached concurrently.
        let guard = unsafe { epoch::unprotected() };
        // Relaxed: whatever gave us `&mut self` (a join, a channel, the last `Arc`) already
        // ordered every other thread's writes before this point.
        let mut current = self.root.load(Ordering::Relaxed, guard);
        while !current.is_null() {
            // SAFETY: `current` is non-null and reachable from `root`, so it was never retired
            // (only tables unlinked from `root` are); the walk visits each table once.
            let owned = unsafe { current.into_owned() };
            current = owned.next.load(Ordering::Relaxed, guard);
            drop(owned);
        }
    }
}
