//! The walk of a segment's bytes that recovery and `seglog verify` share: what each range of a
//! segment holds, in order, decided from the bytes alone.
//!
//! From the first record offset ([`SEGMENT_HEADER_BYTES`]) to the end, a segment is tiled by
//! [`SegmentItem`]s:
//!
//! - [`SegmentItem::Record`]: a record that validates completely ([`decode_at`]: commit word,
//!   lengths, kind, position, salt, CRC, and a version not ahead of its position). The walk
//!   continues at its end.
//! - Anything else starts a bad range. The next valid record is searched for from a header
//!   further on ([`RECORD_HEADER_BYTES`]; a record is at least that long, so a closer one
//!   would leave a gap too short to seal), 8 bytes at a time ([`find_next_record`]). If one is
//!   found, the range up to it is a [`SegmentItem::Hole`] when its commit word is zero (a writer
//!   reserved the space and died before publishing) or a [`SegmentItem::Damaged`] range when
//!   it is not (a torn or corrupt record). If none is found, the rest of the segment is
//!   [`SegmentItem::Trailing`]: unused space, a torn tail, or damage at the end.
//!
//! Recovery maps these to its actions (take a record; seal a hole or damaged range with an
//! aborted record; in the tail segment zero a trailing range that is not all zeros, elsewhere
//! seal it with padding), `seglog verify` to its report. The walk reads only: it never writes,
//! never allocates, and never panics, whatever the bytes.

use core::iter::FusedIterator;

use crate::{
    CommitWord, RECORD_ALIGN, RECORD_HEADER_BYTES, RecordError, RecordHeader, RecordView,
    SEGMENT_HEADER_BYTES, Verify, decode_record,
};

/// Decodes and fully validates the record at the start of `bytes` (which run to the end of its
/// segment), read at `position` in a segment with `salt`: the commit word from the first 8
/// bytes, [`decode_record`] with [`Verify::Checksum`], and a put or tombstone whose version is
/// ahead of its position refused as [`RecordError::VersionAhead`] (the format allows any
/// version; a log never writes one, since a version is the position where its record was first
/// written and copies only move forward). Fewer than 8 bytes are [`RecordError::Truncated`].
/// Never panics.
pub fn decode_at(bytes: &[u8], position: u64, salt: u32) -> Result<RecordView<'_>, RecordError> {
    let Some(commit) = CommitWord::read(bytes) else {
        return Err(RecordError::Truncated {
            needed: RecordHeader::COMMIT_BYTES as u64,
            available: bytes.len() as u64,
        });
    };
    let view = decode_record(commit, bytes, position, salt, Verify::Checksum)?;
    if view.kind.checksums_payload() && view.header.version() > position {
        return Err(RecordError::VersionAhead {
            version: view.header.version(),
            position,
        });
    }
    Ok(view)
}

/// One range of a segment, as [`SegmentWalk`] classifies it. Offsets are from the start of the
/// segment file; every item is at least 8 bytes long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentItem<'a> {
    /// A valid record (any kind: put, tombstone, aborted, padding), `view.record_bytes` long.
    Record {
        /// Where the record starts.
        offset: usize,
        /// The record, borrowing its key and value from the segment.
        view: RecordView<'a>,
    },
    /// A zero commit word with a valid record after it: a reservation whose writer died before
    /// publishing (its key and value may be partly there). A crash artifact, not damage.
    Hole {
        /// Where the hole starts.
        offset: usize,
        /// Its length, up to the next valid record (at least [`RECORD_HEADER_BYTES`]).
        bytes: usize,
    },
    /// A non-zero commit word that fails validation, with a valid record after it: a torn or
    /// corrupt record, and whatever follows it up to the next valid record.
    Damaged {
        /// Where the range starts.
        offset: usize,
        /// Its length, up to the next valid record (at least [`RECORD_HEADER_BYTES`]).
        bytes: usize,
        /// Why the bytes at `offset` are not a record.
        error: RecordError,
    },
    /// From the end of the last valid record (or the first record offset) to the end of the
    /// segment, with no valid record in it.
    Trailing {
        /// Where the range starts: just past the last valid record.
        offset: usize,
        /// Its length, to the end of the segment.
        bytes: usize,
        /// Why the bytes at `offset` are not a record: [`RecordError::Unwritten`] if nothing
        /// was published there (unused space, or a reservation never published), anything
        /// else for a published record that fails validation (a torn write, or damage).
        error: RecordError,
        /// Whether every byte of the range is zero (unused space: nothing to zero or seal).
        all_zero: bool,
    },
}

