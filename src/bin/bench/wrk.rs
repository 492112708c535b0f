//! The small POST shapes and GET count again, driven by `wrk` when it is
//! installed: a second load generator to check the first against. Ours (`load.rs`)
//! drives its connections in lock-step (send on each, then read each), so a
//! step lasts as long as its slowest answer and arrivals come in bursts;
//! wrk sends on a connection as soon as its answer is in (epoll), the usual
//! closed loop. A server with a quick median and a longer tail fares better
//! under wrk than under lock-step, so the two can disagree: both are shown.

use crate::load::Outcome;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Threads wrk drives its connections from (as many as ours).
const WRK_THREADS: usize = crate::load::CLIENT_THREADS;

/// The script: POSTs of `batch` fresh items, IDs from `first` on, each wrk
/// thread in its own range; tenants as in `load::post_items`. A batch of 0
/// means GET count over the same 100 tenants instead.
const SCRIPT: &str = r#"
local thread_count = 0
function setup(thread)
  thread:set("index", thread_count)
  thread_count = thread_count + 1
end
function init(args)
  first = tonumber(args[1]) + index * 1000000000
  batch = tonumber(args[2])
  sent = 0
end
function request()
  if batch == 0 then
    sent = sent + 1
    return wrk.format("GET", "/items/tenant-" .. (sent % 100) .. "/count")
  end
  local parts = {}
  for i = 1, batch do
    local id = first + sent * batch + i - 1
    parts[i] = '{"ID":' .. id .. ',"tenant":"tenant-' .. (id % 100) .. '"}'
  end
  sent = sent + 1
  local body = "[" .. table.concat(parts, ",") .. "]"
  return wrk.format("POST", "/items", {["Content-Type"] = "application/json"}, body)
end
"#;

/// Whether `wrk` can be run.
pub fn available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The script, written once to a file wrk can read.
pub struct Script(PathBuf);

impl Script {
    pub fn write() -> io::Result<Script> {
        let path = std::env::temp_dir().join(format!("dc-bench-{}.lua", std::process::id()));
        std::fs::File::create(&path)?.write_all(SCRIPT.as_bytes())?;
        Ok(Script(path))
    }

    /// POSTs of `batch` items from `connections` connections for `run`:
    /// items per second only (wrk's latencies are its own percentiles).
    pub fn post_items(
        &self,
        addr: SocketAddr,
        connections: usize,
        batch: u64,
        run: Duration,
        first_id: i64,
    ) -> io::Result<Outcome> {
        let (requests, seconds) = self.run(addr, connections, run, &[first_id, batch as i64])?;
        Ok(Outcome {
            units: requests * batch,
            unit: "items/s",
            elapsed: Duration::from_secs_f64(seconds),
            latencies: Vec::new(),
            errors: 0,
        })
    }

    /// GET count from `connections` connections for `run`: requests per
    /// second only.
    pub fn get_counts(
        &self,
        addr: SocketAddr,
        connections: usize,
        run: Duration,
    ) -> io::Result<Outcome> {
        let (requests, seconds) = self.run(addr, connections, run, &[0, 0])?;
        Ok(Outcome {
            units: requests,
            unit: "req/s",
            elapsed: Duration::from_secs_f64(seconds),
            latencies: Vec::new(),
            errors: 0,
        })
    }

    /// Runs wrk with the script and its `args`; the requests it completed
    /// and in how many seconds. A run that completes none, or gets an
    /// answer other than 2xx, is an error.
    fn run(
        &self,
        addr: SocketAddr,
        connections: usize,
        run: Duration,
        args: &[i64],
    ) -> io::Result<(u64, f64)> {
        let output = Command::new("wrk")
            .args([
                "-t",
                &WRK_THREADS.min(connections).to_string(),
                "-c",
                &connections.to_string(),
                "-d",
                // wrk takes whole seconds.
                &format!("{}s", run.as_secs().max(1)),
                "-s",
            ])
            .arg(&self.0)
            .arg(format!("http://{addr}/"))
            .arg("--")
            .args(args.iter().map(i64::to_string))
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let (requests, seconds) = completed(&text)
            .ok_or_else(|| io::Error::other(format!("wrk printed no request count:\n{text}")))?;
        if requests == 0 || text.contains("Non-2xx") {
            let said = String::from_utf8_lossy(&output.stderr);
            return Err(io::Error::other(format!(
                "wrk completed {requests} requests or saw errors:\n{text}{said}"
            )));
        }
        Ok((requests, seconds))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Requests and seconds from wrk's "N requests in 2.00s, ..." line.
fn completed(text: &str) -> Option<(u64, f64)> {
    let line = text.lines().find(|line| line.contains(" requests in "))?;
    let mut words = line.split_whitespace();
    let requests = words.next()?.parse().ok()?;
    let seconds = words.nth(2)?.trim_end_matches(',');
    let seconds = seconds.strip_suffix("ms").map_or_else(
        || seconds.strip_suffix('s')?.parse().ok(),
        |ms| ms.parse::<f64>().ok().map(|ms| ms / 1000.0),
    )?;
    Some((requests, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_count_line_is_read() {
        let text =
            "Running 2s test\n  74886 requests in 2.00s, 9.21MB read\nRequests/sec:  37443.00\n";
        assert_eq!(completed(text), Some((74886, 2.0)));
        assert_eq!(
            completed("  10 requests in 999.99ms, 1KB read"),
            Some((10, 0.99999))
        );
        assert_eq!(completed("nothing"), None);
    }
}
