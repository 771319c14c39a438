//! `seglog ship DIR URL [--follow]` and `seglog restore URL DEST`: a log in object storage
//! (the `seglog-ship` crate).
//!
//! # Which logs `ship` ships
//! A closed one. `ship` opens the log read-only (`Options::read_only`: it writes nothing in the
//! directory, and shares the directory's lock), so a log open in another process is refused
//! with a message saying to ship it from that process (`seglog_ship::Shipper`) or close it.
//!
//! `--follow` does not keep the log open between rounds (a reader's shared lock would keep the
//! log's own writer out): every interval it looks at the directory's files (names, sizes,
//! modification times), and only if they changed since the last round (or a minute has passed:
//! see [`FORCED_ROUND`]) it opens the log read-only, ships a round and closes it. So a program that opens the log, writes and closes it
//! again (a batch job, `seglog import`) has each closed state shipped within an interval. While
//! the log is open elsewhere the rounds wait, with one note on stderr; while a round runs, a
//! writer opening the log is refused as beside any reader. The first round is a plain `ship`:
//! any failure of it (the log open elsewhere, the store unreachable) ends the command.
//!
//! # When `--follow` stops
//! On SIGINT or SIGTERM, and when standard input is a pipe (or socket) and its other end is
//! closed: a parent that dies, or closes the pipe, ends its follower. Standard input from a
//! terminal, a file or `/dev/null` is not watched (so `< /dev/null` and `&` do not stop it).
//! Before exiting it ships one last round if the directory changed, then exits 0. A second
//! signal during that round exits at once (code 2).
//!
//! # Errors
//! Exit codes are those of every command: 1 when a remote object is damaged, 2 for everything
//! else (bad URL, unreachable store, no manifest at the URL, a destination that is not empty, a
//! log that cannot be opened). In `--follow`, a round that fails on an error a retry may fix
//! (the store unreachable or failing) is retried after a backoff (the interval, doubling, at
//! most 30 s); 8 failures in a row end the command.

use std::ffi::OsString;
use std::future::Future;
use std::io::IsTerminal;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use seglog::{Log, Options, SyncedFrontier};
use seglog_ship::object_store::ObjectStore;
use seglog_ship::object_store::path::Path as ObjectPath;
use seglog_ship::{Progress, ShipOptions, ShipReport, Shipper};

use crate::inspect::{segment_files, with_spinner};
use crate::{Exit, Failure};

/// What `seglog ship --help` adds.
const SHIP_HELP: &str = "URL: s3://BUCKET/PREFIX (S3 or an S3-compatible server: endpoint and \
    credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, and \
    AWS_ALLOW_HTTP=true for a plain-http endpoint) or file:///PATH (a local directory, created \
    if missing).\n\nThe log must be closed: it is opened read-only. A log that a program has open \
    is shipped from that program, with seglog_ship::Shipper.\n\n--follow stops on SIGINT, SIGTERM, \
    or when standard input is a pipe that is closed (not when it is a terminal, a file or \
    /dev/null), after a last round. It keeps the log open only during a round, and opens it \
    only when its files changed (or a minute has passed).";

/// What `seglog restore --help` adds.
const RESTORE_HELP: &str = "URL: as for `seglog ship` (s3://BUCKET/PREFIX or file:///PATH). \
    The restored log holds every write synced on the shipping log before the newest manifest \
    was published. DEST must not exist or be empty; a restore that fails or is killed leaves no \
    DEST.";

#[derive(Debug, Args)]
#[command(after_help = SHIP_HELP)]
pub struct ShipArgs {
    /// The log directory (closed: not open in another process).
    dir: PathBuf,
    /// Where to ship it: s3://BUCKET/PREFIX or file:///PATH.
    url: String,
    /// Keep shipping, a round every --interval, until SIGINT, SIGTERM or the end of a piped
    /// standard input.
    #[arg(long)]
    follow: bool,
    /// Seconds between rounds with --follow (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_interval, requires = "follow")]
    interval: Duration,
}

