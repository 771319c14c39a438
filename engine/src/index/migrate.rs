//! Resizing: starting a successor table, migrating slots into it, and moving the root.
//!
//! Migrating slot `i` of table `t` = freeze it, then copy its entry (if any) into `t.next`
//! unless `t.next` already has the key. Both steps are idempotent, so helpers may overlap: a
//! claimer that stalls holds nobody up, because anyone who needs the migration finished can
//! migrate every slot again itself (`finish_migration`). The root moves with a CAS from `t` to
//! `t.next`; only the thread whose CAS succeeds retires `t`.

use super::entry::{Entry, KeyHash};
use super::table::{Table, TablePtr};
use super::{Index, IndexedRecord, RecordSource, resolve_if_key};
use crate::sync::Ordering;
use crate::sync::epoch::Guard;

impl Index {
    /// Migrates one chunk of the root, if the root is migrating. Every write calls this first, so
    /// a resize is paid for in small pieces by the writes that follow it.
    pub(super) fn help_migration<S: RecordSource>(&self, source: &S, guard: &Guard) {
        let root = self.chain.root(guard);
        if let Some(next) = root.get().successor(guard) {
            self.migrate_chunk(root, next, source, guard);
        }
    }

    /// Finishes the root's migration now, without waiting for anyone: claims what is left, and if
    /// some claimed chunk is still unfinished, migrates every slot itself. Then moves the root.
    pub(super) fn finish_migration<S: RecordSource>(&self, source: &S, guard: &Guard) {
        let root = self.chain.root(guard);
        let Some(next) = root.get().successor(guard) else {
            return;
        };
        while self.migrate_chunk(root, next, source, guard) {}
        if !self.chain.is_root(root, guard) {
            return;
        }
        if !root.is_migrated() {
            // A claimer is stalled mid-chunk. Migrating is idempotent, so redo all of it rather
            // than wait.
            for index in 0..root.capacity() {
                self.migrate_slot(root, index, next, source, guard);
            }
        }
        self.complete_migration(root, next, source, guard);
    }

