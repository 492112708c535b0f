//! Read-your-writes and convergence under concurrent writers.

mod common;

use common::{Lcg, Server, items};
use std::collections::HashMap;
use std::sync::Arc;
use std::thread;

#[test]
fn read_your_writes_on_one_keep_alive_connection() {
    let server = Server::start(&[]);
    let mut client = server.client();
    for round in 0..200i64 {
        let batch = items((0..10).map(|i| (round * 10 + i, "ryw")));
        assert_eq!(
            client.call("POST", "/items", &batch.to_string()).status,
            200
        );
        let reply = client.call("GET", "/items/ryw/count", "");
        assert_eq!(reply.json()["counter"], (round + 1) * 10, "round {round}");
    }
}

#[test]
fn read_your_writes_across_connections_while_others_write() {
    let server = Arc::new(Server::start(&[]));
    // Background writers keep the replication queues busy with other tenants.
    let noise: Vec<_> = (0..3)
        .map(|writer| {
            let server = server.clone();
            thread::spawn(move || {
                let mut client = server.client();
                for round in 0..100i64 {
                    let batch = items(
                        (0..200).map(|i| (1_000_000 * (writer + 1) + round * 200 + i, "noise")),
                    );
                    assert_eq!(
                        client.call("POST", "/items", &batch.to_string()).status,
                        200
                    );
                }
            })
        })
        .collect();
    let mut writer = server.client();
    for round in 0..150i64 {
        let batch = items((0..7).map(|i| (round * 7 + i, "mine")));
        assert_eq!(
            writer.call("POST", "/items", &batch.to_string()).status,
            200
        );
        // A different connection, opened after the 200.
        assert_eq!(
            server.count("mine"),
            (round as u64 + 1) * 7,
            "round {round}"
        );
    }
    for handle in noise {
        handle.join().unwrap();
    }
}

