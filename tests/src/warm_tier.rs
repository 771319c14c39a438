//! A warm tier of episodic memories on seglog, linked the way a database would link it.
//!
//! This replaces the design the seed task (`task-017-warm-tier-concurrent-tests.md`) tested:
//! there, an episode's embedding and content lived in two buffers guarded by a `DashMap` and a
//! `RwLock`, with an offset computed by `find_next_offset()` and written by a separate call,
//! which raced. Here an episode is ONE record under its id: seglog reserves its region with one
//! atomic bump and publishes it with one release store, so there is no offset to compute and
//! nothing to lock.
//!
//! # Value layout (version 1, little-endian, always)
//! ```text
//! offset  bytes          field
//! 0       3072           embedding: 768 × f32
//! 3072    8              when: u64, nanoseconds since the Unix epoch
//! 3080    4              confidence: f32
//! 3084    4              what_len: u32
//! 3088    what_len       what: UTF-8
//! ```
//! The embedding comes first so it starts where the value starts, on seglog's 8-byte value
//! boundary, and is read back in place as `&[f32]` with `bytemuck`, without copying.
//! Decoding never panics on bad bytes: it returns a [`DecodeError`], which is what the scenario
//! tests look for after a torn or foreign write.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use seglog::{Log, Options, Stats};

/// Dimensions of an embedding.
pub const EMBEDDING_DIM: usize = 768;
/// Bytes of the embedding at the start of a value.
pub const EMBEDDING_BYTES: usize = EMBEDDING_DIM * size_of::<f32>();
const WHEN_OFFSET: usize = EMBEDDING_BYTES;
const CONFIDENCE_OFFSET: usize = WHEN_OFFSET + size_of::<u64>();
const WHAT_LEN_OFFSET: usize = CONFIDENCE_OFFSET + size_of::<f32>();
/// Bytes of a value before `what`.
pub const FIXED_BYTES: usize = WHAT_LEN_OFFSET + size_of::<u32>();
const _: () = assert!(EMBEDDING_BYTES == 3072 && FIXED_BYTES == 3088);
// The embedding is read in place as native f32s: that is the on-log little-endian layout only
// on a little-endian machine.
const _: () = assert!(cfg!(target_endian = "little"));

/// Bytes of seglog's record header.
pub const RECORD_HEADER_BYTES: u64 = 40;

/// The segment size [`WarmTier::open`] uses: 1 MiB, so the seed's workloads (a few MB each)
/// roll segments over several times while they run.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 20;

/// The length in the log of a record with a `key_len`-byte key and a `value_len`-byte value:
/// the 40-byte header, then the key and the value each padded to 8 bytes.
pub fn record_bytes(key_len: usize, value_len: usize) -> u64 {
    RECORD_HEADER_BYTES
        + (key_len as u64).next_multiple_of(8)
        + (value_len as u64).next_multiple_of(8)
}

/// Confidence levels as the seed wrote them (`Confidence::HIGH`).
#[derive(Debug, Clone, Copy)]
pub struct Confidence;

impl Confidence {
    /// High confidence.
    pub const HIGH: f32 = 0.9;
    /// Medium confidence.
    pub const MEDIUM: f32 = 0.5;
    /// Low confidence.
    pub const LOW: f32 = 0.1;
}

/// One episodic memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// The id: the record's key.
    pub id: String,
    /// When it happened (stored with nanosecond precision).
    pub when: SystemTime,
    /// What happened.
    pub what: String,
    /// The embedding.
    pub embedding: Box<[f32; EMBEDDING_DIM]>,
    /// How sure the system is of it.
    pub confidence: f32,
}

impl Episode {
    /// Length of this episode's value in the log.
    pub fn value_len(&self) -> usize {
        FIXED_BYTES + self.what.len()
    }

    /// Length of this episode's record in the log.
    pub fn record_bytes(&self) -> u64 {
        record_bytes(self.id.len(), self.value_len())
    }
}

/// Builds an [`Episode`] field by field, as the seed's tests do.
#[derive(Debug, Clone, Default)]
pub struct EpisodeBuilder {
    id: Option<String>,
    when: Option<SystemTime>,
    what: String,
    embedding: Option<Box<[f32; EMBEDDING_DIM]>>,
    confidence: f32,
}