impl SegmentItem<'_> {
    /// Where the item starts.
    #[must_use]
    pub fn offset(&self) -> usize {
        match *self {
            Self::Record { offset, .. }
            | Self::Hole { offset, .. }
            | Self::Damaged { offset, .. }
            | Self::Trailing { offset, .. } => offset,
        }
    }

    /// The item's length in bytes.
    #[must_use]
    pub fn bytes(&self) -> usize {
        match *self {
            Self::Record { ref view, .. } => view.record_bytes as usize,
            Self::Hole { bytes, .. }
            | Self::Damaged { bytes, .. }
            | Self::Trailing { bytes, .. } => bytes,
        }
    }

    /// Where the next item starts.
    #[must_use]
    pub fn end(&self) -> usize {
        self.offset() + self.bytes()
    }
}

/// The item of `segment` that starts at `offset`, or `None` at or past the end. `segment` is
/// the whole segment file, from its header to its end; the byte at offset `o` has position
/// `base_position + o` (the segment's position: its id shifted by log2 of its size, see
/// [`crate::join_position`]), and `salt` is the segment's. The next item starts at the item's
/// [`SegmentItem::end`]. Never panics.
#[must_use]
pub fn next_item(
    segment: &[u8],
    base_position: u64,
    salt: u32,
    offset: usize,
) -> Option<SegmentItem<'_>> {
    let rest = segment.get(offset..).filter(|rest| !rest.is_empty())?;
    let position = base_position.wrapping_add(offset as u64);
    let error = match decode_at(rest, position, salt) {
        Ok(view) => return Some(SegmentItem::Record { offset, view }),
        Err(error) => error,
    };
    let from = offset.saturating_add(RECORD_HEADER_BYTES);
    Some(match find_next_record(segment, base_position, salt, from) {
        Some(next) if error == RecordError::Unwritten => SegmentItem::Hole {
            offset,
            bytes: next - offset,
        },
        Some(next) => SegmentItem::Damaged {
            offset,
            bytes: next - offset,
            error,
        },
        None => SegmentItem::Trailing {
            offset,
            bytes: rest.len(),
            error,
            all_zero: crate::is_all_zero(rest),
        },
    })
}

/// The offset of the first valid record ([`decode_at`]) at or after `from`, trying every 8th
/// byte while a commit word fits; `None` if there is none. Arguments as for [`next_item`].
/// Never panics.
#[must_use]
pub fn find_next_record(
    segment: &[u8],
    base_position: u64,
    salt: u32,
    from: usize,
) -> Option<usize> {
    let mut offset = from;
    while offset
        .checked_add(RecordHeader::COMMIT_BYTES)
        .is_some_and(|end| end <= segment.len())
    {
        if segment[offset..offset + RecordHeader::COMMIT_BYTES] == [0; RecordHeader::COMMIT_BYTES] {
            // A zero commit word starts no record: go straight to the word (still `from` plus
            // a multiple of 8) that holds the next non-zero byte. The unwritten end of a tail
            // segment is tens of megabytes of zeros, tried one word at a time before.
            let nonzero = crate::first_nonzero(segment, offset);
            offset += (nonzero - offset) / RECORD_ALIGN * RECORD_ALIGN;
            continue;
        }
        let position = base_position.wrapping_add(offset as u64);
        if decode_at(&segment[offset..], position, salt).is_ok() {
            return Some(offset);
        }
        offset += RECORD_ALIGN;
    }
    None
}

/// The items of a segment in order, from the first record offset to the end: the walk that
/// recovery and `seglog verify` share.
///
/// A valid record ([`decode_at`]) is a [`SegmentItem::Record`], and the walk continues at its
/// end. Anything else starts a bad range: the next valid record is searched for from a header
/// further on ([`RECORD_HEADER_BYTES`]: a record is at least that long, so a closer one would
/// leave a gap too short to seal), 8 bytes at a time ([`find_next_record`]). If one is found,
/// the range up to it is a [`SegmentItem::Hole`] (zero commit word) or a
/// [`SegmentItem::Damaged`] range (any other); if none is, the rest of the segment is
/// [`SegmentItem::Trailing`]. See [`next_item`] for the arguments. Reads only, allocates
/// nothing, never panics.
///
/// To write to the segment between items (recovery seals and zeroes ranges), drop the walk,
/// write, and resume with [`SegmentWalk::starting_at`] at [`SegmentWalk::offset`].
#[derive(Debug, Clone)]
pub struct SegmentWalk<'a> {
    segment: &'a [u8],
    base_position: u64,
    salt: u32,
    offset: usize,
}

impl<'a> SegmentWalk<'a> {
    /// A walk of `segment` (the whole file, header included) from its first record, at
    /// [`SEGMENT_HEADER_BYTES`]. Arguments as for [`next_item`].
    #[must_use]
    pub fn new(segment: &'a [u8], base_position: u64, salt: u32) -> Self {
        Self::starting_at(segment, base_position, salt, SEGMENT_HEADER_BYTES)
    }

