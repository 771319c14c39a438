//! Loom models of seglog's own code. They compile to nothing unless `--cfg seglog_loom` (with
//! `--cfg crossbeam_loom`) is set; `scripts/loom.sh` runs them. See `docs/loom.md`.
//!
//! # Why the models run their threads through [`Team`]
//!
//! Every `append`, `read` and `scan` pins a crossbeam-epoch guard, and under loom the epoch
//! collector is modelled too. A thread's first pin registers it with the collector (a CAS on the
//! collector's list of participants, then a collection that walks that list), and a thread's exit
//! unregisters it (a push onto the collector's garbage queue). Those steps conflict with each other
//! across threads, so loom explores their interleavings: two spawned threads that do nothing but
//! pin once take ~180,000 executions at preemption bound 2; three never finish.
//!
//! None of that is seglog's protocol, so a [`Team`] keeps it out of the explored window:
//! - members are spawned one at a time, and each registers with the collector (pins once) while
//!   every other thread is blocked, so registration has exactly one interleaving;
//! - then all members start together with the model thread, which takes part as one more thread:
//!   only this window, where the scenario's own atomics race, is explored;
//! - members park when done, the model checks the outcome, and [`Team::dismiss`] switches loom's
//!   exploration off before the members exit, so the collector's unregistration runs in one
//!   order. Nothing the models check happens after that point.
//!
//! A model that fails inside an execution aborts its test process (see [`twin`]) once the failure
//! is printed, so twins run in a child process.
//!
//! In the window, a thread's pins are cheap for loom: after its first pin, pinning touches only
//! the thread's own epoch word and reads the global epoch, which nobody advances there (a
//! collection runs on every 128th pin, or on an explicit flush).
#![cfg(seglog_loom)]

use loom::sync::mpsc::{Receiver, Sender, channel};
use loom::thread::JoinHandle;

/// Runs `f` under loom with this project's bounds: the preemption bound from
/// `LOOM_MAX_PREEMPTIONS` (CI sets 2), and room for the bounded waits of a roll-over.
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    model_capped(usize::MAX, f);
}

/// [`model`] with the preemption bound capped at `cap`, for a model whose window is long enough
/// that bound 2 takes minutes (the cap is named, and the uncapped figures given, in
/// `docs/loom.md`). `SEGLOG_LOOM_UNCAPPED=1` lifts the cap for a deep run by hand.
pub fn model_capped<F>(cap: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    if std::env::var_os("SEGLOG_LOOM_UNCAPPED").is_none() {
        builder.preemption_bound = builder.preemption_bound.map(|bound| bound.min(cap));
    }
    builder.max_branches = builder.max_branches.max(100_000);
    // Counts executions for `docs/loom.md`'s table (printed with `--nocapture`). A std atomic on
    // purpose: it counts across loom's executions, outside the model.
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&executions);
    let started = std::time::Instant::now();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    println!(
        "loom: {} executions in {:.1} s (preemption bound {:?})",
        executions.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        builder.preemption_bound
    );
}

/// The threads of one scenario, started together with the model thread. See the crate docs for
/// why.
///
/// ```ignore
/// let mut team = Team::new();
/// team.spawn(move || log_a.append(b"a", &[1; 8]).unwrap());
/// let (mine, theirs) = team.run(|| log.append(b"m", &[2; 8]).unwrap());
/// // ... check the outcome while the members are parked ...
/// team.dismiss();
/// ```
#[must_use = "a team must be run and then dismissed, or loom reports a deadlock"]
pub struct Team<T: Send + 'static> {
    members: Vec<Member<T>>,
}

struct Member<T> {
    handle: JoinHandle<()>,
    /// Start, then leave.
    to_member: Sender<()>,
    /// `None` once registered with the epoch collector, then the body's result.
    from_member: Receiver<Option<T>>,
}

impl<T: Send + 'static> Default for Team<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + 'static> Team<T> {
    /// A team with no members yet.
    pub fn new() -> Self {
        Self {
            members: Vec::new(),
        }
    }

