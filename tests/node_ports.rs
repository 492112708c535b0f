//! Node ports (issue #10): only a peer that knows the process secret can
//! store. Forged frames, fake handshakes, oversize announcements, floods of
//! connections that never prove themselves, garbage and silence are dropped
//! without harm to the data, the node or the writes.

mod common;

use common::{Server, closed_by_server, items, one_at_a_time, read_to_close, wait_within};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const TAG_STORE: u8 = 1;
const TAG_CHALLENGE: u8 = 10;
const TAG_HELLO: u8 = 11;
const TAG_PROOF: u8 = 12;
const TAG_STORED: u8 = 129;

/// A frame: little-endian u32 payload length, then the payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A `Store` of one piece whose entries `(id, tenant number)` all claim the
/// highest version there is (entry i of a piece carries `first + offset + i`).
fn forged_store(entries: &[(i64, u32)]) -> Vec<u8> {
    let first = u64::MAX - (entries.len() as u64 - 1);
    let mut payload = vec![TAG_STORE];
    payload.extend_from_slice(&7u64.to_le_bytes()); // request id
    payload.extend_from_slice(&1u32.to_le_bytes()); // pieces
    payload.extend_from_slice(&first.to_le_bytes());
    payload.extend_from_slice(&0u64.to_le_bytes()); // offset
    payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (i, &(id, tenant)) in entries.iter().enumerate() {
        payload.extend_from_slice(&id.to_le_bytes());
        payload.extend_from_slice(&(first + i as u64).to_le_bytes());
        payload.extend_from_slice(&tenant.to_le_bytes());
    }
    frame(&payload)
}

fn connect(node: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(node).expect("connect to the node");
    stream
        .set_read_timeout(Some(common::PATIENCE))
        .expect("timeout");
    stream
}

/// Says Hello and reads the node's challenge.
fn hello(stream: &mut TcpStream) {
    stream.write_all(&frame(&[TAG_HELLO])).expect("send Hello");
    let mut challenge = [0u8; 4 + 1 + 16];
    stream.read_exact(&mut challenge).expect("a challenge");
    assert_eq!(
        challenge[..5],
        [17, 0, 0, 0, TAG_CHALLENGE],
        "{challenge:?}"
    );
}

/// What the node sends back until it closes, asserting it never says `Stored`.
fn assert_dropped_without_storing(mut stream: TcpStream, what: &str) {
    match read_to_close(&mut stream, Duration::from_secs(5)) {
        Ok(bytes) => assert!(
            !bytes
                .windows(5)
                .any(|w| w[4] == TAG_STORED && w[..4] == [9, 0, 0, 0]),
            "{what}: the node answered Stored: {bytes:?}"
        ),
        // A reset is a drop too.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: not dropped: {e}"),
    }
}

#[test]
fn forged_store_frames_change_no_count_and_pin_no_id() {
    let server = Server::start(&[]);
    // Tenant numbers are interned from 0 in order of first use.
    assert_eq!(server.post_items(&items([(42, "victim")])).status, 200);
    assert_eq!(server.post_items(&items([(43, "thief")])).status, 200);
    wait_within("every node holds 2 items", common::PATIENCE, || {
        server.nodes().iter().all(|n| n["items"] == 2)
    });
    // Move ID 42 to "thief" and add ID 44, at version 2^64-1, through every
    // node port: without any handshake, after Hello alone, and after Hello
    // with a made-up proof.
    let forged = forged_store(&[(42, 1), (44, 1), (45, 0)]);
    for &node in &server.node_addrs {
        let mut bare = connect(node);
        let _ = bare.write_all(&forged);
        assert_dropped_without_storing(bare, "a Store without a handshake");

        let mut hello_only = connect(node);
        hello(&mut hello_only);
        let _ = hello_only.write_all(&forged);
        assert_dropped_without_storing(hello_only, "a Store after Hello alone");

        let mut fake = connect(node);
        hello(&mut fake);
        let mut proof = vec![TAG_PROOF];
        proof.extend_from_slice(&[0x5a; 16]);
        let _ = fake.write_all(&frame(&proof));
        let _ = fake.write_all(&forged);
        assert_dropped_without_storing(fake, "a Store after a made-up proof");
    }
    assert_eq!(server.count("victim"), 1);
    assert_eq!(server.count("thief"), 1);
    assert!(
        server.nodes().iter().all(|n| n["items"] == 2),
        "{:?}",
        server.nodes()
    );
    // A later POST of ID 42 wins: no version 2^64-1 pinned it.
    assert_eq!(server.post_items(&items([(42, "owner")])).status, 200);
    assert_eq!(server.count("owner"), 1);
    assert_eq!(server.count("victim"), 0);
    assert_eq!(server.count("thief"), 1);
    wait_within("every node holds 2 items", common::PATIENCE, || {
        server
            .nodes()
            .iter()
            .all(|n| n["items"] == 2 && n["alive"] == true)
    });
}

