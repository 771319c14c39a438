//! Views of a log under one epoch pin: iterators and `Pinned`, whose values borrow the log.

use crate::address::Address;
use crate::index::Index;
use crate::log::{AppendLog, RecordRef};
use crate::sync::epoch::Guard;

use super::Log;
use super::install::current;

pub(super) fn key_addresses(index: &Index, log: &AppendLog, guard: &Guard) -> Vec<Address> {
    let mut addresses = Vec::with_capacity(index.len());
    index.for_each_key(log, guard, |address| addresses.push(address));
    addresses
}

/// Iterator over owned `(key, value)` pairs; see [`Log::iter`].
pub struct Iter<'a> {
    pub(super) log: &'a Log,
    pub(super) guard: Guard,
    pub(super) addresses: std::vec::IntoIter<Address>,
}

impl Iterator for Iter<'_> {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        for address in self.addresses.by_ref() {
            if let Some(record) = self.log.inner.current_of(address, &self.guard) {
                return Some((record.key.to_vec(), record.value.to_vec()));
            }
        }
        None
    }
}

/// A pinned view of a [`Log`]: reads borrow values from the log without copying, valid while
/// the `Pinned` lives. Not `Send`: it pins the thread that created it.
pub struct Pinned<'a> {
    pub(super) log: &'a Log,
    pub(super) guard: crate::Guard,
}

impl Pinned<'_> {
    /// The current value of `key`, borrowed from the log.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        current(
            &self.log.inner.index,
            &self.log.inner.log,
            key,
            self.guard.epoch(),
        )
        .map(|r| r.value)
    }

    /// The current record of `key` (a put), with its version and position, borrowed from the
    /// log.
    pub fn get_record(&self, key: &[u8]) -> Option<RecordRef<'_>> {
        current(
            &self.log.inner.index,
            &self.log.inner.log,
            key,
            self.guard.epoch(),
        )
    }

    /// Iterates over `(key, value)` pairs borrowed from the log, with [`Log::iter`]'s
    /// consistency.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let guard = self.guard.epoch();
        let addresses = key_addresses(&self.log.inner.index, &self.log.inner.log, guard);
        addresses.into_iter().filter_map(move |address| {
            self.log
                .inner
                .current_of(address, guard)
                .map(|r| (r.key, r.value))
        })
    }

    /// The epoch guard, for reads through [`Log::append_log`].
    pub fn guard(&self) -> &crate::Guard {
        &self.guard
    }
}
