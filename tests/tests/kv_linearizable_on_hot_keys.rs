//! Put, get and remove are linearizable on hot keys: in each of at least 200 rounds, four threads
//! run 80 random operations each on three hot keys of a fresh log, recording every call's
//! invocation and response on a shared logical clock, while a fifth thread adds cold keys so the
//! index resizes and segments roll over under them. Each round's history must be linearizable,
//! key by key, against a register with delete that also keeps seglog's highest-version rule
//! (`seglog_tests::linearizability`, a Wing–Gong checker with Lowe's memoization).
//!
//! Warm-tier suite: the linearizability check added to the warm-tier task (task 017); this
//! file was `warm_tier_linearizability.rs`.
//!
//! A history whose calls never overlap is checked trivially, and on a loaded 2-core machine
//! few calls overlap (threads run in bursts shorter than a time slice). So the workers start
//! together from a spinning barrier, and the test runs rounds until at least
//! `MIN_OVERLAPPING` calls have overlapped another call on their key (at most `MAX_ROUNDS`).
//!
//! Values name the put that wrote them and carry bytes derived from that name, so a read also
//! proves it was not torn. Gets go through all three read paths: `get`, `get_with` and
//! `Pinned::get`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use seglog::{Log, Options};
use seglog_tests::linearizability::{Call, Clock, KvCall, KvOp, KvRet, check_kv};
use seglog_tests::{SplitMix64, pattern};

const MIN_ROUNDS: u64 = 200;
const MAX_ROUNDS: u64 = 1_000;
/// Calls that must have overlapped another call on their key before the test may stop: about
/// half of the fewest that 200 rounds gave on this machine under load (3,900 to 17,000 seen).
const MIN_OVERLAPPING: usize = 2_000;
const THREADS: u64 = 4;
const OPS_PER_THREAD: u64 = 80;
const HOT_KEYS: u64 = 3;
const COLD_KEYS_PER_ROUND: u64 = 150;

fn hot_key(k: u64) -> Vec<u8> {
    format!("hot-{k}").into_bytes()
}

/// The value of put number `id` (nonzero): its id, then bytes derived from it.
fn value(id: u64) -> Vec<u8> {
    let len = (id.wrapping_mul(0x9E37_79B9) % 97) as usize;
    let mut v = id.to_le_bytes().to_vec();
    v.extend(pattern(id, 0, len));
    v
}

/// The put a value came from, checking that every byte is that put's.
fn decode(bytes: &[u8]) -> u64 {
    let id = u64::from_le_bytes(bytes[..8].try_into().expect("value shorter than 8 bytes"));
    assert_eq!(
        bytes,
        value(id).as_slice(),
        "torn value: bytes differ from put {id}'s"
    );
    id
}

fn options(round: u64) -> Options {
    // Small segments roll over inside a history; a 4-slot index grows under it.
    Options::default()
        .segment_bytes(if round.is_multiple_of(2) { 1024 } else { 4096 })
        .index_capacity(4)
}

