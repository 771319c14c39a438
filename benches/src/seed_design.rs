//! The seed design, rebuilt as the baseline: the warm tier of
//! `shared/seed/task-017-warm-tier-concurrent-tests.md` with the seed's own fix applied.
//!
//! What the seed's `MappedWarmStorage` kept, and what this keeps the same way:
//! - **content** (variable-length text) in one `parking_lot::RwLock<Vec<u8>>`: a store takes the
//!   write lock, notes `len()` as the offset and appends; a read takes the read lock and copies
//!   the bytes out. The vector grows by doubling, copying everything under the write lock.
//! - **embedding blocks** in one fixed-size memory-mapped file: a 96-byte header, then 3136-byte
//!   blocks (768 `f32`s and 64 bytes of metadata, `repr(C, align(64))`), one per store. The file is
//!   sized at creation for `capacity` blocks and never grows; a store past it fails.
//! - **the index**, a `DashMap<String, u64>` from memory id to block offset.
//!
//! A store builds its block on the stack (hashing the id and reading the clock, as the seed's
//! `EmbeddingBlock::new` did), appends the content, takes a block index with
//! `entry_count.fetch_add(1, SeqCst)` (the seed's fix for its offset race: before it, two
//! writers could read the same count and overwrite each other's block), copies the block into
//! the map and inserts the id. A get looks the id up, copies the whole block out of the map
//! (`read_unaligned`), then copies the content out under the read lock.
//!
//! Every store writes a whole block, whatever the size of the value: that is the seed's design
//! (a memory always has an embedding), and it is why the baseline's puts of 16-byte values cost
//! about what its puts of embeddings cost.

use std::fs::{File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use dashmap::DashMap;
use memmap2::{Advice, MmapOptions, MmapRaw};
use parking_lot::RwLock;

use crate::store::{KvStore, copy_out};
use crate::workload::{EMBEDDING_BYTES, EMBEDDING_DIMS, bench_dir};

/// Bytes of one embedding block.
pub const BLOCK_BYTES: usize = 3136;
/// Bytes of the mapped file's header (the seed's `MappedFileHeader`).
pub const HEADER_BYTES: usize = 96;
/// The header's magic, as the seed wrote it ("ENGRAMMA").
const MAGIC: u64 = 0x454E_4752_414D_4D41;
/// `content_offset` of a block whose memory has no content.
const NO_CONTENT: u64 = u64::MAX;

/// One embedding block: the embedding and its metadata, one cache-line-aligned unit.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
pub struct EmbeddingBlock {
    /// The embedding.
    pub embedding: [f32; EMBEDDING_DIMS],
    /// Confidence of the memory.
    pub confidence: f32,
    /// Activation level.
    pub activation: f32,
    /// Last access, nanoseconds since the epoch.
    pub last_access: u64,
    /// Decay rate.
    pub decay_rate: f32,
    /// Flags.
    pub node_flags: u32,
    /// Hash of the memory id.
    pub content_hash: u64,
    /// Creation time, nanoseconds since the epoch.
    pub creation_time: u64,
    /// Times recalled.
    pub recall_count: u32,
    /// Length of the content in the content vector.
    pub content_length: u32,
    /// Offset of the content in the content vector, or `u64::MAX` for none.
    pub content_offset: u64,
}

const _: () = assert!(size_of::<EmbeddingBlock>() == BLOCK_BYTES);
const _: () = assert!(HEADER_BYTES.is_multiple_of(8));

impl EmbeddingBlock {
    fn new(id: &str, embedding: &[u8]) -> Self {
        let now = now_nanos();
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        let mut block = Self {
            embedding: [0.0; EMBEDDING_DIMS],
            confidence: 0.9,
            activation: 0.8,
            last_access: now,
            decay_rate: 0.2,
            node_flags: 0,
            content_hash: hasher.finish(),
            creation_time: now,
            recall_count: 0,
            content_length: 0,
            content_offset: NO_CONTENT,
        };
        if !embedding.is_empty() {
            copy_embedding(&mut block.embedding, embedding);
        }
        block
    }

    /// The embedding as bytes.
    pub fn embedding_bytes(&self) -> &[u8] {
        // SAFETY: `[f32; 768]` is 3072 initialised bytes with no padding, and `u8` has no
        // alignment or validity requirements.
        unsafe { std::slice::from_raw_parts(self.embedding.as_ptr().cast::<u8>(), EMBEDDING_BYTES) }
    }
}

fn copy_embedding(embedding: &mut [f32; EMBEDDING_DIMS], bytes: &[u8]) {
    assert_eq!(
        bytes.len(),
        EMBEDDING_BYTES,
        "an embedding is {EMBEDDING_BYTES} bytes"
    );
    for (float, chunk) in embedding.iter_mut().zip(bytes.chunks_exact(4)) {
        *float = f32::from_le_bytes(chunk.try_into().expect("chunks of 4"));
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The seed's store failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedError {
    /// The fixed mmap has no room for another block.
    Full {
        /// Blocks the file was sized for.
        capacity: usize,
    },
}

impl std::fmt::Display for SeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedError::Full { capacity } => write!(
                f,
                "the seed design's fixed mmap is full ({capacity} blocks)"
            ),
        }
    }
}

