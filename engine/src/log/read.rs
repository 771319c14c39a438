//! Reading: a record by position (or by index address) and scans in log order, under an epoch
//! guard; a reader touches a record's bytes only after an `Acquire` load of its commit word.

use std::path::Path;

use seglog_format::{
    CommitWord, RECORD_HEADER_BYTES, RecordError, RecordKind, Verify, decode_record,
};

use super::AppendLog;
use crate::address::Address;
use crate::error::{Error, Result};
use crate::segment::{FIRST_RECORD_OFFSET, Segment};
use crate::sync::Ordering;
use crate::sync::epoch::Guard;

impl AppendLog {
    /// Reads the published record at `position`.
    ///
    /// `position` should come from an append, a scan or the index. A position that does not
    /// start a published record gives an error, never a wrong record. (Positions inside a record
    /// that is still being written are outside this contract: they read a word the writer is
    /// filling.)
    ///
    /// The guard must come from [`crate::pin`] (or [`crate::Pinned::guard`]): the record's
    /// segment stays mapped while it lives.
    pub fn read<'g>(&'g self, position: u64, guard: &'g crate::Guard) -> Result<RecordRef<'g>> {
        self.read_at(position, guard.epoch())
    }

    /// [`AppendLog::read`] under an epoch guard of the engine's collector.
    pub(crate) fn read_at<'g>(&'g self, position: u64, guard: &'g Guard) -> Result<RecordRef<'g>> {
        let (segment_id, offset) = self.split(position);
        let Some(segment) = self.directory.get(segment_id, guard) else {
            return Err(Error::NoRecord {
                position,
                reason: format!("segment {segment_id} is not in the log"),
            });
        };
        read_put_or_tombstone(segment, offset, position)
    }

    /// Reads the published record at index `address` (see [`AppendLog::address_of`]): the
    /// segment in the address's ring slot, looked up once, is the record's.
    pub(crate) fn read_address<'g>(
        &'g self,
        address: Address,
        guard: &'g Guard,
    ) -> Result<RecordRef<'g>> {
        let (slot, offset) = self.split(address.get());
        let Some(segment) = self.directory.in_slot(slot, guard) else {
            return Err(Error::NoRecord {
                position: address.get(),
                reason: "no segment holds this index address".into(),
            });
        };
        read_put_or_tombstone(segment, offset, self.position(segment.id(), offset))
    }

    /// Starts loading the record at index `address` into the cache (see
    /// `Segment::prefetch_record`); does nothing if no segment is there.
    pub(crate) fn prefetch_address(&self, address: Address, guard: &Guard) {
        let (slot, offset) = self.split(address.get());
        if let Some(segment) = self.directory.in_slot(slot, guard) {
            segment.prefetch_record(offset as usize);
        }
    }

    /// Iterates over the published puts and tombstones in log order, from the oldest segment,
    /// skipping padding and aborted records, and stopping at the first position not yet
    /// published. The guard must come from [`crate::pin`] (or [`crate::Pinned::guard`]).
    pub fn scan<'g>(&'g self, guard: &'g crate::Guard) -> Scan<'g> {
        self.scan_at(guard.epoch())
    }

    /// [`AppendLog::scan`] under an epoch guard of the engine's collector.
    pub(crate) fn scan_at<'g>(&'g self, guard: &'g Guard) -> Scan<'g> {
        // Acquire: pairs with the Release store in `set_recovered_tail` (and compaction).
        let first = self.first_segment.load(Ordering::Acquire);
        Scan {
            log: self,
            guard,
            segment: first,
            offset: FIRST_RECORD_OFFSET as u64,
            error: None,
        }
    }
}

/// A published record, borrowed from the log for as long as the epoch guard it was read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'g> {
    /// The record's position.
    pub position: u64,
    /// Put or tombstone (scans skip padding and aborted records; a batch's member reads as
    /// the put or tombstone it stands for).
    pub kind: RecordKind,
    /// The record's version.
    pub version: u64,
    /// The key.
    pub key: &'g [u8],
    /// The value: empty for tombstones; starts on an 8-byte boundary.
    pub value: &'g [u8],
    /// The record's length in the log.
    pub record_bytes: u32,
}

