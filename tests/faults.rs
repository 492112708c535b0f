//! Failover and fault injection: break nodes on purpose and check that no
//! acknowledged item is lost and reads stay exact.

mod common;

use common::{Lcg, Reply, Server, items};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

fn faulty(nodes: usize) -> Server {
    Server::start(&["--fault-injection", "--nodes", &nodes.to_string()])
}

fn fault(server: &Server, id: usize, action: &str) -> Reply {
    server.call("POST", &format!("/nodes/{id}/{action}"), "")
}

fn assert_fault(server: &Server, id: usize, action: &str) {
    let reply = fault(server, id, action);
    assert_eq!(reply.status, 200, "{action} {id}: {}", reply.text());
    assert_eq!(reply.json(), json!({"status":"OK"}));
}

fn masters(nodes: &[Value]) -> Vec<u64> {
    nodes
        .iter()
        .filter(|n| n["role"] == "master")
        .map(|n| n["id"].as_u64().unwrap())
        .collect()
}

fn health_master(server: &Server) -> Option<u64> {
    let reply = server.call("GET", "/health", "");
    (reply.status == 200).then(|| reply.json()["master"].as_u64().unwrap())
}

fn wait_all_live_hold(server: &Server, expected: u64) {
    common::wait_until(&format!("every live node holds {expected} items"), || {
        server
            .nodes()
            .iter()
            .filter(|n| n["alive"] == true)
            .all(|n| n["items"] == expected)
    });
}

#[test]
fn fault_endpoints_are_404_without_the_flag_and_do_nothing() {
    let server = Server::start(&[]);
    for action in ["crash", "restart", "disconnect", "stall?ms=10"] {
        server
            .call("POST", &format!("/nodes/0/{action}"), "")
            .assert_ko(404, &[]);
    }
    let nodes = server.nodes();
    assert!(nodes.iter().all(|n| n["alive"] == true));
    assert_eq!(nodes[0]["addr"], server.node_addrs[0].to_string());
}

#[test]
fn fault_endpoints_check_ids_states_and_ms() {
    let server = faulty(4);
    fault(&server, 4, "crash").assert_ko(404, &["4"]);
    fault(&server, 0, "explode").assert_ko(404, &["explode"]);
    fault(&server, 1, "restart").assert_ko(409, &["alive"]);
    fault(&server, 1, "stall").assert_ko(400, &["ms"]);
    fault(&server, 1, "stall?ms=x").assert_ko(400, &["ms"]);
    let reply = server.call("GET", "/nodes/1/crash", "");
    reply.assert_ko(405, &["POST"]);
    assert_eq!(reply.header("Allow"), Some("POST"));
    assert_fault(&server, 1, "crash");
    for action in ["crash", "disconnect", "stall?ms=10"] {
        fault(&server, 1, action).assert_ko(409, &["dead"]);
    }
}

#[test]
fn a_crashed_replica_is_dead_and_its_share_goes_to_live_nodes() {
    let server = faulty(4);
    assert_eq!(
        server
            .post_items(&items((0..10).map(|id| (id, "c"))))
            .status,
        200
    );
    assert_fault(&server, 2, "crash");
    let nodes = server.nodes();
    assert_eq!(nodes[2]["alive"], false);
    assert_eq!(nodes[2]["role"], "replica");
    // The dead node's port is closed.
    assert!(std::net::TcpStream::connect(server.node_addrs[2]).is_err());
    let before: Vec<u64> = nodes
        .iter()
        .map(|n| n["received"].as_u64().unwrap())
        .collect();
    // 11 items over the 3 live nodes: 4, 4, 3 in id order.
    assert_eq!(
        server
            .post_items(&items((10..21).map(|id| (id, "c"))))
            .status,
        200
    );
    let after: Vec<u64> = server
        .nodes()
        .iter()
        .map(|n| n["received"].as_u64().unwrap())
        .collect();
    let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(delta, vec![4, 4, 0, 3]);
    assert_eq!(server.count("c"), 21);
    wait_all_live_hold(&server, 21);
}

#[test]
fn master_crash_elects_the_most_caught_up_live_node() {
    let server = faulty(4);
    assert_eq!(
        server
            .post_items(&items((0..100).map(|id| (id, "m"))))
            .status,
        200
    );
    // Node 1 falls behind: stalled, it applies nothing while writes go on.
    // Long enough to outlast the steps below on a busy machine (a stall
    // that ended would let node 1 catch up and win the tie); ended below.
    assert_fault(&server, 1, "stall?ms=30000");
    for round in 0..10 {
        let batch = items((100 + round * 10..110 + round * 10).map(|id| (id, "m")));
        assert_eq!(server.post_items(&batch).status, 200);
    }
    assert_fault(&server, 0, "crash");
    let master = health_master(&server).expect("a master right after the crash");
    assert!(
        master == 2 || master == 3,
        "master {master}; node 1 is behind"
    );
    let change = format!("master changed: node 0 died, node {master} is master");
    let log = server.log_once("node 0 crashed");
    assert!(log.contains("node 0 crashed"), "{log}");
    assert!(log.contains(&change), "{log}");
    assert_eq!(masters(&server.nodes()), vec![master]);
    assert_eq!(
        server.count("m"),
        200,
        "every acknowledged item is still counted"
    );
    assert_fault(&server, 1, "stall?ms=0");
    wait_all_live_hold(&server, 200);
}

