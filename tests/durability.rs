//! Durable mode: kill -9 and restart with the same --data-dir, torn and
//! damaged logs, compaction, and the lock on the data dir.

mod common;

use common::{Server, TempDir, items};
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

fn durable(dir: &TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--data-dir", dir.arg()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn wait_every_node_holds(server: &Server, expected: u64) {
    common::wait_until(&format!("every node holds {expected} items"), || {
        server.nodes().iter().all(|n| n["items"] == expected)
    });
}

#[test]
fn acknowledged_writes_survive_kill_9_under_concurrent_load() {
    const WRITERS: u64 = 4;
    const BATCH: u64 = 25;
    let dir = TempDir::new("kill9");
    let server = Arc::new(durable(&dir, &[]));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let unsure = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (server, stop, acked, unsure) =
                (server.clone(), stop.clone(), acked.clone(), unsure.clone());
            thread::spawn(move || {
                let mut next = writer * 1_000_000;
                while !stop.load(Ordering::SeqCst) {
                    let batch = items((next..next + BATCH).map(|id| (id as i64, "k")));
                    next += BATCH;
                    // The process may die under us: an unanswered POST is unsure.
                    unsure.fetch_add(BATCH, Ordering::SeqCst);
                    let answered = std::panic::catch_unwind(|| server.post_items(&batch).status);
                    if answered.is_ok_and(|status| status == 200) {
                        unsure.fetch_sub(BATCH, Ordering::SeqCst);
                        acked.fetch_add(BATCH, Ordering::SeqCst);
                    } else {
                        return;
                    }
                }
            })
        })
        .collect();
    common::wait_until("writers acknowledged 3000 items", || {
        acked.load(Ordering::SeqCst) >= 3_000
    });
    let pid = server.pid();
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        let _ = writer.join();
    }
    drop(server);
    let (acked, unsure) = (acked.load(Ordering::SeqCst), unsure.load(Ordering::SeqCst));

    let server = durable(&dir, &[]);
    let counted = server.count("k");
    assert!(
        counted >= acked,
        "lost acknowledged items: {counted} < {acked}"
    );
    assert!(counted <= acked + unsure, "{counted} > {acked} + {unsure}");
    wait_every_node_holds(&server, counted);
    assert!(
        server.log().contains("recovery:"),
        "a recovery summary is logged"
    );
}

#[test]
fn last_writer_wins_survives_a_restart_and_versions_go_on() {
    let dir = TempDir::new("lww");
    let server = durable(&dir, &[]);
    assert_eq!(
        server
            .post_items(&items([(1, "a"), (1, "b"), (2, "a")]))
            .status,
        200
    );
    assert_eq!(server.post_items(&items([(2, "c"), (3, "a")])).status, 200);
    assert_eq!(server.post_items(&items([(3, "b")])).status, 200);
    server.kill9();

    let server = durable(&dir, &[]);
    assert_eq!(
        (server.count("a"), server.count("b"), server.count("c")),
        (0, 2, 1)
    );
    // New writes are ordered after everything recovered.
    assert_eq!(server.post_items(&items([(1, "a")])).status, 200);
    assert_eq!((server.count("a"), server.count("b")), (1, 1));
    let status = server.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0));

    let server = durable(&dir, &[]);
    assert_eq!(
        (server.count("a"), server.count("b"), server.count("c")),
        (1, 1, 1)
    );
    wait_every_node_holds(&server, 3);
}

#[test]
fn a_torn_tail_is_dropped_and_everything_before_it_kept() {
    let dir = TempDir::new("torn");
    let server = durable(&dir, &[]);
    for id in 0..10 {
        assert_eq!(server.post_items(&items([(id, "t")])).status, 200);
    }
    server.kill9();
    // A record that was being written when the process died: a valid
    // header promising 100 bytes, and only 7 of them.
    let segment = dir.newest_segment();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    file.write_all(&0x5257_4344u32.to_le_bytes()).unwrap();
    file.write_all(&100u32.to_le_bytes()).unwrap();
    file.write_all(&[0xEE; 11]).unwrap();
    drop(file);

    let server = durable(&dir, &[]);
    assert_eq!(server.count("t"), 10);
    assert!(
        server.log().contains("torn"),
        "the drop is logged:\n{}",
        server.log()
    );
    assert_eq!(server.post_items(&items([(10, "t")])).status, 200);
    server.kill9();
    let server = durable(&dir, &[]);
    assert_eq!(server.count("t"), 11);
}

