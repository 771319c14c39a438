//! The segment directory: segment id → segment, readable without locks, under an epoch guard.
//!
//! Segment ids grow forever (one per segment the log ever creates); the directory is a ring of
//! `slots` entries (a power of two) and segment `id` lives in slot `id % slots`. Two segments
//! whose ids share a slot can never be installed at once: the log refuses to create a segment
//! whose slot still holds an older one (`LogFull`), and compaction retires old segments long
//! before the tail comes round to their slot. So the slot of an index address identifies its
//! segment (see `AppendLog::address_of`), and ids never run out.
//!
//! Two levels, so a log of millions of segments needs no up-front table of that size: a fixed
//! array of chunk pointers, each chunk an array of segment pointers, allocated on first use.
//! Segments are installed with a `Release` CAS and looked up with `Acquire` loads; a segment is
//! removed by swapping its pointer to null and handing it to the epoch collector, which drops
//! (unmaps) it only once no pinned thread can still hold it.

use crate::sync::epoch::{self, Atomic, Guard, Owned, Shared};
use crate::sync::{AtomicU64, Ordering};

use crate::segment::Segment;

#[cfg(not(seglog_loom))]
const CHUNK_SLOTS: usize = 1024;
#[cfg(seglog_loom)]
const CHUNK_SLOTS: usize = 4;

struct Chunk {
    slots: Box<[Atomic<Segment>]>,
}

impl Chunk {
    fn new() -> Self {
        Self {
            slots: (0..CHUNK_SLOTS).map(|_| Atomic::null()).collect(),
        }
    }
}

pub(crate) struct Directory {
    chunks: Box<[Atomic<Chunk>]>,
    /// Ring slots: a power of two, at least `max_segments`.
    slots: u64,
    /// Segments that may be installed at once.
    max_segments: u64,
    /// Segments installed and not removed.
    count: AtomicU64,
}

impl Directory {
    /// A directory of `slots` ring slots (a power of two) holding at most `max_segments`
    /// (`<= slots`) segments at once.
    pub(crate) fn new(max_segments: u64, slots: u64) -> Self {
        assert!(slots.is_power_of_two() && max_segments <= slots);
        let chunks = (slots as usize).div_ceil(CHUNK_SLOTS);
        Self {
            chunks: (0..chunks).map(|_| Atomic::null()).collect(),
            slots,
            max_segments,
            count: AtomicU64::new(0),
        }
    }

    pub(crate) fn max_segments(&self) -> u64 {
        self.max_segments
    }

    /// Ring slots: segment `id` lives in slot `id % slots()`.
    pub(crate) fn slots(&self) -> u64 {
        self.slots
    }

    /// The ring slot of segment `id` (or of a tail's segment bits): `id % slots`, as a mask,
    /// since `slots` is a power of two (a division would cost more than the rest of a lookup).
    pub(crate) fn ring_slot(&self, id: u64) -> u64 {
        id & (self.slots - 1)
    }

    /// Whether segment `id` could be installed now: its ring slot is free and the directory is
    /// below `max_segments`. (A hint: `install` decides.)
    pub(crate) fn has_room_for(&self, id: u64, guard: &Guard) -> bool {
        self.count() < self.max_segments && self.in_slot(self.ring_slot(id), guard).is_none()
    }

