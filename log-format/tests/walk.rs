//! Property tests of the segment walk: on segments built from records, holes, damaged records
//! and tails, it finds exactly what was built; on any bytes at all it tiles the segment and
//! never panics.

use proptest::collection::vec;
use proptest::prelude::*;
use seglog_format::{
    RECORD_HEADER_BYTES, RecordError, RecordHeader, RecordKind, SEGMENT_HEADER_BYTES,
    SegmentHeader, SegmentItem, SegmentWalk, decode_at, encode_record, find_next_record,
    is_blank_after_header, join_position, next_item, salvage_salt,
};

const SEGMENT_BYTES: u64 = 4096;
const SALT: u32 = 0x0bad_5a17;

/// A record to build.
#[derive(Debug, Clone)]
enum Record {
    /// A put whose version is this many 8-byte steps behind its position (0: a fresh write).
    Put(Vec<u8>, Vec<u8>, u8),
    Tombstone(Vec<u8>, u8),
    /// An aborted record of this many bytes past its header, which hold these bytes (cycled).
    Aborted(u8, Vec<u8>),
}

/// What is built at a place in the segment.
#[derive(Debug, Clone)]
enum Piece {
    Valid(Record),
    /// The record's commit word was never written; with `true`, its body was.
    Hole(Record, bool),
    /// The record with one bit of its header body (bytes 8..40, all covered by the CRC or
    /// checked against the commit word, position or salt) flipped.
    Damaged(Record, u16),
}

/// What fills the segment after the pieces.
#[derive(Debug, Clone)]
enum End {
    Zeros,
    Padding,
    Torn(Record),
    Damaged(Record, u16),
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        (vec(any::<u8>(), 0..24), vec(any::<u8>(), 0..80), 0u8..4)
            .prop_map(|(k, v, back)| Record::Put(k, v, back)),
        (vec(any::<u8>(), 0..24), 0u8..4).prop_map(|(k, back)| Record::Tombstone(k, back)),
        (0u8..12, vec(any::<u8>(), 1..8)).prop_map(|(n, fill)| Record::Aborted(n, fill)),
    ]
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => record().prop_map(Piece::Valid),
        1 => (record(), any::<bool>()).prop_map(|(r, body)| Piece::Hole(r, body)),
        1 => (record(), 0u16..256).prop_map(|(r, bit)| Piece::Damaged(r, bit)),
    ]
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        Just(End::Zeros),
        Just(End::Padding),
        record().prop_map(End::Torn),
        (record(), 0u16..256).prop_map(|(r, bit)| End::Damaged(r, bit)),
    ]
}

fn base() -> u64 {
    join_position(9, 0, SEGMENT_BYTES)
}

/// The bytes of `record` at `offset`.
fn encode(record: &Record, offset: usize) -> Vec<u8> {
    let position = base() + offset as u64;
    match record {
        Record::Put(key, value, back) => {
            let version = position - 8 * u64::from(*back);
            encode_record(RecordKind::Put, key, value, version, position, SALT).unwrap()
        }
        Record::Tombstone(key, back) => {
            let version = position - 8 * u64::from(*back);
            encode_record(RecordKind::Tombstone, key, &[], version, position, SALT).unwrap()
        }
        Record::Aborted(n, fill) => {
            let len = RECORD_HEADER_BYTES + 8 * usize::from(*n);
            let header = RecordHeader::filler(RecordKind::Aborted, len as u32, position, SALT);
            let mut bytes: Vec<u8> = fill.iter().copied().cycle().take(len).collect();
            bytes[..RECORD_HEADER_BYTES].copy_from_slice(header.as_bytes());
            bytes
        }
    }
}

/// What the walk should call a built range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Span {
    Valid,
    /// Its commit word is zero.
    Unwritten,
    /// Its commit word is not zero, and the record fails validation.
    Bad,
}

