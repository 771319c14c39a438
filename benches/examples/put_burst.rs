//! A whole-process put burst, for profiling and for timing one build against another with
//! `perf stat` or `/usr/bin/time`: opens a fresh log, puts fresh 16-byte keys from `threads`
//! threads, drops the log, and prints the put rate.
//!
//! ```text
//! cargo run --release -p seglog-benches --example put_burst -- [puts] [threads] [value bytes] [mem]
//! ```
//! Defaults: 2,000,000 puts, 2 threads, 128-byte values, a file-backed log in the system temp
//! dir (`SEGLOG_BENCH_DIR` moves it); `mem` uses `Log::in_memory`.

use std::sync::Barrier;
use std::time::Instant;

use seglog_benches::store::{KvStore, SeglogStore};
use seglog_benches::workload::key;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| {
        args.get(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (puts, threads, value_bytes) = (arg(0, 2_000_000), arg(1, 2), arg(2, 128));
    let store = if args.get(3).is_some_and(|a| a == "mem") {
        SeglogStore::in_memory()
    } else {
        SeglogStore::file_backed()
    };
    let value = vec![7u8; value_bytes as usize];
    let barrier = Barrier::new(threads as usize);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (store, value, barrier) = (&store, &value, &barrier);
            s.spawn(move || {
                barrier.wait();
                for id in (t..puts).step_by(threads as usize) {
                    store.put(id, &key(id), value);
                }
            });
        }
    });
    let elapsed = started.elapsed();
    assert_eq!(store.log().len() as u64, puts, "every put is there");
    println!(
        "{puts} puts of {value_bytes} B on {threads} threads: {:.2} M puts/s",
        puts as f64 / elapsed.as_secs_f64() / 1e6
    );
}