#[test]
fn restart_copies_everything_while_writes_go_on() {
    let server = Arc::new(faulty(4));
    assert_eq!(
        server
            .post_items(&items((0..5_000).map(|id| (id, "r"))))
            .status,
        200
    );
    assert_fault(&server, 3, "crash");
    assert_eq!(
        server
            .post_items(&items((5_000..6_000).map(|id| (id, "r"))))
            .status,
        200
    );
    let done = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(6_000));
    let writer = {
        let (server, done, acked) = (server.clone(), done.clone(), acked.clone());
        thread::spawn(move || {
            let mut client = server.client();
            let mut next = 6_000;
            while !done.load(Ordering::SeqCst) {
                let batch = items((next..next + 50).map(|id| (id, "r")));
                assert_eq!(
                    client.call("POST", "/items", &batch.to_string()).status,
                    200
                );
                acked.fetch_add(50, Ordering::SeqCst);
                next += 50;
            }
        })
    };
    common::wait_until("the writer made progress", || {
        acked.load(Ordering::SeqCst) > 6_200
    });
    assert_fault(&server, 3, "restart");
    let restarted = &server.nodes()[3];
    assert_eq!(restarted["alive"], true);
    assert!(
        restarted["items"].as_u64().unwrap() >= 6_000,
        "copied before serving: {restarted}"
    );
    common::wait_until("the writer wrote after the restart", || {
        acked.load(Ordering::SeqCst) > 7_000
    });
    done.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let total = acked.load(Ordering::SeqCst);
    assert_eq!(server.count("r"), total);
    wait_all_live_hold(&server, total);
}

#[test]
fn a_disconnected_node_is_found_on_its_new_port() {
    let server = faulty(4);
    assert_eq!(
        server.post_items(&items((0..8).map(|id| (id, "d")))).status,
        200
    );
    for id in [1, 0, 1] {
        let old = server.nodes()[id]["addr"].clone();
        let old_addr: std::net::SocketAddr = old.as_str().unwrap().parse().unwrap();
        let mut open = std::net::TcpStream::connect(old_addr).unwrap();
        assert_fault(&server, id, "disconnect");
        open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let cut = std::io::Read::read(&mut open, &mut [0u8; 1]);
        let timed_out = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        };
        assert!(
            matches!(&cut, Ok(0)) || cut.as_ref().is_err_and(|e| !timed_out(e)),
            "connections to the old port are cut: {cut:?}"
        );
        let nodes = server.nodes();
        assert_eq!(nodes[id]["alive"], true);
        assert_ne!(nodes[id]["addr"], old, "node {id} moved");
        let old: std::net::SocketAddr = old.as_str().unwrap().parse().unwrap();
        assert!(
            std::net::TcpStream::connect(old).is_err(),
            "old port of node {id} is closed"
        );
    }
    let before = server.nodes()[1]["received"].as_u64().unwrap();
    assert_eq!(
        server
            .post_items(&items((8..16).map(|id| (id, "d"))))
            .status,
        200
    );
    assert_eq!(
        server.nodes()[1]["received"].as_u64().unwrap(),
        before + 2,
        "writes reach the moved node"
    );
    assert_eq!(health_master(&server), Some(0));
    assert_eq!(server.count("d"), 16, "counts stay exact");
    wait_all_live_hold(&server, 16);
}

#[test]
fn writes_route_around_a_stalled_node_which_catches_up() {
    let server = faulty(4);
    assert_fault(&server, 2, "stall?ms=5000");
    let started = Instant::now();
    let reply = server.post_items(&items((0..12).map(|id| (id, "s"))));
    assert_eq!(reply.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "the POST did not wait for the 5 s stall"
    );
    let nodes = server.nodes();
    assert_eq!(nodes[2]["alive"], true, "a stalled node is alive");
    assert_eq!(nodes[2]["received"], 0);
    assert_eq!(server.count("s"), 12);
    // Stalled master: reads are answered by another node meanwhile.
    assert_fault(&server, 0, "stall?ms=5000");
    assert_eq!(server.count("s"), 12);
    wait_all_live_hold(&server, 12);
}

