//! Shipping to object storage (issue 18): how fast a `seglog_ship::Shipper` round uploads a log
//! of sealed segments, and how fast `seglog_ship::restore` rebuilds it, against
//! `LocalFileSystem` and against a moto server (S3 over plain http on 127.0.0.1).
//!
//! ```sh
//! cargo bench -p seglog-benches --bench ship                          # 256 MiB, 64 MiB segments
//! SEGLOG_BENCH_SHIP_MIB=64 cargo bench -p seglog-benches --bench ship   # a quicker run
//! ```
//!
//! The log: `SEGLOG_BENCH_SHIP_MIB` MiB (default 256) of 4 KiB values under 16-byte keys, in the
//! engine's default 64 MiB segments, closed (so the sealed segments have hints) and opened
//! read-only, as `seglog ship` opens it. Throughput is in bytes of the objects (segments with
//! their trailing zeros trimmed, hints, the frontier's range), `Throughput::Bytes`.
//!
//! - `ship/upload/{local,moto}`: one `Shipper::new` + `ship_once` into an empty prefix (a fresh
//!   directory, a fresh key prefix), that is: list the prefix, read each file, CRC-32C it,
//!   store it write-once (`PutMode::Create`; objects of 8 MiB or more in 8 MiB parts), write the
//!   manifest. The prefix is deleted outside the timed region.
//! - `ship/restore/{local,moto}`: one `restore` of that copy into a fresh directory: every
//!   object downloaded, checked against its CRC-32C, written at its offset into a segment file
//!   allocated to the full segment size, every file and the directory fsynced. The directory is
//!   removed outside the timed region.
//!
//! The moto benchmarks need `moto_server` (`pip install 'moto[server]'`, or
//! `SEGLOG_MOTO_SERVER`); without it they are skipped with a note. Under `cargo test --benches`
//! each benchmark runs once on a 4 MiB log of 1 MiB segments.

mod harness;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use futures::TryStreamExt;
use harness::{Harness, Mode};
use seglog::{Log, Options};
use seglog_ship::object_store::ObjectStore;
use seglog_ship::object_store::local::LocalFileSystem;
use seglog_ship::object_store::path::Path as ObjectPath;
use seglog_ship::{ShipOptions, Shipper};

/// Bytes of each value.
const VALUE_BYTES: usize = 4096;

/// Writes a closed log of about `mib` MiB into `dir`; returns its key count.
fn make_log(dir: &Path, mib: u64, segment_bytes: u64) -> u64 {
    let log = Log::open_with(
        dir,
        Options::default()
            .segment_bytes(segment_bytes)
            .auto_compact(false),
    )
    .expect("open the bench log");
    let records = mib * (1 << 20) / (VALUE_BYTES as u64 + 32);
    let mut value = vec![0u8; VALUE_BYTES];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..records {
        // Bytes that do not compress or trim: a xorshift stream.
        for chunk in value.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        log.put(format!("ship-{i:011}").as_bytes(), &value)
            .expect("put");
    }
    log.close().expect("close the bench log");
    records
}

/// Where a benchmark stores its copies.
enum Target {
    /// A directory per copy, under this one.
    Local(PathBuf),
    /// A key prefix per copy in the moto server's bucket.
    Moto {
        /// Kept for its drop, which stops the server.
        _server: seglog_tests::moto::Moto,
        store: Arc<dyn ObjectStore>,
    },
}

impl Target {
    fn label(&self) -> &'static str {
        match self {
            Target::Local(_) => "local",
            Target::Moto { .. } => "moto",
        }
    }

    /// The store and prefix of copy number `n`.
    fn copy(&self, n: u64) -> (Arc<dyn ObjectStore>, ObjectPath) {
        match self {
            Target::Local(root) => {
                let dir = root.join(format!("copy-{n}"));
                std::fs::create_dir_all(&dir).expect("a copy directory");
                let store = LocalFileSystem::new_with_prefix(&dir).expect("LocalFileSystem");
                (Arc::new(store), ObjectPath::default())
            }
            Target::Moto { store, .. } => {
                (Arc::clone(store), ObjectPath::from(format!("copy-{n}")))
            }
        }
    }

    /// Deletes copy number `n`.
    async fn remove(&self, n: u64) {
        match self {
            Target::Local(root) => {
                std::fs::remove_dir_all(root.join(format!("copy-{n}"))).expect("remove a copy");
            }
            Target::Moto { store, .. } => {
                let prefix = ObjectPath::from(format!("copy-{n}"));
                let objects: Vec<_> = store
                    .list(Some(&prefix))
                    .try_collect()
                    .await
                    .expect("list a copy");
                for meta in objects {
                    store
                        .delete(&meta.location)
                        .await
                        .expect("delete an object");
                }
            }
        }
    }
}

