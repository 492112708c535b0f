//! `RedisStore`: the items of many service instances in one Redis Cluster.

use super::batch::{Batch, Call};
use super::connection::{Credentials, NodePool, Request, split_addr};
use super::error::ScaleoutError;
use super::functions;
use super::metrics::{Op, StoreMetrics};
use super::partition::{
    COUNTER_KEY, DEFAULT_PARTITION_KEY, LAYOUT_KEY, PARTITIONS, PartitionKeys, Partitioner,
};
use super::topology::{ClusterNode, Topology};
use super::{
    ATTEMPTS, MAX_CALLS_PER_REQUEST, RETRY_BACKOFF, VERSION_LIMIT, WAIT_REPLICAS, WAIT_TIMEOUT,
};
use parking_lot::RwLock;
use redis::{Cmd, FromRedisValue, RedisError, Value};
use std::sync::Arc;
use std::thread;

/// How to reach and lay out the data.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// The partition key: which partition each ID goes to derives from it.
    /// Every instance of a deployment must use the same one (connect refuses
    /// a different one once data exists); keep it secret so that IDs cannot
    /// be chosen to all land on one master.
    pub partition_key: String,
    /// ACL user, when the cluster requires one.
    pub username: Option<String>,
    /// Password (`requirepass` or the ACL user's).
    pub password: Option<String>,
}

impl Default for RedisOptions {
    fn default() -> RedisOptions {
        RedisOptions {
            partition_key: DEFAULT_PARTITION_KEY.to_string(),
            username: None,
            password: None,
        }
    }
}

/// One Redis node, for `GET /nodes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisNodeStatus {
    /// Position in the list, which is sorted by address.
    pub id: usize,
    /// Redis's node name (40 hex digits), stable across address changes.
    pub name: String,
    /// "master" or "replica".
    pub role: &'static str,
    /// Not flagged failed by the cluster, and linked to the node answering.
    pub alive: bool,
    /// `host:port`.
    pub addr: String,
    /// Masters: IDs held in the partitions they serve (None if the master did
    /// not answer). Replicas: None.
    pub items: Option<u64>,
    /// Items this instance wrote to the node as master and the node confirmed
    /// (a replica had them): acknowledged requests, counted even when another
    /// master failed the same batch.
    pub received: u64,
}

/// A client of the cluster, shared by all the threads of one instance.
pub struct RedisStore {
    seeds: Vec<String>,
    partitioner: Partitioner,
    keys: Vec<PartitionKeys>,
    pool: NodePool,
    topology: RwLock<Arc<Topology>>,
    metrics: StoreMetrics,
}

// Shared by the HTTP workers: must stay Send + Sync.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<RedisStore>();
};

/// Per master: its partitions' replies, or why the master failed.
type PerMaster<'t> = Vec<(&'t ClusterNode, Result<Vec<(usize, Value)>, ScaleoutError>)>;

impl RedisStore {
    /// Learns the topology from the first seed (`host:port`) that answers,
    /// loads the functions on every master, checks that the cluster's data
    /// uses this instance's layout, and lifts the version counter above every
    /// version the partitions hold (they may be ahead of it after a restore).
    /// Every partition's master must answer.
    pub fn connect(seeds: &[String], options: RedisOptions) -> Result<RedisStore, ScaleoutError> {
        let store = RedisStore {
            seeds: check_seeds(seeds)?,
            partitioner: Partitioner::new(&options.partition_key),
            keys: (0..PARTITIONS).map(PartitionKeys::new).collect(),
            pool: NodePool::new(Credentials {
                username: options.username,
                password: options.password,
            }),
            topology: RwLock::new(Arc::new(Topology::default())),
            metrics: StoreMetrics::default(),
        };
        store.refresh_topology()?;
        store.load_functions()?;
        store.check_layout()?;
        store.lift_counter()?;
        Ok(store)
    }

    /// Stores a validated batch (items in batch order); Ok only when every
    /// master it touched ran it and a replica of each confirmed it.
    pub fn write(&self, items: &[(i64, &str)]) -> Result<(), ScaleoutError> {
        if items.is_empty() {
            return Ok(());
        }
        let first = self.reserve_versions(items.len())?;
        self.apply_with_versions(first, items)
    }