    /// A walk of `segment` from `offset`, which should be where an item starts (the first
    /// record offset, or the end of an item).
    #[must_use]
    pub fn starting_at(segment: &'a [u8], base_position: u64, salt: u32, offset: usize) -> Self {
        Self {
            segment,
            base_position,
            salt,
            offset,
        }
    }

    /// Where the next item starts (the segment's length once the walk is done).
    #[must_use]
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl<'a> Iterator for SegmentWalk<'a> {
    type Item = SegmentItem<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = next_item(self.segment, self.base_position, self.salt, self.offset)?;
        self.offset = item.end();
        Some(item)
    }
}

impl FusedIterator for SegmentWalk<'_> {}

/// For a segment whose header is damaged: the first record, from the first record offset, 8
/// bytes at a time while a header fits, that validates completely ([`decode_at`]) under the
/// salt it carries itself, as `(offset, salt)`. The salt is then the segment's (a record is
/// valid only with its segment's salt), and the header can be rebuilt from it. Arguments as
/// for [`next_item`]. Never panics.
#[must_use]
pub fn salvage_salt(segment: &[u8], base_position: u64) -> Option<(usize, u32)> {
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset
        .checked_add(RECORD_HEADER_BYTES)
        .is_some_and(|end| end <= segment.len())
    {
        let rest = &segment[offset..];
        let salt = RecordHeader::read(rest)?.salt();
        if decode_at(rest, base_position.wrapping_add(offset as u64), salt).is_ok() {
            return Some((offset, salt));
        }
        offset += RECORD_ALIGN;
    }
    None
}

