//! Building the index in bulk at open, instead of one [`Index::upsert`] per recovered record.
//!
//! Recovery hands every put and tombstone it finds (from a scan or a hint) to a [`BulkLoad`]:
//! the key's 64-bit hash, the record's address, version, length and kind; no key bytes. Then
//! [`Index::from_bulk`]:
//!
//! 1. sorts the entries by hash, home-slot bits first, so every record of a key is adjacent and
//!    the keys come in the order of their home slots in a table of any capacity
//!    (`KeyHash::home` is multiply-shift, monotonic in those bits). Each load appends its
//!    entries as they come and counts them per bucket (the top [`BUCKET_BITS`] of the hash);
//!    the build then partitions every load into one array by bucket (one thread per load,
//!    each writing into places the counts laid out), and sorts each bucket on its own
//!    (threads take runs of buckets);
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
use std::mem::MaybeUninit;

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

/// Buckets [`Index::from_bulk`] partitions the records into, on the top bits of `order` (so by
/// home slot), before a thread sorts each: 256, about 20 thousand records (640 KB) each for
/// the 5M-record log of the reopen benchmark, which a thread sorts in its L2 cache. Few enough
/// that the partition's writes stay within the TLB's reach: with 4096 buckets every record's
/// store missed it, half the time of collecting the records.
const BUCKET_BITS: u32 = 8;
const BUCKETS: usize = 1 << BUCKET_BITS;

/// The bucket of `order`.
fn bucket_of(order: u64) -> usize {
    (order >> (u64::BITS - BUCKET_BITS)) as usize
}

