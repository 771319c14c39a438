//! `seglog ship DIR URL [--follow]` and `seglog restore URL DEST` (issue 18), as a user runs
//! them: a round trip through `file://` and through `s3://` on a moto server that restores every
//! key's exact bytes; a second ship that uploads nothing; `--follow` shipping what a program
//! wrote between rounds and stopping on SIGTERM or a closed stdin pipe; and the failures, each
//! one line with what to do and exit code 2: bad URLs, a log open in another process, an
//! unreachable endpoint, restoring into a non-empty directory or from a prefix nothing was
//! shipped to.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use seglog::{Log, Options};

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seglog"));
    command.args(args).stdin(Stdio::null());
    // Keep a developer's own AWS settings out of the tests.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command
}

fn seglog(args: &[&str]) -> Output {
    command(args).output().expect("run the seglog binary")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(args: &[&str]) -> String {
    let output = seglog(args);
    assert_eq!(code(&output), 0, "{args:?}: {}", stderr(&output));
    stdout(&output)
}

/// Fails with exit code 2 and one line on stderr containing `needle`; returns that line.
fn fails(args: &[&str], needle: &str) -> String {
    failing(&mut command(args), needle)
}

fn failing(command: &mut Command, needle: &str) -> String {
    let output = command.output().expect("run the seglog binary");
    let err = stderr(&output);
    assert_eq!(code(&output), 2, "{command:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{command:?}: one line: {err}");
    assert!(err.starts_with("seglog: "), "{err}");
    assert!(
        err.contains(needle),
        "{command:?}: {err:?} lacks {needle:?}"
    );
    err
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

type Contents = BTreeMap<Vec<u8>, Vec<u8>>;

/// Every live key and its value.
fn contents(log: &Log) -> Contents {
    log.pin()
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

/// A closed log of several 16 KiB segments (sealed ones and a frontier one): keys overwritten,
/// removed, binary values of many lengths. Returns its contents.
fn make_log(dir: &Path, keys: u32) -> Contents {
    let log = Log::open_with(dir, Options::default().segment_bytes(16 * 1024)).unwrap();
    for i in 0..keys {
        let value: Vec<u8> = (0..(i % 97) * 3).map(|j| (i * 31 + j) as u8).collect();
        log.put(format!("key-{i}").as_bytes(), &value).unwrap();
    }
    for i in (0..keys).step_by(7) {
        log.put(format!("key-{i}").as_bytes(), &[0xFF, 0, i as u8])
            .unwrap();
    }
    for i in (0..keys).step_by(11) {
        log.remove(format!("key-{i}").as_bytes()).unwrap();
    }
    let contents = contents(&log);
    log.close().unwrap();
    contents
}

/// Opens a restored log and checks it holds exactly `expected`, by iteration and by get.
fn assert_restored(dir: &Path, expected: &Contents) {
    let log = Log::open_with(dir, Options::default().read_only(true)).unwrap();
    assert_eq!(&contents(&log), expected);
    for (key, value) in expected {
        assert_eq!(log.get(key).as_deref(), Some(&value[..]));
    }
    assert!(log.get(b"key-0").is_none(), "removed keys stay removed");
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// The `N objects` and `manifest N` of a ship summary line.
fn uploaded(summary: &str) -> (u64, u64) {
    let number_after = |word: &str| -> u64 {
        let at = summary
            .find(word)
            .unwrap_or_else(|| panic!("{word} in {summary}"))
            + word.len();
        summary[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let objects = summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" objects").map(|n| n.parse().unwrap()))
        .unwrap_or_else(|| panic!("objects in {summary}"));
    (number_after("manifest "), objects)
}

#[test]
fn file_url_round_trip_restores_every_key_and_a_second_ship_uploads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let expected = make_log(&dir, 1500);
    assert!(
        std::fs::read_dir(&dir).unwrap().count() > 4,
        "several segments"
    );
    let remote = tmp.path().join("remote").join("nested");
    let url = file_url(&remote);

    let first = ok(&["ship", dir.to_str().unwrap(), &url]);
    assert_eq!(first.lines().count(), 1, "{first}");
    assert!(first.starts_with("shipped "), "{first}");
    let (manifest, objects) = uploaded(&first);
    assert_eq!(manifest, 1, "{first}");
    assert!(objects > 4, "{first}");
    assert!(first.contains("synced frontier segment "), "{first}");
    let shipped = tree(&remote);

    let second = ok(&["ship", dir.to_str().unwrap(), &url]);
    assert_eq!(uploaded(&second), (1, 0), "{second}");
    assert!(second.contains("(unchanged)"), "{second}");
    assert_eq!(
        tree(&remote),
        shipped,
        "a second ship changes nothing remotely"
    );

    let dest = tmp.path().join("restored");
    let restored = ok(&["restore", &url, dest.to_str().unwrap()]);
    assert!(restored.starts_with("restored "), "{restored}");
    assert!(
        restored.contains("manifest 1, ")
            && restored.contains(&format!("{objects} objects"))
            && restored.contains("synced frontier segment "),
        "{restored}"
    );
    assert_restored(&dest, &expected);

    // An empty destination directory is fine too; the restore made from it opens the same.
    let empty = tmp.path().join("empty-dest");
    std::fs::create_dir(&empty).unwrap();
    ok(&["restore", &url, empty.to_str().unwrap()]);
    assert_restored(&empty, &expected);

    // Shipping changed nothing in the log's directory.
    let log = Log::open(&dir).unwrap();
    assert_eq!(contents(&log), expected);
}

#[test]
fn bad_urls_are_usage_errors_that_say_what_to_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    make_log(&dir, 50);
    let d = dir.to_str().unwrap();
    let dest = tmp.path().join("dest");
    let r = dest.to_str().unwrap();
    for (url, needle) in [
        ("/tmp/somewhere", "write file:///tmp/somewhere"),
        ("bucket/prefix", "s3://BUCKET/PREFIX"),
        ("gs://bucket/prefix", "unsupported scheme gs://"),
        ("https://example.invalid/x", "unsupported scheme https://"),
        ("s3://", "no bucket"),
        ("s3://bucket/a//b", "not a valid object path"),
        ("s3://bucket/p?region=eu", "no query"),
        ("file://relative/dir", "three slashes"),
    ] {
        let line = fails(&["ship", d, url], needle);
        assert!(line.contains(url), "{line}");
        fails(&["restore", url, r], needle);
    }
    assert!(!dest.exists());
    // A plain-http endpoint without AWS_ALLOW_HTTP=true.
    failing(
        command(&["ship", d, "s3://bucket/p"]).env("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        "AWS_ALLOW_HTTP=true",
    );
    // Usage: missing arguments, --interval without --follow, a bad interval.
    for args in [
        &["ship", d][..],
        &["restore", "file:///x"],
        &["ship", d, "file:///x", "--interval", "2"],
        &["ship", d, "file:///x", "--follow", "--interval", "0"],
    ] {
        assert_eq!(code(&seglog(args)), 2, "{args:?}");
    }
}

#[test]
fn restore_refuses_a_non_empty_dest_and_an_empty_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    make_log(&dir, 200);
    let url = file_url(&tmp.path().join("remote"));
    ok(&["ship", dir.to_str().unwrap(), &url]);

    let dest = tmp.path().join("busy");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("precious"), b"keep me").unwrap();
    fails(&["restore", &url, dest.to_str().unwrap()], "not empty");
    assert_eq!(std::fs::read(dest.join("precious")).unwrap(), b"keep me");
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 1);
    fails(
        &["restore", &url, dest.join("precious").to_str().unwrap()],
        "is a file",
    );

    let nothing = file_url(&tmp.path().join("nothing-here"));
    let fresh = tmp.path().join("fresh");
    let line = fails(
        &["restore", &nothing, fresh.to_str().unwrap()],
        "no seglog manifest under",
    );
    assert!(line.contains(&nothing), "{line}");
    assert!(!fresh.exists(), "a failed restore leaves no destination");

    // Not a log to ship: a missing directory, an empty one.
    fails(
        &["ship", tmp.path().join("none").to_str().unwrap(), &url],
        "no such directory",
    );
    fails(
        &[
            "ship",
            fresh.parent().unwrap().join("busy").to_str().unwrap(),
            &url,
        ],
        "not a seglog directory",
    );
}

