//! Hint files: a sealed segment's keys, versions and positions, so that reopening a log reads
//! the hints instead of every value (Bitcask's hint files).
//!
//! ```text
//! hint file <16 hex digits>.hint, beside the segment of the same id:
//! offset size field
//!      0    8 magic          HINT_MAGIC
//!      8    4 format_version HINT_FORMAT_VERSION (2)
//!     12    4 entry_count
//!     16    8 segment_id
//!     24    4 salt           the segment's salt: a hint for another incarnation is rejected
//!     28    4 segment_crc    CRC32C of the whole segment file as the hint describes it
//!     32    4 filler_bytes   bytes of the segment's aborted records (not listed as entries)
//!     36    4 header_crc     CRC32C of bytes 0..36
//!     40      entries, each 8-byte aligned:
//!             4 offset        of the record in the segment
//!             4 record_bytes
//!             8 version
//!             1 kind          RecordKind (put or tombstone)
//!             3 reserved      zero
//!             4 key_len
//!             key, zero padding to 8
//!   end-8    4 body_crc       CRC32C of every byte from 0 to here
//!   end-4    4 trailer_magic  HINT_TRAILER
//! ```
//!
//! A hint is written whole to a temporary name and renamed into place, so a reader sees a
//! complete hint or none; a hint that fails any check is ignored and its segment scanned.
//!
//! `segment_crc` is what lets a reader trust the entries without reading every record: the
//! reader checksums the segment file (sequential reads, no per-record decoding, no index work)
//! and uses the hint only if the checksum matches, so a damaged record in a hinted segment is
//! found exactly as a scan would find it. Version 1 hints (a 32-byte header without it) are
//! rejected as `UnsupportedVersion(1)`; their segments are scanned and the hint rewritten.

use core::fmt;

use crate::{MAX_KEY_BYTES, RecordKind, align8, crc32c};

/// The first 8 bytes of every hint file.
pub const HINT_MAGIC: [u8; 8] = *b"\x89SEGHNT\n";
/// The last 4 bytes of every complete hint file.
pub const HINT_TRAILER: u32 = 0x5EC1_0E4D;
/// The hint format this build writes and reads (version 1 had no segment checksum).
pub const HINT_FORMAT_VERSION: u32 = 2;
/// Byte offset of `magic` in a hint file.
pub const HINT_MAGIC_OFFSET: usize = 0;
/// Byte offset of `format_version` in a hint file.
pub const HINT_FORMAT_VERSION_OFFSET: usize = 8;
/// Byte offset of `entry_count` in a hint file.
pub const HINT_ENTRY_COUNT_OFFSET: usize = 12;
/// Byte offset of `segment_id` in a hint file.
pub const HINT_SEGMENT_ID_OFFSET: usize = 16;
/// Byte offset of `salt` in a hint file.
pub const HINT_SALT_OFFSET: usize = 24;
/// Byte offset of `segment_crc` in a hint file.
pub const HINT_SEGMENT_CRC_OFFSET: usize = 28;
/// Byte offset of `filler_bytes` in a hint file.
pub const HINT_FILLER_BYTES_OFFSET: usize = 32;
/// Byte offset of `header_crc` in a hint file: the CRC32C of every byte before it.
pub const HINT_HEADER_CRC_OFFSET: usize = 36;
const SEGMENT_CRC_OFFSET: usize = HINT_SEGMENT_CRC_OFFSET;
const FILLER_BYTES_OFFSET: usize = HINT_FILLER_BYTES_OFFSET;
const HEADER_CRC_OFFSET: usize = HINT_HEADER_CRC_OFFSET;
const HEADER_BYTES: usize = 40;

/// The hint header's layout, for the offset checks below only (the header is read and written
/// field by field).
#[repr(C)]
#[allow(dead_code)] // Never built: only its field offsets are used.
struct HintHeaderLayout {
    magic: [u8; 8],
    format_version: u32,
    entry_count: u32,
    segment_id: u64,
    salt: u32,
    segment_crc: u32,
    filler_bytes: u32,
    header_crc: u32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<HintHeaderLayout>() == HEADER_BYTES);
    assert!(offset_of!(HintHeaderLayout, magic) == HINT_MAGIC_OFFSET);
    assert!(offset_of!(HintHeaderLayout, format_version) == HINT_FORMAT_VERSION_OFFSET);
    assert!(offset_of!(HintHeaderLayout, entry_count) == HINT_ENTRY_COUNT_OFFSET);
    assert!(offset_of!(HintHeaderLayout, segment_id) == HINT_SEGMENT_ID_OFFSET);
    assert!(offset_of!(HintHeaderLayout, salt) == HINT_SALT_OFFSET);
    assert!(offset_of!(HintHeaderLayout, segment_crc) == HINT_SEGMENT_CRC_OFFSET);
    assert!(offset_of!(HintHeaderLayout, filler_bytes) == HINT_FILLER_BYTES_OFFSET);
    assert!(offset_of!(HintHeaderLayout, header_crc) == HINT_HEADER_CRC_OFFSET);
    assert!(HINT_HEADER_CRC_OFFSET + size_of::<u32>() == HEADER_BYTES);
};
const ENTRY_FIXED_BYTES: usize = 24;
const TRAILER_BYTES: usize = 8;
/// Bytes of a hint file's header.
pub const HINT_HEADER_BYTES: usize = HEADER_BYTES;
/// The fewest bytes one hint entry takes (an entry with an empty key).
pub const HINT_MIN_ENTRY_BYTES: usize = ENTRY_FIXED_BYTES;

