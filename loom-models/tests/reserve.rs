//! Reservation: writers bumping the tail in a segment too small for all of them.
//!
//! Proves: regions never overlap, every writer ends up with a region holding its bytes,
//! exactly one writer rolls the log over (one padding record), and a scan sees every record.
#![cfg(seglog_loom)]

use loom::sync::Arc;
use loom::thread;
use seglog::AppendLog;
use seglog::__broken::{self, Broken};

/// 256-byte segments: 192 bytes for records after the 64-byte header.
const SEGMENT_BYTES: u64 = 256;

/// Fills the first segment so that `room` bytes remain, with one record.
fn prefill(log: &AppendLog, room: u64) {
    let len = (SEGMENT_BYTES - 64 - room - 40 - 8) as usize;
    log.append(b"p", &vec![0xAB; len]).unwrap();
}

fn writers_in_a_full_segment(writers: u8) {
    seglog_loom_models::model(move || {
        let log = Arc::new(AppendLog::in_memory(SEGMENT_BYTES, 4).unwrap());
        // 56-byte records (40 header + 8 key + 8 value): room for one more, not two.
        prefill(&log, 96);
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let log = Arc::clone(&log);
                thread::spawn(move || {
                    let appended = log.append(&[w; 1], &[w; 8]).unwrap();
                    (w, appended)
                })
            })
            .collect();
        let mut regions: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        regions.sort_by_key(|(_, a)| a.position);
        for pair in regions.windows(2) {
            let (a, b) = (&pair[0].1, &pair[1].1);
            assert!(
                a.position + u64::from(a.record_bytes) <= b.position,
                "regions overlap: {a:?} {b:?}"
            );
        }
        let guard = seglog::pin();
        for (w, appended) in &regions {
            let record = log.read(appended.position, &guard).unwrap();
            assert_eq!(record.key, &[*w]);
            assert_eq!(record.value, &[*w; 8]);
        }
        let stats = log.stats();
        assert_eq!(stats.rollovers, 1, "exactly one roll-over");
        assert_eq!(log.scan(&guard).count(), 1 + usize::from(writers));
    });
}

#[test]
fn two_writers_in_a_full_segment() {
    writers_in_a_full_segment(2);
}

#[test]
fn three_writers_in_a_full_segment() {
    writers_in_a_full_segment(3);
}

/// The seed's allocation (load the tail, then store tail + len) must be caught.
#[test]
#[should_panic]
fn twin_load_then_add_is_caught() {
    __broken::set(Some(Broken::LoadThenAdd));
    writers_in_a_full_segment(2);
}