#[test]
fn a_log_open_in_another_process_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    make_log(&dir, 200);
    let writer = Log::open(&dir).unwrap(); // this test process is the other process
    writer.put(b"late", b"write").unwrap();
    let before = tree(&dir);
    let remote = tmp.path().join("remote");
    let url = file_url(&remote);
    for follow in [false, true] {
        let mut args = vec!["ship", dir.to_str().unwrap(), &url];
        if follow {
            args.push("--follow");
        }
        let line = fails(&args, "is open in another process");
        assert!(line.contains("seglog_ship::Shipper"), "{line}");
    }
    assert_eq!(tree(&dir), before);
    assert!(tree(&remote).is_empty(), "nothing shipped");
    drop(writer);
}

#[test]
fn an_unreachable_endpoint_fails_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    make_log(&dir, 50);
    // A port nobody listens on: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let aws = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let start = Instant::now();
    failing(
        command(&["ship", dir.to_str().unwrap(), "s3://bucket/prefix"]).envs(aws),
        "cannot reach the object store",
    );
    let dest = tmp.path().join("dest");
    failing(
        command(&["restore", "s3://bucket/prefix", dest.to_str().unwrap()]).envs(aws),
        "cannot reach the object store",
    );
    assert!(
        start.elapsed() < Duration::from_secs(40),
        "{:?}",
        start.elapsed()
    );
    assert!(!dest.exists());
}

