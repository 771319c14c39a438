//! The byte format of seglog segments and records: what they look like, how to encode them, and
//! how to tell a valid record from anything else. Bytes only: no files, no mmap, no threads.
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
mod record;
mod segment;

pub use hint::{
    HINT_ENTRY_COUNT_OFFSET, HINT_FORMAT_VERSION, HINT_HEADER_BYTES, HINT_MAGIC,
    HINT_MIN_ENTRY_BYTES, HINT_TRAILER, Hint, HintEntry, HintError, HintWriter, decode_hint,
    decode_hint_header, max_hint_bytes,
};
pub use record::{
    CommitWord, RecordError, RecordHeader, RecordKind, RecordLayout, RecordView, Verify,
    decode_record, encode_record, record_layout,
};
pub use segment::{SegmentHeader, SegmentHeaderError};

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
