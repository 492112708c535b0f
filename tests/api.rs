//! Every route, status code and body shape of SPEC.md, against the real binary.

mod common;

use common::{Server, items};
use serde_json::json;

#[test]
fn readme_example_works() {
    let server = Server::start(&[]);
    let reply = server.call(
        "POST",
        "/items",
        r#"[{"ID":1,"tenant":"hello"},{"ID":2,"tenant":"publicsonar"}]"#,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert_eq!(reply.json(), json!({"status":"OK","accepted":2}));
    let reply = server.call("GET", "/items/hello/count", "");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert_eq!(reply.json(), json!({"tenant":"hello","counter":1}));
}

#[test]
fn empty_batch_and_unknown_tenant() {
    let server = Server::start(&[]);
    assert_eq!(
        server.call("POST", "/items", "[]").json(),
        json!({"status":"OK","accepted":0})
    );
    assert_eq!(
        server.call("GET", "/items/nobody/count", "").json(),
        json!({"tenant":"nobody","counter":0})
    );
}

#[test]
fn health_names_the_master() {
    let server = Server::start(&[]);
    let reply = server.call("GET", "/health", "");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"status":"OK","master":0}));
}

#[test]
fn nodes_show_the_even_split_in_id_order() {
    let server = Server::start(&[]);
    let batch = items((0..11).map(|id| (id, "t")));
    assert_eq!(server.post_items(&batch).status, 200);
    let nodes = server.nodes();
    assert_eq!(nodes.len(), 4);
    let received: Vec<u64> = nodes
        .iter()
        .map(|n| n["received"].as_u64().unwrap())
        .collect();
    assert_eq!(received, vec![3, 3, 3, 2]);
    for (index, node) in nodes.iter().enumerate() {
        assert_eq!(node["id"], index);
        assert_eq!(node["role"], if index == 0 { "master" } else { "replica" });
        assert_eq!(node["alive"], true);
        assert_eq!(node["addr"], server.node_addrs[index].to_string());
        let keys: Vec<&str> = node
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 6, "{node}");
    }
    // Every node ends up holding every item (replication is in the background).
    common::wait_until("every node holds 11 items", || {
        server.nodes().iter().all(|n| n["items"] == 11)
    });
}

/// Replicas apply in the background, in passes that linger between them
/// under small writes; `/nodes` still shows on every node each item
/// acknowledged before it was asked, with no waiting on the client's side.
#[test]
fn nodes_show_every_acknowledged_item_on_every_node_at_once() {
    let server = Server::start(&[]);
    let mut client = server.client();
    for round in 0..20 {
        let batch = items((0..5).map(|i| (round * 5 + i, "t")));
        let reply = client.call("POST", "/items", &batch.to_string());
        assert_eq!(reply.status, 200);
        let nodes = client.call("GET", "/nodes", "").json();
        let expected = (round + 1) * 5;
        for node in nodes.as_array().unwrap() {
            assert_eq!(node["items"], expected, "after round {round}: {nodes}");
        }
    }
}

