//! Building the index in bulk at open, instead of one [`Index::upsert`] per recovered record.
//!
//! Recovery hands every put and tombstone it finds (from a scan or a hint) to a [`BulkLoad`]:
//! the key's 64-bit hash, the record's address, version, length and kind; no key bytes. Then
//! [`Index::from_bulk`]:
//!
//! 1. sorts the entries by hash, home-slot bits first (a bucket pass on the top bits, then a
//!    small sort per bucket), so every record of a key is adjacent and the keys come in the
//!    order of their home slots in a table of any capacity (`KeyHash::home` is multiply-shift,
//!    monotonic in those bits);
//! 2. resolves each key's winner by the rule upserts use, the highest `(version, address)`,
//!    which makes the order the records were found in irrelevant. Entries of equal hash are
//!    told apart by their keys, read from the log, only when there are several (an overwritten
//!    key, or a true 64-bit collision);
//! 3. sizes one table for the keys it will hold (so nothing ever resizes during the build) and
//!    fills it in home-slot order: each key goes to the first vacant slot at or after its home,
//!    as a plain insert would put it, but the table is written front to back instead of at
//!    random. Two threads fill the two halves; a key whose probe runs into the other half takes
//!    the next vacant slot there by the same CAS an insert uses, so the halves need no
//!    coordination. Keys whose probe runs past the end wrap to the front, after both halves.
//!
//! The result is the index that replaying the records through `upsert` builds (same key →
//! entry map, same live count; slots may differ, which no reader can tell), except that it may
//! leave out keys whose winner is a tombstone (`keep_tombstone_winners`).

use std::hash::{BuildHasher, Hasher};

use foldhash::quality::FixedState;

use super::entry::{Entry, KeyHash};
use super::table::Table;
use super::{Index, IndexOptions, IndexedRecord, RecordSource};
use crate::address::Address;
use crate::sync::epoch::Guard;

/// Bits of the key hash that choose the home slot (the rest are the tag), as in `entry.rs`.
const HOME_BITS: u32 = 49;

/// One recovered put or tombstone, as the bulk build needs it (32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BulkEntry {
    /// The key hash rotated so that its home bits come first: sorting by this sorts by home
    /// slot, and equal hashes are adjacent.
    order: u64,
    version: u64,
    /// The record's index address ([`Address::get`]).
    address: u64,
    bytes: u32,
    live: bool,
}

impl BulkEntry {
    const ZERO: Self = Self {
        order: 0,
        version: 0,
        address: 0,
        bytes: 0,
        live: false,
    };

    fn hash(&self) -> KeyHash {
        KeyHash::new(self.order.rotate_right(u64::BITS - HOME_BITS))
    }

    fn address(&self) -> Address {
        Address::new(self.address)
    }

    /// What upserts compare: the higher wins.
    fn rank(&self) -> (u64, u64) {
        (self.version, self.address)
    }
}

/// Buckets a [`BulkLoad`] sorts its records into as they come, on the top bits of `order`
/// (so by home slot): 4096, about a thousand records each for the 5M-record log of the reopen
/// benchmark, which a thread then sorts in cache.
const BUCKET_BITS: u32 = 12;
const BUCKETS: usize = 1 << BUCKET_BITS;

/// The recovered records of an open, collected for [`Index::from_bulk`]: one per thread that
/// replays; the order of records is irrelevant. Made by [`Index::bulk_load`].
pub(crate) struct BulkLoad {
    hasher: FixedState,
    seed: u64,
    /// Records by the top [`BUCKET_BITS`] bits of `order`; empty until the first push.
    buckets: Vec<Vec<BulkEntry>>,
}

/// A key's winner, as [`Index::from_bulk`] reports it to its caller's space accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Winner {
    pub(crate) address: Address,
    pub(crate) bytes: u32,
    /// A put (else a tombstone).
    pub(crate) live: bool,
}

impl BulkLoad {
    /// Adds a recovered put (`live`) or tombstone of `key` at `address`.
    pub(crate) fn push(
        &mut self,
        key: &[u8],
        address: Address,
        version: u64,
        live: bool,
        bytes: u32,
    ) {
        // As `Index::hash_key` (`write`, no length prefix); the tests check they agree.
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key);
        let order = hasher.finish().rotate_left(u64::BITS - HOME_BITS);
        if self.buckets.is_empty() {
            self.buckets = (0..BUCKETS).map(|_| Vec::new()).collect();
        }
        self.buckets[(order >> (u64::BITS - BUCKET_BITS)) as usize].push(BulkEntry {
            order,
            version,
            address: address.get(),
            bytes,
            live,
        });
    }
}

