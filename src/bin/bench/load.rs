//! The load generator: keep-alive HTTP/1.1 connections driven in lock-step
//! from a few threads (send one request on each connection, then read each
//! answer), so 128 connections do not need 128 client threads competing
//! with the server for the cores. An answer waiting while earlier ones are
//! read counts in its latency, so latencies err high, never low.

pub use distributed_counter::testkit::connect_from;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Threads the generator drives its connections from (the machine has 2
/// cores; the server needs them more).
pub const CLIENT_THREADS: usize = 2;

/// Throughput and latencies of one measurement.
pub struct Outcome {
    pub units: u64,
    pub unit: &'static str,
    pub elapsed: Duration,
    /// Sorted.
    pub latencies: Vec<Duration>,
    pub errors: u64,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[index]
    }

    /// Several measurements of the same load as one: their units and times
    /// add up, their latencies pool.
    pub fn sum(outcomes: Vec<Outcome>) -> Outcome {
        let mut total = Outcome {
            units: 0,
            unit: outcomes.first().map_or("", |o| o.unit),
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
            errors: 0,
        };
        for outcome in outcomes {
            total.units += outcome.units;
            total.elapsed += outcome.elapsed;
            total.latencies.extend(outcome.latencies);
            total.errors += outcome.errors;
        }
        total.latencies.sort_unstable();
        total
    }

    /// An outcome known only by its rate (from another tool).
    pub fn rate(per_second: f64, unit: &'static str) -> Outcome {
        Outcome {
            units: per_second as u64,
            unit,
            elapsed: Duration::from_secs(1),
            latencies: Vec::new(),
            errors: 0,
        }
    }
}

/// Builds request number `seq` into the buffer.
pub type RequestBuilder = Arc<dyn Fn(&mut Vec<u8>, u64) + Send + Sync>;

/// When a measurement ends.
#[derive(Clone, Copy)]
pub enum Stop {
    After(Duration),
    /// After this many requests in all.
    Requests(u64),
}

/// A load: how many connections, from which source address, what each
/// request is (built from its sequence number), and what a 200 is worth.
pub struct Load {
    pub connections: usize,
    pub source: Option<IpAddr>,
    pub stop: Stop,
    pub request: RequestBuilder,
    pub units_per_request: u64,
    pub unit: &'static str,
}

/// Runs `load` against `addr`.
pub fn run(addr: SocketAddr, load: Load) -> io::Result<Outcome> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads = CLIENT_THREADS.min(load.connections.max(1));
    let load = Arc::new(load);
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let (next, load) = (next.clone(), load.clone());
            let mine =
                load.connections / threads + usize::from(thread < load.connections % threads);
            thread::spawn(move || drive(addr, &load, mine, &next, started))
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut ok, mut errors) = (0, 0);
    for handle in handles {
        let (mine, good, bad) = handle
            .join()
            .map_err(|_| io::Error::other("a client thread panicked"))??;
        latencies.extend(mine);
        ok += good;
        errors += bad;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Outcome {
        units: ok * load.units_per_request,
        unit: load.unit,
        elapsed,
        latencies,
        errors,
    })
}

type Driven = io::Result<(Vec<Duration>, u64, u64)>;

/// One client thread: `count` connections in lock-step until the load stops.
fn drive(
    addr: SocketAddr,
    load: &Load,
    count: usize,
    next: &AtomicU64,
    started: Instant,
) -> Driven {
    let mut connections = (0..count)
        .map(|_| Connection::open(addr, load.source))
        .collect::<io::Result<Vec<_>>>()?;
    let mut request = Vec::new();
    let mut sent_at = vec![Instant::now(); count];
    let mut sent = vec![false; count];
    let (mut latencies, mut ok, mut errors) = (Vec::new(), 0, 0);
    loop {
        for (index, connection) in connections.iter_mut().enumerate() {
            sent[index] = false;
            let seq = next.fetch_add(1, Ordering::Relaxed);
            let more = match load.stop {
                Stop::After(duration) => started.elapsed() < duration,
                Stop::Requests(total) => seq < total,
            };
            if !more {
                continue;
            }
            request.clear();
            (load.request)(&mut request, seq);
            connection.send(&request)?;
            sent_at[index] = Instant::now();
            sent[index] = true;
        }
        if !sent.iter().any(|&s| s) {
            return Ok((latencies, ok, errors));
        }
        for (index, connection) in connections.iter_mut().enumerate() {
            if !sent[index] {
                continue;
            }
            let status = connection.receive(&mut io::sink())?;
            latencies.push(sent_at[index].elapsed());
            if status == 200 {
                ok += 1;
            } else {
                errors += 1;
            }
        }
    }
}

/// A keep-alive HTTP/1.1 client connection.
pub struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: String,
}

impl Connection {
    /// Connects, from `source` if given (loopback has many addresses: one
    /// per simulated host).
    pub fn open(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Connection> {
        let stream = match source {
            Some(IpAddr::V4(ip)) => connect_from(ip, addr)?,
            Some(IpAddr::V6(_)) => return Err(io::Error::other("IPv4 sources only")),
            None => TcpStream::connect(addr)?,
        };
        stream.set_nodelay(true)?;
        Ok(Connection {
            writer: stream.try_clone()?,
            reader: BufReader::with_capacity(64 * 1024, stream),
            line: String::new(),
        })
    }

    pub fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.writer.write_all(request)
    }

    /// Reads one answer; returns its status and copies its body to `body`.
    pub fn receive(&mut self, body: &mut impl Write) -> io::Result<u16> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let status = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0u64;
        loop {
            self.line.clear();
            self.reader.read_line(&mut self.line)?;
            if self.line.trim_end().is_empty() {
                break;
            }
            if let Some((_, value)) = self
                .line
                .split_once(':')
                .filter(|(key, _)| key.eq_ignore_ascii_case("content-length"))
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        io::copy(&mut (&mut self.reader).take(length), body)?;
        Ok(status)
    }

    /// One request, its status and body.
    pub fn call(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        let mut request = Vec::new();
        http_request(&mut request, method, path, body);
        self.send(&request)?;
        let mut answer = Vec::new();
        let status = self.receive(&mut answer)?;
        Ok((status, answer))
    }
}

/// Writes an HTTP/1.1 request with a body to `out`.
pub fn http_request(out: &mut Vec<u8>, method: &str, path: &str, body: &[u8]) {
    let _ = write!(
        out,
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(body);
}

/// A `POST /items` of `batch` fresh items: IDs from `first_id + seq * batch`.
pub fn post_items(batch: u64, first_id: i64) -> RequestBuilder {
    Arc::new(move |out: &mut Vec<u8>, seq: u64| {
        let mut body = Vec::with_capacity(batch as usize * 36 + 2);
        body.push(b'[');
        for i in 0..batch {
            let id = first_id + (seq * batch + i) as i64;
            if i > 0 {
                body.push(b',');
            }
            let _ = write!(body, "{{\"ID\":{id},\"tenant\":\"tenant-{}\"}}", id % 100);
        }
        body.push(b']');
        http_request(out, "POST", "/items", &body);
    })
}

/// `GET /items/tenant-N/count` over 100 tenants.
pub fn get_counts() -> RequestBuilder {
    Arc::new(|out: &mut Vec<u8>, seq: u64| {
        let path = format!("/items/tenant-{}/count", seq % 100);
        http_request(out, "GET", &path, b"");
    })
}

/// A fixed GET.
pub fn get(path: &'static str) -> RequestBuilder {
    Arc::new(move |out: &mut Vec<u8>, _| http_request(out, "GET", path, b""))
}
