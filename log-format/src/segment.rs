//! The segment header: the first [`SEGMENT_HEADER_BYTES`] of every segment file.
//!
//! ```text
//! offset size field
//!      0    8 magic          SEGMENT_MAGIC
//!      8    4 format_version FORMAT_VERSION
//!     12    4 header_bytes   SEGMENT_HEADER_BYTES
//!     16    8 segment_id     matches the file name
//!     24    8 segment_bytes  the file's size, a power of two
//!     32    4 salt           random per segment; every record in it repeats it
//!     36   24 reserved       zero
//!     60    4 header_crc     CRC32C of bytes 0..60
//! ```

use core::fmt;
use core::mem::{offset_of, size_of};

use bytemuck::{Pod, Zeroable};

use crate::{FORMAT_VERSION, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, crc32c, valid_segment_bytes};

/// The header at offset 0 of every segment.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct SegmentHeader {
    magic: [u8; 8],
    format_version: u32,
    header_bytes: u32,
    segment_id: u64,
    segment_bytes: u64,
    salt: u32,
    reserved: [u8; 24],
    header_crc: u32,
}

const _: () = assert!(size_of::<SegmentHeader>() == SEGMENT_HEADER_BYTES);
const CRC_OFFSET: usize = SegmentHeader::HEADER_CRC_OFFSET;
const _: () = {
    assert!(offset_of!(SegmentHeader, magic) == SegmentHeader::MAGIC_OFFSET);
    assert!(offset_of!(SegmentHeader, format_version) == SegmentHeader::FORMAT_VERSION_OFFSET);
    assert!(offset_of!(SegmentHeader, header_bytes) == SegmentHeader::HEADER_BYTES_OFFSET);
    assert!(offset_of!(SegmentHeader, segment_id) == SegmentHeader::SEGMENT_ID_OFFSET);
    assert!(offset_of!(SegmentHeader, segment_bytes) == SegmentHeader::SEGMENT_BYTES_OFFSET);
    assert!(offset_of!(SegmentHeader, salt) == SegmentHeader::SALT_OFFSET);
    assert!(offset_of!(SegmentHeader, reserved) == SegmentHeader::RESERVED_OFFSET);
    assert!(offset_of!(SegmentHeader, header_crc) == SegmentHeader::HEADER_CRC_OFFSET);
    assert!(SegmentHeader::HEADER_CRC_OFFSET == SEGMENT_HEADER_BYTES - size_of::<u32>());
};

/// Why a segment header was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentHeaderError {
    /// Fewer than [`SEGMENT_HEADER_BYTES`] bytes were available.
    Truncated {
        /// Bytes available.
        available: u64,
    },
    /// The first 8 bytes are not [`SEGMENT_MAGIC`]: not a seglog segment.
    BadMagic,
    /// The header's CRC does not match its bytes.
    ChecksumMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the header bytes.
        computed: u32,
    },
    /// Written by a format version this build does not read.
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// A field holds a value the format never writes.
    BadField {
        /// The field's name.
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

impl fmt::Display for SegmentHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { available } => write!(
                f,
                "segment header truncated: {available} of {SEGMENT_HEADER_BYTES} bytes present"
            ),
            Self::BadMagic => f.write_str("not a seglog segment (bad magic)"),
            Self::ChecksumMismatch { stored, computed } => write!(
                f,
                "segment header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            Self::UnsupportedVersion { found } => write!(
                f,
                "segment format version {found} is not supported (this build reads {FORMAT_VERSION})"
            ),
            Self::BadField { field, value } => {
                write!(f, "segment header field {field} has invalid value {value}")
            }
        }
    }
}

impl std::error::Error for SegmentHeaderError {}

impl SegmentHeader {
    /// Byte offset of `magic` in the header.
    pub const MAGIC_OFFSET: usize = 0;
    /// Byte offset of `format_version`.
    pub const FORMAT_VERSION_OFFSET: usize = 8;
    /// Byte offset of `header_bytes`.
    pub const HEADER_BYTES_OFFSET: usize = 12;
    /// Byte offset of `segment_id` (where a header naming the wrong segment is wrong).
    pub const SEGMENT_ID_OFFSET: usize = 16;
    /// Byte offset of `segment_bytes` (where a header of the wrong size is wrong).
    pub const SEGMENT_BYTES_OFFSET: usize = 24;
    /// Byte offset of `salt`.
    pub const SALT_OFFSET: usize = 32;
    /// Byte offset of the reserved (zero) bytes.
    pub const RESERVED_OFFSET: usize = 36;
    /// Byte offset of `header_crc`, the CRC32C of every byte before it.
    pub const HEADER_CRC_OFFSET: usize = 60;