/// The largest hint a segment of `segment_bytes` can have: an entry is never longer than the
/// record it lists (24 bytes plus the key, against a 40-byte header plus key and value).
#[must_use]
pub const fn max_hint_bytes(segment_bytes: u64) -> u64 {
    (HEADER_BYTES + TRAILER_BYTES) as u64 + segment_bytes
}

/// One record of a sealed segment, as a hint lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintEntry<'a> {
    /// Offset of the record within its segment.
    pub offset: u32,
    /// The record's length.
    pub record_bytes: u32,
    /// The record's version.
    pub version: u64,
    /// Put or tombstone.
    pub kind: RecordKind,
    /// The record's key.
    pub key: &'a [u8],
}

/// Why a hint file was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HintError {
    /// Too short, or an entry runs past the end.
    Truncated,
    /// Not a hint file.
    BadMagic,
    /// The hint was written by another format version.
    UnsupportedVersion(u32),
    /// A checksum does not match.
    ChecksumMismatch,
    /// The hint belongs to another segment (id or salt differ).
    WrongSegment,
    /// An entry holds a value the format never writes.
    BadEntry {
        /// Index of the entry.
        index: u32,
    },
}

impl fmt::Display for HintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("hint file truncated"),
            Self::BadMagic => f.write_str("not a hint file (bad magic)"),
            Self::UnsupportedVersion(v) => write!(f, "hint format version {v} not supported"),
            Self::ChecksumMismatch => f.write_str("hint checksum mismatch"),
            Self::WrongSegment => f.write_str("hint belongs to another segment"),
            Self::BadEntry { index } => write!(f, "hint entry {index} is invalid"),
        }
    }
}

impl std::error::Error for HintError {}

/// Builds a hint file's bytes.
#[derive(Debug)]
pub struct HintWriter {
    bytes: Vec<u8>,
    count: u32,
}

impl HintWriter {
    /// A hint for segment `segment_id` with `salt`.
    #[must_use]
    pub fn new(segment_id: u64, salt: u32) -> Self {
        let mut bytes = Vec::with_capacity(4096);
        bytes.extend_from_slice(&HINT_MAGIC);
        bytes.extend_from_slice(&HINT_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes()); // entry_count, set by `finish`
        bytes.extend_from_slice(&segment_id.to_le_bytes());
        bytes.extend_from_slice(&salt.to_le_bytes());
        // segment_crc, filler_bytes and header_crc, set by `finish`
        bytes.extend_from_slice(&[0; HEADER_BYTES - SEGMENT_CRC_OFFSET]);
        debug_assert_eq!(bytes.len(), HEADER_BYTES);
        Self { bytes, count: 0 }
    }

