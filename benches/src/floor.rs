//! The floor: `fetch_add` + `memcpy` into one mmap, with no index.
//!
//! What a put physically has to do in any append design: claim space with one atomic add, copy
//! the key and value in, and publish with one `Release` store of a header word. What a get has to
//! do at best: find the record by arithmetic (the key's id times the record stride, no lookup),
//! `Acquire`-load its header and copy the value out. seglog does all of that plus a CRC, a
//! header, an index install or probe, and epoch pinning; the gap to this floor is what those
//! cost.
//!
//! Layout: one file-backed mapping (in a temporary directory, like seglog's segments). The first
//! `slots × stride` bytes hold the loaded records, record `id` at `id × stride`; puts append
//! after them. Records are `[header u64 = key_len << 32 | value_len][key][value]`, padded to 8.
//! The append tail is reset before each timed run (`KvStore::between_runs`), so a long bench
//! reuses the same pages instead of growing the file; the mapping is sized generously (sparse)
//! and a put that would run past it panics instead of wrapping onto a record another thread may
//! be writing.

use std::fs::{File, OpenOptions};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use memmap2::{MmapOptions, MmapRaw};

use crate::store::KvStore;
use crate::workload::{KEY_BYTES, ValueSize, bench_dir};

/// Bytes of address space the append region reserves (sparse until touched).
const APPEND_BYTES: u64 = 64 << 30;

/// The floor (see the module docs).
pub struct Floor {
    map: MmapRaw,
    stride: usize,
    slots: u64,
    /// Next append offset, relative to the append region.
    tail: CachePadded<AtomicU64>,
    _file: File,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Floor")
            .field("stride", &self.stride)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl Floor {
    /// A floor for values of `size`, with room for `slots` directly addressed records.
    pub fn new(size: ValueSize, slots: u64) -> io::Result<Self> {
        let dir = bench_dir("seglog-bench-floor-");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("floor.dat"))?;
        let stride = (8 + KEY_BYTES + size.bytes()).next_multiple_of(8);
        let len = slots * stride as u64 + APPEND_BYTES;
        file.set_len(len)?;
        let map = MmapOptions::new().len(len as usize).map_raw(&file)?;
        Ok(Self {
            map,
            stride,
            slots,
            tail: CachePadded::new(AtomicU64::new(0)),
            _file: file,
            _dir: dir,
        })
    }

    /// The directory of the mapped file.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    fn write(&self, offset: usize, key: &[u8], value: &[u8]) {
        assert!(
            offset + self.stride <= self.map.len() && 8 + key.len() + value.len() <= self.stride,
            "floor record out of range"
        );
        let base = self.map.as_mut_ptr();
        // SAFETY: in range (asserted). The caller owns `[offset, offset + stride)`: a loaded slot
        // is written once, before the threads that read it start; an append region comes from the
        // `fetch_add` in `put` and is never handed out twice between resets. The header word is
        // 8-byte aligned (offsets and strides are multiples of 8, the map is page aligned).
        unsafe {
            std::ptr::copy_nonoverlapping(key.as_ptr(), base.add(offset + 8), key.len());
            std::ptr::copy_nonoverlapping(
                value.as_ptr(),
                base.add(offset + 8 + key.len()),
                value.len(),
            );
            let header = ((key.len() as u64) << 32) | value.len() as u64;
            // Release: publishes the key and value copied above; pairs with the Acquire load in
            // `get`.
            AtomicU64::from_ptr(base.add(offset).cast::<u64>()).store(header, Ordering::Release);
        }
    }
}

impl KvStore for Floor {
    fn load(&self, id: u64, key: &[u8], value: &[u8]) {
        assert!(id < self.slots, "floor slot {id} out of range");
        self.write(id as usize * self.stride, key, value);
    }

    /// Starts appends over at the beginning of the append region (`&mut`: no put is in flight,
    /// so no region handed out before is still being written).
    fn between_runs(&mut self) {
        *self.tail.get_mut() = 0;
    }

    fn put(&self, _id: u64, key: &[u8], value: &[u8]) {
        // Relaxed: the region is ours by atomicity alone; the header's Release publishes it.
        let appended = self.tail.fetch_add(self.stride as u64, Ordering::Relaxed);
        let offset = self.slots * self.stride as u64 + appended;
        self.write(offset as usize, key, value);
    }

    fn get(&self, id: u64, key: &[u8], out: &mut Vec<u8>) -> bool {
        if id >= self.slots {
            return false;
        }
        let offset = id as usize * self.stride;
        let base = self.map.as_ptr();
        // SAFETY: `id < slots`, so the slot lies in the map; its header word is 8-byte aligned.
        // The value bytes are read only after the Acquire load saw the header their writer stored
        // with Release after copying them, and a loaded slot is never written again.
        unsafe {
            let header = AtomicU64::from_ptr(base.add(offset).cast::<u64>().cast_mut())
                .load(Ordering::Acquire);
            if header == 0 {
                return false;
            }
            let value_len = (header & u64::from(u32::MAX)) as usize;
            let key_len = (header >> 32) as usize;
            debug_assert_eq!(key_len, key.len());
            out.clear();
            out.extend_from_slice(std::slice::from_raw_parts(
                base.add(offset + 8 + key_len),
                value_len,
            ));
        }
        true
    }
}
