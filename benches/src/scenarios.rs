//! The seed's five concurrent scenarios (task 017, "Performance Targets"), for `seglog bench`.
//!
//! Each scenario is the seed's test with its thread and operation counts, records and checks;
//! what differs is stated on the scenario. A record is a memory: a 768-float embedding and a
//! text, under a string id. seglog stores it as one value (the embedding's 3072 bytes, then the
//! text) written in place with `put_with`; the seed design stores it its own way (see
//! [`crate::seed_design`]). A recall copies both out, the embedding into a boxed array and the
//! text into a `String`, as the seed's `recall` built a `Memory`.
//!
//! Differences from the seed's tests, all the same for both engines:
//! - plain threads behind a barrier instead of tokio tasks (the seed's tasks did blocking work);
//! - the mixed scenario has the seed table's 5,000 operations (5 writers × 500 stores, 10 readers
//!   × 250 recalls; the seed's code ran 500 + 500) and no sleeps between operations;
//! - `scale` multiplies every thread's operation count, for a run long enough to time well;
//!   record texts keep their seed sizes.

use std::time::{Duration, Instant};

use crate::seed_design::SeedStore;
use crate::store::SeglogStore;
use crate::workload::{EMBEDDING_BYTES, EMBEDDING_DIMS};

/// A 768-float embedding.
pub type Embedding = [f32; EMBEDDING_DIMS];

/// The seed's `create_test_embedding`: a deterministic vector from a seed value.
pub fn test_embedding(seed: f32) -> Box<Embedding> {
    let mut embedding = Box::new([0.0; EMBEDDING_DIMS]);
    for (i, x) in embedding.iter_mut().enumerate() {
        *x = seed + i as f32 * 0.001;
    }
    embedding
}

/// A recalled memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Recalled {
    /// The embedding.
    pub embedding: Box<Embedding>,
    /// The text.
    pub content: String,
}

/// What a scenario needs of an engine.
pub trait MemoryStore: Sync {
    /// Stores a memory.
    fn store(&self, id: &str, embedding: &Embedding, content: &str) -> Result<(), String>;
    /// Recalls a memory by id.
    fn recall(&self, id: &str) -> Option<Recalled>;
    /// Memories the engine holds.
    fn count(&self) -> usize;
}

impl MemoryStore for SeglogStore {
    fn store(&self, id: &str, embedding: &Embedding, content: &str) -> Result<(), String> {
        let embedding: &[u8] = bytemuck::cast_slice(&embedding[..]);
        self.log()
            .put_with(id.as_bytes(), EMBEDDING_BYTES + content.len(), |buf| {
                buf[..EMBEDDING_BYTES].copy_from_slice(embedding);
                buf[EMBEDDING_BYTES..].copy_from_slice(content.as_bytes());
            })
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn recall(&self, id: &str) -> Option<Recalled> {
        self.log().get_with(id.as_bytes(), |value| {
            let (embedding_bytes, content) = value.split_at(EMBEDDING_BYTES.min(value.len()));
            let mut embedding = Box::new([0.0f32; EMBEDDING_DIMS]);
            bytemuck::cast_slice_mut::<f32, u8>(&mut embedding[..])[..embedding_bytes.len()]
                .copy_from_slice(embedding_bytes);
            Recalled {
                embedding,
                content: String::from_utf8_lossy(content).into_owned(),
            }
        })
    }

    fn count(&self) -> usize {
        self.log().len()
    }
}

impl MemoryStore for SeedStore {
    fn store(&self, id: &str, embedding: &Embedding, content: &str) -> Result<(), String> {
        SeedStore::store(
            self,
            id,
            bytemuck::cast_slice(&embedding[..]),
            Some(content.as_bytes()),
        )
        .map_err(|e| e.to_string())
    }

    fn recall(&self, id: &str) -> Option<Recalled> {
        self.get_with(id, |block, content| Recalled {
            embedding: Box::new(block.embedding),
            content: String::from_utf8_lossy(content.unwrap_or_default()).into_owned(),
        })
    }

    fn count(&self) -> usize {
        self.keys()
    }
}

/// The engines `seglog bench` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// seglog's `Log`, file-backed in a fresh temporary directory, default options.
    Seglog,
    /// The seed design (see [`crate::seed_design`]).
    SeedDesign,
}