impl EpisodeBuilder {
    /// An empty builder: no id yet, `when` = now, empty `what`, zero embedding, confidence 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the id.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets when it happened.
    #[must_use]
    pub fn when(mut self, when: SystemTime) -> Self {
        self.when = Some(when);
        self
    }

    /// Sets what happened.
    #[must_use]
    pub fn what(mut self, what: impl Into<String>) -> Self {
        self.what = what.into();
        self
    }

    /// Sets the embedding.
    #[must_use]
    pub fn embedding(mut self, embedding: [f32; EMBEDDING_DIM]) -> Self {
        self.embedding = Some(Box::new(embedding));
        self
    }

    /// Sets the confidence.
    #[must_use]
    pub fn confidence(mut self, confidence: f32) -> Self {
        self.confidence = confidence;
        self
    }

    /// The episode.
    ///
    /// # Panics
    /// If no id was set: every episode is stored under its id.
    pub fn build(self) -> Episode {
        Episode {
            id: self
                .id
                .expect("EpisodeBuilder::build: an episode needs an id"),
            when: self.when.unwrap_or_else(SystemTime::now),
            what: self.what,
            embedding: self
                .embedding
                .unwrap_or_else(|| Box::new([0.0; EMBEDDING_DIM])),
            confidence: self.confidence,
        }
    }
}

/// A deterministic embedding for tests: different seeds give different vectors, the same seed
/// the same vector, bit for bit.
pub fn create_test_embedding(seed: f32) -> [f32; EMBEDDING_DIM] {
    let mut embedding = [0.0; EMBEDDING_DIM];
    for (i, x) in embedding.iter_mut().enumerate() {
        *x = ((seed + 1.0) * (i as f32 + 1.0) * 0.001).sin();
    }
    embedding
}

/// Why a value is not an episode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The value is shorter than the fixed fields.
    TooShort {
        /// Its length.
        len: usize,
    },
    /// `what_len` disagrees with the value's length.
    WhatLen {
        /// `what_len` as stored.
        stored: u32,
        /// Bytes after the fixed fields.
        actual: usize,
    },
    /// `what` is not UTF-8.
    WhatNotUtf8,
    /// The value does not start on a 4-byte boundary, so the embedding cannot be borrowed in
    /// place (seglog promises 8).
    Misaligned {
        /// The value's address.
        address: usize,
    },
    /// The id (the key) is not UTF-8.
    IdNotUtf8,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(
                    f,
                    "value of {len} bytes is shorter than the {FIXED_BYTES} fixed bytes"
                )
            }
            Self::WhatLen { stored, actual } => {
                write!(
                    f,
                    "what_len says {stored} bytes but {actual} follow the fixed fields"
                )
            }
            Self::WhatNotUtf8 => write!(f, "`what` is not UTF-8"),
            Self::Misaligned { address } => {
                write!(f, "value at {address:#x} is not 4-byte aligned")
            }
            Self::IdNotUtf8 => write!(f, "the id is not UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// What went wrong in the warm tier.
#[derive(Debug)]
#[non_exhaustive]
pub enum WarmTierError {
    /// No episode has this id.
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The stored value is not an episode: the log returned bytes `store` did not write.
    Corrupt {
        /// The id.
        id: String,
        /// Why it does not decode.
        reason: DecodeError,
    },
    /// The episode cannot be written in this layout (time before 1970 or after 2554, or a
    /// `what` over 4 GiB).
    Unrepresentable {
        /// The id.
        id: String,
        /// Which field.
        reason: &'static str,
    },
    /// The log refused the write.
    Log(seglog::Error),
}

impl fmt::Display for WarmTierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { id } => write!(f, "no episode {id:?}"),
            Self::Corrupt { id, reason } => write!(f, "episode {id:?} does not decode: {reason}"),
            Self::Unrepresentable { id, reason } => {
                write!(f, "episode {id:?} cannot be stored: {reason}")
            }
            Self::Log(e) => write!(f, "seglog: {e}"),
        }
    }
}

impl std::error::Error for WarmTierError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Corrupt { reason, .. } => Some(reason),
            Self::Log(e) => Some(e),
            _ => None,
        }
    }
}

impl From<seglog::Error> for WarmTierError {
    fn from(e: seglog::Error) -> Self {
        Self::Log(e)
    }
}

