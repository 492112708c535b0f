//! docs/openapi.yaml stays true to the server: every route the real binary
//! answers is in the document and every documented operation is answered;
//! the statuses, content types and JSON bodies of representative good and
//! bad requests are the documented ones; `/openapi.yaml` serves the file
//! byte for byte.
//!
//! The document is written in JSON syntax (which is YAML too), so it is read
//! here with serde_json. Response bodies are checked with a small validator
//! of the JSON Schema subset the document uses (see [`validate`]).

mod common;

use common::{Reply, Server, read_reply_from};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::net::TcpStream;

const DOCUMENT: &str = include_str!("../docs/openapi.yaml");
const ROUTES_RS: &str = include_str!("../src/http/routes.rs");

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

fn document() -> Value {
    serde_json::from_str(DOCUMENT)
        .unwrap_or_else(|e| panic!("docs/openapi.yaml must be JSON syntax (which is YAML): {e}"))
}

fn paths(doc: &Value) -> &Map<String, Value> {
    doc["paths"].as_object().expect("paths is an object")
}

/// Follows a `$ref` (only local ones, `#/...`); other values as they are.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local $ref are used: {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} resolves to nothing"));
            resolve(doc, target)
        }
        None => value,
    }
}

/// The documented path template that `path` (no query) falls under.
fn template_of<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    let segments: Vec<&str> = path.split('/').collect();
    paths(doc).keys().map(String::as_str).find(|template| {
        let parts: Vec<&str> = template.split('/').collect();
        parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(part, segment)| {
                (part.starts_with('{') && part.ends_with('}')) || part == segment
            })
    })
}

/// The methods documented for a path template, upper case.
fn documented_methods(doc: &Value, template: &str) -> BTreeSet<String> {
    paths(doc)[template]
        .as_object()
        .expect("a path item is an object")
        .keys()
        .filter(|key| METHODS.contains(&key.to_uppercase().as_str()))
        .map(|key| key.to_uppercase())
        .collect()
}

/// Checks one answer against the document: the path and method are
/// documented (or the answer is the documented 404 / 405), the status is
/// documented for the operation, and the content type and body match.
/// Returns the path template, if any.
fn check(doc: &Value, method: &str, target: &str, reply: &Reply) -> Option<String> {
    let path = target.split('?').next().unwrap_or(target);
    let what = format!("{method} {target} -> {}: {}", reply.status, reply.text());
    let head = method == "HEAD";
    let Some(template) = template_of(doc, path) else {
        assert_eq!(reply.status, 404, "{what}: the document has no such path");
        check_ko(doc, "#/components/responses/NotFound", reply, head, &what);
        return None;
    };
    let methods = documented_methods(doc, template);
    // Fault paths are 404 without --fault-injection.
    let may_be_absent = template.starts_with("/nodes/{id}/");
    if !methods.contains(method) {
        assert!(
            reply.status == 405 || (reply.status == 404 && may_be_absent),
            "{what}: {method} is not documented for {template} ({methods:?}), so 405"
        );
        if reply.status == 405 {
            let allow: BTreeSet<String> = reply
                .header("Allow")
                .unwrap_or_else(|| panic!("{what}: 405 without Allow"))
                .split(',')
                .map(|m| m.trim().to_string())
                .collect();
            let expected: BTreeSet<String> =
                methods.iter().filter(|m| *m != "HEAD").cloned().collect();
            assert!(
                allow.is_subset(&methods) && expected.is_subset(&allow),
                "{what}: Allow {allow:?} does not match the documented {methods:?}"
            );
            check_ko(
                doc,
                "#/components/responses/MethodNotAllowed",
                reply,
                head,
                &what,
            );
        } else {
            check_ko(doc, "#/components/responses/NotFound", reply, head, &what);
        }
        return Some(template.to_string());
    }
    let operation = &paths(doc)[template][method.to_lowercase()];
    let response = operation["responses"]
        .get(reply.status.to_string())
        .map(|response| resolve(doc, response))
        .unwrap_or_else(|| {
            panic!(
                "{what}: status {} is not documented for {method} {template}",
                reply.status
            )
        });
    check_content(doc, response, reply, head, &what);
    Some(template.to_string())
}

/// A KO answer shaped as the component response `reference` says.
fn check_ko(doc: &Value, reference: &str, reply: &Reply, head: bool, what: &str) {
    let response = doc
        .pointer(reference.trim_start_matches('#'))
        .unwrap_or_else(|| panic!("{reference} is in the document"));
    check_content(doc, response, reply, head, what);
}