impl Engine {
    /// Both engines, seglog first.
    pub const ALL: [Engine; 2] = [Engine::Seglog, Engine::SeedDesign];

    /// The engine's name in tables.
    pub const fn label(self) -> &'static str {
        match self {
            Engine::Seglog => "seglog",
            Engine::SeedDesign => "seed design",
        }
    }
}

/// The seed's five scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// 10 threads store 100 memories each, starting together.
    ConcurrentStore,
    /// 20 threads read 100 stored memories 10 times each.
    ConcurrentGet,
    /// 5 writers store new memories while 10 readers recall stored ones.
    Mixed,
    /// 50 threads recall the same 10 memories.
    HotSpot,
    /// 20 threads store 50 memories each, starting together.
    WriterWriter,
}

/// A target from the seed's performance table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The whole scenario should take less than this.
    pub duration: Duration,
    /// 99 % of operations should take less than this.
    pub p99: Duration,
}

impl Scenario {
    /// All five, in the seed's order.
    pub const ALL: [Scenario; 5] = [
        Scenario::ConcurrentStore,
        Scenario::ConcurrentGet,
        Scenario::Mixed,
        Scenario::HotSpot,
        Scenario::WriterWriter,
    ];

    /// The scenario's name in tables.
    pub const fn label(self) -> &'static str {
        match self {
            Scenario::ConcurrentStore => "concurrent store",
            Scenario::ConcurrentGet => "concurrent get",
            Scenario::Mixed => "mixed",
            Scenario::HotSpot => "hot-spot",
            Scenario::WriterWriter => "writer-writer",
        }
    }

    /// Threads, as in the seed.
    pub const fn threads(self) -> usize {
        match self {
            Scenario::ConcurrentStore => 10,
            Scenario::ConcurrentGet => 20,
            Scenario::Mixed => 15,
            Scenario::HotSpot => 50,
            Scenario::WriterWriter => 20,
        }
    }

    /// Operations at `scale` (the seed's count times `scale`).
    pub const fn ops(self, scale: u64) -> u64 {
        let seed = match self {
            Scenario::ConcurrentStore => 1_000,
            Scenario::ConcurrentGet => 20_000,
            Scenario::Mixed => 5_000,
            Scenario::HotSpot => 1_000,
            Scenario::WriterWriter => 1_000,
        };
        seed * scale
    }

    /// The seed's target for the scenario (at scale 1).
    pub const fn target(self) -> Target {
        let (seconds, p99_ms) = match self {
            Scenario::ConcurrentStore => (2, 5),
            Scenario::ConcurrentGet => (3, 1),
            Scenario::Mixed => (5, 10),
            Scenario::HotSpot => (10, 100),
            Scenario::WriterWriter => (3, 10),
        };
        Target {
            duration: Duration::from_secs(seconds),
            p99: Duration::from_millis(p99_ms),
        }
    }

    /// What the seed measured for its own design, where it recorded it: (p50, p99).
    pub fn seed_measured(self) -> Option<(Option<Duration>, Duration)> {
        match self {
            Scenario::ConcurrentGet => Some((
                Some(Duration::from_nanos(2_080)),
                Duration::from_nanos(5_420),
            )),
            Scenario::HotSpot => Some((None, Duration::from_nanos(22_420))),
            _ => None,
        }
    }

    /// Memories stored before the timed part.
    const fn preloaded(self) -> u64 {
        match self {
            Scenario::ConcurrentStore | Scenario::WriterWriter => 0,
            Scenario::ConcurrentGet | Scenario::HotSpot => 100,
            Scenario::Mixed => 1_000,
        }
    }

    /// Blocks the seed design's fixed mmap needs for a run at `scale`: one per store.
    pub const fn seed_capacity(self, scale: u64) -> usize {
        let stores = match self {
            Scenario::ConcurrentStore | Scenario::WriterWriter => self.ops(scale),
            Scenario::Mixed => 2_500 * scale,
            Scenario::ConcurrentGet | Scenario::HotSpot => 0,
        };
        (self.preloaded() + stores + 64) as usize
    }

    /// A fresh engine for one run at `scale`.
    pub fn engine(self, engine: Engine, scale: u64) -> Result<Box<dyn MemoryStore>, String> {
        Ok(match engine {
            Engine::Seglog => Box::new(SeglogStore::file_backed()),
            Engine::SeedDesign => Box::new(
                SeedStore::new(self.seed_capacity(scale))
                    .map_err(|e| format!("cannot create the seed design's map: {e}"))?,
            ),
        })
    }

    /// Runs the scenario once on `store` (fresh) at `scale`: loads what it needs, then times the
    /// threads, then checks what the seed's test checked.
    pub fn run(self, store: &dyn MemoryStore, scale: u64) -> Outcome {
        let mut errors = Vec::new();
        self.preload(store, &mut errors);
        let threads = self.threads();
        let (duration, latencies, mut thread_errors) = match self {
            Scenario::ConcurrentStore => on_threads(threads, |t, lat, err| {
                let embedding = test_embedding(t as f32);
                for i in 0..100 * scale {
                    let (id, content) = store_record(t, i);
                    timed(lat, || store.store(&id, &embedding, &content))
                        .unwrap_or_else(|e| err.push(format!("store {id}: {e}")));
                }
            }),
            Scenario::ConcurrentGet => on_threads(threads, |t, lat, err| {
                for iteration in 0..10 * scale {
                    for i in 0..100 {
                        let id = format!("ep-{i}");
                        match timed(lat, || store.recall(&id)) {
                            Some(r) if r.content == get_content(i) => {}
                            Some(r) => err.push(format!(
                                "reader {t} iteration {iteration}: {id} holds {:?}",
                                r.content
                            )),
                            None => err.push(format!("reader {t}: {id} not found")),
                        }
                    }
                }
            }),
            Scenario::Mixed => on_threads(threads, |t, lat, err| {
                if t < 5 {
                    let embedding = test_embedding(t as f32);
                    let content = format!("Content from writer {t} - {}", "data".repeat(t + 1));
                    for i in 0..500 * scale {
                        let id = format!("writer-{t}-ep-{i}");
                        timed(lat, || store.store(&id, &embedding, &content))
                            .unwrap_or_else(|e| err.push(format!("store {id}: {e}")));
                    }
                } else {
                    let reader = (t - 5) as u64;
                    for iteration in 0..250 * scale {
                        let id = format!("ep-{}", (reader * 50 + iteration) % 1000);
                        match timed(lat, || store.recall(&id)) {
                            Some(r) if r.content.starts_with("Initial content") => {}
                            Some(r) => err.push(format!("{id} holds {:?}", r.content)),
                            None => err.push(format!("{id} not found")),
                        }
                    }
                }
            }),
            Scenario::HotSpot => on_threads(threads, |_, lat, err| {
                for iteration in 0..20 * scale {
                    let id = format!("ep-{}", iteration % 10);
                    match timed(lat, || store.recall(&id)) {
                        Some(r) if !r.content.is_empty() => {}
                        _ => err.push(format!("{id} missing or empty")),
                    }
                }
            }),
            Scenario::WriterWriter => on_threads(threads, |t, lat, err| {
                let embedding = test_embedding(t as f32);
                for i in 0..50 * scale {
                    let (id, content) = writer_record(t, i);
                    timed(lat, || store.store(&id, &embedding, &content))
                        .unwrap_or_else(|e| err.push(format!("store {id}: {e}")));
                }
            }),
        };
        errors.append(&mut thread_errors);
        self.check(store, scale, &mut errors);
        Outcome {
            duration,
            latencies_ns: latencies,
            errors,
        }
    }

    fn preload(self, store: &dyn MemoryStore, errors: &mut Vec<String>) {
        for i in 0..self.preloaded() {
            let (id, content) = match self {
                Scenario::ConcurrentGet => (format!("ep-{i}"), get_content(i)),
                Scenario::HotSpot => (
                    format!("ep-{i}"),
                    format!("Content {i} - {}", "x".repeat(i as usize * 5)),
                ),
                Scenario::Mixed => (
                    format!("ep-{i}"),
                    format!("Initial content {i} - {}", "base".repeat(i as usize % 10)),
                ),
                Scenario::ConcurrentStore | Scenario::WriterWriter => unreachable!("no preload"),
            };
            if let Err(e) = store.store(&id, &test_embedding(i as f32), &content) {
                errors.push(format!("preload {id}: {e}"));
            }
        }
    }

    /// The seed's checks after the threads are done: every record stored is there, intact.
    fn check(self, store: &dyn MemoryStore, scale: u64, errors: &mut Vec<String>) {
        let mut expect = |id: String, content: String| match store.recall(&id) {
            Some(r) if r.content == content => {}
            Some(r) => errors.push(format!("{id} holds {:?}, expected {content:?}", r.content)),
            None => errors.push(format!("{id} was stored but is missing")),
        };
        match self {
            Scenario::ConcurrentStore => {
                for t in 0..10 {
                    for i in 0..100 * scale {
                        let (id, content) = store_record(t, i);
                        expect(id, content);
                    }
                }
            }
            Scenario::WriterWriter => {
                for t in 0..20 {
                    for i in 0..50 * scale {
                        let (id, content) = writer_record(t, i);
                        expect(id, content);
                    }
                }
            }
            Scenario::Mixed => {
                let expected = 1_000 + 2_500 * scale as usize;
                if store.count() != expected {
                    errors.push(format!(
                        "{} memories after the mixed run, expected {expected}",
                        store.count()
                    ));
                }
            }
            Scenario::ConcurrentGet | Scenario::HotSpot => {}
        }
    }
}