/// An episode's value, borrowed from the log: the embedding is the log's bytes viewed as f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeView<'a> {
    /// The embedding, in place.
    pub embedding: &'a [f32],
    /// Nanoseconds since the Unix epoch.
    pub when_unix_ns: u64,
    /// Confidence.
    pub confidence: f32,
    /// What happened, in place.
    pub what: &'a str,
}

impl EpisodeView<'_> {
    /// An owned episode with this value and `id`.
    pub fn to_episode(&self, id: &str) -> Episode {
        let mut embedding = Box::new([0.0; EMBEDDING_DIM]);
        embedding.copy_from_slice(self.embedding);
        Episode {
            id: id.to_owned(),
            when: UNIX_EPOCH + Duration::from_nanos(self.when_unix_ns),
            what: self.what.to_owned(),
            embedding,
            confidence: self.confidence,
        }
    }
}

/// Decodes a value written by [`WarmTier::store`], borrowing from it. Never panics.
pub fn decode(value: &[u8]) -> Result<EpisodeView<'_>, DecodeError> {
    if value.len() < FIXED_BYTES {
        return Err(DecodeError::TooShort { len: value.len() });
    }
    let embedding =
        bytemuck::try_cast_slice::<u8, f32>(&value[..EMBEDDING_BYTES]).map_err(|_| {
            DecodeError::Misaligned {
                address: value.as_ptr() as usize,
            }
        })?;
    let u64_at = |at: usize| u64::from_le_bytes(value[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(value[at..at + 4].try_into().expect("4 bytes"));
    let what_len = u32_at(WHAT_LEN_OFFSET);
    let what = &value[FIXED_BYTES..];
    if what_len as usize != what.len() {
        return Err(DecodeError::WhatLen {
            stored: what_len,
            actual: what.len(),
        });
    }
    Ok(EpisodeView {
        embedding,
        when_unix_ns: u64_at(WHEN_OFFSET),
        confidence: f32::from_bits(u32_at(CONFIDENCE_OFFSET)),
        what: std::str::from_utf8(what).map_err(|_| DecodeError::WhatNotUtf8)?,
    })
}

/// Counts in the shape the seed's `MemoryStore::get_tier_counts()` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierCounts {
    /// Live episodes. The seed's store counted its hot tier here and the seed's tests asserted
    /// on it; on seglog there is one tier, so this is every live episode.
    pub hot: usize,
}

/// The warm tier: episodes by id in a seglog [`Log`]. `Send + Sync`; share it with `Arc`.
#[derive(Debug)]
pub struct WarmTier {
    log: Log,
}

