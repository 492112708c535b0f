//! Shared test harness: starts the real binary on free ports and talks
//! HTTP/1.1 to it over plain sockets, as a user's client would.
#![allow(dead_code)]

pub mod api_cases;

use distributed_counter::testkit::Process;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Longest a test waits for the server to come up or for a condition.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_distributed-counter")
}

/// A running server process; killed when dropped.
pub struct Server {
    process: Process,
    pub addr: SocketAddr,
    pub node_addrs: Vec<SocketAddr>,
}

impl Server {
    /// Starts with `--listen 127.0.0.1:0 --node-port 0` and `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        Self::try_start(extra).unwrap_or_else(|log| panic!("server did not start:\n{log}"))
    }

    pub fn try_start(extra: &[&str]) -> Result<Server, String> {
        let mut command = Command::new(binary());
        command
            .args(["--listen", "127.0.0.1:0", "--node-port", "0"])
            .args(extra);
        Self::spawn(command, extra)
    }

    /// Starts with at most `open_files` file descriptors (`ulimit -n`).
    pub fn start_with_file_limit(open_files: u32, extra: &[&str]) -> Server {
        let mut command = Command::new("sh");
        command
            .args([
                "-c",
                &format!("ulimit -n {open_files} && exec \"$0\" \"$@\""),
            ])
            .arg(binary())
            .args(["--listen", "127.0.0.1:0", "--node-port", "0"])
            .args(extra);
        Self::spawn(command, extra).unwrap_or_else(|log| panic!("server did not start:\n{log}"))
    }

    fn spawn(command: Command, extra: &[&str]) -> Result<Server, String> {
        let process = Process::spawn(command, node_count(extra), PATIENCE)?;
        Ok(Server {
            addr: process.addr,
            node_addrs: process.node_addrs.clone(),
            process,
        })
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// One request on a fresh connection.
    pub fn call(&self, method: &str, path: &str, body: &str) -> Reply {
        self.client().call(method, path, body)
    }

    pub fn post_items(&self, items: &Value) -> Reply {
        self.call("POST", "/items", &items.to_string())
    }

    pub fn count(&self, tenant: &str) -> u64 {
        let reply = self.call("GET", &format!("/items/{tenant}/count"), "");
        assert_eq!(reply.status, 200, "count of {tenant}: {}", reply.text());
        reply.json()["counter"]
            .as_u64()
            .expect("counter is a number")
    }

    pub fn nodes(&self) -> Vec<Value> {
        let reply = self.call("GET", "/nodes", "");
        assert_eq!(reply.status, 200);
        reply
            .json()
            .as_array()
            .cloned()
            .expect("/nodes is an array")
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The log once it holds `needle` (lines reach it through a pipe, maybe
    /// after the answer to the request that logged them), or after
    /// [`PATIENCE`].
    pub fn log_once(&self, needle: &str) -> String {
        self.process.log_once(needle, PATIENCE)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `kill -9`: the process dies at once, wherever it is.
    pub fn kill9(mut self) {
        self.process.child.kill().expect("SIGKILL is delivered");
        self.process.child.wait().expect("the process is reaped");
    }

    /// Sends a signal (by name, e.g. "INT") and waits for the exit.
    pub fn signal_and_wait(mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let pid = self.pid().to_string();
        thread::scope(|scope| {
            let (exited, exit) = std::sync::mpsc::channel();
            let child = &mut self.process.child;
            scope.spawn(move || exited.send(child.wait().expect("wait works")));
            exit.recv_timeout(PATIENCE).unwrap_or_else(|_| {
                let _ = Command::new("kill").args(["-9", &pid]).status();
                panic!("no exit within {PATIENCE:?} after SIG{signal}");
            })
        })
    }
}

fn node_count(extra: &[&str]) -> usize {
    let redis = extra
        .windows(2)
        .any(|pair| pair[0] == "--store" && pair[1].starts_with("redis-cluster://"));
    if redis {
        // Redis nodes are announced as "redis node N ...", not counted.
        return 0;
    }
    extra
        .iter()
        .position(|flag| *flag == "--nodes")
        .and_then(|i| extra.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(4)
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Asserts a KO answer with `status` whose message contains each of `words`.
    pub fn assert_ko(&self, status: u16, words: &[&str]) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.header("Content-Type"), Some("application/json"));
        let json = self.json();
        assert_eq!(json["status"], "KO", "{json}");
        let message = json["message"].as_str().expect("message is a string");
        for word in words {
            assert!(
                message.contains(word),
                "{message:?} should contain {word:?}"
            );
        }
    }
}

/// A keep-alive HTTP/1.1 client on one connection.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the server");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    pub fn call(&mut self, method: &str, path: &str, body: &str) -> Reply {
        self.send_raw(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        self.read_reply()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send the request");
    }

    pub fn read_reply(&mut self) -> Reply {
        read_reply_from(&mut self.reader, "GET").expect("an answer")
    }
}

/// Reads one answer from `reader`: status line, headers, then the body by
/// `Content-Length` or chunked (none after a `HEAD`). An error for an
/// early end or a malformed answer, so that a client expecting trouble
/// can go on.
pub fn read_reply_from(reader: &mut impl BufRead, method: &str) -> std::io::Result<Reply> {
    let line = read_line(reader)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| malformed(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            headers.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    if method == "HEAD" {
        return Ok(reply);
    }
    if let Some(length) = reply.header("Content-Length") {
        let length = length
            .parse()
            .map_err(|_| malformed(format!("Content-Length {length:?}")))?;
        reply.body = vec![0; length];
        reader.read_exact(&mut reply.body)?;
    } else if reply
        .header("Transfer-Encoding")
        .is_some_and(|te| te.contains("chunked"))
    {
        reply.body = read_chunked_body(reader)?;
    }
    Ok(reply)
}

fn read_chunked_body(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size = read_line(reader)?;
        let size = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| malformed(format!("chunk size {size:?}")))?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk)?;
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// One line; an error at the end of the stream.
fn read_line(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

fn malformed(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// Waits until `condition` holds, failing the test after [`PATIENCE`].
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    wait_within(what, PATIENCE, condition);
}

/// `[{"ID":id,"tenant":tenant}, ...]`
pub fn items<'a>(pairs: impl IntoIterator<Item = (i64, &'a str)>) -> Value {
    Value::Array(
        pairs
            .into_iter()
            .map(|(id, tenant)| serde_json::json!({"ID": id, "tenant": tenant}))
            .collect(),
    )
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("dc-test-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the temp dir");
        TempDir(path)
    }

    pub fn arg(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }

    /// Starts the binary on this data dir, expecting it to refuse (exit 1)
    /// without serving; its stderr.
    pub fn start_must_fail(&self) -> String {
        let output = Command::new(binary())
            .args(["--listen", "127.0.0.1:0", "--node-port", "0"])
            .args(["--data-dir", self.arg()])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the binary");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            !stderr.contains("listening on"),
            "it must not serve: {stderr}"
        );
        stderr
    }

    /// Total bytes of the files in the directory.
    pub fn bytes(&self) -> u64 {
        std::fs::read_dir(&self.0)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// The newest log segment.
    pub fn newest_segment(&self) -> std::path::PathBuf {
        let mut segments: Vec<_> = std::fs::read_dir(&self.0)
            .expect("read the dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("wal-"))
            })
            .collect();
        segments.sort();
        segments.pop().expect("a log segment exists")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small deterministic generator, so a failing run reproduces.
pub struct Lcg(pub u64);

impl Lcg {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

// ---------------------------------------------------------------------------
// Helpers for the front-door, framing, node-port and hardening tests.
// ---------------------------------------------------------------------------

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicBool, Ordering};

/// `127.0.0.n`: loopback has a whole /8, so each `n` plays another host.
pub fn host(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// Heavy tests of one test binary take this lock so that they do not run
/// side by side (the machine has 2 cores; their timings would mix).
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[allow(unused_imports)]
pub use distributed_counter::testkit::{colliding_ids, connect_from, connect_from_with, splitmix};

/// Linux TCP states (`include/net/tcp_states.h`), as `TCP_INFO` gives them.
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_CLOSE_WAIT: u8 = 8;

/// The kernel's TCP state of a socket ([`TCP_ESTABLISHED`], [`TCP_CLOSE_WAIT`]
/// once the peer closed, [`TCP_CLOSE`] after a reset...), read without
/// consuming any byte.
pub fn tcp_state(stream: &TcpStream) -> u8 {
    // SAFETY: tcp_info is plain old data; getsockopt writes at most `length`
    // bytes into it.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut length = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let done = libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut length,
        );
        assert_eq!(done, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info.tcpi_state
    }
}

/// Whether the server closed (or reset) this connection; reads nothing.
pub fn closed_by_server(stream: &TcpStream) -> bool {
    tcp_state(stream) != TCP_ESTABLISHED
}

/// Raises this process's soft limit on open files to `wanted` (or the hard
/// limit); gives the limit now in force.
pub fn raise_fd_limit(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}

/// Parses the head of an HTTP response at the start of `bytes` (the body is
/// left empty); `None` while the head is incomplete. Gives the reply and the
/// head's length.
pub fn parse_head(bytes: &[u8]) -> Option<(Reply, usize)> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()?
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect();
    let reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    Some((reply, head_end))
}

