//! Support shared by the integration tests (`tests/common`) and the
//! benchmark (`src/bin/bench`), so neither writes it again: starting the
//! service as a child process, connecting from a chosen loopback address,
//! IDs crafted to collide under an unkeyed hash, and a throwaway Redis
//! Cluster ([`redis`]). The service itself never uses it.

pub mod redis;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// The service running as a child process, with what it printed on
/// standard error. Killed (`kill -9`) when dropped.
pub struct Process {
    pub child: Child,
    /// The HTTP address from its `listening on http://...` line.
    pub addr: SocketAddr,
    /// The node addresses from its `node N listening on ...` lines.
    pub node_addrs: Vec<SocketAddr>,
    log: Arc<Log>,
}

/// What the child printed on standard error, as a thread reads it from the
/// pipe: a line the child wrote before it answered a request may arrive
/// here after the answer, so tests wait for a line ([`Process::log_once`]).
#[derive(Default)]
struct Log {
    text: Mutex<String>,
    grew: Condvar,
}

impl Log {
    fn push_line(&self, line: &str) {
        let mut text = self.text.lock().unwrap_or_else(PoisonError::into_inner);
        text.push_str(line);
        text.push('\n');
        drop(text);
        self.grew.notify_all();
    }

    fn text(&self) -> String {
        self.text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Process {
    /// Spawns `command` (stdout and stdin closed, stderr read) and waits up
    /// to `patience` for its address and `nodes` node lines; on failure,
    /// what it printed.
    pub fn spawn(command: Command, nodes: usize, patience: Duration) -> Result<Process, String> {
        Process::start(command, nodes, patience, false)
    }

    /// [`Process::spawn`], then closes the read end of its standard error:
    /// every later log line meets a closed pipe.
    pub fn spawn_then_close_stderr(
        command: Command,
        nodes: usize,
        patience: Duration,
    ) -> Result<Process, String> {
        Process::start(command, nodes, patience, true)
    }

    fn start(
        mut command: Command,
        nodes: usize,
        patience: Duration,
        close_stderr: bool,
    ) -> Result<Process, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(Log::default());
        // The `listening on` line and one line per node.
        let startup_lines = nodes + 1;
        let (lines_tx, lines) = mpsc::channel();
        let writer = log.clone();
        thread::spawn(move || {
            let mut startup_seen = 0;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let startup = line.starts_with("listening on ") || line.starts_with("node ");
                startup_seen += usize::from(startup);
                writer.push_line(&line);
                let _ = lines_tx.send(line);
                // With `close_stderr`, the pipe closes once the startup
                // lines are read (the reader goes with this thread).
                if close_stderr && startup_seen >= startup_lines {
                    return;
                }
            }
        });
        let deadline = Instant::now() + patience;
        let (mut addr, mut node_addrs) = (None, Vec::new());
        while addr.is_none() || node_addrs.len() < nodes {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = lines.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(log.text());
            };
            if let Some(rest) = line.strip_prefix("listening on http://") {
                addr = rest.parse().ok();
            } else if let Some(node_addr) = line
                .strip_prefix("node ")
                .and_then(|rest| rest.split_whitespace().nth(3))
            {
                node_addrs.push(node_addr.parse().map_err(|_| line.clone())?);
            }
        }
        Ok(Process {
            child,
            addr: addr.ok_or("no address")?,
            node_addrs,
            log,
        })
    }

    /// Everything it printed on standard error so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Everything it printed on standard error, once that holds `needle`,
    /// or after `patience` (then without it).
    pub fn log_once(&self, needle: &str, patience: Duration) -> String {
        let deadline = Instant::now() + patience;
        let mut text = self.log.text.lock().unwrap_or_else(PoisonError::into_inner);
        while !text.contains(needle) {
            let timed_out = self
                .log
                .grew
                .wait_timeout(text, deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(PoisonError::into_inner);
            text = timed_out.0;
            if timed_out.1.timed_out() {
                break;
            }
        }
        text.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory now, in KiB (`VmRSS`), if it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status(self.pid(), "VmRSS:")
    }

    /// Its threads now, if it runs.
    pub fn threads(&self) -> Option<u64> {
        proc_status(self.pid(), "Threads:")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A number field of `/proc/PID/status` (e.g. `VmRSS:`, in kB).
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A TCP connection to `to` from the local address `source` (std cannot bind
/// a socket before connecting it, so this goes through libc). The local port
/// is chosen at connect time (`IP_BIND_ADDRESS_NO_PORT`), so thousands of
/// connections from one address do not run out of ports.
pub fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    connect_from_with(source, to, None)
}

/// [`connect_from`] with the socket's receive buffer set to `receive_buffer`
/// bytes before connecting (the kernel doubles it and applies a minimum), so
/// that a client that never reads stops the server's writes quickly.
pub fn connect_from_with(
    source: Ipv4Addr,
    to: SocketAddr,
    receive_buffer: Option<usize>,
) -> std::io::Result<TcpStream> {
    let SocketAddr::V4(to) = to else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    let sockaddr = |addr: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let from = sockaddr(SocketAddrV4::new(source, 0));
    let to = sockaddr(to);
    let set_int = |fd, level, name, value: libc::c_int| {
        // SAFETY: setsockopt reads one c_int from a valid pointer.
        let done = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if done == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain socket calls on a descriptor this function owns (wrapped
    // in a TcpStream at once, so it is closed on every path); the addresses
    // are valid sockaddr_in values that outlive the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        set_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
        if let Some(bytes) = receive_buffer {
            set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes as libc::c_int)?;
        }
        let from_ptr = (&from as *const libc::sockaddr_in).cast::<libc::sockaddr>();
        if libc::bind(fd, from_ptr, length) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let to_ptr = (&to as *const libc::sockaddr_in).cast::<libc::sockaddr>();
        if libc::connect(fd, to_ptr, length) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// The splitmix64 finaliser, unkeyed (what the store once hashed IDs with).
pub fn splitmix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `count` IDs whose unkeyed [`splitmix`] hashes share their low 40 bits
/// (one bucket of any table below 2^40 slots): the finaliser is invertible,
/// so pick the hashes and invert them (as in `src/store.rs`'s tests).
pub fn colliding_ids(count: u64) -> Vec<i64> {
    let inverse = |odd: u64| {
        let mut x = odd;
        for _ in 0..6 {
            x = x.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(x)));
        }
        x
    };
    let unshift = |mut x: u64, shift: u32| {
        let mut result = x;
        for _ in 0..64 / shift {
            x >>= shift;
            result ^= x;
        }
        result
    };
    (0..count)
        .map(|j| {
            let mut x = unshift(j << 40, 31);
            x = x.wrapping_mul(inverse(0x94d0_49bb_1331_11eb));
            x = unshift(x, 27);
            x = x.wrapping_mul(inverse(0xbf58_476d_1ce4_e5b9));
            unshift(x, 30) as i64
        })
        .collect()
}
