//! The write path of `Log`: put, put_with and remove, each an append, an index install and the
//! install hold between them (see the module docs of `crate::kv` for the semantics).

use seglog_format::RecordKind;

use crate::compaction::repair_order;
use crate::error::{Error, Result};
use crate::index::Upserted;
use crate::log::Appended;
use crate::options::SyncPolicy;
use crate::sync::epoch;

use super::install::{Outcome, current, install};
use super::{Log, Published};

impl Log {
    /// Stores `value` under `key` and returns the new record's version. When it returns, the
    /// value is visible to `get` on every thread (unless a concurrent `put` or `remove` of the
    /// same key replaced it meanwhile).
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<u64> {
        let append = || {
            self.append_held(RecordKind::Put, key, value.len(), |buf| {
                buf.copy_from_slice(value);
            })
        };
        let mark = self.inner.conditional_race.mark();
        self.put_appended(key, append()?, mark, |_| append())
    }

    /// Appends a record with an install hold. If the log has no room for another segment and
    /// automatic compaction is on, a compaction pass first finishes the retirements whose
    /// readers are gone and relocates what it can (segments too old for the directory's ring
    /// included), and the append is tried once more: a writer never gets `LogFull` just because
    /// reclaiming space was still in flight.
    fn append_held(
        &self,
        kind: RecordKind,
        key: &[u8],
        value_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Appended> {
        // `fill` runs at most once: `LogFull` comes from the reservation, before any fill.
        let mut fill = Some(fill);
        let mut attempt = || {
            self.inner
                .log
                .append_record(kind, key, value_len, None, true, |buf| {
                    if let Some(fill) = fill.take() {
                        fill(buf);
                    }
                })
        };
        match attempt() {
            Err(Error::LogFull { .. }) if self.inner.compactor.is_auto() => {
                self.inner.make_room();
                attempt()
            }
            result => result,
        }
    }

    /// Stores a `value_len`-byte value under `key`, written in place by `fill` (zero-copy). If
    /// `fill` panics, nothing is stored and the panic continues.
    pub fn put_with(
        &self,
        key: &[u8],
        value_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<u64> {
        let mark = self.inner.conditional_race.mark();
        let first = self.append_held(RecordKind::Put, key, value_len, fill)?;
        // A retry copies the value this call already wrote into the log. `put_appended` still
        // holds the previous record's segment here, so compaction cannot have retired it.
        let again = |previous: Appended| {
            let guard = epoch::pin();
            let value = self.inner.log.read_at(previous.position, &guard)?.value;
            self.append_held(RecordKind::Put, key, value_len, |buf| {
                buf.copy_from_slice(value);
            })
        };
        self.put_appended(key, first, mark, again)
    }

    /// Installs a put, retrying past a tombstone that beat it, or any newer record if a
    /// conditional write may have run meanwhile.
    ///
    /// A put that loses to a higher *put* is simply overwritten (the higher version wins: the put
    /// linearizes just before it). A put that loses to a higher *tombstone* is different: that
    /// remove read the key before this put was installed, so it cannot have removed it (it may
    /// even have reported the key absent). And if a *conditional write* installed while this put
    /// was appended but not installed, it compared the key's version without this put, so the
    /// put cannot be placed before it, nor after it at its own version (the highest version
    /// decides, in memory and at recovery); `mark`, read before the append, tells
    /// (`kv/conditional_race.rs`; found by `kv_linearizable_with_conditional_writes`). In both
    /// cases the put takes effect after the winner: it appends its value again, with a newer
    /// version, and installs that.
    fn put_appended(
        &self,
        key: &[u8],
        mut appended: Appended,
        mut mark: u64,
        mut again: impl FnMut(Appended) -> Result<Appended>,
    ) -> Result<u64> {
        let mut hold = self.inner.log.install_hold(appended.position);
        loop {
            // One pin for the install and the hold's release (whose own pin then nests for
            // the price of a counter), dropped before anything that may wait for the epoch.
            let guard = epoch::pin();
            match self.install_appended(key, RecordKind::Put, appended, &guard) {
                Outcome::Superseded { by_tombstone }
                    if by_tombstone || self.inner.conditional_race.raced_since(mark) =>
                {
                    drop(guard);
                    // Copy the value while this record's hold still keeps its segment from
                    // being compacted away, then let it go (the assignment drops the old hold).
                    mark = self.inner.conditional_race.mark();
                    appended = again(appended)?;
                    hold = self.inner.log.install_hold(appended.position);
                }
                Outcome::Installed { .. } | Outcome::Superseded { .. } => {
                    drop(hold);
                    drop(guard);
                    self.after_write()?;
                    return Ok(appended.version);
                }
            }
        }
    }

    /// The follow-ups of a finished write: automatic compaction, the `EveryWrite` sync.
    pub(super) fn after_write(&self) -> Result<()> {
        if self.inner.compactor.writer_should_check(&self.inner.log) {
            self.inner.maybe_compact();
        } else if let Err(e) = self.inner.compactor.try_finish_retirements(&self.inner.log) {
            // Retired segments leave the disk as soon as their readers are gone, as before the
            // checks were spaced out (a Relaxed load when nothing is retiring).
            self.inner.note_background_error(&e);
        }
        if self.inner.sync_policy == SyncPolicy::EveryWrite {
            self.sync()?;
        }
        Ok(())
    }

    /// Installs a record appended with a hold. The caller holds it in an `InstallHold` and drops
    /// that once it no longer needs the record's segment, then runs [`Log::after_write`].
    pub(super) fn install_appended(
        &self,
        key: &[u8],
        kind: RecordKind,
        appended: Appended,
        guard: &epoch::Guard,
    ) -> Outcome {
        let record = Published {
            key,
            position: appended.position,
            version: appended.version,
            kind,
            record_bytes: appended.record_bytes,
        };
        match install(
            &self.inner.index,
            &self.inner.log,
            record,
            &self.inner.live_bytes,
            guard,
        ) {
            Upserted::Installed { replaced } => Outcome::Installed {
                replaced_put_at: replaced
                    .filter(|previous| previous.live)
                    .map(|previous| previous.position),
            },
            Upserted::Superseded { live, .. } => Outcome::Superseded {
                by_tombstone: !live,
            },
        }
    }

    /// Removes `key` by appending a tombstone. Returns whether it had a value; removing an
    /// absent key writes nothing.
    pub fn remove(&self, key: &[u8]) -> Result<bool> {
        self.refuse_if_read_only()?;
        self.inner.log.check_sizes(key.len(), 0)?;
        loop {
            {
                let guard = epoch::pin();
                if current(&self.inner.index, &self.inner.log, key, &guard).is_none() {
                    return Ok(false);
                }
            }
            let appended = self.append_held(RecordKind::Tombstone, key, 0, |_| {})?;
            let hold = self.inner.log.install_hold(appended.position);
            let guard = epoch::pin();
            let outcome = self.install_appended(key, RecordKind::Tombstone, appended, &guard);
            match outcome {
                Outcome::Installed { replaced_put_at } => {
                    if let Some(put_position) = replaced_put_at
                        && put_position > appended.position
                    {
                        // The put we removed is a relocation's copy that landed after our
                        // tombstone: move the tombstone after it (the tombstone order,
                        // `compaction/relocate.rs`), or a dropped tombstone would let an
                        // older copy of it back.
                        // With the tombstone's hold still open: its segment cannot settle,
                        // so the index cannot forget it, before the repair.
                        repair_order(
                            &self.inner.log,
                            &self.inner.index,
                            key,
                            put_position,
                            &guard,
                        )?;
                    }
                    drop(hold);
                    drop(guard);
                    self.after_write()?;
                    return Ok(replaced_put_at.is_some());
                }
                // A newer record of this key won; our tombstone is dead. Start over against it.
                Outcome::Superseded { .. } => {
                    drop(hold);
                    drop(guard);
                }
            }
        }
    }
}
