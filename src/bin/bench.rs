//! `make bench`: drives the release binary with keep-alive HTTP/1.1 clients
//! and prints a table. In the same run it measures two baselines, so figures
//! can be read as ratios on a shared, noisy machine:
//! - a naive one-process server (tiny_http + serde_json, every item applied
//!   to 4 HashMaps under one lock), started inside this program;
//! - Redis with a Lua script keeping id→tenant and tenant→count exact, when
//!   `redis-server` is installed.
//!
//! Usage: bench [--quick] [--server PATH]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Sizes of each measurement; `--quick` divides the item counts by 10.
struct Plan {
    fresh_items: u64,
    growth_items: u64,
    read_items: u64,
    read_duration: Duration,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let server_path = args
        .iter()
        .position(|a| a == "--server")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| sibling_binary("distributed-counter"));
    let scale = if quick { 10 } else { 1 };
    let plan = Plan {
        fresh_items: 2_000_000 / scale,
        growth_items: 6_000_000 / scale,
        read_items: 1_000_000 / scale,
        read_duration: Duration::from_secs(if quick { 1 } else { 3 }),
    };
    if let Err(e) = run(&server_path, &plan) {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn sibling_binary(name: &str) -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .map(|path| path.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}

fn run(server_path: &str, plan: &Plan) -> io::Result<()> {
    println!(
        "distributed-counter benchmark ({} cores)",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    let mut table = Table::default();

    // Baseline first, then the service, on the same work.
    let naive = NaiveServer::start()?;
    let baseline = ingest(naive.addr, 8, 1000, plan.fresh_items, 0)?;
    table.row(
        "naive 1-process server, fresh, batch 1000, 8 clients",
        &baseline,
        None,
    );

    let server = Service::start(server_path, 4)?;
    let fresh = ingest(server.addr, 8, 1000, plan.fresh_items, 0)?;
    table.row(
        "ingest fresh, batch 1000, 8 clients",
        &fresh,
        Some(&baseline),
    );
    let replicated = until_replicated(server.addr, &fresh)?;
    table.row(
        "  same, until all 4 replicas applied every item",
        &replicated,
        Some(&baseline),
    );
    let again = ingest(server.addr, 8, 1000, plan.fresh_items, 0)?;
    table.row(
        "ingest re-posting existing IDs, batch 1000",
        &again,
        Some(&baseline),
    );
    let small = ingest(server.addr, 8, 100, plan.fresh_items / 10, 1 << 40)?;
    table.row(
        "ingest fresh, batch 100, 8 clients",
        &small,
        Some(&baseline),
    );
    let single = ingest(server.addr, 8, 1, plan.fresh_items / 200, 2 << 40)?;
    table.row("ingest fresh, batch 1, 8 clients", &single, Some(&baseline));
    drop(server);

    let server = Service::start(server_path, 4)?;
    let idle_rss = server.rss_bytes();
    let binary_bytes = std::fs::metadata(server_path).map_or(0, |m| m.len());
    let rss_before = server.rss_bytes();
    let growth = ingest(server.addr, 8, 1000, plan.growth_items, 3 << 40)?;
    table.row(
        &format!("ingest while maps grow 0 → {} items", plan.growth_items),
        &growth,
        Some(&baseline),
    );
    let rss_after = server.rss_bytes();
    drop(server);

    // Reads on small data, then with read_items stored.
    let server = Service::start(server_path, 4)?;
    ingest(server.addr, 4, 1000, 1000, 4 << 40)?;
    let health_32 = reads_of(server.addr, 32, plan.read_duration, |_| {
        "/health".to_string()
    })?;
    let read_small_1 = reads(server.addr, 1, plan.read_duration)?;
    let read_small_32 = reads(server.addr, 32, plan.read_duration)?;
    let rss_small = server.rss_bytes();
    ingest(server.addr, 8, 1000, plan.read_items, 5 << 40)?;
    let rss_large = server.rss_bytes();
    let read_large_1 = reads(server.addr, 1, plan.read_duration)?;
    let read_large_32 = reads(server.addr, 32, plan.read_duration)?;
    drop(server);
    table.row(
        "GET /health, 32 clients (HTTP alone, no node hop)",
        &health_32,
        None,
    );
    table.row("GET count, 1 client, 1k items", &read_small_1, None);
    table.row(
        "GET count, 32 clients, 1k items",
        &read_small_32,
        Some(&health_32),
    );
    table.row(
        &format!("GET count, 1 client, {} items", plan.read_items),
        &read_large_1,
        None,
    );
    table.row(
        &format!("GET count, 32 clients, {} items", plan.read_items),
        &read_large_32,
        Some(&read_small_32),
    );

    for nodes in [1, 2, 4, 8] {
        let server = Service::start(server_path, nodes)?;
        let result = ingest(server.addr, 8, 1000, plan.fresh_items / 2, 0)?;
        table.row(
            &format!("ingest fresh, batch 1000, --nodes {nodes}"),
            &result,
            Some(&baseline),
        );
    }

    let durable = durable_section(server_path, plan, &mut table, &baseline)?;

    match RedisServer::start() {
        Ok(redis) => {
            let result = redis_ingest(redis.addr, 8, 1000, plan.fresh_items / 4)?;
            table.row(
                "redis + Lua, fresh, batch 1000, 8 clients",
                &result,
                Some(&baseline),
            );
            table.note(format!(
                "service / redis+Lua ingest: {:.2}x",
                fresh.per_second() / result.per_second()
            ));
        }
        Err(e) => table.note(format!("redis not measured: {e}")),
    }

    table.print();
    println!();
    let per_item = |rss: (u64, u64), items: u64, nodes: u64| {
        (rss.1.saturating_sub(rss.0)) as f64 / (items * nodes) as f64
    };
    println!(
        "memory: RSS growth {:.1} bytes per item per replica ({} items, 4 replicas; {:.0} MB → {:.0} MB)",
        per_item((rss_small, rss_large), plan.read_items, 4),
        plan.read_items,
        rss_small as f64 / 1e6,
        rss_large as f64 / 1e6
    );
    println!(
        "memory: RSS growth {:.1} bytes per item per replica ({} items, 4 replicas)",
        per_item((rss_before, rss_after), plan.growth_items, 4),
        plan.growth_items
    );
    println!(
        "footprint: binary {:.2} MB; idle RSS with 4 nodes {:.1} MB",
        binary_bytes as f64 / 1e6,
        idle_rss as f64 / 1e6
    );
    println!("{durable}");
    println!(
        "ratios: ingest {:.2}x the naive server; GET at {} items is {:.0}% of the rate at 1k",
        fresh.per_second() / baseline.per_second(),
        plan.read_items,
        100.0 * read_large_32.per_second() / read_small_32.per_second()
    );
    Ok(())
}

/// What one load-generating client thread returns: latencies and errors.
type ClientResult = io::Result<(Vec<Duration>, u64)>;

/// Throughput and latencies of one measurement.
struct Outcome {
    units: u64,
    unit: &'static str,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: u64,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[index]
    }
}

#[derive(Default)]
struct Table {
    rows: Vec<String>,
    notes: Vec<String>,
}

impl Table {
    fn row(&mut self, name: &str, outcome: &Outcome, baseline: Option<&Outcome>) {
        let ratio = baseline.map_or(String::new(), |b| {
            format!("{:.2}x", outcome.per_second() / b.per_second())
        });
        let errors = if outcome.errors > 0 {
            format!("  ({} errors)", outcome.errors)
        } else {
            String::new()
        };
        let row = format!(
            "| {name:<52} | {:>12.0} {:<7} | {:>8.2} | {:>8.2} | {:>8.2} | {ratio:>7} |{errors}",
            outcome.per_second(),
            outcome.unit,
            ms(outcome.percentile(0.5)),
            ms(outcome.percentile(0.99)),
            ms(outcome.percentile(1.0)),
        );
        println!("{row}");
        self.rows.push(row);
    }

    fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    fn print(&self) {
        println!();
        println!(
            "| {:<52} | {:>20} | {:>8} | {:>8} | {:>8} | {:>7} |",
            "measurement", "rate", "p50 ms", "p99 ms", "max ms", "ratio"
        );
        println!(
            "|{}|{}|{}|{}|{}|{}|",
            "-".repeat(54),
            "-".repeat(22),
            "-".repeat(10),
            "-".repeat(10),
            "-".repeat(10),
            "-".repeat(9)
        );
        for row in &self.rows {
            println!("{row}");
        }
        for note in &self.notes {
            println!("{note}");
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Durable mode: ingest with the log synced per group, then the time a
/// restart takes to recover `read_items` items after `kill -9`.
fn durable_section(
    server_path: &str,
    plan: &Plan,
    table: &mut Table,
    baseline: &Outcome,
) -> io::Result<String> {
    let dir = std::env::temp_dir().join(format!("dc-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_string_lossy().into_owned();
    let durable_args = ["--data-dir", dir_arg.as_str()];
    let server = Service::start_with(server_path, 4, &durable_args)?;
    let ingested = ingest(server.addr, 8, 1000, plan.read_items, 0)?;
    table.row(
        "durable (--fsync always), fresh, batch 1000",
        &ingested,
        Some(baseline),
    );
    let overwritten = ingest(server.addr, 8, 1000, plan.read_items, 0)?;
    table.row(
        "durable, re-posting existing IDs, batch 1000",
        &overwritten,
        Some(baseline),
    );
    drop(server); // kill -9
    let disk: u64 = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let started = Instant::now();
    let server = Service::start_with(server_path, 4, &durable_args)?;
    let restart = started.elapsed();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(format!(
        "durable: restart after kill -9 with {} items took {:.2} s; data dir {:.1} bytes per live item",
        plan.read_items,
        restart.as_secs_f64(),
        disk as f64 / plan.read_items as f64
    ))
}

/// The service under test, started on free ports; killed when dropped.
struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Service {
    fn start(path: &str, nodes: usize) -> io::Result<Service> {
        Self::start_with(path, nodes, &[])
    }

    /// Starts it and returns once it prints its address (it serves then).
    fn start_with(path: &str, nodes: usize, extra: &[&str]) -> io::Result<Service> {
        let nodes = nodes.to_string();
        let mut child = Command::new(path)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--node-port",
                "0",
                "--nodes",
                &nodes,
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start {path}: {e} (run `cargo build --release`)"),
                )
            })?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .ok_or_else(|| io::Error::other("server exited"))??;
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.parse().map_err(io::Error::other)?;
            }
        };
        thread::spawn(move || for _ in lines {});
        Ok(Service { child, addr })
    }

    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A keep-alive HTTP/1.1 client.
struct Http {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    head: Vec<u8>,
}

impl Http {
    fn connect(addr: SocketAddr) -> io::Result<Http> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Http {
            writer: stream.try_clone()?,
            reader: BufReader::with_capacity(64 * 1024, stream),
            head: Vec::with_capacity(256),
        })
    }

    /// GETs a path and returns the body as text.
    fn get_body(&mut self, path: &str) -> io::Result<String> {
        let mut body = Vec::new();
        self.request("GET", path, b"", &mut body)?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Sends a request and returns the status (the body is read and dropped).
    fn call(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<u16> {
        self.request(method, path, body, &mut io::sink())
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
        answer: &mut impl Write,
    ) -> io::Result<u16> {
        self.send(method, path, body)?;
        self.receive(answer)
    }

    fn send(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<()> {
        self.head.clear();
        write!(
            self.head,
            "{method} {path} HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        self.writer.write_all(&self.head)?;
        self.writer.write_all(body)
    }

    /// Reads one response; returns its status and copies its body to `answer`.
    fn receive(&mut self, answer: &mut impl Write) -> io::Result<u16> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line.trim_end().is_empty() {
                break;
            }
            if let Some((_, value)) = line
                .split_once(':')
                .filter(|(key, _)| key.eq_ignore_ascii_case("content-length"))
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        io::copy(&mut (&mut self.reader).take(length as u64), answer)?;
        Ok(status)
    }
}

/// `clients` keep-alive clients post `total` items in batches of `batch`,
/// IDs counting up from `first_id` (fresh on a new server; the same IDs
/// again on a second call with the same `first_id`).
fn ingest(
    addr: SocketAddr,
    clients: u64,
    batch: u64,
    total: u64,
    first_id: i64,
) -> io::Result<Outcome> {
    let batches = (total / batch).max(clients);
    let connect = move || {
        Ok((
            Http::connect(addr)?,
            Vec::with_capacity(batch as usize * 40),
        ))
    };
    let send = move |(http, body): &mut (Http, Vec<u8>), index: u64| {
        body.clear();
        body.push(b'[');
        for i in 0..batch {
            let id = first_id + (index * batch + i) as i64;
            if i > 0 {
                body.push(b',');
            }
            write!(body, "{{\"ID\":{id},\"tenant\":\"tenant-{}\"}}", id % 100)?;
        }
        body.push(b']');
        Ok(http.call("POST", "/items", body)? == 200)
    };
    drive(clients, batches, batches * batch, connect, send)
}

/// Sends batches `0..batches` from `clients` threads, each with its own
/// connection from `connect`; `send` sends one batch and says whether it was
/// accepted. Each batch is timed.
fn drive<C>(
    clients: u64,
    batches: u64,
    units: u64,
    connect: impl Fn() -> io::Result<C> + Send + Sync + 'static,
    send: impl Fn(&mut C, u64) -> io::Result<bool> + Send + Sync + 'static,
) -> io::Result<Outcome> {
    let next_batch = Arc::new(AtomicU64::new(0));
    let (connect, send) = (Arc::new(connect), Arc::new(send));
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (next_batch, connect, send) = (next_batch.clone(), connect.clone(), send.clone());
            thread::spawn(move || -> ClientResult {
                let mut client = connect()?;
                let (mut latencies, mut errors) = (Vec::new(), 0);
                loop {
                    let index = next_batch.fetch_add(1, Ordering::Relaxed);
                    if index >= batches {
                        return Ok((latencies, errors));
                    }
                    let sent = Instant::now();
                    if !send(&mut client, index)? {
                        errors += 1;
                    }
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    collect(handles, started, units, "items/s")
}

fn collect(
    handles: Vec<thread::JoinHandle<ClientResult>>,
    started: Instant,
    units: u64,
    unit: &'static str,
) -> io::Result<Outcome> {
    let mut latencies = Vec::new();
    let mut errors = 0;
    for handle in handles {
        let (mine, failed) = handle
            .join()
            .map_err(|_| io::Error::other("client panicked"))??;
        latencies.extend(mine);
        errors += failed;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Outcome {
        units,
        unit,
        elapsed,
        latencies,
        errors,
    })
}

/// The same work, timed until every node has applied every queued chunk
/// (acknowledgements come before background replication finishes).
fn until_replicated(addr: SocketAddr, acked: &Outcome) -> io::Result<Outcome> {
    let started = Instant::now();
    let mut http = Http::connect(addr)?;
    loop {
        let metrics = http.get_body("/metrics")?;
        let lag: u64 = metrics
            .lines()
            .filter(|line| line.starts_with("dc_node_replication_lag_chunks{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if lag == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(Outcome {
        units: acked.units,
        unit: acked.unit,
        elapsed: acked.elapsed + started.elapsed(),
        latencies: Vec::new(),
        errors: 0,
    })
}

/// Threads the read benchmark drives its connections from. Each thread
/// keeps one request outstanding on each of its connections (send to all,
/// then read all), so 32 clients do not need 32 threads competing with the
/// server for the 2 cores. A response waiting while earlier ones are read
/// counts in its latency, so latencies err high, never low.
const READ_THREADS: u64 = 2;

/// `clients` keep-alive connections read `path_of(n)` for `duration`.
fn reads(addr: SocketAddr, clients: u64, duration: Duration) -> io::Result<Outcome> {
    reads_of(addr, clients, duration, |n| {
        format!("/items/tenant-{}/count", n % 100)
    })
}

fn reads_of(
    addr: SocketAddr,
    clients: u64,
    duration: Duration,
    path_of: fn(u64) -> String,
) -> io::Result<Outcome> {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads = clients.min(READ_THREADS);
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let done = done.clone();
            let mine = clients / threads + u64::from(thread < clients % threads);
            thread::spawn(move || -> ClientResult {
                let mut connections = (0..mine)
                    .map(|_| Http::connect(addr))
                    .collect::<io::Result<Vec<_>>>()?;
                let mut sent_at = vec![Instant::now(); connections.len()];
                let (mut latencies, mut errors) = (Vec::new(), 0);
                while started.elapsed() < duration {
                    for (index, http) in connections.iter_mut().enumerate() {
                        http.send("GET", &path_of(latencies.len() as u64 + index as u64), b"")?;
                        sent_at[index] = Instant::now();
                    }
                    for (index, http) in connections.iter_mut().enumerate() {
                        if http.receive(&mut io::sink())? != 200 {
                            errors += 1;
                        }
                        latencies.push(sent_at[index].elapsed());
                    }
                }
                done.fetch_add(latencies.len() as u64, Ordering::Relaxed);
                Ok((latencies, errors))
            })
        })
        .collect();
    let mut outcome = collect(handles, started, 0, "req/s")?;
    outcome.units = done.load(Ordering::Relaxed);
    Ok(outcome)
}

/// The baseline: tiny_http + serde_json, every item applied to 4 HashMaps
/// under one lock, no coordinator, no node sockets.
struct NaiveServer {
    addr: SocketAddr,
}

#[derive(serde::Deserialize)]
struct NaiveItem {
    #[serde(rename = "ID")]
    id: i64,
    tenant: String,
}

impl NaiveServer {
    fn start() -> io::Result<NaiveServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server =
            Arc::new(tiny_http::Server::from_listener(listener, None).map_err(io::Error::other)?);
        type Maps = [HashMap<i64, String>; 4];
        let maps: Arc<parking_lot::Mutex<Maps>> = Arc::default();
        for _ in 0..8 {
            let (server, maps) = (server.clone(), maps.clone());
            thread::spawn(move || {
                while let Ok(mut request) = server.recv() {
                    let mut body = Vec::new();
                    let _ = request.as_reader().read_to_end(&mut body);
                    let status = match serde_json::from_slice::<Vec<NaiveItem>>(&body) {
                        Ok(items) => {
                            let mut maps = maps.lock();
                            for map in maps.iter_mut() {
                                for item in &items {
                                    map.insert(item.id, item.tenant.clone());
                                }
                            }
                            200
                        }
                        Err(_) => 400,
                    };
                    let _ = request.respond(
                        tiny_http::Response::from_string("{\"status\":\"OK\"}")
                            .with_status_code(status),
                    );
                }
            });
        }
        Ok(NaiveServer { addr })
    }
}

/// redis-server on a free port, without persistence; killed when dropped.
struct RedisServer {
    child: Child,
    addr: SocketAddr,
}

impl RedisServer {
    fn start() -> io::Result<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("redis-server not available ({e})")))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::other("redis-server did not start"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(RedisServer { child, addr })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps `id → tenant` in hash `ids` and `tenant → count` in hash `counts`
/// exact, for a flat list of id, tenant pairs.
const LUA_INGEST: &str = "for i = 1, #ARGV, 2 do \
  local old = redis.call('HGET', 'ids', ARGV[i]) \
  if old ~= ARGV[i+1] then \
    if old then redis.call('HINCRBY', 'counts', old, -1) end \
    redis.call('HSET', 'ids', ARGV[i], ARGV[i+1]) \
    redis.call('HINCRBY', 'counts', ARGV[i+1], 1) \
  end \
end \
return #ARGV / 2";

fn resp_command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let _ = write!(out, "*{}\r\n", parts.len());
    for part in parts {
        let _ = write!(out, "${}\r\n", part.len());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

fn redis_ingest(addr: SocketAddr, clients: u64, batch: u64, total: u64) -> io::Result<Outcome> {
    let batches = (total / batch).max(clients);
    let connect = move || {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok((
            stream.try_clone()?,
            BufReader::new(stream),
            Vec::new(),
            String::new(),
        ))
    };
    let send = move |(writer, reader, out, line): &mut (
        TcpStream,
        BufReader<TcpStream>,
        Vec<u8>,
        String,
    ),
                     index: u64| {
        let args: Vec<String> = (0..batch)
            .flat_map(|i| {
                let id = (index * batch + i) as i64;
                [id.to_string(), format!("tenant-{}", id % 100)]
            })
            .collect();
        let mut parts: Vec<&[u8]> = vec![b"EVAL", LUA_INGEST.as_bytes(), b"0"];
        parts.extend(args.iter().map(|a| a.as_bytes()));
        out.clear();
        resp_command(out, &parts);
        writer.write_all(out)?;
        line.clear();
        reader.read_line(line)?;
        Ok(line.starts_with(':'))
    };
    drive(clients, batches, batches * batch, connect, send)
}
