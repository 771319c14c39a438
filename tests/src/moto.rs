//! A real S3-compatible server for tests: moto's server mode (`moto_server`, from the Python
//! package `moto[server]`), started on 127.0.0.1 on a free port, with a bucket made for the test,
//! killed when the [`Moto`] is dropped.
//!
//! ```no_run
//! let moto = seglog_tests::moto::Moto::start();
//! let store = moto.store(); // Arc<dyn ObjectStore> on the test's bucket
//! // for a child process (the CLI): the usual environment of object_store's S3 builder
//! let mut cli = std::process::Command::new("seglog");
//! cli.envs(moto.env());
//! ```
//!
//! No orphan servers: the server is started in its own process group, from one spawner thread
//! that lives as long as the test process, with `PR_SET_PDEATHSIG` = `SIGKILL`, so it dies with
//! the test process however that ends (a panic drops the [`Moto`] and kills the group; a
//! SIGKILL or an abort of the test process kills the server through the death signal).
//!
//! `SEGLOG_MOTO_SERVER` names another `moto_server` executable; by default `moto_server` is
//! looked up on `PATH`, and if it is not there, `python3 -m moto.server` is run. Install it
//! with `pip install 'moto[server]'` (`scripts/test-all.sh` does).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

/// How long the server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The credentials every test store and child process uses (moto accepts any).
pub const ACCESS_KEY_ID: &str = "seglog-test-key";
/// See [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "seglog-test-secret";
/// The region of every test store.
pub const REGION: &str = "us-east-1";

/// A running moto server with one bucket; the server is killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Option<Child>,
    addr: SocketAddr,
    bucket: String,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Moto {
    /// Starts a server on a free port of 127.0.0.1 and creates a bucket on it. Panics, with the
    /// server's output, if it does not answer within 30 s; panics with how to install it if
    /// `moto_server` is not found.
    pub fn start() -> Moto {
        let program =
            std::env::var_os("SEGLOG_MOTO_SERVER").unwrap_or_else(|| "moto_server".into());
        let log_dir = tempfile::tempdir().expect("a temporary directory for moto's output");
        // The free port is found by binding port 0 and letting it go: another process may take
        // it in between, so a server that exits at once is started again on another port.
        let mut last_failure = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let log = log_dir.path().join(format!("moto-{attempt}.log"));
            let mut child = spawn(&program, port, &log);
            let output = || std::fs::read_to_string(&log).unwrap_or_default();
            match wait_until_answering(&mut child, addr) {
                Ok(()) => {
                    let mut moto = Moto {
                        child: Some(child),
                        addr,
                        bucket: String::new(),
                        log,
                        _log_dir: log_dir,
                    };
                    moto.bucket = moto.create_bucket_numbered();
                    return moto;
                }
                Err(Exited(status)) => {
                    last_failure = format!(
                        "moto_server on port {port} exited with {status}; its output:\n{}",
                        output()
                    );
                }
                Err(TimedOut) => {
                    kill_group(child);
                    panic!(
                        "moto_server on {addr} did not answer within {START_TIMEOUT:?}; its \
                         output:\n{}",
                        output()
                    )
                }
            }
        }
        panic!("moto_server did not start in 3 attempts ({INSTALL}); the last:\n{last_failure}")
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bucket made for this server's test.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// An object store on this server's bucket, with short retries (see [`s3_store`]).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        s3_store(&self.endpoint(), &self.bucket)
    }

    /// The environment a child process (the CLI) needs to reach this server with
    /// `object_store`'s S3 builder read from the environment: endpoint, credentials, region and
    /// plain http allowed.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        env_for(&self.endpoint())
    }

    /// Creates another bucket named `name` (3 to 63 lowercase letters, digits and hyphens).
    /// Panics if the server refuses.
    pub fn create_bucket(&self, name: &str) {
        let response = http(self.addr, "PUT", &format!("/{name}"))
            .unwrap_or_else(|e| panic!("creating bucket {name} on {}: {e}", self.addr));
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "creating bucket {name} on {}: {}; moto's output:\n{}",
            self.addr,
            response.lines().next().unwrap_or_default(),
            self.output()
        );
    }

    /// The server's output so far (its request log and any error), for a failure message.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(unreadable: {e})"))
    }

    /// A fresh bucket name, distinct in this process.
    fn create_bucket_numbered(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "seglog-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.create_bucket(&name);
        name
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            kill_group(child);
        }
    }
}

