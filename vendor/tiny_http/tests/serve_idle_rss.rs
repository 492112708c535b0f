//! Memory of idle connections under `Server::serve`: 2,000 kept-alive
//! connections, each after one request, must cost at most 32 KB of RSS
//! each (thread, stack pages, buffers, bookkeeping). Alone in its binary:
//! it measures this process's RSS. Prints the figure (`--nocapture`).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use support::{options, rss_kib, start, thread_count, wait_for, Client};
use tiny_http::{Response, ServerOptions};

const CONNECTIONS: usize = 2000;
const MAX_BYTES_PER_CONNECTION: u64 = 32 * 1024;

#[test]
fn an_idle_connection_costs_at_most_32_kb() {
    let server = start(
        ServerOptions {
            max_connections: CONNECTIONS + 10,
            max_connections_per_ip: CONNECTIONS + 10,
            ..options()
        },
        |request: tiny_http::Request| {
            let _ = request.respond(Response::from_string("ok"));
        },
    );
    let addr = server.local_addr();
    let threads = thread_count();
    // Warm up: the allocator's arenas, the first thread stacks.
    let mut warm: Vec<Client> = (0..16).map(|_| Client::connect(addr)).collect();
    for client in &mut warm {
        assert_eq!(client.get("/warm").status, 200);
    }
    drop(warm);
    // Gone from the registry is not yet gone from the process: a
    // connection thread leaves the registry, then exits, then is joined.
    wait_for("the warm-up threads to end", || {
        server.stats().snapshot().open == 0 && thread_count() == threads
    });
    let before = rss_kib();
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        clients.push(lean_client(addr, i));
    }
    wait_for("every connection idle", || {
        let stats = server.stats().snapshot();
        stats.open == CONNECTIONS as u64 && stats.busy == 0
    });
    assert_eq!(thread_count(), threads + CONNECTIONS);
    let after = rss_kib();
    let per_connection = (after.saturating_sub(before)) * 1024 / CONNECTIONS as u64;
    println!(
        "idle connections: {}; RSS before {} KiB, after {} KiB; {} bytes per idle connection",
        CONNECTIONS, before, after, per_connection
    );
    assert!(
        per_connection <= MAX_BYTES_PER_CONNECTION,
        "{} bytes per idle connection",
        per_connection
    );
    drop(clients);
    server.stop();
}

/// A connection that made one request and keeps nothing but its socket, so
/// that the figure is the server's.
fn lean_client(addr: SocketAddr, i: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(support::PATIENCE))
        .expect("timeout");
    let request = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", i);
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = [0u8; 512];
    let mut got = 0;
    while !reply[..got].ends_with(b"\r\n\r\nok") {
        let n = stream.read(&mut reply[got..]).expect("reply");
        assert!(n > 0, "closed");
        got += n;
    }
    stream
}
