//! The packed tail word: where the next reservation starts.
//!
//! ```text
//! bit 63            40 39                                     0
//!     +---------------+----------------------------------------+
//!     | segment id    | offset within the segment              |
//!     | (low 24 bits) | (40 bits: headroom above segment_bytes)|
//!     +---------------+----------------------------------------+
//! ```
//!
//! Segment ids are unbounded (a u64 that grows by one per segment); the tail keeps their low 24
//! bits, which name the segment's slot in the directory's ring (at most 2^24 slots, see
//! `crate::directory`), so the writer finds its segment, and the segment knows its full id.
//!
//! Writers reserve with one `fetch_add` of the record length on the whole word. A reservation
//! that runs past the end of the segment is harmless: the offset field has 40 bits while a
//! segment has at most 2^30 bytes, and each thread adds at most one record length (< 2^30) to a
//! full segment before it waits for the roll-over, so the offset cannot carry into the segment
//! id unless about a thousand threads overshoot one segment at once.

/// Bits of the offset field.
pub(crate) const OFFSET_BITS: u32 = 40;
/// Mask of the offset field.
pub(crate) const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
/// Bits of the segment id field.
pub(crate) const SEGMENT_ID_BITS: u32 = 64 - OFFSET_BITS;
/// Mask of the segment id bits the tail keeps.
pub(crate) const SEGMENT_ID_MASK: u64 = (1 << SEGMENT_ID_BITS) - 1;

/// A snapshot of the tail word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail(u64);

impl Tail {
    /// The tail at `offset` of segment `segment` (its low [`SEGMENT_ID_BITS`] bits are kept).
    pub(crate) const fn new(segment: u64, offset: u64) -> Self {
        debug_assert!(offset <= OFFSET_MASK);
        Self(((segment & SEGMENT_ID_MASK) << OFFSET_BITS) | offset)
    }

    pub(crate) const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    pub(crate) const fn raw(self) -> u64 {
        self.0
    }

    /// The low [`SEGMENT_ID_BITS`] bits of the tail segment's id.
    pub(crate) const fn segment(self) -> u64 {
        self.0 >> OFFSET_BITS
    }

    pub(crate) const fn offset(self) -> u64 {
        self.0 & OFFSET_MASK
    }
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tail(segment {} mod 2^24, offset {})",
            self.segment(),
            self.offset()
        )
    }
}

/// The tail word itself: the one atomic every writer bumps. It owns its orderings, so each use
/// states what it pairs with once, here (the model of tokio's task `State`).
pub(crate) struct TailWord(AtomicU64);

impl TailWord {
    pub(crate) fn new(tail: Tail) -> Self {
        Self(AtomicU64::new(tail.raw()))
    }

    /// One atomic bump by `len`; returns the value before the bump. Atomicity alone makes the
    /// regions disjoint; Acquire pairs with the Release of [`TailWord::move_to`] that moved
    /// the tail to this segment, so the directory entry installed before it is visible.
    pub(crate) fn bump(&self, len: u64) -> Tail {
        #[cfg(seglog_loom)]
        if crate::sync::broken::is(crate::sync::broken::Broken::LoadThenAdd) {
            // The seed design's allocation (read, then add): two writers can read the same
            // tail and get the same region. Only for the loom twin that must catch it.
            let old = self.0.load(Ordering::Acquire);
            self.0.store(old + len, Ordering::Release);
            return Tail::from_raw(old);
        }
        // Acquire: pairs with the Release of `move_to` / `set_recovered` (see above).
        Tail::from_raw(self.0.fetch_add(len, Ordering::Acquire))
    }

    /// The tail now. Acquire: pairs with the Release of [`TailWord::move_to`] (and
    /// [`TailWord::set_recovered`]), so the segment it names is installed.
    pub(crate) fn load(&self) -> Tail {
        Tail::from_raw(self.0.load(Ordering::Acquire))
    }

    /// Moves the tail (the crossing writer only: to the next segment, or back to the end of
    /// its own after a failed roll-over) and returns what it replaced. Release: publishes the
    /// directory entry of the segment it names to the Acquire of [`TailWord::bump`] and
    /// [`TailWord::load`]. A swap rather than a store: equivalent here (every bump since the
    /// crossing one saw an overshot offset and will retry, so overwriting them loses no
    /// reservation), but a read-modify-write keeps loom 0.7 from letting a later `fetch_add`
    /// read a value from before it (tokio-rs/loom#254), and it lets the caller assert what it
    /// replaced.
    pub(crate) fn move_to(&self, tail: Tail) -> Tail {
        Tail::from_raw(self.0.swap(tail.raw(), Ordering::Release))
    }

    /// Sets where writing resumes after recovery. Release: pairs with the Acquire of
    /// [`TailWord::bump`] and [`TailWord::load`], like [`TailWord::move_to`].
    pub(crate) fn set_recovered(&self, tail: Tail) {
        self.0.store(tail.raw(), Ordering::Release);
    }