    /// Spawns a member that runs `body` once the team runs. Returns after the member has
    /// registered with the epoch collector, while it waits for the start.
    pub fn spawn(&mut self, body: impl FnOnce() -> T + Send + 'static) {
        let (to_member, from_model) = channel::<()>();
        let (to_model, from_member) = channel::<Option<T>>();
        let handle = loom::thread::spawn(move || {
            // The first pin registers this thread with the collector; no other thread runs now.
            drop(seglog::pin());
            to_model
                .send(None)
                .expect("the model waits for registration");
            from_model.recv().expect("the model starts every member");
            let result = body();
            to_model
                .send(Some(result))
                .expect("the model waits for results");
            from_model.recv().expect("the model dismisses every member");
        });
        let registered = from_member
            .recv()
            .expect("a member registers before it starts");
        assert!(
            registered.is_none(),
            "a member sent a result before it was started"
        );
        self.members.push(Member {
            handle,
            to_member,
            from_member,
        });
    }

    /// Starts every member, runs `on_model` on the model thread meanwhile, and returns its result
    /// with the members' results (in spawn order) once all are done. The members then stay
    /// parked, so the caller can check the final state before [`Team::dismiss`].
    pub fn run<M>(&mut self, on_model: impl FnOnce() -> M) -> (M, Vec<T>) {
        for member in &self.members {
            member
                .to_member
                .send(())
                .expect("a parked member is listening");
        }
        let mine = on_model();
        let theirs = self
            .members
            .iter()
            .map(|member| {
                member
                    .from_member
                    .recv()
                    .expect("a started member reports back")
                    .expect("a started member sends its result")
            })
            .collect();
        (mine, theirs)
    }

    /// Lets the members exit and joins them, with loom's exploration switched off: from here on
    /// only the epoch collector's unregistration runs, in one order.
    pub fn dismiss(self) {
        loom::stop_exploring();
        for member in self.members {
            member
                .to_member
                .send(())
                .expect("a parked member is listening");
            member.handle.join().expect("a member's body returned");
        }
    }
}

/// Segment size of every model: the smallest the log accepts, so a few records fill it.
pub const SEGMENT_BYTES: u64 = 256;
/// Where the first record of a segment starts (after the 64-byte segment header).
pub const FIRST_RECORD: u64 = 64;
/// Record header bytes; a record is the header, the key and the value, each 8-aligned.
pub const RECORD_HEADER_BYTES: u64 = 40;

/// Bytes in the log of a record with a `key_len`-byte key and a `value_len`-byte value.
pub const fn record_bytes(key_len: u64, value_len: u64) -> u64 {
    RECORD_HEADER_BYTES + key_len.div_ceil(8) * 8 + value_len.div_ceil(8) * 8
}

/// A record as a user compares it: position, key, value.
pub type Record = (u64, Vec<u8>, Vec<u8>);

/// The key of the record [`prefill`] writes.
pub const PREFILL_KEY: &[u8] = b"p";
/// The byte [`prefill`]'s value is made of.
pub const PREFILL_BYTE: u8 = 0xAB;

/// Fills the first segment of a fresh log so that exactly `room` bytes remain: with nothing if
/// `room` is the whole segment, else with one record of key [`PREFILL_KEY`] (`room` a multiple of
/// 8, at most 144). Returns the records written.
pub fn prefill(log: &seglog::AppendLog, room: u64) -> Vec<Record> {
    if room == SEGMENT_BYTES - FIRST_RECORD {
        return Vec::new();
    }
    let record = SEGMENT_BYTES - FIRST_RECORD - room;
    let value_len = record - record_bytes(PREFILL_KEY.len() as u64, 0);
    let value = vec![PREFILL_BYTE; value_len as usize];
    let appended = log
        .append(PREFILL_KEY, &value)
        .expect("the prefill record fits a fresh segment");
    assert_eq!(
        (appended.position, u64::from(appended.record_bytes)),
        (FIRST_RECORD, record),
        "the prefill record opens the log"
    );
    vec![(FIRST_RECORD, PREFILL_KEY.to_vec(), value)]
}

/// Bytes in the log of a key-value model's record: a 1-byte key and an 8-byte value (56).
pub const KV_RECORD: u64 = record_bytes(1, 8);

