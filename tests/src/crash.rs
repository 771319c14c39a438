//! A SIGKILL harness: the test binary runs itself again as a child process that runs one named
//! child test, kills it with SIGKILL after a random delay, and collects the operations the child
//! acknowledged before it died.
//!
//! The child test is an ordinary `#[test]` in the same file that returns at once unless
//! [`child`] finds it was started by [`Crasher::run_and_kill`]; it then opens the log in the
//! directory it is given and prints one [`ack`] line per operation, after the operation
//! returned. Each line goes to the pipe in one `write(2)` of far fewer than `PIPE_BUF` bytes, so a
//! kill lands between two lines, never inside one: every line the parent reads names an
//! operation that completed.
//!
//! `SEGLOG_CRASH_KILLS=N` sets how many kills a test runs ([`kills`]).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::SplitMix64;

/// The log directory a child runs in; set only in the child's environment.
const CHILD_DIR_ENV: &str = "SEGLOG_CRASH_CHILD_DIR";
/// Where a child starts (the test decides what that means); set only in the child's environment.
const CHILD_START_ENV: &str = "SEGLOG_CRASH_START";
/// How many kills a test runs, if set.
const KILLS_ENV: &str = "SEGLOG_CRASH_KILLS";

/// How many kills to run: `SEGLOG_CRASH_KILLS` if it is set to a number, else `default`.
pub fn kills(default: u64) -> u64 {
    std::env::var(KILLS_ENV)
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(default)
}

/// What a child process was started with.
#[derive(Debug, Clone)]
pub struct Child {
    /// The log directory, the same in every run of one [`Crasher`].
    pub dir: PathBuf,
    /// The `start` argument of [`Crasher::run_and_kill`].
    pub start: String,
}

/// In a child test: `Some` if this process is a child started by [`Crasher::run_and_kill`],
/// `None` in an ordinary test run (the child test then returns at once).
pub fn child() -> Option<Child> {
    let dir = std::env::var_os(CHILD_DIR_ENV)?;
    let start = std::env::var(CHILD_START_ENV).expect("a crash child is given where to start");
    Some(Child {
        dir: dir.into(),
        start,
    })
}

/// In a child: reports one acknowledged operation to the parent as the line `ack` followed by
/// `fields`, flushed before it returns. Safe to call from many threads: lines never interleave.
pub fn ack(fields: &[u64]) {
    let mut line = String::from("ack");
    for field in fields {
        line.push(' ');
        line.push_str(&field.to_string());
    }
    line.push('\n');
    // One `write_all` of a whole line: stdout's line buffering passes it on in one `write(2)`.
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).unwrap();
    out.flush().unwrap();
}

/// The parent side: one log directory, killed into again and again.
#[derive(Debug)]
pub struct Crasher {
    child_test: &'static str,
    dir: tempfile::TempDir,
    rng: SplitMix64,
    kill_after_ms: (u64, u64),
}

impl Crasher {
    /// A harness for the child test named `child_test` (a `#[test]` of this test binary) on a
    /// fresh log directory, killing each run after `kill_after_ms.0..=kill_after_ms.1`
    /// milliseconds, drawn from a generator seeded with `seed` (the same delays every time).
    pub fn new(child_test: &'static str, seed: u64, kill_after_ms: (u64, u64)) -> Self {
        Self {
            child_test,
            dir: tempfile::tempdir().unwrap(),
            rng: SplitMix64::new(seed),
            kill_after_ms,
        }
    }

    /// The log directory the children write.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the child test once with `start` (see [`Child::start`]), kills it with SIGKILL after
    /// a random delay, waits for it, and returns the fields of every `ack` line it printed, in
    /// the order it printed them (fields that are not numbers are left out).
    pub fn run_and_kill(&mut self, start: &str) -> Vec<Vec<u64>> {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--exact",
                self.child_test,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, self.dir.path())
            .env(CHILD_START_ENV, start)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        let (low, high) = self.kill_after_ms;
        let kill_after = Duration::from_millis(self.rng.range(low, high));
        let started = Instant::now();
        while started.elapsed() < kill_after {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader
            .join()
            .unwrap()
            .iter()
            .filter_map(|line| {
                // libtest prints `test <name> ... ` with no newline before the test's own
                // output, so the first ack shares its line: an ack starts at its `ack` token.
                let mut parts = line.split_whitespace().skip_while(|&p| p != "ack");
                parts.next()?;
                Some(parts.filter_map(|p| p.parse().ok()).collect())
            })
            .collect()
    }
}
