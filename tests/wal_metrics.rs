//! `/metrics` in durable mode: the WAL series, checked by promtool.

mod common;

use common::{Server, TempDir, items};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const PROMTOOL: &str = "/usr/bin/promtool";

fn durable_metrics() -> String {
    let dir = TempDir::new("metrics");
    let server = Server::start(&["--data-dir", dir.arg()]);
    assert_eq!(server.post_items(&items([(1, "m"), (2, "n")])).status, 200);
    server.call("GET", "/metrics", "").text()
}

#[test]
fn fsync_time_is_a_summary_and_the_log_state_is_shown() {
    let metrics = durable_metrics();
    for line in [
        "# TYPE dc_wal_fsync_seconds summary",
        "dc_wal_fsync_seconds_count 1",
        "# TYPE dc_wal_fsync_max_seconds gauge",
        "dc_wal_healthy 1",
        "dc_wal_write_errors_total 0",
        "dc_wal_compaction_errors_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(line)),
            "no {line:?} in\n{metrics}"
        );
    }
    assert!(metrics.contains("dc_wal_fsync_seconds_sum "));
    for gone in [
        "dc_wal_fsync_seconds_max",
        "dc_wal_fsync_seconds_sum counter",
    ] {
        assert!(!metrics.contains(gone), "{gone:?} in\n{metrics}");
    }
}

#[test]
fn promtool_finds_nothing_to_say_about_the_metrics() {
    if !Path::new(PROMTOOL).exists() {
        eprintln!("skipped: {PROMTOOL} is not installed");
        return;
    }
    let metrics = durable_metrics();
    let mut promtool = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "promtool check metrics: {:?}\n{findings}\non\n{metrics}",
        output.status
    );
}