    fn slot<'g>(&self, id: u64, guard: &'g Guard, create: bool) -> Option<&'g Atomic<Segment>> {
        let ring = self.ring_slot(id);
        let (chunk_index, slot_index) = (ring as usize / CHUNK_SLOTS, ring as usize % CHUNK_SLOTS);
        let chunk_ptr = &self.chunks[chunk_index];
        // Acquire: pairs with the Release CAS below that installed the chunk, so its slots are
        // initialized.
        let mut chunk = chunk_ptr.load(Ordering::Acquire, guard);
        if chunk.is_null() {
            if !create {
                return None;
            }
            // Release on success: publishes the chunk's initialized slots to the Acquire loads
            // above. Acquire on failure: pairs with the winner's Release for the same reason.
            chunk = match chunk_ptr.compare_exchange(
                Shared::null(),
                Owned::new(Chunk::new()),
                Ordering::AcqRel,
                Ordering::Acquire,
                guard,
            ) {
                Ok(installed) => installed,
                Err(race) => race.current,
            };
        }
        // SAFETY: chunks are never removed while the directory lives (only dropped with it), and
        // `chunk` is non-null here.
        let chunk = unsafe { chunk.deref() };
        Some(&chunk.slots[slot_index])
    }

    /// The segment with `id`, if installed.
    pub(crate) fn get<'g>(&self, id: u64, guard: &'g Guard) -> Option<&'g Segment> {
        self.in_slot(self.ring_slot(id), guard)
            .filter(|segment| segment.id() == id)
    }

    /// The segment in ring slot `ring` (`< slots()`), whatever its id.
    pub(crate) fn in_slot<'g>(&self, ring: u64, guard: &'g Guard) -> Option<&'g Segment> {
        debug_assert!(ring < self.slots);
        let slot = self.slot(ring, guard, false)?;
        // Acquire: pairs with the Release CAS in `install`, so the segment's header and fields
        // written before the install are visible.
        let segment = slot.load(Ordering::Acquire, guard);
        // SAFETY: a non-null segment pointer stays valid while `guard` is pinned: `remove`
        // defers its destruction through the epoch collector.
        unsafe { segment.as_ref() }
    }

    /// Installs `segment` in its ring slot. Returns it back if the slot holds another segment
    /// or the directory already holds `max_segments`.
    pub(crate) fn install(&self, segment: Segment, guard: &Guard) -> Result<(), Box<Segment>> {
        if self.count() >= self.max_segments {
            return Err(Box::new(segment));
        }
        let Some(slot) = self.slot(segment.id(), guard, true) else {
            return Err(Box::new(segment));
        };
        // Release: publishes the segment's header and fields to the Acquire load in `in_slot`.
        // Relaxed on failure: the slot is taken and we hand the segment back, reading nothing.
        slot.compare_exchange(
            Shared::null(),
            Owned::new(segment),
            Ordering::Release,
            Ordering::Relaxed,
            guard,
        )
        .map(|_| {
            // Relaxed: a statistic.
            self.count.fetch_add(1, Ordering::Relaxed);
        })
        .map_err(|race| race.new.into_box())
    }

    /// Segments installed and not removed.
    pub(crate) fn count(&self) -> u64 {
        // Relaxed: a statistic.
        self.count.load(Ordering::Relaxed)
    }

    /// Removes segment `id` from the directory; it is dropped (unmapped) once every guard that
    /// could still hold it is unpinned. `on_drop` runs then (to delete its file).
    pub(crate) fn remove(&self, id: u64, guard: &Guard) -> bool {
        let Some(slot) = self.slot(id, guard, false) else {
            return false;
        };
        // Acquire: pairs with the Release CAS in `install`, to read the segment's id.
        let current = slot.load(Ordering::Acquire, guard);
        // SAFETY: as in `in_slot`: valid while `guard` is pinned.
        if unsafe { current.as_ref() }.is_none_or(|segment| segment.id() != id) {
            return false;
        }
        // AcqRel: Acquire to take ownership of the segment published by `install`; Release so a
        // later `install` of another segment in this slot is ordered after this removal.
        // Relaxed on failure: another remover took it.
        let removed = slot.compare_exchange(
            current,
            Shared::null(),
            Ordering::AcqRel,
            Ordering::Relaxed,
            guard,
        );
        if removed.is_err() {
            return false;
        }
        let old = current;
        // Relaxed: a statistic.
        self.count.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: `old` is no longer reachable from the directory; threads that loaded it did
        // so under a guard, and the collector frees it only after all of those are unpinned.
        unsafe { guard.defer_destroy(old) };
        true
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        // SAFETY: `&mut self` means no other thread can access the directory, so nothing can be
        // pinned on its contents; an unprotected guard is sound for exclusive teardown.
        let guard = unsafe { epoch::unprotected() };
        for chunk_ptr in self.chunks.iter() {
            // Relaxed (here and below): `&mut self` orders every earlier store before this.
            let chunk = chunk_ptr.load(Ordering::Relaxed, guard);
            if chunk.is_null() {
                continue;
            }
            // SAFETY: exclusive access (above); the chunk was allocated by `Owned::new` and is
            // referenced only from here.
            let chunk = unsafe { chunk.into_owned() };
            for slot in chunk.slots.iter() {
                let segment = slot.load(Ordering::Relaxed, guard);
                if !segment.is_null() {
                    // SAFETY: as for the chunk: exclusive, allocated by `Owned::new`, and removed
                    // segments were swapped to null before being deferred, so none is freed twice.
                    drop(unsafe { segment.into_owned() });
                }
            }
        }
    }
}