/// A key-value [`seglog::Log`] in heap memory, shaped for the index and relocation models:
/// - a 4-slot index at the default load factor 0.75, so the fourth key claimed starts a resize
///   into 8 slots (migrated in chunks of 2 slots under loom);
/// - `index_seed` fixes which slot each key hashes to (the models name the layout they chose);
/// - one segment of `segment_bytes`: a model sizes it so its records fit, and a record that
///   does not fails with `LogFull` instead of rolling over unnoticed;
/// - no automatic compaction: every write would otherwise read the log's counters to decide,
///   loads that add interleavings and check nothing. Relocation runs through `Log::__relocate`.
pub fn small_log(segment_bytes: u64, index_seed: u64) -> seglog::Log {
    seglog::Log::in_memory(
        seglog::Options::default()
            .segment_bytes(segment_bytes)
            .index_capacity(4)
            .index_seed(index_seed)
            .max_segments(1)
            .auto_compact(false),
    )
    .expect("the model's options are valid")
}

/// The environment variable that tells a child test process which twin to run.
const TWIN_ENV: &str = "SEGLOG_LOOM_TWIN";

/// Runs a twin: `model` with seglog's broken variant `mode` switched on, which must fail with a
/// message containing `expected`. `test_name` is the calling test's full name as libtest knows
/// it (for a test at the top of its file, the function's name).
///
/// The twin runs in a child process (this test binary, running only `test_name`). A failing
/// model cannot be caught with `#[should_panic]` here: when a loom execution panics, loom drops
/// its modelled threads outside the execution, and crossbeam-epoch's per-thread handle then
/// touches loom state from its destructor, a panic during unwinding that aborts the process.
/// The child's `--nocapture` output keeps the panic message, which is checked against `expected`
/// so that the twin fails for the intended reason and not some other panic.
pub fn twin(test_name: &str, mode: seglog::__broken::Broken, expected: &str, model: impl FnOnce()) {
    if std::env::var(TWIN_ENV).as_deref() == Ok(test_name) {
        // The child: loom runs every modelled thread on this OS thread, where the switch lives.
        seglog::__broken::set(Some(mode));
        model();
        // Reaching this means the model passed with the bug in: the parent reports it.
        return;
    }
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let output = std::process::Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(TWIN_ENV, test_name)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the test binary runs again as a child");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("running 1 test"),
        "the child did not run `{test_name}`:\n{stdout}"
    );
    assert!(
        !output.status.success(),
        "the model passed with {mode:?} switched on: it cannot catch that bug"
    );
    assert!(
        stderr.contains(expected),
        "the model failed with {mode:?}, but not with `{expected}`:\n{}",
        tail(&stderr, 4000)
    );
}

/// The last `max` bytes of `text`, on a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// An 8-byte value naming its key and generation: `key:g` then filler, so every record of a
/// 1-byte key is 56 bytes and eight fill a 512-byte segment.
pub fn kv_value(key: u8, generation: u8) -> Vec<u8> {
    vec![key, b':', generation, 0, 1, 2, 3, 4]
}

/// The layout the tombstone models (`tombstone_order.rs`, `forget_tombstone.rs`) start from:
/// an in-memory log of 512-byte segments and a 16-slot index (seed 12), compaction only when
/// the model says; segment 0 holds `k` and seven dead versions of `a` (exactly full), segment 1
/// `a`'s latest version and then one record for each key of `others`.
pub fn tombstone_model_log(others: &[u8]) -> seglog::Log {
    let log = seglog::Log::in_memory(
        seglog::Options::default()
            .segment_bytes(512)
            .index_capacity(16)
            .index_seed(12)
            .max_segments(8)
            .auto_compact(false),
    )
    .expect("the model's options are valid");
    log.put(b"k", &kv_value(b'k', 0)).unwrap();
    for generation in 0..8 {
        log.put(b"a", &kv_value(b'a', generation)).unwrap();
    }
    for &key in others {
        log.put(&[key], &kv_value(key, 0)).unwrap();
    }
    log
}