/// The content type is a documented one and a JSON body fits its schema;
/// HEAD answers carry no body.
fn check_content(doc: &Value, response: &Value, reply: &Reply, head: bool, what: &str) {
    if head {
        assert!(reply.body.is_empty(), "{what}: HEAD answered with a body");
        return;
    }
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        assert!(
            reply.body.is_empty(),
            "{what}: a body where none is documented"
        );
        return;
    };
    let content_type = reply.header("Content-Type").unwrap_or("");
    let media = content.get(content_type).unwrap_or_else(|| {
        panic!(
            "{what}: Content-Type {content_type:?} is not documented ({:?})",
            content.keys().collect::<Vec<_>>()
        )
    });
    if content_type == "application/json" {
        let body: Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|e| panic!("{what}: the body is not JSON: {e}"));
        if let Err(why) = validate(doc, &media["schema"], &body, "body") {
            panic!("{what}: {why}");
        }
    }
}

/// Checks `value` against `schema`, for the keywords the document uses:
/// `$ref`, `type`, `nullable`, `enum`, `required`, `properties`,
/// `additionalProperties` (a boolean), `items`, `minimum`, `maximum`,
/// `minLength`, `maxLength`. An unknown keyword fails, so the validator
/// cannot silently fall behind the document.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    let schema = schema
        .as_object()
        .ok_or(format!("{at}: schema is not an object"))?;
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    for (keyword, expected) in schema {
        let ok =
            match keyword.as_str() {
                "type" => match expected.as_str().unwrap_or("") {
                    "object" => value.is_object(),
                    "array" => value.is_array(),
                    "string" => value.is_string(),
                    "integer" => value.is_i64() || value.is_u64(),
                    "number" => value.is_number(),
                    "boolean" => value.is_boolean(),
                    other => return Err(format!("{at}: unknown type {other}")),
                },
                "enum" => expected.as_array().is_some_and(|e| e.contains(value)),
                "required" => expected
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .all(|key| value.get(key).is_some()),
                "properties" => {
                    for (key, property) in expected.as_object().into_iter().flatten() {
                        if let Some(field) = value.get(key) {
                            validate(doc, property, field, &format!("{at}.{key}"))?;
                        }
                    }
                    true
                }
                "additionalProperties" => {
                    expected.as_bool() != Some(false)
                        || value.as_object().into_iter().flatten().all(|(key, _)| {
                            schema.get("properties").and_then(|p| p.get(key)).is_some()
                        })
                }
                "items" => {
                    for (index, element) in value.as_array().into_iter().flatten().enumerate() {
                        validate(doc, expected, element, &format!("{at}[{index}]"))?;
                    }
                    true
                }
                "minimum" => value.as_f64().is_none_or(|v| Some(v) >= expected.as_f64()),
                "maximum" => value.as_f64().is_none_or(|v| Some(v) <= expected.as_f64()),
                "minLength" => value
                    .as_str()
                    .is_none_or(|s| Some(s.chars().count() as u64) >= expected.as_u64()),
                "maxLength" => value
                    .as_str()
                    .is_none_or(|s| Some(s.chars().count() as u64) <= expected.as_u64()),
                "nullable" => true,
                "description" | "format" | "example" => true,
                other => return Err(format!("{at}: the validator does not know {other:?}")),
            };
        if !ok {
            return Err(format!(
                "{at} = {value} does not satisfy {keyword}: {expected}"
            ));
        }
    }
    Ok(())
}

/// Sends one request on a fresh connection and reads the answer.
fn send(server: &Server, method: &str, target: &str, body: &str) -> Reply {
    exchange(
        server,
        format!(
            "{method} {target} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
        method,
    )
}

/// Writes `bytes` on a fresh connection, reads one answer. Unlike
/// common::Client it knows that an answer to HEAD has no body.
fn exchange(server: &Server, bytes: &[u8], method: &str) -> Reply {
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(common::PATIENCE))
        .expect("timeout");
    (&stream).write_all(bytes).expect("send the request");
    read_reply_from(&mut BufReader::new(stream), method).expect("an answer")
}

/// `send` and `check`.
fn call(server: &Server, doc: &Value, method: &str, target: &str, body: &str) -> Reply {
    let reply = send(server, method, target, body);
    check(doc, method, target, &reply);
    reply
}

