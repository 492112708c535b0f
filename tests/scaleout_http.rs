//! The service with `--store redis-cluster://...` (`--features scaleout`),
//! through its HTTP API: the same API cases as the in-process mode, two
//! instances on one cluster, a Redis master killed under write load, and an
//! instance restarted. Skipped (with a line) when redis-server is missing.
#![cfg(feature = "scaleout")]

mod common;
#[path = "common/redis_cluster.rs"]
mod redis_cluster;

use common::api_cases::{CASES, Ns};
use common::{Server, items};
use distributed_counter::scaleout::COUNTER_KEY;
use redis_cluster::RedisCluster;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

/// An instance of the service on `cluster`.
fn instance(cluster: &RedisCluster) -> Server {
    let store = cluster.store_arg();
    Server::start(&["--store", &store])
}

macro_rules! shared_cluster {
    () => {
        match RedisCluster::shared() {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

#[test]
fn every_api_case_holds_with_a_redis_cluster() {
    let cluster = shared_cluster!();
    let server = instance(cluster);
    for (name, case) in CASES {
        eprintln!("case {name}");
        case(&server);
    }
}

#[test]
fn two_instances_read_each_others_writes() {
    let cluster = shared_cluster!();
    let (a, b) = (instance(cluster), instance(cluster));
    let ns = Ns::new("two");
    let tenant = ns.t("shared");
    for round in 0..40 {
        let (writer, reader) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let batch = items([(ns.id(round), tenant.as_str())]);
        assert_eq!(writer.post_items(&batch).status, 200);
        assert_eq!(reader.count(&tenant), round as u64 + 1, "round {round}");
    }
}

#[test]
fn the_latest_write_wins_across_partitions() {
    let cluster = shared_cluster!();
    let server = instance(cluster);
    let ns = Ns::new("lww-parts");
    let (old, new) = (ns.t("old"), ns.t("new"));
    // 500 IDs land in every partition; then every other one moves.
    let all = items((0..500).map(|i| (ns.id(i), old.as_str())));
    assert_eq!(server.post_items(&all).status, 200);
    let moved = items((0..500).step_by(2).map(|i| (ns.id(i), new.as_str())));
    assert_eq!(server.post_items(&moved).status, 200);
    assert_eq!((server.count(&old), server.count(&new)), (250, 250));
}

#[test]
fn flags_that_do_not_apply_are_refused() {
    let cluster = shared_cluster!();
    let store = cluster.store_arg();
    // A path nothing on the machine holds: a file already there would be
    // refused for being one, before the flag is.
    let no_dir = std::env::temp_dir().join(format!("dc-no-data-dir-{}", std::process::id()));
    let no_dir = no_dir.to_string_lossy();
    for extra in [
        &["--nodes", "2"][..],
        &["--fault-injection"],
        &["--data-dir", &no_dir],
    ] {
        let mut args = vec!["--store", store.as_str()];
        args.extend_from_slice(extra);
        let output = std::process::Command::new(common::binary())
            .args(&args)
            .output()
            .expect("the binary runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("does not apply"), "{stderr}");
    }
}

/// Posts one-item batches until stopped; returns the acknowledged items
/// (ID → tenant) and how many items were refused.
fn write_until(
    server: &Server,
    ns: &Ns,
    writer: i64,
    stop: &AtomicBool,
) -> (HashMap<i64, String>, u64) {
    let mut acked = HashMap::new();
    let mut refused = 0;
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let id = ns.id(writer * 1_000_000 + n);
        let tenant = ns.t(&format!("w{}", n % 3));
        let reply = server.call(
            "POST",
            "/items",
            &items([(id, tenant.as_str())]).to_string(),
        );
        if reply.status == 200 {
            acked.insert(id, tenant);
        } else {
            assert_eq!(reply.status, 503, "{}", reply.text());
            refused += 1;
        }
        n += 1;
    }
    (acked, refused)
}

#[test]
fn a_killed_master_loses_no_acknowledged_item_and_an_instance_restart_nothing() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let server = Arc::new(instance(&cluster));
    let ns = Arc::new(Ns::new("kill"));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|writer| {
            let (server, ns, stop) = (server.clone(), ns.clone(), stop.clone());
            thread::spawn(move || write_until(&server, &ns, writer, &stop))
        })
        .collect();
    let acked_now = || {
        server
            .nodes()
            .iter()
            .map(|n| n["received"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    redis_cluster::wait_until("writes before the kill", || acked_now() >= 30);
    let victim = cluster.master_port_for(COUNTER_KEY);
    cluster.kill(victim);
    cluster.wait_for_failover(victim, COUNTER_KEY);
    cluster.restart(victim);
    cluster.wait_until_healthy();
    let healed = acked_now();
    redis_cluster::wait_until("writes after the failover", || acked_now() >= healed + 30);
    stop.store(true, Ordering::SeqCst);
    let mut acked = HashMap::new();
    for writer in writers {
        let (mine, _) = writer.join().expect("writer thread");
        acked.extend(mine);
    }
    let mut expected: HashMap<String, u64> = HashMap::new();
    for tenant in acked.values() {
        *expected.entry(tenant.clone()).or_default() += 1;
    }
    // Every acknowledged item is there; a refused one may be too (503 makes
    // no promise), so counts are at least what was acknowledged.
    for (tenant, &want) in &expected {
        assert!(server.count(tenant) >= want, "tenant {tenant}");
    }
    let before: Vec<u64> = expected.keys().map(|t| server.count(t)).collect();
    // An instance restart (kill -9 of the service) loses nothing.
    drop(Arc::try_unwrap(server).ok());
    let restarted = instance(&cluster);
    let after: Vec<u64> = expected.keys().map(|t| restarted.count(t)).collect();
    assert_eq!(before, after);
}