/// The put or tombstone at `offset` of `segment` (whose position is `position`), or
/// `NoRecord` saying why there is none: the shared end of [`AppendLog::read_at`] and
/// [`AppendLog::read_address`].
///
/// The path of every `get` and index probe, so it checks each thing once: the commit word
/// (published, a put or tombstone), that the record fits the segment, then `decode_record`'s
/// structure checks (lengths, position, salt), which are what make the slices it returns safe.
/// [`read_record`]'s padding cases cannot arise for a put or tombstone.
fn read_put_or_tombstone(segment: &Segment, offset: u64, position: u64) -> Result<RecordRef<'_>> {
    let no_record = |reason: String| Error::NoRecord { position, reason };
    if offset < FIRST_RECORD_OFFSET as u64 || !offset.is_multiple_of(8) {
        return Err(no_record("not a record boundary".into()));
    }
    let offset = offset as usize;
    // Acquire: pairs with the Release store in `publish`, so the record's bytes are visible.
    let commit = segment.commit(offset).published();
    let record_bytes = match commit.decode() {
        // A batch's member reads as the put or tombstone it stands for: the index points at
        // one only once its batch is published, or (a conditional write's) while its writer
        // decides, with the member whole (`log/batch.rs`).
        Ok((
            RecordKind::Put
            | RecordKind::Tombstone
            | RecordKind::BatchPut
            | RecordKind::BatchTombstone,
            record_bytes,
        )) => record_bytes as usize,
        Ok((kind, _)) => return Err(no_record(format!("position holds a {kind:?} record"))),
        Err(RecordError::Unwritten) => return Err(no_record("nothing is published there".into())),
        Err(error) => return Err(no_record(format!("no valid record starts there ({error})"))),
    };
    decode_published(segment, offset, position, commit, record_bytes)
        .map_err(|error| no_record(format!("no valid record starts there ({error})")))
}

/// The record of `record_bytes` at `offset` of `segment`, whose published commit word the
/// caller loaded (with Acquire) as `commit`: checks that it fits the segment, then decodes it
/// with `decode_record`'s structure checks. The shared end of [`read_put_or_tombstone`] and
/// [`read_record`].
fn decode_published(
    segment: &Segment,
    offset: usize,
    position: u64,
    commit: CommitWord,
    record_bytes: usize,
) -> Result<RecordRef<'_>, RecordError> {
    let available = segment.len() - offset;
    if record_bytes > available {
        return Err(RecordError::Truncated {
            needed: record_bytes as u64,
            available: available as u64,
        });
    }
    // SAFETY: in bounds (checked), and published: the caller's Acquire load returned the
    // commit word its writer stored with Release after writing these bytes. The slice ends at
    // the record's end, so the decoder's "padding reaches the end" check holds by construction
    // (`read_record` makes it against the real segment end first).
    let bytes = unsafe { segment.slice(offset, record_bytes) };
    let view = decode_record(commit, bytes, position, segment.salt(), Verify::Structure)?;
    Ok(RecordRef::from_view(position, &view))
}

