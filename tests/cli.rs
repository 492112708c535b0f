//! The command line: help, bad flags, a taken address, the startup lines and
//! clean stops on signals.

mod common;

use common::Server;
use std::net::TcpListener;
use std::process::{Command, Stdio};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(common::binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

#[test]
fn help_prints_every_flag_and_exits_0() {
    let output = run(&["--help"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--nodes",
        "--node-port",
        "--max-body-bytes",
        "--fault-injection",
        "--data-dir",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn bad_flags_and_values_exit_2_with_one_line() {
    for args in [
        &["--bogus"][..],
        &["--nodes", "0"],
        &["--nodes", "65"],
        &["--nodes"],
        &["--listen", "x"],
        &["--max-body-bytes", "-1"],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}

#[test]
fn a_taken_http_address_exits_1_with_the_reason() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run(&["--listen", &addr, "--node-port", "0"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&addr) && stderr.to_lowercase().contains("in use"),
        "{stderr}"
    );
}

#[test]
fn busy_node_ports_are_skipped() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let server = Server::try_start(&["--node-port", &port.to_string(), "--nodes", "2"]);
    // try_start adds `--node-port 0` first; the later flag wins.
    let server = server.expect("starts");
    assert!(server.node_addrs.iter().all(|addr| addr.port() != port));
    assert!(server.node_addrs.iter().all(|addr| addr.port() > port));
}

#[test]
fn startup_lines_name_the_real_ports() {
    let server = Server::start(&["--nodes", "3"]);
    let log = server.log();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], format!("listening on http://{}", server.addr));
    assert_ne!(server.addr.port(), 0);
    assert_eq!(server.node_addrs.len(), 3);
    assert_eq!(server.call("GET", "/health", "").status, 200);
}

#[test]
fn sigint_and_sigterm_stop_cleanly_with_exit_0() {
    for signal in ["INT", "TERM"] {
        let server = Server::start(&[]);
        assert_eq!(
            server
                .call("POST", "/items", r#"[{"ID":1,"tenant":"s"}]"#)
                .status,
            200
        );
        let status = server.signal_and_wait(signal);
        assert_eq!(status.code(), Some(0), "after SIG{signal}");
    }
}

#[test]
fn flags_can_come_from_the_environment() {
    let output = Command::new(common::binary())
        .env("DC_NODES", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DC_NODES"));
}
