//! What the status page relies on, checked without a browser: the page
//! itself (`GET /`) and the metrics it reads.

mod common;

use common::{Server, wait_until};

#[test]
fn the_page_is_served_at_the_root_and_knows_the_fault_flag() {
    for (flags, marker) in [
        (&[][..], "data-fault-injection=\"false\""),
        (&["--fault-injection"][..], "data-fault-injection=\"true\""),
    ] {
        let server = Server::start(flags);
        let reply = server.call("GET", "/", "");
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        let page = reply.text();
        assert!(page.starts_with("<!doctype html>"), "{page}");
        assert!(page.contains(marker), "{flags:?}: no {marker}");
        assert_eq!(server.call("GET", "/?from=bookmark", "").text(), page);
    }
}

/// The value of the series `line_start` (name and labels) in `/metrics`.
fn metric(server: &Server, line_start: &str) -> f64 {
    let text = server.call("GET", "/metrics", "").text();
    text.lines()
        .find_map(|line| line.strip_prefix(line_start)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {line_start} in:\n{text}"))
        .parse()
        .expect("a number")
}

#[test]
fn master_changes_are_counted_and_timed() {
    let server = Server::start(&["--fault-injection", "--nodes", "3"]);
    assert_eq!(metric(&server, "dc_master_changes_total"), 0.0);
    assert_eq!(
        metric(&server, "dc_master_last_change_timestamp_seconds"),
        0.0
    );

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(server.call("POST", "/nodes/0/crash", "").status, 200);
    assert_eq!(metric(&server, "dc_master_changes_total"), 1.0);
    let changed = metric(&server, "dc_master_last_change_timestamp_seconds");
    assert!(
        (before - 1.0..before + 60.0).contains(&changed),
        "{changed} is not about {before}"
    );

    // A replica's crash and restart do not move the master.
    assert_eq!(server.call("POST", "/nodes/0/restart", "").status, 200);
    assert_eq!(metric(&server, "dc_master_changes_total"), 1.0);
}

#[test]
fn a_stalled_node_shows_in_the_metrics() {
    let server = Server::start(&["--fault-injection", "--nodes", "2"]);
    assert_eq!(metric(&server, "dc_node_stalled{node=\"1\"}"), 0.0);
    // Long enough to be in force at the next scrape on a busy machine;
    // ended early below.
    assert_eq!(
        server.call("POST", "/nodes/1/stall?ms=30000", "").status,
        200
    );
    assert_eq!(metric(&server, "dc_node_stalled{node=\"1\"}"), 1.0);
    assert_eq!(metric(&server, "dc_node_stalled{node=\"0\"}"), 0.0);
    assert_eq!(server.call("POST", "/nodes/1/stall?ms=0", "").status, 200);
    wait_until("the stall ends", || {
        metric(&server, "dc_node_stalled{node=\"1\"}") == 0.0
    });
}