#[derive(Debug, Args)]
#[command(after_help = RESTORE_HELP)]
pub struct RestoreArgs {
    /// Where the log was shipped: s3://BUCKET/PREFIX or file:///PATH.
    url: String,
    /// The directory to restore it into (absent, or empty).
    dest: PathBuf,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(format!(
            "{text}: the interval is more than 0 and at most 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A runtime for one command.
fn runtime() -> Result<tokio::runtime::Runtime, Exit> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Exit::from(format!("cannot start the async runtime: {e}")))
}

/// The store a URL names, or a usage failure.
fn store(url: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath), Exit> {
    seglog_ship::store_from_url(url).map_err(|e| failed(e, url))
}

/// How a `seglog_ship` error ends the command: damage is exit 1, the rest exit 2, each with
/// what to do about it.
fn failed(error: seglog_ship::Error, url: &str) -> Exit {
    use seglog_ship::Error as E;
    match error {
        E::Corrupt { .. } => {
            Exit::Damaged(format!("{error} (under {url}; nothing local was changed)"))
        }
        E::NoManifest { .. } => Exit::from(format!(
            "no seglog manifest under {url}: nothing has been shipped there (check the bucket \
             and prefix; `seglog ship DIR {url}` ships a log there)"
        )),
        E::Store { .. } => Exit::from(store_failure(&error, url)),
        E::Conflict { .. } | E::Mismatch { .. } => {
            Exit::from(format!("{error} (ship each log to a prefix of its own)"))
        }
        other => Exit::from(other.to_string()),
    }
}

/// What to say when the store failed a request: what went wrong in a few words, what to check,
/// then the store's own message (an S3 error's XML body cut down to its code and message).
fn store_failure(error: &seglog_ship::Error, url: &str) -> String {
    let text = error.to_string();
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .unwrap_or_else(|_| "AWS S3 (AWS_ENDPOINT_URL is not set)".into());
    let code = between(&text, "<Code>", "</Code>");
    let detail = match (text.find("<?xml"), code) {
        (Some(at), Some(code)) => {
            let message = between(&text, "<Message>", "</Message>").unwrap_or_default();
            format!("{}{code}: {message}", &text[..at])
        }
        _ => text.clone(),
    };
    let what = match code {
        Some("NoSuchBucket") => {
            let bucket = url
                .strip_prefix("s3://")
                .and_then(|rest| rest.split('/').next())
                .unwrap_or(url);
            format!("the bucket {bucket} does not exist at {endpoint}: create it, or fix the URL")
        }
        Some(
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "AccessDenied"
            | "ExpiredToken"
            | "InvalidToken",
        ) => format!(
            "the object store at {endpoint} refused the credentials for {url}: check \
             AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and AWS_REGION"
        ),
        _ if text.contains("error sending request")
            || text.contains("onnection refused")
            || text.contains("timed out")
            || text.contains("dns error") =>
        {
            format!(
                "cannot reach the object store at {endpoint} for {url}: check that it is up \
                 and that AWS_ENDPOINT_URL names it"
            )
        }
        _ if error.is_transient() => format!(
            "the object store at {endpoint} failed a request for {url} (after retries); try \
             again later"
        ),
        _ => format!(
            "the object store at {endpoint} refused a request for {url}: check the bucket, the \
             credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and AWS_REGION"
        ),
    };
    format!("{what} ({detail})")
}

/// The text between the first `open` and the `close` after it.
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(&text[start..start + len])
}

/// Why a log could not be opened for shipping.
enum OpenError {
    /// Another process has it open (writable).
    Locked,
    /// Anything else: the command ends.
    Other(Exit),
}

/// Opens `dir` read-only for a round, as `open_existing` does (strict, no compaction), telling
/// a lock held elsewhere apart.
fn open_for_round(dir: &Path) -> Result<Log, OpenError> {
    let segments = segment_files(dir).map_err(|f| OpenError::Other(f.into()))?;
    let options = Options::default()
        .strict(true)
        .auto_compact(false)
        .read_only(true);
    let message = format!("opening {} ({} segments)", dir.display(), segments.len());
    with_spinner(message, || Log::open_with(dir, options)).map_err(|e| match e {
        seglog::Error::Locked { .. } => OpenError::Locked,
        seglog::Error::Corrupt { .. } => OpenError::Other(Exit::Damaged(format!(
            "{e} (the log was not changed and nothing was shipped; `seglog verify {}` lists \
             every damaged record)",
            dir.display()
        ))),
        other => OpenError::Other(Exit::Failed(Failure(other.to_string()))),
    })
}

fn locked_message(dir: &Path) -> String {
    format!(
        "{} is open in another process: a log that a program has open is shipped from that \
         program, with seglog_ship::Shipper (it reads the log's files under a lease while it \
         writes); `seglog ship` ships a closed log",
        dir.display()
    )
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
fn progress_bar(verb: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    // Length 1 until the first report gives the real total (a length of 0 draws a full bar).
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ({prefix} objects)",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(verb);
    bar.set_prefix("0/?");
    bar
}

/// A progress callback driving `bar`.
fn drive(bar: &ProgressBar) -> impl Fn(&Progress) + Send + Sync + 'static {
    let bar = bar.clone();
    move |p: &Progress| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
        bar.set_prefix(format!("{}/{}", p.objects_done, p.objects_total));
    }
}

