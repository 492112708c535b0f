//! `make bench`: drives the release binary with keep-alive HTTP/1.1 clients
//! and prints a table. In the same run it measures baselines, so figures can
//! be read as ratios on a shared, noisy machine (the small-request rows
//! run the limit and the service in turns, six rounds each, see
//! `in_turns`):
//! - the one-process limit (`limit.rs`): a minimal std-only server doing the
//!   same parse and the same four maps, with no distribution at all;
//! - Redis (a Lua script keeping id→tenant and tenant→count exact, and
//!   `redis-benchmark` HGET), when `redis-server` is installed.
//!
//! The last section runs the service built with `--features scaleout` over
//! a 3 + 3 Redis Cluster it starts on loopback (`scaleout.rs`), next to the
//! in-process service and the single Redis + Lua, when `redis-server`,
//! `redis-cli` and that build are there (`make bench` builds it).
//!
//! ```text
//! Usage: bench [--quick] [--server PATH] [--scaleout-server PATH] [--only SECTIONS]
//!   --quick                 every measurement about ten times smaller
//!   --server PATH           the service (default: distributed-counter beside bench)
//!   --scaleout-server PATH  the service built with --features scaleout
//!                           (default: target/scaleout/release/distributed-counter)
//!   --only SECTIONS         comma-separated, of: small, big, reads, nodes,
//!                           durable, front-door, scaleout (default: all)
//! ```
//!
//! ```text
//!   main.rs      the plan and the table
//!   load.rs      the load generator (lock-step keep-alive connections)
//!   limit.rs     the one-process limit server
//!   service.rs   the service under test, as a child process
//!   redis.rs     the Redis baselines
//!   attacks.rs   misbehaving clients, for the front-door rows
//!   scaleout.rs  the service over a Redis Cluster
//!   wrk.rs       the small POST shapes again, driven by wrk
//! ```

mod attacks;
mod limit;
mod load;
mod redis;
mod scaleout;
mod service;
mod wrk;

use load::{Load, Outcome, Stop};
use service::Service;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Sizes of each measurement; `--quick` makes them about ten times smaller.
struct Plan {
    quick: bool,
    /// How long each rate measurement runs.
    run: Duration,
    /// How many times the small-request rows run the limit and the service
    /// in turn (see [`in_turns`]), and how long each turn runs. Many short
    /// turns rather than a few long ones: at batch 1 under lock-step this
    /// box is bimodal (a run is fast or slow as a whole, from 45 k to
    /// 137 k items/s for the same binary), so a sum over few turns is
    /// still a coin toss.
    rounds: u32,
    turn: Duration,
    fresh_items: u64,
    growth_items: u64,
    read_items: u64,
    /// Items of the scale-out ingest rows (a Redis Cluster on this box
    /// takes in a fraction of what the in-process nodes do).
    scaleout_items: u64,
    /// The sections to run (`--only`); None runs them all.
    only: Option<Vec<String>>,
}

/// The sections, in the order they run, by their `--only` names.
const SECTIONS: [&str; 7] = [
    "small",
    "big",
    "reads",
    "nodes",
    "durable",
    "front-door",
    "scaleout",
];

impl Plan {
    fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }
}