    /// Applies a batch with versions `first..first + len` without reserving
    /// them: what a retry does. Applying the same versions twice changes
    /// nothing. Public for tests; `write` is the API.
    #[doc(hidden)]
    pub fn apply_with_versions(
        &self,
        first: u64,
        items: &[(i64, &str)],
    ) -> Result<(), ScaleoutError> {
        let batch = Batch::new(&self.partitioner, first, items);
        let mut pending = batch.calls();
        self.with_retries(Op::Write, |topology| {
            while !pending.is_empty() {
                self.apply_round(topology, &batch, &mut pending)?;
            }
            Ok(())
        })?;
        self.metrics.written(items.len());
        Ok(())
    }

    /// The number of distinct IDs whose latest write names `tenant`.
    pub fn count(&self, tenant: &str) -> Result<u64, ScaleoutError> {
        let all: Vec<usize> = (0..PARTITIONS).collect();
        self.with_retries(Op::Count, |topology| {
            let per_master = self.each_partition(topology, &all, "count (HGET cnt)", |p| {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(&self.keys[p].cnt).arg(tenant);
                cmd
            })?;
            let mut total = 0;
            for (node, replies) in per_master {
                for (_, value) in replies? {
                    let count: Option<u64> = parse(&node.addr(), "count (HGET cnt)", &value)?;
                    total += count.unwrap_or(0);
                }
            }
            Ok(total)
        })
    }

    /// The Redis nodes, sorted by address, as the cluster sees them now (or
    /// as last seen, when no node answers).
    pub fn nodes(&self) -> Vec<RedisNodeStatus> {
        let topology = self.current_topology();
        let held = self.items_per_master(&topology);
        topology
            .nodes
            .iter()
            .enumerate()
            .map(|(id, node)| RedisNodeStatus {
                id,
                name: node.name.clone(),
                role: if node.master { "master" } else { "replica" },
                alive: node.healthy,
                addr: node.addr(),
                items: held
                    .iter()
                    .find(|(name, _)| *name == node.name)
                    .and_then(|h| h.1),
                received: self.metrics.received(&node.name),
            })
            .collect()
    }

    /// Ok if every partition has a master that the cluster sees as healthy
    /// and that answers a PING.
    pub fn health(&self) -> Result<(), ScaleoutError> {
        let topology = self.refresh_topology()?;
        let all: Vec<usize> = (0..PARTITIONS).collect();
        let groups = group_by_master(&topology, &all)?;
        if let Some((node, parts)) = groups.iter().find(|(node, _)| !node.healthy) {
            return Err(no_master(
                parts,
                format!(
                    "the cluster sees master {} as failed or unreachable",
                    node.addr()
                ),
            ));
        }
        let requests: Vec<Request> = groups
            .iter()
            .map(|(node, _)| Request::with(node.addr(), &[redis::cmd("PING")]))
            .collect();
        for ((node, parts), result) in groups.iter().zip(self.exchange(&requests)) {
            if let Err(e) = result {
                return Err(no_master(
                    parts,
                    format!("master {} does not answer: {e}", node.addr()),
                ));
            }
        }
        Ok(())
    }

    /// Prometheus text lines: round trips, errors, WAIT failures, items
    /// written, and each node's health and role.
    pub fn render_metrics(&self, out: &mut String) {
        self.metrics.render(&self.current_topology(), out);
    }

    fn topology(&self) -> Arc<Topology> {
        self.topology.read().clone()
    }

    /// A fresh topology if a node answers, else the last one seen.
    fn current_topology(&self) -> Arc<Topology> {
        self.refresh_topology().unwrap_or_else(|_| self.topology())
    }

    /// Asks the known healthy nodes, masters first, then the seeds, for
    /// `CLUSTER NODES`; the first answer becomes the topology.
    fn refresh_topology(&self) -> Result<Arc<Topology>, ScaleoutError> {
        let mut candidates = self.topology().contact_points();
        for seed in &self.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut last_error = None;
        for addr in candidates {
            match self.ask_topology(&addr) {
                Ok(topology) => return Ok(self.adopt(topology)),
                Err(e) => last_error = Some(e),
            }
        }
        self.metrics.error(Op::Topology);
        Err(last_error.unwrap_or_else(|| ScaleoutError::Config("no seed to ask".to_string())))
    }

    fn ask_topology(&self, addr: &str) -> Result<Topology, ScaleoutError> {
        const ACTION: &str = "read the topology (CLUSTER NODES)";
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let replies = self.ask(addr, ACTION, &[cmd])?;
        let text: String = parse(addr, ACTION, first(&replies))?;
        let host = split_addr(addr).map_or("", |(host, _)| host);
        Topology::parse(&text, host).map_err(|e| ScaleoutError::protocol(addr, ACTION, e))
    }

