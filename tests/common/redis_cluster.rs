//! The throwaway Redis Cluster of `distributed_counter::testkit::redis` (3
//! masters and 3 replicas on free loopback ports, stopped however the test
//! process ends), with what only the scale-out tests need: a cluster shared
//! between tests, typed queries through the `redis` crate, and panics instead
//! of errors.
#![allow(dead_code)]

use distributed_counter::testkit::redis as kit;
use redis::{Connection, FromRedisValue};
use std::sync::OnceLock;
use std::time::Duration;

/// Longest a test waits for the cluster to form, fail over or heal.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The cluster shared by the tests that leave each other alone. It lives as
/// long as the test process; its guards stop it when the process exits.
static SHARED: OnceLock<Option<RedisCluster>> = OnceLock::new();

/// True when `redis-server` and `redis-cli` can run; else prints why.
pub fn redis_installed() -> bool {
    match kit::missing() {
        None => true,
        Some(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// Polls `condition` until it holds; panics with `what` after [`PATIENCE`].
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    ok(kit::wait_until(what, PATIENCE, condition));
}

fn ok<T>(result: std::io::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

pub struct RedisCluster(kit::RedisCluster);

impl RedisCluster {
    /// A cluster of its own, for a test that breaks it; None if Redis is not
    /// installed.
    pub fn start() -> Option<RedisCluster> {
        redis_installed().then(|| RedisCluster(ok(kit::RedisCluster::start(PATIENCE))))
    }

    /// The cluster shared by tests that use their own IDs and tenants.
    pub fn shared() -> Option<&'static RedisCluster> {
        SHARED.get_or_init(RedisCluster::start).as_ref()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.0.ports()
    }

    /// Every node's `host:port`, as seeds for a store.
    pub fn seeds(&self) -> Vec<String> {
        self.0.seeds()
    }

    /// The service's `--store` value for this cluster.
    pub fn store_arg(&self) -> String {
        self.0.store_arg()
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
        ok(self.0.master_port_for(key))
    }

    /// `kill -9` of one node; its directory stays for a restart.
    pub fn kill(&self, port: u16) {
        ok(self.0.kill(port));
    }

    /// Stops (`-STOP`) or resumes (`-CONT`) one node.
    pub fn signal(&self, port: u16, signal: &str) {
        ok(self.0.signal(port, signal));
    }

    /// Starts a killed node again on its ports, with its cluster config.
    pub fn restart(&self, port: u16) {
        ok(self.0.restart(port));
    }

    /// Waits until a node other than `dead` serves `key`'s slot.
    pub fn wait_for_failover(&self, dead: u16, key: &str) {
        ok(self.0.wait_for_failover(dead, key));
    }

    /// Waits until the cluster is whole again (3 + 3, links up, views agree).
    pub fn wait_until_healthy(&self) {
        ok(self.0.wait_until_healthy());
    }
}
