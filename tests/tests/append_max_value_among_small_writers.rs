//! A value of exactly `max_value_len(key.len())` bytes fills a whole segment after its header,
//! so it fits only at the very start of a fresh segment. It must still be stored promptly while
//! other threads keep appending small records: the writer that rolls the log over for it must
//! get the fresh segment's first bytes. It must not lose them to the small writers that enter
//! the fresh segment while it pads the old one and prepares the next file, then cross the fresh
//! segment too, roll over again, and so on, padding away an almost empty segment each time and
//! perhaps running out of segment ids (`LogFull`).
//!
//! The roll-over count is what the test checks: a log needs about as many roll-overs as its
//! bytes fill segments, plus one per maximum-size record (for the partly filled segment before
//! it).
//!
//! How the race shows depends on scheduling, so the test sets it up on purpose. It pins the big
//! writer to CPU 0 and the small writers to CPU 1, so some small writer is always running while
//! the big writer rolls over. (Without pinning, on a 2-core machine the small writers that wait
//! for a roll-over spin on `sched_yield`, and the scheduler then keeps them off the CPU for
//! milliseconds, so the race shows in only a few runs.) The log is on tmpfs (`/dev/shm`) when
//! there is one: where creating a segment file takes longer than filling a segment (ext4 on a
//! VM: ~300 µs for 64 KiB), every roll-over waits for the file and the race rarely shows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::time::Duration;

use seglog::{Log, Options};
use seglog_tests::{key, pattern};

const SEGMENT_BYTES: u64 = 64 * 1024;
/// Usable bytes of a segment: everything after its 64-byte header.
const USABLE: u64 = SEGMENT_BYTES - 64;
const SMALL_WRITERS: u64 = 3;
/// Each small writer stops after this many appends even if the big writer is not done, so the
/// log's size is bounded whatever happens: 3 × 40,000 × 160 B ≈ 19 MB ≈ 294 segments.
const SMALL_APPENDS_CAP: u64 = 40_000;
/// A 13-byte key and a 100-byte value make a 160-byte record.
const SMALL_VALUE: usize = 100;
const SMALL_RECORD: u64 = 160;
const BIG_PUTS: u64 = 40;
const BIG_WRITER: u64 = 999;
/// Rounds per test, each on a fresh log, each checked on its own.
const ROUNDS: u64 = 8;
const TIMEOUT: Duration = Duration::from_secs(30);

fn log_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