fn frontier(f: SyncedFrontier) -> String {
    format!("segment {} offset {}", f.segment, f.offset)
}

fn size(bytes: u64) -> String {
    indicatif::BinaryBytes(bytes).to_string()
}

fn ship_summary(dir: &Path, url: &str, r: &ShipReport) -> String {
    if r.manifest == 0 {
        return format!(
            "shipped {} to {url}: nothing yet, manifest 0: the log holds no durable record",
            dir.display()
        );
    }
    format!(
        "shipped {} to {url}: manifest {}{}, {} objects, {} bytes ({}) uploaded, {} adopted, {} \
         deleted; synced frontier {}",
        dir.display(),
        r.manifest,
        if r.wrote_manifest { "" } else { " (unchanged)" },
        r.objects_uploaded,
        r.bytes_uploaded,
        size(r.bytes_uploaded),
        r.objects_adopted,
        r.objects_deleted,
        frontier(r.synced),
    )
}

/// One round on a freshly opened log: a shipper that takes up from the newest manifest.
async fn round(
    log: Log,
    store: &Arc<dyn ObjectStore>,
    prefix: &ObjectPath,
    bar: &ProgressBar,
) -> seglog_ship::Result<ShipReport> {
    let log = Arc::new(log);
    let mut shipper = Shipper::new(
        Arc::clone(&log),
        Arc::clone(store),
        prefix.clone(),
        ShipOptions::default(),
    )
    .await?;
    shipper.on_progress(drive(bar));
    let report = shipper.ship_once().await;
    drop(shipper);
    // The last reference: the log closes here, and with it the shared lock.
    if let Ok(log) = Arc::try_unwrap(log) {
        log.close()?;
    }
    report
}

pub fn ship(args: &ShipArgs) -> Result<(), Exit> {
    let (store, prefix) = store(&args.url)?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let stop = if args.follow {
            Some(stop_signal()?)
        } else {
            None
        };
        let fingerprint = files_fingerprint(&args.dir);
        let log = open_for_round(&args.dir).map_err(|e| match e {
            OpenError::Locked => Exit::from(locked_message(&args.dir)),
            OpenError::Other(exit) => exit,
        })?;
        let bar = progress_bar("shipping");
        let report = round(log, &store, &prefix, &bar).await;
        bar.finish_and_clear();
        let report = report.map_err(|e| failed(e, &args.url))?;
        println!("{}", ship_summary(&args.dir, &args.url, &report));
        match stop {
            None => Ok(()),
            Some(stop) => follow(args, &store, &prefix, fingerprint, stop).await,
        }
    })
}

/// Each file of a directory: name, size, inode, modification time (seconds, nanoseconds).
type Fingerprint = Vec<(OsString, u64, u64, i64, i64)>;

/// The names, sizes, inodes and modification times of a directory's files: when none of them
/// changed, the log did not either.
fn files_fingerprint(dir: &Path) -> Option<Fingerprint> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let m = entry.metadata().ok()?;
        files.push((
            entry.file_name(),
            m.len(),
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
        ));
    }
    files.sort();
    Some(files)
}

/// `--follow` ships a round at least this often even when the directory's files look unchanged:
/// a write into an mmapped page that is already dirty does not move the file's modification
/// time, so a program that drops its log without `close` (no sync) right after another wrote
/// the same page could otherwise go unshipped.
const FORCED_ROUND: Duration = Duration::from_secs(60);