    /// A sealed header for segment `segment_id` of `segment_bytes` bytes with `salt`.
    ///
    /// # Panics
    /// If `segment_bytes` is not a valid segment size (see [`crate::valid_segment_bytes`]);
    /// callers validate options before they create segments.
    #[must_use]
    pub fn new(segment_id: u64, segment_bytes: u64, salt: u32) -> Self {
        assert!(
            valid_segment_bytes(segment_bytes),
            "invalid segment size {segment_bytes}"
        );
        let mut header = Self {
            magic: SEGMENT_MAGIC,
            format_version: FORMAT_VERSION.to_le(),
            header_bytes: (SEGMENT_HEADER_BYTES as u32).to_le(),
            segment_id: segment_id.to_le(),
            segment_bytes: segment_bytes.to_le(),
            salt: salt.to_le(),
            reserved: [0; 24],
            header_crc: 0,
        };
        header.header_crc = header.computed_crc().to_le();
        header
    }

    fn computed_crc(&self) -> u32 {
        crc32c(&bytemuck::bytes_of(self)[..CRC_OFFSET])
    }

    /// Reads and validates a header from the start of `bytes`. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, SegmentHeaderError> {
        let Some(raw) = bytes.get(..SEGMENT_HEADER_BYTES) else {
            return Err(SegmentHeaderError::Truncated {
                available: bytes.len() as u64,
            });
        };
        let header: Self = bytemuck::pod_read_unaligned(raw);
        if header.magic != SEGMENT_MAGIC {
            return Err(SegmentHeaderError::BadMagic);
        }
        let stored = u32::from_le(header.header_crc);
        let computed = header.computed_crc();
        if stored != computed {
            return Err(SegmentHeaderError::ChecksumMismatch { stored, computed });
        }
        if header.format_version() != FORMAT_VERSION {
            return Err(SegmentHeaderError::UnsupportedVersion {
                found: header.format_version(),
            });
        }
        if u32::from_le(header.header_bytes) as usize != SEGMENT_HEADER_BYTES {
            return Err(SegmentHeaderError::BadField {
                field: "header_bytes",
                value: u64::from(u32::from_le(header.header_bytes)),
            });
        }
        if !valid_segment_bytes(header.segment_bytes()) {
            return Err(SegmentHeaderError::BadField {
                field: "segment_bytes",
                value: header.segment_bytes(),
            });
        }
        if let Some(at) = header.reserved.iter().position(|&b| b != 0) {
            // The value reported is the offset of the first non-zero reserved byte.
            return Err(SegmentHeaderError::BadField {
                field: "reserved",
                value: (Self::RESERVED_OFFSET + at) as u64,
            });
        }
        Ok(header)
    }

    /// The header's bytes, ready to be written at offset 0 of the segment.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }

    /// The format version that wrote this segment.
    #[must_use]
    pub fn format_version(&self) -> u32 {
        u32::from_le(self.format_version)
    }

    /// The segment's id (its file name, in hex).
    #[must_use]
    pub fn segment_id(&self) -> u64 {
        u64::from_le(self.segment_id)
    }

    /// The segment's size in bytes.
    #[must_use]
    pub fn segment_bytes(&self) -> u64 {
        u64::from_le(self.segment_bytes)
    }

    /// The segment's random salt, repeated in each of its records.
    #[must_use]
    pub fn salt(&self) -> u32 {
        u32::from_le(self.salt)
    }
}

impl fmt::Debug for SegmentHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentHeader")
            .field("format_version", &self.format_version())
            .field("segment_id", &self.segment_id())
            .field("segment_bytes", &self.segment_bytes())
            .field("salt", &format_args!("{:#010x}", self.salt()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = SegmentHeader::new(7, 1 << 16, 0xdead_beef);
        let back = SegmentHeader::decode(h.as_bytes()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.segment_id(), 7);
        assert_eq!(back.segment_bytes(), 1 << 16);
        assert_eq!(back.salt(), 0xdead_beef);
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let h = SegmentHeader::new(3, 1 << 20, 42);
        let bytes = h.as_bytes().to_vec();
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                SegmentHeader::decode(&b).is_err(),
                "bit {bit} flip accepted"
            );
        }
    }

    #[test]
    fn short_input_is_truncated() {
        assert_eq!(
            SegmentHeader::decode(&[0; 10]),
            Err(SegmentHeaderError::Truncated { available: 10 })
        );
    }
}