/// Pins the calling thread to `cpu`, if the machine has it (best effort: on a single CPU the
/// test still runs, it just hits the race less often).
fn pin_to_cpu(cpu: usize) {
    // SAFETY: `cpu_set_t` is plain data, all zeros is the empty set, and `CPU_SET` and
    // `sched_setaffinity` only touch the set we pass and the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

struct Outcome {
    /// The big writer's results, in order (errors as text).
    big: Vec<Result<u64, String>>,
    small_errors: Vec<String>,
    small_appends: u64,
    rollovers: u64,
    padding_bytes: u64,
    record_bytes: u64,
    log: Log,
    _dir: tempfile::TempDir,
}

impl Outcome {
    /// The most roll-overs the records written can need. Every segment sealed is one of: a
    /// maximum-size record's own segment (exactly full); a segment sealed because a small record
    /// did not fit (padding under 160 bytes, so at least `USABLE - SMALL_RECORD` bytes of
    /// records); or the partly filled segment a maximum-size record crossed, at most one per big
    /// put. So the count is at most about `record_bytes / (USABLE - SMALL_RECORD) + BIG_PUTS`;
    /// the bound adds 12 for rounding and for an occasional second crossing. (The failure this
    /// catches wastes tens to hundreds of segments per round.)
    fn rollover_bound(&self) -> u64 {
        self.record_bytes / (USABLE - SMALL_RECORD) + BIG_PUTS + 12
    }

    fn summary(&self) -> String {
        format!(
            "{} roll-overs (bound {}), {} padding bytes, {} record bytes, {} small appends",
            self.rollovers,
            self.rollover_bound(),
            self.padding_bytes,
            self.record_bytes,
            self.small_appends,
        )
    }
}

/// Runs `SMALL_WRITERS` threads appending small records alongside one thread doing `BIG_PUTS`
/// puts of maximum-size values. The small writers run until the big writer is done, or until
/// each has made `SMALL_APPENDS_CAP` appends.
fn run(options: Options) -> Outcome {
    let dir = log_dir();
    // No compaction: its copies would add roll-overs of their own and blur the count.
    let log = Arc::new(Log::open_with(dir.path(), options.auto_compact(false)).unwrap());
    let barrier = Arc::new(Barrier::new(SMALL_WRITERS as usize + 1));
    let done = Arc::new(AtomicBool::new(false));

    let small: Vec<_> = (0..SMALL_WRITERS)
        .map(|w| {
            let (log, barrier, done) = (Arc::clone(&log), Arc::clone(&barrier), Arc::clone(&done));
            std::thread::spawn(move || {
                pin_to_cpu(1);
                barrier.wait();
                let value = pattern(w, 0, SMALL_VALUE);
                let mut errors = Vec::new();
                let mut appends = 0;
                while appends < SMALL_APPENDS_CAP && !done.load(Ordering::Acquire) {
                    // Straight into the append log: the cheapest write, so these threads spend
                    // their time at the tail, as a busy log's writers do.
                    if let Err(e) = log.append_log().append(&key(w, appends), &value) {
                        errors.push(e.to_string());
                        break;
                    }
                    appends += 1;
                }
                (appends, errors)
            })
        })
        .collect();

    let big = {
        let (log, barrier, done) = (Arc::clone(&log), Arc::clone(&barrier), Arc::clone(&done));
        std::thread::spawn(move || {
            pin_to_cpu(0);
            barrier.wait();
            // Let the small writers get going first, so every big put meets them.
            std::thread::sleep(Duration::from_millis(2));
            let mut results = Vec::new();
            for i in 0..BIG_PUTS {
                let k = key(BIG_WRITER, i);
                let len = log.append_log().max_value_len(k.len());
                let value = pattern(BIG_WRITER, i, len);
                results.push(log.put(&k, &value).map_err(|e| e.to_string()));
            }
            done.store(true, Ordering::Release);
            results
        })
    };

    // Joined with a deadline: a big put that never finds room must fail the test, not hang it.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let big = big.join();
        let small: Vec<_> = small.into_iter().map(|h| h.join()).collect();
        let _ = tx.send((big, small));
    });
    let (big, small) = rx
        .recv_timeout(TIMEOUT)
        .unwrap_or_else(|_| panic!("the writers did not finish within {TIMEOUT:?}"));
    let big = big.expect("the big writer panicked");
    let mut small_errors = Vec::new();
    let mut small_appends = 0;
    for result in small {
        let (appends, errors) = result.expect("a small writer panicked");
        small_appends += appends;
        small_errors.extend(errors);
    }
    let log = Arc::into_inner(log).expect("every thread is done with the log");
    let stats = log.append_log().stats();
    Outcome {
        big,
        small_errors,
        small_appends,
        rollovers: stats.rollovers,
        padding_bytes: stats.padding_bytes,
        record_bytes: stats.record_bytes,
        log,
        _dir: dir,
    }
}

fn check(outcome: &Outcome, round: u64) {
    let summary = format!("round {round}: {}", outcome.summary());
    for (i, result) in outcome.big.iter().enumerate() {
        assert!(
            result.is_ok(),
            "maximum-size put {i} of {BIG_PUTS} failed: {result:?} ({summary})"
        );
    }
    assert!(
        outcome.small_errors.is_empty(),
        "small appends failed: {:?} ({summary})",
        outcome.small_errors
    );
    for i in 0..BIG_PUTS {
        let k = key(BIG_WRITER, i);
        let len = outcome.log.append_log().max_value_len(k.len());
        assert!(
            outcome.log.get(&k) == Some(pattern(BIG_WRITER, i, len)),
            "maximum-size value {i} does not read back byte for byte ({summary})"
        );
    }
    assert!(
        outcome.rollovers <= outcome.rollover_bound(),
        "the log rolled over far more often than its bytes need: {summary}"
    );
}

#[test]
fn max_size_values_fit_promptly_while_small_writers_run() {
    for round in 0..ROUNDS {
        let outcome = run(Options::default().segment_bytes(SEGMENT_BYTES));
        check(&outcome, round);
    }
}

#[test]
fn max_size_values_fit_within_a_tight_segment_limit() {
    // Room for everything a round can write (the small writers' cap, ~294 segments, two per
    // big record, and a margin), but not for a long run of segments wasted by failed attempts.
    let max_segments = SMALL_WRITERS * SMALL_APPENDS_CAP * SMALL_RECORD / (USABLE - SMALL_RECORD)
        + 2 * BIG_PUTS
        + 16;
    for round in 0..ROUNDS {
        let outcome = run(Options::default()
            .segment_bytes(SEGMENT_BYTES)
            .max_segments(max_segments));
        check(&outcome, round);
    }
}
