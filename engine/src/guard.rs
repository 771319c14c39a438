//! The epoch guard seglog hands out, and the only way to make one.
//!
//! Segments and index tables are reclaimed through crossbeam-epoch's default collector, so a
//! guard protects seglog's memory only if it was pinned on that collector. A public API that took
//! `crossbeam_epoch::Guard` would accept a guard of any collector (`Collector::new()`), or an
//! unprotected one, and let safe code read a segment after compaction unmapped it. This newtype
//! can only be made by [`pin`], so the type system refuses a foreign guard:
//!
//! ```compile_fail,E0308
//! let log = seglog::AppendLog::in_memory(4096, 16).unwrap();
//! let collector = crossbeam_epoch::Collector::new();
//! let handle = collector.register();
//! let foreign = handle.pin();
//! let _ = log.read(64, &foreign); // expected `&seglog::Guard`
//! ```
//!
//! ```
//! let log = seglog::AppendLog::in_memory(4096, 16).unwrap();
//! let at = log.append(b"k", b"v").unwrap().position;
//! let guard = seglog::pin();
//! assert_eq!(log.read(at, &guard).unwrap().value, b"v");
//! ```

use crate::sync::epoch;

/// An epoch guard: while it lives, records and segments read under it stay valid (mapped and
/// unchanged), even if compaction retires them meanwhile. Made by [`pin`]; not `Send`.
pub struct Guard {
    inner: epoch::Guard,
}

impl Guard {
    /// The crossbeam-epoch guard inside, pinned on the default collector.
    pub(crate) fn epoch(&self) -> &epoch::Guard {
        &self.inner
    }

    /// Hands this thread's pending reclamations (retired segments, old index tables) to the
    /// collector and lets it free whatever no guard can reach any more. Memory is reclaimed
    /// without it too, only later.
    pub fn flush(&self) {
        self.inner.flush();
    }

    pub(crate) fn new() -> Self {
        Self {
            inner: epoch::pin(),
        }
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").finish_non_exhaustive()
    }
}

/// Pins the current thread and returns a guard for [`crate::AppendLog::read`] and
/// [`crate::AppendLog::scan`].
pub fn pin() -> Guard {
    Guard::new()
}
