//! Relocating one record: a copy with the original's version at the head of the log, switched
//! in only if the index still points at the original (FASTER's copy-then-CAS); dropping the
//! tombstones that may go; and keeping every tombstone after the older puts of its key.
//!
//! # The tombstone order (TO)
//!
//! A tombstone may leave the log only if no older put of its key would then be found by
//! recovery, whose rule is "highest version wins". Fresh records' versions are their
//! positions, so older puts sit before the tombstone, except for one kind of record: a
//! relocation's copy keeps its original's old version at a new position. Compaction
//! therefore keeps this invariant:
//!
//! > **TO**: every put of key K whose version is below that of K's newest tombstone T lies at
//! > a lower position than T.
//!
//! A copy can land after T only if the relocation read its original as current before T was
//! installed, and appended it after T was reserved. Three repairs restore TO, all by
//! [`repair_order`] (a copy of T with T's own version, appended after the put's copy and
//! switched in like any relocation): compaction's, when its switch lost to a tombstone that
//! sits before its copy; `Log::remove`'s, when its tombstone's install replaced a put copy
//! that sits after it; and a pending repair (`log/settled.rs`), when the switch lost to a put
//! whose remove was still installing. A crash before a repair leaves the violation on disk;
//! the open repairs it the same way.
//!
//! With TO, a tombstone the index has forgotten may be dropped from a segment all of whose
//! older segments are gone or retiring (`Compactor::relocate`'s `oldest`): every older put of
//! its key lies before it, so in this segment (dropped with it) or in older ones (removed
//! first). A tombstone the index still holds is relocated: the index points at it.

use seglog_format::RecordKind;

use crate::address::Address;
use crate::error::Result;
use crate::index::{Index, IndexedRecord};
use crate::log::{AppendLog, Appended, RecordRef};
use crate::sync::epoch::Guard;

/// What relocating one record did.
pub(crate) enum Relocated {
    /// A newer record of the key is current: the record is left behind with its segment.
    Dead,
    /// A tombstone the index forgot, in the oldest segment: it goes with its segment.
    Dropped,
    /// Copied to the head of the log (the live bytes move with it).
    Moved(Appended),
}

/// Relocates one record of the segment being compacted. `oldest`: whether that segment is the
/// oldest one the log holds (no segment with a lower id exists or is still being retired).
pub(crate) fn relocate_record(
    log: &AppendLog,
    index: &Index,
    record: &RecordRef<'_>,
    oldest: bool,
    guard: &Guard,
) -> Result<Relocated> {
    let address = log.address_of(record.position);
    // Before the read: any tombstone reserved after it lies at or above this segment.
    let tail_segment = log.tail_segment_id();
    let current = index.get(record.key, log, guard);
    if current == Some(address) {
        match relocate_current(log, index, record, tail_segment, guard)? {
            // A tombstone whose switch lost: a newer write of its key won, or a migration
            // forgot it meanwhile. Only the index can say which, and only the second keeps it.
            Relocated::Dead
                if record.kind == RecordKind::Tombstone
                    && index.get(record.key, log, guard).is_none() => {}
            relocated => return Ok(relocated),
        }
    } else if current.is_some() || record.kind != RecordKind::Tombstone {
        // A newer record of the key is current, or the key is absent and this put was removed.
        return Ok(Relocated::Dead);
    }
    // A tombstone whose key the index forgot (or one older than a tombstone it forgot): the
    // newest record of its key in the log, as far as recovery can tell.
    if oldest {
        return Ok(Relocated::Dropped);
    }
    // Older segments may still hold older puts of the key: keep it, after everything. No
    // install follows, so no hold.
    let copy = append_copy(log, record, false)?;
    // Counted in the copy's segment, which keeps it (as forgotten: compaction may drop it
    // there once it is the oldest). Nothing is taken from this segment: the tombstone may never
    // have been counted here (one whose install lost, a copy a lost switch left), and this
    // segment is retired anyway; if the pass fails before that, its live bytes err high, which
    // is safe (`Compactor::relocate`'s segment-level reclaim trusts a zero).
    let bytes = i64::from(record.record_bytes);
    log.add_live_bytes_at(log.address_of(copy.position), bytes, true, guard);
    Ok(Relocated::Moved(copy))
}