/// Issue #11: the node that takes a batch's first chunk takes turns, so
/// single-item POSTs from concurrent clients spread evenly over the nodes.
#[test]
fn single_item_posts_from_concurrent_clients_spread_evenly_over_the_nodes() {
    const CLIENTS: i64 = 8;
    const POSTS_EACH: i64 = 100;
    let server = Server::start(&[]);
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let server = &server;
            scope.spawn(move || {
                for n in 0..POSTS_EACH {
                    let id = client * POSTS_EACH + n;
                    assert_eq!(server.post_items(&items([(id, "spread")])).status, 200);
                }
            });
        }
    });
    let received: Vec<u64> = server
        .nodes()
        .iter()
        .map(|n| n["received"].as_u64().unwrap())
        .collect();
    let total = (CLIENTS * POSTS_EACH) as u64;
    assert_eq!(received.iter().sum::<u64>(), total);
    let mean = total as f64 / received.len() as f64;
    for (node, &got) in received.iter().enumerate() {
        assert!(
            (got as f64 - mean).abs() <= mean * 0.10,
            "node {node} took {got} of {total} single-item POSTs: {received:?}"
        );
    }
    assert_eq!(server.count("spread"), total);
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let server = Server::start(&[]);
    for path in ["/nope", "/items/a", "/items/a/count/x", "/nodes/0/crash"] {
        server.call("GET", path, "").assert_ko(404, &[]);
    }
    server
        .call("POST", "/nodes/0/crash", "")
        .assert_ko(404, &[]);
    for (method, path, allow) in [
        ("GET", "/items", "POST"),
        ("DELETE", "/items", "POST"),
        ("POST", "/items/a/count", "GET"),
        ("PUT", "/health", "GET"),
        ("POST", "/nodes", "GET"),
        ("POST", "/metrics", "GET"),
        ("POST", "/", "GET"),
    ] {
        let reply = server.call(method, path, "");
        reply.assert_ko(405, &[allow]);
        assert_eq!(reply.header("Allow"), Some(allow), "{method} {path}");
    }
}

