//! A log that cannot be written, through the real binary and without root.
//!
//! A full disk needs a small filesystem (a mount, so root). The server is
//! started with a file size limit instead (`RLIMIT_FSIZE`, with `SIGXFSZ`
//! ignored as a shell's `trap '' XFSZ` would): a write past the limit fails
//! with EFBIG after writing what fits, as a write to a full disk fails with
//! ENOSPC after writing what fits. The limit is raised from outside
//! (`prlimit`) to give the space back.

mod common;

use common::{Client, Server, TempDir, items, wait_until};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

/// The server, started with a limit on the size of the files it writes.
struct Limited {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Limited {
    fn start(dir: &TempDir, max_file_bytes: u64) -> Limited {
        let mut command = Command::new(common::binary());
        command
            .args(["--listen", "127.0.0.1:0", "--node-port", "0"])
            .args(["--data-dir", dir.arg()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec this only calls async-signal-safe
        // functions (signal, setrlimit) on plain values.
        unsafe {
            command.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                set_file_size_limit(0, max_file_bytes)
            });
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (address, addresses) = mpsc::channel();
        let writer = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                writer.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = address.send(addr.parse::<SocketAddr>().unwrap());
                }
            }
        });
        let addr = addresses
            .recv_timeout(common::PATIENCE)
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("no start:\n{}", log.lock().unwrap())
            });
        Limited { child, addr, log }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> common::Reply {
        Client::connect(self.addr).call(method, path, body)
    }

    fn metrics(&self) -> String {
        self.call("GET", "/metrics", "").text()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Gives the space back: no limit on file sizes from now on.
    fn lift_limit(&self) {
        set_file_size_limit(self.child.id() as i32, libc::RLIM_INFINITY).unwrap();
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the soft file size limit of process `pid` (0: this one).
fn set_file_size_limit(pid: i32, bytes: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is a valid rlimit; the old limit is not asked for.
    let done = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    match done {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// 100 items with IDs from `first`, in `tenant`.
fn batch(first: i64, tenant: &str) -> String {
    items((first..first + 100).map(|id| (id, tenant))).to_string()
}

#[test]
fn a_log_that_cannot_be_written_fails_its_posts_shows_in_health_and_recovers() {
    let dir = TempDir::new("full");
    let server = Limited::start(&dir, 64 * 1024);
    let mut acked = 0;
    let refused = loop {
        assert!(acked < 100_000, "the limit never hit");
        let reply = server.call("POST", "/items", &batch(acked, "k"));
        if reply.status != 200 {
            break reply;
        }
        acked += 100;
    };
    refused.assert_ko(503, &["cannot write the log", "File too large"]);

    let health = server.call("GET", "/health", "");
    health.assert_ko(
        503,
        &[
            "cannot write the log in",
            dir.arg(),
            "File too large",
            "refused",
        ],
    );
    let metrics = server.metrics();
    assert!(metrics.contains("dc_wal_healthy 0"), "{metrics}");
    assert!(
        !metrics.contains("dc_wal_write_errors_total 0"),
        "{metrics}"
    );
    // The writer is still there: the next POST is tried, and fails the same way.
    let reply = server.call("POST", "/items", &batch(acked, "k"));
    reply.assert_ko(503, &["File too large"]);
    wait_until("the failed write is logged", || {
        server.log().contains("cannot write the log")
    });

    server.lift_limit();
    // No POST needed: the writer's probe notices.
    wait_until("/health is OK again", || {
        server.call("GET", "/health", "").status == 200
    });
    assert!(server.metrics().contains("dc_wal_healthy 1"));
    let reply = server.call("POST", "/items", &batch(acked, "k"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    acked += 100;
    drop(server); // kill -9

    // Everything acknowledged is there, nothing refused came back.
    let server = Server::start(&["--data-dir", dir.arg()]);
    assert_eq!(server.count("k"), acked as u64);
}

#[test]
fn a_compaction_that_cannot_write_its_snapshot_leaves_no_temporary_file() {
    const FIRST: i64 = 200_000;
    const MORE: i64 = 25_000;
    let dir = TempDir::new("compact-full");
    // 4 MB of log (20 bytes an item), below the 4 MiB compaction threshold.
    let server = Server::start(&["--data-dir", dir.arg(), "--fsync", "never"]);
    let mut client = server.client();
    for start in (0..FIRST).step_by(10_000) {
        let body = items((start..start + 10_000).map(|id| (id, "c"))).to_string();
        assert_eq!(client.call("POST", "/items", &body).status, 200);
    }
    server.kill9();

    // The old segment stays; the new one may hold 1 MiB, a snapshot of
    // every item needs about 4.
    let server = Limited::start(&dir, 1 << 20);
    let body = items((FIRST..FIRST + MORE).map(|id| (id, "c"))).to_string();
    assert_eq!(server.call("POST", "/items", &body).status, 200);
    wait_until("the compaction fails", || {
        server.log().contains("compaction failed")
    });
    assert!(server.log().contains("File too large"), "{}", server.log());
    assert!(
        !dir.0.join("snapshot.tmp").exists(),
        "its temporary file is removed"
    );
    assert!(
        server
            .metrics()
            .contains("dc_wal_compaction_errors_total 1")
    );
    assert!(
        server.metrics().contains("dc_wal_healthy 1"),
        "POSTs are not affected"
    );
    drop(server);

    let server = Server::start(&["--data-dir", dir.arg()]);
    assert_eq!(server.count("c"), (FIRST + MORE) as u64);
}
