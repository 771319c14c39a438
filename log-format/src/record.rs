//! Records: the commit word, the record header, and validation.
//!
//! ```text
//! offset size field
//!      0    8 commit     CommitWord: record_bytes (bits 0..32), kind (32..40), CommitWord::MARK (40..64)
//!      8    4 key_len
//!     12    4 value_len
//!     16    8 version    the record's position when first written; a compaction copy keeps it.
//!                        (version, position) decides which record of a key is current
//!     24    8 position   the record's own log position (segment id << shift | offset)
//!     32    4 salt       the segment's salt
//!     36    4 crc        CRC32C of bytes 0..36, then key, then value (put and tombstone);
//!                        of bytes 0..36 alone (padding and aborted)
//!     40      key, zero padding to 8, value, zero padding to 8
//! ```
//!
//! A *batch* is one record of kind [`RecordKind::Batch`] whose value is its members: whole
//! records of kind [`RecordKind::BatchPut`] or [`RecordKind::BatchTombstone`], back to back, each
//! with its own header, position and checksum, all of the batch's version. The batch's
//! checksum covers its members' bytes, so the batch is valid whole or not at all: that is what
//! makes it crash-atomic. A member is valid only inside a valid batch; one found alone (its
//! batch unpublished, torn or damaged) means nothing, like an aborted record. Through the index a
//! member reads as the put or tombstone it stands for ([`RecordKind::unbatched`]).
//!
//! A *short padding* record is a commit word alone. It is written only when fewer than
//! [`RECORD_HEADER_BYTES`] bytes remain before the end of the segment, and is valid only if it
//! reaches that end exactly.

use core::fmt;
use core::mem::{offset_of, size_of};

use bytemuck::{Pod, Zeroable};

use crate::{RECORD_ALIGN, RECORD_HEADER_BYTES, align8};

/// What a record is. The codes differ pairwise in at least two bits, so no single bit flip
/// turns one kind into another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// A key and its value.
    Put = 1,
    /// A key's removal; the value is empty.
    Tombstone = 2,
    /// A reservation whose writer gave up (its closure panicked); its bytes mean nothing.
    Aborted = 4,
    /// Filler from here to the end of the segment.
    Padding = 7,
    /// A batch: its value is its members (see the module docs).
    Batch = 0x18,
    /// A put inside a batch.
    BatchPut = 0x30,
    /// A tombstone inside a batch.
    BatchTombstone = 0x50,
}

impl RecordKind {
    /// The kind for a raw byte, if it names one.
    #[must_use]
    pub const fn from_u8(raw: u8) -> Option<Self> {
        match raw {
            1 => Some(Self::Put),
            2 => Some(Self::Tombstone),
            4 => Some(Self::Aborted),
            7 => Some(Self::Padding),
            0x18 => Some(Self::Batch),
            0x30 => Some(Self::BatchPut),
            0x50 => Some(Self::BatchTombstone),
            _ => None,
        }
    }

    /// Whether the record's checksum covers its key and value (puts, tombstones, batches and
    /// their members) or only its header (padding and aborted, whose payload bytes are
    /// meaningless).
    #[must_use]
    pub const fn checksums_payload(self) -> bool {
        !matches!(self, Self::Padding | Self::Aborted)
    }

    /// Whether this is a batch's member kind.
    #[must_use]
    pub const fn is_batch_member(self) -> bool {
        matches!(self, Self::BatchPut | Self::BatchTombstone)
    }

    /// What a member stands for once its batch is valid: [`Self::BatchPut`] is a put,
    /// [`Self::BatchTombstone`] a tombstone; every other kind is itself.
    #[must_use]
    pub const fn unbatched(self) -> Self {
        match self {
            Self::BatchPut => Self::Put,
            Self::BatchTombstone => Self::Tombstone,
            other => other,
        }
    }

    /// The member kind of a put or tombstone inside a batch; `None` for other kinds.
    #[must_use]
    pub const fn batched(self) -> Option<Self> {
        match self {
            Self::Put => Some(Self::BatchPut),
            Self::Tombstone => Some(Self::BatchTombstone),
            _ => None,
        }
    }
}

/// The first 8 bytes of a record, stored last, with `Release`, to publish it.
///
/// Zero means "nothing written here yet". A non-zero word carries [`CommitWord::MARK`] in its top
/// 24 bits so that stray bytes are unlikely to pass for one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommitWord(u64);