impl Index {
    /// Whether a bulk build at open keeps keys whose winner is a tombstone, as a current
    /// tombstone entry (what replaying upserts leaves). On for now: compaction relocates the
    /// tombstones the index points at and takes any other record for dead, so a tombstone the
    /// index forgot could be dropped while older puts of its key survive in older segments (a
    /// resurrection at the next open). Switch it off only once compaction handles tombstones
    /// the index does not hold.
    pub(crate) const KEEP_TOMBSTONE_WINNERS: bool = true;

    /// An empty [`BulkLoad`] for [`Index::from_bulk`] with `options`: it hashes keys as that
    /// index will.
    pub(crate) fn bulk_load(options: &IndexOptions) -> BulkLoad {
        BulkLoad {
            hasher: FixedState::with_seed(options.seed),
            seed: options.seed,
            buckets: Vec::new(),
        }
    }

    /// The index that upserting every record of `loads` would build, built in one pass (see
    /// the module docs). Keys whose winner is a tombstone are kept as a current tombstone
    /// entry, as upserts leave them, if `keep_tombstone_winners`; otherwise they are left out
    /// (the key reads as absent either way). `on_winner` is called once per key the index
    /// holds, with its current record, in no particular order: a tombstone winner left out is
    /// not reported (nothing points at it, so its bytes are not live). `on_misordered` gets
    /// each tombstone winner that a put of its key follows in the log (see `resolve_winners`),
    /// with that put's position, for the open to repair.
    ///
    /// `source` must resolve every address in `loads` (the records were just recovered).
    pub(crate) fn from_bulk<S: RecordSource + Sync>(
        options: IndexOptions,
        loads: Vec<BulkLoad>,
        source: &S,
        keep_tombstone_winners: bool,
        mut on_winner: impl FnMut(Winner),
        mut on_misordered: impl FnMut(Address, u64),
    ) -> Self {
        let mut loads: Vec<Vec<Vec<BulkEntry>>> = loads
            .into_iter()
            .filter(|load| !load.buckets.is_empty())
            .map(|load| {
                assert_eq!(options.seed, load.seed, "a bulk load hashes as its index");
                load.buckets
            })
            .collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, BUILD_THREADS);
        // Each thread takes a run of buckets: gathers each bucket from every load, sorts it,
        // and keeps its winners only.
        let per_thread = BUCKETS.div_ceil(threads);
        let mut buckets: Vec<Vec<BulkEntry>> = (0..BUCKETS).map(|_| Vec::new()).collect();
        {
            let mut parts: Vec<Vec<&mut [Vec<BulkEntry>]>> =
                (0..threads).map(|_| Vec::new()).collect();
            for load in &mut loads {
                for (t, chunk) in load.chunks_mut(per_thread).enumerate() {
                    parts[t].push(chunk);
                }
            }
            std::thread::scope(|scope| {
                let threads: Vec<_> = buckets
                    .chunks_mut(per_thread)
                    .zip(parts)
                    .map(|(out, mut from)| {
                        scope.spawn(move || {
                            let guard = crate::sync::epoch::pin();
                            let mut sorter = BucketSorter::default();
                            let mut misordered = Vec::new();
                            for (b, bucket) in out.iter_mut().enumerate() {
                                let sorted = sorter.sort(from.iter().map(|load| &load[b][..]));
                                let winners =
                                    resolve_winners(sorted, source, &guard, &mut misordered);
                                // Into the first load's allocation for this bucket, if any.
                                *bucket = from
                                    .first_mut()
                                    .map(|load| std::mem::take(&mut load[b]))
                                    .unwrap_or_default();
                                bucket.clear();
                                bucket.extend(
                                    sorted[..winners]
                                        .iter()
                                        .filter(|entry| entry.live || keep_tombstone_winners),
                                );
                                for load in &mut from {
                                    load[b] = Vec::new();
                                }
                            }
                            misordered
                        })
                    })
                    .collect();
                for thread in threads {
                    for (tombstone, put_at) in thread.join().expect("bulk sort panicked") {
                        on_misordered(tombstone, put_at);
                    }
                }
            });
        }
        drop(loads);
        let (mut keys, mut live) = (0, 0);
        for entry in buckets.iter().flatten() {
            keys += 1;
            live += usize::from(entry.live);
            on_winner(Winner {
                address: entry.address(),
                bytes: entry.bytes,
                live: entry.live,
            });
        }

