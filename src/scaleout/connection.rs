//! Pooled connections to single Redis nodes, and requests with a deadline.
//!
//! Each request is one pipeline to one node. The requests of one operation go
//! out to all their nodes first and are read back after, so the masters work
//! in parallel and an operation costs one round trip, however many masters it
//! touches. A request's replies are read on the connection that sent it: that
//! is what lets a `WAIT` at the end of a pipeline cover the writes before it.

use super::{CONNECT_TIMEOUT, MAX_IDLE_PER_NODE, REQUEST_TIMEOUT};
use parking_lot::Mutex;
use redis::{Cmd, Connection, ConnectionAddr, ConnectionInfo, ErrorKind, RedisError, Value};
use redis::{IntoConnectionInfo, RedisConnectionInfo};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Credentials sent when a connection opens.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

/// One pipeline for one node: the commands packed, and how many replies.
pub struct Request {
    pub addr: String,
    packed: Vec<u8>,
    replies: usize,
}

impl Request {
    pub fn new(addr: String) -> Request {
        Request {
            addr,
            packed: Vec::new(),
            replies: 0,
        }
    }

    pub fn push(&mut self, cmd: &Cmd) {
        cmd.write_packed_command(&mut self.packed);
        self.replies += 1;
    }

    pub fn with(addr: String, cmds: &[Cmd]) -> Request {
        let mut request = Request::new(addr);
        for cmd in cmds {
            request.push(cmd);
        }
        request
    }
}

/// Idle connections per node address. A connection goes back to the pool
/// only after every reply of its request was read, so a pooled connection
/// never has a late reply waiting in it.
pub struct NodePool {
    credentials: Credentials,
    idle: Mutex<HashMap<String, Vec<Connection>>>,
}

impl NodePool {
    pub fn new(credentials: Credentials) -> NodePool {
        NodePool {
            credentials,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// Sends every request, then reads every reply, all within
    /// [`REQUEST_TIMEOUT`]. One result per request, in order: the replies, or
    /// why that node failed (the other nodes' results stand).
    pub fn exchange(&self, requests: &[Request]) -> Vec<Result<Vec<Value>, RedisError>> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let sent: Vec<Result<Connection, RedisError>> =
            requests.iter().map(|r| self.send(r, deadline)).collect();
        requests
            .iter()
            .zip(sent)
            .map(|(request, conn)| {
                let replies = conn.and_then(|mut conn| {
                    let replies = read_replies(&mut conn, request.replies, deadline)?;
                    self.give_back(&request.addr, conn);
                    Ok(replies)
                });
                if replies.as_ref().is_err_and(RedisError::is_io_error) {
                    self.forget(&request.addr);
                }
                replies
            })
            .collect()
    }

    /// Drops a node's idle connections after one of them failed: when a node
    /// restarts, all of them are dead, and retries must not use them up.
    fn forget(&self, addr: &str) {
        self.idle.lock().remove(addr);
    }

    fn send(&self, request: &Request, deadline: Instant) -> Result<Connection, RedisError> {
        let mut conn = self.take(&request.addr)?;
        conn.set_write_timeout(Some(time_left(deadline)?))?;
        conn.send_packed_command(&request.packed)?;
        Ok(conn)
    }

    fn take(&self, addr: &str) -> Result<Connection, RedisError> {
        let idle = self.idle.lock().get_mut(addr).and_then(Vec::pop);
        match idle {
            Some(conn) => Ok(conn),
            None => self.open(addr),
        }
    }

    fn give_back(&self, addr: &str, conn: Connection) {
        let mut idle = self.idle.lock();
        let conns = idle.entry(addr.to_string()).or_default();
        if conns.len() < MAX_IDLE_PER_NODE {
            conns.push(conn);
        }
    }

    /// Drops the idle connections to nodes not in `addrs` (nodes removed from
    /// the cluster), so the pool follows the topology.
    pub fn retain(&self, addrs: &[String]) {
        self.idle.lock().retain(|addr, _| addrs.contains(addr));
    }

    fn open(&self, addr: &str) -> Result<Connection, RedisError> {
        let info = connection_info(addr, &self.credentials)?;
        let client = redis::Client::open(info)?;
        client.get_connection_with_timeout(CONNECT_TIMEOUT)
    }
}

fn connection_info(addr: &str, credentials: &Credentials) -> Result<ConnectionInfo, RedisError> {
    let (host, port) = split_addr(addr).ok_or_else(|| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "not a host:port address",
            addr.to_string(),
        ))
    })?;
    let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(username) = &credentials.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &credentials.password {
        settings = settings.set_password(password);
    }
    Ok(ConnectionAddr::Tcp(host.to_string(), port)
        .into_connection_info()?
        .set_redis_settings(settings))
}

/// `host:port`, with IPv6 hosts in brackets (`[::1]:7000`).
pub fn split_addr(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host, port.parse().ok()?))
}

fn read_replies(
    conn: &mut Connection,
    count: usize,
    deadline: Instant,
) -> Result<Vec<Value>, RedisError> {
    let mut replies = Vec::with_capacity(count);
    for _ in 0..count {
        conn.set_read_timeout(Some(time_left(deadline)?))?;
        replies.push(conn.recv_response()?);
    }
    Ok(replies)
}

/// What is left before the deadline; an error once it passed (a zero timeout
/// would mean "wait forever" to the socket).
fn time_left(deadline: Instant) -> Result<Duration, RedisError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no reply within {REQUEST_TIMEOUT:?}"),
        )));
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_addresses() {
        assert_eq!(split_addr("127.0.0.1:7000"), Some(("127.0.0.1", 7000)));
        assert_eq!(split_addr("[::1]:7000"), Some(("::1", 7000)));
        assert_eq!(
            split_addr("redis.internal:6379"),
            Some(("redis.internal", 6379))
        );
        assert_eq!(split_addr("7000"), None);
        assert_eq!(split_addr(":7000"), None);
        assert_eq!(split_addr("host:port"), None);
    }
}