impl CommitWord {
    /// Bits 0..32: the record's total length in bytes.
    pub const LEN_MASK: u64 = 0xFFFF_FFFF;
    /// Bits 32..40: the [`RecordKind`].
    pub const KIND_SHIFT: u32 = 32;
    /// Mask of the kind field once shifted down.
    pub const KIND_MASK: u64 = 0xFF;
    /// Bits 40..64: the constant mark.
    pub const MARK_SHIFT: u32 = 40;
    /// The mark every committed record carries.
    pub const MARK: u64 = 0x5E_C1_06;
    /// The word of a position nobody has written.
    pub const UNWRITTEN: Self = Self(0);

    /// The commit word of a record of `kind`, `record_bytes` long.
    #[must_use]
    pub const fn new(kind: RecordKind, record_bytes: u32) -> Self {
        Self(
            (Self::MARK << Self::MARK_SHIFT)
                | ((kind as u64) << Self::KIND_SHIFT)
                | record_bytes as u64,
        )
    }

    /// The word stored little-endian in the first 8 bytes of `bytes` (a record's start), or
    /// `None` if there are fewer. For bytes nobody writes concurrently; a live log loads the
    /// word atomically instead.
    #[must_use]
    pub fn read(bytes: &[u8]) -> Option<Self> {
        let word: [u8; 8] = bytes.get(..RecordHeader::COMMIT_BYTES)?.try_into().ok()?;
        Some(Self(u64::from_le_bytes(word)))
    }

    /// Wraps a raw word loaded from memory.
    #[must_use]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw word, to store.
    #[must_use]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Whether nothing has been written here yet.
    #[must_use]
    pub const fn is_unwritten(self) -> bool {
        self.0 == 0
    }

    /// The kind and total length, if this is a well-formed committed word.
    pub fn decode(self) -> Result<(RecordKind, u32), RecordError> {
        if self.0 == 0 {
            return Err(RecordError::Unwritten);
        }
        let bad = RecordError::BadCommitWord { raw: self.0 };
        if self.0 >> Self::MARK_SHIFT != Self::MARK {
            return Err(bad);
        }
        let Some(kind) =
            RecordKind::from_u8(((self.0 >> Self::KIND_SHIFT) & Self::KIND_MASK) as u8)
        else {
            return Err(bad);
        };
        let len = (self.0 & Self::LEN_MASK) as u32;
        if len == 0 || !(len as usize).is_multiple_of(RECORD_ALIGN) {
            return Err(bad);
        }
        if kind != RecordKind::Padding && (len as usize) < RECORD_HEADER_BYTES {
            return Err(bad);
        }
        Ok((kind, len))
    }
}

impl fmt::Debug for CommitWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.decode() {
            Ok((kind, len)) => write!(f, "CommitWord({kind:?}, {len} bytes)"),
            Err(_) => write!(f, "CommitWord({:#018x})", self.0),
        }
    }
}

/// Where the parts of a record sit, relative to its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLayout {
    /// Offset of the key (always [`RECORD_HEADER_BYTES`]).
    pub key_offset: u32,
    /// Offset of the value: 8-byte aligned.
    pub value_offset: u32,
    /// Total length, a multiple of 8.
    pub record_bytes: u32,
}

/// The layout of a record with a key of `key_len` and a value of `value_len` bytes, or `None` if
/// it would not fit in the commit word's 32-bit length.
#[must_use]
pub fn record_layout(key_len: usize, value_len: usize) -> Option<RecordLayout> {
    // Through u32 first: lengths that do not fit one cannot make a record, and `align8` of a
    // u32-sized length cannot overflow.
    let key_len = u64::from(u32::try_from(key_len).ok()?);
    let value_len = u64::from(u32::try_from(value_len).ok()?);
    let value_offset = RECORD_HEADER_BYTES as u64 + align8(key_len);
    let record_bytes = value_offset + align8(value_len);
    Some(RecordLayout {
        key_offset: RECORD_HEADER_BYTES as u32,
        value_offset: u32::try_from(value_offset).ok()?,
        record_bytes: u32::try_from(record_bytes).ok()?,
    })
}

/// The record header. Fields are stored little-endian; use the accessors.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct RecordHeader {
    commit: u64,
    key_len: u32,
    value_len: u32,
    version: u64,
    position: u64,
    salt: u32,
    crc: u32,
}