/// Relocates a record the index points at: copy, then switch the index from the original to
/// the copy if it still points at the original.
fn relocate_current(
    log: &AppendLog,
    index: &Index,
    record: &RecordRef<'_>,
    tail_segment: u64,
    guard: &Guard,
) -> Result<Relocated> {
    let address = log.address_of(record.position);
    match copy_and_switch(log, index, record, address, guard)? {
        Switched::Yes(copy) => Ok(Relocated::Moved(copy)),
        Switched::No(copy) => {
            if record.kind == RecordKind::Put {
                // A write won the switch; if it was a remove whose tombstone sits before the
                // copy, the copy just broke TO: repair it now. A put may have won instead, with
                // a remove of it reserved before the copy and installed after this look (which
                // that remove cannot see either: it replaced the put, not the copy): look again
                // once every install before the copy is done (`log/settled.rs`,
                // `PendingRepair`).
                repair_order(log, index, record.key, copy.position, guard)?;
                if !broken_unordered_tombstone() {
                    log.defer_order_repair(record.key, copy.position, tail_segment);
                }
            }
            Ok(Relocated::Dead)
        }
    }
}

/// Whether [`copy_and_switch`] switched the index to its copy.
enum Switched {
    Yes(Appended),
    /// The copy is dead on arrival: the index no longer pointed at the original.
    No(Appended),
}

/// Appends a copy of `record` (at index address `address`) and switches the key's entry from
/// the original to it if the index still points at the original (`Index::replace_exact`). On
/// a switch the live bytes move to the copy's segment, before the copy's install hold goes:
/// a pass that sees that segment without holds sees its live bytes too (the segment-level
/// reclaim in `Compactor::relocate` trusts a zero).
fn copy_and_switch(
    log: &AppendLog,
    index: &Index,
    record: &RecordRef<'_>,
    address: Address,
    guard: &Guard,
) -> Result<Switched> {
    let copy = append_copy(log, record, true)?;
    let hold = log.install_hold(copy.position);
    let copy_address = log.address_of(copy.position);
    if !index.replace_exact(record.key, address, copy_address, log, guard) {
        return Ok(Switched::No(copy));
    }
    let bytes = i64::from(record.record_bytes);
    log.add_live_bytes_at(address, -bytes, false, guard);
    log.add_live_bytes_at(copy_address, bytes, false, guard);
    drop(hold);
    Ok(Switched::Yes(copy))
}

/// Restores TO for `key` after a put of an older version landed at `put_position`: while the
/// key's current record is a tombstone before that position, relocate it (a copy with its own
/// version, switched in only if it is still current) to after it. Returns once the current
/// record is a put, a tombstone after `put_position`, or absent.
///
/// The key cannot be forgotten meanwhile: the tombstone it repairs is one whose install the
/// caller saw finish while something still holds the frontier below it. Compaction's repair
/// runs inside the pass that raced the remove (the frontier it computed does not cover the
/// tombstone); `Log::remove`'s runs while it still holds its tombstone's install hold; a
/// pending repair holds the frontier itself until it has run (`log/settled.rs`).
pub(crate) fn repair_order(
    log: &AppendLog,
    index: &Index,
    key: &[u8],
    put_position: u64,
    guard: &Guard,
) -> Result<()> {
    if broken_unordered_tombstone() {
        return Ok(());
    }
    loop {
        let Some((address, current)) = index.get_record(key, log, guard) else {
            return Ok(());
        };
        if current.is_live() || current.position() > put_position {
            return Ok(());
        }
        if let Switched::Yes(_) = copy_and_switch(log, index, &current, address, guard)? {
            return Ok(());
        }
        // A newer write of the key landed: look at it.
    }
}

/// Appends a copy of `record` with its version; with `hold`, the caller installs it and holds
/// it until then (`AppendLog::install_hold`).
pub(crate) fn append_copy(log: &AppendLog, record: &RecordRef<'_>, hold: bool) -> Result<Appended> {
    log.append_record(
        record.kind,
        record.key,
        record.value.len(),
        Some(record.version),
        hold,
        |buf| buf.copy_from_slice(record.value),
    )
}

/// Whether the order repairs are skipped: the twin of `Broken::UnorderedTombstone`, which the
/// loom model of a relocation racing a remove must catch (a removed key comes back after its
/// tombstone is dropped). A constant `false` in normal builds.
#[inline(always)]
fn broken_unordered_tombstone() -> bool {
    #[cfg(seglog_loom)]
    if crate::sync::broken::is(crate::sync::broken::Broken::UnorderedTombstone) {
        return true;
    }
    false
}
