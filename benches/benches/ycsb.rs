//! The YCSB core workloads (A: 50 % reads / 50 % updates, B: 95 / 5, C: reads only), with
//! scrambled-Zipfian (θ = 0.99) and uniform key choice, over `SEGLOG_BENCH_KEYS` loaded keys
//! (default 1,000,000) with 100-byte and 1 KiB values: seglog beside papaya, scc, dashmap,
//! fjall and redb at 1 and 2 threads.
//!
//! Benchmark ids are `{workload}-{choice}/{value}/{subject}/{threads}t`, for example
//! `ycsb-a-zipf/100B/seglog/2t`; filter them the usual way
//! (`cargo bench -p seglog-benches --bench ycsb -- 'ycsb-a-zipf/100B'`). A subject is loaded
//! (untimed, on two threads) only if one of its benchmarks matches. Each iteration is one
//! operation; samples start their threads behind a barrier (see `seglog_benches::workload`).

mod harness;
mod peers;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use harness::Harness;
use seglog_benches::store::{KvStore, SeglogStore};
use seglog_benches::workload::{ValueSize, preload_reported};
use seglog_benches::ycsb::{KeyChoice, YcsbRun, YcsbWorkload, ZIPFIAN_THETA, Zipfian, timed_ycsb};

const THREADS: [usize; 2] = [1, 2];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Seglog,
    Papaya,
    Scc,
    DashMap,
    Fjall,
    Redb,
}

impl Subject {
    const ALL: [Subject; 6] = [
        Subject::Seglog,
        Subject::Papaya,
        Subject::Scc,
        Subject::DashMap,
        Subject::Fjall,
        Subject::Redb,
    ];

    fn label(self) -> &'static str {
        match self {
            Subject::Seglog => "seglog",
            Subject::Papaya => "papaya",
            Subject::Scc => "scc",
            Subject::DashMap => "dashmap",
            Subject::Fjall => "fjall",
            Subject::Redb => "redb",
        }
    }

    fn build(self) -> Box<dyn KvStore> {
        match self {
            Subject::Seglog => Box::new(SeglogStore::file_backed()),
            Subject::Papaya => Box::new(peers::Papaya::new()),
            Subject::Scc => Box::new(peers::Scc::new()),
            Subject::DashMap => Box::new(peers::Dash::new()),
            Subject::Fjall => Box::new(peers::Fjall::new()),
            Subject::Redb => Box::new(peers::Redb::new()),
        }
    }
}

fn bench_id(
    workload: YcsbWorkload,
    choice: KeyChoice,
    size: ValueSize,
    subject: Subject,
    threads: usize,
) -> String {
    format!(
        "{}-{}/{}/{}/{threads}t",
        workload.label(),
        choice.label(),
        size.label(),
        subject.label()
    )
}

fn main() {
    let harness = Harness::from_args();
    let mut c: Criterion = harness.criterion();
    let keys = harness.keys();
    let zipfian = Zipfian::new(keys, ZIPFIAN_THETA);
    for size in ValueSize::YCSB {
        for subject in Subject::ALL {
            let wanted = YcsbWorkload::ALL.iter().any(|&w| {
                KeyChoice::ALL.iter().any(|&k| {
                    THREADS
                        .iter()
                        .any(|&t| harness.wants(&bench_id(w, k, size, subject, t)))
                })
            });
            if !wanted {
                continue;
            }
            let mut store = subject.build();
            preload_reported(store.as_ref(), subject.label(), keys, size);
            for workload in YcsbWorkload::ALL {
                for choice in KeyChoice::ALL {
                    let mut group = c.benchmark_group(format!(
                        "{}-{}/{}",
                        workload.label(),
                        choice.label(),
                        size.label()
                    ));
                    group.throughput(Throughput::Elements(1));
                    group.sampling_mode(SamplingMode::Flat);
                    for threads in THREADS {
                        let id = BenchmarkId::new(subject.label(), format!("{threads}t"));
                        group.bench_function(id, |b| {
                            b.iter_custom(|iters| {
                                store.between_runs();
                                let run = YcsbRun {
                                    workload,
                                    choice,
                                    size,
                                    loaded: keys,
                                    threads,
                                    seed: iters,
                                    zipfian: &zipfian,
                                };
                                timed_ycsb(store.as_ref(), &run, iters)
                            });
                        });
                    }
                    group.finish();
                }
            }
        }
    }
    c.final_summary();
}