/// A segment built from `pieces` and `end`, and the ranges it was built from.
fn build(pieces: &[Piece], end: &End) -> (Vec<u8>, Vec<(usize, usize, Span)>) {
    let len = SEGMENT_BYTES as usize;
    let mut bytes = vec![0u8; len];
    bytes[..SEGMENT_HEADER_BYTES]
        .copy_from_slice(SegmentHeader::new(9, SEGMENT_BYTES, SALT).as_bytes());
    let mut spans = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut place = |bytes: &mut Vec<u8>, offset: &mut usize, piece: &Piece| -> bool {
        let (record, span) = match piece {
            Piece::Valid(r) => (r, Span::Valid),
            Piece::Hole(r, _) => (r, Span::Unwritten),
            Piece::Damaged(r, _) => (r, Span::Bad),
        };
        let mut encoded = encode(record, *offset);
        if *offset + encoded.len() > len {
            return false;
        }
        match piece {
            Piece::Valid(_) => {}
            Piece::Hole(_, true) => encoded[..8].fill(0),
            Piece::Hole(_, false) => encoded.fill(0),
            Piece::Damaged(_, bit) => {
                let bit = usize::from(*bit) % (32 * 8);
                encoded[8 + bit / 8] ^= 1 << (bit % 8);
            }
        }
        bytes[*offset..*offset + encoded.len()].copy_from_slice(&encoded);
        spans.push((*offset, encoded.len(), span));
        *offset += encoded.len();
        true
    };
    for piece in pieces {
        if !place(&mut bytes, &mut offset, piece) {
            break;
        }
    }
    match end {
        End::Zeros => {}
        End::Padding => {
            let remaining = len - offset;
            if remaining >= RECORD_HEADER_BYTES {
                let position = base() + offset as u64;
                let filler =
                    RecordHeader::filler(RecordKind::Padding, remaining as u32, position, SALT);
                bytes[offset..offset + RECORD_HEADER_BYTES].copy_from_slice(filler.as_bytes());
            } else if remaining > 0 {
                let commit = seglog_format::CommitWord::new(RecordKind::Padding, remaining as u32);
                bytes[offset..offset + 8].copy_from_slice(&commit.raw().to_le_bytes());
            }
            if remaining > 0 {
                spans.push((offset, remaining, Span::Valid));
                offset = len;
            }
        }
        End::Torn(r) => {
            place(&mut bytes, &mut offset, &Piece::Hole(r.clone(), true));
        }
        End::Damaged(r, bit) => {
            place(&mut bytes, &mut offset, &Piece::Damaged(r.clone(), *bit));
        }
    }
    if offset < len {
        spans.push((offset, len - offset, Span::Unwritten));
    }
    (bytes, spans)
}

/// The items the walk should find in a segment built as `spans`: valid ranges are records; a
/// run of bad ranges is one hole or damaged range (as its first range is), up to the next
/// valid record, or the trailing range if none follows.
fn expected(bytes: &[u8], spans: &[(usize, usize, Span)]) -> Vec<(usize, usize, &'static str)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < spans.len() {
        let (offset, len, span) = spans[i];
        if span == Span::Valid {
            out.push((offset, len, "record"));
            i += 1;
            continue;
        }
        let mut j = i;
        while j < spans.len() && spans[j].2 != Span::Valid {
            j += 1;
        }
        match spans.get(j) {
            Some(&(next, _, _)) => out.push((
                offset,
                next - offset,
                if span == Span::Unwritten {
                    "hole"
                } else {
                    "damaged"
                },
            )),
            None => {
                let zeros = bytes[offset..].iter().all(|&b| b == 0);
                out.push((
                    offset,
                    bytes.len() - offset,
                    match (span, zeros) {
                        (Span::Unwritten, true) => "trailing zeros",
                        (Span::Unwritten, false) => "trailing unpublished",
                        (_, true) => unreachable!("a published record is not zeros"),
                        (_, false) => "trailing damaged",
                    },
                ));
            }
        }
        i = j;
    }
    out
}

