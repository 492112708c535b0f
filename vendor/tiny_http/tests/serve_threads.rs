//! After attackers leave, `Server::serve` is back to its idle thread count,
//! and `stop` joins every thread. Alone in its binary: it counts this
//! process's threads.

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use support::{echo, options, start, thread_count, wait_for, Client};
use tiny_http::ServerOptions;

#[test]
fn threads_go_back_after_attackers_leave() {
    let before_server = thread_count();
    // Long enough that all 60 attackers are in before the first is cut
    // (the peak below must be seen), short enough to end well within
    // `PATIENCE` with the 2 s lingering close after each 408.
    let server = start(
        ServerOptions {
            header_timeout: Duration::from_millis(1500),
            body_grace: Duration::from_millis(1500),
            ..options()
        },
        echo,
    );
    let addr = server.local_addr();
    // The accept and reaper threads.
    let idle = thread_count();
    assert_eq!(idle, before_server + 2);
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut attackers = Vec::new();
    for i in 0..60 {
        let mut client = Client::connect_from(attacker, addr);
        match i % 3 {
            // Silent.
            0 => {}
            // A head that never ends.
            1 => client.send("GET / HTTP/1.1\r\nHost: t\r\n"),
            // A body that never comes.
            _ => client.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"),
        }
        attackers.push(client);
    }
    wait_for("a thread per attacker", || thread_count() == idle + 60);
    // Some leave, the others are cut by the deadlines.
    attackers.truncate(30);
    wait_for("the idle thread count", || thread_count() == idle);
    assert_eq!(server.stats().snapshot().open, 0);
    // A well-behaved client still gets served, and its thread goes too.
    let mut client = Client::connect(addr);
    assert_eq!(client.get("/").status, 200);
    drop(client);
    wait_for("the idle thread count again", || thread_count() == idle);
    server.stop();
    // `stop` has joined every thread, but a joined thread can still be
    // listed for a moment: the kernel wakes the joiner when the thread
    // clears its id, before it removes the task. A thread left running
    // (not joined, blocked) would keep the count up until the deadline.
    wait_for("stop to leave no thread behind", || {
        thread_count() == before_server
    });
}