    /// A snapshot for printing. Relaxed: ordered with nothing.
    pub(crate) fn snapshot(&self) -> Tail {
        Tail::from_raw(self.0.load(Ordering::Relaxed))
    }
}

/// What a `fetch_add` of `len` on the tail means for the thread that did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserved {
    /// `[offset, offset + len)` lies within the segment: the region is this thread's.
    Fits { segment: u64, offset: u64 },
    /// The region contains the segment's end: this thread, and only this one, writes the
    /// padding from `offset` to the end and rolls the log over to the next segment.
    Crosses { segment: u64, offset: u64 },
    /// The region starts past the end: another thread is rolling over; wait and retry.
    Overshot { segment: u64 },
}

impl Tail {
    /// Classifies the reservation `[self.offset(), self.offset() + len)` in a segment of
    /// `segment_bytes`. The regions handed out for one segment tile `[first, ∞)` in order, so
    /// exactly one of them contains the offset `segment_bytes`: exactly one `Crosses`.
    pub(crate) const fn classify(self, len: u64, segment_bytes: u64) -> Reserved {
        let (segment, offset) = (self.segment(), self.offset());
        if offset + len <= segment_bytes {
            Reserved::Fits { segment, offset }
        } else if offset <= segment_bytes {
            Reserved::Crosses { segment, offset }
        } else {
            Reserved::Overshot { segment }
        }
    }
}

use super::AppendLog;
use crate::segment::Segment;
use crate::sync::epoch::Guard;
use crate::sync::{AtomicU64, Backoff, Ordering};

impl AppendLog {
    /// The tail's segment id and offset (the offset may run past the segment end while a
    /// roll-over is due). `guard` must have been pinned before the call, so the segment the
    /// tail names cannot be retired and its slot reused while we look it up.
    pub(super) fn tail(&self, guard: &Guard) -> (u64, u64) {
        let backoff = Backoff::new();
        loop {
            let tail = self.tail.load();
            let slot = self.directory.ring_slot(tail.segment());
            if let Some(segment) = self.directory.in_slot(slot, guard) {
                return (segment.id(), tail.offset());
            }
            // Only `retire_segment` can empty the slot of a segment the tail named: the tail
            // has moved on since our load. Load it again.
            backoff.snooze();
        }
    }

    /// The segment whose id's low bits (as the tail keeps them) are `bits`: the tail's segment,
    /// or one the tail has just left. The roll-over installs a segment before the tail moves to
    /// it, and a segment is retired only when sealed and fully published, after every thread
    /// pinned at the time has unpinned: a thread that read the tail while pinned finds it.
    pub(super) fn tail_segment<'g>(&self, bits: u64, guard: &'g Guard) -> &'g Segment {
        self.directory
            .in_slot(self.directory.ring_slot(bits), guard)
            .expect("the tail's segment is installed before the tail moves to it")
    }

    /// The id of the segment the tail word names: the segment being written, or a full one the
    /// next reservation will roll over from. Everything below it is sealed; it itself is not
    /// (a full one is still the segment the roll-over reads), so it must never be retired.
    ///
    /// Not `split(tail_position())`: at the very end of a full segment that position is the
    /// start of the *next* segment, which would make the full segment look sealed and below the
    /// tail (a compaction that retired it left every later write spinning in [`Self::tail`]).
    pub(crate) fn tail_segment_id(&self) -> u64 {
        let guard = crate::sync::epoch::pin();
        self.tail(&guard).0
    }

    /// The position the next reservation would start at, if it fits in the current segment
    /// (the start of the next segment if the current one is full).
    pub fn tail_position(&self) -> u64 {
        let guard = crate::sync::epoch::pin();
        let (segment, offset) = self.tail(&guard);
        self.position(segment, offset.min(self.segment_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let t = Tail::new(0xAB_CDEF, 0x12_3456_789A);
        assert_eq!(t.segment(), 0xAB_CDEF);
        assert_eq!(t.offset(), 0x12_3456_789A);
        assert_eq!(Tail::from_raw(t.raw()), t);
    }

    #[test]
    fn exactly_one_region_crosses_the_end() {
        let seg = 256;
        let mut offset = 64;
        let mut crossings = 0;
        for len in [40u64, 48, 56, 40, 80, 40, 96] {
            match Tail::new(3, offset).classify(len, seg) {
                Reserved::Crosses { .. } => crossings += 1,
                Reserved::Fits { .. } | Reserved::Overshot { .. } => {}
            }
            offset += len;
        }
        assert_eq!(crossings, 1);
        // A region ending exactly at the end fits; the next one starting there crosses.
        assert!(matches!(
            Tail::new(0, 216).classify(40, 256),
            Reserved::Fits { .. }
        ));
        assert!(matches!(
            Tail::new(0, 256).classify(40, 256),
            Reserved::Crosses { .. }
        ));
        assert!(matches!(
            Tail::new(0, 264).classify(40, 256),
            Reserved::Overshot { .. }
        ));
    }
}
