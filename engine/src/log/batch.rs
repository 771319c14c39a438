//! Appending a batch: one reservation, one record (`seglog_format` module docs, "batch"), so
//! that a crash keeps all of it or none. Its members are written whole inside it, each with its
//! own header and commit word, before the batch's own commit word publishes them together.
//!
//! The batch may also be appended unpublished (`publish: false`): a conditional write installs
//! its member in the index first and only then publishes the batch, or aborts it if the
//! comparison failed (`kv/conditional.rs`). Until the batch is published, recovery reads its
//! region as a hole and its member alone as nothing, so a comparison that failed can never come
//! back; readers that reach the member through the index read it meanwhile (it is whole).

use seglog_format::{
    CommitWord, RECORD_HEADER_BYTES, RecordHeader, RecordKind, batch_record_bytes,
    encode_batch_into, record_layout,
};

use super::AppendLog;
use super::publish::publish;
use crate::error::{Error, Result};
use crate::sync::Ordering;

/// One operation of a batch as the log writes it: a put (with its value) or a tombstone.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchOp<'a> {
    pub(crate) kind: RecordKind,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

/// A batch appended by [`AppendLog::append_batch`].
#[derive(Debug)]
pub(crate) struct AppendedBatch {
    /// The batch record's position, which is also every member's version.
    pub(crate) position: u64,
    /// The batch record's length in the log.
    pub(crate) record_bytes: u32,
    /// Each member's position and length, in the order of the operations.
    pub(crate) members: Vec<(u64, u32)>,
    /// The word that publishes the batch (stored already if it was appended published).
    commit: CommitWord,
}

impl AppendedBatch {
    /// The version of every member.
    pub(crate) fn version(&self) -> u64 {
        self.position
    }
}