/// The value after `flag`, if given.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let server_path = flag_value(&args, "--server")
        .unwrap_or_else(|| service::sibling_binary("distributed-counter"));
    let scaleout_path =
        flag_value(&args, "--scaleout-server").unwrap_or_else(service::scaleout_binary);
    let only: Option<Vec<String>> =
        flag_value(&args, "--only").map(|list| list.split(',').map(str::to_string).collect());
    if let Some(unknown) = only
        .iter()
        .flatten()
        .find(|s| !SECTIONS.contains(&s.as_str()))
    {
        eprintln!(
            "bench: no section {unknown:?} (--only takes: {})",
            SECTIONS.join(", ")
        );
        std::process::exit(2);
    }
    let scale = if quick { 10 } else { 1 };
    let plan = Plan {
        quick,
        run: if quick {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(2)
        },
        rounds: if quick { 1 } else { 6 },
        // Whole seconds: wrk takes its duration in seconds.
        turn: Duration::from_secs(1),
        fresh_items: 2_000_000 / scale,
        growth_items: 6_000_000 / scale,
        read_items: 1_000_000 / scale,
        scaleout_items: 400_000 / scale,
        only,
    };
    // Thousands of client connections in the front-door rows.
    let _ = distributed_counter::rlimit::raise_open_files(16_384);
    if let Err(e) = run(&server_path, &scaleout_path, &plan) {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn run(server_path: &str, scaleout_path: &str, plan: &Plan) -> io::Result<()> {
    println!(
        "distributed-counter benchmark ({} cores{})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if plan.quick { ", --quick" } else { "" }
    );
    let mut table = Table::default();
    type Section = fn(&str, &Plan, &mut Table) -> io::Result<()>;
    let sections: [Section; 6] = [
        small_requests,
        big_batches,
        reads,
        node_counts,
        durable,
        attacks::front_door,
    ];
    for (name, section) in SECTIONS.iter().zip(sections) {
        if plan.runs(name) {
            section(server_path, plan, &mut table)?;
        }
    }
    if plan.runs("scaleout") {
        scaleout::section(server_path, scaleout_path, plan, &mut table)?;
    }
    table.print();
    Ok(())
}

/// `connections` clients from 127.0.0.1 sending `request` until `stop`.
fn drive(
    addr: SocketAddr,
    connections: usize,
    stop: Stop,
    request: load::RequestBuilder,
    (units_per_request, unit): (u64, &'static str),
) -> io::Result<Outcome> {
    let load = Load {
        connections,
        source: None,
        stop,
        request,
        units_per_request,
        unit,
    };
    load::run(addr, load)
}

/// `connections` clients posting batches of `batch` fresh items for one run.
fn ingest(
    addr: SocketAddr,
    connections: usize,
    batch: u64,
    stop: Stop,
    first_id: i64,
) -> io::Result<Outcome> {
    let request = load::post_items(batch, first_id);
    drive(addr, connections, stop, request, (batch, "items/s"))
}

/// `items` items in 1000-item batches from 8 connections, IDs from
/// `first_id`: the shape of the big-batch rows.
fn ingest_1000(addr: SocketAddr, items: u64, first_id: i64) -> io::Result<Outcome> {
    ingest(addr, 8, 1000, Stop::Requests(items / 1000), first_id)
}

/// The one-process limit ingesting `items` fresh items: the baseline of
/// the big-batch rows.
fn limit_baseline(items: u64) -> io::Result<Outcome> {
    let limit = limit::LimitServer::start()?;
    ingest_1000(limit.addr, items, 0)
}

/// `connections` clients reading counts (or `path`) for one run.
fn reads_of(
    addr: SocketAddr,
    connections: usize,
    stop: Stop,
    request: load::RequestBuilder,
) -> io::Result<Outcome> {
    drive(addr, connections, stop, request, (1, "req/s"))
}

/// Measures a baseline (`target` 0) and the service (`target` 1) in turns,
/// `rounds` times each, and adds up each one's rounds: a burst of outside
/// load on this shared machine then hits both alike, where one long run of
/// each could land on only one of them.
fn in_turns(
    rounds: u32,
    measure: impl FnMut(u32, usize) -> io::Result<Outcome>,
) -> io::Result<(Outcome, Outcome)> {
    let [baseline, service] = in_turns_of::<2>(rounds, measure)?;
    Ok((baseline, service))
}

/// `in_turns` for `N` targets (0 to `N` − 1), measured in that order in
/// each round.
fn in_turns_of<const N: usize>(
    rounds: u32,
    mut measure: impl FnMut(u32, usize) -> io::Result<Outcome>,
) -> io::Result<[Outcome; N]> {
    let mut turns: [Vec<Outcome>; N] = std::array::from_fn(|_| Vec::new());
    for round in 0..rounds {
        for (target, outcomes) in turns.iter_mut().enumerate() {
            outcomes.push(measure(round, target)?);
        }
    }
    Ok(turns.map(Outcome::sum))
}

/// One shape against the limit (`targets[0]`) and the service
/// (`targets[1]`), in turns: `run(addr, first_id)` posts fresh IDs from
/// `first_id` on; each round and each shape gets IDs of its own.
fn compare_in_turns(
    table: &mut Table,
    plan: &Plan,
    name: &str,
    targets: [SocketAddr; 2],
    first_id: &mut i64,
    mut run: impl FnMut(SocketAddr, i64) -> io::Result<Outcome>,
) -> io::Result<()> {
    let first = *first_id;
    *first_id += 1 << 40;
    let measured = in_turns(plan.rounds, |round, target| {
        run(targets[target], first + (i64::from(round) << 36))
    });
    // One shape that cannot be measured (wrk failing, say) is reported and
    // the others still run.
    let (baseline, measured) = match measured {
        Ok(pair) => pair,
        Err(e) => {
            table.note(format!("{name}: not measured: {e}"));
            return Ok(());
        }
    };
    table.row(&format!("limit: {name}"), &baseline, None);
    table.row(&format!("service: {name}"), &measured, Some(&baseline));
    Ok(())
}

/// Batches of 1, 10 and 100 at 8, 32 and 128 connections, against the
/// one-process limit doing the same work; then how evenly single-item
/// writes spread over the nodes.
fn small_requests(server_path: &str, plan: &Plan, table: &mut Table) -> io::Result<()> {
    table.section("Small requests: the service against the one-process limit, same shapes");
    let script = if wrk::available() {
        Some(wrk::Script::write()?)
    } else {
        table.note("wrk is not installed: the rows driven by wrk are skipped".to_string());
        None
    };
    let mut first_id = 0i64;
    for batch in [1u64, 10, 100] {
        for connections in [8usize, 32, 128] {
            // Fresh servers for each shape: a row compares what a request
            // costs, not maps grown by earlier rows (the limit's plain maps
            // stall for seconds while they rehash tens of millions of items,
            // long enough for a whole wrk run to complete nothing).
            let limit = limit::LimitServer::start()?;
            let server = Service::start(server_path, 4, &[])?;
            let targets = [limit.addr, server.addr];
            let name = format!("batch {batch}, {connections} connections");
            compare_in_turns(table, plan, &name, targets, &mut first_id, |addr, ids| {
                ingest(addr, connections, batch, Stop::After(plan.turn), ids)
            })?;
            if let Some(script) = script.as_ref().filter(|_| batch < 100) {
                let name = format!("{name}, wrk");
                compare_in_turns(table, plan, &name, targets, &mut first_id, |addr, ids| {
                    script.post_items(addr, connections, batch, plan.turn, ids)
                })?;
            }
        }
    }
    // Single-item traffic only, on a fresh service: the direct writes
    // (`received`) must be spread evenly.
    let server = Service::start(server_path, 4, &[])?;
    ingest(server.addr, 32, 1, Stop::After(plan.run), 0)?;
    let received = server.received()?;
    let mean = received.iter().sum::<u64>() as f64 / received.len().max(1) as f64;
    let worst = received
        .iter()
        .map(|&r| (r as f64 - mean).abs() / mean.max(1.0))
        .fold(0.0, f64::max);
    table.note(format!(
        "received after single-item traffic: {received:?} (worst {:.1}% from the mean)",
        worst * 100.0
    ));
    Ok(())
}

/// 1000-item batches: fresh, re-posted, until replicated; and while the
/// maps grow to millions of items, with the memory each item costs.
fn big_batches(server_path: &str, plan: &Plan, table: &mut Table) -> io::Result<()> {
    table.section("Big batches (1000 items, 8 connections)");
    let baseline = limit_baseline(plan.fresh_items)?;
    table.row("limit: fresh", &baseline, None);
    let server = Service::start(server_path, 4, &[])?;
    let fresh = ingest_1000(server.addr, plan.fresh_items, 0)?;
    table.row("service: fresh", &fresh, Some(&baseline));
    let replicated = server.until_replicated(&fresh)?;
    table.row(
        "  same, until all 4 replicas applied every item",
        &replicated,
        Some(&baseline),
    );
    let again = ingest_1000(server.addr, plan.fresh_items, 0)?;
    table.row("service: re-posting existing IDs", &again, Some(&baseline));
    drop(server);

    let server = Service::start(server_path, 4, &[])?;
    let before = server.rss_bytes();
    let growth = ingest_1000(server.addr, plan.growth_items, 3 << 40)?;
    table.row(
        &format!("service: while maps grow 0 → {} items", plan.growth_items),
        &growth,
        Some(&baseline),
    );
    server.until_replicated(&growth)?;
    let after = server.rss_bytes();
    table.note(format!(
        "memory: {:.1} bytes of RSS per item per replica at {} items ({:.0} MB → {:.0} MB)",
        after.saturating_sub(before) as f64 / (plan.growth_items * 4) as f64,
        plan.growth_items,
        before as f64 / 1e6,
        after as f64 / 1e6,
    ));
    table.note(format!(
        "footprint: binary {:.2} MB; idle RSS with 4 nodes {:.1} MB",
        std::fs::metadata(server_path).map_or(0, |m| m.len()) as f64 / 1e6,
        before as f64 / 1e6
    ));
    Ok(())
}

/// GET count at 32 connections against the limit and Redis HGET, and with
/// a million items stored.
fn reads(server_path: &str, plan: &Plan, table: &mut Table) -> io::Result<()> {
    table.section("Reads (32 connections)");
    let limit = limit::LimitServer::start()?;
    let server = Service::start(server_path, 4, &[])?;
    let targets = [limit.addr, server.addr];
    for addr in targets {
        ingest(addr, 4, 1000, Stop::Requests(1), 0)?;
    }
    // In turns, as the small-request rows: one pass each let a burst of
    // outside load decide the ratio.
    let (baseline, small) = in_turns(plan.rounds, |_, target| {
        reads_of(
            targets[target],
            32,
            Stop::After(plan.turn),
            load::get_counts(),
        )
    })?;
    table.row("limit: GET count", &baseline, None);
    table.row("service: GET count, 1k items", &small, Some(&baseline));
    let health = reads_of(server.addr, 32, Stop::After(plan.run), load::get("/health"))?;
    table.row(
        "service: GET /health (HTTP alone)",
        &health,
        Some(&baseline),
    );
    if wrk::available() {
        let script = wrk::Script::write()?;
        compare_in_turns(table, plan, "GET count, wrk", targets, &mut 0, |addr, _| {
            script.get_counts(addr, 32, plan.turn)
        })?;
    }
    let one = reads_of(server.addr, 1, Stop::After(plan.run), load::get_counts())?;
    table.row("service: GET count, 1 connection", &one, None);
    redis_in_turns(plan, table, targets);
    ingest_1000(server.addr, plan.read_items, 1 << 40)?;
    let large = reads_of(server.addr, 32, Stop::After(plan.run), load::get_counts())?;
    table.row(
        &format!("service: GET count, {} items", plan.read_items),
        &large,
        Some(&small),
    );
    Ok(())
}

/// GET count at 32 connections against `redis-benchmark -c 32` HGET, in
/// turns as against the limit: a single Redis run after the rest let the
/// moment decide (the ratio moved from 0.72x to 1.30x across three runs).
/// The limit (`targets[0]`) takes its turns too: it is what a thread per
/// connection can do at best, so its ratio to Redis is the ceiling of the
/// service's (`targets[1]`).
fn redis_in_turns(plan: &Plan, table: &mut Table, targets: [SocketAddr; 2]) {
    let hget = match redis::Hget::start() {
        Ok(hget) => hget,
        Err(e) => return table.note(format!("Redis HGET not measured: {e}")),
    };
    // About one turn's worth at this box's rates.
    let requests = if plan.quick { 50_000 } else { 100_000 };
    let measured = in_turns_of::<3>(plan.rounds, |_, target| match target {
        0 => hget.rate(requests).map(|rate| Outcome::rate(rate, "req/s")),
        _ => reads_of(
            targets[target - 1],
            32,
            Stop::After(plan.turn),
            load::get_counts(),
        ),
    });
    match measured {
        Ok([redis, limit, service]) => {
            table.row("redis-benchmark HGET, 32 connections", &redis, None);
            table.row(
                "limit: GET count, in turns with Redis",
                &limit,
                Some(&redis),
            );
            table.row(
                "service: GET count, in turns with Redis",
                &service,
                Some(&redis),
            );
        }
        Err(e) => table.note(format!("Redis HGET not measured: {e}")),
    }
}

/// `redis-benchmark` HGET at 32 connections: a row named `row.0` with its
/// ratio to `row.1`, and a note with the GET `measured.1` (named
/// `measured.0`) over it; a note saying why when it cannot run.
fn hget_row(plan: &Plan, table: &mut Table, row: (&str, &Outcome), measured: (&str, &Outcome)) {
    match redis::hget_rate(plan) {
        Ok(rate) => {
            table.row(row.0, &Outcome::rate(rate, "req/s"), Some(row.1));
            table.note(format!(
                "{} / Redis HGET: {:.2}x",
                measured.0,
                measured.1.per_second() / rate
            ));
        }
        Err(e) => table.note(format!("Redis HGET not measured: {e}")),
    }
}

/// 1000-item ingest with 1, 2, 4 and 8 nodes, and Redis + Lua.
fn node_counts(server_path: &str, plan: &Plan, table: &mut Table) -> io::Result<()> {
    table.section("Nodes (1000-item batches, 8 connections)");
    let baseline = limit_baseline(plan.fresh_items / 2)?;
    for nodes in [1, 2, 4, 8] {
        let server = Service::start(server_path, nodes, &[])?;
        let result = ingest_1000(server.addr, plan.fresh_items / 2, 0)?;
        table.row(
            &format!("service: --nodes {nodes}"),
            &result,
            Some(&baseline),
        );
    }
    match redis::lua_ingest(plan.fresh_items / 4) {
        Ok(result) => table.row("redis + Lua, 1000-item batches", &result, Some(&baseline)),
        Err(e) => table.note(format!("Redis + Lua not measured: {e}")),
    }
    Ok(())
}

/// Durable mode: ingest with the log synced per group, then the time a
/// restart takes to recover `read_items` items after `kill -9`.
fn durable(server_path: &str, plan: &Plan, table: &mut Table) -> io::Result<()> {
    table.section("Durable (--data-dir, --fsync always; 1000-item batches)");
    let dir = std::env::temp_dir().join(format!("dc-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_string_lossy().into_owned();
    let args = ["--data-dir", dir_arg.as_str()];
    let baseline = limit_baseline(plan.read_items)?;
    let server = Service::start(server_path, 4, &args)?;
    let fresh = ingest_1000(server.addr, plan.read_items, 0)?;
    table.row("durable: fresh", &fresh, Some(&baseline));
    let again = ingest_1000(server.addr, plan.read_items, 0)?;
    table.row("durable: re-posting existing IDs", &again, Some(&baseline));
    drop(server); // kill -9
    let disk: u64 = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let started = std::time::Instant::now();
    let server = Service::start(server_path, 4, &args)?;
    let restart = started.elapsed();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    table.note(format!(
        "durable: restart after kill -9 with {} items took {:.2} s; data dir {:.1} bytes per live item",
        plan.read_items,
        restart.as_secs_f64(),
        disk as f64 / plan.read_items as f64
    ));
    Ok(())
}

/// The printed table: rows with their ratio to a baseline, by section.
#[derive(Default)]
pub struct Table {
    lines: Vec<String>,
}

impl Table {
    pub fn section(&mut self, title: &str) {
        let line = format!(
            "\n## {title}\n\n| {:<56} | {:>20} | {:>8} | {:>8} | {:>8} | {:>7} |\n|{}|{}|{}|{}|{}|{}|",
            "measurement",
            "rate",
            "p50 ms",
            "p99 ms",
            "max ms",
            "ratio",
            "-".repeat(58),
            "-".repeat(22),
            "-".repeat(10),
            "-".repeat(10),
            "-".repeat(10),
            "-".repeat(9)
        );
        println!("{line}");
        self.lines.push(line);
    }

    pub fn row(&mut self, name: &str, outcome: &Outcome, baseline: Option<&Outcome>) {
        let ratio = baseline.map_or(String::new(), |b| {
            format!("{:.2}x", outcome.per_second() / b.per_second())
        });
        let errors = if outcome.errors > 0 {
            format!("  ({} errors)", outcome.errors)
        } else {
            String::new()
        };
        // A rate from another tool comes without latencies: "-", not 0.
        let latency = |p: f64| match outcome.latencies.is_empty() {
            true => "-".to_string(),
            false => format!("{:.2}", ms(outcome.percentile(p))),
        };
        let line = format!(
            "| {name:<56} | {:>12.0} {:<7} | {:>8} | {:>8} | {:>8} | {ratio:>7} |{errors}",
            outcome.per_second(),
            outcome.unit,
            latency(0.5),
            latency(0.99),
            latency(1.0),
        );
        println!("{line}");
        self.lines.push(line);
    }

    pub fn note(&mut self, note: String) {
        println!("{note}");
        self.lines.push(note);
    }

    fn print(&self) {
        println!("\n# All figures of this run\n");
        for line in &self.lines {
            println!("{line}");
        }
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
