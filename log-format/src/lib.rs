//! The byte format of seglog segments and records: what they look like, how to encode them, and
//! how to tell a valid record from anything else. Bytes only: no files, no mmap, no threads.
//!
//! Also everything else about the bytes that the engine and the `seglog` tool share, so that
//! neither knows an offset or a file name of its own: the names of the files a log directory
//! holds ([`LogFile`]), the offsets of every header field (`SegmentHeader::*_OFFSET`,
//! `RecordHeader::*_OFFSET`, `HINT_*_OFFSET`), positions ([`join_position`],
//! [`split_position`], [`max_segment_id`]), and the walk that classifies a segment's bytes into
//! records, holes, damaged ranges and its trailing range ([`SegmentWalk`]), which recovery and
//! `seglog verify` both use.
//!
//! `docs/format.md` is the prose twin of this module; the two must agree.
//!
//! ```text
//! segment file (segment_bytes, a power of two):
//! +----------------------+----------+----------+-----+---------------------+
//! | SegmentHeader (64 B) | record 0 | record 1 | ... | padding to the end  |
//! +----------------------+----------+----------+-----+---------------------+
//!
//! record (8-byte aligned, record_bytes long):
//! +---------------------+-----------------+---------+------------------+---------+
//! | RecordHeader (40 B) | key (key_len)   | pad → 8 | value (value_len)| pad → 8 |
//! +---------------------+-----------------+---------+------------------+---------+
//!                         ^ offset 40                 ^ value_offset = 40 + align8(key_len)
//! ```
//!
//! Every integer is little-endian. Records start on 8-byte boundaries and so do values, so a
//! reader can view a value as `&[f32]` or `&[u64]` in place.
//!
//! A record is published by its *commit word* (the first 8 bytes), written last. A zero commit
//! word means "not written yet"; everything else in the header and payload is written before it.
//! A reader decides what a position holds only from the commit word plus the header fields, and a
//! position that fails any check is an error value, never a panic.

#![cfg_attr(not(test), warn(missing_docs))]

#[cfg(target_endian = "big")]
compile_error!(
    "seglog's format is little-endian and its headers are cast in place; big-endian targets are not supported"
);

mod hint;
mod names;
mod record;
mod segment;
mod walk;

pub use hint::{
    HINT_ENTRY_COUNT_OFFSET, HINT_FILLER_BYTES_OFFSET, HINT_FORMAT_VERSION,
    HINT_FORMAT_VERSION_OFFSET, HINT_HEADER_BYTES, HINT_HEADER_CRC_OFFSET, HINT_MAGIC,
    HINT_MAGIC_OFFSET, HINT_MIN_ENTRY_BYTES, HINT_SALT_OFFSET, HINT_SEGMENT_CRC_OFFSET,
    HINT_SEGMENT_ID_OFFSET, HINT_TRAILER, Hint, HintEntry, HintError, HintWriter, decode_hint,
    decode_hint_header, max_hint_bytes,
};
pub use names::{
    CORRUPT_SEGMENT_SUFFIX, FREE_SEGMENT_SUFFIX, HINT_SUFFIX, HINT_TMP_SUFFIX, LOCK_FILE_NAME,
    LogFile, SEGMENT_ID_DIGITS, SEGMENT_SUFFIX,
};
pub use record::{
    BATCH_CONDITIONAL, CommitWord, RecordError, RecordHeader, RecordKind, RecordLayout, RecordView,
    Verify, batch_members, batch_record_bytes, decode_record, encode_batch_into, encode_record,
    record_layout,
};
pub use segment::{SegmentHeader, SegmentHeaderError};
pub use walk::{
    SegmentItem, SegmentWalk, decode_at, find_next_record, is_blank_after_header, next_item,
    salvage_salt,
};

/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first 8 bytes of every segment file. The high bit and the newline catch files mangled by
/// text-mode transfers, as in PNG's signature.
pub const SEGMENT_MAGIC: [u8; 8] = *b"\x89SEGLOG\n";

/// Size of the segment header; the first record of a segment starts here.
pub const SEGMENT_HEADER_BYTES: usize = 64;

/// Size of the record header.
pub const RECORD_HEADER_BYTES: usize = 40;

/// Alignment of records and of values within them.
pub const RECORD_ALIGN: usize = 8;

/// Smallest segment size accepted (tiny segments are for tests and loom models).
pub const MIN_SEGMENT_BYTES: u64 = 256;

/// Largest segment size accepted: the record length must fit the commit word's 32-bit field,
/// and positions keep 30 bits for the offset.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// Largest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

/// Rounds `n` up to the next multiple of [`RECORD_ALIGN`].
#[must_use]
pub const fn align8(n: u64) -> u64 {
    (n + (RECORD_ALIGN as u64 - 1)) & !(RECORD_ALIGN as u64 - 1)
}

/// Whether `segment_bytes` is a size this format accepts: a power of two within
/// [`MIN_SEGMENT_BYTES`]..=[`MAX_SEGMENT_BYTES`].
#[must_use]
pub const fn valid_segment_bytes(segment_bytes: u64) -> bool {
    segment_bytes.is_power_of_two()
        && segment_bytes >= MIN_SEGMENT_BYTES
        && segment_bytes <= MAX_SEGMENT_BYTES
}