/// Reads the record at `offset` of `segment`: `Ok(None)` if nothing is published there, any
/// kind otherwise, and an error if the bytes there are not a valid record.
///
/// A published batch reads as its header alone: a record of kind [`RecordKind::Batch`] whose
/// `record_bytes` is [`RECORD_HEADER_BYTES`], so a walk that steps by `record_bytes` reads its
/// members next, each as the put or tombstone it stands for (`RecordRef::from_view`).
pub(crate) fn read_record(
    segment: &Segment,
    offset: usize,
    position: u64,
) -> Result<Option<RecordRef<'_>>, RecordError> {
    // Acquire: pairs with the Release store in `publish`, so the record's bytes are visible.
    let commit = segment.commit(offset).published();
    let (kind, record_bytes) = match commit.decode() {
        Ok(decoded) => decoded,
        Err(RecordError::Unwritten) => return Ok(None),
        Err(e) => return Err(e),
    };
    let available = segment.len() - offset;
    if record_bytes as usize > available {
        return Err(RecordError::Truncated {
            needed: u64::from(record_bytes),
            available: available as u64,
        });
    }
    if (record_bytes as usize) < RECORD_HEADER_BYTES {
        // Short padding: only its commit word, and it must reach the end of the segment.
        if offset + record_bytes as usize != segment.len() {
            return Err(RecordError::BadCommitWord { raw: commit.raw() });
        }
        return Ok(Some(RecordRef {
            position,
            kind,
            version: 0,
            key: &[],
            value: &[],
            record_bytes,
        }));
    }
    if kind == RecordKind::Padding && offset + record_bytes as usize != segment.len() {
        return Err(RecordError::BadCommitWord { raw: commit.raw() });
    }
    let record = decode_published(segment, offset, position, commit, record_bytes as usize)?;
    Ok(Some(if kind == RecordKind::Batch {
        RecordRef {
            value: &[],
            record_bytes: RECORD_HEADER_BYTES as u32,
            ..record
        }
    } else {
        record
    }))
}

impl<'a> RecordRef<'a> {
    /// The record `view`, decoded at `position`.
    pub(crate) fn from_view(position: u64, view: &seglog_format::RecordView<'a>) -> Self {
        Self {
            position,
            kind: view.kind.unbatched(),
            version: view.header.version(),
            key: view.key,
            value: view.value,
            record_bytes: view.record_bytes,
        }
    }
}

/// A scan over the log in order. See [`AppendLog::scan`].
pub struct Scan<'g> {
    log: &'g AppendLog,
    guard: &'g Guard,
    segment: u64,
    offset: u64,
    error: Option<Error>,
}

impl Scan<'_> {
    /// The error that ended the scan early, if any (a record that failed validation).
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// The position the scan will look at next.
    pub fn position(&self) -> u64 {
        self.log.position(self.segment, self.offset)
    }
}

impl<'g> Iterator for Scan<'g> {
    type Item = RecordRef<'g>;

    fn next(&mut self) -> Option<RecordRef<'g>> {
        if self.error.is_some() {
            return None;
        }
        loop {
            if self.offset >= self.log.segment_bytes {
                self.segment += 1;
                self.offset = FIRST_RECORD_OFFSET as u64;
            }
            let segment = match self.log.directory.get(self.segment, self.guard) {
                Some(segment) => segment,
                None => {
                    // A gap left by compaction: skip to the next segment, but not past the tail.
                    let (tail_segment, _) = self.log.tail(self.guard);
                    if self.segment < tail_segment {
                        self.segment += 1;
                        self.offset = FIRST_RECORD_OFFSET as u64;
                        continue;
                    }
                    return None;
                }
            };
            let position = self.log.position(self.segment, self.offset);
            match read_record(segment, self.offset as usize, position) {
                Ok(None) => return None,
                Ok(Some(record)) => {
                    self.offset += u64::from(record.record_bytes);
                    match record.kind {
                        RecordKind::Put | RecordKind::Tombstone => return Some(record),
                        // A batch's header: its members come next, as puts and tombstones.
                        RecordKind::Padding | RecordKind::Aborted | RecordKind::Batch => {
                            continue;
                        }
                        RecordKind::BatchPut | RecordKind::BatchTombstone => {
                            unreachable!("read_record reads a member as what it stands for")
                        }
                    }
                }
                Err(reason) => {
                    self.error = Some(Error::Corrupt {
                        path: segment.path().map(Path::to_path_buf).unwrap_or_default(),
                        offset: self.offset,
                        reason: reason.to_string(),
                    });
                    return None;
                }
            }
        }
    }
}