impl WarmTier {
    /// Opens (or creates) a warm tier in `dir` with [`DEFAULT_SEGMENT_BYTES`] segments.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, WarmTierError> {
        Self::open_with(dir, Options::default().segment_bytes(DEFAULT_SEGMENT_BYTES))
    }

    /// Opens (or creates) a warm tier in `dir` with `options`.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Self, WarmTierError> {
        Ok(Self {
            log: Log::open_with(dir, options)?,
        })
    }

    /// A warm tier in heap memory.
    pub fn in_memory(options: Options) -> Result<Self, WarmTierError> {
        Ok(Self {
            log: Log::in_memory(options)?,
        })
    }

    /// Stores `episode` under its id, serialized straight into the log, and returns the
    /// record's version (its log position). A later store of the same id replaces it.
    pub fn store(&self, episode: &Episode) -> Result<u64, WarmTierError> {
        self.store_with_fault(episode, |_| {})
    }

    /// [`store`](Self::store) with a fault-injection point: `mid_write` runs inside seglog's
    /// zero-copy fill, after the embedding and the fixed fields are in the log's buffer and
    /// before `what` is. If it panics, nothing is stored (seglog leaves an aborted record) and
    /// the panic continues to the caller.
    pub fn store_with_fault(
        &self,
        episode: &Episode,
        mid_write: impl FnOnce(&mut [u8]),
    ) -> Result<u64, WarmTierError> {
        let unrepresentable = |reason| WarmTierError::Unrepresentable {
            id: episode.id.clone(),
            reason,
        };
        let when_unix_ns = episode
            .when
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_nanos()).ok())
            .ok_or_else(|| unrepresentable("`when` is outside 1970..2554"))?;
        let what_len =
            u32::try_from(episode.what.len()).map_err(|_| unrepresentable("`what` over 4 GiB"))?;
        let version = self
            .log
            .put_with(episode.id.as_bytes(), episode.value_len(), |buf| {
                buf[..EMBEDDING_BYTES]
                    .copy_from_slice(bytemuck::cast_slice(&episode.embedding[..]));
                buf[WHEN_OFFSET..CONFIDENCE_OFFSET].copy_from_slice(&when_unix_ns.to_le_bytes());
                buf[CONFIDENCE_OFFSET..WHAT_LEN_OFFSET]
                    .copy_from_slice(&episode.confidence.to_bits().to_le_bytes());
                buf[WHAT_LEN_OFFSET..FIXED_BYTES].copy_from_slice(&what_len.to_le_bytes());
                mid_write(buf);
                buf[FIXED_BYTES..].copy_from_slice(episode.what.as_bytes());
            })?;
        Ok(version)
    }

    /// The episode stored under `id`, copied out.
    pub fn recall(&self, id: &str) -> Result<Episode, WarmTierError> {
        self.log
            .get_with(id.as_bytes(), |value| {
                decode(value).map(|view| view.to_episode(id))
            })
            .ok_or_else(|| WarmTierError::NotFound { id: id.to_owned() })?
            .map_err(|reason| WarmTierError::Corrupt {
                id: id.to_owned(),
                reason,
            })
    }

    /// Calls `f` with the embedding of `id` borrowed from the log (zero-copy: the pinned value
    /// viewed as f32 with `bytemuck`). `None` if there is no such episode.
    pub fn recall_embedding_with<R>(
        &self,
        id: &str,
        f: impl FnOnce(&[f32]) -> R,
    ) -> Option<Result<R, WarmTierError>> {
        let pinned = self.log.pin();
        let value = pinned.get(id.as_bytes())?;
        Some(match decode(value) {
            Ok(view) => Ok(f(view.embedding)),
            Err(reason) => Err(WarmTierError::Corrupt {
                id: id.to_owned(),
                reason,
            }),
        })
    }

    /// Forgets `id` (appends a tombstone). Returns whether it was stored.
    pub fn forget(&self, id: &str) -> Result<bool, WarmTierError> {
        Ok(self.log.remove(id.as_bytes())?)
    }

    /// Live episodes.
    pub fn count(&self) -> usize {
        self.log.len()
    }

    /// The seed's `get_tier_counts()`: see [`TierCounts`].
    pub fn get_tier_counts(&self) -> TierCounts {
        TierCounts { hot: self.count() }
    }

    /// Every live episode, copied out, with seglog's weak consistency: an episode live for the
    /// whole iteration appears exactly once.
    ///
    /// # Panics
    /// If a stored value does not decode. Use [`try_iter_memories`](Self::try_iter_memories)
    /// to see such values instead.
    pub fn iter_memories(&self) -> impl Iterator<Item = (String, Episode)> + '_ {
        self.try_iter_memories()
            .map(|item| item.unwrap_or_else(|e| panic!("warm tier iteration: {e}")))
    }

    /// The seed's name for [`iter_memories`](Self::iter_memories).
    pub fn iter_hot_memories(&self) -> impl Iterator<Item = (String, Episode)> + '_ {
        self.iter_memories()
    }

    /// Every live episode, copied out; a value that does not decode is an error item.
    pub fn try_iter_memories(
        &self,
    ) -> impl Iterator<Item = Result<(String, Episode), WarmTierError>> + '_ {
        self.log.iter().map(|(key, value)| {
            let Ok(id) = String::from_utf8(key) else {
                return Err(WarmTierError::Corrupt {
                    id: String::new(),
                    reason: DecodeError::IdNotUtf8,
                });
            };
            match decode(&value) {
                Ok(view) => Ok((id.clone(), view.to_episode(&id))),
                Err(reason) => Err(WarmTierError::Corrupt { id, reason }),
            }
        })
    }

    /// Calls `f` for every live episode, borrowed from the log under one pin (zero-copy), with
    /// the same consistency as [`iter_memories`](Self::iter_memories).
    pub fn for_each_pinned(&self, mut f: impl FnMut(&[u8], Result<EpisodeView<'_>, DecodeError>)) {
        let pinned = self.log.pin();
        for (key, value) in pinned.iter() {
            f(key, decode(value));
        }
    }

    /// Counts describing the log underneath.
    pub fn stats(&self) -> Stats {
        self.log.stats()
    }

    /// Flushes everything stored so far to stable storage.
    pub fn sync(&self) -> Result<(), WarmTierError> {
        Ok(self.log.sync()?)
    }

    /// The log underneath, for scans in log order and reads by position.
    pub fn log(&self) -> &Log {
        &self.log
    }
}