/// The `--follow` loop after the first round.
async fn follow(
    args: &ShipArgs,
    store: &Arc<dyn ObjectStore>,
    prefix: &ObjectPath,
    mut shipped: Option<Fingerprint>,
    stop: impl Future<Output = &'static str>,
) -> Result<(), Exit> {
    let mut stop = std::pin::pin!(stop);
    let mut failures = 0u32;
    let mut said_locked = false;
    let mut delay = args.interval;
    let mut last_round = Instant::now();
    let max_failures = ShipOptions::default().max_failed_rounds;
    let why = loop {
        tokio::select! {
            why = &mut stop => break why,
            () = tokio::time::sleep(delay) => {}
        }
        delay = args.interval;
        let now = files_fingerprint(&args.dir);
        if now.is_some() && now == shipped && last_round.elapsed() < FORCED_ROUND {
            continue;
        }
        match follow_round(args, store, prefix).await {
            Ok(Some(report)) => {
                last_round = Instant::now();
                failures = 0;
                said_locked = false;
                shipped = now;
                if report.wrote_manifest {
                    println!("{}", ship_summary(&args.dir, &args.url, &report));
                }
            }
            Ok(None) => {
                if !said_locked {
                    eprintln!(
                        "seglog: {} is open in another process; waiting for it to be closed \
                         (to ship a log while it is written, use seglog_ship::Shipper in the \
                         program that writes it)",
                        args.dir.display()
                    );
                    said_locked = true;
                }
            }
            Err(RoundError::Retry(e)) => {
                failures += 1;
                if failures >= max_failures {
                    return Err(failed(e, &args.url));
                }
                delay = args
                    .interval
                    .saturating_mul(1 << failures.min(10))
                    .min(Duration::from_secs(30));
                eprintln!(
                    "seglog: round failed ({failures} in a row), retrying in {:.1} s: {e}",
                    delay.as_secs_f64()
                );
            }
            Err(RoundError::Fatal(exit)) => return Err(exit),
        }
    };
    // A second signal while the last round runs ends the command at once.
    tokio::spawn(async {
        if let Ok(mut again) = signals() {
            again.recv().await;
            eprintln!("seglog: stopped during the last round");
            std::process::exit(2);
        }
    });
    let now = files_fingerprint(&args.dir);
    if now.is_none() || now != shipped {
        match follow_round(args, store, prefix).await {
            Ok(Some(report)) if report.wrote_manifest => {
                println!("{}", ship_summary(&args.dir, &args.url, &report));
            }
            Ok(_) => {}
            Err(RoundError::Retry(e)) => return Err(failed(e, &args.url)),
            Err(RoundError::Fatal(exit)) => return Err(exit),
        }
    }
    eprintln!("seglog: stopped following ({why})");
    Ok(())
}

enum RoundError {
    /// The store failed in a way a later round may not.
    Retry(seglog_ship::Error),
    /// The command ends.
    Fatal(Exit),
}

/// A `--follow` round: `None` if the log is open in another process.
async fn follow_round(
    args: &ShipArgs,
    store: &Arc<dyn ObjectStore>,
    prefix: &ObjectPath,
) -> Result<Option<ShipReport>, RoundError> {
    let log = match open_for_round(&args.dir) {
        Ok(log) => log,
        Err(OpenError::Locked) => return Ok(None),
        Err(OpenError::Other(exit)) => return Err(RoundError::Fatal(exit)),
    };
    let bar = progress_bar("shipping");
    let report = round(log, store, prefix, &bar).await;
    bar.finish_and_clear();
    match report {
        Ok(report) => Ok(Some(report)),
        Err(e) if e.is_transient() => Err(RoundError::Retry(e)),
        Err(e) => Err(RoundError::Fatal(failed(e, &args.url))),
    }
}

/// SIGINT and SIGTERM, as one stream.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

fn signals() -> std::io::Result<Signals> {
    use tokio::signal::unix::{SignalKind, signal};
    Ok(Signals {
        interrupt: signal(SignalKind::interrupt())?,
        terminate: signal(SignalKind::terminate())?,
    })
}

/// What ends `--follow`: its handlers are installed now, before the first round, so a signal
/// during it is not lost. Resolves to what stopped it.
fn stop_signal() -> Result<impl Future<Output = &'static str>, Exit> {
    let mut signals =
        signals().map_err(|e| Exit::from(format!("cannot install signal handlers: {e}")))?;
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    let piped = std::fs::metadata("/dev/stdin")
        .map(|m| m.file_type().is_fifo() || m.file_type().is_socket())
        .unwrap_or(false);
    if piped {
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            let mut stdin = std::io::stdin().lock();
            loop {
                match std::io::Read::read(&mut stdin, &mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = closed_tx.send(());
        });
    } else {
        // Never sends; never closes.
        std::mem::forget(closed_tx);
    }
    Ok(async move {
        tokio::select! {
            why = signals.recv() => why,
            Ok(()) = closed_rx => "standard input closed",
        }
    })
}

pub fn restore(args: &RestoreArgs) -> Result<(), Exit> {
    let (store, prefix) = store(&args.url)?;
    let runtime = runtime()?;
    let bar = progress_bar("restoring");
    let report = runtime.block_on(seglog_ship::restore_with_progress(
        store,
        &prefix,
        &args.dest,
        drive(&bar),
    ));
    bar.finish_and_clear();
    let report = report.map_err(|e| failed(e, &args.url))?;
    println!(
        "restored {} to {}: manifest {}, {} objects, {} bytes ({}); synced frontier {}",
        args.url,
        args.dest.display(),
        report.manifest,
        report.objects,
        report.bytes,
        size(report.bytes),
        frontier(report.synced),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "-1", "nan", "inf", "x", "100000"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