const _: () = assert!(size_of::<RecordHeader>() == RECORD_HEADER_BYTES);
const CRC_OFFSET: usize = RecordHeader::CRC_OFFSET;
const _: () = {
    assert!(offset_of!(RecordHeader, commit) == RecordHeader::COMMIT_OFFSET);
    assert!(offset_of!(RecordHeader, key_len) == RecordHeader::KEY_LEN_OFFSET);
    assert!(offset_of!(RecordHeader, value_len) == RecordHeader::VALUE_LEN_OFFSET);
    assert!(offset_of!(RecordHeader, version) == RecordHeader::VERSION_OFFSET);
    assert!(offset_of!(RecordHeader, position) == RecordHeader::POSITION_OFFSET);
    assert!(offset_of!(RecordHeader, salt) == RecordHeader::SALT_OFFSET);
    assert!(offset_of!(RecordHeader, crc) == RecordHeader::CRC_OFFSET);
    assert!(RecordHeader::CRC_OFFSET == RECORD_HEADER_BYTES - size_of::<u32>());
    assert!(RecordHeader::KEY_LEN_OFFSET == RecordHeader::COMMIT_BYTES);
};

impl RecordHeader {
    /// The size of the commit word, which starts the header and is written last.
    pub const COMMIT_BYTES: usize = size_of::<u64>();
    /// Byte offset of the commit word in the header (and in the record).
    pub const COMMIT_OFFSET: usize = 0;
    /// Byte offset of `key_len`: the header body, written before the commit word, starts here.
    pub const KEY_LEN_OFFSET: usize = 8;
    /// Byte offset of `value_len`.
    pub const VALUE_LEN_OFFSET: usize = 12;
    /// Byte offset of `version`.
    pub const VERSION_OFFSET: usize = 16;
    /// Byte offset of `position`.
    pub const POSITION_OFFSET: usize = 24;
    /// Byte offset of `salt`.
    pub const SALT_OFFSET: usize = 32;
    /// Byte offset of `crc`, which covers every header byte before it.
    pub const CRC_OFFSET: usize = 36;

    /// The header's fields as stored at the start of `bytes`, nothing checked (`None` if fewer
    /// than [`RECORD_HEADER_BYTES`] bytes): for reading a field, such as the salt, of bytes that
    /// may not be a record. Use [`decode_record`] to validate. Never panics.
    #[must_use]
    pub fn read(bytes: &[u8]) -> Option<Self> {
        bytes
            .get(..RECORD_HEADER_BYTES)
            .map(bytemuck::pod_read_unaligned)
    }

    /// An unsealed header (checksum zero) for a record of `kind` with the given lengths.
    ///
    /// Returns `None` if the lengths overflow the format (see [`record_layout`]) or do not suit
    /// the kind (a tombstone with a value; padding and aborted records use [`Self::filler`]).
    #[must_use]
    pub fn new(
        kind: RecordKind,
        key_len: usize,
        value_len: usize,
        version: u64,
        position: u64,
        salt: u32,
    ) -> Option<Self> {
        let suits_kind = match kind {
            RecordKind::Put | RecordKind::BatchPut => true,
            RecordKind::Tombstone | RecordKind::BatchTombstone => value_len == 0,
            RecordKind::Batch => key_len == 0,
            RecordKind::Padding | RecordKind::Aborted => false,
        };
        if !suits_kind {
            return None;
        }
        let layout = record_layout(key_len, value_len)?;
        Some(Self {
            commit: CommitWord::new(kind, layout.record_bytes).raw().to_le(),
            key_len: (key_len as u32).to_le(),
            value_len: (value_len as u32).to_le(),
            version: version.to_le(),
            position: position.to_le(),
            salt: salt.to_le(),
            crc: 0,
        })
    }

