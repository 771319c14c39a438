//! Relocating one record: a copy with the original's version at the head of the log, switched
//! in only if the index still points at the original (FASTER's copy-then-CAS).

use crate::address::Address;
use crate::error::Result;
use crate::index::Index;
use crate::log::{AppendLog, Appended, RecordRef};
use crate::sync::epoch::Guard;

/// Relocates one record if the index still points at it: appends a copy with the record's
/// version and switches the index from the record to the copy only if it still points at the
/// record. Returns the copy if the switch happened (the live bytes move with it); a copy that
/// lost to a concurrent write is left dead.
pub(crate) fn relocate_record(
    log: &AppendLog,
    index: &Index,
    record: &RecordRef<'_>,
    guard: &Guard,
) -> Result<Option<Appended>> {
    let address = log.address_of(record.position);
    if index.get(record.key, log, guard) != Some(address) {
        return Ok(None); // Dead: a newer record of the key is current.
    }
    let copy = log.append_record(
        record.kind,
        record.key,
        record.value.len(),
        Some(record.version),
        true,
        |buf| buf.copy_from_slice(record.value),
    )?;
    let hold = log.install_hold(copy.position);
    let copy_address = log.address_of(copy.position);
    let switched = replace(index, record.key, address, copy_address, log, guard);
    drop(hold);
    if !switched {
        return Ok(None);
    }
    let bytes = i64::from(record.record_bytes);
    log.add_live_bytes_at(address, -bytes, guard);
    log.add_live_bytes_at(copy_address, bytes, guard);
    Ok(Some(copy))
}

/// The index switch of a relocation.
fn replace(
    index: &Index,
    key: &[u8],
    old: Address,
    new: Address,
    log: &AppendLog,
    guard: &Guard,
) -> bool {
    index.replace_exact(key, old, new, log, guard)
}
