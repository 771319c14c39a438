//! Issue 18, done when: a SIGKILL of the shipper at random points followed by a restart —
//! nothing lost, nothing uploaded twice, no manifest naming a missing object.
//!
//! This test binary runs itself as a child process (`child_ships_until_killed`, which returns
//! at once in an ordinary run). The child opens the log (recovering it after the last kill),
//! writes fresh keys and removes some of its own earlier ones on two threads (each syncing
//! every 16 operations; automatic compaction, and one thread compacting every 200), and ships to moto every 50 ms. After each round it
//! appends to an acknowledgement file the operations that returned before the round started:
//! those are shipped (guarantee 13 of docs/durability.md: the round syncs them itself). A remove is announced in the file before it is attempted. The parent kills the
//! child with SIGKILL at a random moment (seeded), checks the remote copy, and starts it
//! again; a last child ships once and exits.
//!
//! Then: every manifest present names only objects that exist with the length and CRC-32C it
//! says (after every kill too); moto's own request log shows no object key created by two
//! successful PUTs (across all the runs: a round cut short is adopted, not uploaded again);
//! the restored log holds every acknowledged put with exact bytes and no acknowledged remove,
//! and every key it holds has the exact value written under it.
//!
//! Sizes: `SEGLOG_SHIP_KILLS` (default 6) kills, `SEGLOG_SHIP_SEED` (default 18).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{check_remote, parse_value, value_of};
use object_store::path::Path;
use seglog::{Log, Options};
use seglog_ship::{ShipOptions, Shipper, restore};
use seglog_tests::SplitMix64;
use seglog_tests::moto::{Moto, s3_store};

const CHILD: &str = "SEGLOG_SHIP_CHILD";
const CHILD_DIR: &str = "SEGLOG_SHIP_CHILD_DIR";
const CHILD_ACKS: &str = "SEGLOG_SHIP_CHILD_ACKS";
const CHILD_RUN: &str = "SEGLOG_SHIP_CHILD_RUN";
const CHILD_FINAL: &str = "SEGLOG_SHIP_CHILD_FINAL";
const CHILD_ENDPOINT: &str = "SEGLOG_SHIP_CHILD_ENDPOINT";
const CHILD_BUCKET: &str = "SEGLOG_SHIP_CHILD_BUCKET";
const PREFIX: &str = "killed/log";

fn options() -> Options {
    Options::default().segment_bytes(256 << 10)
}

fn ship_options() -> ShipOptions {
    ShipOptions {
        interval: Duration::from_millis(50),
        ..ShipOptions::default()
    }
}

/// Writer threads in a child.
const WRITERS: u64 = 2;

/// The key of run `run`'s writer `writer`'s operation `seq`.
fn key(run: u64, writer: u64, seq: u64) -> Vec<u8> {
    format!("r{run:03}-w{writer}-{seq:07}").into_bytes()
}

/// The writer id a value under a key names (see `value_of`).
fn value_id(run: u64, writer: u64) -> u64 {
    run * WRITERS + writer
}

/// (value id, seq) of a key made by [`key`].
fn parse(key: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(key).ok()?;
    let (run, rest) = text.strip_prefix('r')?.split_once("-w")?;
    let (writer, seq) = rest.split_once('-')?;
    Some((
        value_id(run.parse().ok()?, writer.parse().ok()?),
        seq.parse().ok()?,
    ))
}

/// One line to the acknowledgement file, in one `write(2)`: a kill lands between lines.
fn line(file: &Mutex<std::fs::File>, text: String) {
    let mut file = file.lock().unwrap();
    file.write_all(format!("{text}\n").as_bytes())
        .expect("writing the acknowledgement file");
}