/// Parses a complete HTTP response at the start of `bytes`; `None` while
/// bytes are missing. Gives the reply and how many bytes it took. A body is
/// framed by Content-Length (none: no body).
pub fn parse_reply(bytes: &[u8]) -> Option<(Reply, usize)> {
    let (mut reply, head_end) = parse_head(bytes)?;
    let length: usize = reply
        .header("Content-Length")
        .map_or(0, |length| length.parse().expect("numeric length"));
    let body = bytes.get(head_end..head_end + length)?;
    reply.body = body.to_vec();
    Some((reply, head_end + length))
}

/// Reads one response (Content-Length framed) from `stream`, reporting a
/// reset or an early end as an error instead of panicking.
pub fn try_read_reply(stream: &mut TcpStream) -> std::io::Result<Reply> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((reply, _)) = parse_reply(&bytes) {
            return Ok(reply);
        }
        match stream.read(&mut chunk)? {
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed after {} bytes: {:?}",
                        bytes.len(),
                        String::from_utf8_lossy(&bytes)
                    ),
                ));
            }
            n => bytes.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Everything the server sends until it closes the connection (or `patience`
/// passes): for checking that nothing follows an answer.
pub fn read_to_close(stream: &mut TcpStream, patience: Duration) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + patience;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "still open after {patience:?}, got {:?}",
                    String::from_utf8_lossy(&bytes)
                ),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Sends `request` on a fresh connection, reads the first response, then
