//! HTTP framing (issue #10): RFC 9112 as SPEC.md asks. A request whose
//! length is doubtful is refused with 400 and the connection closed, so the
//! bytes after its head are never served as a second request; errors from
//! the HTTP layer carry the JSON error body.

mod common;

use common::{Reply, Server, exchange, parse_head, parse_reply};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long the server has to close a connection after an error answer.
const CLOSES_WITHIN: Duration = Duration::from_secs(2);

/// A request that, if ever served, stores an item of tenant "smuggled".
const SMUGGLED: &str = "POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 29\r\n\r\n\
                        [{\"ID\":1,\"tenant\":\"smuggled\"}]";

/// Checks an error answer from the HTTP layer: `status`, the JSON error
/// body, `Connection: close`, and nothing after it before the close.
fn check_refused(
    what: &str,
    reply: &Reply,
    after: &Result<Vec<u8>, String>,
    status: u16,
) -> Vec<String> {
    let mut problems = Vec::new();
    if reply.status != status {
        problems.push(format!(
            "{what}: {} instead of {status}: {}",
            reply.status,
            reply.text()
        ));
        return problems;
    }
    let json: Option<serde_json::Value> = serde_json::from_slice(&reply.body).ok();
    let is_ko = json.as_ref().is_some_and(|json| {
        json["status"] == "KO" && json["message"].as_str().is_some_and(|m| !m.is_empty())
    });
    if reply.header("Content-Type") != Some("application/json") || !is_ko {
        problems.push(format!(
            "{what}: not the JSON error body: {:?} {}",
            reply.header("Content-Type"),
            reply.text()
        ));
    }
    if reply.header("Connection") != Some("close") {
        problems.push(format!("{what}: no Connection: close"));
    }
    match after {
        Ok(rest) if rest.is_empty() => {}
        Ok(rest) => problems.push(format!(
            "{what}: more was sent after the answer: {:?}",
            String::from_utf8_lossy(rest)
        )),
        Err(e) => problems.push(format!("{what}: not closed after the answer: {e}")),
    }
    problems
}