        // One table for every key it will hold, at the load factor: never resized while built.
        let mut sized = options;
        let needed = (keys as f64 / options.load_factor()).ceil() as usize + 1;
        sized.initial_capacity = options.capacity().max(needed);
        let index = Index::new(sized);
        let guard = crate::sync::epoch::pin();
        let table = index.chain.root(&guard).get();
        let wrapped: Vec<BulkEntry> = std::thread::scope(|scope| {
            let runs: Vec<_> = buckets
                .chunks(per_thread)
                .map(|run| scope.spawn(move || fill_run(table, run.iter().flatten())))
                .collect();
            runs.into_iter()
                .flat_map(|run| run.join().expect("bulk fill panicked"))
                .collect()
        });
        for entry in wrapped {
            insert_probing(table, entry);
        }
        // One reservation per claimed slot, as `claim_vacant` makes them: the table's count of
        // claimed slots drives its resize and its admission bound.
        table.reserve_slots(keys);
        // A counter (Relaxed inside); the index reaches other threads through whatever shares
        // the `Log` (an `Arc`, a thread spawn), which orders it.
        index.live_keys.add(live as i64);
        drop(guard);
        index
    }
}

/// Sorts one bucket's records (from several loads) by `order`: a counting sort on the bits
/// below the bucket's, into about one record per sub-bucket, then an insertion sort of each
/// sub-bucket (a few records). Linear, where a comparison sort of the bucket was a tenth of a
/// hinted open.
#[derive(Default)]
struct BucketSorter {
    sorted: Vec<BulkEntry>,
    starts: Vec<u32>,
}

impl BucketSorter {
    fn sort<'p>(
        &mut self,
        parts: impl Iterator<Item = &'p [BulkEntry]> + Clone,
    ) -> &mut [BulkEntry] {
        let n: usize = parts.clone().map(<[BulkEntry]>::len).sum();
        let sub_bits = (usize::BITS - n.leading_zeros()).min(16);
        let shift = u64::BITS - sub_bits;
        let sub = |entry: &BulkEntry| {
            if sub_bits == 0 {
                0
            } else {
                ((entry.order << BUCKET_BITS) >> shift) as usize
            }
        };
        self.starts.clear();
        self.starts.resize((1 << sub_bits) + 1, 0);
        for entry in parts.clone().flatten() {
            self.starts[sub(entry) + 1] += 1;
        }
        for i in 1..self.starts.len() {
            self.starts[i] += self.starts[i - 1];
        }
        self.sorted.clear();
        self.sorted.resize(n, BulkEntry::ZERO);
        // `starts[i]` walks from sub-bucket i's start to its end (the next one's start).
        for entry in parts.flatten() {
            let at = &mut self.starts[sub(entry)];
            self.sorted[*at as usize] = *entry;
            *at += 1;
        }
        let mut from = 0;
        for &end in &self.starts[..self.starts.len() - 1] {
            let run = &mut self.sorted[from..end as usize];
            for i in 1..run.len() {
                let mut j = i;
                while j > 0 && run[j - 1].order > run[j].order {
                    run.swap(j - 1, j);
                    j -= 1;
                }
            }
            from = end as usize;
        }
        &mut self.sorted
    }
}

/// Threads that build the index at open, at most.
const BUILD_THREADS: usize = 4;

