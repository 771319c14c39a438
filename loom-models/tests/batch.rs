//! Write batches (issue 16): a batch of two keys racing a reader and a single put on one of
//! them. The log is `small_log(512, ..)` (one 512-byte segment, a 4-slot index); `x` and `y`
//! hold generation 0 before the window. A member writes the batch `{x: 1, y: 1}`, another puts
//! `x` generation 2, and the model thread reads `x` and takes a crash image (what recovery would
//! find, `Log::__recovered_state`) meanwhile. Proves, in every interleaving:
//! - the reader sees a value of `x` that was written (0, 1 or 2);
//! - every crash image holds the batch whole or not at all: `y` at 1 exactly when `x` is at 1
//!   or at the put's 2, and `y` at 0 exactly when `x` is at 0 or 2;
//! - afterwards `x` holds the value of the write installed last (the other, having lost its
//!   race, was written again after it with a newer version), `y` the batch's, in memory and at
//!   recovery, and `Log::version` names them.
//!
//! The twin `Broken::BatchMembersAlone` writes the batch's members as records of their own, one
//! after the other: a crash image between them holds `x` from the batch and `y` from before it.
#![cfg(seglog_loom)]

use loom::sync::Arc;
use seglog::__broken::Broken;
use seglog::{Batch, Log};
use seglog_loom_models::{Team, kv_value, small_log, twin};

const SEED: u64 = 3;

fn batch_racing_a_reader_and_a_put() {
    seglog_loom_models::model(|| {
        let log: Arc<Log> = Arc::new(small_log(512, SEED));
        log.put(b"x", &kv_value(b'x', 0)).unwrap();
        log.put(b"y", &kv_value(b'y', 0)).unwrap();
        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || {
                let mut batch = Batch::new();
                batch
                    .put(b"x", &kv_value(b'x', 1))
                    .put(b"y", &kv_value(b'y', 1));
                log.write_batch(&batch).unwrap()
            });
        }
        {
            let log = Arc::clone(&log);
            team.spawn(move || log.put(b"x", &kv_value(b'x', 2)).unwrap());
        }
        let ((seen, image), versions) = team.run(|| (log.get(b"x"), log.__recovered_state()));
        let (batch, put) = (versions[0], versions[1]);
        let seen = seen.expect("x always has a value");
        assert!(
            (0..3).any(|generation| seen == kv_value(b'x', generation)),
            "the reader saw {seen:?}"
        );
        let x = image.get(b"x".as_slice()).expect("x is in every image");
        let y = image.get(b"y".as_slice()).expect("y is in every image");
        if *y == kv_value(b'y', 1) {
            assert!(
                *x == kv_value(b'x', 1) || *x == kv_value(b'x', 2),
                "a crash image holds part of a batch: x {x:?}, y {y:?}"
            );
        } else {
            assert_eq!(*y, kv_value(b'y', 0));
            assert!(
                *x == kv_value(b'x', 0) || *x == kv_value(b'x', 2),
                "a crash image holds part of a batch: x {x:?}, y {y:?}"
            );
        }
        // The higher version wins (no conditional write runs here, so neither is written again
        // after losing its race: `kv/conditional_race.rs`).
        let x_final = log.get(b"x").expect("x has a value");
        let x_version = log.version(b"x").expect("x has a version");
        if x_version == put {
            assert_eq!(x_final, kv_value(b'x', 2), "x is the newer write's");
        } else {
            assert_eq!(x_final, kv_value(b'x', 1), "x is the newer write's");
            assert!(
                x_version >= batch && x_version > put,
                "x is the newer write's"
            );
        }
        assert_eq!(log.get(b"y"), Some(kv_value(b'y', 1)));
        let recovered = log.__recovered_state();
        assert_eq!(recovered.get(b"x".as_slice()), Some(&x_final));
        assert_eq!(recovered.get(b"y".as_slice()), Some(&kv_value(b'y', 1)));
        team.dismiss();
    });
}

#[test]
fn a_batch_racing_a_reader_and_a_put_is_whole_in_every_crash_image() {
    batch_racing_a_reader_and_a_put();
}

#[test]
fn twin_batch_members_alone_leave_part_of_a_batch_in_a_crash_image() {
    twin(
        "twin_batch_members_alone_leave_part_of_a_batch_in_a_crash_image",
        Broken::BatchMembersAlone,
        "a crash image holds part of a batch",
        batch_racing_a_reader_and_a_put,
    );
}