    /// Adds a record.
    pub fn push(&mut self, entry: &HintEntry<'_>) {
        debug_assert!(matches!(
            entry.kind,
            RecordKind::Put | RecordKind::Tombstone
        ));
        self.bytes.extend_from_slice(&entry.offset.to_le_bytes());
        self.bytes
            .extend_from_slice(&entry.record_bytes.to_le_bytes());
        self.bytes.extend_from_slice(&entry.version.to_le_bytes());
        self.bytes.extend_from_slice(&[entry.kind as u8, 0, 0, 0]);
        self.bytes
            .extend_from_slice(&(entry.key.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(entry.key);
        let padded = align8(entry.key.len() as u64) as usize;
        self.bytes
            .resize(self.bytes.len() + padded - entry.key.len(), 0);
        self.count += 1;
    }

    /// The finished file, for a segment whose bytes have CRC32C `segment_crc` and whose
    /// aborted records take `filler_bytes`.
    #[must_use]
    pub fn finish(mut self, segment_crc: u32, filler_bytes: u32) -> Vec<u8> {
        let mut put = |at: usize, value: u32| {
            self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        };
        put(HINT_ENTRY_COUNT_OFFSET, self.count);
        put(SEGMENT_CRC_OFFSET, segment_crc);
        put(FILLER_BYTES_OFFSET, filler_bytes);
        let header_crc = crc32c(&self.bytes[..HEADER_CRC_OFFSET]);
        self.bytes[HEADER_CRC_OFFSET..HEADER_BYTES].copy_from_slice(&header_crc.to_le_bytes());
        let body_crc = crc32c(&self.bytes);
        self.bytes.extend_from_slice(&body_crc.to_le_bytes());
        self.bytes.extend_from_slice(&HINT_TRAILER.to_le_bytes());
        self.bytes
    }
}

/// A validated hint file.
#[derive(Debug, Clone, Copy)]
pub struct Hint<'a> {
    entries: &'a [u8],
    count: u32,
    segment_crc: u32,
    filler_bytes: u32,
}

/// Validates the first [`HINT_HEADER_BYTES`] of a hint file as the header of segment
/// `segment_id`'s hint (magic, version, header CRC, id, salt) and returns its entry count, which
/// only the whole file's checks confirm. Never panics.
pub fn decode_hint_header(header: &[u8], segment_id: u64, salt: u32) -> Result<u32, HintError> {
    let Some(header) = header.get(..HEADER_BYTES) else {
        return Err(HintError::Truncated);
    };
    if header[..HINT_MAGIC.len()] != HINT_MAGIC {
        return Err(HintError::BadMagic);
    }
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let version = u32_at(HINT_FORMAT_VERSION_OFFSET);
    if version != HINT_FORMAT_VERSION {
        return Err(HintError::UnsupportedVersion(version));
    }
    if crc32c(&header[..HEADER_CRC_OFFSET]) != u32_at(HEADER_CRC_OFFSET) {
        return Err(HintError::ChecksumMismatch);
    }
    let id_at = HINT_SEGMENT_ID_OFFSET;
    let id = u64::from_le_bytes(header[id_at..id_at + 8].try_into().expect("8 bytes"));
    if id != segment_id || u32_at(HINT_SALT_OFFSET) != salt {
        return Err(HintError::WrongSegment);
    }
    Ok(u32_at(HINT_ENTRY_COUNT_OFFSET))
}

/// Validates `bytes` as the hint of segment `segment_id` with `salt`. Never panics.
pub fn decode_hint(bytes: &[u8], segment_id: u64, salt: u32) -> Result<Hint<'_>, HintError> {
    if bytes.len() < HEADER_BYTES + TRAILER_BYTES {
        return Err(HintError::Truncated);
    }
    if bytes[..HINT_MAGIC.len()] != HINT_MAGIC {
        return Err(HintError::BadMagic);
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    // The version first: a version 1 hint has another header layout.
    let version = u32_at(HINT_FORMAT_VERSION_OFFSET);
    if version != HINT_FORMAT_VERSION {
        return Err(HintError::UnsupportedVersion(version));
    }
    let end = bytes.len();
    if u32_at(end - 4) != HINT_TRAILER {
        return Err(HintError::Truncated);
    }
    if crc32c(&bytes[..end - TRAILER_BYTES]) != u32_at(end - 8)
        || crc32c(&bytes[..HEADER_CRC_OFFSET]) != u32_at(HEADER_CRC_OFFSET)
    {
        return Err(HintError::ChecksumMismatch);
    }
    if u64_at(HINT_SEGMENT_ID_OFFSET) != segment_id || u32_at(HINT_SALT_OFFSET) != salt {
        return Err(HintError::WrongSegment);
    }
    let hint = Hint {
        entries: &bytes[HEADER_BYTES..end - TRAILER_BYTES],
        count: u32_at(HINT_ENTRY_COUNT_OFFSET),
        segment_crc: u32_at(SEGMENT_CRC_OFFSET),
        filler_bytes: u32_at(FILLER_BYTES_OFFSET),
    };
    // Walk once so that iteration cannot fail later.
    let mut seen = 0u32;
    for entry in hint.raw_entries() {
        entry?;
        seen += 1;
    }
    if seen != hint.count {
        return Err(HintError::BadEntry { index: seen });
    }
    Ok(hint)
}

impl<'a> Hint<'a> {
    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether the hint lists no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// CRC32C of the whole segment file the hint describes.
    #[must_use]
    pub fn segment_crc(&self) -> u32 {
        self.segment_crc
    }

    /// Bytes of the segment's aborted records.
    #[must_use]
    pub fn filler_bytes(&self) -> u32 {
        self.filler_bytes
    }

