//! A TCP proxy for HTTP/1.1 in front of a server (moto, see [`crate::moto`]) that can be told
//! to fail: answer the next N requests with `503 Service Unavailable`, reset connections,
//! refuse them (nothing listens on its port), or lose the responses of requests that took
//! effect, for every request or only for those matching a method and a pattern (say, the PUTs
//! of manifests), then forward again.
//!
//! Every connection carries one request: the proxy reads the request's head, forwards it to the
//! server with `Connection: close` and relays the rest both ways until the server closes, so a
//! client opens a new connection per request and each request meets the proxy's state at the
//! time it is sent. Threads are std threads, one per connection plus the listener; every
//! socket has read and write timeouts, so nothing waits forever, and dropping the proxy stops
//! the listener.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a proxied socket may sit idle before the proxy gives up on it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the listener looks at the state while no connection arrives.
const POLL: Duration = Duration::from_millis(2);

/// What the proxy does with the next connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward to the server.
    Forward,
    /// Read the request and answer `HTTP/1.1 503 Service Unavailable` with `Connection: close`.
    ServiceUnavailable,
    /// Accept and close at once, before reading anything (the client sees a reset or an
    /// unexpected end of file).
    Reset,
    /// Stop listening: connecting is refused (`ECONNREFUSED`). (As a rule's fault, a request
    /// already connected is reset instead.)
    Refuse,
    /// Forward the request, let the server answer it, and close the connection without
    /// relaying the answer: the request took effect but its response is lost.
    DropResponse,
}

/// Counts of what the proxy did, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests forwarded to the server.
    pub forwarded: u64,
    /// Requests answered with 503.
    pub unavailable: u64,
    /// Connections accepted and closed at once.
    pub reset: u64,
    /// Requests forwarded whose responses were dropped.
    pub dropped: u64,
}

#[derive(Debug)]
struct State {
    /// The faults for the next connections, in order; `then` once they are used up.
    queue: std::collections::VecDeque<Fault>,
    then: Fault,
    /// Faults for requests whose request line (`PUT /bucket/key?query HTTP/1.1`) contains a
    /// pattern, each for a number of requests.
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    method: String,
    pattern: String,
    left: usize,
    fault: Fault,
}

impl State {
    /// The fault of the first rule matching `request_line`, used up by one.
    fn rule_for(&mut self, request_line: &str) -> Option<Fault> {
        let method = request_line.split(' ').next().unwrap_or_default();
        let rule = self.rules.iter_mut().find(|r| {
            r.left > 0
                && (r.method.is_empty() || r.method == method)
                && request_line.contains(&r.pattern)
        })?;
        rule.left -= 1;
        Some(rule.fault)
    }
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    forwarded: AtomicU64,
    unavailable: AtomicU64,
    reset: AtomicU64,
    dropped: AtomicU64,
}

