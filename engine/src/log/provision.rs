//! Segment provisioning: each segment id is created once, ahead of need, by the thread that
//! claims it (`claimed` moves up one id at a time), and installed in the directory before the
//! tail can move to it.

use super::{AppendLog, Storage, max_segment_id};
use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::sync::epoch::Guard;
use crate::sync::{Backoff, Ordering};

impl AppendLog {
    /// Makes sure segment `id` exists in the directory, creating it if no other thread has
    /// claimed it. If another thread is creating it, waits for that thread.
    pub(crate) fn ensure_segment(&self, id: u64, guard: &Guard) -> Result<()> {
        let backoff = Backoff::new();
        loop {
            if self.directory.get(id, guard).is_some() {
                return Ok(());
            }
            if id > max_segment_id(self.segment_bytes) {
                // 2^63 bytes appended: positions would no longer fit.
                return Err(Error::LogFull {
                    max_segments: self.directory.max_segments(),
                });
            }
            if !self.directory.has_room_for(id, guard) {
                if self.directory.get(id, guard).is_some() {
                    // Installed by its creator since we looked.
                    return Ok(());
                }
                // The ring slot still holds a segment `slots` ids older, or the log holds
                // `max_segments`: compaction must retire old segments first.
                return Err(Error::LogFull {
                    max_segments: self.directory.max_segments(),
                });
            }
            // Claims go up one id at a time: claiming `id` moves the count from `id` to `id + 1`.
            // Acquire on success pairs with the Release in the failure path below (a creator
            // that gave up), Release is not needed: the segment is published by its own CAS in
            // `Directory::install`. Relaxed on failure: we re-check the directory.
            let claimed =
                self.claimed
                    .compare_exchange(id, id + 1, Ordering::AcqRel, Ordering::Relaxed);
            match claimed {
                Ok(_) => {
                    return match self.create_segment(id) {
                        Ok(segment) => match self.directory.install(segment, guard) {
                            Ok(()) => Ok(()),
                            Err(refused) => {
                                // Only a claim can install `id`, so the ring slot or the count
                                // filled up meanwhile (recovery's installs never race this).
                                refused.discard();
                                // Release: pairs with the claim CAS's Acquire, as below.
                                self.claimed.store(id, Ordering::Release);
                                Err(Error::LogFull {
                                    max_segments: self.directory.max_segments(),
                                })
                            }
                        },
                        Err(error) => {
                            // Give the claim back so the next attempt retries the creation.
                            // Release: pairs with the Acquire of the claim CAS that takes it.
                            self.claimed.store(id, Ordering::Release);
                            Err(error)
                        }
                    };
                }
                // The segment before `id` is not claimed yet: create it first (only when
                // preparation fell behind).
                Err(count) if count < id => self.ensure_segment(id - 1, guard)?,
                // Another thread is creating `id`: wait for it.
                Err(_) => backoff.snooze(),
            }
        }
    }

    fn create_segment(&self, id: u64) -> Result<Segment> {
        let (path, prefault) = match &self.storage {
            Storage::Heap => {
                #[allow(unused_mut)]
                let mut segment = Segment::new_heap(id, self.segment_bytes, heap_salt(id));
                #[cfg(seglog_loom)]
                {
                    segment.token = Some(crate::sync::Arc::clone(&self.segment_token));
                }
                return Ok(segment);
            }
            Storage::Dir { path, prefault } => (path, *prefault),
            // Prefaulting populates a mapping's page tables; the simulated disk has none.
            Storage::Sim { path, .. } => (path, false),
        };
        let segment = Segment::create_file(
            &self.fs(),
            path,
            id,
            self.segment_bytes,
            random_salt(),
            prefault,
            &self.recycle,
        )?;
        // A new directory entry, durable at the next sync's directory fsync. Relaxed: read under
        // `sync_lock` by `sync`, which only needs to see it eventually for segments it flushes
        // (those are installed, published through the tail's Release/Acquire).
        self.unsynced_segments.fetch_add(1, Ordering::Relaxed);
        Ok(segment)
    }
}

/// A random salt for a new segment file, from the standard library's per-process random keys.
fn random_salt() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one(nanos) as u32
}

/// A fixed salt for heap segments, so loom runs are deterministic.
fn heap_salt(id: u64) -> u32 {
    (id as u32).wrapping_mul(0x9E37_79B9) ^ 0x5EC1_06AA
}