fn store_record(thread: usize, i: u64) -> (String, String) {
    (
        format!("thread-{thread}-ep-{i}"),
        format!(
            "Content from thread {thread} episode {i} - {}",
            "padding".repeat(thread)
        ),
    )
}

fn writer_record(thread: usize, i: u64) -> (String, String) {
    (
        format!("w{thread}-m{i}"),
        format!(
            "Writer {thread} content {i} - {}",
            "x".repeat((thread + (i % 50) as usize) * 3)
        ),
    )
}

fn get_content(i: u64) -> String {
    format!("Content for episode {i} - {}", "x".repeat(i as usize * 10))
}

/// Runs `f` and records how long it took, in nanoseconds.
fn timed<R>(latencies: &mut Vec<u64>, f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let result = f();
    latencies.push(start.elapsed().as_nanos() as u64);
    result
}

/// Runs `body(thread, latencies, errors)` on `threads` threads behind a barrier; returns the time
/// from the first start to the last finish, every latency, and every error.
fn on_threads<F>(threads: usize, body: F) -> (Duration, Vec<u64>, Vec<String>)
where
    F: Fn(usize, &mut Vec<u64>, &mut Vec<String>) + Sync,
{
    let barrier = std::sync::Barrier::new(threads);
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, body) = (&barrier, &body);
                scope.spawn(move || {
                    let mut latencies = Vec::with_capacity(1024);
                    let mut errors = Vec::new();
                    barrier.wait();
                    let start = Instant::now();
                    body(t, &mut latencies, &mut errors);
                    (start, Instant::now(), latencies, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a scenario thread panicked"))
            .collect()
    });
    let first = results.iter().map(|r| r.0).min().expect("threads > 0");
    let last = results.iter().map(|r| r.1).max().expect("threads > 0");
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for (_, _, mut l, mut e) in results {
        latencies.append(&mut l);
        errors.append(&mut e);
    }
    (last - first, latencies, errors)
}

/// One run of a scenario.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// From the first thread's start to the last thread's finish.
    pub duration: Duration,
    /// Every operation's latency, in nanoseconds, unsorted.
    pub latencies_ns: Vec<u64>,
    /// What the checks found wrong (empty when all is well).
    pub errors: Vec<String>,
}

/// The `q`-th quantile (0..=1) of sorted latencies, as the seed took it (`sorted[len * q]`).
pub fn quantile(sorted: &[u64], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    Duration::from_nanos(sorted[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_passes_its_checks_on_both_engines() {
        for scenario in Scenario::ALL {
            for engine in Engine::ALL {
                let store = scenario.engine(engine, 1).unwrap();
                let outcome = scenario.run(store.as_ref(), 1);
                assert!(
                    outcome.errors.is_empty(),
                    "{} on {}: {:?}",
                    scenario.label(),
                    engine.label(),
                    &outcome.errors[..outcome.errors.len().min(3)]
                );
                assert_eq!(outcome.latencies_ns.len() as u64, scenario.ops(1));
            }
        }
    }
}