impl std::error::Error for SeedError {}

/// The seed's warm tier (see the module docs).
pub struct SeedStore {
    map: MmapRaw,
    capacity: usize,
    memory_index: DashMap<String, u64>,
    content_data: RwLock<Vec<u8>>,
    entry_count: AtomicUsize,
    total_size: AtomicU64,
    last_access: AtomicU64,
    _file: File,
    // Last: the directory goes after the map and the file are closed.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for SeedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedStore")
            .field("capacity", &self.capacity)
            .field("entries", &self.entry_count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SeedStore {
    /// A store whose mapped file, in a fresh temporary directory, holds `capacity` blocks.
    pub fn new(capacity: usize) -> io::Result<Self> {
        let dir = bench_dir("seglog-bench-seed-");
        let path = dir.path().join("warm_storage.dat");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let len = HEADER_BYTES + capacity.max(1) * BLOCK_BYTES;
        file.set_len(len as u64)?;
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        // The seed advised sequential access on its map.
        map.advise(Advice::Sequential)?;
        let mut header = [0u8; HEADER_BYTES];
        header[..8].copy_from_slice(&MAGIC.to_le_bytes());
        header[8..12].copy_from_slice(&1u32.to_le_bytes());
        header[16..20].copy_from_slice(&(BLOCK_BYTES as u32).to_le_bytes());
        header[20..24].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
        // SAFETY: the map is `len >= HEADER_BYTES` bytes long and not shared with any thread yet.
        unsafe {
            std::ptr::copy_nonoverlapping(header.as_ptr(), map.as_mut_ptr(), HEADER_BYTES);
        }
        Ok(Self {
            map,
            capacity: capacity.max(1),
            memory_index: DashMap::new(),
            content_data: RwLock::new(Vec::new()),
            entry_count: AtomicUsize::new(0),
            total_size: AtomicU64::new(0),
            last_access: AtomicU64::new(0),
            _file: file,
            _dir: dir,
        })
    }

    /// Stores a memory: its `embedding` (3072 bytes, or empty for zeros) and optional `content`.
    pub fn store(
        &self,
        id: &str,
        embedding: &[u8],
        content: Option<&[u8]>,
    ) -> Result<(), SeedError> {
        let mut block = EmbeddingBlock::new(id, embedding);
        if let Some(content) = content {
            let offset = {
                // parking_lot: no poisoning; the lock is held only for the append.
                let mut content_data = self.content_data.write();
                let offset = content_data.len() as u64;
                content_data.extend_from_slice(content);
                offset
            };
            block.content_offset = offset;
            block.content_length = content.len() as u32;
        }
        // The seed's fix: one atomic increment hands each store its own block. SeqCst as the seed
        // wrote it (Relaxed would do: the DashMap insert below publishes the block).
        let index = self.entry_count.fetch_add(1, Ordering::SeqCst);
        if index >= self.capacity {
            return Err(SeedError::Full {
                capacity: self.capacity,
            });
        }
        let offset = HEADER_BYTES + index * BLOCK_BYTES;
        // SAFETY: `index < capacity`, so `[offset, offset + BLOCK_BYTES)` lies inside the map;
        // the `fetch_add` gave this block index to this thread alone, and no reader can reach the
        // block before the index insert below (the shard lock orders the copy before any get that
        // finds the offset).
        unsafe {
            std::ptr::copy_nonoverlapping(
                std::ptr::from_ref(&block).cast::<u8>(),
                self.map.as_mut_ptr().add(offset),
                BLOCK_BYTES,
            );
        }
        self.memory_index.insert(id.to_string(), offset as u64);
        self.total_size
            .fetch_add(BLOCK_BYTES as u64, Ordering::Relaxed);
        self.last_access.store(now_nanos(), Ordering::Relaxed);
        Ok(())
    }

    /// Looks `id` up, copies its block out of the map, and calls `f` with the block and the
    /// content (read under the content lock, as the seed copied it into a `String`).
    pub fn get_with<R>(
        &self,
        id: &str,
        f: impl FnOnce(&EmbeddingBlock, Option<&[u8]>) -> R,
    ) -> Option<R> {
        let offset = {
            let entry = self.memory_index.get(id)?;
            *entry.value() as usize
        };
        debug_assert!(offset + BLOCK_BYTES <= self.map.len());
        // SAFETY: `offset` came from the index, which holds only offsets of blocks copied in
        // completely before their insert (see `store`), inside the map; blocks are never written
        // again. `read_unaligned`, as the seed read it.
        let block = unsafe {
            std::ptr::read_unaligned(self.map.as_ptr().add(offset).cast::<EmbeddingBlock>())
        };
        if block.content_offset == NO_CONTENT {
            return Some(f(&block, None));
        }
        let content_data = self.content_data.read();
        let start = block.content_offset as usize;
        let end = start + block.content_length as usize;
        let content = content_data.get(start..end)?;
        Some(f(&block, Some(content)))
    }

    /// Memories stored (blocks handed out, failed stores included, as the seed counted).
    pub fn len(&self) -> usize {
        self.entry_count.load(Ordering::Relaxed)
    }

    /// Whether nothing was stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The directory of the mapped file.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Keys in the index.
    pub fn keys(&self) -> usize {
        self.memory_index.len()
    }
}

/// As a key-value store: a 3 KiB value is an embedding (no content); any other value is the
/// memory's content, beside a zero embedding block.
impl KvStore for SeedStore {
    fn put(&self, _id: u64, key: &[u8], value: &[u8]) {
        let id = std::str::from_utf8(key).expect("bench keys are ASCII");
        let result = if value.len() == EMBEDDING_BYTES {
            self.store(id, value, None)
        } else {
            self.store(id, &[], Some(value))
        };
        result.unwrap_or_else(|e| panic!("{e}: size the baseline for the run"));
    }

    fn get(&self, _id: u64, key: &[u8], out: &mut Vec<u8>) -> bool {
        let id = std::str::from_utf8(key).expect("bench keys are ASCII");
        self.get_with(id, |block, content| match content {
            Some(content) => copy_out(content, out),
            None => copy_out(block.embedding_bytes(), out),
        })
        .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_content_and_embeddings() {
        let store = SeedStore::new(8).unwrap();
        let embedding: Vec<u8> = (0..EMBEDDING_BYTES).map(|i| i as u8).collect();
        store.store("a", &embedding, None).unwrap();
        store.store("b", &[], Some(b"hello")).unwrap();
        let mut out = Vec::new();
        assert!(store.get(0, b"a", &mut out));
        assert_eq!(out, embedding);
        assert!(store.get(0, b"b", &mut out));
        assert_eq!(out, b"hello");
        assert!(!store.get(0, b"c", &mut out));
    }

    #[test]
    fn a_full_map_refuses_stores() {
        let store = SeedStore::new(1).unwrap();
        store.store("a", &[], Some(b"x")).unwrap();
        assert_eq!(
            store.store("b", &[], Some(b"y")),
            Err(SeedError::Full { capacity: 1 })
        );
    }
}