/// everything up to the close (at most `patience`). Gives the response and
/// the bytes that followed it (`Err` if the connection stayed open).
pub fn exchange(
    addr: SocketAddr,
    request: &[u8],
    patience: Duration,
) -> (Reply, Result<Vec<u8>, String>) {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    // The server may answer and close before it read everything we send:
    // what counts is the answer.
    let _ = stream.write_all(request);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let (reply, used) = loop {
        if let Some(parsed) = parse_reply(&bytes) {
            break parsed;
        }
        match stream.read(&mut chunk) {
            Ok(0) => panic!(
                "closed without an answer to {:?}",
                String::from_utf8_lossy(&request[..request.len().min(200)])
            ),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) => panic!(
                "{e} instead of an answer to {:?}",
                String::from_utf8_lossy(&request[..request.len().min(200)])
            ),
        }
    };
    let mut rest = bytes.split_off(used);
    let after = read_to_close(&mut stream, patience)
        .map(|more| {
            rest.extend_from_slice(&more);
            rest
        })
        .map_err(|e| e.to_string());
    (reply, after)
}

impl Client {
    /// A keep-alive client over an already connected stream.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// A keep-alive client connecting from `source` (see [`connect_from`]).
    pub fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> Client {
        Client::from_stream(connect_from(source, addr).expect("connect to the server"))
    }

    /// The connection's socket.
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }
}

impl Server {
    /// Starts with `env` set in the process environment as well.
    pub fn start_with_env<V: AsRef<std::ffi::OsStr>>(env: &[(&str, V)], extra: &[&str]) -> Server {
        let mut command = Command::new(binary());
        command
            .args(["--listen", "127.0.0.1:0", "--node-port", "0"])
            .args(extra)
            .envs(env.iter().map(|(name, value)| (name, value)));
        Self::spawn(command, extra).unwrap_or_else(|log| panic!("server did not start:\n{log}"))
    }