#[test]
fn the_document_is_openapi_3_and_hangs_together() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    // Every $ref resolves.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(list) => list.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20);
    for reference in all {
        let target = reference.strip_prefix('#').expect("local $ref");
        assert!(doc.pointer(target).is_some(), "{reference} resolves");
    }
    // Operations: unique ids, declared path parameters, responses, links.
    let mut ids = BTreeSet::new();
    for (template, item) in paths(&doc) {
        let methods = documented_methods(&doc, template);
        assert!(!methods.is_empty(), "{template} has operations");
        assert_eq!(
            methods.contains("GET"),
            methods.contains("HEAD"),
            "{template}: HEAD is documented exactly where GET is"
        );
        for method in &methods {
            let operation = &item[method.to_lowercase()];
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} is unique");
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| resolve(&doc, p))
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let in_template: BTreeSet<&str> = template
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(
                declared, in_template,
                "{method} {template}: path parameters"
            );
            let responses = operation["responses"].as_object().expect("responses");
            for status in ["400", "408", "414", "417", "431", "501", "503", "505"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {template}: the HTTP layer's {status} is documented"
                );
            }
            if method == "POST" {
                assert!(responses.contains_key("413"), "{method} {template}: 413");
            }
            for response in responses.values() {
                let response = resolve(&doc, response);
                assert!(response["description"].is_string());
                for link in response["links"].as_object().into_iter().flatten() {
                    let target = link.1["operationId"].as_str().expect("link operationId");
                    let exists = paths(&doc).values().any(|item| {
                        item.as_object()
                            .into_iter()
                            .flatten()
                            .any(|(_, op)| op["operationId"] == target)
                    });
                    assert!(exists, "link {} names operation {target}", link.0);
                }
            }
        }
    }
}

#[test]
fn openapi_yaml_is_served_byte_for_byte() {
    let doc = document();
    let server = Server::start(&[]);
    let reply = call(&server, &doc, "GET", "/openapi.yaml", "");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Content-Type"), Some("application/yaml"));
    assert!(
        reply.body == DOCUMENT.as_bytes(),
        "GET /openapi.yaml is not the file"
    );
    let reply = call(&server, &doc, "HEAD", "/openapi.yaml", "");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Content-Type"), Some("application/yaml"));
    let reply = call(&server, &doc, "POST", "/openapi.yaml", "");
    assert_eq!(reply.status, 405);
}

/// A good request for each documented operation, in an order that makes
/// the fault endpoints succeed: node 1 is crashed then restarted, node 2
/// disconnected, node 3 stalled.
fn good_request(template: &str, method: &str) -> (String, &'static str) {
    let path = match template {
        "/items/{tenant}/count" => "/items/a%20b%2Fc/count".to_string(),
        "/nodes/{id}/crash" | "/nodes/{id}/restart" => template.replace("{id}", "1"),
        "/nodes/{id}/disconnect" => template.replace("{id}", "2"),
        "/nodes/{id}/stall" => "/nodes/3/stall?ms=20".to_string(),
        other => {
            assert!(!other.contains('{'), "add a good request for {other}");
            other.to_string()
        }
    };
    let body = if method == "POST" && template == "/items" {
        r#"[{"ID":1,"tenant":"a b/c"},{"ID":-0,"tenant":"x"}]"#
    } else {
        ""
    };
    (path, body)
}

#[test]
fn every_documented_operation_is_served() {
    let doc = document();
    let server = Server::start(&["--fault-injection"]);
    let mut operations: Vec<(String, String)> = paths(&doc)
        .keys()
        .flat_map(|template| {
            documented_methods(&doc, template)
                .into_iter()
                .map(move |method| (template.clone(), method))
        })
        .collect();
    // Crash before restart.
    operations.sort_by_key(|(template, _)| template.ends_with("/restart"));
    for (template, method) in operations {
        let (path, body) = good_request(&template, &method);
        let reply = call(&server, &doc, &method, &path, body);
        assert_eq!(
            reply.status,
            200,
            "{method} {path}: a good request: {}",
            reply.text()
        );
    }
}

