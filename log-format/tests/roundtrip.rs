//! Property tests of the byte format: every record and segment header the crate writes reads
//! back exactly; every byte string it is handed decodes to a value, never a panic; and every
//! single-bit flip the checksum is meant to cover is caught.
//!
//! The segment-header tests build headers by hand from the offsets in `docs/format.md`, so they
//! also check that the document and `SegmentHeader` agree.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use seglog_format::{
    CommitWord, FORMAT_VERSION, RECORD_ALIGN, RECORD_HEADER_BYTES, RecordError, RecordHeader,
    RecordKind, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, SegmentHeader, SegmentHeaderError, Verify,
    align8, crc32c, decode_record, encode_record, record_layout, valid_segment_bytes,
};

const BOTH_VERIFY: [Verify; 2] = [Verify::Structure, Verify::Checksum];

/// The commit word as a reader that loads it from the record's first 8 bytes sees it.
fn commit_of(bytes: &[u8]) -> CommitWord {
    let word: [u8; 8] = bytes[..8].try_into().expect("a record is at least 8 bytes");
    CommitWord::from_raw(u64::from_le_bytes(word))
}

/// A put with an arbitrary key and value, or a tombstone with an arbitrary key and no value.
fn kind_key_value(
    max_key: usize,
    max_value: usize,
) -> impl Strategy<Value = (RecordKind, Vec<u8>, Vec<u8>)> {
    prop_oneof![
        (vec(any::<u8>(), 0..max_key), vec(any::<u8>(), 0..max_value)).prop_map(|(key, value)| (
            RecordKind::Put,
            key,
            value
        )),
        vec(any::<u8>(), 0..max_key).prop_map(|key| (RecordKind::Tombstone, key, Vec::new())),
    ]
}

/// A log position: records start on 8-byte boundaries.
fn position() -> impl Strategy<Value = u64> {
    any::<u64>().prop_map(|p| p & !(RECORD_ALIGN as u64 - 1))
}

/// The byte ranges of a put or tombstone that the CRC does not cover: the zero padding after the
/// key and after the value.
fn padding_ranges(key_len: usize, value_len: usize) -> [core::ops::Range<usize>; 2] {
    let layout = record_layout(key_len, value_len).expect("small record");
    let (value_offset, record_bytes) = (layout.value_offset as usize, layout.record_bytes as usize);
    [
        RECORD_HEADER_BYTES + key_len..value_offset,
        value_offset + value_len..record_bytes,
    ]
}

/// Segment header bytes laid out by hand, field by field, as `docs/format.md` describes them,
/// with a correct CRC so that `SegmentHeader::decode` gets past the checksum.
fn segment_header_bytes(
    format_version: u32,
    header_bytes: u32,
    segment_id: u64,
    segment_bytes: u64,
    salt: u32,
) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut out = [0u8; SEGMENT_HEADER_BYTES];
    out[0..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&format_version.to_le_bytes());
    out[12..16].copy_from_slice(&header_bytes.to_le_bytes());
    out[16..24].copy_from_slice(&segment_id.to_le_bytes());
    out[24..32].copy_from_slice(&segment_bytes.to_le_bytes());
    out[32..36].copy_from_slice(&salt.to_le_bytes());
    // 36..60 reserved, zero.
    let crc = crc32c(&out[..60]);
    out[60..64].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Segment sizes the format rejects: zero, non-powers of two, and powers of two out of range.
fn invalid_segment_bytes() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u32..64)
            .prop_map(|shift| 1u64 << shift)
            .prop_filter("out of range", |s| !valid_segment_bytes(*s)),
        (8u32..=30).prop_map(|shift| (1u64 << shift) + 8),
        (8u32..=30).prop_map(|shift| (1u64 << shift) - 8),
        0u64..256,
        any::<u64>(),
    ]
    .prop_filter("valid size", |s| !valid_segment_bytes(*s))
}

/// A key or value length for garbage shaped like a record: often zero, so tombstones (no value)
/// and fillers (no key) are well formed too.
fn length() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), 0u32..200]
}

/// Commit words that reach past `CommitWord::decode` often: the mark with any kind byte near
/// the real ones and a small length, as well as fully arbitrary words.
fn commit_word() -> impl Strategy<Value = CommitWord> {
    prop_oneof![
        any::<u64>().prop_map(CommitWord::from_raw),
        (0u64..8, 0u64..1024).prop_map(|(kind, len)| CommitWord::from_raw(
            (CommitWord::MARK << CommitWord::MARK_SHIFT) | (kind << CommitWord::KIND_SHIFT) | len
        )),
        Just(CommitWord::UNWRITTEN),
    ]
}