    fn adopt(&self, topology: Topology) -> Arc<Topology> {
        let mut addrs: Vec<String> = topology.nodes.iter().map(ClusterNode::addr).collect();
        addrs.extend(self.seeds.iter().cloned());
        self.pool.retain(&addrs);
        let topology = Arc::new(topology);
        *self.topology.write() = topology.clone();
        topology
    }

    /// `FUNCTION LOAD REPLACE` on every master that serves slots.
    fn load_functions(&self) -> Result<(), ScaleoutError> {
        let topology = self.topology();
        let masters: Vec<&ClusterNode> = topology
            .nodes
            .iter()
            .filter(|n| n.master && !n.slots.is_empty())
            .collect();
        let requests: Vec<Request> = masters
            .iter()
            .map(|m| Request::with(m.addr(), &[functions::load()]))
            .collect();
        for (master, result) in masters.iter().zip(self.exchange(&requests)) {
            result.map_err(|e| {
                ScaleoutError::redis(&master.addr(), "load the functions (FUNCTION LOAD)", e)
            })?;
        }
        Ok(())
    }

    /// Records this instance's layout if the cluster has none yet, and
    /// refuses to go on if the cluster's data uses another.
    fn check_layout(&self) -> Result<(), ScaleoutError> {
        const ACTION: &str = "check the layout (SET NX + GET)";
        let ours = self.partitioner.fingerprint();
        let mut set = redis::cmd("SET");
        set.arg(LAYOUT_KEY).arg(&ours).arg("NX");
        let mut get = redis::cmd("GET");
        get.arg(LAYOUT_KEY);
        let node = self.counter_master(&self.topology())?;
        let replies = self.ask(&node, ACTION, &[set, get])?;
        let cluster: String = parse(&node, ACTION, replies.get(1).unwrap_or(&Value::Nil))?;
        if cluster != ours {
            return Err(ScaleoutError::LayoutMismatch { ours, cluster });
        }
        Ok(())
    }

    /// Raises the version counter to the highest version any partition
    /// holds, so that new batches win over everything stored. The lift is not
    /// WAITed for: the first `INCRBY` after it is, on the same master, which
    /// covers the lift too.
    fn lift_counter(&self) -> Result<(), ScaleoutError> {
        const ACTION: &str = "read the partitions' highest versions (GET max)";
        let topology = self.topology();
        let all: Vec<usize> = (0..PARTITIONS).collect();
        let per_master = self.each_partition(&topology, &all, ACTION, |p| {
            let mut cmd = redis::cmd("GET");
            cmd.arg(&self.keys[p].max);
            cmd
        })?;
        let mut floor = 0;
        for (node, replies) in per_master {
            for (_, value) in replies? {
                let max: Option<u64> = parse(&node.addr(), ACTION, &value)?;
                floor = floor.max(max.unwrap_or(0));
            }
        }
        if floor > 0 {
            let node = self.counter_master(&topology)?;
            self.ask(
                &node,
                "lift the version counter (FCALL dc_lift_v1)",
                &[functions::lift(floor)],
            )?;
        }
        Ok(())
    }

    /// Reserves `n` consecutive versions and returns the first. The `INCRBY`
    /// is WAITed for like the items: a counter that lost increments in a
    /// failover would hand out versions already used, and a later batch could
    /// then lose to an earlier one.
    fn reserve_versions(&self, n: usize) -> Result<u64, ScaleoutError> {
        const ACTION: &str = "reserve versions (INCRBY + WAIT)";
        let last = self.with_retries(Op::Write, |topology| {
            let node = self.counter_master(topology)?;
            let mut incr = redis::cmd("INCRBY");
            incr.arg(COUNTER_KEY).arg(n);
            let replies = self.ask(&node, ACTION, &[incr, wait()])?;
            check_wait(&node, "the version counter's increment", replies.get(1))?;
            parse::<i64>(&node, ACTION, first(&replies))
        })?;
        match u64::try_from(last) {
            Ok(last) if last < VERSION_LIMIT && last >= n as u64 => Ok(last + 1 - n as u64),
            _ => Err(ScaleoutError::VersionsExhausted { last }),
        }
    }