    /// The header of a padding or aborted record `record_bytes` long (at least
    /// [`RECORD_HEADER_BYTES`], a multiple of 8), sealed: its checksum covers the header alone.
    ///
    /// # Panics
    /// If `kind` is not padding or aborted, or `record_bytes` is too short or unaligned: callers
    /// compute these from their own reservations, so a bad value is a bug, not bad input.
    #[must_use]
    pub fn filler(kind: RecordKind, record_bytes: u32, position: u64, salt: u32) -> Self {
        assert!(
            matches!(kind, RecordKind::Padding | RecordKind::Aborted),
            "filler kinds are padding and aborted, not {kind:?}"
        );
        assert!(
            record_bytes as usize >= RECORD_HEADER_BYTES
                && (record_bytes as usize).is_multiple_of(RECORD_ALIGN),
            "filler of {record_bytes} bytes"
        );
        let header = Self {
            commit: CommitWord::new(kind, record_bytes).raw().to_le(),
            key_len: 0,
            value_len: (record_bytes - RECORD_HEADER_BYTES as u32).to_le(),
            version: 0,
            position: position.to_le(),
            salt: salt.to_le(),
            crc: 0,
        };
        header.sealed(&[], &[])
    }

    /// This header with its checksum set over `key` and `value` (pass empty slices for kinds
    /// whose checksum covers the header alone).
    #[must_use]
    pub fn sealed(mut self, key: &[u8], value: &[u8]) -> Self {
        self.crc = self.compute_crc(key, value).to_le();
        self
    }

    fn compute_crc(&self, key: &[u8], value: &[u8]) -> u32 {
        let crc = crate::crc32c(&bytemuck::bytes_of(self)[..CRC_OFFSET]);
        let crc = crc32c::crc32c_append(crc, key);
        crc32c::crc32c_append(crc, value)
    }

    /// The commit word this header carries.
    #[must_use]
    pub fn commit_word(&self) -> CommitWord {
        CommitWord::from_raw(u64::from_le(self.commit))
    }

    /// The header's bytes after the commit word: written first, before the commit word.
    #[must_use]
    pub fn body_bytes(&self) -> &[u8] {
        &bytemuck::bytes_of(self)[Self::COMMIT_BYTES..]
    }

    /// All 40 bytes, commit word included.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }

    /// The key's length.
    #[must_use]
    pub fn key_len(&self) -> u32 {
        u32::from_le(self.key_len)
    }

    /// The value's length.
    #[must_use]
    pub fn value_len(&self) -> u32 {
        u32::from_le(self.value_len)
    }

    /// The record's version.
    #[must_use]
    pub fn version(&self) -> u64 {
        u64::from_le(self.version)
    }

    /// The position the record claims to be stored at.
    #[must_use]
    pub fn position(&self) -> u64 {
        u64::from_le(self.position)
    }

    /// The salt of the segment the record claims to be in.
    #[must_use]
    pub fn salt(&self) -> u32 {
        u32::from_le(self.salt)
    }

    /// The stored checksum.
    #[must_use]
    pub fn crc(&self) -> u32 {
        u32::from_le(self.crc)
    }
}

impl fmt::Debug for RecordHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordHeader")
            .field("commit", &self.commit_word())
            .field("key_len", &self.key_len())
            .field("value_len", &self.value_len())
            .field("version", &self.version())
            .field("position", &self.position())
            .field("salt", &format_args!("{:#010x}", self.salt()))
            .field("crc", &format_args!("{:#010x}", self.crc()))
            .finish()
    }
}

/// How much of a record [`decode_record`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Lengths, kind, position and salt: enough to slice the record safely. For reading back
    /// records this process published itself.
    Structure,
    /// All of [`Verify::Structure`] plus the CRC: for recovery and verification of bytes that
    /// have been through a crash or a disk.
    Checksum,
}

