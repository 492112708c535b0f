//! Counters for `GET /metrics`, written in the Prometheus text format by hand.

use crate::backend::{Backend, NodeStatus};
use crate::cluster::{MasterChanges, Role};
use crate::wal::WalStats;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use tiny_http::StatsSnapshot;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// A per-node series: name, type, help text, and how to read it off a node.
type NodeSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&NodeStatus) -> u64,
);

/// A series of `dc_http_requests_total`: route pattern and status.
type RequestKey = (&'static str, u16);

#[derive(Default)]
pub struct Metrics {
    /// Every request records here: once a series exists, recording takes a
    /// shared lock and an atomic add, so connection threads never wait for
    /// each other.
    requests: RwLock<Vec<(RequestKey, AtomicU64)>>,
    items_accepted: AtomicU64,
}

impl Metrics {
    /// Counts one answered request; `route` is a route pattern, never a raw
    /// path, so the number of series stays fixed.
    pub fn record_request(&self, route: &'static str, status: u16) {
        let key = (route, status);
        let count_in = |series: &[(RequestKey, AtomicU64)]| {
            series
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, count)| count.fetch_add(1, Ordering::Relaxed))
                .is_some()
        };
        if count_in(&self.requests.read()) {
            return;
        }
        let mut series = self.requests.write();
        if !count_in(&series) {
            series.push((key, AtomicU64::new(1)));
        }
    }

    /// Answered requests by route and status, in order.
    fn request_counts(&self) -> BTreeMap<RequestKey, u64> {
        self.requests
            .read()
            .iter()
            .map(|(key, count)| (*key, count.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn record_accepted(&self, items: usize) {
        self.items_accepted
            .fetch_add(items as u64, Ordering::Relaxed);
    }

    /// The whole `/metrics` text: requests, connections, nodes, and what
    /// the backend adds.
    pub fn render(&self, http: Option<StatsSnapshot>, backend: &dyn Backend) -> String {
        let nodes = backend.nodes();
        let mut out = String::new();
        out.push_str(
            "# HELP dc_http_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE dc_http_requests_total counter\n");
        for ((route, status), count) in self.request_counts() {
            let _ = writeln!(
                out,
                "dc_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP dc_items_accepted_total Items in POST /items batches answered 200.\n");
        out.push_str("# TYPE dc_items_accepted_total counter\n");
        let accepted = self.items_accepted.load(Ordering::Relaxed);
        let _ = writeln!(out, "dc_items_accepted_total {accepted}");
        let gauges: [NodeSeries; 6] = [
            ("dc_node_alive", "gauge", "1 if the node is alive.", |n| {
                u64::from(n.alive)
            }),
            (
                "dc_node_master",
                "gauge",
                "1 if the node is the master.",
                |n| u64::from(n.role == Role::Master),
            ),
            (
                "dc_node_stalled",
                "gauge",
                "1 while the node is stalled by fault injection.",
                |n| u64::from(n.stalled),
            ),
            (
                "dc_node_items",
                "gauge",
                "Distinct IDs the node holds.",
                |n| n.items,
            ),
            (
                "dc_node_replication_lag_items",
                "gauge",
                "Versions (items) committed in the replication log that the node has not applied yet.",
                |n| n.lag,
            ),
            (
                "dc_node_received_items_total",
                "counter",
                "Items the node acknowledged directly from the coordinator.",
                |n| n.received,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for node in &nodes {
                let _ = writeln!(out, "{name}{{node=\"{}\"}} {}", node.id, value(node));
            }
        }
        if let Some(http) = &http {
            render_connections(&mut out, http);
        }
        backend.render_metrics(&mut out);
        out
    }
}

/// What the in-process cluster reports besides the node series.
pub struct ClusterState<'a> {
    pub nodes: Vec<NodeStatus>,
    pub master_changes: MasterChanges,
    pub log_retained_bytes: usize,
    pub tenants: usize,
    pub wal: Option<&'a WalStats>,
}

/// Writes one metric family: help, type, then its samples (labels, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// A metric family: name, type, help, samples (labels, value).
type Family<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, u64)>);

/// Client connections: how many, what became of them, and each deadline.
fn render_connections(out: &mut String, http: &StatsSnapshot) {
    let one = |value| vec![("", value)];
    let families: [Family<'_>; 9] = [
        (
            "dc_http_connections_open",
            "gauge",
            "Client connections open now.",
            one(http.open),
        ),
        (
            "dc_http_connections_busy",
            "gauge",
            "Client connections with a request in progress now.",
            one(http.busy),
        ),
        (
            "dc_http_connections_accepted_total",
            "counter",
            "Client connections accepted (admitted or not).",
            one(http.accepted),
        ),
        (
            "dc_http_connections_refused_total",
            "counter",
            "Connections answered 503 and closed: every connection busy, the address's share taken, or no thread to serve it.",
            vec![
                ("{reason=\"full\"}", http.refused_full),
                ("{reason=\"per_ip\"}", http.refused_per_ip),
                ("{reason=\"no_thread\"}", http.refused_spawn),
            ],
        ),
        (
            "dc_http_connections_evicted_total",
            "counter",
            "Idle connections closed to admit a new one at the limit.",
            one(http.evicted_idle),
        ),
        (
            "dc_http_deadlines_total",
            "counter",
            "Requests or connections cut by a deadline: header and body (408), idle (closed), write (closed).",
            vec![
                ("{kind=\"header\"}", http.header_timeouts),
                ("{kind=\"body\"}", http.body_timeouts),
                ("{kind=\"idle\"}", http.idle_closes),
                ("{kind=\"write\"}", http.write_timeouts),
            ],
        ),
        (
            "dc_http_body_bytes_in_flight",
            "gauge",
            "Request body bytes held in memory now, all requests together (at most --max-body-bytes-in-flight).",
            one(http.body_bytes_in_flight),
        ),
        (
            "dc_http_body_budget_refused_total",
            "counter",
            "Requests answered 503 because the bytes of bodies in flight were at their limit.",
            one(http.refused_budget),
        ),
        (
            "dc_http_write_failures_total",
            "counter",
            "Answers that could not be written (the client was gone).",
            one(http.write_failures),
        ),
    ];
    for (name, kind, help, samples) in families {
        family(out, name, kind, help, &samples);
    }
    let errors: Vec<(String, u64)> = http
        .error_responses
        .iter()
        .map(|(status, count)| (format!("{{status=\"{status}\"}}"), *count))
        .collect();
    let samples: Vec<(&str, u64)> = errors.iter().map(|(l, c)| (l.as_str(), *c)).collect();
    family(
        out,
        "dc_http_errors_total",
        "counter",
        "Answers the HTTP layer wrote itself, before any route (bad framing, deadlines, limits), by status.",
        &samples,
    );
}

/// The in-process cluster's series: master changes, the replication log,
/// tenants, and the WAL in durable mode.
pub fn render_cluster(out: &mut String, service: &ClusterState<'_>) {
    let last_change = service
        .master_changes
        .last
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |since| since.as_secs_f64());
    let series: [(&str, &str, &str, String); 4] = [
        (
            "dc_master_changes_total",
            "counter",
            "Times the master changed since start.",
            service.master_changes.count.to_string(),
        ),
        (
            "dc_master_last_change_timestamp_seconds",
            "gauge",
            "Unix time of the last master change (0: none since start).",
            last_change.to_string(),
        ),
        (
            "dc_replication_log_bytes",
            "gauge",
            "Bytes of committed batches kept for nodes that have not applied them.",
            service.log_retained_bytes.to_string(),
        ),
        (
            "dc_tenants",
            "gauge",
            "Tenant names known (names with no items are forgotten).",
            service.tenants.to_string(),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    if let Some(wal) = service.wal {
        render_wal(out, wal);
    }
}

fn render_wal(out: &mut String, wal: &WalStats) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let seconds = |nanos: u64| nanos as f64 / 1e9;
    // A summary without quantiles: its _sum and _count under one TYPE.
    let _ = writeln!(
        out,
        "# HELP dc_wal_fsync_seconds Time spent in fsync of the log (one fsync per group of POSTs).\n\
         # TYPE dc_wal_fsync_seconds summary\n\
         dc_wal_fsync_seconds_sum {}\n\
         dc_wal_fsync_seconds_count {}",
        seconds(load(&wal.fsync_nanos)),
        load(&wal.fsyncs)
    );
    let series: [(&str, &str, &str, String); 7] = [
        (
            "dc_wal_fsync_max_seconds",
            "gauge",
            "Longest fsync of the log since start.",
            seconds(load(&wal.fsync_max_nanos)).to_string(),
        ),
        (
            "dc_wal_healthy",
            "gauge",
            "1 if the last write of the log succeeded, 0 while it cannot be written (POSTs get 503).",
            u64::from(wal.is_healthy()).to_string(),
        ),
        (
            "dc_wal_write_errors_total",
            "counter",
            "Groups of POSTs whose log write or sync failed (each POST of the group got 503).",
            load(&wal.write_errors).to_string(),
        ),
        (
            "dc_wal_log_bytes",
            "gauge",
            "Bytes of log not yet folded into the snapshot.",
            load(&wal.log_bytes).to_string(),
        ),
        (
            "dc_wal_snapshot_bytes",
            "gauge",
            "Bytes of the latest snapshot.",
            load(&wal.snapshot_bytes).to_string(),
        ),
        (
            "dc_wal_compactions_total",
            "counter",
            "Snapshots written by compaction.",
            load(&wal.compactions).to_string(),
        ),
        (
            "dc_wal_compaction_errors_total",
            "counter",
            "Compactions that failed (the log keeps growing until one succeeds).",
            load(&wal.compaction_errors).to_string(),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn requests_recorded_at_once_from_many_threads_are_all_counted() {
        let metrics = Metrics::default();
        let statuses = [200, 400, 503];
        thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..3000 {
                        metrics.record_request("/items", statuses[i % 3]);
                    }
                });
            }
        });
        metrics.record_request("/health", 200);
        let counts: Vec<_> = metrics.request_counts().into_iter().collect();
        assert_eq!(
            counts,
            vec![
                (("/health", 200), 1),
                (("/items", 200), 4000),
                (("/items", 400), 4000),
                (("/items", 503), 4000),
            ]
        );
    }
}