    /// The successor of `table`, starting a resize if there is none. Only the root may start
    /// one (invariant 4), so if `table` is not the root, the root's migration is finished first.
    ///
    /// That last case does not arise: `grow` is called on a table with no successor only when
    /// the table is the root or is full, and a table that is not the root is a migration target,
    /// which is never full (invariant 5).
    pub(super) fn grow<'g, S: RecordSource>(
        &self,
        table: TablePtr<'g>,
        source: &S,
        guard: &'g Guard,
    ) -> TablePtr<'g> {
        loop {
            if let Some(next) = table.get().successor(guard) {
                return next;
            }
            if self.chain.is_root(table, guard) {
                if table.may_rebuild() {
                    source.before_rebuild(guard);
                }
                let capacity = self.successor_capacity(table.get());
                let (next, created) =
                    table
                        .get()
                        .install_successor(capacity, self.load_factor, guard);
                if created {
                    // Relaxed: a statistic, read by `stats`.
                    self.resizes.fetch_add(1, Ordering::Relaxed);
                }
                return next;
            }
            self.finish_migration(source, guard);
        }
    }

    /// The capacity of the root `table`'s successor: its own, to rebuild it without the
    /// tombstones the log lets the index forget, when its live keys fill at most 60 % of it
    /// and the last rebuild into it was worth it; else a larger one.
    ///
    /// At 60 % a rebuild leaves the table at least 15 % of its slots from its next resize (it
    /// resizes at 75 %), and growing past it leaves the grown table at least 40 % live: at most
    /// 20 bytes per live key, under twice the 10.7 a table of just the live keys at the load
    /// factor needs. The root's claim limit (`Table::root_admits_new_key`) is what lets a
    /// successor of the same size take a copy of every slot it might have to (invariant 5).
    fn successor_capacity(&self, table: &Table) -> usize {
        // Every key is in the root while it has no successor (a statistic, read without
        // ordering; a wrong guess costs a resize, never a key).
        if table.may_rebuild()
            && table.is_productive_rebuild()
            && self.len().saturating_mul(5) <= table.capacity().saturating_mul(3)
        {
            return table.capacity();
        }
        table.grown_capacity()
    }

    /// Rebuilds the root without the tombstones the log lets it forget, if no resize is in
    /// flight, at least an eighth of its slots hold keys that are not live, and a rebuild is
    /// what its next resize would be (see `successor_capacity`). Compaction calls it before it looks for tombstones
    /// to drop from the log: only a tombstone the index has forgotten can be dropped. A resize
    /// already in flight is left to the writers (and to `settle`).
    pub(crate) fn forget_tombstones<S: RecordSource>(&self, source: &S, guard: &Guard) {
        let root = self.chain.root(guard);
        if root.successor(guard).is_some() {
            return;
        }
        // Worth a pass over the table only if an eighth of it could be forgotten.
        let not_live = root.occupied().saturating_sub(self.len());
        let capacity = self.successor_capacity(root.get());
        if capacity != root.capacity() || not_live < root.capacity() / 8 {
            return;
        }
        let (_, created) = root
            .get()
            .install_successor(capacity, self.load_factor, guard);
        if created {
            // Relaxed: a statistic, read by `stats`.
            self.resizes.fetch_add(1, Ordering::Relaxed);
            self.finish_migration(source, guard);
        }
    }

    /// Starts a resize of the root if none is in flight, and finishes it.
    pub(crate) fn resize_now<S: RecordSource>(&self, source: &S, guard: &Guard) {
        let root = self.chain.root(guard);
        self.grow(root, source, guard);
        self.finish_migration(source, guard);
    }

    /// Claims and migrates one chunk of `table`; returns whether there was a chunk to claim.
    fn migrate_chunk<S: RecordSource>(
        &self,
        table: TablePtr<'_>,
        next: TablePtr<'_>,
        source: &S,
        guard: &Guard,
    ) -> bool {
        let Some(chunk) = table.claim_chunk() else {
            return false;
        };
        let count = chunk.len();
        // Migrating a slot resolves its key in the log: a cache miss per slot, one after the
        // other. Start them all first (a hint: an entry read here may change before its freeze,
        // and then the prefetch is merely wasted).
        for index in chunk.clone() {
            if let Some(address) = table.slot(index).load().address() {
                source.prefetch(address, guard);
            }
        }
        for index in chunk {
            self.migrate_slot(table, index, next, source, guard);
        }
        if table.finish_chunk(count) {
            self.complete_migration(table, next, source, guard);
        }
        true
    }

    /// Moves the root from the fully migrated `table` to `next` (retiring `table` if this call
    /// moved it), then starts `next`'s own resize if new keys took it over its load factor while
    /// it was a migration target.
    fn complete_migration<S: RecordSource>(
        &self,
        table: TablePtr<'_>,
        next: TablePtr<'_>,
        source: &S,
        guard: &Guard,
    ) {
        if self.chain.advance_root(table, next, guard) && next.is_over_threshold(next.occupied()) {
            self.grow(next, source, guard);
        }
    }

    /// Freezes slot `index` of `table` and copies what it froze into `next`, or, if it holds a
    /// tombstone the log says may be forgotten, freezes it as forgotten and copies nothing.
    ///
    /// Only this path forgets (a writer moving on freezes with a plain `freeze`, which copies):
    /// the one `freeze_forgotten` CAS that succeeds decides, so exactly one thread reports the
    /// forgotten record to the log.
    fn migrate_slot<S: RecordSource>(
        &self,
        table: TablePtr<'_>,
        index: usize,
        next: TablePtr<'_>,
        source: &S,
        guard: &Guard,
    ) {
        let slot = table.slot(index);
        let mut entry = slot.load();
        // A slot keeps its key (invariant 1): once resolved, the key is known whatever the slot
        // holds by the time it is frozen.
        let mut key = None;
        let frozen = loop {
            if entry.is_frozen() {
                break entry;
            }
            let Some(address) = entry.address() else {
                // Vacant: seal it (a key may claim it first; then copy what froze).
                break slot.freeze();
            };
            let record = source.resolve(address, guard);
            key = Some(record.key());
            let forget =
                !record.is_live() && (broken_forget_unsettled() || source.may_forget(&record));
            if !forget {
                break slot.freeze();
            }
            match slot.freeze_forgotten(entry) {
                Ok(_) => {
                    source.forgot(&record, guard);
                    next.note_forgotten();
                    return;
                }
                // The key was written meanwhile (or another helper froze the slot): look again.
                Err(now) => entry = now,
            }
        };
        let Some(address) = frozen.address() else {
            return;
        };
        if frozen.is_forgotten() {
            return;
        }
        let key = key.unwrap_or_else(|| source.resolve(address, guard).key());
        self.copy_into(next, key, self.hash_key(key), frozen, source, guard);
    }

    /// Makes sure `table` (or, if it is sealed against `key`, a later table) has an entry for
    /// `key`: installs the thawed `frozen` entry in the key's vacant slot, or does nothing if the
    /// key already has a slot.
    ///
    /// Whatever a later table holds for the key is at least as new as `frozen` (invariant 3), so
    /// an existing entry always wins. Not comparing by (version, address) here also keeps a
    /// relocation (`replace_exact`, same version) from being undone by a late copy of the entry it
    /// replaced. Migration copies never change the live count.
    pub(super) fn copy_into<S: RecordSource>(
        &self,
        table: TablePtr<'_>,
        key: &[u8],
        hash: KeyHash,
        frozen: Entry,
        source: &S,
        guard: &Guard,
    ) {
        debug_assert!(frozen.is_frozen() && !frozen.is_vacant());
        if frozen.is_forgotten() {
            // Left behind on purpose (`migrate_slot`): the successor must not get it back.
            return;
        }
        let copy = frozen.thawed();
        let mut table = table;
        'tables: loop {
            for slot in table.get().probe(hash) {
                let mut entry = slot.load();
                loop {
                    if entry.is_frozen_vacant() {
                        table = table.get().successor_of_frozen(guard);
                        continue 'tables;
                    }
                    if entry.is_vacant() {
                        table.reserve_slot();
                        match slot.compare_exchange(entry, copy) {
                            Ok(()) => return,
                            Err(now) => {
                                table.release_slot();
                                entry = now;
                                continue;
                            }
                        }
                    }
                    if let Some(present) = resolve_if_key(entry, hash, key, source, guard) {
                        debug_assert!(
                            copy.address().is_none_or(|copied| {
                                present.version() >= source.resolve(copied, guard).version()
                            }),
                            "a later table holds an older entry than the one being copied"
                        );
                        return;
                    }
                    break;
                }
            }
            table = self.grow(table, source, guard);
        }
    }
}

/// Whether migrations forget every tombstone, without asking the log whether an older record of
/// its key can still be installed: the twin of `Broken::ForgetUnsettled`, which the loom model
/// of a slow put racing a remove and a resize must catch. A constant `false` in normal builds.
#[inline(always)]
fn broken_forget_unsettled() -> bool {
    #[cfg(seglog_loom)]
    if crate::sync::broken::is(crate::sync::broken::Broken::ForgetUnsettled) {
        return true;
    }
    false
}