/// A running proxy; it stops listening when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shared: Arc<Shared>,
    listener: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on a free port of 127.0.0.1 forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the fault proxy");
        let addr = listener.local_addr().expect("the fault proxy's address");
        let state = Arc::new(Mutex::new(State {
            queue: Default::default(),
            then: Fault::Forward,
            rules: Vec::new(),
        }));
        let shared = Arc::new(Shared::default());
        let thread = {
            let (state, shared) = (Arc::clone(&state), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("fault-proxy".into())
                .spawn(move || listen(Some(listener), addr, upstream, &state, &shared))
                .expect("the fault proxy's thread")
        };
        FaultProxy {
            addr,
            state,
            shared,
            listener: Some(thread),
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on every connection meets `fault` (forgets queued faults).
    pub fn set(&self, fault: Fault) {
        let mut state = self.lock();
        state.queue.clear();
        state.then = fault;
        drop(state);
        self.settle();
    }

    /// Forward every connection from now on.
    pub fn forward(&self) {
        self.set(Fault::Forward);
    }

    /// Refuse every connection from now on (nothing listens on the port).
    pub fn refuse(&self) {
        self.set(Fault::Refuse);
    }

    /// The next `n` connections (requests) meet `fault`, those after them what was set before.
    pub fn next(&self, n: usize, fault: Fault) {
        let mut state = self.lock();
        state.queue.extend(std::iter::repeat_n(fault, n));
        drop(state);
        self.settle();
    }

    /// The next `n` requests are answered with 503.
    pub fn fail_next(&self, n: usize) {
        self.next(n, Fault::ServiceUnavailable);
    }

    /// The next `n` requests with method `method` (any if empty) whose request line contains
    /// `pattern` meet `fault`, whatever the connection's fault (a `Refuse` resets them).
    /// Example: `proxy.on_requests("PUT", "/manifests/", 5, Fault::ServiceUnavailable)`.
    pub fn on_requests(&self, method: &str, pattern: &str, n: usize, fault: Fault) {
        self.lock().rules.push(Rule {
            method: method.to_owned(),
            pattern: pattern.to_owned(),
            left: n,
            fault,
        });
    }

    /// Forgets every rule of [`FaultProxy::on_requests`].
    pub fn clear_rules(&self) {
        self.lock().rules.clear();
    }

    /// Requests rules of [`FaultProxy::on_requests`] still apply to.
    pub fn rules_left(&self) -> usize {
        self.lock().rules.iter().map(|r| r.left).sum()
    }

    /// Faults still queued by [`FaultProxy::next`].
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// What the proxy did so far.
    pub fn counts(&self) -> Counts {
        Counts {
            forwarded: self.shared.forwarded.load(Ordering::SeqCst),
            unavailable: self.shared.unavailable.load(Ordering::SeqCst),
            reset: self.shared.reset.load(Ordering::SeqCst),
            dropped: self.shared.dropped.load(Ordering::SeqCst),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the listener time to close or reopen its port after a change, so the next request
    /// meets the new state.
    fn settle(&self) {
        std::thread::sleep(POLL * 5);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.listener.take() {
            let _ = thread.join();
        }
    }
}

/// The listener's loop: accepts while the state is not `Refuse`, closes the port while it is,
/// and binds it again after.
fn listen(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    upstream: SocketAddr,
    state: &Arc<Mutex<State>>,
    shared: &Arc<Shared>,
) {
    while !shared.stop.load(Ordering::SeqCst) {
        let refusing = {
            let state = state.lock().unwrap_or_else(|e| e.into_inner());
            *state.queue.front().unwrap_or(&state.then) == Fault::Refuse
        };
        if refusing {
            if let Some(listener) = listener.take() {
                drop(listener);
            }
            if state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .queue
                .pop_front()
                .is_some()
            {
                // A queued refusal stands for one attempt: about one retry's backoff.
                std::thread::sleep(Duration::from_millis(20));
            } else {
                std::thread::sleep(POLL);
            }
            continue;
        }
        let Some(open) = listener.as_ref() else {
            // Bind the same port again (std sets SO_REUSEADDR); another process may have taken
            // it meanwhile, then try again shortly.
            listener = TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .ok();
            if listener.is_none() {
                std::thread::sleep(POLL);
            }
            continue;
        };
        open.set_nonblocking(true).expect("a non-blocking listener");
        match open.accept() {
            Ok((client, _)) => {
                let fault = {
                    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                    let then = state.then;
                    state.queue.pop_front().unwrap_or(then)
                };
                let shared = Arc::clone(shared);
                let state = Arc::clone(state);
                let _ = std::thread::Builder::new()
                    .name("fault-proxy-conn".into())
                    .spawn(move || serve(client, upstream, fault, &state, &shared));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Serves one connection with `fault` (or a rule's, once its request is read).
fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    state: &Mutex<State>,
    shared: &Shared,
) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    let _ = client.set_write_timeout(Some(IO_TIMEOUT));
    let _ = client.set_nodelay(true);
    if matches!(fault, Fault::Reset | Fault::Refuse) {
        reset(client, shared);
        return;
    }
    let Ok((head, rest)) = read_head(&mut client) else {
        return;
    };
    let request_line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let fault = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .rule_for(&request_line)
        .unwrap_or(fault);
    match fault {
        Fault::Reset | Fault::Refuse => reset(client, shared),
        Fault::ServiceUnavailable => {
            shared.unavailable.fetch_add(1, Ordering::SeqCst);
            unavailable(client, &head, rest);
        }
        Fault::Forward => {
            shared.forwarded.fetch_add(1, Ordering::SeqCst);
            let _ = forward(client, upstream, &head, rest, true);
        }
        Fault::DropResponse => {
            shared.dropped.fetch_add(1, Ordering::SeqCst);
            let _ = forward(client, upstream, &head, rest, false);
        }
    }
}

/// Closes `client` with a reset (SO_LINGER 0), not an orderly end.
fn reset(client: TcpStream, shared: &Shared) {
    shared.reset.fetch_add(1, Ordering::SeqCst);
    set_linger_zero(&client);
    drop(client);
}

/// Drains the request's `Content-Length` body and answers 503.
fn unavailable(mut client: TcpStream, head: &[u8], mut rest: Vec<u8>) {
    // Drain the body, so closing does not reset the connection under the response.
    let mut left = content_length(head).unwrap_or(0).saturating_sub(rest.len());
    rest.clear();
    let mut buf = [0u8; 64 * 1024];
    while left > 0 {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ServiceUnavailable</Code>\
                <Message>injected by the fault proxy</Message></Error>";
    let _ = write!(
        client,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.flush();
    let _ = client.shutdown(Shutdown::Both);
}

/// Forwards one request (its head already read) with `Connection: close` and relays the
/// answer until the server closes; with `relay` false, reads the answer and resets the client
/// instead.
fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    head: &[u8],
    rest: Vec<u8>,
    relay: bool,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))?;
    server.set_read_timeout(Some(IO_TIMEOUT))?;
    server.set_write_timeout(Some(IO_TIMEOUT))?;
    server.set_nodelay(true)?;
    server.write_all(&with_connection_close(head))?;
    server.write_all(&rest)?;
    // The body's remainder, client to server, on another thread; the response back here.
    let (mut from_client, mut to_server) = (client.try_clone()?, server.try_clone()?);
    // A request with neither length nor chunked encoding has no body.
    let chunked = String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body_left = match content_length(head) {
        Some(n) => Some(n.saturating_sub(rest.len())),
        None if chunked => None,
        None => Some(0),
    };
    let upload = std::thread::Builder::new()
        .name("fault-proxy-up".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = body_left.unwrap_or(usize::MAX);
            while left > 0 {
                match from_client.read(&mut buf[..left.min(64 * 1024)]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        left -= n;
                        if to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        })?;
    if !relay {
        // The server answers once it has the whole request, then closes (Connection: close).
        let copied = std::io::copy(&mut server, &mut std::io::sink());
        set_linger_zero(&client);
        if body_left.is_some() {
            // The body was all read: the thread is done with its handle of the socket, and
            // closing the last one resets the connection.
            let _ = upload.join();
            drop(client);
        } else {
            let _ = client.shutdown(Shutdown::Both);
            drop(client);
            let _ = upload.join();
        }
        return copied.map(|_| ());
    }
    let copied = std::io::copy(&mut server, &mut client);
    let _ = client.flush();
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = upload.join();
    copied.map(|_| ())
}

/// Reads up to the end of a request's head (`\r\n\r\n`); returns the head and the bytes read
/// after it.
fn read_head(stream: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut data = Vec::with_capacity(4096);
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = data.split_off(end + 4);
            return Ok((data, rest));
        }
        if data.len() > 1 << 20 {
            return Err(std::io::Error::other("request head over 1 MiB"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
    }
}

/// The head's `Content-Length`, if it has one.
fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

/// The head with any `Connection` header replaced by `Connection: close`.
fn with_connection_close(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let is_connection = line
            .split_once(':')
            .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("connection"));
        if !is_connection {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this function borrows, with a pointer to a local of the
    // size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