#[test]
fn invalid_items_name_index_and_field_and_store_nothing() {
    let server = Server::start(&[]);
    let cases: &[(&str, &[&str])] = &[
        (
            r#"[{"ID":1,"tenant":"v"},{"ID":"2","tenant":"v"}]"#,
            &["item 1", "ID"],
        ),
        (
            r#"[{"ID":1,"tenant":"v"},{"ID":1.5,"tenant":"v"}]"#,
            &["item 1", "ID"],
        ),
        (
            r#"[{"ID":1,"tenant":"v"},{"ID":1e3,"tenant":"v"}]"#,
            &["item 1", "ID"],
        ),
        (
            r#"[{"ID":9223372036854775808,"tenant":"v"}]"#,
            &["item 0", "ID"],
        ),
        (
            r#"[{"ID":1,"tenant":"v"},{"tenant":"v"}]"#,
            &["item 1", "ID", "missing"],
        ),
        (
            r#"[{"ID":1,"tenant":"v"},{"ID":2,"tenant":""}]"#,
            &["item 1", "tenant", "empty"],
        ),
        (
            r#"[{"ID":1,"tenant":"v"},{"ID":2,"tenant":5}]"#,
            &["item 1", "tenant"],
        ),
        (
            r#"[{"ID":1,"tenant":"v"},{"ID":2}]"#,
            &["item 1", "tenant", "missing"],
        ),
        (r#"[{"ID":1,"tenant":"v"},7]"#, &["item 1"]),
        (r#"{"ID":1,"tenant":"v"}"#, &["array"]),
        (r#"[{"ID":1,"tenant":"v"}] trailing"#, &["array"]),
        ("not json", &["array"]),
        ("", &["array"]),
    ];
    for (body, words) in cases {
        server.call("POST", "/items", body).assert_ko(400, words);
    }
    let long = "x".repeat(1025);
    let reply = server.post_items(&items([(1, "v"), (2, long.as_str())]));
    reply.assert_ko(400, &["item 1", "tenant", "1024"]);
    assert_eq!(server.count("v"), 0, "nothing of a refused batch is stored");
    assert!(server.nodes().iter().all(|n| n["items"] == 0));
}

#[test]
fn id_keys_are_case_insensitive_and_extra_keys_ignored() {
    let server = Server::start(&[]);
    let body =
        r#"[{"ID":1,"tenant":"c"},{"id":2,"Tenant":"c"},{"Id":3,"TENANT":"c","other":{"x":[1]}}]"#;
    assert_eq!(server.call("POST", "/items", body).json()["accepted"], 3);
    assert_eq!(server.count("c"), 3);
    let longest = "y".repeat(1024);
    assert_eq!(
        server.post_items(&items([(4, longest.as_str())])).status,
        200
    );
    assert_eq!(server.count(&longest), 1);
}

#[test]
fn i64_extremes_are_distinct_ids() {
    let server = Server::start(&[]);
    let reply = server.call(
        "POST",
        "/items",
        r#"[{"ID":-9223372036854775808,"tenant":"e"},{"ID":9223372036854775807,"tenant":"e"},{"ID":0,"tenant":"e"}]"#,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(server.count("e"), 3);
}

#[test]
fn bodies_over_the_limit_get_413_and_store_nothing() {
    let server = Server::start(&["--max-body-bytes", "100"]);
    let small = items([(1, "s")]).to_string();
    assert_eq!(server.call("POST", "/items", &small).status, 200);
    let big = items((0..20).map(|id| (id, "big"))).to_string();
    assert!(big.len() > 100);
    server.call("POST", "/items", &big).assert_ko(413, &["100"]);
    assert_eq!(server.count("big"), 0);

    // A chunked body gives no length up front; it is cut off at the limit.
    let mut client = server.client();
    client.send_raw(
        format!(
            "POST /items HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    );
    client.read_reply().assert_ko(413, &["100"]);
    assert_eq!(server.count("big"), 0);
}

#[test]
fn a_declared_huge_body_is_refused_without_reading_it() {
    let server = Server::start(&[]);
    for length in ["18446744073709551615", "1125899906842624"] {
        let mut client = server.client();
        client.send_raw(
            format!("POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n[")
                .as_bytes(),
        );
        client.read_reply().assert_ko(413, &["limit"]);
    }
    // The workers survived.
    assert_eq!(server.call("GET", "/health", "").status, 200);
}

#[test]
fn last_writer_wins_within_and_across_batches() {
    let server = Server::start(&[]);
    let first = items([(1, "a"), (2, "a"), (1, "b"), (3, "a"), (3, "c"), (1, "a")]);
    assert_eq!(server.post_items(&first).status, 200);
    assert_eq!(
        (server.count("a"), server.count("b"), server.count("c")),
        (2, 0, 1)
    );
    assert_eq!(server.post_items(&items([(2, "b"), (3, "b")])).status, 200);
    assert_eq!(
        (server.count("a"), server.count("b"), server.count("c")),
        (1, 2, 0)
    );
}

#[test]
fn percent_encoded_and_non_ascii_tenants() {
    let server = Server::start(&[]);
    let batch = items([(1, "a b/c"), (2, "a b/c"), (3, "日本"), (4, "100%")]);
    assert_eq!(server.post_items(&batch).status, 200);
    let reply = server.call("GET", "/items/a%20b%2Fc/count", "");
    assert_eq!(reply.json(), json!({"tenant":"a b/c","counter":2}));
    let reply = server.call("GET", "/items/%E6%97%A5%E6%9C%AC/count", "");
    assert_eq!(reply.json(), json!({"tenant":"日本","counter":1}));
    assert_eq!(server.count("100%25"), 1);
    server
        .call("GET", "/items/bad%zz/count", "")
        .assert_ko(400, &["tenant"]);
    server
        .call("GET", "/items/%FF/count", "")
        .assert_ko(400, &["UTF-8"]);
}

#[test]
fn metrics_are_prometheus_text() {
    let server = Server::start(&[]);
    assert_eq!(server.post_items(&items([(1, "m"), (2, "m")])).status, 200);
    server.call("GET", "/nope", "");
    let reply = server.call("GET", "/metrics", "");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; version=0.0.4")
    );
    let text = reply.text();
    for line in [
        "dc_http_requests_total{route=\"/items\",status=\"200\"} 1",
        "dc_http_requests_total{route=\"other\",status=\"404\"} 1",
        "dc_items_accepted_total 2",
        "dc_node_master{node=\"0\"} 1",
        "dc_node_alive{node=\"3\"} 1",
        "# TYPE dc_node_replication_lag_items gauge",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}
