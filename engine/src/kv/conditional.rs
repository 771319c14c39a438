//! Conditional writes: `compare_and_put` and `compare_and_remove`, linearizable with every
//! other operation on their key, and never leaving behind a record of a comparison that failed.
//!
//! The order (docs/design.md, "Conditional writes"): the record is appended as a one-member
//! batch left *unpublished* (`log/batch.rs`); its member is installed in the index by one CAS
//! on the entry whose version was compared (`Index::install_if`), which is the write's
//! linearization point; only then is the batch published, or, if the comparison failed,
//! aborted. So a failed comparison's record is never valid to recovery: before its abort it is
//! an unpublished hole (a crash leaves it so, and recovery seals it), after it an aborted
//! record. A reader that reaches the installed member before the publish reads it (it is
//! whole); a crash before the publish loses it, but the write had not returned.

use seglog_format::RecordKind;

use crate::compaction::repair_order;
use crate::error::{Error, Result};
use crate::index::Conditional;
use crate::log::BatchOp;
use crate::sync::epoch;

use super::Log;
use super::install::{Published, current, install_if};

impl Log {
    /// The version of `key`'s current value: the version its put returned (or its batch's),
    /// kept across compaction and reopen. `None` if the key is absent.
    pub fn version(&self, key: &[u8]) -> Option<u64> {
        let guard = epoch::pin();
        current(&self.inner.index, &self.inner.log, key, &guard).map(|record| record.version)
    }

    /// Stores `value` under `key` only if the key's current version is `expected` (`None`:
    /// only if the key is absent), and returns the new version. Otherwise changes nothing and
    /// returns [`Error::VersionMismatch`] with the version it found; nothing of the failed
    /// write can come back, after a reopen, a crash or a compaction.
    pub fn compare_and_put(&self, key: &[u8], expected: Option<u64>, value: &[u8]) -> Result<u64> {
        self.conditional(RecordKind::Put, key, expected, value)
    }

    /// Removes `key` only if its current version is `expected`; otherwise changes nothing and
    /// returns [`Error::VersionMismatch`] (with `current: None` if the key is absent).
    pub fn compare_and_remove(&self, key: &[u8], expected: u64) -> Result<()> {
        self.conditional(RecordKind::Tombstone, key, Some(expected), &[])
            .map(|_| ())
    }

    fn conditional(
        &self,
        kind: RecordKind,
        key: &[u8],
        expected: Option<u64>,
        value: &[u8],
    ) -> Result<u64> {
        self.refuse_if_read_only()?;
        self.inner.log.check_sizes(key.len(), value.len())?;
        let op = [BatchOp { kind, key, value }];
        loop {
            // A comparison that fails against what is current now writes nothing at all.
            let now = self.version(key);
            if now != expected {
                return Err(Error::VersionMismatch { current: now });
            }
            let publish_first = broken_publish_first();
            let batch = self.append_batch_held(&op, publish_first)?;
            let hold = self.inner.log.install_hold(batch.position);
            let (position, record_bytes) = batch.members[0];
            let record = Published {
                key,
                position,
                version: batch.version(),
                kind,
                record_bytes,
            };
            let guard = epoch::pin();
            self.inner.conditional_race.begin();
            let outcome = install_if(
                &self.inner.index,
                &self.inner.log,
                record,
                expected,
                &self.inner.live_bytes,
                &guard,
            );
            self.inner.conditional_race.end();
            match outcome {
                Conditional::Installed { replaced } => {
                    if !publish_first {
                        self.inner.log.publish_batch(&batch);
                    }
                    if let Some(previous) = replaced
                        && previous.live
                        && kind == RecordKind::Tombstone
                        && previous.position > position
                    {
                        // As in `remove`: the put removed is a relocation's copy that landed
                        // after the tombstone; move the tombstone after it, under its hold.
                        repair_order(
                            &self.inner.log,
                            &self.inner.index,
                            key,
                            previous.position,
                            &guard,
                        )?;
                    }
                    drop(guard);
                    drop(hold);
                    self.after_write()?;
                    return Ok(batch.version());
                }
                Conditional::Mismatch { current } => {
                    drop(guard);
                    if !publish_first {
                        self.inner.log.abort_batch(&batch);
                    }
                    drop(hold);
                    return Err(Error::VersionMismatch { current });
                }
                // A tombstone newer than our record is current: write again, newer.
                Conditional::Stale => {
                    drop(guard);
                    if !publish_first {
                        self.inner.log.abort_batch(&batch);
                    }
                    drop(hold);
                }
            }
        }
    }
}

/// Whether conditional writes publish their record before the comparison is decided: the
/// broken twin `Broken::ConditionalPublishFirst`, whose failed comparisons leave a valid record
/// behind (a put that recovery's highest-version rule then makes current). `false` in normal
/// builds.
#[inline(always)]
fn broken_publish_first() -> bool {
    #[cfg(seglog_loom)]
    if crate::sync::broken::is(crate::sync::broken::Broken::ConditionalPublishFirst) {
        return true;
    }
    false
}
