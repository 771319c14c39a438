//! The write path shared by `upsert` and `replace_exact`: probe, install, or move on.
//!
//! A writer starts at the root (helping its migration by one chunk if one is running) and works
//! in one table at a time. In a table it walks the probe sequence of key K:
//!
//! - until it sees a frozen slot, it behaves like a plain open-addressing insert: claim the first
//!   vacant slot with a CAS, or CAS K's slot from the entry it compared against;
//! - once it has seen a frozen slot (the table is migrating), it "moves on": it finds K's slot or
//!   the vacant slot where K would go, freezes it, copies the frozen entry into the successor, and
//!   continues in the successor (module docs, invariant 3).
//!
//! A CAS that fails reloads the same slot: the slot keeps its key, so the loser either finds K
//! there (and compares again), another key (and probes on), or a frozen bit (and moves on).

use super::entry::{Entry, KeyHash, Slot};
use super::table::TablePtr;
use super::{Conditional, Index, IndexedRecord, Previous, RecordSource, Upserted, resolve_if_key};
use crate::address::Address;
use crate::sync::epoch::Guard;

/// What a writer does at K's slot.
#[derive(Clone, Copy, Debug)]
pub(super) enum WriteOp {
    /// Install if newer by (version, address).
    Upsert { version: u64, live: bool },
    /// Install only if the current entry is exactly `old_address`.
    Relocate { old_address: Address },
    /// Install only if the key's current record is a put of version `expected` (`None`: the
    /// key is absent, or its current record is a tombstone), and newer by (version, address).
    Conditional {
        version: u64,
        live: bool,
        expected: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug)]
pub(super) enum WriteOutcome {
    Upserted(Upserted),
    Relocated(bool),
    Conditional(Conditional),
}

/// Where a writer goes after working in one table.
enum Step<'g> {
    Done(WriteOutcome),
    /// Continue in this table (the successor of the one just left).
    Next(TablePtr<'g>),
    /// A new key was refused by a migration target; the migration is now finished, start over
    /// from the root.
    Restart,
}

/// What one writer is writing: the key, its hash, and the entry it wants in K's slot.
struct Write<'k> {
    key: &'k [u8],
    hash: KeyHash,
    /// The unfrozen entry carrying the new address.
    new: Entry,
    op: WriteOp,
}

impl Index {
    pub(super) fn write<S: RecordSource>(
        &self,
        key: &[u8],
        address: Address,
        op: WriteOp,
        source: &S,
        guard: &Guard,
    ) -> WriteOutcome {
        let hash = self.hash_key(key);
        let write = Write {
            key,
            hash,
            new: Entry::new(hash.tag(), address),
            op,
        };
        loop {
            self.help_migration(source, guard);
            let mut table = self.chain.root(guard);
            loop {
                match self.write_in(table, &write, source, guard) {
                    Step::Done(outcome) => return outcome,
                    Step::Next(next) => table = next,
                    Step::Restart => break,
                }
            }
        }
    }

