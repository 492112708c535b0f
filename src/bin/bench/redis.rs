//! The Redis baselines: ingest through a Lua script that keeps id→tenant and
//! tenant→count exact, and `redis-benchmark` HGET at 32 connections.

use crate::Plan;
use crate::load::Outcome;
use distributed_counter::testkit::redis::resp_command;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long redis-server may take to start.
const START_PATIENCE: Duration = Duration::from_secs(5);

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
        let deadline = Instant::now() + START_PATIENCE;
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

/// 8 connections ingest `total` items in batches of 1000 through the script.
pub fn lua_ingest(total: u64) -> io::Result<Outcome> {
    let redis = RedisServer::start()?;
    let batches = (total / 1000).max(8);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let addr = redis.addr;
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let next = next.clone();
            thread::spawn(move || -> io::Result<Vec<Duration>> {
                let stream = TcpStream::connect(addr)?;
                stream.set_nodelay(true)?;
                let mut writer = stream.try_clone()?;
                let mut reader = BufReader::new(stream);
                let (mut out, mut line, mut latencies) = (Vec::new(), String::new(), Vec::new());
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if index >= batches {
                        return Ok(latencies);
                    }
                    let args: Vec<String> = (0..1000)
                        .flat_map(|i| {
                            let id = index * 1000 + i;
                            [id.to_string(), format!("tenant-{}", id % 100)]
                        })
                        .collect();
                    let mut parts: Vec<&[u8]> = vec![b"EVAL", LUA_INGEST.as_bytes(), b"0"];
                    parts.extend(args.iter().map(|a| a.as_bytes()));
                    out.clear();
                    resp_command(&mut out, &parts);
                    let sent = Instant::now();
                    writer.write_all(&out)?;
                    line.clear();
                    reader.read_line(&mut line)?;
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(
            handle
                .join()
                .map_err(|_| io::Error::other("client panicked"))??,
        );
    }
    latencies.sort();
    Ok(Outcome {
        units: batches * 1000,
        unit: "items/s",
        elapsed: started.elapsed(),
        latencies,
        errors: 0,
    })
}

/// A Redis server holding a 100-field hash, for `redis-benchmark -c 32`
/// HGET of one of its fields.
pub struct Hget {
    redis: RedisServer,
}

impl Hget {
    pub fn start() -> io::Result<Hget> {
        let redis = RedisServer::start()?;
        let mut setup = TcpStream::connect(redis.addr)?;
        let mut out = Vec::new();
        for tenant in 0..100 {
            resp_command(
                &mut out,
                &[
                    b"HSET",
                    b"counts",
                    format!("tenant-{tenant}").as_bytes(),
                    b"10",
                ],
            );
        }
        setup.write_all(&out)?;
        Ok(Hget { redis })
    }

    /// Requests/s over `requests` HGETs.
    pub fn rate(&self, requests: u64) -> io::Result<f64> {
        let port = self.redis.addr.port().to_string();
        let requests = requests.to_string();
        let output = Command::new("redis-benchmark")
            .args([
                "-p", &port, "-c", "32", "-n", &requests, "-q", "HGET", "counts", "tenant-7",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("redis-benchmark not available ({e})"))
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        // "HGET counts tenant-7: 106382.98 requests per second, p50=0.159 msec"
        text.rsplit('\r')
            .chain(text.lines())
            .filter_map(|line| line.split_once(": ").map(|(_, rest)| rest))
            .find_map(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .ok_or_else(|| {
                io::Error::other(format!("cannot read redis-benchmark's output: {text}"))
            })
    }
}

/// `redis-benchmark -c 32` HGET of a field of a 100-field hash: requests/s.
pub fn hget_rate(plan: &Plan) -> io::Result<f64> {
    let requests = if plan.quick { 50_000 } else { 400_000 };
    Hget::start()?.rate(requests)
}