/// Kills the process group `child` leads (it was made a group leader at spawn) and reaps it.
fn kill_group(mut child: Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on the process group of a child this module started; no memory is touched.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until the server at `addr` answers a request, or exits, or [`START_TIMEOUT`] passes.
fn wait_until_answering(child: &mut Child, addr: SocketAddr) -> Result<(), StartFailure> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("moto_server's status") {
            return Err(Exited(status));
        }
        if http(addr, "GET", "/").is_ok_and(|r| r.starts_with("HTTP/1.")) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(TimedOut);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

use StartFailure::{Exited, TimedOut};
enum StartFailure {
    Exited(std::process::ExitStatus),
    TimedOut,
}

/// An S3 object store on `bucket` at `endpoint` (`http://host:port`), path-style, fake
/// credentials, and retries short enough that a failure test ends in about a second: 3 retries,
/// 10-100 ms backoff, 3 s retry timeout, 2 s connect and 10 s request timeouts.
pub fn s3_store(endpoint: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        s3_builder(endpoint, bucket)
            .build()
            .unwrap_or_else(|e| panic!("S3 store on {endpoint}/{bucket}: {e}")),
    )
}

/// The builder [`s3_store`] builds, for a test that changes a setting.
pub fn s3_builder(endpoint: &str, bucket: &str) -> AmazonS3Builder {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_allow_http(true)
        .with_access_key_id(ACCESS_KEY_ID)
        .with_secret_access_key(SECRET_ACCESS_KEY)
        .with_region(REGION)
        .with_virtual_hosted_style_request(false)
        .with_retry(short_retry())
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(true)
                .with_connect_timeout(Duration::from_secs(2))
                .with_timeout(Duration::from_secs(10)),
        )
}

/// The retry configuration of [`s3_store`].
pub fn short_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(3),
    }
}

/// The environment of a child process reaching an S3 endpoint (see [`Moto::env`]).
pub fn env_for(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ENDPOINT", endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_DEFAULT_REGION", REGION.to_owned()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
    ]
}

/// A port of 127.0.0.1 free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Starts `moto_server` through the spawner thread (see the module docs).
fn spawn(program: &std::ffi::OsStr, port: u16, log: &std::path::Path) -> Child {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("moto-spawner".into())
            .spawn(move || {
                // This thread never returns while the process runs, so the death signal (sent
                // when the thread that forked the child exits) comes only with the process.
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the moto spawner thread");
        Mutex::new(tx)
    });
    // `moto_server`, or the same server as a module of the Python on PATH (pip may put the
    // script where PATH does not look).
    let candidates: Vec<(std::ffi::OsString, Vec<&str>)> = if program == "moto_server" {
        vec![
            (program.to_owned(), vec![]),
            ("python3".into(), vec!["-m", "moto.server"]),
        ]
    } else {
        vec![(program.to_owned(), vec![])]
    };
    for (candidate, pre_args) in &candidates {
        let out = std::fs::File::create(log).expect("moto's output file");
        let err = out.try_clone().expect("moto's output file");
        let mut command = Command::new(candidate);
        command
            .args(pre_args)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env("PYTHONUNBUFFERED", "1");
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it runs in
            // the forked child before exec.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let (reply, result) = mpsc::channel();
        spawner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((command, reply))
            .expect("the moto spawner thread runs");
        match result.recv().expect("the moto spawner thread answers") {
            Ok(child) => return child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("starting `{}`: {e}", candidate.to_string_lossy()),
        }
    }
    panic!(
        "`{}` not found: {INSTALL}, or set SEGLOG_MOTO_SERVER to its path",
        program.to_string_lossy()
    )
}

/// How to get moto's server, for a failure message.
const INSTALL: &str = "the S3 tests need moto's server mode: install it with \
                       `pip install 'moto[server]'` (scripts/test-all.sh does)";

/// One plain HTTP/1.1 request with an empty body; returns the whole response as text.
fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}
