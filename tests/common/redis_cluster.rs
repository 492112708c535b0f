//! A throwaway Redis Cluster for the scaleout tests: 3 masters and 3 replicas
//! on free loopback ports, each node in its own temporary directory. Every
//! server runs under a guard that kills it when the test process lets go of
//! it, or dies, however it dies: no server outlives the tests.
#![allow(dead_code)]

use redis::{Connection, FromRedisValue};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Longest a test waits for the cluster to form, fail over or heal.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `cluster-node-timeout`: a master silent this long is suspected failed. Low
/// so that failover tests are quick; 1 s still keeps a busy 2-core box from
/// seeing failures that are not there.
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// Pause between two looks at a condition that is being waited for.
const POLL: Duration = Duration::from_millis(20);

const MASTERS: usize = 3;
const NODES: usize = 6;

/// Times to try a node's start on fresh ports when another process took one.
const PORT_ATTEMPTS: usize = 5;

/// Runs `redis-server` (arguments after the node's directory) in the
/// background, prints its pid, and waits for its own stdin to close: then it
/// kills the server and removes the directory, unless the line it read was
/// `keep` (a node killed to be restarted). The test process holds the other
/// end of that stdin, so the server goes when the process goes.
const GUARD: &str = r#"dir=$1; shift
redis-server "$@" >/dev/null 2>&1 &
pid=$!
echo "$pid"
read what
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ "$what" = keep ] || rm -rf "$dir""#;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// The cluster shared by the tests that leave each other alone. It lives as
/// long as the test process; its guards stop it when the process exits.
static SHARED: OnceLock<Option<RedisCluster>> = OnceLock::new();

/// True when `redis-server` and `redis-cli` can run; else prints why.
pub fn redis_installed() -> bool {
    let runs = |program: &str| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    };
    let installed = runs("redis-server") && runs("redis-cli");
    if !installed {
        eprintln!("skipped: redis-server or redis-cli is not installed");
    }
    installed
}

/// Polls `condition` until it holds; panics with `what` after [`PATIENCE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        thread::sleep(POLL);
    }
}

/// A running `redis-server` under its guard.
struct Server {
    guard: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
}

impl Server {
    /// Starts a server and waits until it answers as itself (not another
    /// process that took the port); Err with its log if it exits first.
    fn start(port: u16, bus_port: u16, dir: &Path) -> Result<Server, String> {
        let mut guard = Command::new("sh")
            .args(["-c", GUARD, "sh"])
            .arg(dir)
            .args(server_args(port, bus_port))
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run sh: {e}"))?;
        let stdin = guard.stdin.take();
        let mut line = String::new();
        if let Some(out) = guard.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let pid = line.trim().parse().unwrap_or(0);
        let mut server = Server { guard, stdin, pid };
        let deadline = Instant::now() + PATIENCE;
        while !answers_as(port, pid) {
            if !running(pid) || Instant::now() > deadline {
                server.stop(true);
                return Err(format!("no answer on {port}:\n{}", log_tail(dir)));
            }
            thread::sleep(POLL);
        }
        Ok(server)
    }

    /// Has the guard kill the server (and remove its directory unless
    /// `keep`), and waits until it is gone.
    fn stop(&mut self, keep: bool) {
        // Dropping stdin closes it: the guard's `read` returns.
        if let Some(mut stdin) = self.stdin.take()
            && keep
        {
            let _ = stdin.write_all(b"keep\n");
        }
        let _ = self.guard.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(false);
    }
}

struct Node {
    port: u16,
    bus_port: u16,
    dir: PathBuf,
    server: Option<Server>,
}

pub struct RedisCluster {
    nodes: Mutex<Vec<Node>>,
}

impl RedisCluster {
    /// A cluster of its own, for a test that breaks it; None if Redis is not
    /// installed.
    pub fn start() -> Option<RedisCluster> {
        if !redis_installed() {
            return None;
        }
        let cluster = RedisCluster {
            nodes: Mutex::new(Vec::new()),
        };
        for _ in 0..NODES {
            let node = spawn_on_free_ports();
            cluster.lock().push(node);
        }
        cluster.create();
        cluster.wait_until_healthy();
        Some(cluster)
    }

    /// The cluster shared by tests that use their own IDs and tenants.
    pub fn shared() -> Option<&'static RedisCluster> {
        SHARED.get_or_init(RedisCluster::start).as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Node>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn ports(&self) -> Vec<u16> {
        self.lock().iter().map(|n| n.port).collect()
    }

    /// Every node's `host:port`, as seeds for a store.
    pub fn seeds(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    fn alive_ports(&self) -> Vec<u16> {
        self.lock()
            .iter()
            .filter(|n| n.server.is_some())
            .map(|n| n.port)
            .collect()
    }

    pub fn connection(&self, port: u16) -> Result<Connection, redis::RedisError> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(conn)
    }

    /// Runs one command on one node; panics with the node and error.
    pub fn query<T: FromRedisValue>(&self, port: u16, args: &[&str]) -> T {
        self.try_query(port, args)
            .unwrap_or_else(|e| panic!("{args:?} on port {port}: {e}"))
    }