/// Why the bytes at a position are not a valid record. Every variant is a value, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The commit word is zero: nothing has been published here.
    Unwritten,
    /// The commit word is not one the format writes.
    BadCommitWord {
        /// The word found.
        raw: u64,
    },
    /// The record claims more bytes than remain in the segment.
    Truncated {
        /// Bytes the record needs.
        needed: u64,
        /// Bytes available to the end of the segment.
        available: u64,
    },
    /// The commit word's length disagrees with the key and value lengths.
    LengthMismatch {
        /// Length from the commit word.
        record_bytes: u32,
        /// Key length from the header.
        key_len: u32,
        /// Value length from the header.
        value_len: u32,
    },
    /// A field is impossible for the record's kind (a tombstone with a value, a key on padding).
    BadKindFields {
        /// The record's kind.
        kind: RecordKind,
        /// Key length from the header.
        key_len: u32,
        /// Value length from the header.
        value_len: u32,
    },
    /// The record says it lives elsewhere: stale or foreign bytes.
    PositionMismatch {
        /// Where it was read.
        expected: u64,
        /// What its header says.
        found: u64,
    },
    /// The record carries another segment's salt: stale or foreign bytes.
    SaltMismatch {
        /// The segment's salt.
        expected: u32,
        /// The record's salt.
        found: u32,
    },
    /// The CRC does not match: the record is torn or corrupt.
    ChecksumMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// A put or tombstone whose version is ahead of its position. The format allows any
    /// version; a log refuses these, since a record's version is the position where it was
    /// first written and copies only move forward.
    VersionAhead {
        /// The record's version.
        version: u64,
        /// Where it was read.
        position: u64,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unwritten => f.write_str("no record has been published at this position"),
            Self::BadCommitWord { raw } => write!(f, "invalid commit word {raw:#018x}"),
            Self::Truncated { needed, available } => write!(
                f,
                "record needs {needed} bytes but only {available} remain in the segment"
            ),
            Self::LengthMismatch {
                record_bytes,
                key_len,
                value_len,
            } => write!(
                f,
                "record length {record_bytes} does not match key length {key_len} and value length {value_len}"
            ),
            Self::BadKindFields {
                kind,
                key_len,
                value_len,
            } => write!(
                f,
                "{kind:?} record with key length {key_len} and value length {value_len} is invalid"
            ),
            Self::PositionMismatch { expected, found } => write!(
                f,
                "record claims position {found:#x} but was read at {expected:#x}"
            ),
            Self::SaltMismatch { expected, found } => write!(
                f,
                "record salt {found:#010x} does not match segment salt {expected:#010x}"
            ),
            Self::ChecksumMismatch { stored, computed } => write!(
                f,
                "record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            Self::VersionAhead { version, position } => write!(
                f,
                "record version {version:#x} is ahead of its position {position:#x}"
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// A validated record, borrowing its key and value from the segment bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The record's kind.
    pub kind: RecordKind,
    /// Total length in bytes, a multiple of 8: the next record starts this far on.
    pub record_bytes: u32,
    /// The header as read (for short padding, all zero but the commit word).
    pub header: RecordHeader,
    /// The key (empty for padding and aborted records).
    pub key: &'a [u8],
    /// The value (empty for tombstones, padding and aborted records), 8-byte aligned relative to
    /// the record's start.
    pub value: &'a [u8],
}

/// Decodes the record whose commit word is `commit` and whose bytes start `bytes`.
///
/// `bytes` runs from the record's start to the end of its segment; its first 8 bytes (where the
/// commit word lives on disk) are not read, so a caller that loaded the commit word atomically
/// passes that value. `position` and `salt` are where the record is read and the segment's salt.
/// Never panics, whatever the bytes.
pub fn decode_record(
    commit: CommitWord,
    bytes: &[u8],
    position: u64,
    salt: u32,
    verify: Verify,
) -> Result<RecordView<'_>, RecordError> {
    let (kind, record_bytes) = commit.decode()?;
    let available = bytes.len() as u64;
    if u64::from(record_bytes) > available {
        return Err(RecordError::Truncated {
            needed: u64::from(record_bytes),
            available,
        });
    }
    if (record_bytes as usize) < RECORD_HEADER_BYTES {
        // Short padding: a commit word alone, which must reach the segment's end exactly.
        debug_assert_eq!(
            kind,
            RecordKind::Padding,
            "CommitWord::decode allows only padding"
        );
        if u64::from(record_bytes) != available {
            return Err(RecordError::BadCommitWord { raw: commit.raw() });
        }
        let mut header = RecordHeader::zeroed();
        header.commit = commit.raw().to_le();
        return Ok(RecordView {
            kind,
            record_bytes,
            header,
            key: &[],
            value: &[],
        });
    }
    let mut header: RecordHeader = bytemuck::pod_read_unaligned(&bytes[..RECORD_HEADER_BYTES]);
    header.commit = commit.raw().to_le();
    let (key_len, value_len) = (header.key_len(), header.value_len());
    let layout = record_layout(key_len as usize, value_len as usize);
    if layout.map(|l| l.record_bytes) != Some(record_bytes) {
        return Err(RecordError::LengthMismatch {
            record_bytes,
            key_len,
            value_len,
        });
    }
    let layout = layout.expect("checked just above");
    let fields_ok = match kind {
        RecordKind::Put | RecordKind::BatchPut => true,
        RecordKind::Tombstone | RecordKind::BatchTombstone => value_len == 0,
        RecordKind::Padding | RecordKind::Aborted | RecordKind::Batch => key_len == 0,
    };
    if !fields_ok {
        return Err(RecordError::BadKindFields {
            kind,
            key_len,
            value_len,
        });
    }
    // Padding always runs to the end of its segment, which is where `bytes` ends.
    if kind == RecordKind::Padding && u64::from(record_bytes) != available {
        return Err(RecordError::BadKindFields {
            kind,
            key_len,
            value_len,
        });
    }
    if header.position() != position {
        return Err(RecordError::PositionMismatch {
            expected: position,
            found: header.position(),
        });
    }
    if header.salt() != salt {
        return Err(RecordError::SaltMismatch {
            expected: salt,
            found: header.salt(),
        });
    }
    let (key, value) = if kind.checksums_payload() {
        let key_start = layout.key_offset as usize;
        let value_start = layout.value_offset as usize;
        (
            &bytes[key_start..key_start + key_len as usize],
            &bytes[value_start..value_start + value_len as usize],
        )
    } else {
        (&[][..], &[][..])
    };
    if verify == Verify::Checksum {
        let computed = header.compute_crc(key, value);
        if computed != header.crc() {
            return Err(RecordError::ChecksumMismatch {
                stored: header.crc(),
                computed,
            });
        }
    }
    Ok(RecordView {
        kind,
        record_bytes,
        header,
        key,
        value,
    })
}

