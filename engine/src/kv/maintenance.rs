//! The background thread of a file-backed log: interval syncs, compaction, hint files.

use std::time::Duration;

use crate::error::Result;
use crate::hints::{HintOutcome, write_hint};
use crate::options::SyncPolicy;
use crate::sync::{Arc, AtomicBool, Ordering};

use super::Inner;

/// How far behind the tail a sealed segment must be before the background thread writes its
/// hint file.
const HINT_LAG_BYTES: u64 = 8 << 20;

/// The background thread of a file-backed log: writes hint files for sealed segments and, with
/// [`SyncPolicy::IntervalMs`], syncs on that interval. It never touches the write path.
pub(super) struct Maintenance {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Maintenance {
    pub(super) fn start(
        inner: &Arc<Inner>,
        first_segment: u64,
        policy: SyncPolicy,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (inner, thread_stop) = (Arc::clone(inner), Arc::clone(&stop));
        let period = match policy {
            SyncPolicy::IntervalMs(ms) => Duration::from_millis(ms),
            _ => Duration::from_millis(100),
        };
        let thread = std::thread::Builder::new()
            .name("seglog-maintenance".into())
            .spawn(move || {
                let mut next_hint = first_segment;
                let body = std::panic::AssertUnwindSafe(|| {
                    // Acquire: pairs with the Release store in `stop`.
                    while !thread_stop.load(Ordering::Acquire) {
                        std::thread::park_timeout(period);
                        if let SyncPolicy::IntervalMs(_) = policy
                            && let Err(e) = inner.log.sync()
                        {
                            inner.note_background_error(&e);
                        }
                        inner.maybe_compact();
                        let (tail_segment, _) = inner.log.split(inner.log.tail_position());
                        next_hint = next_hint.max(inner.log.first_segment());
                        // Hints only for segments at least HINT_LAG_BYTES behind the tail: younger
                        // ones are often still being emptied by overwrites and compacted soon.
                        let lag = (HINT_LAG_BYTES / inner.log.segment_bytes()).max(1);
                        while next_hint + lag <= tail_segment {
                            match write_hint(&inner.log, next_hint, true) {
                                Ok(HintOutcome::NotReady) => break,
                                Ok(_) => next_hint += 1,
                                Err(e) => {
                                    inner.note_background_error(&e);
                                    break;
                                }
                            }
                        }
                    }
                });
                // A panic here is a bug; say so in `stats().background_error` rather than let
                // syncs and hints stop without a word.
                if let Err(panic) = std::panic::catch_unwind(body) {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    inner.note_background_panic(&what);
                }
            })
            .map_err(|e| crate::Error::io("seglog-maintenance thread", e))?;
        Ok(Self { stop, thread })
    }

    pub(super) fn stop(self) {
        // Release: pairs with the Acquire load in the thread's loop.
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}