    pub fn try_query<T: FromRedisValue>(
        &self,
        port: u16,
        args: &[&str],
    ) -> Result<T, redis::RedisError> {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.connection(port)?)
    }

    /// Runs one command on the master that serves `key`.
    pub fn query_key<T: FromRedisValue>(&self, key: &str, args: &[&str]) -> T {
        self.query(self.master_port_for(key), args)
    }

    /// The port of the master serving `key`'s slot, as a live node sees it.
    pub fn master_port_for(&self, key: &str) -> u16 {
        let port = self.alive_ports()[0];
        let slot: i64 = self.query(port, &["CLUSTER", "KEYSLOT", key]);
        let nodes: String = self.query(port, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let serves = fields.iter().skip(8).any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                lo.parse::<i64>().is_ok_and(|lo| lo <= slot)
                    && hi.parse::<i64>().is_ok_and(|hi| slot <= hi)
            });
            if serves && fields[2].contains("master") {
                let addr = fields[1].split('@').next().unwrap_or_default();
                let port = addr.rsplit(':').next().unwrap_or_default();
                return port.parse().expect("port in CLUSTER NODES");
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}");
    }

    /// `kill -9` of one node; its directory stays for a restart.
    pub fn kill(&self, port: u16) {
        let mut nodes = self.lock();
        let node = nodes.iter_mut().find(|n| n.port == port).expect("a node");
        if let Some(mut server) = node.server.take() {
            server.stop(true);
        }
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) one node: a stalled server, whose
    /// connections stay open but which answers nothing.
    pub fn signal(&self, port: u16, signal: &str) {
        let nodes = self.lock();
        let node = nodes.iter().find(|n| n.port == port).expect("a node");
        let pid = node.server.as_ref().expect("a running node").pid;
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts a killed node again on its ports, with its cluster config: it
    /// rejoins (as a replica, if its master failed over) and resyncs.
    pub fn restart(&self, port: u16) {
        let mut nodes = self.lock();
        let node = nodes.iter_mut().find(|n| n.port == port).expect("a node");
        assert!(node.server.is_none(), "node {port} is running");
        let server = Server::start(port, node.bus_port, &node.dir)
            .unwrap_or_else(|log| panic!("node {port} did not restart:\n{log}"));
        node.server = Some(server);
    }

    /// Waits until a node other than `dead` serves every slot `dead` served,
    /// and the live nodes see the cluster as ok.
    pub fn wait_for_failover(&self, dead: u16, key: &str) {
        wait_until(&format!("failover away from {dead}"), || {
            self.master_port_for(key) != dead && self.all_report("cluster_state:ok")
        });
    }

    /// Waits until every live node reports the cluster ok, every replica's
    /// link to its master is up, and every live node's view has 3 masters,
    /// 3 replicas and no failure flag (roles spread by gossip: a node can
    /// see a replica as a master for a while after it became one).
    pub fn wait_until_healthy(&self) {
        wait_until("a healthy cluster", || {
            self.all_report("cluster_state:ok") && self.replicas_linked() && self.views_agree()
        });
    }

    fn all_report(&self, line: &str) -> bool {
        self.alive_ports().iter().all(|&port| {
            self.try_query::<String>(port, &["CLUSTER", "INFO"])
                .is_ok_and(|info| info.contains(line))
        })
    }

    fn replicas_linked(&self) -> bool {
        let mut replicas = 0;
        for port in self.alive_ports() {
            let Ok(info) = self.try_query::<String>(port, &["INFO", "replication"]) else {
                return false;
            };
            if info.contains("role:slave") {
                replicas += 1;
                if !info.contains("master_link_status:up") {
                    return false;
                }
            }
        }
        replicas == self.alive_ports().len() - MASTERS
    }

    fn views_agree(&self) -> bool {
        self.alive_ports().iter().all(|&port| {
            let Ok(view) = self.try_query::<String>(port, &["CLUSTER", "NODES"]) else {
                return false;
            };
            let flags: Vec<&str> = view
                .lines()
                .filter_map(|line| line.split_whitespace().nth(2))
                .collect();
            let with = |role: &str| flags.iter().filter(|f| f.contains(role)).count();
            !view.contains("fail") && with("master") == MASTERS && with("slave") == NODES - MASTERS
        })
    }

    /// `redis-cli --cluster create`: the first three nodes become masters.
    fn create(&self) {
        let mut command = Command::new("redis-cli");
        command.arg("--cluster").arg("create");
        command.args(self.seeds());
        command.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = command
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn spawn_on_free_ports() -> Node {
    let dir = std::env::temp_dir().join(format!(
        "dc-redis-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("node dir");
    let mut log = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let (port, bus_port) = free_port_pair();
        match Server::start(port, bus_port, &dir) {
            Ok(server) => {
                return Node {
                    port,
                    bus_port,
                    dir,
                    server: Some(server),
                };
            }
            Err(why) => log = why,
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    panic!("redis-server did not start in {PORT_ATTEMPTS} attempts:\n{log}");
}

/// Two ports free right now (the node's and its cluster bus's). Another
/// process may take one before the server binds it: the caller retries.
fn free_port_pair() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("a free port");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("bound").port();
    (port(&a), port(&b))
}

fn server_args(port: u16, bus_port: u16) -> Vec<String> {
    let node_timeout = NODE_TIMEOUT_MS.to_string();
    let args = [
        ["--port", &port.to_string()],
        ["--cluster-port", &bus_port.to_string()],
        ["--bind", "127.0.0.1"],
        ["--daemonize", "no"],
        ["--cluster-enabled", "yes"],
        ["--cluster-config-file", "nodes.conf"],
        ["--cluster-node-timeout", &node_timeout],
        ["--appendonly", "no"],
        ["--save", ""],
        ["--repl-diskless-sync-delay", "0"],
        ["--logfile", "redis.log"],
    ];
    args.iter().flatten().map(|s| s.to_string()).collect()
}

/// False once the process is gone or a zombie (exited, not yet reaped by its
/// guard).
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.trim().chars().next());
    state.is_some_and(|state| state != 'Z' && state != 'X')
}

fn answers_as(port: u16, pid: u32) -> bool {
    let info = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
        .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c));
    info.is_ok_and(|info| info.contains(&format!("process_id:{pid}\r")))
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let mut tail = String::new();
    for line in log
        .lines()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let _ = writeln!(tail, "{line}");
    }
    tail
}