/// Encodes a whole put or tombstone record (header, key, value, zero padding), sealed.
///
/// Returns `None` if the lengths overflow the format or do not suit the kind (see
/// [`RecordHeader::new`]).
#[must_use]
pub fn encode_record(
    kind: RecordKind,
    key: &[u8],
    value: &[u8],
    version: u64,
    position: u64,
    salt: u32,
) -> Option<Vec<u8>> {
    let layout = record_layout(key.len(), value.len())?;
    let header = RecordHeader::new(kind, key.len(), value.len(), version, position, salt)?
        .sealed(key, value);
    let mut out = vec![0u8; layout.record_bytes as usize];
    out[..RECORD_HEADER_BYTES].copy_from_slice(header.as_bytes());
    let key_start = layout.key_offset as usize;
    out[key_start..key_start + key.len()].copy_from_slice(key);
    let value_start = layout.value_offset as usize;
    out[value_start..value_start + value.len()].copy_from_slice(value);
    Some(out)
}

/// The version a conditional write's batch header carries (one member, written by
/// `compare_and_put` or `compare_and_remove`): a batch's header otherwise carries its position,
/// which is also its members' version, and 0 is no record's position.
pub const BATCH_CONDITIONAL: u64 = 0;

/// The length of a batch record holding members with these `(key_len, value_len)`: its header,
/// then each member's whole record. `None` if a member or the whole would not fit the format's
/// 32-bit lengths.
#[must_use]
pub fn batch_record_bytes(members: impl IntoIterator<Item = (usize, usize)>) -> Option<u32> {
    let mut value_len = 0u32;
    for (key_len, member_value_len) in members {
        value_len =
            value_len.checked_add(record_layout(key_len, member_value_len)?.record_bytes)?;
    }
    Some(record_layout(0, value_len as usize)?.record_bytes)
}