#[test]
fn damage_in_the_middle_refuses_to_start_naming_file_and_offset() {
    let dir = TempDir::new("corrupt");
    let server = durable(&dir, &[]);
    for id in 0..10 {
        assert_eq!(server.post_items(&items([(id, "x")])).status, 200);
    }
    server.kill9();
    let segment = dir.newest_segment();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();

    let stderr = dir.start_must_fail();
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(
        stderr.contains(name) && stderr.contains("offset"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("listening on"),
        "it must not serve: {stderr}"
    );
}

#[test]
fn compaction_keeps_disk_bounded_by_live_items() {
    const LIVE: i64 = 150_000;
    const ROUNDS: usize = 6;
    let dir = TempDir::new("compact");
    let server = durable(&dir, &["--fsync", "never"]);
    let mut client = server.client();
    for round in 0..ROUNDS {
        let tenant = format!("round{round}");
        for start in (0..LIVE).step_by(10_000) {
            let batch = items((start..start + 10_000).map(|id| (id, tenant.as_str())));
            assert_eq!(
                client.call("POST", "/items", &batch.to_string()).status,
                200
            );
        }
    }
    let bound = 64 * LIVE as u64;
    common::wait_until(
        "compaction brings the data dir under 64 bytes per live item",
        || dir.bytes() <= bound,
    );
    // Counted just after the old segments are removed and the directory
    // synced, so a moment after the data dir shrinks.
    common::wait_until("a compaction is counted", || {
        let metrics = server.call("GET", "/metrics", "").text();
        metrics.contains("dc_wal_compactions_total")
            && !metrics.contains("dc_wal_compactions_total 0")
    });
    server.kill9();

    let server = durable(&dir, &[]);
    assert_eq!(server.count(&format!("round{}", ROUNDS - 1)), LIVE as u64);
    assert_eq!(server.count("round0"), 0);
}

#[test]
fn a_data_dir_is_used_by_one_process_at_a_time() {
    let dir = TempDir::new("lock");
    let server = durable(&dir, &[]);
    let stderr = dir.start_must_fail();
    assert!(
        stderr.contains("in use by another process") && stderr.contains("LOCK"),
        "{stderr}"
    );
    assert_eq!(
        server.call("GET", "/health", "").status,
        200,
        "the first one goes on"
    );
}

#[test]
fn a_node_restarted_alone_recovers_from_the_data_dir() {
    let dir = TempDir::new("alone");
    let server = durable(&dir, &["--fault-injection", "--nodes", "2"]);
    assert_eq!(
        server
            .post_items(&items((0..50).map(|id| (id, "alone"))))
            .status,
        200
    );
    for id in 0..2 {
        assert_eq!(
            server
                .call("POST", &format!("/nodes/{id}/crash"), "")
                .status,
            200
        );
    }
    assert_eq!(server.call("POST", "/nodes/1/restart", "").status, 200);
    assert_eq!(server.count("alone"), 50);
    assert_eq!(server.call("POST", "/nodes/0/restart", "").status, 200);
    wait_every_node_holds(&server, 50);
}

#[test]
fn metrics_show_fsync_latency_in_durable_mode() {
    let dir = TempDir::new("metrics");
    let server = durable(&dir, &[]);
    assert_eq!(server.post_items(&items([(1, "m")])).status, 200);
    let metrics = server.call("GET", "/metrics", "").text();
    for series in [
        "dc_wal_fsync_seconds_sum",
        "dc_wal_fsync_seconds_count 1",
        "dc_wal_fsync_max_seconds",
        "dc_wal_log_bytes",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
}

#[test]
fn concurrent_posts_share_fsyncs() {
    const WRITERS: i64 = 8;
    const POSTS: i64 = 40;
    let dir = TempDir::new("group");
    let server = Arc::new(durable(&dir, &[]));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let server = server.clone();
            thread::spawn(move || {
                let mut client = server.client();
                for post in 0..POSTS {
                    let batch = items([(writer * 1000 + post, "g")]);
                    assert_eq!(
                        client.call("POST", "/items", &batch.to_string()).status,
                        200
                    );
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let metrics = server.call("GET", "/metrics", "").text();
    let fsyncs: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("dc_wal_fsync_seconds_count "))
        .and_then(|n| n.parse().ok())
        .expect("the fsync count is reported");
    let posts = (WRITERS * POSTS) as u64;
    assert!(
        fsyncs > 0 && fsyncs < posts,
        "{fsyncs} fsyncs for {posts} POSTs"
    );
    assert_eq!(server.count("g"), posts);
}