    /// The entries, in log order.
    pub fn entries(&self) -> impl Iterator<Item = HintEntry<'a>> + 'a {
        self.raw_entries()
            .map(|e| e.expect("validated by decode_hint"))
    }

    fn raw_entries(&self) -> impl Iterator<Item = Result<HintEntry<'a>, HintError>> + 'a {
        let bytes = self.entries;
        let mut at = 0usize;
        let mut index = 0u32;
        std::iter::from_fn(move || {
            if at == bytes.len() {
                return None;
            }
            let bad = HintError::BadEntry { index };
            let Some(fixed) = bytes.get(at..at + ENTRY_FIXED_BYTES) else {
                at = bytes.len();
                return Some(Err(bad));
            };
            let u32_at = |o: usize| u32::from_le_bytes(fixed[o..o + 4].try_into().expect("4"));
            let offset = u32_at(0);
            let record_bytes = u32_at(4);
            let version = u64::from_le_bytes(fixed[8..16].try_into().expect("8"));
            let kind = RecordKind::from_u8(fixed[16]);
            let key_len = u32_at(20) as usize;
            let key_start = at + ENTRY_FIXED_BYTES;
            let key_end = key_start + key_len;
            let next = key_start + align8(key_len as u64) as usize;
            let valid_kind = matches!(kind, Some(RecordKind::Put | RecordKind::Tombstone));
            if !valid_kind
                || fixed[17..20] != [0, 0, 0]
                || key_len > MAX_KEY_BYTES
                || next > bytes.len()
                || !offset.is_multiple_of(8)
                || !record_bytes.is_multiple_of(8)
            {
                at = bytes.len();
                return Some(Err(bad));
            }
            at = next;
            index += 1;
            Some(Ok(HintEntry {
                offset,
                record_bytes,
                version,
                kind: kind.expect("checked"),
                key: &bytes[key_start..key_end],
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = HintWriter::new(9, 0xABCD);
        w.push(&HintEntry {
            offset: 64,
            record_bytes: 56,
            version: 576,
            kind: RecordKind::Put,
            key: b"alpha",
        });
        w.push(&HintEntry {
            offset: 120,
            record_bytes: 48,
            version: 632,
            kind: RecordKind::Tombstone,
            key: b"",
        });
        w.finish(0x1234_5678, 96)
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let hint = decode_hint(&bytes, 9, 0xABCD).unwrap();
        let entries: Vec<_> = hint.entries().collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].key, b"alpha");
        assert_eq!(entries[0].version, 576);
        assert_eq!(entries[1].kind, RecordKind::Tombstone);
        assert_eq!(entries[1].offset, 120);
        assert_eq!(hint.segment_crc(), 0x1234_5678);
        assert_eq!(hint.filler_bytes(), 96);
    }

    #[test]
    fn the_header_alone_gives_the_entry_count() {
        let bytes = sample();
        assert_eq!(decode_hint_header(&bytes, 9, 0xABCD), Ok(2));
        assert_eq!(
            decode_hint_header(&bytes, 9, 1),
            Err(HintError::WrongSegment)
        );
        let mut flipped = bytes.clone();
        flipped[HINT_ENTRY_COUNT_OFFSET + 1] ^= 0x40;
        assert_eq!(
            decode_hint_header(&flipped, 9, 0xABCD),
            Err(HintError::ChecksumMismatch)
        );
        assert_eq!(
            decode_hint_header(&bytes[..39], 9, 0xABCD),
            Err(HintError::Truncated)
        );
    }

    #[test]
    fn a_version_1_hint_is_refused() {
        let mut bytes = sample();
        bytes[HINT_FORMAT_VERSION_OFFSET..HINT_FORMAT_VERSION_OFFSET + 4]
            .copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            decode_hint(&bytes, 9, 0xABCD).unwrap_err(),
            HintError::UnsupportedVersion(1)
        );
    }

    #[test]
    fn wrong_segment_or_salt_is_rejected() {
        let bytes = sample();
        assert_eq!(
            decode_hint(&bytes, 8, 0xABCD).unwrap_err(),
            HintError::WrongSegment
        );
        assert_eq!(
            decode_hint(&bytes, 9, 1).unwrap_err(),
            HintError::WrongSegment
        );
    }

    #[test]
    fn every_bit_flip_and_truncation_is_rejected() {
        let bytes = sample();
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_hint(&b, 9, 0xABCD).is_err(),
                "flip of bit {bit} accepted"
            );
        }
        for len in 0..bytes.len() {
            assert!(
                decode_hint(&bytes[..len], 9, 0xABCD).is_err(),
                "cut to {len} accepted"
            );
        }
    }
}
