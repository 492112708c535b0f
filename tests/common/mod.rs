//! Shared test harness: starts the real binary on free ports and talks
//! HTTP/1.1 to it over plain sockets, as a user's client would.
#![allow(dead_code)]

pub mod api_cases;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
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
    child: Child,
    pub addr: SocketAddr,
    pub node_addrs: Vec<SocketAddr>,
    stderr: Arc<Mutex<String>>,
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

    fn spawn(mut command: Command, extra: &[&str]) -> Result<Server, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        let writer = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                writer.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + PATIENCE;
        let mut addr = None;
        let mut node_addrs = Vec::new();
        let expected_nodes = node_count(extra);
        while addr.is_none() || node_addrs.len() < expected_nodes {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = lines_rx.recv_timeout(left) else {
                let _ = child.kill();
                return Err(log.lock().unwrap().clone());
            };
            if let Some(rest) = line.strip_prefix("listening on http://") {
                addr = rest.parse().ok();
            } else if let Some(node_addr) = line
                .strip_prefix("node ")
                .and_then(|rest| rest.split_whitespace().nth(3))
            {
                node_addrs.push(node_addr.parse().map_err(|_| line.clone())?);
            }
        }
        Ok(Server {
            child,
            addr: addr.ok_or("no address")?,
            node_addrs,
            stderr: log,
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
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: the process dies at once, wherever it is.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        self.child.wait().expect("the process is reaped");
    }

    /// Sends a signal (by name, e.g. "INT") and waits for the exit.
    pub fn signal_and_wait(mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let pid = self.child.id().to_string();
        thread::scope(|scope| {
            let (exited, exit) = std::sync::mpsc::channel();
            let child = &mut self.child;
            scope.spawn(move || exited.send(child.wait().expect("wait works")));
            exit.recv_timeout(PATIENCE).unwrap_or_else(|_| {
                let _ = Command::new("kill").args(["-9", &pid]).status();
                panic!("no exit within {PATIENCE:?} after SIG{signal}");
            })
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header line");
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
        if let Some(length) = reply.header("Content-Length") {
            let mut body = vec![0; length.parse().expect("numeric length")];
            self.reader.read_exact(&mut body).expect("body");
            reply.body = body;
        } else if reply
            .header("Transfer-Encoding")
            .is_some_and(|te| te.contains("chunked"))
        {
            reply.body = self.read_chunked();
        }
        reply
    }

    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            self.reader.read_line(&mut size).expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).expect("chunk");
            if size == 0 {
                return body;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
}

/// Waits until `condition` holds, failing the test after [`PATIENCE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
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