/// Whether nothing but zeros follows the header area of `segment` (however short): a segment
/// that never held a record. With a bad header, that is a file whose creation a crash
/// interrupted, which recovery removes.
#[must_use]
pub fn is_blank_after_header(segment: &[u8]) -> bool {
    segment
        .get(SEGMENT_HEADER_BYTES..)
        .is_none_or(crate::is_all_zero)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RecordKind, SegmentHeader, encode_record, join_position};

    const SEGMENT_BYTES: u64 = 1024;
    const ID: u64 = 5;
    const SALT: u32 = 0x5a17;

    fn base() -> u64 {
        join_position(ID, 0, SEGMENT_BYTES)
    }

    fn segment() -> Vec<u8> {
        let mut bytes = vec![0u8; SEGMENT_BYTES as usize];
        bytes[..SEGMENT_HEADER_BYTES]
            .copy_from_slice(SegmentHeader::new(ID, SEGMENT_BYTES, SALT).as_bytes());
        bytes
    }

    /// Writes a put at `offset`; returns its end.
    fn put(bytes: &mut [u8], offset: usize, key: &[u8], value: &[u8]) -> usize {
        let position = base() + offset as u64;
        let record = encode_record(RecordKind::Put, key, value, position, position, SALT).unwrap();
        bytes[offset..offset + record.len()].copy_from_slice(&record);
        offset + record.len()
    }

    fn kinds(items: &[SegmentItem<'_>]) -> Vec<(&'static str, usize, usize)> {
        items
            .iter()
            .map(|item| {
                let name = match item {
                    SegmentItem::Record { .. } => "record",
                    SegmentItem::Hole { .. } => "hole",
                    SegmentItem::Damaged { .. } => "damaged",
                    SegmentItem::Trailing { all_zero: true, .. } => "trailing zeros",
                    SegmentItem::Trailing { .. } => "trailing",
                };
                (name, item.offset(), item.bytes())
            })
            .collect()
    }

    #[test]
    fn an_empty_segment_is_one_trailing_range_of_zeros() {
        let bytes = segment();
        let items: Vec<_> = SegmentWalk::new(&bytes, base(), SALT).collect();
        assert_eq!(
            items,
            [SegmentItem::Trailing {
                offset: 64,
                bytes: 960,
                error: RecordError::Unwritten,
                all_zero: true
            }]
        );
    }

    #[test]
    fn records_holes_damage_and_a_torn_tail() {
        let mut bytes = segment();
        let a = put(&mut bytes, 64, b"a", b"one");
        // A hole: a record whose commit word never got written.
        let hole_end = put(&mut bytes, a, b"b", b"two");
        bytes[a..a + 8].fill(0);
        let c = put(&mut bytes, hole_end, b"c", b"three");
        // Damage: a flipped value byte.
        let damaged_end = put(&mut bytes, c, b"d", b"four");
        bytes[damaged_end - 8] ^= 1;
        let e = put(&mut bytes, damaged_end, b"e", b"five");
        // A torn tail: a record's body without its commit word.
        let torn_end = put(&mut bytes, e, b"f", b"six");
        bytes[e..e + 8].fill(0);
        let items: Vec<_> = SegmentWalk::new(&bytes, base(), SALT).collect();
        assert_eq!(
            kinds(&items),
            [
                ("record", 64, a - 64),
                ("hole", a, hole_end - a),
                ("record", hole_end, c - hole_end),
                ("damaged", c, damaged_end - c),
                ("record", damaged_end, e - damaged_end),
                ("trailing", e, 1024 - e),
            ]
        );
        assert!(matches!(
            items[3],
            SegmentItem::Damaged {
                error: RecordError::ChecksumMismatch { .. },
                ..
            }
        ));
        assert!(matches!(
            items[5],
            SegmentItem::Trailing {
                error: RecordError::Unwritten,
                all_zero: false,
                ..
            }
        ));
        assert!(torn_end < 1024);
        // Resuming at any item's start gives the same items from there.
        for (i, item) in items.iter().enumerate() {
            let resumed: Vec<_> =
                SegmentWalk::starting_at(&bytes, base(), SALT, item.offset()).collect();
            assert_eq!(resumed, items[i..]);
        }
    }

    #[test]
    fn a_version_ahead_of_its_position_is_damage() {
        let mut bytes = segment();
        let position = base() + 64;
        let record =
            encode_record(RecordKind::Put, b"k", b"v", position + 8, position, SALT).unwrap();
        bytes[64..64 + record.len()].copy_from_slice(&record);
        assert_eq!(
            decode_at(&bytes[64..], position, SALT).unwrap_err(),
            RecordError::VersionAhead {
                version: position + 8,
                position
            }
        );
        let items: Vec<_> = SegmentWalk::new(&bytes, base(), SALT).collect();
        assert!(matches!(
            items[..],
            [SegmentItem::Trailing {
                offset: 64,
                error: RecordError::VersionAhead { .. },
                all_zero: false,
                ..
            }]
        ));
    }

    #[test]
    fn a_sealed_segment_ends_with_padding() {
        let mut bytes = segment();
        let end = put(&mut bytes, 64, b"k", b"v");
        let filler = RecordHeader::filler(
            RecordKind::Padding,
            (SEGMENT_BYTES as usize - end) as u32,
            base() + end as u64,
            SALT,
        );
        bytes[end..end + RECORD_HEADER_BYTES].copy_from_slice(filler.as_bytes());
        let items: Vec<_> = SegmentWalk::new(&bytes, base(), SALT).collect();
        assert_eq!(
            kinds(&items),
            [("record", 64, end - 64), ("record", end, 1024 - end)]
        );
    }

    #[test]
    fn the_search_starts_a_header_on() {
        // A valid record closer than a header to a bad commit word is not found by the walk
        // (it cannot be the next real record), only by a search from there.
        let mut bytes = segment();
        let end = put(&mut bytes, 96, b"k", b"v");
        bytes[64..72].copy_from_slice(&CommitWord::new(RecordKind::Put, 48).raw().to_le_bytes());
        assert_eq!(find_next_record(&bytes, base(), SALT, 64), Some(96));
        assert_eq!(find_next_record(&bytes, base(), SALT, 104), None);
        let items: Vec<_> = SegmentWalk::new(&bytes, base(), SALT).collect();
        assert_eq!(kinds(&items), [("trailing", 64, 960)]);
        assert!(end < 1024);
    }

    #[test]
    fn salvage_finds_the_salt_of_the_first_valid_record() {
        let mut bytes = segment();
        assert_eq!(salvage_salt(&bytes, base()), None);
        assert!(is_blank_after_header(&bytes));
        bytes[..SEGMENT_HEADER_BYTES].fill(0xAA);
        assert!(is_blank_after_header(&bytes));
        let at = 64 + 40;
        put(&mut bytes, at, b"k", b"v");
        assert!(!is_blank_after_header(&bytes));
        assert_eq!(salvage_salt(&bytes, base()), Some((at, SALT)));
        assert_eq!(salvage_salt(&bytes, base() + 1024), None);
        assert!(is_blank_after_header(&bytes[..10]));
    }

    #[test]
    fn short_inputs_never_panic() {
        for len in 0..80 {
            let bytes = vec![0u8; len];
            let _ = SegmentWalk::new(&bytes, 0, 0).count();
            let _ = salvage_salt(&bytes, 0);
            let _ = find_next_record(&bytes, 0, 0, usize::MAX);
            let _ = next_item(&bytes, u64::MAX, 0, usize::MAX);
        }
        assert!(matches!(
            decode_at(&[1, 2, 3], 0, 0),
            Err(RecordError::Truncated {
                needed: 8,
                available: 3
            })
        ));
    }
}
