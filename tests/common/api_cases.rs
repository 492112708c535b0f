//! API cases that hold whatever stores the items: run against the
//! in-process nodes (`tests/modes.rs`) and against a Redis Cluster
//! (`tests/scaleout_http.rs`) with the same code. A server may be shared
//! with other cases (one Redis Cluster for many), so every case works in
//! its own namespace of tenants and IDs.

use super::{Server, items};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tenants and IDs of one case, apart from every other case's.
pub struct Ns {
    tag: String,
    base: i64,
}

impl Ns {
    pub fn new(case: &str) -> Ns {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let unique = (std::process::id() as u64) << 20 | n;
        Ns {
            tag: format!("{case}-{unique}"),
            base: (unique as i64 % 1_000_000) << 32,
        }
    }

    /// A tenant of this case.
    pub fn t(&self, name: &str) -> String {
        format!("{name}.{}", self.tag)
    }

    /// An ID of this case.
    pub fn id(&self, n: i64) -> i64 {
        self.base + n
    }
}

/// One case: it checks what it checks against a running server.
pub type Case = fn(&Server);

/// Every case, by name.
pub const CASES: [(&str, Case); 9] = [
    ("post_then_count", post_then_count),
    (
        "empty_batch_and_unknown_tenant",
        empty_batch_and_unknown_tenant,
    ),
    ("invalid_items_store_nothing", invalid_items_store_nothing),
    ("keys_are_case_insensitive", keys_are_case_insensitive),
    ("last_writer_wins", last_writer_wins),
    ("percent_encoded_tenants", percent_encoded_tenants),
    ("health_and_nodes", health_and_nodes),
    ("routes_and_methods", routes_and_methods),
    (
        "read_your_writes_on_and_off_the_connection",
        read_your_writes,
    ),
];

pub fn post_then_count(server: &Server) {
    let ns = Ns::new("readme");
    let (hello, sonar) = (ns.t("hello"), ns.t("publicsonar"));
    let reply = server.post_items(&items([
        (ns.id(1), hello.as_str()),
        (ns.id(2), sonar.as_str()),
    ]));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert_eq!(reply.json(), json!({"status":"OK","accepted":2}));
    let reply = server.call("GET", &format!("/items/{hello}/count"), "");
    assert_eq!(reply.json(), json!({"tenant": hello, "counter": 1}));
}

pub fn empty_batch_and_unknown_tenant(server: &Server) {
    let ns = Ns::new("empty");
    assert_eq!(
        server.call("POST", "/items", "[]").json(),
        json!({"status":"OK","accepted":0})
    );
    let nobody = ns.t("nobody");
    assert_eq!(
        server
            .call("GET", &format!("/items/{nobody}/count"), "")
            .json(),
        json!({"tenant": nobody, "counter": 0})
    );
}

pub fn invalid_items_store_nothing(server: &Server) {
    let ns = Ns::new("invalid");
    let v = ns.t("v");
    let body = format!(
        r#"[{{"ID":{},"tenant":"{v}"}},{{"ID":"2","tenant":"{v}"}}]"#,
        ns.id(1)
    );
    server
        .call("POST", "/items", &body)
        .assert_ko(400, &["item 1", "ID"]);
    let long = "x".repeat(1025);
    server
        .post_items(&items([(ns.id(1), v.as_str()), (ns.id(2), long.as_str())]))
        .assert_ko(400, &["item 1", "tenant", "1024"]);
    server
        .call("POST", "/items", "not json")
        .assert_ko(400, &["array"]);
    assert_eq!(server.count(&v), 0, "nothing of a refused batch is stored");
}

pub fn keys_are_case_insensitive(server: &Server) {
    let ns = Ns::new("keys");
    let c = ns.t("c");
    let body = format!(
        r#"[{{"ID":{},"tenant":"{c}"}},{{"id":{},"Tenant":"{c}"}},{{"Id":{},"TENANT":"{c}","x":[1]}}]"#,
        ns.id(1),
        ns.id(2),
        ns.id(3)
    );
    assert_eq!(server.call("POST", "/items", &body).json()["accepted"], 3);
    assert_eq!(server.count(&c), 3);
}

pub fn last_writer_wins(server: &Server) {
    let ns = Ns::new("lww");
    let (a, b, c) = (ns.t("a"), ns.t("b"), ns.t("c"));
    let first = items([
        (ns.id(1), a.as_str()),
        (ns.id(2), a.as_str()),
        (ns.id(1), b.as_str()),
        (ns.id(3), a.as_str()),
        (ns.id(3), c.as_str()),
        (ns.id(1), a.as_str()),
    ]);
    assert_eq!(server.post_items(&first).status, 200);
    assert_eq!(
        (server.count(&a), server.count(&b), server.count(&c)),
        (2, 0, 1)
    );
    let second = items([(ns.id(2), b.as_str()), (ns.id(3), b.as_str())]);
    assert_eq!(server.post_items(&second).status, 200);
    assert_eq!(
        (server.count(&a), server.count(&b), server.count(&c)),
        (1, 2, 0)
    );
}

pub fn percent_encoded_tenants(server: &Server) {
    let ns = Ns::new("pct");
    let spaced = ns.t("a b/c");
    let batch = items([(ns.id(1), spaced.as_str()), (ns.id(2), spaced.as_str())]);
    assert_eq!(server.post_items(&batch).status, 200);
    let path = format!(
        "/items/{}/count",
        spaced.replace(' ', "%20").replace('/', "%2F")
    );
    assert_eq!(server.call("GET", &path, "").json()["counter"], 2);
    server
        .call("GET", "/items/bad%zz/count", "")
        .assert_ko(400, &["tenant"]);
}

pub fn health_and_nodes(server: &Server) {
    let reply = server.call("GET", "/health", "");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], "OK");
    assert!(reply.json()["master"].is_u64());
    let nodes = server.nodes();
    assert!(!nodes.is_empty());
    assert!(nodes.iter().any(|n| n["role"] == "master"));
    for node in &nodes {
        let keys: Vec<&str> = node
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys.len(), 6, "{node}");
    }
    let metrics = server.call("GET", "/metrics", "");
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("dc_http_requests_total"));
}

pub fn routes_and_methods(server: &Server) {
    server.call("GET", "/nope", "").assert_ko(404, &[]);
    for (method, path, allow) in [
        ("GET", "/items", "POST"),
        ("POST", "/items/a/count", "GET"),
        ("PUT", "/health", "GET"),
    ] {
        let reply = server.call(method, path, "");
        reply.assert_ko(405, &[allow]);
        assert_eq!(reply.header("Allow"), Some(allow));
    }
    // Without --fault-injection the fault endpoints do not exist.
    server
        .call("POST", "/nodes/0/crash", "")
        .assert_ko(404, &[]);
}

pub fn read_your_writes(server: &Server) {
    let ns = Ns::new("ryw");
    let mine = ns.t("mine");
    let mut client = server.client();
    for round in 0..30 {
        let batch = items((0..5).map(|i| (ns.id(round * 5 + i), mine.as_str())));
        assert_eq!(
            client.call("POST", "/items", &batch.to_string()).status,
            200
        );
        let path = format!("/items/{mine}/count");
        assert_eq!(
            client.call("GET", &path, "").json()["counter"],
            (round + 1) * 5
        );
        assert_eq!(server.count(&mine), (round as u64 + 1) * 5);
    }
}