/// One upload of the whole log into copy `n`; returns the time and the bytes uploaded.
async fn upload(log: &Arc<Log>, target: &Target, n: u64) -> (Duration, u64) {
    let (store, prefix) = target.copy(n);
    let start = Instant::now();
    let mut shipper = Shipper::new(Arc::clone(log), store, prefix, ShipOptions::default())
        .await
        .expect("Shipper::new");
    let report = shipper.ship_once().await.expect("ship_once");
    let elapsed = start.elapsed();
    assert!(
        report.wrote_manifest && report.objects_adopted == 0,
        "{report:?}"
    );
    (elapsed, report.bytes_uploaded)
}

/// Whether a moto server can be started, by the harness's own lookup.
fn moto_available() -> bool {
    if let Some(path) = std::env::var_os("SEGLOG_MOTO_SERVER") {
        return Path::new(&path).exists();
    }
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("moto_server").is_file())
    })
}

fn ship_benches(c: &mut Criterion, harness: &Harness) {
    let measuring = harness.mode == Mode::Bench;
    let mib: u64 = std::env::var("SEGLOG_BENCH_SHIP_MIB")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(if measuring { 256 } else { 4 });
    let segment_bytes = if measuring { 64 << 20 } else { 1 << 20 };
    let wanted = |what: &str, target: &str| harness.wants(&format!("ship/{what}/{target}"));
    let any_local = wanted("upload", "local") || wanted("restore", "local");
    let any_moto = wanted("upload", "moto") || wanted("restore", "moto");
    if !any_local && !any_moto {
        return;
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("log");
    let start = Instant::now();
    let records = make_log(&dir, mib, segment_bytes);
    eprintln!(
        "ship bench: a {mib} MiB log ({records} x {VALUE_BYTES} B values, {} MiB segments) \
         written in {:.1} s",
        segment_bytes >> 20,
        start.elapsed().as_secs_f64()
    );
    let log =
        Arc::new(Log::open_with(&dir, Options::default().read_only(true)).expect("open read-only"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let mut targets = Vec::new();
    if any_local {
        targets.push(Target::Local(tmp.path().join("local")));
    }
    if any_moto {
        if moto_available() {
            let moto = seglog_tests::moto::Moto::start();
            let store = moto.store();
            targets.push(Target::Moto {
                _server: moto,
                store,
            });
        } else {
            eprintln!(
                "ship bench: moto_server not found (pip install 'moto[server]', or set \
                 SEGLOG_MOTO_SERVER): ship/*/moto skipped"
            );
        }
    }

    for target in &targets {
        // The reference copy the restores read, and the byte count of an upload.
        let (_, bytes) = runtime.block_on(upload(&log, target, 0));
        let mut group = c.benchmark_group("ship");
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(if measuring { 20 } else { 1 }));
        group.throughput(Throughput::Bytes(bytes));
        let mut next = 1;
        group.bench_function(BenchmarkId::new("upload", target.label()), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let n = next;
                    next += 1;
                    let (elapsed, uploaded) = runtime.block_on(upload(&log, target, n));
                    assert_eq!(uploaded, bytes);
                    total += elapsed;
                    runtime.block_on(target.remove(n));
                }
                total
            });
        });
        let (store, prefix) = target.copy(0);
        let restores = tmp.path().join(format!("restores-{}", target.label()));
        std::fs::create_dir_all(&restores).expect("a directory for restores");
        group.bench_function(BenchmarkId::new("restore", target.label()), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dest = restores.join(format!("r-{next}"));
                    next += 1;
                    let start = Instant::now();
                    let report = runtime
                        .block_on(seglog_ship::restore(Arc::clone(&store), &prefix, &dest))
                        .expect("restore");
                    total += start.elapsed();
                    assert_eq!(report.bytes, bytes, "{report:?}");
                    std::fs::remove_dir_all(&dest).expect("remove a restore");
                }
                total
            });
        });
        group.finish();
        // One restore, opened: the bench measured a copy that holds the log.
        let dest = restores.join("check");
        runtime
            .block_on(seglog_ship::restore(Arc::clone(&store), &prefix, &dest))
            .expect("restore");
        let copy = Log::open_with(&dest, Options::default().read_only(true)).expect("open");
        assert_eq!(copy.len() as u64, records, "the restored log lost records");
        assert_eq!(copy.get(b"ship-00000000000"), log.get(b"ship-00000000000"));
    }
}

fn main() {
    let harness = Harness::from_args();
    let mut c = harness.criterion();
    ship_benches(&mut c, &harness);
    c.final_summary();
}