impl AppendLog {
    /// The length of the batch record for `ops`, or why they cannot be one: a key or value too
    /// large for any record (as a single write would be told), or the whole too large for a
    /// segment. Checked before anything is reserved, so a refused batch changes nothing.
    pub(crate) fn check_batch(&self, ops: &[BatchOp<'_>]) -> Result<u32> {
        for op in ops {
            self.check_sizes(op.key.len(), op.value.len())?;
        }
        let max = self.max_value_len(0) as u64 + RECORD_HEADER_BYTES as u64;
        let bytes = ops.iter().try_fold(RECORD_HEADER_BYTES as u64, |sum, op| {
            // A key and value that passed `check_sizes` have a layout.
            let layout = record_layout(op.key.len(), op.value.len())?;
            Some(sum + u64::from(layout.record_bytes))
        });
        match bytes {
            Some(bytes) if bytes <= max => Ok(batch_record_bytes(
                ops.iter().map(|op| (op.key.len(), op.value.len())),
            )
            .expect("fits a segment, so fits the format")),
            other => Err(Error::BatchTooLarge {
                operations: ops.len(),
                bytes: other.unwrap_or(u64::MAX),
                max,
            }),
        }
    }

    /// Appends the batch of `ops` (each key at most once) as one record with an install hold
    /// (see [`AppendLog::append_record`]; the caller takes it over with
    /// [`AppendLog::install_hold`] at the batch's position). Published before returning if
    /// `publish`; otherwise the caller must end it with [`AppendLog::publish_batch`] or
    /// [`AppendLog::abort_batch`].
    pub(crate) fn append_batch(&self, ops: &[BatchOp<'_>], publish: bool) -> Result<AppendedBatch> {
        debug_assert!(!ops.is_empty(), "an empty batch is not appended");
        self.check_not_failed()?;
        let record_bytes = self.check_batch(ops)?;
        // Laid out in a buffer first: the members' commit words must reach the segment through
        // their atomics, not among the plain bytes (`Segment::commit`).
        let guard = crate::sync::epoch::pin();
        let (segment, offset) = self.reserve(u64::from(record_bytes), &guard)?;
        let position = self.position(segment.id(), offset);
        let offset = offset as usize;
        let mut bytes = vec![0u8; record_bytes as usize];
        let header = encode_batch_into(
            &mut bytes,
            ops.iter().map(|op| (op.kind, op.key, op.value)),
            position,
            position,
            segment.salt(),
            // The conditional writes are exactly the batches appended unpublished.
            !publish,
        )
        .expect("lengths checked by check_batch");
        segment.note_version(position);
        let mut members = Vec::with_capacity(ops.len());
        let mut at = RECORD_HEADER_BYTES;
        for op in ops {
            let len = record_layout(op.key.len(), op.value.len())
                .expect("checked")
                .record_bytes as usize;
            let word = CommitWord::read(&bytes[at..]).expect("a member has a commit word");
            // SAFETY: `reserve` gave this thread `[offset, offset + record_bytes)` exclusively,
            // and nothing in it is published until the batch's commit word is stored.
            unsafe {
                segment.write(
                    offset + at + RecordHeader::COMMIT_BYTES,
                    &bytes[at + RecordHeader::COMMIT_BYTES..at + len],
                );
            }
            // Ordered before any reader of the member by the batch's Release publish (a scan)
            // or by the index CAS that installs the member (a `get`), which come after it.
            segment.commit(offset + at).store_unpublished(word);
            members.push((position + at as u64, len as u32));
            at += len;
        }
        // SAFETY: as above: the batch's own header, but its commit word.
        unsafe {
            segment.write(
                offset + RecordHeader::COMMIT_BYTES,
                &bytes[RecordHeader::COMMIT_BYTES..RECORD_HEADER_BYTES],
            );
        }
        // Before the publish: a compactor that sees the batch published sees the hold.
        segment.hold_install();
        let batch = AppendedBatch {
            position,
            record_bytes,
            members,
            commit: header.commit_word(),
        };
        if publish {
            self.publish_appended(&batch, segment, offset);
        }
        Ok(batch)
    }

    /// Publishes `batch`, appended unpublished by this thread, which still holds its hold.
    pub(crate) fn publish_batch(&self, batch: &AppendedBatch) {
        let guard = crate::sync::epoch::pin();
        let segment = self.held_segment(batch.position, &guard);
        let offset = self.split(batch.position).1 as usize;
        self.publish_appended(batch, segment, offset);
    }

    fn publish_appended(
        &self,
        batch: &AppendedBatch,
        segment: &crate::segment::Segment,
        offset: usize,
    ) {
        publish(segment, offset, batch.commit);
        // The members are the records; the batch's header is filler, as recovery counts it.
        let member_bytes: u64 = batch.members.iter().map(|&(_, len)| u64::from(len)).sum();
        self.counters
            .count_records(batch.members.len() as u64, member_bytes);
        self.counters.count_bytes(RECORD_HEADER_BYTES as u64);
    }

    /// Turns `batch`, appended unpublished by this thread (which still holds its hold), into
    /// an aborted record: its bytes mean nothing to any reader or recovery from now on.
    pub(crate) fn abort_batch(&self, batch: &AppendedBatch) {
        let guard = crate::sync::epoch::pin();
        let segment = self.held_segment(batch.position, &guard);
        let offset = self.split(batch.position).1;
        let header = RecordHeader::filler(
            RecordKind::Aborted,
            batch.record_bytes,
            batch.position,
            segment.salt(),
        );
        // SAFETY: the region is still this thread's: unpublished, and its member was never
        // installed (or its install was refused), so no reader holds a view into it.
        unsafe {
            segment.write(
                offset as usize + RecordHeader::COMMIT_BYTES,
                header.body_bytes(),
            );
        }
        publish(segment, offset as usize, header.commit_word());
        // Relaxed: statistics only.
        self.counters.aborted.fetch_add(1, Ordering::Relaxed);
        self.counters.count_record(batch.record_bytes);
    }
}