#[test]
fn eight_writers_with_overlapping_ids_converge_exactly() {
    const WRITERS: u64 = 8;
    const ROUNDS: usize = 60;
    const IDS: u64 = 500;
    let tenants = ["t0", "t1", "t2", "t3", "t4"];
    let server = Arc::new(Server::start(&[]));
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let server = server.clone();
            thread::spawn(move || {
                let mut rng = Lcg(writer + 1);
                let mut client = server.client();
                for round in 0..ROUNDS {
                    let batch = items(
                        (0..50).map(|_| (rng.below(IDS) as i64, tenants[rng.below(5) as usize])),
                    );
                    let reply = client.call("POST", "/items", &batch.to_string());
                    assert_eq!(reply.status, 200, "writer {writer} round {round}");
                    // Each writer reads its own write back: the last item's
                    // tenant has at least one item.
                    let last = batch.as_array().unwrap().last().unwrap()["tenant"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    let count = client
                        .call("GET", &format!("/items/{last}/count"), "")
                        .json()["counter"]
                        .clone();
                    assert!(count.as_u64().unwrap() >= 1);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    // Concurrent batches are ordered somehow; whatever the order, every ID
    // has exactly one tenant, so the counts add up to the distinct IDs.
    let counts: Vec<u64> = tenants.iter().map(|t| server.count(t)).collect();
    let total: u64 = counts.iter().sum();
    common::wait_until("every node holds the same items", || {
        let nodes = server.nodes();
        nodes
            .iter()
            .all(|n| n["items"] == nodes[0]["items"] && n["items"] == total)
    });
    assert!(total <= IDS && total > IDS * 9 / 10, "total {total}");

    // Re-posting every ID under one tenant moves them all there.
    let all = items((0..IDS as i64).map(|id| (id, "final")));
    assert_eq!(server.post_items(&all).status, 200);
    assert_eq!(server.count("final"), IDS);
    for tenant in tenants {
        assert_eq!(server.count(tenant), 0);
    }
}

#[test]
fn sequential_model_matches_exactly() {
    let server = Server::start(&["--nodes", "3"]);
    let mut model: HashMap<i64, String> = HashMap::new();
    let mut rng = Lcg(42);
    let mut client = server.client();
    for _ in 0..100 {
        let size = rng.below(30) as usize;
        let batch: Vec<(i64, String)> = (0..size)
            .map(|_| (rng.below(200) as i64 - 100, format!("m{}", rng.below(4))))
            .collect();
        let body = items(batch.iter().map(|(id, t)| (*id, t.as_str())));
        assert_eq!(client.call("POST", "/items", &body.to_string()).status, 200);
        for (id, tenant) in batch {
            model.insert(id, tenant);
        }
        for tenant in ["m0", "m1", "m2", "m3"] {
            let expected = model.values().filter(|t| *t == tenant).count() as u64;
            let reply = client.call("GET", &format!("/items/{tenant}/count"), "");
            assert_eq!(reply.json()["counter"], expected, "{tenant}");
        }
    }
}

#[test]
fn concurrent_overlapping_writers_give_exact_counts_per_phase() {
    const WRITERS: u64 = 8;
    const PHASES: u64 = 3;
    const IDS: u64 = 400;
    let server = Arc::new(Server::start(&[]));
    let barrier = Arc::new(std::sync::Barrier::new(WRITERS as usize));
    // Within a phase every writer gives an ID the same tenant, so whatever
    // order concurrent batches take, the final map is known exactly.
    let tenant_of = |phase: u64, id: u64| format!("p{phase}-{}", (id + phase) % 3);
    let written: Vec<Vec<(u64, u64)>> = (0..WRITERS)
        .map(|writer| {
            let mut rng = Lcg(100 + writer);
            (0..PHASES)
                .flat_map(|phase| (0..300).map(move |_| phase).collect::<Vec<_>>())
                .map(|phase| (phase, rng.below(IDS)))
                .collect()
        })
        .collect();
    let handles: Vec<_> = written
        .iter()
        .cloned()
        .enumerate()
        .map(|(writer, writes)| {
            let server = server.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut client = server.client();
                for phase in 0..PHASES {
                    let mine: Vec<(i64, String)> = writes
                        .iter()
                        .filter(|(p, _)| *p == phase)
                        .map(|(p, id)| (*id as i64, tenant_of(*p, *id)))
                        .collect();
                    for batch in mine.chunks(30) {
                        let body = items(batch.iter().map(|(id, t)| (*id, t.as_str())));
                        let reply = client.call("POST", "/items", &body.to_string());
                        assert_eq!(reply.status, 200, "writer {writer}");
                    }
                    barrier.wait();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let mut model: HashMap<u64, String> = HashMap::new();
    for phase in 0..PHASES {
        for writes in &written {
            for (_, id) in writes.iter().filter(|(p, _)| *p == phase) {
                model.insert(*id, tenant_of(phase, *id));
            }
        }
    }
    for phase in 0..PHASES {
        for rest in 0..3 {
            let tenant = format!("p{phase}-{rest}");
            let expected = model.values().filter(|t| **t == tenant).count() as u64;
            assert_eq!(server.count(&tenant), expected, "{tenant}");
        }
    }
    let distinct = model.len() as u64;
    common::wait_until("every node holds every distinct ID", || {
        server.nodes().iter().all(|n| n["items"] == distinct)
    });
}

#[test]
fn read_your_writes_under_eight_writers_with_overlapping_ids() {
    const WRITERS: i64 = 8;
    const ROUNDS: i64 = 40;
    const PROBES: i64 = 5;
    let server = Arc::new(Server::start(&[]));
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let server = server.clone();
            thread::spawn(move || {
                let mut rng = Lcg(7 + writer as u64);
                let mut client = server.client();
                for round in 0..ROUNDS {
                    // Shared IDs 0..100 fought over by every writer, plus
                    // probe IDs only this writer uses, under a tenant only
                    // this round of this writer uses: its count is known.
                    let probe_tenant = format!("w{writer}-r{round}");
                    let shared: Vec<(i64, String)> = (0..30)
                        .map(|_| (rng.below(100) as i64, format!("s{}", rng.below(3))))
                        .collect();
                    let probes: Vec<(i64, String)> = (0..PROBES)
                        .map(|i| {
                            (
                                1_000_000 * (writer + 1) + round * PROBES + i,
                                probe_tenant.clone(),
                            )
                        })
                        .collect();
                    let batch = items(
                        shared
                            .iter()
                            .chain(&probes)
                            .map(|(id, t)| (*id, t.as_str())),
                    );
                    assert_eq!(
                        client.call("POST", "/items", &batch.to_string()).status,
                        200
                    );
                    // Both on the same connection and on a new one.
                    let path = format!("/items/{probe_tenant}/count");
                    assert_eq!(
                        client.call("GET", &path, "").json()["counter"],
                        PROBES,
                        "{probe_tenant}"
                    );
                    assert_eq!(server.count(&probe_tenant), PROBES as u64, "{probe_tenant}");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let shared: u64 = (0..3).map(|t| server.count(&format!("s{t}"))).sum();
    assert!(shared <= 100);
}
