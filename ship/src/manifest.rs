//! The remote layout: which objects a shipped log is made of, and the manifest naming them.
//!
//! Under a prefix `P` the shipper writes only these names, each exactly once:
//!
//! | object | what it holds |
//! |---|---|
//! | `P/manifests/<seq:020>.json` | a [`Manifest`]; the highest `seq` is the log |
//! | `P/segments/<id:020>.seg` | sealed segment `id`, trailing zeros trimmed |
//! | `P/segments/<id:020>.hint` | its hint file |
//! | `P/tail/<id:020>/<start:012>-<end:012>` | bytes `start..end` of the frontier's segment `id` |
//!
//! A manifest is written only after every object it names was stored, and an object is
//! deleted only once no manifest left under the prefix names it (`shipper.rs`), so a manifest
//! a reader finds never names a missing object, except one a newer manifest made garbage while
//! the reader was still reading (restore and follow then start over from the newest).

use object_store::ObjectStore;
use object_store::path::Path;
use seglog::SyncedFrontier;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use futures::TryStreamExt;

/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// A shipped log: the segments it is made of, each as byte ranges stored in objects, and the
/// synced frontier it was cut at. Restored, it opens to every write synced before the round
/// that wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: u32,
    /// Its sequence number: 1 for the first manifest under a prefix, then one more per manifest.
    pub seq: u64,
    /// The size of every segment file.
    pub segment_bytes: u64,
    /// The synced frontier's segment.
    pub synced_segment: u64,
    /// The synced frontier's offset in it.
    pub synced_offset: u64,
    /// The segments, in id order.
    pub segments: Vec<SegmentEntry>,
}

/// One segment of a [`Manifest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// The segment's id.
    pub id: u64,
    /// Sealed (one object, final) or the frontier's segment (byte ranges up to the frontier).
    pub sealed: bool,
    /// The CRC-32C the segment file's header ends with (it covers the header's id, size and
    /// the salt drawn at random when the file was created): which segment `id` this is. A shipper taking up a
    /// prefix checks it against its own files, so another log's segment with the same id is
    /// never taken for its own.
    pub header_crc32c: u32,
    /// The segment's bytes, as contiguous ranges from offset 0; zeros after the last.
    pub parts: Vec<ObjectEntry>,
    /// Its hint, if one was shipped.
    pub hint: Option<ObjectEntry>,
}

/// One stored object and where its bytes go.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Its name under the prefix (`segments/...`, `tail/...`).
    pub key: String,
    /// Where its first byte goes in the segment file (0 for hints).
    pub start: u64,
    /// Its length in bytes.
    pub len: u64,
    /// CRC-32C of its bytes.
    pub crc32c: u32,
}

impl SegmentEntry {
    /// The end of the segment's stored bytes.
    pub fn end(&self) -> u64 {
        self.parts.last().map_or(0, |p| p.start + p.len)
    }
}

impl Manifest {
    /// The synced frontier the manifest was cut at.
    pub fn synced(&self) -> SyncedFrontier {
        SyncedFrontier {
            segment: self.synced_segment,
            offset: self.synced_offset,
        }
    }

    /// Every object it names, as full paths under `prefix`.
    pub fn objects(&self, prefix: &Path) -> Vec<Path> {
        self.entries().map(|e| at(prefix, &e.key)).collect()
    }

    /// Every object entry it names.
    pub fn entries(&self) -> impl Iterator<Item = &ObjectEntry> {
        self.segments
            .iter()
            .flat_map(|s| s.parts.iter().chain(s.hint.iter()))
    }

    /// The bytes of every object it names.
    pub fn total_bytes(&self) -> u64 {
        self.entries().map(|e| e.len).sum()
    }

    /// Checks what a reader relies on, so damage is an error, not a wrong file.
    pub(crate) fn check(&self, object: &Path) -> Result<()> {
        let bad = |reason: String| Err(Error::corrupt(object, reason));
        if self.format != MANIFEST_FORMAT {
            return bad(format!(
                "manifest format {} (this build reads {MANIFEST_FORMAT})",
                self.format
            ));
        }
        if !seglog_format::valid_segment_bytes(self.segment_bytes) {
            return bad(format!("segment size {} is not valid", self.segment_bytes));
        }
        let mut last_id = None;
        for (i, segment) in self.segments.iter().enumerate() {
            if last_id.is_some_and(|last| segment.id <= last) {
                return bad(format!("segment {} is out of order", segment.id));
            }
            last_id = Some(segment.id);
            let frontier = i + 1 == self.segments.len() && !segment.sealed;
            if !segment.sealed && !frontier {
                return bad(format!("unsealed segment {} is not the last", segment.id));
            }
            if frontier && segment.id != self.synced_segment {
                return bad(format!(
                    "unsealed segment {} is not the frontier's",
                    segment.id
                ));
            }
            if segment.id > self.synced_segment
                || (segment.sealed && segment.id >= self.synced_segment)
            {
                return bad(format!(
                    "segment {} lies past the synced frontier",
                    segment.id
                ));
            }
            let mut end = 0;
            for part in &segment.parts {
                let next = part.start.checked_add(part.len);
                if part.start != end || part.len == 0 || next.is_none() {
                    return bad(format!(
                        "segment {}'s parts are not contiguous from 0",
                        segment.id
                    ));
                }
                end = next.unwrap_or(u64::MAX);
            }
            if end > self.segment_bytes
                || (frontier && end != self.synced_offset)
                || segment.parts.is_empty()
            {
                return bad(format!("segment {} holds {end} bytes", segment.id));
            }
            if segment.sealed && segment.parts.len() != 1 {
                return bad(format!("sealed segment {} is not one object", segment.id));
            }
        }
        Ok(())
    }

