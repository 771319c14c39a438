//! Compaction never retires the segment the tail word names, even when that segment is full.
//!
//! When a record ends exactly at the end of a segment, the tail word stays in that segment (at
//! its end) until the next reservation rolls it over, while `tail_position` already names the
//! start of the next segment. Compaction used to take its victims below `tail_position`'s
//! segment, so a full tail segment with nothing live in it (here: one aborted record filling it)
//! was retired while the tail still named it, and every later write, sync and compaction pass
//! spun forever looking for it (found by the power-loss suite, on a recovered log whose last
//! record filled its segment).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use seglog::{Log, Options};
use seglog_format::{SEGMENT_HEADER_BYTES, record_layout};

const SEGMENT_BYTES: u64 = 4096;

/// Runs `f` on another thread; a call that does not return within ten seconds fails the test.
fn within_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(f());
    });
    receive
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} did not return within 10 s"))
}

#[test]
fn a_full_tail_segment_with_nothing_live_is_not_retired() {
    seglog_tests::quiet_panics_starting_with("abort the fill");
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .segment_bytes(SEGMENT_BYTES)
        // Every sealed segment is a victim, whatever is live in it.
        .compact_live_ratio(1.0)
        .auto_compact(false);
    let log = Arc::new(Log::open_with(dir.path(), options).unwrap());

    // One aborted record that fills segment 0 exactly: nothing live in it, and the tail word
    // at its very end.
    let room = SEGMENT_BYTES as usize - SEGMENT_HEADER_BYTES;
    let value_len = (0..room)
        .find(|&v| record_layout(1, v).is_some_and(|l| l.record_bytes as usize == room))
        .expect("some value length fills the segment exactly");
    let aborted = catch_unwind(AssertUnwindSafe(|| {
        log.put_with(b"k", value_len, |_| panic!("abort the fill"))
            .unwrap();
    }));
    assert!(aborted.is_err());
    assert_eq!(
        log.append_log().tail_position(),
        SEGMENT_BYTES,
        "the tail position names the start of segment 1"
    );

    let compacting = Arc::clone(&log);
    let retired = within_deadline("compact", move || compacting.compact().unwrap());
    assert_eq!(retired, 0, "the segment the tail names is not retired");

    let writing = Arc::clone(&log);
    within_deadline("a put after the compaction", move || {
        writing.put(b"a", b"after").unwrap();
        writing.sync().unwrap();
    });
    assert_eq!(log.get(b"a").as_deref(), Some(&b"after"[..]));

    // Now segment 0 is sealed (the tail rolled over to 1), and compaction may take it.
    let compacting = Arc::clone(&log);
    let retired = within_deadline("compact", move || compacting.compact().unwrap());
    assert_eq!(retired, 1, "the sealed, empty segment 0 is retired");
    assert_eq!(log.get(b"a").as_deref(), Some(&b"after"[..]));
    drop(log);
    let log = Log::open_with(dir.path(), Options::default().segment_bytes(SEGMENT_BYTES)).unwrap();
    assert_eq!(log.get(b"a").as_deref(), Some(&b"after"[..]));
    assert_eq!(log.len(), 1);
}