/// Runs `seglog ship --follow` with a piped stdin; its stdout is read by a thread.
struct Follower {
    child: Child,
    out: std::sync::mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Follower {
    fn start(dir: &Path, url: &str, env: &[(&str, String)]) -> Follower {
        let mut child = command(&[
            "ship",
            dir.to_str().unwrap(),
            url,
            "--follow",
            "--interval",
            "0.1",
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, out) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                while let Some(at) = text.find('\n') {
                    let line: String = text.drain(..=at).collect();
                    if tx.send(line.trim_end().to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        Follower {
            child,
            out,
            lines: Vec::new(),
        }
    }

    /// Waits (up to 20 s) for a summary line naming `manifest N`.
    fn wait_for_manifest(&mut self, n: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self
                .lines
                .iter()
                .find(|l| uploaded(l).0 == n && !l.contains("(unchanged)"))
            {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(line) => self.lines.push(line),
                Err(_) => panic!("no manifest {n} in 20 s: {:?}", self.lines),
            }
        }
    }

    /// The next line of output (within 20 s).
    fn next_line(&mut self) -> String {
        let line = self
            .out
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no output in 20 s: {:?}", self.lines));
        self.lines.push(line.clone());
        line
    }

    /// Waits for the exit; returns its code and stderr.
    fn wait(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the follower did not stop within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.code().expect("exited, not killed"), err)
    }
}

/// Sends `signal` to `child`.
fn send(child: &Child, signal: i32) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped; no memory
    // is touched.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Opens the log writable as a program would; the follower may hold it read-only for a round,
/// so a refusal is retried briefly.
fn open_writable(dir: &Path) -> Log {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Log::open(dir) {
            Ok(log) => return log,
            Err(seglog::Error::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A program that opens the log, writes `n` keys from `from` and closes it.
fn write_more(dir: &Path, from: u32, n: u32, expected: &mut Contents) {
    let log = open_writable(dir);
    for i in from..from + n {
        let key = format!("more-{i}").into_bytes();
        let value = vec![i as u8; 40 + (i % 50) as usize];
        log.put(&key, &value).unwrap();
        expected.insert(key, value);
    }
    log.close().unwrap();
}

#[test]
fn follow_ships_each_closed_state_and_stops_on_sigterm_or_stdin_closing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut expected = make_log(&dir, 300);
    let url = file_url(&tmp.path().join("remote"));

    let mut follower = Follower::start(&dir, &url, &[]);
    follower.wait_for_manifest(1);
    write_more(&dir, 0, 100, &mut expected);
    follower.wait_for_manifest(2);
    write_more(&dir, 100, 400, &mut expected); // rolls over into new segments
    follower.wait_for_manifest(3);
    // A program holds the log open for a while: the rounds wait (one note), then ship what it
    // wrote once it closes the log.
    let writer = open_writable(&dir);
    for i in 0..50u32 {
        let key = format!("held-{i}").into_bytes();
        writer
            .put(&key, b"written while the follower waits")
            .unwrap();
        expected.insert(key, b"written while the follower waits".to_vec());
    }
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        follower.child.try_wait().unwrap().is_none(),
        "still following"
    );
    writer.close().unwrap();
    follower.wait_for_manifest(4);
    send(&follower.child, libc::SIGTERM);
    let (code, err) = follower.wait();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("stopped following (SIGTERM)"), "{err}");
    assert_eq!(
        err.matches("is open in another process; waiting for it to be closed")
            .count(),
        1,
        "{err}"
    );
    let dest = tmp.path().join("restored");
    ok(&["restore", &url, dest.to_str().unwrap()]);
    assert_restored(&dest, &expected);

    // Closing its stdin pipe stops it too, after a last round for what changed meanwhile.
    let mut follower = Follower::start(&dir, &url, &[]);
    let first = follower.next_line();
    assert_eq!(uploaded(&first), (4, 0), "{first}");
    write_more(&dir, 500, 10, &mut expected);
    drop(follower.child.stdin.take());
    let (code, err) = follower.wait();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("stopped following (standard input closed)"),
        "{err}"
    );
    let dest = tmp.path().join("restored-again");
    let line = ok(&["restore", &url, dest.to_str().unwrap()]);
    assert!(line.contains("manifest 5, "), "{line}");
    assert_restored(&dest, &expected);
}

#[test]
fn s3_round_trip_on_moto() {
    let moto = seglog_tests::moto::Moto::start();
    let env = moto.env();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut expected = make_log(&dir, 1500);
    let url = format!("s3://{}/backups/log-1", moto.bucket());
    let run = |args: &[&str]| {
        let output = command(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert_eq!(code(&output), 0, "{args:?}: {}", stderr(&output));
        stdout(&output)
    };
    let d = dir.to_str().unwrap();
    let first = run(&["ship", d, &url]);
    let (_, objects) = uploaded(&first);
    assert!(objects > 4, "{first}");
    assert_eq!(uploaded(&run(&["ship", d, &url])), (1, 0));
    let dest = tmp.path().join("restored");
    let line = run(&["restore", &url, dest.to_str().unwrap()]);
    assert!(line.contains(&format!("{objects} objects")), "{line}");
    assert_restored(&dest, &expected);

    // --follow against S3, then a restore of what it shipped.
    let mut follower = Follower::start(&dir, &url, &env);
    assert_eq!(uploaded(&follower.next_line()), (1, 0));
    write_more(&dir, 0, 300, &mut expected);
    follower.wait_for_manifest(2);
    send(&follower.child, libc::SIGINT);
    let (code, err) = follower.wait();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("SIGINT"), "{err}");
    let dest = tmp.path().join("restored-2");
    run(&["restore", &url, dest.to_str().unwrap()]);
    assert_restored(&dest, &expected);

    // An empty prefix and a missing bucket are errors that say so.
    let empty = format!("s3://{}/nothing", moto.bucket());
    failing(
        command(&["restore", &empty, tmp.path().join("x").to_str().unwrap()])
            .envs(env.iter().map(|(k, v)| (k, v))),
        "no seglog manifest under",
    );
    failing(
        command(&["ship", d, "s3://no-such-bucket/p"]).envs(env.iter().map(|(k, v)| (k, v))),
        "the bucket no-such-bucket does not exist at http://127.0.0.1:",
    );
}

#[test]
fn an_empty_log_ships_no_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    Log::open(&dir).unwrap().close().unwrap();
    let url = file_url(&tmp.path().join("remote"));
    let line = ok(&["ship", dir.to_str().unwrap(), &url]);
    assert!(line.contains("nothing yet, manifest 0"), "{line}");
    fails(
        &["restore", &url, tmp.path().join("dest").to_str().unwrap()],
        "no seglog manifest under",
    );
}
