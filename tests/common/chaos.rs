//! What the linearizability tests share: a keep-alive client that reports
//! errors instead of panicking (a 503 or a cut connection is part of a
//! history, not a test failure), one clock for every thread, and a fault
//! schedule paced by the clients' progress rather than by sleeps.
#![allow(dead_code)]

use crate::common::{PATIENCE, Reply, Server, read_reply_from};
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A monotonic clock every test thread reads: nanoseconds since the test
/// started.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    pub fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// A keep-alive HTTP/1.1 connection that reconnects after an error.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn { addr, stream: None }
    }

    /// One request; a transport error drops the connection (the next call
    /// opens a new one).
    pub fn call(&mut self, method: &str, path: &str, body: &str) -> io::Result<Reply> {
        let result = self.try_call(method, path, body);
        let closing = result
            .as_ref()
            .map_or(true, |reply| reply.header("Connection") == Some("close"));
        if closing {
            self.stream = None;
        }
        result
    }

    fn try_call(&mut self, method: &str, path: &str, body: &str) -> io::Result<Reply> {
        let reader = match &mut self.stream {
            Some(reader) => reader,
            None => {
                let stream = TcpStream::connect_timeout(&self.addr, PATIENCE)?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(PATIENCE))?;
                stream.set_write_timeout(Some(PATIENCE))?;
                self.stream.insert(BufReader::new(stream))
            }
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        reader.get_mut().write_all(request.as_bytes())?;
        read_reply_from(reader, method)
    }
}

/// `{"counter":N}` of a 200 count answer.
pub fn counter(reply: &Reply) -> Option<u64> {
    if reply.status != 200 {
        return None;
    }
    serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()?
        .get("counter")?
        .as_u64()
}

/// The faults a run injects while clients work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Faults {
    None,
    /// Crash the master, then a replica; restart both.
    CrashRestart,
    /// Stall random nodes (the master half the time) for 100–500 ms.
    Stall,
    /// Move random nodes (the master half the time) to another port.
    Disconnect,
    /// Stalls and disconnects, interleaved.
    StallAndDisconnect,
}

/// A fault the schedule injected, and when (on the test's [`Clock`]).
#[derive(Debug, Clone)]
pub struct Injected {
    pub at: u64,
    pub what: String,
}

/// How far the clients are: the schedule injects faults at fractions of
/// `total` steps, and stops early once `done` is set.
pub struct Progress {
    steps: AtomicU64,
    total: u64,
    done: AtomicBool,
}

impl Progress {
    pub fn new(total: u64) -> Progress {
        Progress {
            steps: AtomicU64::new(0),
            total,
            done: AtomicBool::new(false),
        }
    }

    pub fn step(&self) {
        self.steps.fetch_add(1, Ordering::SeqCst);
    }

    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }

    pub fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
    }

    /// A guard for a client thread: if the thread panics, the run is
    /// finished, so that no one waits for steps that will never come.
    pub fn finish_if_panicking(&self) -> FinishIfPanicking<'_> {
        FinishIfPanicking(self)
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst) || self.steps() >= self.total
    }

    /// Waits until the clients made `fraction` of their steps; false if
    /// they finished first.
    fn reach(&self, fraction: f64) -> bool {
        let target = (self.total as f64 * fraction) as u64;
        let deadline = Instant::now() + PATIENCE * 3;
        while self.steps() < target {
            if self.is_done() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "the clients made no progress: {} of {} steps",
                self.steps(),
                self.total
            );
            thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

pub struct FinishIfPanicking<'a>(&'a Progress);

impl Drop for FinishIfPanicking<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.finish();
        }
    }
}

/// Steps of [`Faults::CrashRestart`], at fractions of the clients' work.
const CRASH_SCHEDULE: [(f64, CrashStep); 4] = [
    (0.15, CrashStep::CrashMaster),
    (0.35, CrashStep::CrashReplica),
    (0.55, CrashStep::RestartEarliest),
    (0.75, CrashStep::RestartEarliest),
];

#[derive(Clone, Copy)]
enum CrashStep {
    CrashMaster,
    CrashReplica,
    /// Restarts the node that crashed first among those still dead.
    RestartEarliest,
}

/// Injects `faults` into `server` (started with `--fault-injection`) while
/// clients run, paced by `progress`; returns what it did, when. `choose`
/// picks a number below its argument (the test's seeded generator).
pub fn inject(
    server: &Server,
    faults: Faults,
    progress: &Progress,
    clock: Clock,
    choose: &mut dyn FnMut(u64) -> u64,
) -> Vec<Injected> {
    let mut injected = Vec::new();
    let mut act = |path: String| {
        let at = clock.now();
        fault(server, &path);
        injected.push(Injected { at, what: path });
    };
    match faults {
        Faults::None => {}
        Faults::CrashRestart => {
            let mut crashed = Vec::new();
            for (fraction, step) in CRASH_SCHEDULE {
                if !progress.reach(fraction) {
                    break;
                }
                let (id, action) = match step {
                    CrashStep::CrashMaster => (master(server), "crash"),
                    CrashStep::CrashReplica => {
                        let master = master(server);
                        let replicas: Vec<u64> = live_nodes(server)
                            .into_iter()
                            .filter(|&id| id != master)
                            .collect();
                        (replicas[choose(replicas.len() as u64) as usize], "crash")
                    }
                    CrashStep::RestartEarliest => (crashed.remove(0), "restart"),
                };
                if action == "crash" {
                    crashed.push(id);
                }
                act(format!("/nodes/{id}/{action}"));
            }
        }
        Faults::Stall | Faults::Disconnect | Faults::StallAndDisconnect => {
            for round in 1..=10 {
                if !progress.reach(f64::from(round) * 0.08) {
                    break;
                }
                let victim = if choose(2) == 0 {
                    master(server)
                } else {
                    let live = live_nodes(server);
                    live[choose(live.len() as u64) as usize]
                };
                let stall = match faults {
                    Faults::Stall => true,
                    Faults::Disconnect => false,
                    _ => round % 2 == 0,
                };
                if stall {
                    let ms = 100 + choose(400);
                    act(format!("/nodes/{victim}/stall?ms={ms}"));
                } else {
                    act(format!("/nodes/{victim}/disconnect"));
                }
            }
        }
    }
    injected
}

/// Posts a fault; a restart that finds no caught-up node to copy from (503)
/// is tried again until it works.
fn fault(server: &Server, path: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = server.call("POST", path, "");
        if reply.status == 200 {
            return;
        }
        assert!(
            reply.status == 503 && path.ends_with("/restart") && Instant::now() < deadline,
            "POST {path}: {} {}",
            reply.status,
            reply.text()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn master(server: &Server) -> u64 {
    let reply = server.call("GET", "/health", "");
    assert_eq!(reply.status, 200, "no master: {}", reply.text());
    reply.json()["master"].as_u64().expect("master id")
}

fn live_nodes(server: &Server) -> Vec<u64> {
    server
        .nodes()
        .iter()
        .filter(|node| node["alive"] == true)
        .map(|node| node["id"].as_u64().expect("node id"))
        .collect()
}

/// A seed from `DC_SEED` if set, else a fresh one; printed when a test fails.
pub fn seed() -> u64 {
    std::env::var("DC_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |since| since.as_nanos() as u64)
        })
}
