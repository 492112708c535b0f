//! The Redis Cluster store (`--features scaleout`), against real clusters of
//! 3 masters and 3 replicas. Tests that leave the cluster as they found it
//! share one cluster, each with its own IDs and tenants; tests that break it
//! (kill a master, exhaust the versions) start their own.
#![cfg(feature = "scaleout")]

#[path = "common/redis_cluster.rs"]
mod redis_cluster;

use distributed_counter::scaleout::{
    APPLY_FUNCTION, COUNTER_KEY, PARTITIONS, REQUEST_TIMEOUT, RedisOptions, RedisStore,
    ScaleoutError, VERSION_LIMIT,
};
use redis_cluster::{RedisCluster, wait_until};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Starts (or joins) the shared cluster, or returns from the test when Redis
/// is not installed.
macro_rules! shared_cluster {
    () => {
        match RedisCluster::shared() {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

macro_rules! own_cluster {
    () => {
        match RedisCluster::start() {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

fn connect(cluster: &RedisCluster) -> RedisStore {
    RedisStore::connect(&cluster.seeds(), RedisOptions::default())
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn count(store: &RedisStore, tenant: &str) -> u64 {
    store
        .count(tenant)
        .unwrap_or_else(|e| panic!("count {tenant}: {e}"))
}

/// Writes as a client would: a batch that no replica confirmed in time
/// (a 503) is sent again, a few times. On a loaded 2-core box running six
/// servers, a replica can lag past the WAIT timeout now and then.
fn write(store: &RedisStore, items: &[(i64, &str)]) {
    for _ in 1..WRITE_TRIES {
        match store.write(items) {
            Err(e @ ScaleoutError::NotReplicated { .. }) => eprintln!("retrying: {e}"),
            Err(e) => panic!("write of {} items: {e}", items.len()),
            Ok(()) => return,
        }
    }
    store
        .write(items)
        .unwrap_or_else(|e| panic!("write of {} items: {e}", items.len()));
}

const WRITE_TRIES: usize = 3;

/// The value of an unlabelled series in the store's metrics.
fn metric(store: &RedisStore, name: &str) -> u64 {
    let mut text = String::new();
    store.render_metrics(&mut text);
    let line = text.lines().find(|l| l.starts_with(&format!("{name} ")));
    let value = line.and_then(|l| l.rsplit(' ').next()?.parse().ok());
    value.unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// Partitions whose `cnt` hash has a field for `tenant`.
fn partitions_holding(cluster: &RedisCluster, tenant: &str) -> usize {
    (0..PARTITIONS)
        .filter(|p| {
            let key = format!("{{p{p}}}cnt");
            cluster.query_key::<bool>(&key, &["HEXISTS", &key, tenant])
        })
        .count()
}

/// The stored "version tenant" of each ID, from whichever partition has it:
/// one HMGET per partition.
fn stored(cluster: &RedisCluster, ids: &[i64]) -> Vec<Option<String>> {
    let fields: Vec<String> = ids.iter().map(i64::to_string).collect();
    let mut found = vec![None; ids.len()];
    for p in 0..PARTITIONS {
        let key = format!("{{p{p}}}ids");
        let mut args = vec!["HMGET", &key];
        args.extend(fields.iter().map(String::as_str));
        let values: Vec<Option<String>> = cluster.query_key(&key, &args);
        for (slot, value) in found.iter_mut().zip(values) {
            *slot = slot.take().or(value);
        }
    }
    found
}

/// Per tenant, the number of IDs whose latest tenant it is.
fn tally(model: &HashMap<i64, String>) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for tenant in model.values() {
        *counts.entry(tenant.clone()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn later_items_win_within_a_batch_and_across_partitions() {
    let cluster = shared_cluster!();
    let store = connect(cluster);
    let base = 1_000_000;
    write(
        &store,
        &[
            (base, "lww-a"),
            (base + 1, "lww-a"),
            (base, "lww-b"),
            (base, "lww-c"),
        ],
    );
    assert_eq!(count(&store, "lww-a"), 1);
    assert_eq!(count(&store, "lww-b"), 0);
    assert_eq!(count(&store, "lww-c"), 1);
    let stored_base = stored(cluster, &[base]).remove(0);
    assert!(stored_base.as_ref().is_some_and(|s| s.ends_with(" lww-c")));

    // 300 IDs over every partition; then each even one goes to z and, later
    // in the same batch, to y.
    let ids: Vec<i64> = (base + 100..base + 400).collect();
    let all_x: Vec<(i64, &str)> = ids.iter().map(|&id| (id, "lww-x")).collect();
    write(&store, &all_x);
    assert_eq!(partitions_holding(cluster, "lww-x"), PARTITIONS);
    let evens = ids.iter().filter(|&&id| id % 2 == 0);
    let mut moves: Vec<(i64, &str)> = evens.clone().map(|&id| (id, "lww-z")).collect();
    moves.extend(evens.map(|&id| (id, "lww-y")));
    write(&store, &moves);
    assert_eq!(count(&store, "lww-x"), 150);
    assert_eq!(count(&store, "lww-y"), 150);
    assert_eq!(count(&store, "lww-z"), 0);
    // A tenant left with no IDs leaves no field behind.
    assert_eq!(partitions_holding(cluster, "lww-z"), 0);
}

#[test]
fn a_batch_of_100_000_items_goes_in_rounds_and_the_later_items_win() {
    let cluster = shared_cluster!();
    let store = connect(cluster);
    let base = 7_000_000;
    // IDs 0..60k to a; then 0..40k again, to b, later in the same batch.
    let items: Vec<(i64, &str)> = (0..100_000)
        .map(|i| {
            (
                base + i % 60_000,
                if i < 60_000 { "big-a" } else { "big-b" },
            )
        })
        .collect();
    let before = metric(&store, "dc_redis_round_trips_total");
    write(&store, &items);
    // The reserve, a first round (a request to each of 3 masters), at least
    // one request of a second round, then the metrics' CLUSTER NODES.
    let trips = metric(&store, "dc_redis_round_trips_total") - before;
    assert!(trips > 1 + 3 + 1, "{trips} round trips: one round only");
    assert_eq!(count(&store, "big-a"), 20_000);
    assert_eq!(count(&store, "big-b"), 40_000);
}

#[test]
fn counts_are_exact_after_many_batches_and_for_a_new_instance() {
    let cluster = shared_cluster!();
    let store = connect(cluster);
    let tenants: Vec<String> = (0..8).map(|t| format!("many-{t}")).collect();
    let mut model = HashMap::new();
    let mut seed: u64 = 12345;
    let mut next = move |bound: u64| {
        // A fixed LCG: the same batches every run.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % bound
    };
    for round in 0..100 {
        let batch: Vec<(i64, &str)> = (0..50)
            .map(|_| {
                let id = 2_000_000 + next(1000) as i64;
                (id, tenants[next(8) as usize].as_str())
            })
            .collect();
        write(&store, &batch);
        for &(id, tenant) in &batch {
            model.insert(id, tenant.to_string());
        }
        if round % 25 == 24 {
            assert_counts(&store, &tenants, &model);
        }
    }
    drop(store);
    assert_counts(&connect(cluster), &tenants, &model);
    assert_eq!(count(&connect(cluster), "many-never-written"), 0);
}

fn assert_counts(store: &RedisStore, tenants: &[String], model: &HashMap<i64, String>) {
    let expected = tally(model);
    for tenant in tenants {
        let want = expected.get(tenant).copied().unwrap_or(0);
        assert_eq!(count(store, tenant), want, "tenant {tenant}");
    }
}

#[test]
fn an_acknowledged_write_is_read_by_another_instance() {
    let cluster = shared_cluster!();
    let stores = [connect(cluster), connect(cluster)];
    let mut model: HashMap<i64, String> = HashMap::new();
    for round in 0..100usize {
        let (writer, reader) = (&stores[round % 2], &stores[1 - round % 2]);
        let tenant = format!("ryw-{}", round % 3);
        let items: Vec<(i64, &str)> = (0..20)
            .map(|i| (3_000_000 + ((round * 7 + i) % 60) as i64, tenant.as_str()))
            .collect();
        write(writer, &items);
        for &(id, t) in &items {
            model.insert(id, t.to_string());
        }
        let expected = tally(&model);
        for t in ["ryw-0", "ryw-1", "ryw-2"] {
            let want = expected.get(t).copied().unwrap_or(0);
            assert_eq!(count(reader, t), want, "round {round}, tenant {t}");
        }
    }
}

#[test]
fn applying_the_same_versions_again_changes_nothing() {
    let cluster = shared_cluster!();
    let store = connect(cluster);
    // Make sure the counter is past the versions used below, so that a
    // normal write afterwards is newer than them.
    let warmup: Vec<(i64, &str)> = (0..1000).map(|i| (4_100_000 + i, "idem-warmup")).collect();
    write(&store, &warmup);
    let counter: u64 = cluster.query_key(COUNTER_KEY, &["GET", COUNTER_KEY]);
    let first = counter - 500;
    let items: Vec<(i64, &str)> = (0..200).map(|i| (4_000_000 + i % 150, "idem-a")).collect();

    store
        .apply_with_versions(first, &items)
        .expect("first apply");
    let ids: Vec<i64> = (4_000_000..4_000_150).collect();
    let before = stored(cluster, &ids);
    assert!(before.iter().all(Option::is_some));
    assert_eq!(count(&store, "idem-a"), 150);
    store.apply_with_versions(first, &items).expect("the retry");
    let after = stored(cluster, &ids);
    assert_eq!(before, after, "a retry must not change stored versions");
    assert_eq!(count(&store, "idem-a"), 150);

    // Older versions lose; a normal (newer) write wins.
    let older: Vec<(i64, &str)> = (0..150).map(|i| (4_000_000 + i, "idem-old")).collect();
    store
        .apply_with_versions(first - 300, &older)
        .expect("older apply");
    assert_eq!(count(&store, "idem-old"), 0);
    assert_eq!(count(&store, "idem-a"), 150);
    write(&store, &older[..10]);
    assert_eq!(count(&store, "idem-old"), 10);
    assert_eq!(count(&store, "idem-a"), 140);
}

#[test]
fn connect_lifts_the_counter_above_every_partition() {
    let cluster = shared_cluster!();
    let store = connect(cluster);
    write(&store, &[(5_000_000, "lift-a")]);
    // A restore brought back a partition whose versions are ahead of the counter.
    let counter: u64 = cluster.query_key(COUNTER_KEY, &["GET", COUNTER_KEY]);
    let restored = counter + 1_000_000;
    let max_key = "{p5}max";
    let _: () = cluster.query_key(max_key, &["SET", max_key, &restored.to_string()]);

    let restarted = connect(cluster);
    let lifted: u64 = cluster.query_key(COUNTER_KEY, &["GET", COUNTER_KEY]);
    assert!(
        lifted >= restored,
        "counter {lifted} below restored max {restored}"
    );
    // Connecting again never lowers it.
    let _again = connect(cluster);
    let now: u64 = cluster.query_key(COUNTER_KEY, &["GET", COUNTER_KEY]);
    assert!(now >= lifted);
    write(&restarted, &[(5_000_000, "lift-b")]);
    assert_eq!(count(&store, "lift-a"), 0);
    assert_eq!(count(&store, "lift-b"), 1);
}

#[test]
fn an_instance_with_another_partition_key_is_refused() {
    let cluster = shared_cluster!();
    let _first = connect(cluster);
    let options = RedisOptions {
        partition_key: "not the deployment's key".to_string(),
        ..RedisOptions::default()
    };
    match RedisStore::connect(&cluster.seeds(), options) {
        Err(e @ ScaleoutError::LayoutMismatch { .. }) => {
            assert!(e.to_string().contains("same partition key"), "{e}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("connected with another partition key"),
    }
}

#[test]
fn nodes_health_and_metrics_describe_the_cluster() {
    let cluster = shared_cluster!();
    let store = connect(cluster);
    let items: Vec<(i64, &str)> = (0..100).map(|i| (6_000_000 + i, "nodes-a")).collect();
    // Once: a retry would count the items twice in `received`.
    store.write(&items).expect("write");

    let nodes = store.nodes();
    assert_eq!(nodes.len(), 6, "{nodes:?}");
    let ports: Vec<u16> = nodes
        .iter()
        .map(|n| {
            n.addr
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port")
        })
        .collect();
    let mut sorted = ports.clone();
    sorted.sort_unstable();
    assert_eq!(ports, sorted, "ordered by address");
    assert!(nodes.iter().enumerate().all(|(i, n)| n.id == i && n.alive));
    let masters: Vec<_> = nodes.iter().filter(|n| n.role == "master").collect();
    assert_eq!(masters.len(), 3);
    assert!(masters.iter().all(|m| m.items.is_some_and(|n| n > 0)));
    let received: u64 = masters.iter().map(|m| m.received).sum();
    assert_eq!(received, 100, "items written through this instance");
    assert!(
        nodes
            .iter()
            .filter(|n| n.role == "replica")
            .all(|r| r.items.is_none())
    );

    store.health().expect("healthy");
    let mut metrics = String::new();
    store.render_metrics(&mut metrics);
    assert!(
        metrics.contains("dc_redis_items_written_total 100\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dc_redis_errors_total{op=\"write\"} 0\n"),
        "{metrics}"
    );
    assert_eq!(metrics.matches("dc_redis_node_up{").count(), 6, "{metrics}");
    assert_eq!(metrics.matches("dc_redis_node_master{").count(), 6);
    assert!(metrics.contains("dc_redis_round_trips_total "));
}

#[test]
fn bad_seeds_are_refused_with_the_reason() {
    let none = RedisStore::connect(&[], RedisOptions::default());
    assert!(matches!(none, Err(ScaleoutError::Config(_))));
    let bad = RedisStore::connect(&["localhost".to_string()], RedisOptions::default());
    assert!(bad.is_err_and(|e| e.to_string().contains("\"localhost\" is not host:port")));

    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let seed = format!("127.0.0.1:{port}");
    match RedisStore::connect(std::slice::from_ref(&seed), RedisOptions::default()) {
        Err(e) => {
            assert!(e.to_string().contains(&seed), "{e}");
            assert!(std::error::Error::source(&e).is_some());
        }
        Ok(_) => panic!("connected to nothing"),
    }
}

#[test]
fn connections_the_server_closed_are_replaced() {
    let cluster = own_cluster!();
    let store = Arc::new(connect(&cluster));
    // More idle connections per master than attempts: writers at once.
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            thread::spawn(move || {
                let items: Vec<(i64, &str)> =
                    (0..2000).map(|i| (8_000_000 + i, "closed-a")).collect();
                for _ in 0..5 {
                    barrier.wait();
                    write(&store, &items[t * 250..(t + 1) * 250]);
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().expect("writer"));
    for master in store.nodes().iter().filter(|n| n.role == "master") {
        let port = master
            .addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        let clients: String = cluster.query(port, &["CLIENT", "LIST", "TYPE", "normal"]);
        // Our own query's connection is one of them.
        assert!(
            clients.lines().count() > 3,
            "few pooled connections:\n{clients}"
        );
    }
    for port in cluster.ports() {
        let _: i64 = cluster.query(port, &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    }
    // Every pooled connection is dead now; one failure must not use up the
    // attempts on the others.
    write(&store, &[(8_002_000, "closed-a")]);
    assert_eq!(count(&store, "closed-a"), 2001);
}

#[test]
fn versions_past_2_pow_53_are_refused() {
    let cluster = own_cluster!();
    let store = connect(&cluster);
    write(&store, &[(1, "v-a")]);
    let near = (VERSION_LIMIT - 3).to_string();
    let _: () = cluster.query_key(COUNTER_KEY, &["SET", COUNTER_KEY, &near]);
    // The last two versions below 2^53 still work.
    write(&store, &[(2, "v-a"), (3, "v-a")]);
    assert_eq!(count(&store, "v-a"), 3);
    match store.write(&[(4, "v-a")]) {
        Err(e @ ScaleoutError::VersionsExhausted { .. }) => {
            assert!(e.to_string().contains("past 2^53"), "{e}");
        }
        other => panic!("expected VersionsExhausted, got {other:?}"),
    }
    assert_eq!(
        count(&store, "v-a"),
        3,
        "nothing of the refused batch is stored"
    );

    // The function refuses such versions too, before writing anything.
    let key = "{p0}ids";
    let limit = VERSION_LIMIT.to_string();
    let args = [
        "FCALL",
        APPLY_FUNCTION,
        "3",
        key,
        "{p0}cnt",
        "{p0}max",
        "5",
        "7",
        "v-b",
        &limit,
        "8",
        "v-b",
    ];
    let refused = cluster.try_query::<i64>(cluster.master_port_for(key), &args);
    let error = refused.expect_err("version 2^53 refused").to_string();
    assert!(error.contains("not an integer in [1, 2^53)"), "{error}");
    assert_eq!(count(&store, "v-b"), 0);
}

/// One writer's batches: each is retried (with new versions, as a client
/// would) until acknowledged, so the final state is the last batch of each
/// ID. Returns the writer's model and how many attempts failed.
fn writer(
    store: &RedisStore,
    thread: i64,
    acked: &AtomicUsize,
    stop: &AtomicBool,
) -> (HashMap<i64, String>, usize) {
    const BATCH: i64 = 50;
    let deadline = Instant::now() + Duration::from_secs(60);
    let tenants: Vec<String> = (0..3).map(|t| format!("fo-{thread}-{t}")).collect();
    let (mut model, mut failures) = (HashMap::new(), 0);
    let mut round = 0;
    while !stop.load(Ordering::SeqCst) {
        let tenant = tenants[round % 3].as_str();
        let first = thread * 1_000_000 + (round as i64 * BATCH) % (BATCH * 10);
        let items: Vec<(i64, &str)> = (first..first + BATCH).map(|id| (id, tenant)).collect();
        while let Err(e) = store.write(&items) {
            failures += 1;
            assert!(Instant::now() < deadline, "writes keep failing: {e}");
            thread::sleep(Duration::from_millis(20));
        }
        for &(id, t) in &items {
            model.insert(id, t.to_string());
        }
        acked.fetch_add(1, Ordering::SeqCst);
        round += 1;
    }
    (model, failures)
}

#[test]
fn a_killed_master_loses_no_acknowledged_write() {
    let cluster = own_cluster!();
    let store = Arc::new(connect(&cluster));
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (1..=4)
        .map(|t| {
            let (store, acked, stop) = (store.clone(), acked.clone(), stop.clone());
            thread::spawn(move || writer(&store, t, &acked, &stop))
        })
        .collect();

    // The master of the version counter: every write needs it.
    let victim = cluster.master_port_for(COUNTER_KEY);
    wait_until("writes before the kill", || {
        acked.load(Ordering::SeqCst) >= 20
    });
    cluster.kill(victim);
    assert!(store.health().is_err(), "a partition lost its master");
    cluster.wait_for_failover(victim, COUNTER_KEY);
    let dead = store.nodes();
    let victim_addr = format!("127.0.0.1:{victim}");
    assert!(
        dead.iter().any(|n| n.addr == victim_addr && !n.alive),
        "{dead:?}"
    );
    // With one replica per master, the new master has none until the old
    // one is back: writes fail rather than risk being lost.
    cluster.restart(victim);
    cluster.wait_until_healthy();
    let healed = acked.load(Ordering::SeqCst);
    wait_until("writes after the restart", || {
        acked.load(Ordering::SeqCst) >= healed + 20
    });
    stop.store(true, Ordering::SeqCst);

    let mut model = HashMap::new();
    let mut failures = 0;
    for writer in writers {
        let (part, failed) = writer.join().expect("writer thread");
        model.extend(part);
        failures += failed;
    }
    eprintln!(
        "failover: {} batches acknowledged, {failures} attempts failed",
        acked.load(Ordering::SeqCst)
    );
    assert!(failures > 0, "the failover should have failed some writes");
    store.health().expect("healthy again");
    let expected = tally(&model);
    let restarted = connect(&cluster);
    for instance in [&*store, &restarted] {
        for (tenant, &want) in &expected {
            assert_eq!(count(instance, tenant), want, "tenant {tenant}");
        }
    }
    let held: u64 = restarted.nodes().iter().filter_map(|n| n.items).sum();
    assert_eq!(held, model.len() as u64, "every ID written is stored once");
}

#[test]
fn a_stalled_master_fails_writes_in_bounded_time() {
    let cluster = own_cluster!();
    let store = connect(&cluster);
    write(&store, &[(9_000_000, "stall-a")]);
    let victim = cluster.master_port_for(COUNTER_KEY);
    cluster.signal(victim, "-STOP");
    let started = Instant::now();
    let result = store.write(&[(9_000_001, "stall-a")]);
    let waited = started.elapsed();
    if let Err(e) = &result {
        eprintln!("write with a stopped master, after {waited:?}: {e}");
    }
    cluster.signal(victim, "-CONT");
    assert!(
        result.is_err(),
        "a write acknowledged while its master was stopped"
    );
    assert!(
        waited < REQUEST_TIMEOUT + Duration::from_secs(1),
        "waited {waited:?}"
    );
    // Back (perhaps failed over meanwhile): writes work again.
    cluster.wait_until_healthy();
    write(&store, &[(9_000_002, "stall-a")]);
    assert_eq!(count(&store, "stall-a"), 2);
}

/// Measures throughput for docs/scaleout.md; run with
/// `cargo test --release --features scaleout --test scaleout -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_throughput() {
    const THREADS: usize = 8;
    const COUNTS: usize = 4000;
    let cluster = own_cluster!();
    let store = Arc::new(connect(&cluster));
    let memory_before = masters_memory(&cluster, &store);
    let started = Instant::now();
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || timed_writes(&store, t))
        })
        .collect();
    let mut latencies: Vec<Duration> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let batches = latencies.len() as f64;
    println!(
        "writes, {THREADS} threads, batches of 1000: {:.0} items/s; latency p50 {:?}, p99 {:?}",
        batches * 1000.0 / secs,
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100]
    );
    let ids = 100_000.0;
    let per_id = (masters_memory(&cluster, &store) - memory_before) as f64 / ids;
    println!("memory: {per_id:.0} bytes per ID on the masters (as much again per replica)");
    for threads in [1, THREADS] {
        let started = Instant::now();
        let readers: Vec<_> = (0..threads)
            .map(|_| {
                let store = store.clone();
                thread::spawn(move || {
                    (0..COUNTS / threads).for_each(|_| {
                        count(&store, "m-a");
                    })
                })
            })
            .collect();
        readers.into_iter().for_each(|r| r.join().expect("reader"));
        let per_sec = COUNTS as f64 / started.elapsed().as_secs_f64();
        println!("counts, {threads} threads: {per_sec:.0} GET/s");
    }
    let failures = metric(&store, "dc_redis_wait_failures_total");
    println!("writes no replica confirmed within the WAIT timeout: {failures}");
}

/// The masters' `used_memory`, summed.
fn masters_memory(cluster: &RedisCluster, store: &RedisStore) -> i64 {
    store
        .nodes()
        .iter()
        .filter(|n| n.role == "master")
        .map(|n| {
            let port = n.addr.rsplit(':').next().and_then(|p| p.parse().ok());
            let info: String = cluster.query(port.expect("port"), &["INFO", "memory"]);
            let line = info.lines().find_map(|l| l.strip_prefix("used_memory:"));
            line.and_then(|v| v.trim().parse::<i64>().ok())
                .expect("used_memory")
        })
        .sum()
}

/// 80 batches of 1000 items over 100,000 IDs and 4 tenants; the latencies.
fn timed_writes(store: &RedisStore, thread: usize) -> Vec<Duration> {
    let tenants = ["m-a", "m-b", "m-c", "m-d"];
    (0..80)
        .map(|b| {
            let first = ((thread * 80 + b) * 1000) as i64;
            let items: Vec<(i64, &str)> = (first..first + 1000)
                .map(|id| (id % 100_000, tenants[(id % 4) as usize]))
                .collect();
            let started = Instant::now();
            write(store, &items);
            started.elapsed()
        })
        .collect()
}