/// Runs one round and returns its history and how many calls overlapped another call on the
/// same key.
fn run_round(round: u64, log: Arc<Log>) -> (Vec<KvCall<u64>>, usize) {
    let clock = Arc::new(Clock::new());
    let barrier = Arc::new(Barrier::new(THREADS as usize + 1));
    // Workers leave the barrier one wake-up at a time; spinning until all have arrived lets
    // those on a core start their calls together.
    let arrived = Arc::new(AtomicUsize::new(0));
    let churn = {
        let (log, barrier) = (Arc::clone(&log), Arc::clone(&barrier));
        std::thread::spawn(move || {
            barrier.wait();
            for c in 0..COLD_KEYS_PER_ROUND {
                log.put(format!("cold-{c}").as_bytes(), &pattern(round, c, 40))
                    .unwrap();
            }
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (log, clock, barrier, arrived) = (
                Arc::clone(&log),
                Arc::clone(&clock),
                Arc::clone(&barrier),
                Arc::clone(&arrived),
            );
            std::thread::spawn(move || {
                let mut rng = SplitMix64::new(round * 1_000 + thread);
                let mut calls = Vec::with_capacity(OPS_PER_THREAD as usize);
                barrier.wait();
                // Relaxed: only a start signal; the clock orders the calls.
                arrived.fetch_add(1, Ordering::Relaxed);
                while arrived.load(Ordering::Relaxed) < THREADS as usize {
                    std::thread::yield_now();
                }
                for seq in 0..OPS_PER_THREAD {
                    let key = rng.range(0, HOT_KEYS - 1);
                    let k = hot_key(key);
                    let choice = rng.range(0, 9);
                    // Readable in a failure report: round 5, thread 3, call 32 -> 5_003_033.
                    let id = round * 1_000_000 + thread * 1_000 + seq + 1;
                    let invoked = clock.tick();
                    let (op, ret) = match choice {
                        0..=3 => {
                            let version = log.put(&k, &value(id)).unwrap();
                            (KvOp::Put { value: id, version }, KvRet::Put)
                        }
                        4 | 5 => (KvOp::Get, KvRet::Get(log.get(&k).map(|v| decode(&v)))),
                        6 => (KvOp::Get, KvRet::Get(log.get_with(&k, decode))),
                        7 => {
                            let pinned = log.pin();
                            (KvOp::Get, KvRet::Get(pinned.get(&k).map(decode)))
                        }
                        _ => (KvOp::Remove, KvRet::Remove(log.remove(&k).unwrap())),
                    };
                    let returned = clock.tick();
                    calls.push(KvCall {
                        key,
                        call: Call {
                            thread: thread as usize,
                            op,
                            ret,
                            invoked,
                            returned,
                        },
                    });
                }
                calls
            })
        })
        .collect();
    let history: Vec<KvCall<u64>> = workers
        .into_iter()
        .flat_map(|h| h.join().expect("worker panicked"))
        .collect();
    churn.join().expect("churn thread panicked");
    let overlapping = history
        .iter()
        .filter(|a| {
            history.iter().any(|b| {
                a.key == b.key
                    && a.call.thread != b.call.thread
                    && a.call.invoked < b.call.returned
                    && b.call.invoked < a.call.returned
            })
        })
        .count();
    (history, overlapping)
}

#[test]
fn put_get_remove_histories_on_hot_keys_are_linearizable() {
    let mut total_calls = 0;
    let mut total_overlapping = 0;
    let mut rounds = 0;
    while rounds < MIN_ROUNDS || (total_overlapping < MIN_OVERLAPPING && rounds < MAX_ROUNDS) {
        let round = rounds;
        rounds += 1;
        // Every fourth round on disk, the rest in memory.
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(if round.is_multiple_of(4) {
            Log::open_with(dir.path(), options(round)).unwrap()
        } else {
            Log::in_memory(options(round)).unwrap()
        });
        let (history, overlapping) = run_round(round, Arc::clone(&log));
        total_calls += history.len();
        total_overlapping += overlapping;
        if let Err((key, violation)) = check_kv(&history) {
            let mut calls: Vec<_> = history
                .iter()
                .filter(|c| c.key == key)
                .map(|c| &c.call)
                .collect();
            calls.sort_by_key(|c| c.invoked);
            let listing: Vec<String> = calls.iter().map(|c| format!("{c:?}")).collect();
            panic!(
                "round {round}, key hot-{key}: {violation}\nits history by invocation:\n{}",
                listing.join("\n")
            );
        }
        let stats = log.stats();
        assert!(stats.segments > 1, "round {round}: no roll-over happened");
    }
    assert_eq!(total_calls as u64, rounds * THREADS * OPS_PER_THREAD);
    println!(
        "{rounds} rounds: {total_overlapping} of {total_calls} calls overlapped another call on \
         their key"
    );
    assert!(
        total_overlapping >= MIN_OVERLAPPING,
        "only {total_overlapping} of {total_calls} calls overlapped another on their key in \
         {rounds} rounds: the machine gave the threads too little parallel time for the check \
         to mean much"
    );
}