    /// Does `write` in `table`, or says where to continue.
    fn write_in<'g, S: RecordSource>(
        &self,
        table: TablePtr<'g>,
        write: &Write<'_>,
        source: &'g S,
        guard: &'g Guard,
    ) -> Step<'g> {
        let mut migrating = false;
        for slot in table.get().probe(write.hash) {
            let mut entry = slot.load();
            loop {
                migrating |= entry.is_frozen();
                let attempt = if migrating {
                    match self.move_on_at(table, slot, entry, write, source, guard) {
                        MoveOn::Go(next) => return Step::Next(next),
                        MoveOn::Reexamine(now) => Err(now),
                        MoveOn::NotHere => break,
                    }
                } else if entry.is_vacant() {
                    // K is not in the table (invariant 1).
                    self.claim_vacant(table, slot, entry, write, source, guard)
                } else if let Some(current) =
                    resolve_if_key(entry, write.hash, write.key, source, guard)
                {
                    self.write_at_key(slot, entry, &current, write)
                        .map(Step::Done)
                } else {
                    break;
                };
                match attempt {
                    Ok(step) => return step,
                    // A CAS lost, or the slot changed: look at the same slot again.
                    Err(now) => entry = now,
                }
            }
        }
        if migrating {
            Step::Next(table.get().successor_of_frozen(guard))
        } else {
            // Every slot holds another key: K is not here and cannot be added.
            Step::Next(self.grow(table, source, guard))
        }
    }

    /// At the first vacant slot of K's probe in an unfrozen stretch: an upsert claims it for K, a
    /// relocation reports K absent. `Err` carries what the slot holds after a lost CAS.
    fn claim_vacant<'g, S: RecordSource>(
        &self,
        table: TablePtr<'g>,
        slot: &Slot,
        vacant: Entry,
        write: &Write<'_>,
        source: &S,
        guard: &Guard,
    ) -> Result<Step<'g>, Entry> {
        let live = match write.op {
            WriteOp::Upsert { live, .. }
            | WriteOp::Conditional {
                live,
                expected: None,
                ..
            } => live,
            WriteOp::Conditional { .. } => {
                let mismatch = Conditional::Mismatch { current: None };
                return Ok(Step::Done(WriteOutcome::Conditional(mismatch)));
            }
            WriteOp::Relocate { .. } => return Ok(Step::Done(WriteOutcome::Relocated(false))),
        };
        // Read before reserving, as `Table::admits_new_key` requires. `table` is the root, or
        // the root's successor; for the root itself the bound is not consulted.
        let root = self.chain.root(guard);
        let pending_copies = if root == table {
            0
        } else {
            root.unmigrated_slots()
        };
        let before = table.reserve_slot();
        if root == table && !table.root_admits_new_key(before) {
            // The root keeps its last eighth for migration's sake (`Table::root_admits_new_key`):
            // make sure it has a successor, seal K out of this slot, and move on from it like
            // any writer that meets a frozen slot.
            table.release_slot();
            self.grow(table, source, guard);
            return Err(slot.freeze());
        }
        if !table.admits_new_key(before, pending_copies) && !self.chain.is_root(table, guard) {
            // A migration target at its bound for new keys (invariant 5): finish the migration,
            // which makes the target the root, and start over.
            table.release_slot();
            self.finish_migration(source, guard);
            return Ok(Step::Restart);
        }
        if let Err(now) = slot.compare_exchange(vacant, write.new) {
            table.release_slot();
            return Err(now);
        }
        self.after_claim(table, before + 1, source, guard);
        self.account_install(None, live);
        Ok(Step::Done(match write.op {
            WriteOp::Conditional { .. } => {
                WriteOutcome::Conditional(Conditional::Installed { replaced: None })
            }
            _ => WriteOutcome::Upserted(Upserted::Installed { replaced: None }),
        }))
    }

    /// At K's unfrozen slot holding `current`, whose record is `record`: compare and CAS.
    /// `Err` carries what the slot holds after a lost CAS.
    fn write_at_key<'g>(
        &self,
        slot: &Slot,
        current: Entry,
        record: &impl IndexedRecord<'g>,
        write: &Write<'_>,
    ) -> Result<WriteOutcome, Entry> {
        let (current_version, current_live) = (record.version(), record.is_live());
        let current_address = current.address().expect("a key's entry has an address");
        let new_address = write.new.address().expect("a new entry has an address");
        match write.op {
            WriteOp::Upsert { version, live } => {
                if (current_version, current_address) >= (version, new_address) {
                    let superseded = Upserted::Superseded {
                        current: current_address,
                        live: current_live,
                    };
                    return Ok(WriteOutcome::Upserted(superseded));
                }
                let replaced = self.install_over(
                    slot,
                    current,
                    record,
                    write,
                    live,
                    broken_blind_index_store(),
                )?;
                Ok(WriteOutcome::Upserted(Upserted::Installed { replaced }))
            }
            WriteOp::Conditional {
                version,
                live,
                expected,
            } => {
                let seen = current_live.then_some(current_version);
                if seen != expected {
                    let mismatch = Conditional::Mismatch { current: seen };
                    return Ok(WriteOutcome::Conditional(mismatch));
                }
                if (current_version, current_address) >= (version, new_address) {
                    // The comparison holds, but the current record (a tombstone written after
                    // ours was reserved) is newer: installed over it, ours would lose to it at
                    // the next open. The caller writes again with a newer version.
                    return Ok(WriteOutcome::Conditional(Conditional::Stale));
                }
                let blind = broken_conditional_blind_store();
                let replaced = self.install_over(slot, current, record, write, live, blind)?;
                Ok(WriteOutcome::Conditional(Conditional::Installed {
                    replaced,
                }))
            }
            WriteOp::Relocate { old_address } => {
                if current_address != old_address {
                    return Ok(WriteOutcome::Relocated(false));
                }
                if !broken_blind_relocate() {
                    slot.compare_exchange(current, write.new)?;
                } else {
                    slot.store_blind(write.new);
                }
                Ok(WriteOutcome::Relocated(true))
            }
        }
    }

    /// Replaces `current` (K's entry, whose record is `record`) with the write's entry by the
    /// CAS an upsert makes (or, in a broken twin, a blind store), and counts the install.
    /// Returns the entry replaced; `Err` carries what the slot holds after a lost CAS.
    fn install_over<'g>(
        &self,
        slot: &Slot,
        current: Entry,
        record: &impl IndexedRecord<'g>,
        write: &Write<'_>,
        live: bool,
        blind: bool,
    ) -> Result<Option<Previous>, Entry> {
        if blind {
            slot.store_blind(write.new);
        } else {
            slot.compare_exchange(current, write.new)?;
        }
        let replaced = Some(Previous {
            address: current.address().expect("a key's entry has an address"),
            live: record.is_live(),
            bytes: record.bytes(),
            position: record.position(),
        });
        self.account_install(replaced, live);
        Ok(replaced)
    }

    /// One slot of a writer's probe once it knows the table is migrating (invariant 3).
    fn move_on_at<'g, S: RecordSource>(
        &self,
        table: TablePtr<'g>,
        slot: &Slot,
        entry: Entry,
        write: &Write<'_>,
        source: &'g S,
        guard: &'g Guard,
    ) -> MoveOn<'g> {
        if entry.is_frozen_vacant() {
            // Sealed while vacant: K is not in this table and never will be.
            return MoveOn::Go(table.get().successor_of_frozen(guard));
        }
        if entry.is_vacant() {
            // Where K would go: seal it, so that no writer adds K here after we write K in the
            // successor. If a key got here first, the frozen entry says which.
            return MoveOn::Reexamine(slot.freeze());
        }
        if resolve_if_key(entry, write.hash, write.key, source, guard).is_none() {
            return MoveOn::NotHere;
        }
        // K's slot: freeze it (it may already be) and make sure the successor has its entry
        // before we write there, so `replaced` and the live count see K's latest old entry.
        let frozen = if entry.is_frozen() {
            entry
        } else {
            slot.freeze()
        };
        let next = table.get().successor_of_frozen(guard);
        self.copy_into(next, write.key, write.hash, frozen, source, guard);
        MoveOn::Go(next)
    }

    /// After claiming a vacant slot, bringing `table` to `occupied`: starts a resize if the
    /// table is the root and over its load factor. A migration target that goes over it is
    /// resized once it becomes the root (see `Index::complete_migration`).
    fn after_claim<S: RecordSource>(
        &self,
        table: TablePtr<'_>,
        occupied: usize,
        source: &S,
        guard: &Guard,
    ) {
        if table.is_over_threshold(occupied)
            && table.successor(guard).is_none()
            && self.chain.is_root(table, guard)
        {
            self.grow(table, source, guard);
        }
    }
}

