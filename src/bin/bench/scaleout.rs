//! The scale-out rows: the service built with `--features scaleout` over a
//! throwaway Redis Cluster (3 masters + 3 replicas on loopback, from
//! `testkit::redis`), next to the in-process service and a single Redis +
//! Lua, all measured in this section with the same shapes and item count.
//! Everything shares the machine's cores: the ratios say what one box gives
//! in each mode, not what a cluster of machines would.

use crate::load::{self, Stop};
use crate::service::Service;
use crate::{Plan, Table, hget_row, ingest_1000, reads_of, redis};
use distributed_counter::testkit::redis::{RedisCluster, missing};
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long forming the cluster (or one of its steps) may take.
const CLUSTER_PATIENCE: Duration = Duration::from_secs(30);

/// How to build what the section needs, for the note when it is absent.
const BUILD: &str = "make bench builds it with: cargo build --release --features scaleout \
                     --bin distributed-counter --target-dir target/scaleout";

/// Fresh ingest (1000-item batches, 8 connections) and GET count (32
/// connections): in-process, single Redis + Lua, Redis HGET, scale-out.
pub fn section(
    server_path: &str,
    scaleout_path: &str,
    plan: &Plan,
    table: &mut Table,
) -> io::Result<()> {
    table.section("Scale-out (Redis Cluster, 3 masters + 3 replicas)");
    if let Some(why) = missing() {
        table.note(format!("scale-out not measured: {why}"));
        return Ok(());
    }
    if !Path::new(scaleout_path).is_file() {
        table.note(format!(
            "scale-out not measured: no scale-out build at {scaleout_path}; {BUILD}"
        ));
        return Ok(());
    }
    if let Err(why) = built_with_scaleout(scaleout_path) {
        table.note(format!(
            "scale-out not measured: {scaleout_path} is not a scale-out build ({why}); {BUILD}"
        ));
        return Ok(());
    }
    let items = plan.scaleout_items;

    let memory = Service::start(server_path, 4, &[])?;
    let memory_ingest = ingest_1000(memory.addr, items, 0)?;
    table.row(
        &format!("in-process (4 nodes): fresh, {items} items"),
        &memory_ingest,
        None,
    );
    let memory_get = reads_of(memory.addr, 32, Stop::After(plan.run), load::get_counts())?;
    drop(memory);
    let lua = match redis::lua_ingest(items) {
        Ok(lua) => {
            table.row(
                "single Redis + Lua: fresh, same items",
                &lua,
                Some(&memory_ingest),
            );
            Some(lua)
        }
        Err(e) => {
            table.note(format!("single Redis + Lua not measured: {e}"));
            None
        }
    };

    let started = Instant::now();
    let cluster = RedisCluster::start(CLUSTER_PATIENCE)?;
    let formed = started.elapsed();
    let store = cluster.store_arg();
    let service = Service::start_with(scaleout_path, &["--store", &store])?;
    let before = cluster.used_memory()?;
    let fresh = ingest_1000(service.addr, items, 0)?;
    table.row("scale-out: fresh, same items", &fresh, Some(&memory_ingest));
    let after = cluster.used_memory()?;
    if let Some(lua) = &lua {
        table.note(format!(
            "scale-out ingest / single Redis + Lua: {:.2}x",
            fresh.per_second() / lua.per_second()
        ));
    }

    table.row(
        "in-process (4 nodes): GET count, 32 connections",
        &memory_get,
        None,
    );
    let get = reads_of(service.addr, 32, Stop::After(plan.run), load::get_counts())?;
    table.row(
        "scale-out: GET count, 32 connections",
        &get,
        Some(&memory_get),
    );
    hget_row(
        plan,
        table,
        (
            "single Redis: redis-benchmark HGET, 32 connections",
            &memory_get,
        ),
        (
            "scale-out GET count (one HGET per partition, pipelined per master)",
            &get,
        ),
    );
    drop(service);
    drop(cluster);
    table.note(format!(
        "scale-out: cluster formed in {:.1} s; Redis used_memory {:.0} bytes per item per copy \
         (masters + replicas, {items} items)",
        formed.as_secs_f64(),
        after.saturating_sub(before) as f64 / (items * 2) as f64,
    ));
    Ok(())
}

/// Ok when `path` is the service built with `--features scaleout`, else
/// what it said. Asked with flags both builds refuse while reading them,
/// before opening anything: a scale-out build refuses `--nodes` with a
/// Redis store, a default build refuses the store.
fn built_with_scaleout(path: &str) -> Result<(), String> {
    let out = Command::new(path)
        .args(["--store", "redis-cluster://127.0.0.1:1", "--nodes", "1"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let said = String::from_utf8_lossy(&out.stderr);
    if said.contains("--nodes does not apply with --store redis-cluster://") {
        Ok(())
    } else {
        Err(said.lines().next().unwrap_or("no answer").to_string())
    }
}