/// The recovered records of an open, collected for [`Index::from_bulk`]: one per thread that
/// replays; the order of records is irrelevant. Made by [`Index::bulk_load`].
pub(crate) struct BulkLoad {
    hasher: FixedState,
    seed: u64,
    /// Records in the order they came: appended, so collecting them writes memory in order.
    entries: Vec<BulkEntry>,
    /// How many of `entries` fall in each bucket; empty until the first push.
    counts: Vec<usize>,
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
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        self.counts[bucket_of(order)] += 1;
        if self.entries.len() == self.entries.capacity() {
            // Grown by doubling, as `push` would, but each new part asked for huge pages
            // before it is touched (a few hundred megabytes for a large log).
            self.entries.reserve(self.entries.capacity().max(1 << 12));
        }
        self.entries.push(BulkEntry {
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
            entries: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// The index that upserting every record of `loads` would build, built in one pass (see
    /// the module docs). Keys whose winner is a tombstone are kept as a current tombstone
    /// entry, as upserts leave them, if `keep_tombstone_winners`; otherwise they are left out
    /// (the key reads as absent either way). `on_winner` is called once per key the index
    /// holds, with its current record, in no particular order, on the building threads: each
    /// into a tally of its own made by `new_tally`, all of which are returned with the index. A
    /// tombstone winner left out is not reported (nothing points at it, so its bytes are not
    /// live). `on_misordered` gets
    /// each tombstone winner that a put of its key follows in the log (see `resolve_winners`),
    /// with that put's position, for the open to repair.
    ///
    /// `source` must resolve every address in `loads` (the records were just recovered).
    pub(crate) fn from_bulk<S: RecordSource + Sync, T: Send>(
        options: IndexOptions,
        loads: Vec<BulkLoad>,
        source: &S,
        keep_tombstone_winners: bool,
        new_tally: &(impl Fn() -> T + Sync),
        on_winner: &(impl Fn(&mut T, Winner) + Sync),
        mut on_misordered: impl FnMut(Address, u64),
    ) -> (Self, Vec<T>) {
        let loads: Vec<BulkLoad> = loads
            .into_iter()
            .filter(|load| !load.entries.is_empty())
            .inspect(|load| assert_eq!(options.seed, load.seed, "a bulk load hashes as its index"))
            .collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, BUILD_THREADS);
        let (mut entries, bucket_lens) = partition(loads);
        // Each thread takes a run of buckets, sorts each, keeps its winners only, at the
        // bucket's front, and reports them.
        let per_thread = BUCKETS.div_ceil(threads);
        let mut buckets: Vec<&mut [BulkEntry]> = Vec::with_capacity(BUCKETS);
        let mut rest = &mut entries[..];
        for &len in &bucket_lens {
            let (bucket, tail) = rest.split_at_mut(len);
            buckets.push(bucket);
            rest = tail;
        }
        let mut winners = vec![0usize; BUCKETS];
        let (mut keys, mut live) = (0, 0);
        let mut tallies = Vec::with_capacity(threads);
        std::thread::scope(|scope| {
            let runs: Vec<_> = buckets
                .chunks_mut(per_thread)
                .zip(winners.chunks_mut(per_thread))
                .map(|(run, winners)| {
                    scope.spawn(move || {
                        let guard = crate::sync::epoch::pin();
                        let mut sorter = BucketSorter::default();
                        let mut misordered = Vec::new();
                        let mut tally = new_tally();
                        let (mut keys, mut live) = (0, 0);
                        for (bucket, winners) in run.iter_mut().zip(winners) {
                            let sorted = sorter.sort(bucket);
                            let found = resolve_winners(sorted, source, &guard, &mut misordered);
                            let mut kept = 0;
                            for entry in &sorted[..found] {
                                if entry.live || keep_tombstone_winners {
                                    bucket[kept] = *entry;
                                    kept += 1;
                                    live += usize::from(entry.live);
                                    let (address, bytes) = (entry.address(), entry.bytes);
                                    let winner = Winner {
                                        address,
                                        bytes,
                                        live: entry.live,
                                    };
                                    on_winner(&mut tally, winner);
                                }
                            }
                            keys += kept;
                            *winners = kept;
                        }
                        (misordered, tally, keys, live)
                    })
                })
                .collect();
            for run in runs {
                let (misordered, tally, run_keys, run_live) =
                    run.join().expect("bulk sort panicked");
                for (tombstone, put_at) in misordered {
                    on_misordered(tombstone, put_at);
                }
                tallies.push(tally);
                keys += run_keys;
                live += run_live;
            }
        });
        let buckets: Vec<&[BulkEntry]> = buckets
            .into_iter()
            .zip(&winners)
            .map(|(bucket, &kept)| &bucket[..kept])
            .collect();

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
                .map(|run| scope.spawn(move || fill_run(table, run.iter().copied().flatten())))
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
        (index, tallies)
    }
}

/// Every record of `loads` in one array, partitioned by bucket (bucket 0's records first, from
/// every load, then bucket 1's, ...), and each bucket's length. One thread per load writes its
/// records into their buckets' places, which the loads' counts laid out in advance.
fn partition(loads: Vec<BulkLoad>) -> (Vec<BulkEntry>, Vec<usize>) {
    let total: usize = loads.iter().map(|load| load.entries.len()).sum();
    let mut bucket_lens = vec![0usize; BUCKETS];
    for load in &loads {
        for (len, count) in bucket_lens.iter_mut().zip(&load.counts) {
            *len += count;
        }
    }
    let mut entries: Vec<BulkEntry> = Vec::with_capacity(total);
    // Each load's part of each bucket: bucket-major, then load by load.
    let mut parts: Vec<Vec<&mut [MaybeUninit<BulkEntry>]>> =
        loads.iter().map(|_| Vec::with_capacity(BUCKETS)).collect();
    crate::huge_pages::advise(&mut entries.spare_capacity_mut()[..total]);
    let mut rest = &mut entries.spare_capacity_mut()[..total];
    for bucket in 0..BUCKETS {
        for (load, parts) in loads.iter().zip(&mut parts) {
            let (part, tail) = rest.split_at_mut(load.counts[bucket]);
            parts.push(part);
            rest = tail;
        }
    }
    std::thread::scope(|scope| {
        for (load, mut parts) in loads.iter().zip(parts) {
            scope.spawn(move || {
                let mut filled = vec![0usize; BUCKETS];
                for entry in &load.entries {
                    let bucket = bucket_of(entry.order);
                    // Indexed, so a count that disagreed with the records would panic here
                    // rather than write out of the part.
                    parts[bucket][filled[bucket]].write(*entry);
                    filled[bucket] += 1;
                }
                let complete = filled.iter().zip(&parts).all(|(&n, part)| n == part.len());
                assert!(complete, "a bulk load's counts disagree with its records");
            });
        }
    });
    // SAFETY: the parts tile the first `total` elements of the spare capacity (split off one
    // after the other, `total` in all), and each part was written whole: its load's thread
    // wrote `filled[bucket]` elements into it, from the front, and checked that this is the
    // part's length (a thread that panicked instead made the scope panic before this line).
    unsafe { entries.set_len(total) };
    (entries, bucket_lens)
}

/// Sorts one bucket's records by `order`: a counting sort on the bits below the bucket's, into
/// about one record per sub-bucket, then an insertion sort of each sub-bucket (a few records).
/// Linear, where a comparison sort of the bucket was a tenth of a hinted open.
#[derive(Default)]
struct BucketSorter {
    sorted: Vec<BulkEntry>,
    starts: Vec<u32>,
}

impl BucketSorter {
    fn sort(&mut self, bucket: &[BulkEntry]) -> &mut [BulkEntry] {
        let n = bucket.len();
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
        for entry in bucket {
            self.starts[sub(entry) + 1] += 1;
        }
        for i in 1..self.starts.len() {
            self.starts[i] += self.starts[i - 1];
        }
        self.sorted.clear();
        self.sorted.resize(n, BulkEntry::ZERO);
        // `starts[i]` walks from sub-bucket i's start to its end (the next one's start).
        for entry in bucket {
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
            let entries = &load.entries;
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].hash(), index.hash_key(key));
        }
    }

    #[test]
    fn the_bucket_sorter_sorts() {
        let mut rng = crate::splitmix::SplitMix64(7);
        let mut sorter = BucketSorter::default();
        for n in [0usize, 1, 2, 3, 17, 1000, 5000] {
            let mut bucket = Vec::new();
            for i in 0..n {
                let state = rng.next();
                // Few distinct values among the low bits, so equal orders occur.
                let order = (state >> BUCKET_BITS) & !0xff00 | (state % 3) << 8;
                bucket.push(BulkEntry {
                    order,
                    version: i as u64,
                    ..BulkEntry::ZERO
                });
            }
            let mut expected: Vec<u64> = bucket.iter().map(|e| e.order).collect();
            expected.sort_unstable();
            let sorted = sorter.sort(&bucket);
            let got: Vec<u64> = sorted.iter().map(|e| e.order).collect();
            assert_eq!(got, expected, "n = {n}");
        }
    }
}