/// Paths near the documented ones and a few a server might plausibly have.
fn candidate_paths(doc: &Value) -> BTreeSet<String> {
    let mut candidates: BTreeSet<String> = [
        "/",
        "/items/",
        "/items/t",
        "/items/t/count/x",
        "/items/t/counts",
        "/items/count",
        "/nodes/",
        "/nodes/0",
        "/nodes/0/",
        "/nodes/0/x",
        "/nodes/0/crash/x",
        "/nodes/x/crash",
        "/nodes/99/crash",
        "/nodes/-1/stall?ms=1",
        "/health/",
        "/health/x",
        "/metrics/",
        "/metrics/x",
        "/openapi.json",
        "/openapi",
        "/openapi.yml",
        "/docs",
        "/api",
        "/version",
        "/status",
        "/index.html",
        "/favicon.ico",
        "/count",
        "/ITEMS",
        "/Health",
        "//items",
        "/items//count",
        "/static/app.js",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    for template in paths(doc).keys() {
        let concrete = template.replace("{tenant}", "t").replace("{id}", "0");
        candidates.insert(format!("{concrete}/x"));
        candidates.insert(format!("{concrete}/"));
        candidates.insert(concrete.to_uppercase());
        if let Some((parent, _)) = concrete.rsplit_once('/') {
            candidates.insert(if parent.is_empty() {
                "/".into()
            } else {
                parent.into()
            });
        }
        candidates.insert(concrete);
    }
    candidates
}

/// Probes the server: any path it answers with something else than 404
/// must be documented, and any method there either documented or 405.
fn probe(doc: &Value, flags: &[&str]) -> BTreeSet<String> {
    let server = Server::start(flags);
    let mut answered = BTreeSet::new();
    for path in candidate_paths(doc) {
        for method in METHODS {
            // Keep the nodes up: the fault endpoints are exercised elsewhere.
            if *method == "POST" && path.starts_with("/nodes/") {
                continue;
            }
            let reply = send(&server, method, &path, "");
            if let Some(template) = check(doc, method, &path, &reply)
                && reply.status != 404
            {
                answered.insert(template);
            }
        }
    }
    answered
}

#[test]
fn every_route_the_server_answers_is_documented() {
    let doc = document();
    let all: BTreeSet<String> = paths(&doc).keys().cloned().collect();
    let answered = probe(&doc, &["--fault-injection"]);
    assert!(
        all.is_subset(&answered),
        "documented but never answered: {:?}",
        all.difference(&answered).collect::<Vec<_>>()
    );
    // Without --fault-injection the fault paths are 404 for every method.
    let answered = probe(&doc, &[]);
    let (faults, others): (BTreeSet<String>, BTreeSet<String>) =
        all.into_iter().partition(|p| p.starts_with("/nodes/{id}/"));
    assert!(
        others.is_subset(&answered) && answered.is_disjoint(&faults),
        "without --fault-injection: answered {answered:?}, expected {others:?}"
    );
}

/// The route labels in src/http/routes.rs (`["items"] => ("/items", ...`)
/// are the router's own list: a route added there without documentation,
/// at a path the probe above does not guess, still fails here. They are the
/// string literals of the non-test code that start with `/` and hold no
/// space.
#[test]
fn the_router_has_no_route_the_document_lacks() {
    let doc = document();
    let code = ROUTES_RS.split("#[cfg(test)]").next().unwrap_or(ROUTES_RS);
    let labels: BTreeSet<&str> = code
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| line.split('"').skip(1).step_by(2))
        .filter(|literal| literal.starts_with('/') && !literal.contains(char::is_whitespace))
        .collect();
    assert!(
        labels.len() >= 6,
        "found too few route labels in routes.rs ({labels:?}): has its layout changed? update this test"
    );
    let matches = |label: &str, template: &str| {
        let (a, b): (Vec<&str>, Vec<&str>) =
            (label.split('/').collect(), template.split('/').collect());
        a.len() == b.len()
            && a.iter().zip(&b).all(|(x, y)| {
                x == y || (x.starts_with('{') && (y.starts_with('{') || x == &"{action}"))
            })
    };
    for label in &labels {
        assert!(
            paths(&doc).keys().any(|template| matches(label, template)),
            "routes.rs serves {label}, docs/openapi.yaml does not document it"
        );
    }
    for template in paths(&doc).keys() {
        assert!(
            labels.iter().any(|label| matches(label, template)),
            "docs/openapi.yaml documents {template}, routes.rs has no such route"
        );
    }
}