/// Writes the batch of `members` (kind [`RecordKind::Put`] or [`RecordKind::Tombstone`], key,
/// value) at `position` into `out`, which must be exactly [`batch_record_bytes`] long: every
/// member whole (commit word included, as the member kind), and the batch's header, sealed,
/// except its commit word, which stays as `out` had it (zero, in a fresh reservation). Returns
/// the batch's header, whose [`RecordHeader::commit_word`] the caller stores last to publish the
/// batch. Every member gets `version`; the batch's header gets it too, or [`BATCH_CONDITIONAL`]
/// if `conditional`. Returns `None` (having written nothing meaningful) if a kind is not a put
/// or tombstone, a tombstone has a value, or the lengths do not match `out`.
pub fn encode_batch_into<'m>(
    out: &mut [u8],
    members: impl IntoIterator<Item = (RecordKind, &'m [u8], &'m [u8])>,
    version: u64,
    position: u64,
    salt: u32,
    conditional: bool,
) -> Option<RecordHeader> {
    if out.len() < RECORD_HEADER_BYTES {
        return None;
    }
    let mut at = RECORD_HEADER_BYTES;
    for (kind, key, value) in members {
        let member_kind = kind.batched()?;
        let layout = record_layout(key.len(), value.len())?;
        let member_position = position.wrapping_add(at as u64);
        let header = RecordHeader::new(
            member_kind,
            key.len(),
            value.len(),
            version,
            member_position,
            salt,
        )?
        .sealed(key, value);
        let record = out.get_mut(at..at + layout.record_bytes as usize)?;
        record.fill(0);
        record[..RECORD_HEADER_BYTES].copy_from_slice(header.as_bytes());
        let key_start = layout.key_offset as usize;
        record[key_start..key_start + key.len()].copy_from_slice(key);
        let value_start = layout.value_offset as usize;
        record[value_start..value_start + value.len()].copy_from_slice(value);
        at += layout.record_bytes as usize;
    }
    if at != out.len() {
        return None;
    }
    let (head, members) = out.split_at_mut(RECORD_HEADER_BYTES);
    let batch_version = if conditional {
        BATCH_CONDITIONAL
    } else {
        version
    };
    let header = RecordHeader::new(
        RecordKind::Batch,
        0,
        members.len(),
        batch_version,
        position,
        salt,
    )?
    .sealed(&[], members);
    head[RecordHeader::COMMIT_BYTES..].copy_from_slice(header.body_bytes());
    Some(header)
}