    pub(crate) fn path(prefix: &Path, seq: u64) -> Path {
        at(prefix, &format!("manifests/{seq:020}.json"))
    }
}

/// `prefix/rel`.
pub(crate) fn at(prefix: &Path, rel: &str) -> Path {
    if prefix.as_ref().is_empty() {
        Path::from(rel)
    } else {
        Path::from(format!("{prefix}/{rel}"))
    }
}

/// `rel` of a full path under `prefix`, if it is under it.
pub(crate) fn relative<'a>(prefix: &Path, path: &'a Path) -> Option<&'a str> {
    let full = path.as_ref();
    if prefix.as_ref().is_empty() {
        return Some(full);
    }
    full.strip_prefix(prefix.as_ref())?.strip_prefix('/')
}

pub(crate) fn segment_key(id: u64) -> String {
    format!("segments/{id:020}.seg")
}

pub(crate) fn hint_key(id: u64) -> String {
    format!("segments/{id:020}.hint")
}

pub(crate) fn tail_key(id: u64, start: u64, end: u64) -> String {
    format!("tail/{id:020}/{start:012}-{end:012}")
}

/// An object's bytes.
pub(crate) async fn get_bytes(store: &dyn ObjectStore, path: &Path) -> Result<bytes::Bytes> {
    store
        .get(path)
        .await
        .map_err(|e| Error::store(path, e))?
        .bytes()
        .await
        .map_err(|e| Error::store(path, e))
}

/// Every object under `prefix/dir`.
pub(crate) async fn list_objects(
    store: &dyn ObjectStore,
    prefix: &Path,
    dir: &str,
) -> Result<Vec<object_store::ObjectMeta>> {
    let dir = at(prefix, dir);
    store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| Error::store(&dir, e))
}

/// The sequence numbers of the manifests under `prefix`, ascending.
pub(crate) async fn manifest_seqs(store: &dyn ObjectStore, prefix: &Path) -> Result<Vec<u64>> {
    let metas = list_objects(store, prefix, "manifests").await?;
    // Only names this crate writes (20 digits, directly under `manifests/`): a stray
    // `manifests/7.json` is not manifest 7, which readers would look for at another name.
    let mut seqs: Vec<u64> = metas
        .iter()
        .filter_map(|m| {
            let name = m.location.filename()?;
            let digits = name.strip_suffix(".json")?;
            let seq: u64 = digits.parse().ok()?;
            (digits.len() == 20 && m.location == Manifest::path(prefix, seq)).then_some(seq)
        })
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// Reads manifest `seq`.
pub(crate) async fn read_manifest(
    store: &dyn ObjectStore,
    prefix: &Path,
    seq: u64,
) -> Result<Manifest> {
    let path = Manifest::path(prefix, seq);
    let bytes = get_bytes(store, &path).await?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::corrupt(&path, format!("not a manifest: {e}")))?;
    if manifest.seq != seq {
        return Err(Error::corrupt(
            &path,
            format!("it says it is manifest {}", manifest.seq),
        ));
    }
    manifest.check(&path)?;
    Ok(manifest)
}

/// The newest manifest under `prefix`, or `None` if nothing was shipped there.
pub async fn latest_manifest(store: &dyn ObjectStore, prefix: &Path) -> Result<Option<Manifest>> {
    // The newest is never deleted by a shipper, only older ones; but a listing may be stale, so
    // a manifest listed and gone by the time it is read sends us back to the listing.
    for _ in 0..8 {
        let Some(&seq) = manifest_seqs(store, prefix).await?.last() else {
            return Ok(None);
        };
        match read_manifest(store, prefix, seq).await {
            Err(e) if e.is_not_found() => continue,
            other => return other.map(Some),
        }
    }
    Err(Error::Conflict {
        object: at(prefix, "manifests").to_string(),
        reason: "manifests keep disappearing while they are read; is something else deleting \
                 under this prefix?"
            .into(),
    })
}
