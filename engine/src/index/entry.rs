//! The index's state word: one packed `u64` per slot, and the atomic slot that holds it.
//!
//! ```text
//!  63  62  61              48 47                                              0
//! +---+---+------------------+-------------------------------------------------+
//! | F | G |  tag (14 bits)   |             address >> 3 (48 bits)              |
//! +---+---+------------------+-------------------------------------------------+
//! ```
//!
//! - `F` (FROZEN): the table holding the slot is being migrated; the slot is read-only from the
//!   moment it is set, and it is never cleared.
//! - `G` (FORGOTTEN): set only together with `F`, by the one CAS that freezes a tombstone the
//!   migration leaves behind instead of copying (see `Index::migrate_slot`). The slot keeps its
//!   address, so probes of other keys still pass it as before.
//! - `tag`: 14 hash bits that the home slot does not use, so most probes skip a slot without
//!   asking the log for its key.
//! - `address >> 3`: the record's log address divided by its 8-byte alignment. Addresses are never
//!   0, so an address field of 0 means the slot is vacant.
//!
//! Every slot goes through `Empty → Holds(K)* → Frozen`, `Empty → Holds(K)* → Frozen+Forgotten`
//! or `Empty → FrozenEmpty`: once it holds a key K it holds only K's entries, and once frozen it
//! never changes again.

use crate::address::{self, Address};
use crate::sync::{AtomicU64, Ordering};

/// Bit 63: the slot is frozen (its table is migrating).
const FROZEN_SHIFT: u32 = 63;
const FROZEN: u64 = 1 << FROZEN_SHIFT;

/// Bit 62: the frozen slot's tombstone was left behind by the migration (never set without
/// [`FROZEN`]).
const FORGOTTEN_SHIFT: u32 = 62;
const FORGOTTEN: u64 = 1 << FORGOTTEN_SHIFT;

/// Bits 48..62: the tag.
const TAG_SHIFT: u32 = 48;
const TAG_BITS: u32 = 14;
const TAG_MASK: u64 = ((1 << TAG_BITS) - 1) << TAG_SHIFT;

/// Bits 0..48: the address divided by its alignment ([`Address::packed`]).
const ADDRESS_BITS: u32 = 48;
const ADDRESS_MASK: u64 = (1 << ADDRESS_BITS) - 1;

const _: () = assert!(
    address::ADDRESS_BITS - address::ADDRESS_ALIGN_SHIFT == ADDRESS_BITS,
    "a packed address fills the address field exactly"
);
const _: () = assert!(
    TAG_SHIFT == ADDRESS_BITS,
    "tag sits right above the address"
);
const _: () = assert!(
    TAG_SHIFT + TAG_BITS == FORGOTTEN_SHIFT && FORGOTTEN_SHIFT + 1 == FROZEN_SHIFT,
    "forgotten bit sits right above the tag, frozen bit above it"
);
const _: () = assert!(FROZEN & TAG_MASK == 0 && FORGOTTEN & TAG_MASK == 0);
const _: () = assert!(TAG_MASK & ADDRESS_MASK == 0);

/// The 14 hash bits stored in an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tag(u16);

/// Bits of a key's hash that choose its home slot: the low 49 (bit 49 is unused since the tag
/// gave a bit to [`FORGOTTEN`]; keeping 49 home bits keeps every key's home slot, and the loom
/// models' layouts, unchanged).
const HOME_BITS: u32 = 49;
const HOME_MASK: u64 = (1 << HOME_BITS) - 1;
const _: () = assert!(
    HOME_BITS + TAG_BITS < u64::BITS,
    "home and tag bits are disjoint"
);

/// A key's 64-bit hash: the low 49 bits choose the home slot, the top 14 bits are the tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct KeyHash(u64);

impl KeyHash {
    pub(super) fn new(hash: u64) -> Self {
        Self(hash)
    }

    /// The top [`TAG_BITS`] bits of the hash. Home slots use only the low 49 bits, so the tag
    /// is independent of the home slot at every capacity.
    pub(super) fn tag(self) -> Tag {
        Tag((self.0 >> (u64::BITS - TAG_BITS)) as u16)
    }