/// Moves each key's winner to the front of `entries` (sorted by `order`, in order) and returns
/// how many keys there are. Entries of one hash are adjacent; among them, keys are compared in
/// the log. A key whose winner is a tombstone with one of its key's puts at a higher position
/// (a relocation's copy that landed after it, the one break of the tombstone order a crash can
/// leave, `compaction/relocate.rs`) goes to `misordered` with that put's position.
fn resolve_winners<S: RecordSource>(
    entries: &mut [BulkEntry],
    source: &S,
    guard: &Guard,
    misordered: &mut Vec<(Address, u64)>,
) -> usize {
    let mut out = 0;
    let mut at = 0;
    // Per key: the key, its best entry and that entry's position, its highest put position.
    let mut keys: Vec<(&[u8], BulkEntry, u64, Option<u64>)> = Vec::new();
    while at < entries.len() {
        let order = entries[at].order;
        let mut end = at + 1;
        while end < entries.len() && entries[end].order == order {
            end += 1;
        }
        if end == at + 1 {
            entries[out] = entries[at];
            out += 1;
        } else {
            // Several records of one hash: group them by key (almost always one key).
            keys.clear();
            for entry in &entries[at..end] {
                let record = source.resolve(entry.address(), guard);
                let (key, position) = (record.key(), record.position());
                let put_at = entry.live.then_some(position);
                match keys.iter_mut().find(|(k, ..)| *k == key) {
                    Some((_, best, best_at, last_put)) => {
                        *last_put = (*last_put).max(put_at);
                        if best.rank() < entry.rank() {
                            (*best, *best_at) = (*entry, position);
                        }
                    }
                    None => keys.push((key, *entry, position, put_at)),
                }
            }
            for &(_, winner, winner_at, last_put) in &keys {
                if let Some(put_at) = last_put.filter(|&put_at| !winner.live && put_at > winner_at)
                {
                    misordered.push((winner.address(), put_at));
                }
                entries[out] = winner;
                out += 1;
            }
        }
        at = end;
    }
    out
}

/// Inserts `entries` (sorted by home slot) at the first vacant slot at or after each one's
/// home, scanning forward from where the previous one went: the slots between are all claimed
/// (by this run, or by the thread filling the run before, which may spill into this one), so
/// each key ends where a linear-probing insert would put it. Returns the entries left when the
/// scan reached the end of the table, for [`insert_probing`].
fn fill_run<'e>(table: &Table, entries: impl Iterator<Item = &'e BulkEntry>) -> Vec<BulkEntry> {
    let capacity = table.capacity();
    let mut wrapped = Vec::new();
    let mut cursor = 0;
    for entry in entries {
        let hash = entry.hash();
        let mut at = hash.home(capacity).max(cursor);
        let new = Entry::new(hash.tag(), entry.address());
        // The CAS an insert makes (AcqRel; see `Slot::compare_exchange`): the thread filling
        // the run before may have claimed this slot.
        while at < capacity && table.slot(at).compare_exchange(Entry::EMPTY, new).is_err() {
            at += 1;
        }
        if at == capacity {
            wrapped.push(*entry);
            cursor = capacity;
        } else {
            cursor = at + 1;
        }
    }
    wrapped
}

/// Inserts `entry` at the first vacant slot of its probe sequence (wrapping).
fn insert_probing(table: &Table, entry: BulkEntry) {
    let hash = entry.hash();
    let new = Entry::new(hash.tag(), entry.address());
    let claimed = table
        .probe(hash)
        .any(|slot| slot.compare_exchange(Entry::EMPTY, new).is_ok());
    // The table has more slots than keys (sized at a load factor below 1).
    assert!(claimed, "bulk index table full");
}

#[cfg(all(test, not(seglog_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_bulk_load_hashes_as_its_index() {
        let options = IndexOptions {
            seed: 42,
            ..IndexOptions::default()
        };
        let index = Index::new(options);
        for key in [&b""[..], b"a", b"key-000000000001", &[7u8; 300]] {
            let mut load = Index::bulk_load(&options);
            load.push(key, Address::new(8), 1, true, 48);
            let entries: Vec<_> = load.buckets.iter().flatten().collect();
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].hash(), index.hash_key(key));
        }
    }

    #[test]
    fn the_bucket_sorter_sorts() {
        let mut rng = crate::splitmix::SplitMix64(7);
        let mut sorter = BucketSorter::default();
        for n in [0usize, 1, 2, 3, 17, 1000, 5000] {
            let mut parts = [Vec::new(), Vec::new(), Vec::new()];
            for i in 0..n {
                let state = rng.next();
                // Few distinct values among the low bits, so equal orders occur.
                let order = (state >> BUCKET_BITS) & !0xff00 | (state % 3) << 8;
                parts[i % 3].push(BulkEntry {
                    order,
                    version: i as u64,
                    ..BulkEntry::ZERO
                });
            }
            let mut expected: Vec<u64> = parts.iter().flatten().map(|e| e.order).collect();
            expected.sort_unstable();
            let sorted = sorter.sort(parts.iter().map(Vec::as_slice));
            let got: Vec<u64> = sorted.iter().map(|e| e.order).collect();
            assert_eq!(got, expected, "n = {n}");
        }
    }
}