proptest! {
    #[test]
    fn record_round_trips_exactly(
        (kind, key, value) in kind_key_value(300, 5000),
        version in any::<u64>(),
        position in position(),
        salt in any::<u32>(),
        trailing in vec(any::<u8>(), 0..64),
    ) {
        let bytes = encode_record(kind, &key, &value, version, position, salt)
            .expect("small record fits the format");
        let layout = record_layout(key.len(), value.len()).expect("small record");
        prop_assert_eq!(bytes.len(), layout.record_bytes as usize);
        prop_assert_eq!(bytes.len() % RECORD_ALIGN, 0);
        // The encoder zeroes the padding the CRC does not cover.
        for range in padding_ranges(key.len(), value.len()) {
            prop_assert!(bytes[range].iter().all(|&b| b == 0));
        }

        // The record alone, and the record followed by whatever the segment holds next.
        let mut followed = bytes.clone();
        followed.extend_from_slice(&trailing);
        for segment_rest in [&bytes[..], &followed[..]] {
            for verify in BOTH_VERIFY {
                let view = decode_record(commit_of(segment_rest), segment_rest, position, salt, verify)
                    .expect("a freshly encoded record decodes");
                prop_assert_eq!(view.kind, kind);
                prop_assert_eq!(view.key, &key[..]);
                prop_assert_eq!(view.value, &value[..]);
                prop_assert_eq!(view.header.version(), version);
                prop_assert_eq!(view.header.position(), position);
                prop_assert_eq!(view.header.salt(), salt);
                prop_assert_eq!(view.header.key_len() as usize, key.len());
                prop_assert_eq!(view.header.value_len() as usize, value.len());
                prop_assert_eq!(view.record_bytes as usize, bytes.len());
                prop_assert_eq!(view.header.commit_word(), commit_of(&bytes));
                prop_assert_eq!(view.header.as_bytes(), &bytes[..RECORD_HEADER_BYTES]);
                let key_offset = view.key.as_ptr() as usize - segment_rest.as_ptr() as usize;
                let value_offset = view.value.as_ptr() as usize - segment_rest.as_ptr() as usize;
                prop_assert_eq!(key_offset, RECORD_HEADER_BYTES);
                prop_assert_eq!(value_offset, layout.value_offset as usize);
                prop_assert_eq!(value_offset % RECORD_ALIGN, 0);
            }
        }
    }

    #[test]
    fn record_read_at_another_position_or_salt_is_rejected(
        (kind, key, value) in kind_key_value(300, 5000),
        version in any::<u64>(),
        position in position(),
        salt in any::<u32>(),
        other_position in position(),
        other_salt in any::<u32>(),
    ) {
        // A record intact in itself but stale or foreign where it is read: CRC cannot tell.
        prop_assume!(other_position != position && other_salt != salt);
        let bytes = encode_record(kind, &key, &value, version, position, salt)
            .expect("small record fits the format");
        let filler = RecordHeader::filler(RecordKind::Aborted, 48, position, salt);
        let mut filler_bytes = filler.as_bytes().to_vec();
        filler_bytes.resize(48, 0);
        for record in [&bytes[..], &filler_bytes[..]] {
            for verify in BOTH_VERIFY {
                prop_assert_eq!(
                    decode_record(commit_of(record), record, other_position, salt, verify),
                    Err(RecordError::PositionMismatch { expected: other_position, found: position })
                );
                prop_assert_eq!(
                    decode_record(commit_of(record), record, position, other_salt, verify),
                    Err(RecordError::SaltMismatch { expected: other_salt, found: salt })
                );
            }
        }
    }

    #[test]
    fn record_with_fields_its_kind_forbids_is_rejected(
        any_len in 0usize..64,
        nonzero_len in 1usize..64,
        payload in vec(any::<u8>(), 128),
        version in any::<u64>(),
        position in position(),
        salt in any::<u32>(),
    ) {
        // Sealed correctly, so only the kind check stands between these bytes and a reader: a
        // tombstone with a value, and fillers with a key.
        let cases = [
            (RecordKind::Tombstone, any_len, nonzero_len),
            (RecordKind::Padding, nonzero_len, any_len),
            (RecordKind::Aborted, nonzero_len, any_len),
        ];
        for (kind, key_len, value_len) in cases {
            let (key, value) = (&payload[..key_len], &payload[64..64 + value_len]);
            // `RecordHeader::new` refuses these shapes, so build the bytes as a put and rewrite
            // the kind byte of the commit word, then seal the CRC by hand.
            let mut bytes = encode_record(RecordKind::Put, key, value, version, position, salt)
                .expect("small record");
            bytes[4] = kind as u8;
            let covered = if kind.checksums_payload() {
                [&bytes[..36], key, value].concat()
            } else {
                bytes[..36].to_vec()
            };
            let crc = seglog_format::crc32c(&covered);
            bytes[36..40].copy_from_slice(&crc.to_le_bytes());
            for verify in BOTH_VERIFY {
                prop_assert_eq!(
                    decode_record(commit_of(&bytes), &bytes, position, salt, verify),
                    Err(RecordError::BadKindFields {
                        kind,
                        key_len: key_len as u32,
                        value_len: value_len as u32,
                    })
                );
            }
        }
    }

    #[test]
    fn value_casts_to_f32_in_place(
        (kind, key, value) in kind_key_value(300, 5000),
        version in any::<u64>(),
        position in position(),
        salt in any::<u32>(),
        offset_words in 0usize..64,
    ) {
        let bytes = encode_record(kind, &key, &value, version, position, salt)
            .expect("small record fits the format");
        // A u64-backed buffer is 8-aligned in memory, so an 8-aligned offset in it is too.
        let offset = offset_words * 8;
        let mut words = vec![0u64; offset_words + bytes.len() / 8 + 4];
        let segment: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        segment[offset..offset + bytes.len()].copy_from_slice(&bytes);
        let rest = &segment[offset..];

        let view = decode_record(commit_of(rest), rest, position, salt, Verify::Checksum)
            .expect("embedded record decodes");
        prop_assert_eq!(view.value, &value[..]);
        prop_assert_eq!(view.value.as_ptr() as usize % RECORD_ALIGN, 0);
        if value.len() % 4 == 0 {
            let floats: &[f32] = bytemuck::try_cast_slice(view.value)
                .expect("an 8-aligned value whose length is a multiple of 4 is a &[f32]");
            prop_assert_eq!(floats.len(), value.len() / 4);
            for (float, chunk) in floats.iter().zip(value.chunks_exact(4)) {
                let expected = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
                prop_assert_eq!(float.to_bits(), expected);
            }
        }
    }

    #[test]
    fn filler_round_trips_and_checksums_only_its_header(
        kind in prop_oneof![Just(RecordKind::Padding), Just(RecordKind::Aborted)],
        payload_words in 0u32..700,
        position in position(),
        salt in any::<u32>(),
        payload_seed in any::<u8>(),
        trailing in vec(any::<u8>(), 0..64),
    ) {
        let record_bytes = RECORD_HEADER_BYTES as u32 + payload_words * 8;
        let header = RecordHeader::filler(kind, record_bytes, position, salt);
        // The payload of a filler means nothing; an aborted writer may have left anything there.
        let mut bytes: Vec<u8> = (0..record_bytes)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(payload_seed))
            .collect();
        bytes[..RECORD_HEADER_BYTES].copy_from_slice(header.as_bytes());
        prop_assert_eq!(commit_of(&bytes), header.commit_word());
        prop_assert_eq!(header.commit_word().decode(), Ok((kind, record_bytes)));

        // Padding runs to the segment's end; an aborted record may be followed by more records.
        let mut followed = bytes.clone();
        followed.extend_from_slice(&trailing);
        let placements = match kind {
            RecordKind::Aborted => vec![&bytes[..], &followed[..]],
            _ => vec![&bytes[..]],
        };
        for segment_rest in placements {
            for verify in BOTH_VERIFY {
                let view = decode_record(commit_of(segment_rest), segment_rest, position, salt, verify)
                    .expect("a filler decodes");
                prop_assert_eq!(view.kind, kind);
                prop_assert_eq!(view.record_bytes, record_bytes);
                prop_assert_eq!(view.header, header);
                prop_assert_eq!(view.header.position(), position);
                prop_assert_eq!(view.header.salt(), salt);
                prop_assert!(view.key.is_empty());
                prop_assert!(view.value.is_empty());
            }
        }

        // Every bit of the header is covered by the CRC (or by a structural check); no bit of
        // the payload is. The payload's start and end stand for all of it, to keep this quick.
        let payload_sample = (RECORD_HEADER_BYTES..bytes.len().min(RECORD_HEADER_BYTES + 64))
            .chain(bytes.len().saturating_sub(8).max(RECORD_HEADER_BYTES)..bytes.len());
        for bit in (0..RECORD_HEADER_BYTES).chain(payload_sample).flat_map(|byte| byte * 8..byte * 8 + 8) {
            bytes[bit / 8] ^= 1 << (bit % 8);
            let result = decode_record(commit_of(&bytes), &bytes, position, salt, Verify::Checksum);
            if bit / 8 < RECORD_HEADER_BYTES {
                prop_assert!(result.is_err(), "header bit {} flip accepted: {:?}", bit, result);
            } else {
                let view = result.expect("payload flips are not covered");
                prop_assert_eq!(view.header, header);
            }
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
    }

    #[test]
    fn short_padding_decodes_only_at_the_segment_end(
        words in 1u32..=4,
        fill in vec(any::<u8>(), 32),
        extra in 1usize..64,
    ) {
        let record_bytes = words * 8;
        let commit = CommitWord::new(RecordKind::Padding, record_bytes);
        let exact = &fill[..record_bytes as usize];
        let mut longer = exact.to_vec();
        longer.resize(record_bytes as usize + extra, 0);
        for verify in BOTH_VERIFY {
            // Short padding carries no position, salt or CRC: any position and salt read it.
            let view = decode_record(commit, exact, 0, 0, verify)
                .expect("short padding reaching the end decodes");
            prop_assert_eq!(view.kind, RecordKind::Padding);
            prop_assert_eq!(view.record_bytes, record_bytes);
            prop_assert_eq!(view.header.commit_word(), commit);
            prop_assert_eq!(&view.header.as_bytes()[8..], &[0u8; 32][..]);
            prop_assert!(view.key.is_empty() && view.value.is_empty());

            prop_assert!(
                decode_record(commit, &longer, 0, 0, verify).is_err(),
                "short padding of {} bytes accepted with {} bytes to the end",
                record_bytes,
                longer.len()
            );
            let shorter = &exact[..record_bytes as usize - 8];
            prop_assert_eq!(
                decode_record(commit, shorter, 0, 0, verify),
                Err(RecordError::Truncated {
                    needed: u64::from(record_bytes),
                    available: shorter.len() as u64,
                })
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        commit in commit_word(),
        mut bytes in vec(any::<u8>(), 0..600),
        shape in prop::option::of((1u8..=4, length(), length(), any::<bool>())),
        claim_own_position in any::<bool>(),
        position in any::<u64>(),
        salt in any::<u32>(),
    ) {
        // Garbage shaped like a record often enough to reach the position, salt and CRC checks
        // (and, sealed, to be accepted with garbage in its padding).
        if let Some((kind, key_len, value_len, seal)) = shape
            && bytes.len() >= RECORD_HEADER_BYTES
        {
            let layout = record_layout(key_len as usize, value_len as usize).expect("small");
            let word = (CommitWord::MARK << CommitWord::MARK_SHIFT)
                | (u64::from(kind) << CommitWord::KIND_SHIFT)
                | u64::from(layout.record_bytes);
            bytes[0..8].copy_from_slice(&word.to_le_bytes());
            bytes[8..12].copy_from_slice(&key_len.to_le_bytes());
            bytes[12..16].copy_from_slice(&value_len.to_le_bytes());
            if seal && layout.record_bytes as usize <= bytes.len() {
                let mut covered = bytes[..36].to_vec();
                if kind <= 2 {
                    let (key_at, value_at) = (RECORD_HEADER_BYTES, layout.value_offset as usize);
                    covered.extend_from_slice(&bytes[key_at..key_at + key_len as usize]);
                    covered.extend_from_slice(&bytes[value_at..value_at + value_len as usize]);
                }
                let crc = crc32c(&covered);
                bytes[36..40].copy_from_slice(&crc.to_le_bytes());
            }
        }
        let (position, salt) = if claim_own_position && bytes.len() >= RECORD_HEADER_BYTES {
            (
                u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes")),
                u32::from_le_bytes(bytes[32..36].try_into().expect("4 bytes")),
            )
        } else {
            (position, salt)
        };
        let mut commits = vec![commit];
        if bytes.len() >= 8 {
            commits.push(commit_of(&bytes));
        }
        for commit in commits {
            for verify in BOTH_VERIFY {
                if let Ok(view) = decode_record(commit, &bytes, position, salt, verify) {
                    // Whatever was accepted lies inside the slice and is well formed.
                    prop_assert!(view.record_bytes as usize <= bytes.len());
                    prop_assert_eq!(view.record_bytes as usize % RECORD_ALIGN, 0);
                    prop_assert_eq!(commit.decode(), Ok((view.kind, view.record_bytes)));
                    prop_assert!(view.key.len() + view.value.len() <= view.record_bytes as usize);
                }
            }
        }
        let _ = SegmentHeader::decode(&bytes);
    }

    #[test]
    fn arbitrary_segment_headers_never_panic(
        mut bytes in vec(any::<u8>(), 0..128),
        with_magic_and_crc in any::<bool>(),
    ) {
        if with_magic_and_crc && bytes.len() >= SEGMENT_HEADER_BYTES {
            bytes[..8].copy_from_slice(&SEGMENT_MAGIC);
            let crc = crc32c(&bytes[..60]);
            bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        }
        match SegmentHeader::decode(&bytes) {
            Ok(header) => {
                prop_assert_eq!(header.as_bytes(), &bytes[..SEGMENT_HEADER_BYTES]);
                prop_assert_eq!(header.format_version(), FORMAT_VERSION);
                prop_assert!(valid_segment_bytes(header.segment_bytes()));
            }
            Err(SegmentHeaderError::Truncated { available }) => {
                prop_assert!(bytes.len() < SEGMENT_HEADER_BYTES);
                prop_assert_eq!(available, bytes.len() as u64);
            }
            Err(_) => prop_assert!(bytes.len() >= SEGMENT_HEADER_BYTES),
        }
    }

    #[test]
    fn every_covered_bit_flip_is_caught(
        (kind, key, value) in kind_key_value(40, 200),
        version in any::<u64>(),
        position in position(),
        salt in any::<u32>(),
        trailing_words in 0usize..4,
    ) {
        let record = encode_record(kind, &key, &value, version, position, salt)
            .expect("small record fits the format");
        let record_bytes = record.len();
        // The record as it sits in a segment, with more bytes after it.
        let mut bytes = record.clone();
        bytes.resize(record_bytes + trailing_words * 8, 0xA5);
        let padding = padding_ranges(key.len(), value.len());

        for bit in 0..record_bytes * 8 {
            let byte = bit / 8;
            bytes[byte] ^= 1 << (bit % 8);
            // The commit word is decoded from the mutated bytes, as a reader would load it.
            let result = decode_record(commit_of(&bytes), &bytes, position, salt, Verify::Checksum);
            if padding.iter().any(|range| range.contains(&byte)) {
                let view = result.expect("padding is not covered by the CRC");
                prop_assert_eq!(view.kind, kind);
                prop_assert_eq!(view.key, &key[..]);
                prop_assert_eq!(view.value, &value[..]);
                prop_assert_eq!(view.header.as_bytes(), &record[..RECORD_HEADER_BYTES]);
            } else {
                prop_assert!(
                    result.is_err(),
                    "flip of bit {} (byte {}) of a {}-byte {:?} accepted: {:?}",
                    bit, byte, record_bytes, kind, result
                );
            }
            bytes[byte] ^= 1 << (bit % 8);
        }
    }

    #[test]
    fn a_bit_flip_in_a_large_record_is_caught(
        (kind, key, value) in kind_key_value(300, 5000),
        version in any::<u64>(),
        position in position(),
        salt in any::<u32>(),
        bit in any::<Index>(),
    ) {
        let mut bytes = encode_record(kind, &key, &value, version, position, salt)
            .expect("small record fits the format");
        let bit = bit.index(bytes.len() * 8);
        let byte = bit / 8;
        bytes[byte] ^= 1 << (bit % 8);
        let result = decode_record(commit_of(&bytes), &bytes, position, salt, Verify::Checksum);
        if padding_ranges(key.len(), value.len()).iter().any(|range| range.contains(&byte)) {
            let view = result.expect("padding is not covered by the CRC");
            prop_assert_eq!(view.key, &key[..]);
            prop_assert_eq!(view.value, &value[..]);
        } else {
            prop_assert!(result.is_err(), "flip of bit {} accepted: {:?}", bit, result);
        }
    }

    #[test]
    fn truncated_record_is_never_read(
        (kind, key, value) in kind_key_value(300, 5000),
        version in any::<u64>(),
        position in position(),
        salt in any::<u32>(),
    ) {
        let bytes = encode_record(kind, &key, &value, version, position, salt)
            .expect("small record fits the format");
        // The commit word was loaded before the rest went missing: it still claims the whole.
        let commit = commit_of(&bytes);
        for cut in 1..=bytes.len() {
            let available = bytes.len() - cut;
            for verify in BOTH_VERIFY {
                prop_assert_eq!(
                    decode_record(commit, &bytes[..available], position, salt, verify),
                    Err(RecordError::Truncated {
                        needed: bytes.len() as u64,
                        available: available as u64,
                    })
                );
            }
        }
    }

    #[test]
    fn segment_header_round_trips(
        shift in 8u32..=30,
        segment_id in any::<u64>(),
        salt in any::<u32>(),
        trailing in vec(any::<u8>(), 0..64),
    ) {
        let segment_bytes = 1u64 << shift;
        let header = SegmentHeader::new(segment_id, segment_bytes, salt);
        // What `new` writes is exactly the documented layout.
        let by_hand = segment_header_bytes(
            FORMAT_VERSION,
            SEGMENT_HEADER_BYTES as u32,
            segment_id,
            segment_bytes,
            salt,
        );
        prop_assert_eq!(header.as_bytes(), &by_hand[..]);

        let mut followed = by_hand.to_vec();
        followed.extend_from_slice(&trailing);
        for bytes in [&by_hand[..], &followed[..]] {
            let back = SegmentHeader::decode(bytes).expect("a valid header decodes");
            prop_assert_eq!(back, header);
            prop_assert_eq!(back.format_version(), FORMAT_VERSION);
            prop_assert_eq!(back.segment_id(), segment_id);
            prop_assert_eq!(back.segment_bytes(), segment_bytes);
            prop_assert_eq!(back.salt(), salt);
        }
    }

    #[test]
    fn segment_header_rejects_invalid_sizes(
        segment_bytes in invalid_segment_bytes(),
        segment_id in any::<u64>(),
        salt in any::<u32>(),
    ) {
        let bytes = segment_header_bytes(
            FORMAT_VERSION,
            SEGMENT_HEADER_BYTES as u32,
            segment_id,
            segment_bytes,
            salt,
        );
        prop_assert_eq!(
            SegmentHeader::decode(&bytes),
            Err(SegmentHeaderError::BadField { field: "segment_bytes", value: segment_bytes })
        );
    }

    #[test]
    fn segment_header_rejects_other_versions(
        format_version in any::<u32>().prop_filter("current version", |v| *v != FORMAT_VERSION),
        segment_id in any::<u64>(),
        salt in any::<u32>(),
    ) {
        let bytes = segment_header_bytes(
            format_version,
            SEGMENT_HEADER_BYTES as u32,
            segment_id,
            1 << 16,
            salt,
        );
        prop_assert_eq!(
            SegmentHeader::decode(&bytes),
            Err(SegmentHeaderError::UnsupportedVersion { found: format_version })
        );
    }
}

#[test]
fn record_layout_matches_the_documented_example() {
    // docs/format.md: a 3-byte key and an 11-byte value take 40 + 8 + 16 bytes, value at 48.
    let layout = record_layout(3, 11).expect("small record");
    assert_eq!(layout.key_offset, 40);
    assert_eq!(layout.value_offset, 48);
    assert_eq!(layout.record_bytes, 64);
    assert_eq!(align8(0), 0);
    assert_eq!(align8(1), 8);
    assert_eq!(align8(8), 8);
}

#[test]
fn commit_word_bit_layout_matches_the_document() {
    // docs/format.md: bytes 0..4 record_bytes, byte 4 kind, bytes 5..8 the mark 0x5EC106.
    let commit = CommitWord::new(RecordKind::Tombstone, 0x0102_0308);
    assert_eq!(
        commit.raw().to_le_bytes(),
        [0x08, 0x03, 0x02, 0x01, 0x02, 0x06, 0xC1, 0x5E]
    );
    for (kind, raw) in [
        (RecordKind::Put, 1),
        (RecordKind::Tombstone, 2),
        (RecordKind::Aborted, 4),
        (RecordKind::Padding, 7),
    ] {
        assert_eq!(kind as u8, raw);
        assert_eq!(RecordKind::from_u8(raw), Some(kind));
    }
    assert_eq!(RecordKind::from_u8(0), None);
    assert_eq!(RecordKind::from_u8(3), None);
    assert_eq!(RecordKind::from_u8(5), None);
    assert_eq!(CommitWord::UNWRITTEN.decode(), Err(RecordError::Unwritten));
}

#[test]
fn checksum_is_standard_crc32c() {
    // docs/format.md gives the check value so another implementation can match it.
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(b""), 0);
}
