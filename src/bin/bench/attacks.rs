//! The front-door rows: what an idle connection costs, and how a
//! well-behaved client fares while misbehaving clients from other addresses
//! attack (slow bodies, slowloris, idle floods, readers that never read).

use crate::load::{self, Connection, Load, Stop, connect_from};
use crate::service::Service;
use crate::{Plan, Table};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often an attacker trickles its next byte.
const TRICKLE: Duration = Duration::from_millis(500);
/// Connections the well-behaved client measures with.
const CLIENT_CONNECTIONS: usize = 4;
/// How long the server may take to take in a flood of connections.
const SETTLE_PATIENCE: Duration = Duration::from_secs(20);

fn host(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A kind of misbehaving client.
#[derive(Clone, Copy)]
enum Kind {
    /// `POST /items` with `Content-Length: 100000`, then a byte at a time.
    SlowBody,
    /// A request head, a byte at a time.
    Slowloris,
    /// Connects and sends nothing.
    Idle,
    /// Pipelines requests and never reads the answers.
    SlowReader,
}

/// Misbehaving clients on their own thread until stopped.
struct Attack {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Attack {
    fn start(addr: SocketAddr, kind: Kind, count: usize, source: Ipv4Addr) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || attack(addr, kind, count, source, &stopped));
        Attack { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

fn attack(addr: SocketAddr, kind: Kind, count: usize, source: Ipv4Addr, stop: &AtomicBool) {
    let mut sockets: Vec<TcpStream> = (0..count)
        .filter_map(|_| connect_from(source, addr).ok())
        .collect();
    let opening: &[u8] = match kind {
        Kind::SlowBody => b"POST /items HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n[",
        Kind::Slowloris => b"GET /health HTTP/1.1\r\nHo",
        Kind::Idle => b"",
        Kind::SlowReader => b"",
    };
    for socket in &mut sockets {
        let _ = socket.write_all(opening);
    }
    let pipelined = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n".repeat(64);
    while !stop.load(Ordering::SeqCst) {
        for socket in &mut sockets {
            let _ = socket.set_nonblocking(true);
            let _ = match kind {
                Kind::SlowBody => socket.write(b" "),
                Kind::Slowloris => socket.write(b"x"),
                Kind::Idle => Ok(0),
                Kind::SlowReader => socket.write(&pipelined),
            };
        }
        thread::sleep(TRICKLE);
    }
}

/// Idle-connection memory, then the well-behaved client's latencies while
/// each attack runs, next to the same without an attack.
pub fn front_door(server_path: &str, plan: &Plan, table: &mut Table) -> io::Result<()> {
    table.section("Front door: a client on 127.0.0.1 while others misbehave");
    let server = Service::start(server_path, 4, &[])?;
    idle_memory(&server, if plan.quick { 500 } else { 2_000 }, table)?;
    let quiet_get = get_load(&server, plan)?;
    let quiet_post = post_load(&server, plan, 0)?;
    table.row("GET count, no attack", &quiet_get, None);
    table.row("POST 10 items, no attack", &quiet_post, None);
    let attacks = [
        ("64 slow bodies", Kind::SlowBody, 64, host(2)),
        (
            "2,000 slowloris connections",
            Kind::Slowloris,
            2_000,
            host(3),
        ),
        ("5,000 idle connections", Kind::Idle, 5_000, host(4)),
        ("8 readers that never read", Kind::SlowReader, 8, host(5)),
    ];
    for (index, (name, kind, count, source)) in attacks.into_iter().enumerate() {
        let count = if plan.quick { count / 4 } else { count };
        let attack = Attack::start(server.addr, kind, count, source);
        settle(&server, count)?;
        let get = get_load(&server, plan)?;
        let post = post_load(&server, plan, (index as i64 + 1) << 40)?;
        table.row(&format!("GET count, {name}"), &get, Some(&quiet_get));
        table.row(&format!("POST 10 items, {name}"), &post, Some(&quiet_post));
        attack.stop();
    }
    Ok(())
}

/// Waits (at most `SETTLE_PATIENCE`) until the server holds about `count`
/// more threads than when idle, or stops growing.
fn settle(server: &Service, count: usize) -> io::Result<()> {
    let deadline = Instant::now() + SETTLE_PATIENCE;
    let mut last = server.threads();
    loop {
        thread::sleep(Duration::from_millis(200));
        let now = server.threads();
        if now >= count as u64 || now == last || Instant::now() > deadline {
            return Ok(());
        }
        last = now;
    }
}

/// The well-behaved client on 127.0.0.1 for one run.
fn client_load(
    server: &Service,
    plan: &Plan,
    request: load::RequestBuilder,
    units_per_request: u64,
    unit: &'static str,
) -> io::Result<load::Outcome> {
    load::run(
        server.addr,
        Load {
            connections: CLIENT_CONNECTIONS,
            source: Some(IpAddr::V4(host(1))),
            stop: Stop::After(plan.run),
            request,
            units_per_request,
            unit,
        },
    )
}

fn get_load(server: &Service, plan: &Plan) -> io::Result<load::Outcome> {
    client_load(server, plan, load::get_counts(), 1, "req/s")
}

fn post_load(server: &Service, plan: &Plan, first_id: i64) -> io::Result<load::Outcome> {
    client_load(server, plan, load::post_items(10, first_id), 10, "items/s")
}

/// Waits (at most `SETTLE_PATIENCE`) until the server's threads are back
/// near their idle count.
fn settle_down(server: &Service, _rss: u64) {
    let idle_threads = 16;
    let deadline = Instant::now() + SETTLE_PATIENCE;
    while server.threads() > idle_threads && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
}

/// RSS per idle connection: connections that never sent anything, and
/// connections kept alive after one request.
fn idle_memory(server: &Service, count: usize, table: &mut Table) -> io::Result<()> {
    let before = server.rss_bytes();
    let silent: Vec<TcpStream> = (0..count)
        .filter_map(|_| connect_from(host(6), server.addr).ok())
        .collect();
    settle(server, count)?;
    let with_silent = server.rss_bytes();
    drop(silent);
    settle_down(server, before);
    let base = server.rss_bytes();
    let mut kept = Vec::new();
    for _ in 0..count {
        let mut connection = Connection::open(server.addr, Some(IpAddr::V4(host(7))))?;
        connection.call("GET", "/items/tenant-1/count", b"")?;
        kept.push(connection);
    }
    let with_kept = server.rss_bytes();
    drop(kept);
    let per = |after: u64, base: u64| after.saturating_sub(base) as f64 / count as f64 / 1024.0;
    table.note(format!(
        "memory: {:.1} KB of RSS per idle connection that never sent a byte, {:.1} KB per \
         kept-alive connection after one GET ({count} connections each)",
        per(with_silent, before),
        per(with_kept, base)
    ));
    Ok(())
}