    /// The home slot in a table of `capacity` slots (any capacity, not only powers of two).
    ///
    /// Multiply-shift ("fastrange", Lemire 2019): the 49 home bits read as a fraction of 2^49,
    /// times the capacity. One widening multiply instead of a division, and it lets tables grow
    /// by 1.5x (see `Table::successor_capacity`).
    pub(super) fn home(self, capacity: usize) -> usize {
        let scaled = u128::from(self.0 & HOME_MASK) * capacity as u128;
        // Less than `capacity`, so it fits: the fraction is below 1.
        (scaled >> HOME_BITS) as usize
    }
}

/// A snapshot of one slot's word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry(u64);

impl Entry {
    /// A slot no key has claimed.
    pub(super) const EMPTY: Entry = Entry(0);

    /// An unfrozen entry for the record of a key with `tag` at `address`.
    pub(super) fn new(tag: Tag, address: Address) -> Self {
        Self(((tag.0 as u64) << TAG_SHIFT) | address.packed())
    }

    /// The record address, or `None` if no key has claimed the slot.
    pub(super) fn address(self) -> Option<Address> {
        Address::unpack(self.0 & ADDRESS_MASK)
    }

    /// Whether no key has claimed the slot (frozen or not).
    pub(super) fn is_vacant(self) -> bool {
        self.0 & ADDRESS_MASK == 0
    }

    /// Whether the slot is frozen: its table is migrating and the slot will never change again.
    pub(super) fn is_frozen(self) -> bool {
        self.0 & FROZEN != 0
    }

    /// Whether the slot is frozen with its tombstone left behind by the migration: the
    /// successor gets no copy of it.
    pub(super) fn is_forgotten(self) -> bool {
        self.0 & FORGOTTEN != 0
    }

    /// Whether the slot was sealed while vacant: no key can ever be added to it.
    pub(super) fn is_frozen_vacant(self) -> bool {
        self.is_frozen() && self.is_vacant()
    }

    pub(super) fn tag(self) -> Tag {
        Tag(((self.0 & TAG_MASK) >> TAG_SHIFT) as u16)
    }

    /// This entry with the frozen bit set (what [`Slot::freeze`] leaves behind).
    pub(super) fn frozen(self) -> Self {
        Self(self.0 | FROZEN)
    }

    /// This entry without the frozen (and forgotten) bit: what migration copies into the next
    /// table.
    pub(super) fn thawed(self) -> Self {
        Self(self.0 & !(FROZEN | FORGOTTEN))
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("frozen", &self.is_frozen())
            .field("forgotten", &self.is_forgotten())
            .field("tag", &self.tag().0)
            .field("address", &self.address())
            .finish()
    }
}

/// One slot of a table: an atomic [`Entry`].
///
/// The orderings are fixed here, once, rather than at call sites. The protocol they implement:
/// a record is published in the log *before* its address is installed with a Release RMW
/// (`compare_exchange`), and every reader of a slot loads with Acquire before it resolves the
/// address, so the record's bytes are visible to `RecordSource::resolve`. `freeze` is an RMW, so
/// it continues the release sequence of the install it freezes.
pub(super) struct Slot(AtomicU64);

impl Slot {
    pub(super) fn new() -> Self {
        Self(AtomicU64::new(Entry::EMPTY.0))
    }

    /// Loads the slot.
    ///
    /// Acquire: pairs with the Release half of [`Slot::compare_exchange`] (the installs in
    /// `Index::claim_vacant`, `Index::write_at_key` and `Index::copy_into`) and of
    /// [`Slot::freeze`], so the record behind the address, and the successor table behind a
    /// frozen bit, are visible.
    pub(super) fn load(&self) -> Entry {
        Entry(self.0.load(Ordering::Acquire))
    }