#[test]
fn with_every_node_dead_everything_is_503_until_a_restart() {
    let server = faulty(2);
    assert_eq!(server.post_items(&items([(1, "x")])).status, 200);
    assert_fault(&server, 0, "crash");
    assert_fault(&server, 1, "crash");
    server.call("GET", "/health", "").assert_ko(503, &[]);
    server.call("GET", "/items/x/count", "").assert_ko(503, &[]);
    server.post_items(&items([(2, "x")])).assert_ko(503, &[]);
    assert!(masters(&server.nodes()).is_empty());
    assert_fault(&server, 1, "restart");
    assert_eq!(health_master(&server), Some(1));
    // Memory only: the data died with the last node.
    assert_eq!(server.count("x"), 0);
    assert_eq!(server.post_items(&items([(3, "x")])).status, 200);
    assert_eq!(server.count("x"), 1);
}

#[test]
fn no_acknowledged_item_is_lost_when_master_and_replica_crash_under_load() {
    const WRITERS: u64 = 4;
    const BATCH: u64 = 40;
    let server = Arc::new(faulty(4));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (server, stop, acked, failed) =
                (server.clone(), stop.clone(), acked.clone(), failed.clone());
            thread::spawn(move || {
                let mut next = writer * 10_000_000;
                while !stop.load(Ordering::SeqCst) {
                    let batch = items((next..next + BATCH).map(|id| (id as i64, "load")));
                    next += BATCH;
                    // A fresh connection per batch, as many clients do.
                    let reply = server.post_items(&batch);
                    let counter = if reply.status == 200 { &acked } else { &failed };
                    counter.fetch_add(BATCH, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let progress = |at_least: u64| {
        let target = acked.load(Ordering::SeqCst) + at_least;
        common::wait_until("writers make progress", || {
            acked.load(Ordering::SeqCst) >= target
        });
    };
    progress(2_000);
    assert_fault(&server, 0, "crash");
    progress(2_000);
    assert_fault(&server, 2, "crash");
    progress(2_000);
    assert_fault(&server, 0, "restart");
    progress(2_000);
    assert_fault(&server, 2, "restart");
    progress(2_000);
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    let (acked, failed) = (acked.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    let counted = server.count("load");
    assert!(
        counted >= acked,
        "lost items: counted {counted} < acknowledged {acked}"
    );
    assert!(
        counted <= acked + failed,
        "counted {counted} > acknowledged {acked} + failed {failed}"
    );
    wait_all_live_hold(&server, counted);
}

#[test]
fn randomised_faults_keep_counts_exact() {
    const NODES: usize = 4;
    const SEED: u64 = 20261126;
    let server = faulty(NODES);
    let mut rng = Lcg(SEED);
    let mut model: HashMap<i64, String> = HashMap::new();
    let mut client = server.client();
    for round in 0..40 {
        let nodes = server.nodes();
        let live: Vec<usize> = (0..NODES).filter(|&i| nodes[i]["alive"] == true).collect();
        let dead: Vec<usize> = (0..NODES).filter(|&i| nodes[i]["alive"] == false).collect();
        let pick = |list: &[usize], rng: &mut Lcg| list[rng.below(list.len() as u64) as usize];
        let action = match rng.below(4) {
            0 if live.len() > 1 => format!("{}/crash", pick(&live, &mut rng)),
            1 if !dead.is_empty() => format!("{}/restart", pick(&dead, &mut rng)),
            2 => format!("{}/disconnect", pick(&live, &mut rng)),
            _ => format!("{}/stall?ms={}", pick(&live, &mut rng), 50 + rng.below(300)),
        };
        let reply = server.call("POST", &format!("/nodes/{action}"), "");
        assert_eq!(
            reply.status,
            200,
            "seed {SEED} round {round} {action}: {}",
            reply.text()
        );
        for _ in 0..3 {
            let batch: Vec<(i64, String)> = (0..20)
                .map(|_| (rng.below(150) as i64, format!("r{}", rng.below(5))))
                .collect();
            let body = items(batch.iter().map(|(id, t)| (*id, t.as_str())));
            let reply = client.call("POST", "/items", &body.to_string());
            assert_eq!(
                reply.status, 200,
                "seed {SEED} round {round} after {action}"
            );
            model.extend(batch);
        }
        let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
        for tenant in model.values() {
            *expected.entry(tenant).or_default() += 1;
        }
        for tenant in ["r0", "r1", "r2", "r3", "r4"] {
            let reply = client.call("GET", &format!("/items/{tenant}/count"), "");
            let want = expected.get(tenant).copied().unwrap_or(0);
            assert_eq!(
                reply.json()["counter"],
                want,
                "seed {SEED} round {round} after {action}: {tenant}"
            );
        }
        assert_eq!(
            masters(&server.nodes()).len(),
            1,
            "exactly one master, round {round}"
        );
    }
    wait_all_live_hold(&server, model.len() as u64);
}
