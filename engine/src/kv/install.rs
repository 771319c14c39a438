//! Installing a published record in the index, keeping the log's and the segments' live bytes
//! in step, and reading a key's current record back.

use seglog_format::RecordKind;

use crate::address::Address;
use crate::index::{Conditional, Index, IndexedRecord, Previous, RecordSource, Upserted};
use crate::log::{AppendLog, RecordRef};
use crate::stripes::StripedCount;
use crate::sync::epoch::Guard;

impl RecordSource for AppendLog {
    type Record<'g> = RecordRef<'g>;

    fn resolve<'g>(&'g self, address: Address, guard: &'g Guard) -> RecordRef<'g> {
        // Cannot fail: the index holds only addresses of records validated when they were
        // written or recovered, in segments that are retired only once no index table that
        // could hold them is reachable and every thread pinned then has unpinned (see
        // `Compactor::relocate`).
        self.read_address(address, guard)
            .unwrap_or_else(|e| panic!("the index holds an unreadable address: {e}"))
    }

    fn prefetch(&self, address: Address, guard: &Guard) {
        self.prefetch_address(address, guard);
    }

    /// A tombstone may be forgotten once no install of an older record of its key can arrive
    /// (the settled frontier, `log/settled.rs`).
    fn may_forget(&self, record: &RecordRef<'_>) -> bool {
        record.kind == RecordKind::Tombstone && self.installs_settled_below(record.version)
    }

    fn forgot(&self, record: &RecordRef<'_>, guard: &Guard) {
        self.note_forgotten(record, guard);
    }

    fn before_rebuild(&self, guard: &Guard) {
        self.try_advance_settled(guard);
    }
}

impl<'g> IndexedRecord<'g> for RecordRef<'g> {
    fn key(&self) -> &'g [u8] {
        self.key
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn is_live(&self) -> bool {
        self.kind == RecordKind::Put
    }

    fn bytes(&self) -> u32 {
        self.record_bytes
    }

    fn position(&self) -> u64 {
        self.position
    }
}

/// How a write's install went.
#[derive(Debug, Clone, Copy)]
pub(super) enum Outcome {
    /// The record is current; it replaced a put at `replaced_put_at`, if it replaced one.
    Installed { replaced_put_at: Option<u64> },
    /// A record with a higher version was current; nothing changed. `by_tombstone`: it is a
    /// tombstone.
    Superseded { by_tombstone: bool },
}

/// What the index and the space accounting need to know of a published record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Published<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) position: u64,
    pub(crate) version: u64,
    pub(crate) kind: RecordKind,
    pub(crate) record_bytes: u32,
}

impl<'a> From<&RecordRef<'a>> for Published<'a> {
    fn from(record: &RecordRef<'a>) -> Self {
        Self {
            key: record.key,
            position: record.position,
            version: record.version,
            kind: record.kind,
            record_bytes: record.record_bytes,
        }
    }
}

/// The log's live bytes, striped: every key's current record (puts and the tombstones the
/// index holds or forgot; `AppendLog::forgotten_bytes` is taken out by the reader), and the
/// puts among them, which is what `Stats::live_bytes` reports.
#[derive(Default)]
pub(crate) struct LiveBytes {
    pub(crate) records: StripedCount,
    pub(crate) puts: StripedCount,
}

impl LiveBytes {
    /// Counts a current record of `bytes` coming (`delta` +1) or going (−1).
    pub(crate) fn add(&self, bytes: u32, live: bool, delta: i64) {
        let bytes = delta * i64::from(bytes);
        self.records.add(bytes);
        if live {
            self.puts.add(bytes);
        }
    }
}

/// Installs a published record in the index, keeping the log's and the segments' live bytes
/// in step.
pub(crate) fn install(
    index: &Index,
    log: &AppendLog,
    record: Published<'_>,
    live_bytes: &LiveBytes,
    guard: &Guard,
) -> Upserted {
    let live = record.kind == RecordKind::Put;
    let address = log.address_of(record.position);
    let result = index.upsert(record.key, address, record.version, live, log, guard);
    if let Upserted::Installed { replaced } = result {
        count_install(log, record, address, replaced, live_bytes, guard);
    }
    result
}

/// Installs a published (or, for a conditional write, about to be published) record in the
/// index only if `key`'s current version is `expected` ([`Index::install_if`]), keeping the
/// live bytes in step as [`install`] does.
pub(crate) fn install_if(
    index: &Index,
    log: &AppendLog,
    record: Published<'_>,
    expected: Option<u64>,
    live_bytes: &LiveBytes,
    guard: &Guard,
) -> Conditional {
    let live = record.kind == RecordKind::Put;
    let address = log.address_of(record.position);
    let result = index.install_if(
        record.key,
        address,
        record.version,
        live,
        expected,
        log,
        guard,
    );
    if let Conditional::Installed { replaced } = result {
        count_install(log, record, address, replaced, live_bytes, guard);
    }
    result
}

/// The live bytes of an install: the new record's come, the replaced one's go.
fn count_install(
    log: &AppendLog,
    record: Published<'_>,
    address: Address,
    replaced: Option<Previous>,
    live_bytes: &LiveBytes,
    guard: &Guard,
) {
    let live = record.kind == RecordKind::Put;
    live_bytes.add(record.record_bytes, live, 1);
    log.add_live_bytes_at(address, i64::from(record.record_bytes), false, guard);
    if let Some(previous) = replaced {
        live_bytes.add(previous.bytes, previous.live, -1);
        log.add_live_bytes_at(previous.address, -i64::from(previous.bytes), false, guard);
    }
}

/// The current put record of `key`, if any.
pub(super) fn current<'g>(
    index: &Index,
    log: &'g AppendLog,
    key: &[u8],
    guard: &'g Guard,
) -> Option<RecordRef<'g>> {
    let (_, record) = index.get_record(key, log, guard)?;
    (record.kind == RecordKind::Put).then_some(record)
}