    /// Replaces `current` with `new` if the slot still holds `current`; on failure returns what
    /// it holds now.
    ///
    /// AcqRel on success: Release publishes the record at `new`'s address (pairs with the Acquire
    /// in [`Slot::load`]); Acquire makes the replaced record visible to the caller. Acquire on
    /// failure: the caller goes on to resolve the entry it got back.
    pub(super) fn compare_exchange(&self, current: Entry, new: Entry) -> Result<(), Entry> {
        self.0
            .compare_exchange(current.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(Entry)
    }

    /// Sets the frozen bit and returns the frozen entry. Idempotent; wait-free.
    ///
    /// AcqRel: Acquire so the caller may resolve the entry it froze (pairs with the install's
    /// Release); Release so that whoever loads the frozen bit also sees the successor table the
    /// freezer had loaded (the `next` pointer; pairs with the Acquire in [`Slot::load`]).
    pub(super) fn freeze(&self) -> Entry {
        Entry(self.0.fetch_or(FROZEN, Ordering::AcqRel)).frozen()
    }

    /// Freezes the slot with its tombstone left behind, if it still holds exactly the unfrozen
    /// `current`; on failure returns what it holds now. Exactly one thread's call succeeds for
    /// a slot (a frozen slot never changes), so the one that succeeds does the bookkeeping of
    /// the forgotten record.
    ///
    /// AcqRel on success, Acquire on failure: as [`Slot::freeze`], whose role this CAS plays
    /// (it continues the install's release sequence and publishes the freezer's load of the
    /// successor pointer).
    pub(super) fn freeze_forgotten(&self, current: Entry) -> Result<Entry, Entry> {
        debug_assert!(!current.is_frozen() && !current.is_vacant());
        let forgotten = Entry(current.0 | FROZEN | FORGOTTEN);
        self.0
            .compare_exchange(current.0, forgotten.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| forgotten)
            .map_err(Entry)
    }

    /// The broken twin of the install CAS, for the models and tests that must catch it (see
    /// `broken_blind_index_store` in `write.rs`): overwrites the slot without checking that it
    /// still holds what the comparison looked at. Never called in a normal build.
    ///
    /// Release: publishes the record like the real install does.
    pub(super) fn store_blind(&self, new: Entry) {
        self.0.store(new.0, Ordering::Release);
    }
}

#[cfg(all(test, not(seglog_loom)))]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let tag = KeyHash::new(u64::MAX).tag();
        assert_eq!(tag, Tag(0x3fff));
        let address = Address::new(address::ADDRESS_LIMIT - address::ADDRESS_ALIGN);
        let entry = Entry::new(tag, address);
        assert_eq!(entry.address(), Some(address));
        assert_eq!(entry.tag(), tag);
        assert!(!entry.is_frozen() && !entry.is_vacant());

        let frozen = entry.frozen();
        assert!(frozen.is_frozen() && !frozen.is_frozen_vacant());
        assert_eq!(frozen.address(), Some(address));
        assert_eq!(frozen.tag(), tag);
        assert_eq!(frozen.thawed(), entry);
    }

    #[test]
    fn vacant_and_frozen_vacant() {
        assert!(Entry::EMPTY.is_vacant() && !Entry::EMPTY.is_frozen());
        assert_eq!(Entry::EMPTY.address(), None);
        let sealed = Entry::EMPTY.frozen();
        assert!(sealed.is_frozen_vacant());
        // A zero tag still makes a non-empty entry: addresses are never 0.
        assert_ne!(Entry::new(Tag(0), Address::new(8)), Entry::EMPTY);
    }

    #[test]
    fn slot_freeze_is_idempotent() {
        let slot = Slot::new();
        let entry = Entry::new(Tag(5), Address::new(64));
        assert_eq!(slot.compare_exchange(Entry::EMPTY, entry), Ok(()));
        assert_eq!(slot.compare_exchange(Entry::EMPTY, entry), Err(entry));
        assert_eq!(slot.freeze(), entry.frozen());
        assert_eq!(slot.freeze(), entry.frozen());
        assert_eq!(slot.load(), entry.frozen());
    }

    #[test]
    fn forgotten_only_from_the_exact_unfrozen_entry() {
        let slot = Slot::new();
        let entry = Entry::new(Tag(0x3fff), Address::new(64));
        slot.compare_exchange(Entry::EMPTY, entry).unwrap();
        let newer = Entry::new(Tag(0x3fff), Address::new(128));
        assert_eq!(slot.freeze_forgotten(newer), Err(entry));
        let forgotten = slot.freeze_forgotten(entry).unwrap();
        assert!(forgotten.is_frozen() && forgotten.is_forgotten());
        assert_eq!(forgotten.address(), Some(Address::new(64)));
        assert_eq!(forgotten.tag(), Tag(0x3fff));
        assert_eq!(forgotten.thawed(), entry);
        // Frozen is final: neither freeze changes it again.
        assert_eq!(slot.freeze(), forgotten);
        assert_eq!(slot.freeze_forgotten(entry), Err(forgotten));
    }
}