/// A record's region in the log: `[position, position + record_bytes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Region {
    /// Where the record starts (for a fresh record, its version).
    pub position: u64,
    /// Its length in the log.
    pub record_bytes: u64,
}

/// Checks that `regions` never overlap and that each lies inside one segment of
/// `segment_bytes` (positions are `segment id << log2(segment_bytes) | offset`). Sorts them.
pub fn check_disjoint(regions: &mut [Region], segment_bytes: u64) -> Result<(), String> {
    regions.sort_unstable();
    for r in regions.iter() {
        let offset = r.position % segment_bytes;
        if offset + r.record_bytes > segment_bytes {
            return Err(format!(
                "record at {:#x} ({} bytes) runs past the end of its {segment_bytes}-byte segment",
                r.position, r.record_bytes
            ));
        }
    }
    for pair in regions.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.position + a.record_bytes > b.position {
            return Err(format!(
                "records overlap: [{:#x}, {:#x}) and [{:#x}, {:#x})",
                a.position,
                a.position + a.record_bytes,
                b.position,
                b.position + b.record_bytes
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn episode(what: &str) -> Episode {
        EpisodeBuilder::new()
            .id("ep")
            .when(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789))
            .what(what)
            .embedding(create_test_embedding(3.0))
            .confidence(Confidence::HIGH)
            .build()
    }

    #[test]
    fn store_recall_round_trip_is_exact() {
        let tier = WarmTier::in_memory(Options::default().segment_bytes(64 * 1024)).unwrap();
        for what in ["", "x", "héllo wörld", &"y".repeat(1001)] {
            let e = episode(what);
            let version = tier.store(&e).unwrap();
            assert_eq!(tier.recall("ep").unwrap(), e);
            let pinned = tier.log().pin();
            let record = tier
                .log()
                .append_log()
                .read(version, pinned.guard())
                .unwrap();
            assert_eq!(u64::from(record.record_bytes), e.record_bytes());
            assert_eq!(
                record.value.as_ptr() as usize % 8,
                0,
                "value not 8-byte aligned"
            );
        }
        let sum = tier.recall_embedding_with("ep", |v| v.iter().sum::<f32>());
        assert_eq!(
            sum.unwrap().unwrap(),
            create_test_embedding(3.0).iter().sum::<f32>()
        );
        assert!(tier.forget("ep").unwrap());
        assert!(matches!(
            tier.recall("ep"),
            Err(WarmTierError::NotFound { .. })
        ));
        assert!(tier.recall_embedding_with("ep", |_| ()).is_none());
    }

    #[test]
    fn decode_rejects_bad_bytes_without_panicking() {
        let aligned = vec![0u64; 500];
        let bytes: &[u8] = bytemuck::cast_slice(&aligned);
        assert_eq!(
            decode(&bytes[..100]),
            Err(DecodeError::TooShort { len: 100 })
        );
        assert!(matches!(
            decode(&bytes[..FIXED_BYTES + 3]),
            Err(DecodeError::WhatLen { .. })
        ));
        assert!(matches!(
            decode(&bytes[1..FIXED_BYTES + 1]),
            Err(DecodeError::Misaligned { .. })
        ));
        assert!(decode(&bytes[..FIXED_BYTES]).is_ok());
    }

    #[test]
    fn times_outside_the_layout_are_refused() {
        let tier = WarmTier::in_memory(Options::default()).unwrap();
        let mut e = episode("x");
        e.when = UNIX_EPOCH - Duration::from_secs(1);
        assert!(matches!(
            tier.store(&e),
            Err(WarmTierError::Unrepresentable { .. })
        ));
        assert_eq!(tier.stats().bytes, 0, "a refused store wrote nothing");
    }

    #[test]
    fn check_disjoint_finds_overlaps_and_segment_overruns() {
        let r = |position, record_bytes| Region {
            position,
            record_bytes,
        };
        assert!(check_disjoint(&mut [r(128, 64), r(64, 64)], 1024).is_ok());
        assert!(check_disjoint(&mut [r(64, 65), r(128, 64)], 1024).is_err());
        assert!(check_disjoint(&mut [r(1000, 64)], 1024).is_err());
    }
}