/// The members of the valid batch `batch` (a view [`decode_record`] returned for a
/// [`RecordKind::Batch`] record at `position`, in a segment of `salt`), in order, each as its
/// offset from the batch's start and its view (of a member kind: see
/// [`RecordKind::unbatched`]). A member that does not decode as a member of this batch (its own
/// position, the batch's version, a member kind, within the batch) is an error, after which the
/// iteration ends: the batch's checksum covered it, so only a crafted file gets there. Never
/// panics.
pub fn batch_members<'a>(
    batch: &RecordView<'a>,
    position: u64,
    salt: u32,
    verify: Verify,
) -> impl Iterator<Item = Result<(u32, RecordView<'a>), RecordError>> + 'a {
    let members = batch.value;
    // Every member's version is the batch's position (its header's version, unless it is a
    // conditional write's).
    let version = position;
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= members.len() {
            return None;
        }
        let bytes = &members[at..];
        let offset = RECORD_HEADER_BYTES + at;
        let member_position = position.wrapping_add(offset as u64);
        let result = CommitWord::read(bytes)
            .ok_or(RecordError::Truncated {
                needed: RECORD_HEADER_BYTES as u64,
                available: bytes.len() as u64,
            })
            .and_then(|commit| decode_record(commit, bytes, member_position, salt, verify))
            .and_then(|view| {
                if view.kind.is_batch_member() && view.header.version() == version {
                    Ok(view)
                } else {
                    Err(RecordError::BadKindFields {
                        kind: view.kind,
                        key_len: view.header.key_len(),
                        value_len: view.header.value_len(),
                    })
                }
            });
        match result {
            Ok(view) => {
                at += view.record_bytes as usize;
                Some(Ok((offset as u32, view)))
            }
            Err(error) => {
                at = members.len();
                Some(Err(error))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_and_its_members_decode() {
        let members: [(RecordKind, &[u8], &[u8]); 3] = [
            (RecordKind::Put, b"row/7", b"a value"),
            (RecordKind::Tombstone, b"idx/old", b""),
            (RecordKind::Put, b"idx/new", b"7"),
        ];
        let bytes = batch_record_bytes(members.iter().map(|(_, k, v)| (k.len(), v.len()))).unwrap();
        let mut out = vec![0u8; bytes as usize];
        let header = encode_batch_into(&mut out, members, 4096, 4096, 77, false).unwrap();
        // Unpublished until the caller stores the commit word.
        assert!(CommitWord::read(&out).unwrap().is_unwritten());
        out[..8].copy_from_slice(&header.commit_word().raw().to_le_bytes());
        let view = decode_record(commit_of(&out), &out, 4096, 77, Verify::Checksum).unwrap();
        assert_eq!(view.kind, RecordKind::Batch);
        let decoded: Vec<_> = batch_members(&view, 4096, 77, Verify::Checksum)
            .map(Result::unwrap)
            .collect();
        assert_eq!(decoded.len(), 3);
        for ((offset, member), (kind, key, value)) in decoded.iter().zip(members) {
            assert_eq!(member.kind.unbatched(), kind);
            assert!(member.kind.is_batch_member());
            assert_eq!((member.key, member.value), (key, value));
            assert_eq!(member.header.version(), 4096);
            assert_eq!(member.header.position(), 4096 + u64::from(*offset));
            // A member decodes alone too (through the index it is read at its own position).
            let alone = &out[*offset as usize..];
            let again = decode_record(
                commit_of(alone),
                alone,
                4096 + u64::from(*offset),
                77,
                Verify::Checksum,
            )
            .unwrap();
            assert_eq!(again.key, key);
        }
        // Any flipped byte of a member breaks the batch's checksum.
        let last = out.len() - 1;
        out[last - 8] ^= 1;
        assert!(matches!(
            decode_record(commit_of(&out), &out, 4096, 77, Verify::Checksum),
            Err(RecordError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn record_kinds_differ_in_at_least_two_bits() {
        let kinds = [1u8, 2, 4, 7, 0x18, 0x30, 0x50];
        for (i, a) in kinds.iter().enumerate() {
            assert!(RecordKind::from_u8(*a).is_some());
            for b in &kinds[i + 1..] {
                assert!((a ^ b).count_ones() >= 2, "{a:#x} and {b:#x}");
            }
        }
    }

    fn commit_of(bytes: &[u8]) -> CommitWord {
        CommitWord::from_raw(u64::from_le_bytes(bytes[..8].try_into().unwrap()))
    }

    #[test]
    fn put_round_trips_and_value_is_aligned() {
        let bytes = encode_record(RecordKind::Put, b"abc", b"hello world", 9, 4096, 77).unwrap();
        assert_eq!(bytes.len(), 40 + 8 + 16);
        let view = decode_record(commit_of(&bytes), &bytes, 4096, 77, Verify::Checksum).unwrap();
        assert_eq!(view.kind, RecordKind::Put);
        assert_eq!(view.key, b"abc");
        assert_eq!(view.value, b"hello world");
        assert_eq!(view.header.version(), 9);
        let value_offset = view.value.as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(value_offset % 8, 0);
    }

    #[test]
    fn wrong_position_or_salt_is_rejected() {
        let bytes = encode_record(RecordKind::Put, b"k", b"v", 1, 64, 5).unwrap();
        assert_eq!(
            decode_record(commit_of(&bytes), &bytes, 72, 5, Verify::Structure),
            Err(RecordError::PositionMismatch {
                expected: 72,
                found: 64
            })
        );
        assert!(matches!(
            decode_record(commit_of(&bytes), &bytes, 64, 6, Verify::Structure),
            Err(RecordError::SaltMismatch { .. })
        ));
    }

    #[test]
    fn flipped_payload_bit_fails_checksum_only() {
        let mut bytes = encode_record(RecordKind::Put, b"key", b"value", 1, 64, 5).unwrap();
        bytes[48] ^= 1;
        let commit = commit_of(&bytes);
        assert!(decode_record(commit, &bytes, 64, 5, Verify::Structure).is_ok());
        assert!(matches!(
            decode_record(commit, &bytes, 64, 5, Verify::Checksum),
            Err(RecordError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn short_padding_must_reach_the_end() {
        let commit = CommitWord::new(RecordKind::Padding, 16);
        let bytes = [0u8; 16];
        let view = decode_record(commit, &bytes, 0, 0, Verify::Checksum).unwrap();
        assert_eq!(view.kind, RecordKind::Padding);
        assert_eq!(view.record_bytes, 16);
        let longer = [0u8; 24];
        assert!(decode_record(commit, &longer, 0, 0, Verify::Checksum).is_err());
    }

    #[test]
    fn filler_round_trips() {
        let header = RecordHeader::filler(RecordKind::Aborted, 128, 640, 3);
        let mut bytes = vec![0xAAu8; 128];
        bytes[..40].copy_from_slice(header.as_bytes());
        let view = decode_record(header.commit_word(), &bytes, 640, 3, Verify::Checksum).unwrap();
        assert_eq!(view.kind, RecordKind::Aborted);
        assert_eq!(view.record_bytes, 128);
    }

    #[test]
    fn unwritten_is_its_own_error() {
        assert_eq!(
            decode_record(CommitWord::UNWRITTEN, &[0; 64], 0, 0, Verify::Checksum),
            Err(RecordError::Unwritten)
        );
    }
}
