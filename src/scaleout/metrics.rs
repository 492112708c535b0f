//! Counters of one instance's traffic to Redis, rendered as Prometheus text.

use super::topology::{ClusterNode, Topology};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// What an operation was, to label errors by.
#[derive(Clone, Copy)]
pub enum Op {
    Write,
    Count,
    Topology,
}

impl Op {
    const ALL: [Op; 3] = [Op::Write, Op::Count, Op::Topology];

    fn label(self) -> &'static str {
        match self {
            Op::Write => "write",
            Op::Count => "count",
            Op::Topology => "topology",
        }
    }
}

#[derive(Default)]
pub struct StoreMetrics {
    round_trips: AtomicU64,
    errors: [AtomicU64; 3],
    wait_failures: AtomicU64,
    retries: AtomicU64,
    items_written: AtomicU64,
    /// Items acknowledged by each master (by node name) through this instance.
    received: Mutex<HashMap<String, u64>>,
}

impl StoreMetrics {
    /// Counts the requests of one exchange (one per node).
    pub fn round_trips(&self, requests: usize) {
        self.round_trips
            .fetch_add(requests as u64, Ordering::Relaxed);
    }

    pub fn error(&self, op: Op) {
        self.errors[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn wait_failure(&self) {
        self.wait_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn written(&self, items: usize) {
        self.items_written
            .fetch_add(items as u64, Ordering::Relaxed);
    }

    pub fn received_by(&self, node_name: &str, items: usize) {
        *self
            .received
            .lock()
            .entry(node_name.to_string())
            .or_insert(0) += items as u64;
    }

    pub fn received(&self, node_name: &str) -> u64 {
        self.received.lock().get(node_name).copied().unwrap_or(0)
    }

    pub fn render(&self, topology: &Topology, out: &mut String) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let totals: [(&str, &str, u64); 4] = [
            (
                "dc_redis_round_trips_total",
                "Requests sent to Redis nodes (one pipeline to one node each).",
                load(&self.round_trips),
            ),
            (
                "dc_redis_wait_failures_total",
                "Writes a master ran but no replica confirmed within the WAIT timeout.",
                load(&self.wait_failures),
            ),
            (
                "dc_redis_retries_total",
                "Attempts repeated after a transient failure (moved slots, broken connections).",
                load(&self.retries),
            ),
            (
                "dc_redis_items_written_total",
                "Items of acknowledged batches written through this instance.",
                load(&self.items_written),
            ),
        ];
        for (name, help, value) in totals {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        self.render_errors(out);
        render_nodes(topology, out);
    }

    fn render_errors(&self, out: &mut String) {
        out.push_str("# HELP dc_redis_errors_total Failed Redis operations, by operation.\n");
        out.push_str("# TYPE dc_redis_errors_total counter\n");
        for op in Op::ALL {
            let value = self.errors[op as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "dc_redis_errors_total{{op=\"{}\"}} {value}",
                op.label()
            );
        }
    }
}

/// A per-node gauge: name, help text, and how to read it off a node.
type NodeSeries = (&'static str, &'static str, fn(&ClusterNode) -> bool);

fn render_nodes(topology: &Topology, out: &mut String) {
    let series: [NodeSeries; 2] = [
        (
            "dc_redis_node_up",
            "1 if the cluster sees the Redis node as healthy.",
            |node| node.healthy,
        ),
        (
            "dc_redis_node_master",
            "1 if the Redis node is a master, 0 if a replica.",
            |node| node.master,
        ),
    ];
    for (name, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (id, node) in topology.nodes.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{node=\"{id}\",addr=\"{}\"}} {}",
                node.addr(),
                u8::from(value(node))
            );
        }
    }
}