#[test]
fn bad_requests_get_documented_statuses_and_bodies() {
    let doc = document();
    let server = Server::start(&["--max-body-bytes", "1000"]);
    let long_tenant = "x".repeat(1025);
    let cases: &[(&str, String, &str, u16)] = &[
        ("POST", "/items".into(), "[]", 200),
        ("POST", "/items".into(), r#"[{"ID":-0,"tenant":"a"}]"#, 200),
        ("POST", "/items".into(), "not json", 400),
        ("POST", "/items".into(), r#""a string""#, 400),
        (
            "POST",
            "/items".into(),
            r#"[{"ID":1e400,"tenant":"a"}]"#,
            400,
        ),
        ("POST", "/items".into(), r#"[{"ID":1,"tenant":""}]"#, 400),
        ("POST", "/items".into(), &"[]".repeat(600), 413),
        ("GET", "/items/%E6%97%A5/count".into(), "", 200),
        ("GET", "/items/%zz/count".into(), "", 400),
        ("HEAD", "/items/%zz/count".into(), "", 400),
        ("GET", "/items/%FF/count".into(), "", 400),
        ("GET", "/items//count".into(), "", 400),
        ("GET", format!("/items/{long_tenant}/count"), "", 400),
        ("GET", format!("/items/{}/count", "y".repeat(9000)), "", 414),
        ("GET", "/health".into(), "", 200),
        ("GET", "/nodes".into(), "", 200),
        ("GET", "/metrics".into(), "", 200),
        ("HEAD", "/metrics".into(), "", 200),
        ("POST", "/nodes/0/crash".into(), "", 404),
        ("PUT", "/items".into(), "", 405),
        ("DELETE", "/items/t/count".into(), "", 405),
        ("OPTIONS", "/health".into(), "", 405),
        ("GET", "/nope".into(), "", 404),
        ("HEAD", "/nope".into(), "", 404),
    ];
    for (method, target, body, status) in cases {
        let reply = call(&server, &doc, method, target, body);
        assert_eq!(reply.status, *status, "{method} {target}: {}", reply.text());
    }
}

#[test]
fn the_http_layer_errors_are_documented() {
    let doc = document();
    let server = Server::start(&["--header-timeout", "300ms"]);
    let raw = |head: String, method: &str, target: &str, status: u16| {
        let reply = exchange(&server, head.as_bytes(), method);
        assert_eq!(reply.status, status, "{head:?}: {}", reply.text());
        check(&doc, method, target, &reply);
    };
    raw(
        "GET /health HTTP/2.0\r\nHost: t\r\n\r\n".into(),
        "GET",
        "/health",
        505,
    );
    raw(
        "GET /health HTTP/1.1\r\nHost: t\r\nExpect: sometime\r\n\r\n".into(),
        "GET",
        "/health",
        417,
    );
    raw(
        "POST /items HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n".into(),
        "POST",
        "/items",
        501,
    );
    raw(
        "POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 1e3\r\n\r\n".into(),
        "POST",
        "/items",
        400,
    );
    raw(
        format!(
            "GET /nodes HTTP/1.1\r\nHost: t\r\n{}\r\n",
            "X-Filler: y\r\n".repeat(200)
        ),
        "GET",
        "/nodes",
        431,
    );
    raw(
        format!(
            "GET /health?{} HTTP/1.1\r\nHost: t\r\n\r\n",
            "q".repeat(9000)
        ),
        "GET",
        "/health",
        414,
    );
    // A head that stops coming: 408 once --header-timeout has passed.
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(common::PATIENCE))
        .expect("timeout");
    (&stream)
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
        .expect("send");
    // The answer comes by itself once the deadline passes: just read.
    let reply = read_reply_from(&mut BufReader::new(stream), "GET").expect("an answer");
    assert_eq!(reply.status, 408, "{}", reply.text());
    check(&doc, "GET", "/metrics", &reply);
}

#[test]
fn fault_endpoints_answer_as_documented() {
    let doc = document();
    let server = Server::start(&["--fault-injection", "--nodes", "2"]);
    let cases: &[(&str, &str, u16)] = &[
        ("POST", "/nodes/0/crash", 200),
        ("POST", "/nodes/0/crash", 409),
        ("POST", "/nodes/0/disconnect", 409),
        ("POST", "/nodes/0/stall?ms=5", 409),
        ("POST", "/nodes/0/restart", 200),
        ("POST", "/nodes/0/restart", 409),
        ("POST", "/nodes/7/crash", 404),
        ("POST", "/nodes/x/restart", 404),
        ("POST", "/nodes/0/explode", 404),
        ("POST", "/nodes/1/stall", 400),
        ("POST", "/nodes/1/stall?ms=soon", 400),
        ("POST", "/nodes/1/stall?ms=600001", 400),
        ("POST", "/nodes/1/stall?ms=1", 200),
        ("POST", "/nodes/1/disconnect", 200),
        ("GET", "/nodes/1/crash", 405),
        // No node left: reads and writes are refused, /nodes still answers.
        ("POST", "/nodes/0/crash", 200),
        ("POST", "/nodes/1/crash", 200),
        ("GET", "/health", 503),
        ("HEAD", "/health", 503),
        ("POST", "/items", 503),
        ("GET", "/items/t/count", 503),
        ("GET", "/nodes", 200),
        ("POST", "/nodes/1/restart", 200),
        ("GET", "/health", 200),
    ];
    for (method, target, status) in cases {
        let body = if *target == "/items" {
            r#"[{"ID":1,"tenant":"t"}]"#
        } else {
            ""
        };
        let reply = call(&server, &doc, method, target, body);
        assert_eq!(reply.status, *status, "{method} {target}: {}", reply.text());
    }
}
