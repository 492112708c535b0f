//! Large batches, idle clients, hostile bytes on node ports, and node counts
//! at both ends of the allowed range.

mod common;

use common::{Server, items};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn a_100k_item_batch_is_stored() {
    let server = Server::start(&[]);
    let batch = items((0..100_000).map(|id| (id, if id % 2 == 0 { "even" } else { "odd" })));
    let reply = server.post_items(&batch);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["accepted"], 100_000);
    assert_eq!(server.count("even"), 50_000);
    assert_eq!(server.count("odd"), 50_000);
    let received: u64 = server
        .nodes()
        .iter()
        .map(|n| n["received"].as_u64().unwrap())
        .sum();
    assert_eq!(received, 100_000);
    common::wait_until("every node holds 100k items", || {
        server.nodes().iter().all(|n| n["items"] == 100_000)
    });
}

#[test]
fn fifty_idle_connections_do_not_block_other_clients() {
    let server = Server::start(&[]);
    let idle: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // Half of them even started a request and stopped mid-headers.
    for stream in idle.iter().take(25) {
        (&*stream)
            .write_all(b"POST /items HTTP/1.1\r\nContent-Len")
            .unwrap();
    }
    let mut client = server.client();
    for id in 0..20 {
        assert_eq!(
            client
                .call("POST", "/items", &items([(id, "busy")]).to_string())
                .status,
            200
        );
    }
    assert_eq!(server.count("busy"), 20);
    drop(idle);
}

#[test]
fn hostile_bytes_on_node_ports_are_dropped_and_nodes_keep_serving() {
    let server = Server::start(&[]);
    assert_eq!(server.post_items(&items([(1, "n"), (2, "n")])).status, 200);
    let node = server.node_addrs[0];
    let hostile: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff; 64],
        // Oversize length prefix.
        u32::MAX.to_le_bytes().to_vec(),
        // A frame that declares 100 bytes and sends 3.
        [&100u32.to_le_bytes()[..], &[1, 2, 3]].concat(),
        // A well-sized frame with an unknown tag.
        [&9u32.to_le_bytes()[..], &[77; 9]].concat(),
        // A store frame naming a tenant id that does not exist.
        [
            &33u32.to_le_bytes()[..],
            &[1],
            &[0; 8],
            &1u32.to_le_bytes(),
            &[0; 16],
            &u32::MAX.to_le_bytes(),
        ]
        .concat(),
    ];
    let mut silent = Vec::new();
    for bytes in hostile {
        let mut stream = TcpStream::connect(node).unwrap();
        stream.write_all(&bytes).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut answer = [0u8; 16];
        match stream.read(&mut answer) {
            // Closed or reset: dropped.
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("node answered {n} bytes to garbage {bytes:?}"),
        }
        silent.push(stream);
    }
    // A client that connects and never sends anything.
    silent.push(TcpStream::connect(node).unwrap());
    for id in 3..40 {
        assert_eq!(server.post_items(&items([(id, "n")])).status, 200);
    }
    assert_eq!(server.count("n"), 39);
    let nodes = server.nodes();
    assert!(nodes.iter().all(|n| n["alive"] == true));
    assert!(
        nodes[0]["received"].as_u64().unwrap() > 0,
        "node 0 still takes writes"
    );
}

#[test]
fn one_node_works() {
    let server = Server::start(&["--nodes", "1"]);
    assert_eq!(
        server
            .post_items(&items((0..11).map(|id| (id, "one"))))
            .status,
        200
    );
    assert_eq!(server.count("one"), 11);
    let nodes = server.nodes();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["received"], 11);
}

#[test]
fn sixty_four_nodes_work() {
    let server = Server::start(&["--nodes", "64"]);
    assert_eq!(
        server
            .post_items(&items((0..130).map(|id| (id, "many"))))
            .status,
        200
    );
    assert_eq!(server.count("many"), 130);
    let nodes = server.nodes();
    assert_eq!(nodes.len(), 64);
    let received: Vec<u64> = nodes
        .iter()
        .map(|n| n["received"].as_u64().unwrap())
        .collect();
    assert_eq!(&received[..2], &[3, 3]);
    assert!(received[2..].iter().all(|&r| r == 2));
    common::wait_until("all 64 nodes hold 130 items", || {
        server.nodes().iter().all(|n| n["items"] == 130)
    });
}

#[test]
fn the_http_server_survives_running_out_of_file_descriptors() {
    // tiny_http's accept thread used to exit on the first failed accept
    // (EMFILE here), and the server silently stopped serving.
    let server = common::Server::start_with_file_limit(64, &["--nodes", "1"]);
    assert_eq!(server.post_items(&items([(1, "fd")])).status, 200);
    let flood: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(server.addr).ok())
        .collect();
    assert!(
        flood.len() > 64,
        "the kernel queues connections the server cannot accept"
    );
    drop(flood);
    common::wait_until("the server answers again", || {
        TcpStream::connect(server.addr).is_ok_and(|stream| {
            stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut client = stream;
            client
                .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                .is_ok()
                && client.read(&mut [0u8; 12]).is_ok_and(|n| n == 12)
        })
    });
    assert_eq!(server.count("fd"), 1);
}
