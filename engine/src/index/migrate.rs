//! Resizing: starting a successor table, migrating slots into it, and moving the root.
//!
//! Migrating slot `i` of table `t` = freeze it, then copy its entry (if any) into `t.next`
//! unless `t.next` already has the key. Both steps are idempotent, so helpers may overlap: a
//! claimer that stalls holds nobody up, because anyone who needs the migration finished can
//! migrate every slot again itself (`finish_migration`). The root moves with a CAS from `t` to
//! `t.next`; only the thread whose CAS succeeds retires `t`.

use super::entry::{Entry, KeyHash};
use super::table::TablePtr;
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
                let (next, created) = table.get().install_successor(self.load_factor, guard);
                if created {
                    // Relaxed: a statistic, read by `stats`.
                    self.resizes.fetch_add(1, Ordering::Relaxed);
                }
                return next;
            }
            self.finish_migration(source, guard);
        }
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

    /// Freezes slot `index` of `table` and copies what it froze into `next`.
    fn migrate_slot<S: RecordSource>(
        &self,
        table: TablePtr<'_>,
        index: usize,
        next: TablePtr<'_>,
        source: &S,
        guard: &Guard,
    ) {
        let frozen = table.slot(index).freeze();
        let Some(address) = frozen.address() else {
            return;
        };
        let key = source.resolve(address, guard).key();
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