/// CRC32C (Castagnoli), hardware-accelerated where the CPU has it.
#[must_use]
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// The CRC32C of the bytes whose CRC32C is `crc` followed by `bytes`: `crc32c(a ++ b) ==
/// crc32c_append(crc32c(a), b)`, for checksumming a file a chunk at a time.
#[must_use]
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}

/// Whether every byte of `bytes` is zero. Fast on long runs of zeros (see [`first_nonzero`]):
/// recovery runs this over the unwritten end of every tail segment (tens of megabytes), where a
/// byte-at-a-time loop was a tenth of an open.
#[must_use]
pub fn is_all_zero(bytes: &[u8]) -> bool {
    first_nonzero(bytes, 0) == bytes.len()
}

/// The index of the first non-zero byte of `bytes` at or after `from`, or `bytes.len()` if there
/// is none. Tests 256-byte blocks without an early exit inside one, which the compiler
/// vectorizes, and looks inside only the block that holds one. Never panics.
fn first_nonzero(bytes: &[u8], from: usize) -> usize {
    const BLOCK: usize = 256;
    let mut at = from.min(bytes.len());
    while at < bytes.len() {
        let end = at.saturating_add(BLOCK).min(bytes.len());
        let block = &bytes[at..end];
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return at + block.iter().position(|&b| b != 0).unwrap_or(block.len());
        }
        at = end;
    }
    bytes.len()
}

/// The position of byte `offset` of segment `segment_id`, in a log of `segment_bytes` segments:
/// `segment_id << log2(segment_bytes)`, plus `offset`. `offset` may be `segment_bytes` (the end
/// of the segment), which is the position where the next segment starts.
///
/// Exact for every id up to [`max_segment_id`] and every valid segment size (see
/// [`valid_segment_bytes`]); beyond those the result wraps, and is meaningless, but this never
/// panics.
#[must_use]
pub const fn join_position(segment_id: u64, offset: u64, segment_bytes: u64) -> u64 {
    let base = match segment_id.checked_shl(segment_bytes.trailing_zeros()) {
        Some(base) => base,
        None => 0,
    };
    base.wrapping_add(offset)
}

/// The segment id and the offset in it of `position`, in a log of `segment_bytes` segments: the
/// inverse of [`join_position`] (for offsets below `segment_bytes`). Meaningless, but never a
/// panic, for a `segment_bytes` that is not a valid segment size.
#[must_use]
pub const fn split_position(position: u64, segment_bytes: u64) -> (u64, u64) {
    let segment_id = match position.checked_shr(segment_bytes.trailing_zeros()) {
        Some(id) => id,
        None => 0,
    };
    (segment_id, position & segment_bytes.wrapping_sub(1))
}

/// The largest segment id a log of `segment_bytes` segments uses:
/// `(u64::MAX >> log2(segment_bytes)) >> 1`, so that the position of every byte of it, and of
/// the segment after it, fits in a u64 (a log reaching it has appended 2^63 bytes). The engine
/// refuses a segment file with a larger id at open. 0 for a `segment_bytes` of 0.
#[must_use]
pub const fn max_segment_id(segment_bytes: u64) -> u64 {
    match u64::MAX.checked_shr(segment_bytes.trailing_zeros()) {
        Some(ids) => ids >> 1,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_nonzero_finds_every_byte_across_block_edges() {
        for len in [0usize, 1, 7, 255, 256, 257, 1000] {
            let mut bytes = vec![0u8; len];
            assert!(is_all_zero(&bytes));
            for from in [0, 1, 255, 256, len] {
                assert_eq!(first_nonzero(&bytes, from), len, "len {len} from {from}");
            }
            for at in 0..len {
                bytes[at] = 0x80;
                assert!(!is_all_zero(&bytes));
                assert_eq!(first_nonzero(&bytes, 0), at);
                assert_eq!(first_nonzero(&bytes, at), at);
                assert_eq!(first_nonzero(&bytes, at + 1), len);
                bytes[at] = 0;
            }
        }
    }

    #[test]
    fn positions_join_and_split() {
        for segment_bytes in [MIN_SEGMENT_BYTES, 1 << 16, 1 << 26, MAX_SEGMENT_BYTES] {
            let max = max_segment_id(segment_bytes);
            assert_eq!(max, (u64::MAX >> segment_bytes.trailing_zeros()) >> 1);
            for id in [0, 1, 42, max - 1, max] {
                for offset in [0, SEGMENT_HEADER_BYTES as u64, segment_bytes - 8] {
                    let position = join_position(id, offset, segment_bytes);
                    assert_eq!(position, (id << segment_bytes.trailing_zeros()) | offset);
                    assert_eq!(split_position(position, segment_bytes), (id, offset));
                }
                // The end of a segment is the start of the next.
                assert_eq!(
                    join_position(id, segment_bytes, segment_bytes),
                    join_position(id + 1, 0, segment_bytes)
                );
            }
            // The end of the last segment still fits.
            assert!(
                join_position(max, segment_bytes, segment_bytes)
                    > join_position(max, 0, segment_bytes)
            );
        }
    }

    #[test]
    fn positions_never_panic_on_invalid_sizes() {
        for segment_bytes in [0, 1, 3, 1000, u64::MAX, 1 << 63] {
            let _ = join_position(u64::MAX, u64::MAX, segment_bytes);
            let _ = split_position(u64::MAX, segment_bytes);
            let _ = max_segment_id(segment_bytes);
        }
        assert_eq!(max_segment_id(0), 0);
    }
}
