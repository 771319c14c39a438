//! The key-value interface every bench subject implements, and seglog's adapter.
//!
//! A get copies the value into a caller-owned buffer that is reused across operations: every
//! subject touches every byte of the value once and none allocates for it, so the comparison is
//! of finding and reading the bytes, not of allocators. A put hands over borrowed bytes; a map
//! that keeps owned copies allocates them, which is its real cost.

use std::ops::Range;
use std::path::Path;

use seglog::{Log, Options};

use crate::workload::{ValueSize, bench_dir, key, stamp, value_buffer};

/// A store a bench can drive from many threads.
pub trait KvStore: Sync {
    /// Stores `value` under `key`. `id` is the key's number (only the floor uses it).
    fn put(&self, id: u64, key: &[u8], value: &[u8]);
    /// Stores the value of a key being loaded before a timed run (each id once, ids `0..n`).
    /// The floor puts it in the key's own slot; everyone else just puts.
    fn load(&self, id: u64, key: &[u8], value: &[u8]) {
        self.put(id, key, value);
    }
    /// Loads keys `ids` with values of `size` (version 0) before a timed run; called from two
    /// threads with disjoint ranges. Stores that batch (redb) override it.
    fn load_range(&self, ids: Range<u64>, size: ValueSize) {
        let mut value = value_buffer(size);
        for id in ids {
            stamp(&mut value, id, 0);
            self.load(id, &key(id), &value);
        }
    }
    /// Whether an overwrite replaces the value atomically, so a concurrent get of the key
    /// always finds the old or the new value. crossbeam-skiplist's `insert` removes the old
    /// entry before inserting the new one, so a get in between finds nothing.
    fn overwrites_atomically(&self) -> bool {
        true
    }
    /// Called between timed runs, with no operation in flight (the floor restarts its appends
    /// so that a long bench reuses its pages).
    fn between_runs(&mut self) {}
    /// Copies the value of `key` into `out` (cleared first); returns whether the key was found.
    fn get(&self, id: u64, key: &[u8], out: &mut Vec<u8>) -> bool;
}

/// Copies `value` into `out`, reusing its allocation.
#[inline]
pub fn copy_out(value: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(value);
}

/// seglog's [`Log`]: file-backed in a fresh temporary directory, or in heap memory.
#[derive(Debug)]
pub struct SeglogStore {
    log: Log,
    // Dropped after the log (fields drop in order), so the log closes before its files go.
    _dir: Option<tempfile::TempDir>,
}

impl SeglogStore {
    /// A file-backed log with default options (64 MiB segments, prefaulted) in a fresh
    /// temporary directory under [`crate::workload::bench_root`].
    pub fn file_backed() -> Self {
        Self::file_backed_with(Options::default())
    }

    /// A file-backed log with `options` in a fresh temporary directory.
    pub fn file_backed_with(options: Options) -> Self {
        let dir = bench_dir("seglog-bench-log-");
        let log = Log::open_with(dir.path(), options).expect("open a seglog log for benchmarking");
        Self {
            log,
            _dir: Some(dir),
        }
    }

    /// A log in heap memory (`Log::in_memory`) with default options.
    pub fn in_memory() -> Self {
        let log = Log::in_memory(Options::default()).expect("create an in-memory seglog log");
        Self { log, _dir: None }
    }

    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The log's directory (none for a log in memory).
    pub fn dir(&self) -> Option<&Path> {
        self._dir.as_ref().map(tempfile::TempDir::path)
    }
}

impl KvStore for SeglogStore {
    fn put(&self, _id: u64, key: &[u8], value: &[u8]) {
        self.log.put(key, value).expect("seglog put");
    }

    fn get(&self, _id: u64, key: &[u8], out: &mut Vec<u8>) -> bool {
        self.log
            .get_with(key, |value| copy_out(value, out))
            .is_some()
    }
}