    /// One round of the calls still `pending`: each master gets up to
    /// [`MAX_CALLS_PER_REQUEST`] of its calls and a WAIT, all masters at once.
    /// Calls whose master confirmed leave `pending`, so a retry redoes only
    /// the others.
    fn apply_round(
        &self,
        topology: &Topology,
        batch: &Batch,
        pending: &mut Vec<Call>,
    ) -> Result<(), ScaleoutError> {
        let rounds = round_by_master(topology, pending)?;
        let requests: Vec<Request> = rounds
            .iter()
            .map(|(node, calls)| self.write_request(node, calls, batch))
            .collect();
        let mut failure = None;
        for ((node, calls), result) in rounds.iter().zip(self.exchange(&requests)) {
            let outcome = result
                .map_err(|e| ScaleoutError::redis(&node.addr(), "apply items (FCALL + WAIT)", e))
                .and_then(|replies| check_wait(&node.addr(), "the batch's items", replies.last()));
            match outcome {
                Ok(()) => {
                    pending.retain(|call| !calls.contains(call));
                    let items = calls.iter().map(|&call| batch.items_in(call)).sum();
                    self.metrics.received_by(&node.name, items);
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        failure.map_or(Ok(()), Err)
    }

    fn write_request(&self, node: &ClusterNode, calls: &[Call], batch: &Batch) -> Request {
        let mut request = Request::new(node.addr());
        for &call in calls {
            request.push(&batch.command(call, &self.keys[call.0]));
        }
        request.push(&wait());
        request
    }

    /// IDs held per master: the sum of `HLEN ids` over its partitions.
    fn items_per_master(&self, topology: &Topology) -> Vec<(String, Option<u64>)> {
        const ACTION: &str = "count IDs (HLEN ids)";
        let all: Vec<usize> = (0..PARTITIONS).collect();
        let Ok(per_master) = self.each_partition(topology, &all, ACTION, |p| {
            let mut cmd = redis::cmd("HLEN");
            cmd.arg(&self.keys[p].ids);
            cmd
        }) else {
            return Vec::new();
        };
        let sum = |node: &ClusterNode, replies: Vec<(usize, Value)>| {
            replies.iter().try_fold(0u64, |total, (_, value)| {
                parse::<u64>(&node.addr(), ACTION, value).map(|n| total + n)
            })
        };
        let mut held: Vec<(String, Option<u64>)> = per_master
            .into_iter()
            .map(|(node, replies)| (node.name.clone(), replies.and_then(|r| sum(node, r)).ok()))
            .collect();
        // Masters that serve no partition hold none.
        for node in topology.nodes.iter().filter(|n| n.master) {
            if !held.iter().any(|(name, _)| *name == node.name) {
                held.push((node.name.clone(), Some(0)));
            }
        }
        held
    }

    /// Runs `cmd(p)` for each partition, one request per master, all masters
    /// at once.
    fn each_partition<'t>(
        &self,
        topology: &'t Topology,
        partitions: &[usize],
        action: &'static str,
        cmd: impl Fn(usize) -> Cmd,
    ) -> Result<PerMaster<'t>, ScaleoutError> {
        let groups = group_by_master(topology, partitions)?;
        let requests: Vec<Request> = groups
            .iter()
            .map(|(node, parts)| {
                let cmds: Vec<Cmd> = parts.iter().map(|&p| cmd(p)).collect();
                Request::with(node.addr(), &cmds)
            })
            .collect();
        let results = self.exchange(&requests);
        Ok(groups
            .into_iter()
            .zip(results)
            .map(|((node, parts), result)| {
                let replies = result
                    .map(|replies| parts.into_iter().zip(replies).collect())
                    .map_err(|e| ScaleoutError::redis(&node.addr(), action, e));
                (node, replies)
            })
            .collect())
    }

    fn counter_master(&self, topology: &Topology) -> Result<String, ScaleoutError> {
        topology
            .counter_master()
            .map(ClusterNode::addr)
            .ok_or_else(|| ScaleoutError::NoMaster {
                keys: format!("the version counter {COUNTER_KEY}"),
                reason: "no node serves its slot".to_string(),
            })
    }

    /// One request to one node; the first failed reply is the error.
    fn ask(
        &self,
        addr: &str,
        action: &'static str,
        cmds: &[Cmd],
    ) -> Result<Vec<Value>, ScaleoutError> {
        let request = Request::with(addr.to_string(), cmds);
        self.exchange(std::slice::from_ref(&request))
            .pop()
            .unwrap_or_else(|| Ok(Vec::new()))
            .map_err(|e| ScaleoutError::redis(addr, action, e))
    }

    /// Sends the requests together; a reply that is an error fails its
    /// request (the node's other replies are dropped).
    fn exchange(&self, requests: &[Request]) -> Vec<Result<Vec<Value>, RedisError>> {
        self.metrics.round_trips(requests.len());
        self.pool
            .exchange(requests)
            .into_iter()
            .map(|result| result?.into_iter().map(Value::extract_error).collect())
            .collect()
    }

    /// Runs `attempt` up to [`ATTEMPTS`] times while it fails transiently,
    /// with a fresh topology (and the functions loaded again, if a master
    /// lacked them) before each new attempt.
    fn with_retries<T>(
        &self,
        op: Op,
        mut attempt: impl FnMut(&Topology) -> Result<T, ScaleoutError>,
    ) -> Result<T, ScaleoutError> {
        let mut topology = self.topology();
        let mut tries = 1;
        loop {
            let error = match attempt(&topology) {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if tries == ATTEMPTS || !error.is_transient() {
                self.record_failure(op, &error);
                return Err(error);
            }
            self.metrics.retry();
            thread::sleep(RETRY_BACKOFF * tries);
            tries += 1;
            topology = self.current_topology();
            if error.is_missing_function() {
                // Best effort: if it fails, the next attempt says why.
                let _ = self.load_functions();
            }
        }
    }

    fn record_failure(&self, op: Op, error: &ScaleoutError) {
        self.metrics.error(op);
        if matches!(error, ScaleoutError::NotReplicated { .. }) {
            self.metrics.wait_failure();
        }
    }
}

fn check_seeds(seeds: &[String]) -> Result<Vec<String>, ScaleoutError> {
    if seeds.is_empty() {
        return Err(ScaleoutError::Config(
            "no seed node given: list one or more cluster nodes as host:port".to_string(),
        ));
    }
    for seed in seeds {
        if split_addr(seed).is_none() {
            return Err(ScaleoutError::Config(format!(
                "seed {seed:?} is not host:port"
            )));
        }
    }
    Ok(seeds.to_vec())
}

/// The partitions' masters, each with its partitions.
fn group_by_master<'t>(
    topology: &'t Topology,
    partitions: &[usize],
) -> Result<Vec<(&'t ClusterNode, Vec<usize>)>, ScaleoutError> {
    topology.group_by_master(partitions).map_err(|p| {
        no_master(
            &[p],
            "no node serves its slot (is the cluster fully covered?)".to_string(),
        )
    })
}

/// Each master with the next calls for its partitions, at most
/// [`MAX_CALLS_PER_REQUEST`]: bounds the Redis time of one request, so that a
/// batch of millions of items goes in several rounds, each well within
/// [`REQUEST_TIMEOUT`](super::REQUEST_TIMEOUT).
fn round_by_master<'t>(
    topology: &'t Topology,
    pending: &[Call],
) -> Result<Vec<(&'t ClusterNode, Vec<Call>)>, ScaleoutError> {
    let mut partitions: Vec<usize> = pending.iter().map(|&(p, _)| p).collect();
    partitions.dedup(); // pending is in partition order
    let groups = group_by_master(topology, &partitions)?;
    Ok(groups
        .into_iter()
        .map(|(node, parts)| {
            let calls = pending.iter().filter(|(p, _)| parts.contains(p));
            (node, calls.take(MAX_CALLS_PER_REQUEST).copied().collect())
        })
        .collect())
}