/// What a moving-on writer does after looking at one slot.
enum MoveOn<'g> {
    /// K is settled in this table (frozen and copied, or sealed out): continue in this table.
    Go(TablePtr<'g>),
    /// The slot changed under us; look at it again.
    Reexamine(Entry),
    /// Another key's slot: probe on.
    NotHere,
}

/// Whether upserts install with the broken blind store instead of the CAS: the twin that the
/// loom models (runtime switch `Broken::BlindIndexStore`) and the linearizability test
/// (`--cfg seglog_broken="blind_index_store"`) must catch. A constant `false` in normal builds.
#[inline(always)]
fn broken_blind_index_store() -> bool {
    #[cfg(seglog_loom)]
    if crate::sync::broken::is(crate::sync::broken::Broken::BlindIndexStore) {
        return true;
    }
    cfg!(seglog_broken = "blind_index_store")
}

/// Whether conditional writes install with a blind store after their comparison instead of the
/// CAS on the entry they compared: the twin of `Broken::ConditionalBlindStore`, which lets two
/// writers expecting the same version both win. A constant `false` in normal builds.
#[inline(always)]
fn broken_conditional_blind_store() -> bool {
    #[cfg(seglog_loom)]
    if crate::sync::broken::is(crate::sync::broken::Broken::ConditionalBlindStore) {
        return true;
    }
    false
}

/// Whether relocations install with the broken blind store instead of the CAS on the old
/// address: the twin of `Broken::BlindRelocate` / `--cfg seglog_broken="relocate_blind"`.
/// A constant `false` in normal builds.
#[inline(always)]
fn broken_blind_relocate() -> bool {
    #[cfg(seglog_loom)]
    if crate::sync::broken::is(crate::sync::broken::Broken::BlindRelocate) {
        return true;
    }
    cfg!(seglog_broken = "relocate_blind")
}