#[test]
fn length_headers_announcing_16_mib_cost_no_memory() {
    let _alone = one_at_a_time();
    let server = Server::start(&[]);
    assert_eq!(server.post_items(&items([(1, "m")])).status, 200);
    let before = server.rss_kib();
    let announce = (16u32 * 1024 * 1024).to_le_bytes();
    let streams: Vec<TcpStream> = (0..128)
        .map(|i| {
            let mut stream = connect(server.node_addrs[i % server.node_addrs.len()]);
            stream.write_all(&announce).expect("send a length header");
            stream
        })
        .collect();
    let mut peak = server.rss_kib();
    wait_within("the node dropped all 128", common::PATIENCE, || {
        peak = peak.max(server.rss_kib());
        streams.iter().all(closed_by_server)
    });
    // And the same after a Hello: an announcement before the proof.
    let after_hello: Vec<TcpStream> = (0..128)
        .map(|i| {
            let mut stream = connect(server.node_addrs[i % server.node_addrs.len()]);
            hello(&mut stream);
            stream.write_all(&announce).expect("send a length header");
            stream
        })
        .collect();
    wait_within(
        "the node dropped all 128 after Hello",
        common::PATIENCE,
        || {
            peak = peak.max(server.rss_kib());
            after_hello.iter().all(closed_by_server)
        },
    );
    println!("RSS before {before} KiB, peak {peak} KiB");
    assert!(
        peak <= before + 4 * 1024,
        "RSS grew from {before} KiB to {peak} KiB for 256 length headers"
    );
    assert_eq!(server.post_items(&items([(2, "m")])).status, 200);
    assert_eq!(server.count("m"), 2);
}

#[test]
fn three_hundred_connections_that_never_finish_the_handshake_do_not_stop_posts() {
    let _alone = one_at_a_time();
    let server = Server::start(&[]);
    let stop = AtomicBool::new(false);
    let nodes = server.node_addrs.clone();
    let (posts, slowest, failures) = thread::scope(|scope| {
        // 300 connections (75 per node) that say Hello and never prove
        // anything; each one the node drops is opened again at once.
        for &node in &nodes {
            let stop = &stop;
            scope.spawn(move || {
                let mut open: Vec<TcpStream> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    open.retain(|s| !closed_by_server(s));
                    while open.len() < 300 / 4 {
                        let Ok(mut stream) = TcpStream::connect(node) else {
                            break;
                        };
                        let _ = stream.write_all(&frame(&[TAG_HELLO]));
                        open.push(stream);
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            });
        }
        // Four writers at once, while the flood goes on.
        let writers: Vec<_> = (0..4i64)
            .map(|w| {
                let server = &server;
                scope.spawn(move || {
                    let mut posts = 0;
                    let mut slowest = Duration::ZERO;
                    let mut failures = Vec::new();
                    let started = Instant::now();
                    while started.elapsed() < Duration::from_secs(4) {
                        let id = w * 1_000_000 + posts;
                        let sent = Instant::now();
                        let reply = server.post_items(&items([(id, "flooded")]));
                        let took = sent.elapsed();
                        slowest = slowest.max(took);
                        if reply.status != 200 || took > Duration::from_secs(1) {
                            failures.push(format!(
                                "{}: {} in {took:?}",
                                reply.status,
                                reply.text()
                            ));
                        }
                        posts += 1;
                    }
                    (posts, slowest, failures)
                })
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        results.into_iter().fold(
            (0, Duration::ZERO, Vec::new()),
            |(posts, slowest, mut failures), (p, s, f)| {
                failures.extend(f);
                (posts + p, slowest.max(s), failures)
            },
        )
    });
    println!("{posts} POSTs under the flood, slowest {slowest:?}");
    assert!(posts > 20, "only {posts} POSTs in 4 s");
    assert!(
        failures.is_empty(),
        "{} of {posts} POSTs failed or were slow:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(server.count("flooded"), posts as u64);
    assert!(server.nodes().iter().all(|n| n["alive"] == true));
}

#[test]
fn garbage_and_clients_that_never_send_are_dropped() {
    let server = Server::start(&[]);
    let node = server.node_addrs[1];
    let garbage: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 4096],
        frame(&[TAG_PROOF, 1, 2, 3]),
        frame(&[TAG_STORED, 0, 0, 0, 0, 0, 0, 0, 0]),
        frame(&[]),
    ];
    for bytes in garbage {
        let mut stream = connect(node);
        let _ = stream.write_all(&bytes);
        let started = Instant::now();
        match read_to_close(&mut stream, Duration::from_secs(3)) {
            Ok(answer) => assert!(answer.is_empty(), "answered {answer:?} to garbage"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "garbage kept {:?}",
            started.elapsed()
        );
    }
    // Silent, and silent after Hello: dropped once the handshake deadline
    // (about a second) passes.
    let silent = connect(node);
    let mut after_hello = connect(node);
    hello(&mut after_hello);
    let started = Instant::now();
    for mut stream in [silent, after_hello] {
        let rest = read_to_close(&mut stream, Duration::from_secs(5)).expect("dropped");
        assert!(rest.is_empty(), "{rest:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "kept {:?}",
        started.elapsed()
    );
    for id in 0..20 {
        assert_eq!(server.post_items(&items([(id, "after")])).status, 200);
    }
    assert_eq!(server.count("after"), 20);
    let nodes = server.nodes();
    assert!(nodes.iter().all(|n| n["alive"] == true));
    assert!(
        nodes[1]["received"].as_u64().unwrap() > 0,
        "node 1 still takes writes"
    );
}
