//! [`Address`]: where the index says a record is.
//!
//! A record has two names. Its *position* (`segment id << shift | offset`) is what the public
//! API hands out: segment ids grow forever, so positions are unbounded u64s. Its *address* is
//! the position taken modulo the directory's ring (`slot << shift | offset`): the ring never
//! holds two segments in one slot, so the address names the record as well, and it is bounded,
//! so the index can pack it into the low bits of a slot word. The two are both u64s underneath;
//! keeping the address a type of its own means the compiler, not a review, catches a position
//! stored in the index or an address read as a position.

use std::fmt;

/// Bits of an address: the ring's slots times the segment size is at most 2^51.
pub(crate) const ADDRESS_BITS: u32 = 51;
/// Addresses are multiples of 2^3: records start 8-byte aligned, so the index drops these bits.
pub(crate) const ADDRESS_ALIGN_SHIFT: u32 = 3;
/// Addresses are multiples of this.
pub(crate) const ADDRESS_ALIGN: u64 = 1 << ADDRESS_ALIGN_SHIFT;
/// Addresses are below this (2^51).
pub(crate) const ADDRESS_LIMIT: u64 = 1 << ADDRESS_BITS;

/// A record's index address: non-zero, a multiple of [`ADDRESS_ALIGN`], below
/// [`ADDRESS_LIMIT`]. Made by `AppendLog::address_of` (and by the index's own tests).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Address(u64);

impl Address {
    /// The address `raw`.
    ///
    /// # Panics
    /// If `raw` is 0, not a multiple of [`ADDRESS_ALIGN`], or not below [`ADDRESS_LIMIT`]: the
    /// log only makes addresses of records, which start at offset 64 or later of an 8-aligned
    /// layout inside the ring, so a bad one is a bug in the engine, never damage on disk.
    pub(crate) fn new(raw: u64) -> Self {
        assert!(
            is_valid(raw),
            "index address {raw:#x} must be non-zero, a multiple of {ADDRESS_ALIGN} and below \
             {ADDRESS_LIMIT:#x}"
        );
        Self(raw)
    }

    /// The address as a number.
    pub(crate) fn get(self) -> u64 {
        self.0
    }

    /// The address divided by [`ADDRESS_ALIGN`]: what a slot word stores, below
    /// 2^([`ADDRESS_BITS`] - [`ADDRESS_ALIGN_SHIFT`]) and never 0.
    pub(crate) fn packed(self) -> u64 {
        self.0 >> ADDRESS_ALIGN_SHIFT
    }

    /// The address whose [`Address::packed`] form is `packed`, or `None` for 0 (no address).
    pub(crate) fn unpack(packed: u64) -> Option<Self> {
        debug_assert!(packed < ADDRESS_LIMIT >> ADDRESS_ALIGN_SHIFT);
        (packed != 0).then_some(Self(packed << ADDRESS_ALIGN_SHIFT))
    }
}

/// Whether `raw` is a valid [`Address`].
fn is_valid(raw: u64) -> bool {
    raw != 0 && raw.is_multiple_of(ADDRESS_ALIGN) && raw < ADDRESS_LIMIT
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({:#x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        assert!(is_valid(8));
        assert!(is_valid(ADDRESS_LIMIT - ADDRESS_ALIGN));
        assert!(!is_valid(0));
        assert!(!is_valid(12));
        assert!(!is_valid(ADDRESS_LIMIT));
    }

    #[test]
    fn packing_round_trips() {
        for raw in [8, 64, ADDRESS_LIMIT - ADDRESS_ALIGN] {
            let address = Address::new(raw);
            assert_eq!(Address::unpack(address.packed()), Some(address));
        }
        assert_eq!(Address::unpack(0), None);
    }

    #[test]
    #[should_panic(expected = "must be non-zero")]
    fn misaligned_is_refused() {
        Address::new(12);
    }
}