#[test]
fn invalid_content_lengths_are_400_and_what_follows_is_never_served() {
    let server = Server::start(&[]);
    let mut problems = Vec::new();
    for value in [
        "-1",
        "abc",
        "1e3",
        "28, 28",
        "18446744073709551617",
        "+2",
        "",
    ] {
        let request =
            format!("POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: {value}\r\n\r\n{SMUGGLED}");
        let (reply, after) = exchange(server.addr, request.as_bytes(), CLOSES_WITHIN);
        let what = format!("Content-Length: {value:?}");
        problems.extend(check_refused(&what, &reply, &after, 400));
        if reply.status == 400 && !reply.text().contains("Content-Length") {
            problems.push(format!(
                "{what}: the message does not name Content-Length: {}",
                reply.text()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(server.count("smuggled"), 0, "a smuggled request was served");
}

#[test]
fn two_different_content_lengths_are_400() {
    let server = Server::start(&[]);
    let request = format!(
        "POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 29\r\n\r\n[]{}",
        &SMUGGLED[SMUGGLED.len() - 29..]
    );
    let (reply, after) = exchange(server.addr, request.as_bytes(), CLOSES_WITHIN);
    let problems = check_refused("two Content-Lengths", &reply, &after, 400);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(server.count("smuggled"), 0);
}

#[test]
fn chunked_wins_over_content_length_and_the_connection_closes_after() {
    let server = Server::start(&[]);
    let body = r#"[{"ID":7,"tenant":"chunked"},{"ID":8,"tenant":"chunked"}]"#;
    let (first, second) = body.split_at(20);
    // Content-Length covers only the first chunk's size line: read by
    // length, the rest would be a second request.
    let request = format!(
        "POST /items HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n\
         {:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n{SMUGGLED}",
        first.len(),
        second.len()
    );
    let (reply, after) = exchange(server.addr, request.as_bytes(), CLOSES_WITHIN);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["accepted"], 2);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert_eq!(
        after.expect("closed after the answer"),
        b"",
        "nothing else served"
    );
    assert_eq!(server.count("chunked"), 2);
    assert_eq!(server.count("smuggled"), 0);
}

#[test]
fn malformed_heads_get_their_status_with_the_json_error_body_and_a_close() {
    let server = Server::start(&[]);
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_url = format!("/items/{}/count", "a".repeat(100 * 1024));
    let long_header = format!("X-Big: {}\r\n", "b".repeat(100 * 1024));
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "too many headers",
            format!("GET /health HTTP/1.1\r\nHost: t\r\n{many_headers}\r\n"),
            431,
        ),
        (
            "a header without a colon",
            "GET /health HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n".into(),
            400,
        ),
        (
            "obs-fold",
            "GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\r\n  folded\r\n\r\n".into(),
            400,
        ),
        ("no version", "GET /health\r\nHost: t\r\n\r\n".into(), 400),
        (
            "a raw space in the path",
            "GET /items/a b/count HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            400,
        ),
        (
            "a 100 KB URL",
            format!("GET {long_url} HTTP/1.1\r\nHost: t\r\n\r\n"),
            414,
        ),
        (
            "a 100 KB header",
            format!("GET /health HTTP/1.1\r\nHost: t\r\n{long_header}\r\n"),
            431,
        ),
        (
            "HTTP/2.0",
            "GET /health HTTP/2.0\r\nHost: t\r\n\r\n".into(),
            505,
        ),
        ("bare LF", "GET /health HTTP/1.1\nHost: t\n\n".into(), 400),
        (
            "HTTP/1.1 without Host",
            "GET /health HTTP/1.1\r\nAccept: */*\r\n\r\n".into(),
            400,
        ),
        (
            "whitespace before a colon",
            "GET /health HTTP/1.1\r\nHost : t\r\n\r\n".into(),
            400,
        ),
    ];
    let mut problems = Vec::new();
    for (what, request, status) in &cases {
        let request = format!("{request}{SMUGGLED}");
        let (reply, after) = exchange(server.addr, request.as_bytes(), CLOSES_WITHIN);
        problems.extend(check_refused(what, &reply, &after, *status));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(server.count("smuggled"), 0);
}

/// Reads from `stream` until `bytes` holds a head (up to its blank line).
fn read_head(stream: &mut TcpStream, bytes: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            return end + 4;
        }
        let n = stream.read(&mut chunk).expect("the answer");
        assert!(n > 0, "closed in the middle of a head");
        bytes.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn head_is_answered_wherever_get_is_with_the_same_length_and_no_body() {
    let server = Server::start(&[]);
    assert_eq!(server.post_items(&common::items([(1, "h")])).status, 200);
    for path in ["/health", "/items/h/count", "/nodes", "/metrics"] {
        let get = server.call("GET", path, "");
        assert_eq!(get.status, 200);
        // HEAD, then GET on the same connection: the GET's answer must start
        // right after the HEAD's head, so no body was sent for HEAD.
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(common::PATIENCE)).unwrap();
        stream
            .write_all(
                format!(
                    "HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
        let mut bytes = Vec::new();
        let head_end = read_head(&mut stream, &mut bytes);
        let (head, _) = parse_head(&bytes).expect("a head");
        assert_eq!(head.status, 200, "HEAD {path}");
        if path != "/metrics" {
            assert_eq!(
                head.header("Content-Length"),
                get.header("Content-Length"),
                "HEAD {path} announces the GET's length"
            );
        }
        assert_eq!(head.header("Content-Type"), get.header("Content-Type"));
        let mut rest = bytes[head_end..].to_vec();
        let mut chunk = [0u8; 4096];
        while parse_reply(&rest).is_none() {
            let n = stream.read(&mut chunk).expect("the GET's answer");
            assert!(n > 0, "closed before the GET's answer");
            rest.extend_from_slice(&chunk[..n]);
        }
        assert!(
            rest.starts_with(b"HTTP/1.1 200"),
            "HEAD {path} was followed by body bytes: {:?}",
            String::from_utf8_lossy(&rest[..rest.len().min(80)])
        );
    }
}

#[test]
fn an_absolute_form_target_is_served_as_its_path() {
    let server = Server::start(&[]);
    assert_eq!(server.post_items(&common::items([(1, "abs")])).status, 200);
    let (reply, _) = exchange(
        server.addr,
        b"GET http://example/health HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n",
        CLOSES_WITHIN,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], "OK");
    let (reply, _) = exchange(
        server.addr,
        b"GET http://example/items/abs/count HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n",
        CLOSES_WITHIN,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["counter"], 1);
}
