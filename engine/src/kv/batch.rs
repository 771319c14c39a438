//! Write batches: several puts and removes that reach the log as one record (`log/batch.rs`),
//! so a crash keeps all of them or none, under one version.
//!
//! While a batch is being installed its keys change one at a time: a reader of several keys can
//! see some at the batch's values and others not yet (installs are in the batch's order, the
//! last operation on each key kept). Each key's change is atomic, and once `write_batch`
//! returns every key reads its batch value (or a later write's) on every thread. A reader that
//! needs all of a batch or none of it checks one key written last (the batch's own version,
//! [`Log::version`], names it) — or keeps the keys in one value.

use std::collections::HashMap;

use seglog_format::RecordKind;

use crate::compaction::repair_order;
use crate::error::{Error, Result};
use crate::log::{Appended, AppendedBatch, BatchOp};
use crate::sync::epoch;

use super::Log;
use super::install::Outcome;

/// Puts and removes to apply together with [`Log::write_batch`]: crash-atomic, under one
/// version. Holds its own copies of keys and values.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use seglog::{Batch, Log};
/// let log = Log::open(dir.path())?;
/// let mut batch = Batch::new();
/// batch.put(b"row/7", b"...").remove(b"idx/old").put(b"idx/new", b"7");
/// let version = log.write_batch(&batch)?;
/// assert_eq!(log.version(b"row/7"), Some(version));
/// # Ok::<(), seglog::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
    /// Every key and value, back to back: one allocation that grows, not two per operation.
    bytes: Vec<u8>,
}

/// One operation: its kind, and where its key and value lie in [`Batch::bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Op {
    kind: RecordKind,
    start: usize,
    key_len: usize,
    value_len: usize,
}

impl Batch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put of `value` under `key` (a copy of each).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        self.push(RecordKind::Put, key, value)
    }

    /// Adds a removal of `key`.
    pub fn remove(&mut self, key: &[u8]) -> &mut Self {
        self.push(RecordKind::Tombstone, key, &[])
    }

    fn push(&mut self, kind: RecordKind, key: &[u8], value: &[u8]) -> &mut Self {
        self.ops.push(Op {
            kind,
            start: self.bytes.len(),
            key_len: key.len(),
            value_len: value.len(),
        });
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
        self
    }

    /// The operations added, counting each one even where a later one on the same key will win.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no operation was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn key(&self, op: &Op) -> &[u8] {
        &self.bytes[op.start..op.start + op.key_len]
    }

    fn value(&self, op: &Op) -> &[u8] {
        let from = op.start + op.key_len;
        &self.bytes[from..from + op.value_len]
    }

    /// The operations the log writes: the last one on each key, in the order those came.
    fn last_on_each_key(&self) -> Vec<BatchOp<'_>> {
        let op_of = |op: &Op| BatchOp {
            kind: op.kind,
            key: self.key(op),
            value: self.value(op),
        };
        if self.ops.len() == 1 {
            return vec![op_of(&self.ops[0])];
        }
        // foldhash, not the default SipHash: this map is built for every batch.
        let mut last: HashMap<&[u8], usize, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(self.ops.len(), Default::default());
        for (i, op) in self.ops.iter().enumerate() {
            last.insert(self.key(op), i);
        }
        if last.len() == self.ops.len() {
            // No key twice: every operation is the last on its key.
            return self.ops.iter().map(op_of).collect();
        }
        self.ops
            .iter()
            .enumerate()
            .filter(|&(i, op)| last[self.key(op)] == i)
            .map(|(_, op)| op_of(op))
            .collect()
    }
}

