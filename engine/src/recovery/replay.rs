//! Replaying segments: every valid record reported in log order (from a hint where the
//! segment's checksum allows), holes sealed, damage reported, the tail's torn end zeroed.

use std::fs;
use std::path::{Path, PathBuf};

use seglog_format::{
    CommitWord, RECORD_HEADER_BYTES, RecordError, RecordHeader, RecordKind, SegmentHeader,
    SegmentItem, Verify,
};

use super::RecoveryReport;
use super::report::Damage;
use crate::error::{Error, Result};
use crate::log::{AppendLog, RecordRef};
use crate::options::Options;
use crate::segment::{FIRST_RECORD_OFFSET, Segment};
use crate::sync::epoch::Guard;

/// Installs every segment in `headers` and replays those up to the tail (`tail_index`):
/// returns where writing resumes (segment, offset), the ids installed, in order, and the
/// batches `on_record` filled.
///
/// Sealed segments with a hint are read from their hints first, on up to
/// [`HINT_THREADS`] threads (each verifies and replays whole segments into its own batch: a
/// whole-segment checksum and a check of every entry are most of an open's work); then every
/// other segment, and every one whose hint failed, is scanned in id order on this thread. The
/// order records reach `on_record` is irrelevant to the caller: the index is built by the
/// highest-version rule.
#[allow(clippy::too_many_arguments)] // one call site: the steps of an open
pub(super) fn segments<B: Send>(
    log: &AppendLog,
    headers: Vec<(SegmentHeader, PathBuf)>,
    tail_index: usize,
    hints: &[u64],
    dir: &Path,
    options: &Options,
    report: &mut RecoveryReport,
    new_batch: &(impl Fn() -> B + Sync),
    on_record: &(impl Fn(&mut B, &AppendLog, &RecordRef<'_>, &Guard) + Sync),
    guard: &Guard,
) -> Result<Replayed<B>> {
    let segment_bytes = log.segment_bytes();
    let first = headers[0].0.segment_id();
    let mut installed = Vec::with_capacity(headers.len());
    for (i, (header, path)) in headers.into_iter().enumerate() {
        let id = header.segment_id();
        // The tail and the segments after it will be written: allocate them (see `open_file`).
        let segment = if options.read_only {
            Segment::open_read_only(path, id, segment_bytes, header.salt())?
        } else {
            Segment::open_file(path, id, segment_bytes, header.salt(), i >= tail_index)?
        };
        report.segments += 1;
        // Installed before any record is reported, so `on_record` can read them through the
        // log (the index resolves keys through it). Nobody else can reach the log yet.
        log.install_recovered(segment, guard)?;
        installed.push(id);
    }
    // Strict opens verify every record, so they never trust a hint. The tail is always
    // scanned (it has no hint: it is not sealed); segments after it are empty.
    let candidates: Vec<u64> = if options.strict {
        Vec::new()
    } else {
        installed[..tail_index]
            .iter()
            .copied()
            .filter(|id| hints.contains(id))
            .collect()
    };
    let (hinted, mut batches) = replay_hints(
        log,
        &candidates,
        dir,
        options.read_only,
        new_batch,
        on_record,
    );
    report.hinted_segments += hinted.len() as u64;

    let mut batch = new_batch();
    let mut tail = (first, FIRST_RECORD_OFFSET as u64);
    for (i, &id) in installed.iter().enumerate().take(tail_index + 1) {
        if hinted.binary_search(&id).is_ok() {
            continue;
        }
        let Some(segment) = log.directory().get(id, guard) else {
            unreachable!("segment {id} was installed just above");
        };
        let end = recover_segment(
            log,
            segment,
            i == tail_index,
            options.strict,
            report,
            &mut |log: &AppendLog, record: &RecordRef<'_>| {
                on_record(&mut batch, log, record, guard);
            },
        )?;
        if i == tail_index {
            tail = (id, end);
        }
    }
    batches.push(batch);
    Ok(Replayed {
        tail,
        installed,
        batches,
    })
}

/// What [`segments`] did.
pub(super) struct Replayed<B> {
    /// Where writing resumes: segment id, offset.
    pub(super) tail: (u64, u64),
    /// The ids installed, in order.
    pub(super) installed: Vec<u64>,
    /// The batches `on_record` filled, one per replaying thread.
    pub(super) batches: Vec<B>,
}

/// Threads that read hinted segments at open (this one included), at most.
const HINT_THREADS: usize = 4;

/// Replays the segments `candidates` (sealed, installed, in id order) from their hints, on up
/// to [`HINT_THREADS`] threads that take segments one at a time. Returns the ids replayed, in
/// order, and one batch per thread; a segment whose hint is unusable is left out (and its
/// records reported nowhere), for the caller to scan.
fn replay_hints<B: Send>(
    log: &AppendLog,
    candidates: &[u64],
    dir: &Path,
    read_only: bool,
    new_batch: &(impl Fn() -> B + Sync),
    on_record: &(impl Fn(&mut B, &AppendLog, &RecordRef<'_>, &Guard) + Sync),
) -> (Vec<u64>, Vec<B>) {
    if candidates.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(HINT_THREADS)
        .min(candidates.len());
    // Relaxed: only hands out distinct indexes (the RMW's atomicity is all it needs); the
    // scope's join orders everything the workers did before the caller goes on.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let guard = crate::sync::epoch::pin();
        let mut batch = new_batch();
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&id) = candidates.get(i) else {
                break;
            };
            let Some(segment) = log.directory().get(id, &guard) else {
                unreachable!("segment {id} was installed before the replay");
            };
            let emit = &mut |log: &AppendLog, record: &RecordRef<'_>| {
                on_record(&mut batch, log, record, &guard);
            };
            if apply_hint(log, segment, dir, read_only, emit) {
                done.push(id);
            }
        }
        (done, batch)
    };
    let results: Vec<(Vec<u64>, B)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut results = vec![work()];
        for helper in helpers {
            match helper.join() {
                Ok(result) => results.push(result),
                // A panic in a helper is a bug (nothing here panics on damaged files): pass it
                // on rather than lose its segments.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    });
    let mut hinted = Vec::new();
    let mut batches = Vec::with_capacity(results.len());
    for (done, batch) in results {
        hinted.extend(done);
        batches.push(batch);
    }
    hinted.sort_unstable();
    (hinted, batches)
}

/// Reports a sealed segment's records from its hint file. Returns `false` (and reports nothing)
/// if the hint is missing, unreadable or does not match the segment, or the segment's bytes do
/// not have the checksum the hint recorded; the caller then scans.
fn apply_hint(
    log: &AppendLog,
    segment: &Segment,
    dir: &Path,
    read_only: bool,
    on_record: &mut impl FnMut(&AppendLog, &RecordRef<'_>),
) -> bool {
    // A hint found unusable is removed (the next close writes a good one), but not by a
    // read-only open.
    let remove = |path: &Path| {
        if !read_only {
            let _ = fs::remove_file(path);
        }
    };
    // Runs on several threads at once, each on its own segments (see `replay_hints`).
    let path = crate::hints::hint_path(dir, segment.id());
    let Some(bytes) = map_hint(&path, segment.len() as u64) else {
        return false;
    };
    let Ok(hint) = seglog_format::decode_hint(&bytes, segment.id(), segment.salt()) else {
        remove(&path);
        return false;
    };
    let Some(checked) = check_hint(log, segment, &hint) else {
        // Some byte changed since the hint was written (damage, or pages a power loss took),
        // or the hint does not describe the segment: scan it, which finds and skips exactly
        // what is damaged.
        remove(&path);
        return false;
    };
    log.note_recovered_filler(u64::from(hint.filler_bytes()));
    // Counted once for the whole hint: each count is a locked RMW, a full barrier on x86.
    log.note_recovered_many(checked.records, checked.bytes);
    if let Some(version) = checked.min_version {
        segment.note_version(version);
    }
    for entry in hint.entries() {
        let position = log.position(segment.id(), u64::from(entry.offset));
        on_record(
            log,
            &RecordRef {
                position,
                kind: entry.kind,
                version: entry.version,
                key: entry.key,
                value: &[],
                record_bytes: entry.record_bytes,
            },
        );
    }
    true
}

/// The hint file at `path` mapped read-only, if it opens and is no longer than a hint of a
/// `segment_bytes` segment can be (anything longer is not a hint). Mapped rather than read: a
/// hint is about a fiftieth of its segment's bytes, and reading it into a growing buffer
/// copied it twice.
fn map_hint(path: &Path, segment_bytes: u64) -> Option<memmap2::Mmap> {
    let file = fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len > seglog_format::max_hint_bytes(segment_bytes) || len == 0 {
        // An empty file cannot be mapped; it is no hint either (`decode_hint` refuses it).
        return None;
    }
    // SAFETY: the map is read only while this open holds the directory's lock, so no seglog
    // process writes, truncates or replaces the file meanwhile (hints are written once, to a
    // temporary name, and renamed into place). Another program truncating it would fault the
    // read (SIGBUS), as for the segments, which are mapped too.
    unsafe { memmap2::Mmap::map(&file) }.ok()
}

/// What [`check_hint`] counted: the hint's records, their bytes and their lowest version.
struct CheckedHint {
    records: u64,
    bytes: u64,
    min_version: Option<u64>,
}

/// Bytes of segment [`check_hint`] checksums before it checks the entries in them, so that the
/// headers and keys it compares are still in the cache.
const CHECK_CHUNK: usize = 256 << 10;

/// Whether `hint` describes `segment` as it is: the whole segment has the checksum the hint
/// recorded, and each entry names the record really at its offset (kind, length, version, key),
/// in order, none past the segment's end. A hint is a shortcut, never a second source of truth.
///
/// One pass: each chunk of the segment is checksummed, then the entries that start in it are
/// checked while its bytes are in the cache (checking them after the whole-segment checksum
/// read every header from memory again, a fifth of a hinted open).
fn check_hint(
    log: &AppendLog,
    segment: &Segment,
    hint: &seglog_format::Hint<'_>,
) -> Option<CheckedHint> {
    // SAFETY: nothing writes the segment while recovery replays hints: the log is not shared
    // yet (see `recover_segment`), and the hint threads only read; scans, which seal and zero,
    // start once they are joined.
    let whole = unsafe { segment.slice(0, segment.len()) };
    if u64::from(hint.filler_bytes()) > whole.len() as u64 {
        return None;
    }
    let mut entries = hint.entries().peekable();
    let mut checked = CheckedHint {
        records: 0,
        bytes: 0,
        min_version: None,
    };
    let mut crc = 0;
    let mut last_end = FIRST_RECORD_OFFSET as u64;
    for chunk_start in (0..whole.len()).step_by(CHECK_CHUNK) {
        let chunk_end = (chunk_start + CHECK_CHUNK).min(whole.len());
        crc = seglog_format::crc32c_append(crc, &whole[chunk_start..chunk_end]);
        while let Some(entry) = entries.next_if(|e| (e.offset as usize) < chunk_end) {
            let (offset, record_bytes) = (u64::from(entry.offset), u64::from(entry.record_bytes));
            let position = log.position(segment.id(), offset);
            let matches = offset >= last_end
                && record_bytes >= RECORD_HEADER_BYTES as u64
                && offset + record_bytes <= whole.len() as u64
                && matches!(
                    crate::log::read_record(segment, entry.offset as usize, position),
                    Ok(Some(record)) if record.kind == entry.kind
                        && record.record_bytes == entry.record_bytes
                        && record.version == entry.version
                        && record.version <= position
                        && record.key == entry.key
                );
            if !matches {
                return None;
            }
            last_end = offset + record_bytes;
            checked.records += 1;
            checked.bytes += record_bytes;
            checked.min_version = Some(
                checked
                    .min_version
                    .map_or(entry.version, |v| v.min(entry.version)),
            );
        }
    }
    // Every entry started inside the segment, and its bytes are the ones the hint recorded.
    (entries.next().is_none() && crc == hint.segment_crc()).then_some(checked)
}

/// Recovers one segment: reports its valid records, seals bad ranges, and returns the offset
/// just past its last valid record.
fn recover_segment(
    log: &AppendLog,
    segment: &Segment,
    is_last: bool,
    strict: bool,
    report: &mut RecoveryReport,
    on_record: &mut impl FnMut(&AppendLog, &RecordRef<'_>),
) -> Result<u64> {
    let len = segment.len();
    let bytes_of = |from: usize| {
        // SAFETY: recovery holds the directory lock and the segment is not shared yet, so no
        // other thread touches it. Views are re-taken for every step and none is used after
        // `seal` or the zeroing below writes.
        unsafe { segment.slice(from, len - from) }
    };
    let path = segment.path().map(Path::to_path_buf).unwrap_or_default();
    let base = log.position(segment.id(), 0);
    let mut offset = FIRST_RECORD_OFFSET;
    let mut end_of_valid = FIRST_RECORD_OFFSET;
    // The walk is the one `seglog verify` uses (`seglog_format::SegmentWalk`): records, holes
    // (a zero commit word: a writer reserved and died before publishing, a normal crash
    // artifact), damage (a non-zero commit word that fails validation), and what trails the
    // last valid record. Each item is acted on before the next is read.
    while let Some(item) = seglog_format::next_item(bytes_of(0), base, segment.salt(), offset) {
        offset = item.end();
        match item {
            SegmentItem::Record { offset: at, view } => {
                match view.kind {
                    RecordKind::Put | RecordKind::Tombstone => {
                        report.records += 1;
                        log.note_recovered(view.record_bytes);
                        segment.note_version(view.header.version());
                        let position = base + at as u64;
                        on_record(log, &RecordRef::from_view(position, &view));
                    }
                    // Counted like the live log counts them, so retiring the segment later
                    // takes out exactly what was put in.
                    RecordKind::Aborted => log.note_recovered_filler(view.record_bytes.into()),
                    RecordKind::Padding => {}
                    RecordKind::Batch => {
                        let position = base + at as u64;
                        if !replay_batch(log, segment, report, &view, position, on_record) {
                            // Its checksum holds but a member does not decode as one: only a
                            // crafted file gets here. Nothing of it is applied.
                            let error = RecordError::BadKindFields {
                                kind: RecordKind::Batch,
                                key_len: 0,
                                value_len: view.header.value_len(),
                            };
                            damage(strict, report, &path, at, view.record_bytes.into(), &error)?;
                            seal_aborted(log, segment, base, at, view.record_bytes as usize);
                        }
                    }
                    RecordKind::BatchPut | RecordKind::BatchTombstone => {
                        // A member whose batch is not valid (unpublished when the writer died,
                        // or damaged, reported just before): it means nothing. Sealed like a
                        // hole, so no later reader takes it for a record.
                        report.holes += 1;
                        seal_aborted(log, segment, base, at, view.record_bytes as usize);
                    }
                }
                end_of_valid = offset;
            }
            SegmentItem::Hole { offset: at, bytes } => {
                report.holes += 1;
                seal_aborted(log, segment, base, at, bytes);
            }
            SegmentItem::Damaged {
                offset: at,
                bytes,
                error,
            } => {
                damage(strict, report, &path, at, bytes as u64, &error)?;
                seal_aborted(log, segment, base, at, bytes);
            }
            SegmentItem::Trailing {
                offset: at,
                bytes,
                error,
                all_zero,
            } => {
                let hole = error == RecordError::Unwritten;
                if is_last {
                    if !all_zero {
                        if !hole && strict {
                            return Err(Error::Corrupt {
                                path,
                                offset: at as u64,
                                reason: error.to_string(),
                            });
                        }
                        if !hole {
                            // A published record that fails validation with nothing valid
                            // after it: a write torn by a power loss, or damage. Zeroed either
                            // way (writing resumes here), and reported.
                            report.corrupt.push(Damage {
                                path: path.clone(),
                                offset: at as u64,
                                bytes: bytes as u64,
                                reason: format!(
                                    "{error}; at the tail, after the last valid record: zeroed \
                                     as a torn write"
                                ),
                            });
                        }
                        // Unpublished or torn bytes after the last record: new writes resume
                        // here and expect zeros.
                        report.bytes_truncated += bytes as u64;
                        // SAFETY: exclusive access during recovery (see above).
                        unsafe { segment.write(at, &vec![0u8; bytes]) };
                    }
                    return Ok(end_of_valid as u64);
                }
                if hole {
                    if !all_zero {
                        report.holes += 1;
                    }
                } else {
                    damage(strict, report, &path, at, bytes as u64, &error)?;
                }
                seal(segment, at, bytes, base + at as u64, RecordKind::Padding);
                return Ok(len as u64);
            }
        }
    }
    Ok(end_of_valid as u64)
}

/// Reports the members of the valid batch `view` at `position` as puts and tombstones, all or
/// none: returns `false`, having reported nothing, if any member does not decode as one of
/// this batch's. Its header is counted as filler, as the live log counts it.
fn replay_batch(
    log: &AppendLog,
    segment: &Segment,
    report: &mut RecoveryReport,
    view: &seglog_format::RecordView<'_>,
    position: u64,
    on_record: &mut impl FnMut(&AppendLog, &RecordRef<'_>),
) -> bool {
    // The batch's checksum covered every member's bytes: the structure checks are enough.
    let members: Result<Vec<_>, _> =
        seglog_format::batch_members(view, position, segment.salt(), Verify::Structure).collect();
    let Ok(members) = members else {
        return false;
    };
    log.note_recovered_filler(RECORD_HEADER_BYTES as u64);
    for (offset, member) in &members {
        report.records += 1;
        log.note_recovered(member.record_bytes);
        segment.note_version(member.header.version());
        on_record(
            log,
            &RecordRef::from_view(position + u64::from(*offset), member),
        );
    }
    true
}

/// Seals a hole or damaged range of `bytes` at `offset` with an aborted record, counted like the
/// aborted records the live log writes.
fn seal_aborted(log: &AppendLog, segment: &Segment, base: u64, offset: usize, bytes: usize) {
    let position = base + offset as u64;
    if seal(segment, offset, bytes, position, RecordKind::Aborted) {
        log.note_recovered_filler(bytes as u64);
    }
}

fn damage(
    strict: bool,
    report: &mut RecoveryReport,
    path: &Path,
    offset: usize,
    bytes: u64,
    error: &RecordError,
) -> Result<()> {
    if strict {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason: error.to_string(),
        });
    }
    report.corrupt.push(Damage {
        path: path.to_path_buf(),
        offset: offset as u64,
        bytes,
        reason: error.to_string(),
    });
    Ok(())
}

/// Covers `[offset, offset + bytes)` with one filler record so live scans pass it, and says
/// whether it did. A range shorter than a header can only be sealed at the end of the segment
/// (short padding); a shorter range elsewhere cannot arise from whole records and is left for
/// the scan to report.
fn seal(segment: &Segment, offset: usize, bytes: usize, position: u64, kind: RecordKind) -> bool {
    let commit = CommitWord::new(kind, bytes as u32);
    if bytes >= RECORD_HEADER_BYTES {
        let header = RecordHeader::filler(kind, bytes as u32, position, segment.salt());
        // SAFETY: exclusive access during recovery (see `recover_segment`).
        unsafe { segment.write(offset + RecordHeader::COMMIT_BYTES, header.body_bytes()) };
    } else if kind != RecordKind::Padding || offset + bytes != segment.len() {
        return false;
    }
    segment.commit(offset).store_unshared(commit);
    true
}