/// The child: writes and ships until killed (or, as the last run, ships once and exits).
#[test]
fn child_ships_until_killed() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let dir = PathBuf::from(std::env::var_os(CHILD_DIR).unwrap());
    let run: u64 = std::env::var(CHILD_RUN).unwrap().parse().unwrap();
    let acks = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::env::var_os(CHILD_ACKS).unwrap())
            .unwrap(),
    ));
    let store = s3_store(
        &std::env::var(CHILD_ENDPOINT).unwrap(),
        &std::env::var(CHILD_BUCKET).unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let log = Arc::new(Log::open_with(&dir, options()).unwrap());
    let mut shipper = runtime
        .block_on(Shipper::new(
            Arc::clone(&log),
            store,
            Path::from(PREFIX),
            ship_options(),
        ))
        .unwrap();
    if std::env::var_os(CHILD_FINAL).is_some() {
        log.sync().unwrap();
        let report = runtime.block_on(shipper.ship_once()).unwrap();
        line(
            &acks,
            format!(
                "S {} {} {} {}",
                report.manifest,
                report.objects_uploaded,
                report.objects_adopted,
                report.objects_deleted
            ),
        );
        return;
    }

    // (key, Some(len) for a put / None for a remove, when it returned)
    type Done = Vec<(Vec<u8>, Option<usize>, Instant)>;
    let done: Arc<Mutex<Done>> = Arc::default();
    // The writers run until the process is killed.
    for writer in 0..WRITERS {
        let (log, done, acks) = (Arc::clone(&log), Arc::clone(&done), Arc::clone(&acks));
        std::thread::spawn(move || {
            let mut rng = SplitMix64::new(run ^ (writer << 32) ^ 0xC0FFEE);
            let mut live: Vec<Vec<u8>> = Vec::new();
            let mut seq = 0u64;
            let mut unsynced = 0;
            loop {
                if !live.is_empty() && rng.range(0, 99) < 25 {
                    let victim = live.swap_remove(rng.range(0, live.len() as u64 - 1) as usize);
                    line(&acks, format!("T {}", String::from_utf8_lossy(&victim)));
                    log.remove(&victim).unwrap();
                    done.lock().unwrap().push((victim, None, Instant::now()));
                } else {
                    let k = key(run, writer, seq);
                    let len = rng.range(0, 2000) as usize;
                    log.put(&k, &value_of(value_id(run, writer), seq, len))
                        .unwrap();
                    done.lock()
                        .unwrap()
                        .push((k.clone(), Some(len), Instant::now()));
                    live.push(k);
                    seq += 1;
                }
                unsynced += 1;
                if unsynced == 16 {
                    log.sync().unwrap();
                    unsynced = 0;
                    std::thread::sleep(Duration::from_millis(6));
                }
                if writer == 0 && seq % 200 == 199 {
                    log.compact().unwrap();
                }
            }
        });
    }
    runtime.block_on(async {
        let mut acked = 0usize;
        loop {
            let started = Instant::now();
            let report = shipper.ship_once().await.unwrap();
            line(
                &acks,
                format!(
                    "S {} {} {} {}",
                    report.manifest,
                    report.objects_uploaded,
                    report.objects_adopted,
                    report.objects_deleted
                ),
            );
            if report.manifest > 0 {
                let done = done.lock().unwrap();
                let shipped = done[acked..].iter().take_while(|op| op.2 < started).count();
                for (k, put, _) in &done[acked..acked + shipped] {
                    let k = String::from_utf8_lossy(k);
                    match put {
                        Some(len) => line(&acks, format!("A {k} {len}")),
                        None => line(&acks, format!("R {k}")),
                    }
                }
                acked += shipped;
            }
            tokio::time::sleep(ship_options().interval).await;
        }
    });
    // Never reached: the loop above runs until the parent kills this process.
}

/// What the acknowledgement file says.
#[derive(Default)]
struct Acks {
    puts: BTreeMap<Vec<u8>, usize>,
    remove_tried: BTreeSet<Vec<u8>>,
    removed: BTreeSet<Vec<u8>>,
    uploaded: u64,
    adopted: u64,
    deleted: u64,
    rounds: u64,
}

fn read_acks(path: &FsPath) -> Acks {
    let mut acks = Acks::default();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["A", k, len] => {
                acks.puts
                    .insert(k.as_bytes().to_vec(), len.parse().unwrap());
            }
            ["T", k] => {
                acks.remove_tried.insert(k.as_bytes().to_vec());
            }
            ["R", k] => {
                acks.removed.insert(k.as_bytes().to_vec());
            }
            ["S", _, up, ad, del] => {
                acks.rounds += 1;
                acks.uploaded += up.parse::<u64>().unwrap();
                acks.adopted += ad.parse::<u64>().unwrap();
                acks.deleted += del.parse::<u64>().unwrap();
            }
            _ => panic!("a malformed acknowledgement line {line:?}"),
        }
    }
    acks
}