fn no_master(partitions: &[usize], reason: String) -> ScaleoutError {
    let list: Vec<String> = partitions.iter().map(|p| p.to_string()).collect();
    ScaleoutError::NoMaster {
        keys: format!("partition(s) {}", list.join(", ")),
        reason,
    }
}

/// `WAIT <replicas> <timeout ms>`: answers how many replicas have every write
/// this connection made so far.
fn wait() -> Cmd {
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(WAIT_REPLICAS).arg(WAIT_TIMEOUT.as_millis() as u64);
    cmd
}

fn check_wait(node: &str, what: &'static str, reply: Option<&Value>) -> Result<(), ScaleoutError> {
    let acked: i64 = parse(node, "WAIT", reply.unwrap_or(&Value::Nil))?;
    if acked < i64::from(WAIT_REPLICAS) {
        return Err(ScaleoutError::NotReplicated {
            node: node.to_string(),
            action: what,
        });
    }
    Ok(())
}

fn first(replies: &[Value]) -> &Value {
    replies.first().unwrap_or(&Value::Nil)
}

fn parse<T: FromRedisValue>(
    node: &str,
    action: &'static str,
    value: &Value,
) -> Result<T, ScaleoutError> {
    redis::from_redis_value_ref(value)
        .map_err(|e| ScaleoutError::protocol(node, action, format!("{e} (got {value:?})")))
}