fn classify(item: &SegmentItem<'_>) -> (usize, usize, &'static str) {
    let name = match item {
        SegmentItem::Record { .. } => "record",
        SegmentItem::Hole { .. } => "hole",
        SegmentItem::Damaged { error, .. } => {
            assert_ne!(*error, RecordError::Unwritten);
            "damaged"
        }
        SegmentItem::Trailing {
            error: RecordError::Unwritten,
            all_zero: true,
            ..
        } => "trailing zeros",
        SegmentItem::Trailing {
            error: RecordError::Unwritten,
            all_zero: false,
            ..
        } => "trailing unpublished",
        SegmentItem::Trailing {
            all_zero: false, ..
        } => "trailing damaged",
        SegmentItem::Trailing { .. } => panic!("a published record cannot be all zeros"),
    };
    (item.offset(), item.bytes(), name)
}

/// The walk's items tile `[SEGMENT_HEADER_BYTES, len)` in order, each ending where the next
/// starts, and resuming at any item's start gives the same items from there.
fn assert_tiles(bytes: &[u8], base: u64, salt: u32) {
    let items: Vec<_> = SegmentWalk::new(bytes, base, salt).collect();
    let mut at = SEGMENT_HEADER_BYTES;
    for item in &items {
        assert_eq!(item.offset(), at);
        assert!(item.bytes() > 0);
        at = item.end();
        assert!(at <= bytes.len());
        if let SegmentItem::Record { view, .. } = item {
            assert_eq!(view.record_bytes as usize, item.bytes());
        }
    }
    assert_eq!(at, bytes.len().max(SEGMENT_HEADER_BYTES));
    // Only the last item may be trailing.
    for item in items.iter().rev().skip(1) {
        assert!(!matches!(item, SegmentItem::Trailing { .. }));
    }
    if let Some(item) = items.get(items.len() / 2) {
        let resumed: Vec<_> = SegmentWalk::starting_at(bytes, base, salt, item.offset()).collect();
        assert_eq!(&resumed[..], &items[items.len() / 2..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_walk_finds_what_was_built(pieces in vec(piece(), 0..40), end in end()) {
        let (bytes, spans) = build(&pieces, &end);
        let found: Vec<_> = SegmentWalk::new(&bytes, base(), SALT).map(|i| classify(&i)).collect();
        prop_assert_eq!(found, expected(&bytes, &spans));
        assert_tiles(&bytes, base(), SALT);
        // Every valid record is found by a search from its own start.
        for &(offset, _, span) in &spans {
            if span == Span::Valid {
                prop_assert_eq!(find_next_record(&bytes, base(), SALT, offset), Some(offset));
                prop_assert!(decode_at(&bytes[offset..], base() + offset as u64, SALT).is_ok());
            }
        }
        // The salt can be salvaged from the first record with a header, if there is one.
        let first = spans
            .iter()
            .find(|&&(_, len, span)| span == Span::Valid && len >= RECORD_HEADER_BYTES)
            .map(|&(offset, _, _)| (offset, SALT));
        prop_assert_eq!(salvage_salt(&bytes, base()), first);
        prop_assert_eq!(
            is_blank_after_header(&bytes),
            bytes[SEGMENT_HEADER_BYTES..].iter().all(|&b| b == 0)
        );
    }

    #[test]
    fn the_walk_of_a_mutated_segment_tiles_it(
        pieces in vec(piece(), 0..40),
        end in end(),
        flips in vec((0usize..SEGMENT_BYTES as usize, any::<u8>()), 1..8),
    ) {
        let (mut bytes, _) = build(&pieces, &end);
        for (at, mask) in flips {
            bytes[at] ^= mask;
        }
        assert_tiles(&bytes, base(), SALT);
        let _ = salvage_salt(&bytes, base());
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..1500),
        base in any::<u64>(),
        salt in any::<u32>(),
        offsets in vec(any::<usize>(), 0..4),
    ) {
        assert_tiles(&bytes, base, salt);
        let _ = salvage_salt(&bytes, base);
        let _ = is_blank_after_header(&bytes);
        for offset in offsets {
            for at in [offset, offset % (bytes.len() + 1)] {
                let _ = next_item(&bytes, base, salt, at);
                let _ = find_next_record(&bytes, base, salt, at);
                let _ = SegmentWalk::starting_at(&bytes, base, salt, at).count();
                let _ = decode_at(bytes.get(at..).unwrap_or_default(), base, salt);
            }
        }
    }
}