/// Successful object creations per key under the prefix, from moto's request log
/// (`"PUT /bucket/key HTTP/1.1" 200 -`; multipart uploads count at their completion).
fn creations(moto: &Moto) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let bucket = format!("/{}/", moto.bucket());
    for line in moto.output().lines() {
        let Some((_, request)) = line.split_once('"') else {
            continue;
        };
        let Some((request, status)) = request.split_once('"') else {
            continue;
        };
        if !status.trim_start().starts_with("200") {
            continue;
        }
        let mut parts = request.split(' ');
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let creates = match method {
            "PUT" => !query.contains("partNumber"),
            "POST" => query.contains("uploadId"),
            _ => false,
        };
        if let Some(key) = path.strip_prefix(&bucket)
            && creates
            && key.starts_with(PREFIX)
        {
            *counts.entry(key.to_owned()).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_shipper_restarts_nothing_lost_nothing_twice() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let _watchdog = common::watchdog("sigkill_restart", Duration::from_secs(100));
    let moto = Moto::start();
    let store = moto.store();
    let prefix = Path::from(PREFIX);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("log");
    let acks_path = work.path().join("acks");
    let kills = common::env_u64("SEGLOG_SHIP_KILLS", 6);
    let mut rng = SplitMix64::new(common::env_u64("SEGLOG_SHIP_SEED", 18));
    let exe = std::env::current_exe().unwrap();
    let spawn = |run: u64, last: bool| {
        let mut command = Command::new(&exe);
        command
            .args(["--exact", "child_ships_until_killed", "--nocapture"])
            .env(CHILD, "1")
            .env(CHILD_DIR, &dir)
            .env(CHILD_ACKS, &acks_path)
            .env(CHILD_RUN, run.to_string())
            .env(CHILD_ENDPOINT, moto.endpoint())
            .env(CHILD_BUCKET, moto.bucket())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if last {
            command.env(CHILD_FINAL, "1");
        }
        command.spawn().expect("the child process")
    };
    let mut manifests_after_kills = Vec::new();
    for run in 0..kills {
        let mut child = spawn(run, false);
        let delay = Duration::from_millis(rng.range(300, 1500));
        let deadline = Instant::now() + delay;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).ok();
                panic!("run {run}: the child exited by itself ({status}):\n{err}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let seqs = check_remote(&*store, &prefix, false).await;
        manifests_after_kills.push(seqs.last().copied().unwrap_or(0));
    }
    let mut last = spawn(kills, true);
    let status = common::bounded("the last child", Duration::from_secs(30), async {
        loop {
            if let Some(status) = last.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if !status.success() {
        let mut err = String::new();
        std::io::Read::read_to_string(last.stderr.as_mut().unwrap(), &mut err).ok();
        panic!("the last child failed ({status}):\n{err}");
    }

    // No manifest names a missing object.
    let seqs = check_remote(&*store, &prefix, false).await;
    // Nothing created twice.
    let created = creations(&moto);
    let twice: Vec<_> = created.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "objects uploaded more than once: {twice:?}"
    );
    assert!(
        created.keys().any(|k| k.contains("/segments/")),
        "moto's log shows no segment upload: {} keys",
        created.len()
    );

    // Nothing lost, nothing resurrected.
    let acks = read_acks(&acks_path);
    let dest = work.path().join("restored");
    let report = restore(Arc::clone(&store), &prefix, &dest).await.unwrap();
    let restored = Log::open_with(&dest, Options::default().read_only(true)).unwrap();
    let state = common::state_of(&restored);
    for (k, len) in &acks.puts {
        let (id, seq) = parse(k).unwrap();
        if acks.removed.contains(k) {
            assert!(
                !state.contains_key(k),
                "{}: removed and shipped, back after the restore",
                String::from_utf8_lossy(k)
            );
        } else if !acks.remove_tried.contains(k) || state.contains_key(k) {
            assert_eq!(
                state.get(k).map(Vec::as_slice),
                Some(value_of(id, seq, *len).as_slice()),
                "{}: put and shipped, not restored exactly",
                String::from_utf8_lossy(k)
            );
        }
    }
    for (k, v) in &state {
        let (id, seq) = parse(k)
            .unwrap_or_else(|| panic!("a key nobody wrote: {}", String::from_utf8_lossy(k)));
        assert_eq!(
            parse_value(v),
            Some((id, seq)),
            "{}: the value is not the one written under it",
            String::from_utf8_lossy(k)
        );
    }
    // The restore is the log itself: the last child synced and shipped everything.
    let log = Log::open_with(&dir, options().read_only(true)).unwrap();
    assert!(
        common::state_of(&log) == state,
        "the restore differs from the log"
    );
    eprintln!(
        "{kills} kills (newest manifest after each: {manifests_after_kills:?}), {} rounds, {} \
         puts and {} removes acknowledged, {} keys restored from manifest {} (kept {seqs:?}); \
         {} objects uploaded, {} adopted after kills, {} deleted, {} distinct objects created",
        acks.rounds,
        acks.puts.len(),
        acks.removed.len(),
        state.len(),
        report.manifest,
        acks.uploaded,
        acks.adopted,
        acks.deleted,
        created.len()
    );
    assert!(acks.puts.len() > 100, "too little was acknowledged to test");

    // Control: the request-log check sees a key created twice (a plain overwrite), and not a
    // refused create.
    let control = Path::from(format!("{PREFIX}/control"));
    store.put(&control, common::payload(b"1")).await.unwrap();
    store.put(&control, common::payload(b"2")).await.unwrap();
    let refused = store
        .put_opts(
            &control,
            common::payload(b"3"),
            object_store::PutMode::Create.into(),
        )
        .await;
    assert!(matches!(
        refused,
        Err(object_store::Error::AlreadyExists { .. })
    ));
    // (moto logs a request as it finishes: give the log a moment)
    let deadline = Instant::now() + Duration::from_secs(5);
    while creations(&moto).get(control.as_ref()) != Some(&2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(creations(&moto).get(control.as_ref()), Some(&2));
    assert!(!acks.removed.is_empty(), "no remove was acknowledged");
}
