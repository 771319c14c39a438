//! `seglog bench`: the main job. T threads append N records each to a fresh log and the
//! command prints records/s and MB/s.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Args;
use seglog::{AppendLog, Options};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Writer threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Records appended by each thread.
    #[arg(long, default_value_t = 500_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 128)]
    value_bytes: usize,
    /// A short run for CI: 20,000 records per thread.
    #[arg(long)]
    quick: bool,
}

pub fn run(args: &BenchArgs) -> Result<(), seglog::Error> {
    let records = if args.quick { 20_000 } else { args.records };
    let dir = tempfile::tempdir().map_err(|e| seglog::Error::Io {
        path: std::env::temp_dir(),
        source: e,
    })?;
    let log = Arc::new(AppendLog::open(dir.path(), &Options::default())?);
    let barrier = Arc::new(Barrier::new(args.threads + 1));
    let handles: Vec<_> = (0..args.threads)
        .map(|thread| {
            let log = Arc::clone(&log);
            let barrier = Arc::clone(&barrier);
            let value = vec![thread as u8; args.value_bytes];
            std::thread::spawn(move || -> Result<u64, seglog::Error> {
                let mut bytes = 0;
                barrier.wait();
                for i in 0..records {
                    let key = (thread as u64) << 40 | i;
                    bytes += u64::from(log.append(&key.to_le_bytes(), &value)?.record_bytes);
                }
                Ok(bytes)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut bytes = 0;
    for handle in handles {
        bytes += handle.join().expect("bench writer panicked")?;
    }
    let elapsed = start.elapsed();
    report(args.threads, records * args.threads as u64, bytes, elapsed);
    Ok(())
}

fn report(threads: usize, records: u64, bytes: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!("workload      threads  records     seconds  records/s     MB/s");
    println!(
        "append        {threads:>7}  {records:>10}  {secs:>7.3}  {:>10.0}  {:>7.1}",
        records as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}