    /// Starts, reads the startup lines, then closes the read end of the
    /// server's standard error: every later log line meets a closed pipe.
    pub fn start_with_stderr_closed(extra: &[&str]) -> Server {
        let mut command = Command::new(binary());
        command
            .args(["--listen", "127.0.0.1:0", "--node-port", "0"])
            .args(extra);
        let process = Process::spawn_then_close_stderr(command, node_count(extra), PATIENCE)
            .unwrap_or_else(|log| panic!("server did not start:\n{log}"));
        Server {
            addr: process.addr,
            node_addrs: process.node_addrs.clone(),
            process,
        }
    }

    /// Threads of the server process now: the kernel's count in
    /// `/proc/<pid>/status`. Listing `/proc/<pid>/task` instead skipped
    /// entries while other threads came and went (2,728 of 3,000 counted).
    pub fn threads(&self) -> usize {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server process exists")
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .and_then(|value| value.trim().parse().ok())
            .expect("Threads in /proc/<pid>/status")
    }

    /// Resident memory of the server process now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server process exists")
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// RSS (KiB) once `condition` holds of it, or when `patience` has
    /// passed; and whether it held. Memory given back takes a moment to show.
    pub fn rss_when(&self, patience: Duration, condition: impl Fn(u64) -> bool) -> (u64, bool) {
        let started = Instant::now();
        loop {
            let rss = self.rss_kib();
            if condition(rss) || started.elapsed() >= patience {
                return (rss, condition(rss));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /metrics` as text.
    pub fn metrics(&self) -> String {
        let reply = self.call("GET", "/metrics", "");
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.text()
    }

    /// The value of an unlabelled series in `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics().lines().find_map(|line| {
            let (series, value) = line.split_once(' ')?;
            (series == name).then(|| value.trim().parse().ok())?
        })
    }

    /// Waits (at most `patience`) for the process to exit after a signal
    /// sent elsewhere; `None` if it is still running.
    pub fn wait_exit(&mut self, patience: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.process.child.try_wait().expect("try_wait works") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends a signal (by name, e.g. "TERM") without waiting.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

/// Waits until `condition` holds, failing the test after `patience`. Gives
/// how long it took.
pub fn wait_within(
    what: &str,
    patience: Duration,
    mut condition: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < patience,
            "timed out after {patience:?} waiting until {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

/// A well-behaved client on 127.0.0.1 that calls the server over and over in
/// the background, a fresh connection per call (so it is also a newcomer the
/// server must admit), alternating `GET /health` and a one-item `POST
/// /items`, and remembers how each call went.
pub struct Prober {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<ProbeReport>>,
}

/// What the [`Prober`] saw.
#[derive(Debug, Default)]
pub struct ProbeReport {
    pub calls: usize,
    pub slowest: Duration,
    /// Calls that failed, were not 200, or were slower than the bound: what
    /// happened and when (since the prober started).
    pub problems: Vec<String>,
}

impl Prober {
    /// Starts probing `addr`; a call slower than `bound` counts as a problem.
    pub fn start(addr: SocketAddr, bound: Duration) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            let started = Instant::now();
            let mut report = ProbeReport::default();
            let mut id = 1_000_000_000i64;
            // At least one call, however soon the prober is stopped.
            loop {
                id += 1;
                let (method, path, body) = if report.calls % 2 == 0 {
                    ("GET", "/health", String::new())
                } else {
                    (
                        "POST",
                        "/items",
                        format!(r#"[{{"ID":{id},"tenant":"probe"}}]"#),
                    )
                };
                let call_started = Instant::now();
                let outcome = probe_once(addr, method, path, &body);
                let took = call_started.elapsed();
                report.calls += 1;
                report.slowest = report.slowest.max(took);
                let at = call_started.duration_since(started);
                match outcome {
                    Ok((200, _)) if took <= bound => {}
                    Ok((status, connect)) => report.problems.push(format!(
                        "{method} {path} at {at:?}: {status} in {took:?} (connecting took {connect:?})"
                    )),
                    Err(e) => report
                        .problems
                        .push(format!("{method} {path} at {at:?}: {e} after {took:?}")),
                }
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                // Pacing between calls, not a wait for a condition.
                thread::sleep(Duration::from_millis(20));
            }
            report
        });
        Prober {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops probing and gives the report.
    pub fn finish(mut self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("the prober does not panic")
    }

    /// Stops probing and asserts every call was answered 200 within the bound.
    pub fn assert_all_served(self) -> ProbeReport {
        let report = self.finish();
        assert!(report.calls > 0, "the prober made no call");
        assert!(
            report.problems.is_empty(),
            "the well-behaved client was not served ({} of {} calls, slowest {:?}):\n{}",
            report.problems.len(),
            report.calls,
            report.slowest,
            report.problems.join("\n")
        );
        report
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One call on a fresh connection: the status, and how long connecting took
/// (a second or more means the SYN was dropped and sent again: the server's
/// accept queue was full).
fn probe_once(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    let connected = started.elapsed();
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: probe\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    Ok((try_read_reply(&mut stream)?.status, connected))
}

/// How a dripping connection ended (see [`drip`]); times count from the
/// moment the connection was established.
#[derive(Debug)]
pub enum Dripped {
    /// A complete response arrived, this long after connecting.
    Answered(Reply, Duration),
    /// The server closed without a (complete) response.
    Closed(Vec<u8>, Duration),
    /// The connection was reset.
    Reset(std::io::Error, Duration),
    /// Still open, no answer, when the drip gave up.
    Open,
}

/// One connection being dripped.
struct Dripping {
    stream: TcpStream,
    since: Instant,
    received: Vec<u8>,
    sent: usize,
    outcome: Option<Dripped>,
}

/// Opens `count` connections with `connect` (from 4 threads at once, as a
/// flood of clients would) and, as each comes, sends it one more byte each
/// `period` (its n-th byte is `next(n)`) until it gets an answer or is
/// closed, or until `patience` passes. A connection stops sending as soon as
/// the first byte of an answer arrives. One thread drives all the drips.
pub fn drip(
    count: usize,
    connect: impl Fn() -> TcpStream + Sync,
    period: Duration,
    patience: Duration,
    next: impl Fn(usize) -> u8,
) -> Vec<Dripped> {
    let started = Instant::now();
    let (connected, arrivals) = std::sync::mpsc::channel::<(TcpStream, Instant)>();
    thread::scope(|scope| {
        let connect = &connect;
        for t in 0..4 {
            let connected = connected.clone();
            scope.spawn(move || {
                for _ in (t..count).step_by(4) {
                    // Before connecting: the server's deadline starts at
                    // its accept or at the head `connect` sends, never
                    // earlier, so a lower bound on the time to the 408
                    // holds however late this thread runs.
                    let since = Instant::now();
                    let stream = connect();
                    stream.set_nonblocking(true).expect("non-blocking");
                    if connected.send((stream, since)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(connected);
        let mut drips: Vec<Dripping> = Vec::with_capacity(count);
        let mut chunk = [0u8; 4096];
        while started.elapsed() < patience
            && (drips.len() < count || drips.iter().any(|d| d.outcome.is_none()))
        {
            drips.extend(arrivals.try_iter().map(|(stream, since)| Dripping {
                stream,
                since,
                received: Vec::new(),
                sent: 0,
                outcome: None,
            }));
            for drip in drips.iter_mut().filter(|d| d.outcome.is_none()) {
                drip.outcome = read_available(drip, &mut chunk);
                if drip.outcome.is_none() && drip.received.is_empty() {
                    // A failed write shows up as a reset or close on the next read.
                    let _ = (&drip.stream).write(&[next(drip.sent)]);
                    drip.sent += 1;
                }
            }
            // Pacing of the drip (one byte per period), not a wait for a condition.
            thread::sleep(period);
        }
        drips
            .into_iter()
            .map(|drip| drip.outcome.unwrap_or(Dripped::Open))
            .collect()
    })
}

/// Reads what arrived on a dripping connection; its outcome once known.
fn read_available(drip: &mut Dripping, chunk: &mut [u8]) -> Option<Dripped> {
    loop {
        match (&drip.stream).read(chunk) {
            Ok(0) => {
                let bytes = std::mem::take(&mut drip.received);
                return Some(match parse_reply(&bytes) {
                    Some((reply, _)) => Dripped::Answered(reply, drip.since.elapsed()),
                    None => Dripped::Closed(bytes, drip.since.elapsed()),
                });
            }
            Ok(n) => drip.received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Some(Dripped::Reset(e, drip.since.elapsed())),
        }
    }
    parse_reply(&drip.received).map(|(reply, _)| Dripped::Answered(reply, drip.since.elapsed()))
}