impl Log {
    /// Applies every operation of `batch` (the last one on each key, where it has several) and
    /// returns the batch's version, which every key it puts gets: after any crash, all of the
    /// batch is in the log or none of it (see the module docs of `kv::batch` for what a
    /// concurrent reader sees meanwhile). One exception to the version: a key whose member
    /// lost a race to a newer write of the same key while a conditional write ran somewhere in
    /// the log is written again after it, as `put` is, with a newer version ([`Log::version`]
    /// tells); without conditional writes racing the batch, every key has the batch's version.
    ///
    /// Removing a key that is absent writes a tombstone all the same (the batch is decided
    /// before it is written). An empty batch writes nothing and returns 0, a version no record
    /// has. A batch too large for one segment is refused with [`Error::BatchTooLarge`] before
    /// anything is written; keys and values too large for any record, as [`Log::put`] refuses
    /// them.
    pub fn write_batch(&self, batch: &Batch) -> Result<u64> {
        self.refuse_if_read_only()?;
        if batch.is_empty() {
            return Ok(0);
        }
        let ops = batch.last_on_each_key();
        let mark = self.inner.conditional_race.mark();
        if broken_members_alone() {
            return self.write_members_alone(&ops);
        }
        let appended = self.append_batch_held(&ops, true)?;
        let version = appended.version();
        let hold = self.inner.log.install_hold(appended.position);
        let (mut again, mut remove_again) = (Vec::new(), Vec::new());
        for (op, &(position, record_bytes)) in ops.iter().zip(&appended.members) {
            let member = Appended {
                position,
                version,
                record_bytes,
            };
            let guard = epoch::pin();
            match self.install_appended(op.key, op.kind, member, &guard) {
                // A newer write of the key was installed first, and a conditional write may
                // have compared the key meanwhile (`kv/conditional_race.rs`): as for `put`, the
                // member takes effect after the winner, written again with a newer version (the
                // one case where a key of a batch ends up with another version than the
                // batch's). Otherwise it linearizes just before the winner (a remove reports
                // only that the key had a value) and keeps the batch's version.
                Outcome::Superseded { .. } if self.inner.conditional_race.raced_since(mark) => {
                    if op.kind == RecordKind::Put {
                        again.push(op);
                    } else {
                        remove_again.push(op);
                    }
                }
                Outcome::Installed {
                    replaced_put_at: Some(put_position),
                } if op.kind == RecordKind::Tombstone && put_position > position => {
                    // As in `remove`: the put removed is a relocation's copy that landed after
                    // the tombstone; move the tombstone after it, under the batch's hold.
                    repair_order(
                        &self.inner.log,
                        &self.inner.index,
                        op.key,
                        put_position,
                        &guard,
                    )?;
                }
                Outcome::Installed { .. } | Outcome::Superseded { .. } => {}
            }
        }
        drop(hold);
        for op in again {
            self.put(op.key, op.value)?;
        }
        for op in remove_again {
            self.remove(op.key)?;
        }
        self.after_write()?;
        Ok(version)
    }

    /// Appends a batch with an install hold, as [`Log::append_held`] appends a record: if the
    /// log is full and automatic compaction is on, a pass makes room and the append is tried
    /// once more.
    pub(super) fn append_batch_held(
        &self,
        ops: &[BatchOp<'_>],
        publish: bool,
    ) -> Result<AppendedBatch> {
        match self.inner.log.append_batch(ops, publish) {
            Err(Error::LogFull { .. }) if self.inner.compactor.is_auto() => {
                self.inner.make_room();
                self.inner.log.append_batch(ops, publish)
            }
            result => result,
        }
    }
}

impl Log {
    /// The broken twin of [`Log::write_batch`] (`Broken::BatchMembersAlone`): each operation
    /// written and installed as a record of its own, so a crash between two keeps part of the
    /// batch. Returns the first put's version (there is no one version of the batch).
    fn write_members_alone(&self, ops: &[BatchOp<'_>]) -> Result<u64> {
        let mut version = 0;
        for op in ops {
            if op.kind == RecordKind::Put {
                let written = self.put(op.key, op.value)?;
                if version == 0 {
                    version = written;
                }
            } else {
                self.remove(op.key)?;
            }
        }
        Ok(version)
    }
}

/// Whether batches are written member by member: the broken twin `Broken::BatchMembersAlone`.
/// `false` in normal builds.
#[inline(always)]
fn broken_members_alone() -> bool {
    #[cfg(seglog_loom)]
    if crate::sync::broken::is(crate::sync::broken::Broken::BatchMembersAlone) {
        return true;
    }
    false
}
