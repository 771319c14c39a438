//! A whole-process get burst, for profiling and for timing one build against another: loads
//! `keys` keys into a fresh log, then runs `gets` gets from `threads` threads over the hottest
//! `span` keys (`span = keys` for uniform gets), and prints the get rate.
//!
//! ```text
//! cargo run --release -p seglog-benches --example get_burst -- [keys] [gets] [threads] [span] [value bytes]
//! ```
//! Defaults: 1,000,000 keys, 10,000,000 gets, 2 threads, span 10 (a hot spot), 128-byte values,
//! a file-backed log in the system temp dir (`SEGLOG_BENCH_DIR` moves it).

use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

use seglog_benches::store::{KvStore, SeglogStore};
use seglog_benches::workload::{Rng, key, stamp, stamped_id};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| {
        args.get(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (keys, gets, threads, span, value_bytes) = (
        arg(0, 1_000_000),
        arg(1, 10_000_000),
        arg(2, 2),
        arg(3, 10),
        arg(4, 128),
    );
    let store = SeglogStore::file_backed();
    let mut value = vec![7u8; value_bytes.max(16) as usize];
    for id in 0..keys {
        stamp(&mut value, id, 0);
        store.put(id, &key(id), &value);
    }
    let barrier = Barrier::new(threads as usize);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (store, barrier) = (&store, &barrier);
            s.spawn(move || {
                let mut rng = Rng::new(t);
                let mut out = Vec::new();
                barrier.wait();
                for _ in 0..gets / threads {
                    let id = rng.below(span.min(keys));
                    assert!(store.get(id, &key(id), &mut out) && stamped_id(&out) == Some(id));
                    black_box(&out);
                }
            });
        }
    });
    let elapsed = started.elapsed();
    println!(
        "{gets} gets over {span} of {keys} keys on {threads} threads: {:.2} M gets/s",
        gets as f64 / elapsed.as_secs_f64() / 1e6
    );
}
