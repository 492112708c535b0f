//! `Server::serve` against raw TCP clients: framing, deadlines, admission,
//! budgets. Every wait polls a condition with a deadline.

mod support;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::{echo, options, start, wait_busy, wait_for, Client};
use tiny_http::{Response, ServerOptions};

const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const THIRD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

#[test]
fn keep_alive_pipelining_chunked_and_remote_addr() {
    let server = start(options(), echo);
    let mut client = Client::connect(server.local_addr());
    client.send(concat!(
        "GET /a?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        "PUT /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
        "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
        "GET http://example.com/items/a/count?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    ));
    assert_eq!(client.reply().text(), "GET /a?x=1 0 127.0.0.1 ");
    assert_eq!(client.reply().text(), "POST /b 5 127.0.0.1 hello");
    assert_eq!(client.reply().text(), "PUT /c 5 127.0.0.1 abcde");
    let reply = client.reply();
    assert_eq!(reply.text(), "GET /items/a/count?x=1 0 127.0.0.1 ");
    assert!(!reply.closes());
    client.send("GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let reply = client.reply();
    assert_eq!(reply.status, 200);
    assert!(reply.closes(), "{:?}", reply.headers);
    assert!(client.closed());
    server.stop();
}

#[test]
fn answers_small_large_and_of_unknown_length_arrive_whole() {
    // A small answer goes out from one buffer with its head; a large one
    // and one of unknown length (chunked) through a buffer of their own.
    let large: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let body = large.clone();
    let server = start(options(), move |request: tiny_http::Request| {
        let response = match request.url() {
            "/small" => Response::from_string("ok").boxed(),
            "/large" => Response::from_data(body.clone()).boxed(),
            _ => Response::new(
                200.into(),
                Vec::new(),
                std::io::Cursor::new(body.clone()),
                None,
                None,
            )
            .boxed(),
        };
        let _ = request.respond(response);
    });
    let mut client = Client::connect(server.local_addr());
    for _ in 0..2 {
        let small = client.get("/small");
        assert_eq!(small.text(), "ok");
        assert!(small.header("Date").is_some() && small.header("Server").is_some());
        let sized = client.get("/large");
        assert_eq!(sized.header("Content-Length"), Some("20000"));
        assert!(sized.body == large, "the large body arrived changed");
        let chunked = client.get("/unknown");
        assert_eq!(chunked.header("Transfer-Encoding"), Some("chunked"));
        assert!(chunked.body == large, "the chunked body arrived changed");
    }
    server.stop();
}

#[test]
fn answers_from_borrowed_parts_are_those_of_a_response() {
    // `respond_bytes` must send what `respond` sends for the same parts:
    // the same fields in the same order (Date aside), the same body, for a
    // body sent with its head and one sent after it, and for HEAD.
    let large: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let served = large.clone();
    let server = start(options(), move |request: tiny_http::Request| {
        let (kind, size) = request
            .url()
            .split_once('/')
            .unwrap_or_default()
            .1
            .split_once('/')
            .unwrap_or_default();
        let body = if size == "large" {
            served.clone()
        } else {
            b"{\"ok\":1}".to_vec()
        };
        let fields = [("Content-Type", "application/json"), ("Allow", "GET")];
        let _ = if kind == "bytes" {
            request.respond_bytes(405, &fields, &body)
        } else {
            let mut response = Response::new(
                405.into(),
                Vec::new(),
                std::io::Cursor::new(body.clone()),
                Some(body.len()),
                None,
            );
            for (name, value) in fields {
                response.add_header(tiny_http::Header::from_bytes(name, value).unwrap());
            }
            request.respond(response)
        };
    });
    let mut client = Client::connect(server.local_addr());
    let without_date = |reply: &support::Reply| -> Vec<(String, String)> {
        let fields = reply.headers.iter().filter(|(name, _)| name != "Date");
        fields.cloned().collect()
    };
    for size in ["small", "large"] {
        let from_response = client.get(&format!("/response/{size}"));
        let from_bytes = client.get(&format!("/bytes/{size}"));
        assert_eq!(from_bytes.status, 405);
        assert_eq!(without_date(&from_bytes), without_date(&from_response));
        assert!(from_bytes.header("Date").is_some());
        assert!(
            from_bytes.body == from_response.body,
            "{}: the bodies differ",
            size
        );
        if size == "large" {
            assert!(from_bytes.body == large, "the large body arrived changed");
        }
        client.send(format!("HEAD /bytes/{size} HTTP/1.1\r\nHost: t\r\n\r\n"));
        let head = client.head_reply();
        assert_eq!(
            head.header("Content-Length"),
            from_response.header("Content-Length")
        );
    }
    // The HEAD answers had no body: the next answer follows at once.
    assert_eq!(client.get("/bytes/small").text(), "{\"ok\":1}");
    server.stop();
}

#[test]
fn borrowed_fields_that_could_break_the_head_are_refused() {
    let refused = Arc::new(AtomicUsize::new(0));
    let counted = refused.clone();
    let server = start(options(), move |request: tiny_http::Request| {
        let field = match request.url() {
            "/length" => ("Content-Length", "1"),
            "/connection" => ("connection", "keep-alive"),
            "/name" => ("Bad Name", "x"),
            "/split" => ("X-A", "b\r\nX-Injected: 1"),
            _ => ("X-Fine", "a value\twith tab"),
        };
        if let Err(e) = request.respond_bytes(200, &[field], b"body") {
            if e.kind() == std::io::ErrorKind::InvalidInput {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let mut client = Client::connect(server.local_addr());
    for path in ["/length", "/connection", "/name", "/split"] {
        // Refused before anything is written: the engine answers 500.
        let reply = client.get(path);
        assert_eq!(reply.status, 500, "{}", path);
        assert!(reply.header("X-Injected").is_none(), "{}", path);
    }
    // The 500 goes out before `respond_bytes` returns the refusal.
    wait_for("four refusals returned", || {
        refused.load(Ordering::SeqCst) == 4
    });
    let fine = client.get("/fine");
    assert_eq!(fine.status, 200);
    assert_eq!(fine.header("X-Fine"), Some("a value\twith tab"));
    assert_eq!(fine.text(), "body");
    server.stop();
}

#[test]
fn expect_100_continue() {
    let server = start(options(), echo);
    let mut client = Client::connect(server.local_addr());
    client.send("POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    let interim = client.reply();
    assert_eq!(interim.status, 100);
    client.send("abc");
    assert_eq!(client.reply().text(), "POST /e 3 127.0.0.1 abc");
    // A body sent along with the head gets no 100.
    client
        .send("POST /f HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nxy");
    assert_eq!(client.reply().text(), "POST /f 2 127.0.0.1 xy");
    // Nor does a refused one.
    client.send("POST /g HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 99999999999\r\n\r\n");
    assert_eq!(client.reply().status, 413);
}

#[test]
fn head_has_the_get_length_and_no_body() {
    let server = start(options(), |request: tiny_http::Request| {
        let _ = request.respond(Response::from_string("twelve bytes"));
    });
    let mut client = Client::connect(server.local_addr());
    client.send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.head_reply();
    assert_eq!(head.header("Content-Length"), Some("12"));
    // The GET answer follows at once: the HEAD answer had no body.
    let get = client.reply();
    assert_eq!(get.status, 200);
    assert_eq!(get.text(), "twelve bytes");
}

#[test]
fn dropped_request_gets_500_and_a_panic_closes() {
    let server = start(options(), |request: tiny_http::Request| {
        if request.url() == "/panic" {
            panic!("handler panic (expected by the test)");
        }
        drop(request);
    });
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/drop").status, 500);
    let reply = client.get("/panic");
    assert_eq!(reply.status, 500);
    assert!(client.closed());
    assert_eq!(server.stats().snapshot().handler_panics, 1);
}

#[test]
fn engine_closes_with_connection_close_when_it_will() {
    let server = start(options(), echo);
    let addr = server.local_addr();
    // HTTP/1.0 without keep-alive.
    let mut client = Client::connect(addr);
    client.send("GET /old HTTP/1.0\r\n\r\n");
    assert!(client.reply().closes());
    assert!(client.closed());
    // HTTP/1.0 with keep-alive stays open.
    let mut client = Client::connect(addr);
    client.send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(!client.reply().closes());
    assert_eq!(client.get("/again").status, 200);
    // A body on GET is not read: empty body for the handler, then close.
    let mut client = Client::connect(addr);
    client.send("GET /g HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody");
    let reply = client.reply();
    assert_eq!(reply.text(), "GET /g 0 127.0.0.1 ");
    assert!(reply.closes());
    assert!(client.closed());
    // Transfer-Encoding with Content-Length: chunked wins, then close.
    let mut client = Client::connect(addr);
    client.send(concat!(
        "POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n",
        "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    ));
    let reply = client.reply();
    assert_eq!(reply.text(), "POST /s 2 127.0.0.1 ok");
    assert!(reply.closes());
    assert!(client.closed(), "no pipelined request after TE + CL");
}

/// Sends `request` on a new connection; expects `status` with the hook's
/// body, `Connection: close`, then the end of the connection.
fn expect_error(addr: std::net::SocketAddr, request: &str, status: u16) -> String {
    let mut client = Client::connect(addr);
    client.send(request);
    let reply = client.reply();
    assert_eq!(reply.status, status, "{:?} -> {}", request, reply.text());
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/x-test"),
        "{:?}",
        request
    );
    assert!(
        reply.text().starts_with(&format!("E{}: ", status)),
        "{}",
        reply.text()
    );
    assert!(reply.closes(), "{:?}", request);
    assert!(client.closed(), "{:?}", request);
    reply.text()
}

#[test]
fn framing_errors_get_their_status_and_the_hook_body() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let server = start(
        ServerOptions {
            max_request_line_bytes: 100,
            max_header_bytes: 300,
            max_header_count: 5,
            ..options()
        },
        move |request| {
            seen.fetch_add(1, Ordering::SeqCst);
            echo(request)
        },
    );
    let addr = server.local_addr();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(200));
    let many = format!("GET / HTTP/1.1\r\nHost: t\r\n{}\r\n", "X: 1\r\n".repeat(6));
    let large = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "v".repeat(400)
    );
    let cases: Vec<(&str, u16)> = vec![
        ("GET / HTTP/1.1\nHost: t\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: t\n\n", 400),
        ("GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("GET /\r\nHost: t\r\n\r\n", 400),
        ("GET / HTTP/1.x\r\nHost: t\r\n\r\n", 400),
        ("GET / HTTPS/1.1\r\nHost: t\r\n\r\n", 400),
        ("GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        ("GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505),
        ("GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: t\r\nBad@Name: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("GET t:80 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("CONNECT /x HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
        ),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n",
            400,
        ),
        ("POST / HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n", 417),
        (&long_target, 414),
        (&many, 431),
        (&large, 431),
    ];
    for (request, status) in cases {
        expect_error(addr, request, status);
    }
    for value in [
        "-1",
        "abc",
        "1e3",
        "+2",
        "28, 28",
        "18446744073709551617",
        "",
    ] {
        let request = format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            value
        );
        let text = expect_error(addr, &request, 400);
        assert!(text.contains("Content-Length"), "{}", text);
    }
    let text = expect_error(
        addr,
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1e3\r\n\r\n",
        400,
    );
    assert_eq!(text, "E400: Content-Length \"1e3\" is not a number");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no bad request reaches the handler"
    );
    // The accepted forms do reach it.
    let mut client = Client::connect(addr);
    client.send("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.reply().text(), "OPTIONS * 0 127.0.0.1 ");
    client.send("CONNECT example.com:443 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        client.reply().text(),
        "CONNECT example.com:443 0 127.0.0.1 "
    );
    let stats = server.stats();
    assert!(stats.error_responses(400) >= 20);
    assert_eq!(stats.error_responses(505), 2);
    assert_eq!(stats.error_responses(414), 1);
    assert_eq!(stats.error_responses(431), 2);
}

#[test]
fn body_limits_413() {
    let server = start(
        ServerOptions {
            max_body_bytes: 1000,
            ..options()
        },
        echo,
    );
    let addr = server.local_addr();
    // Declared too large: answered before any body byte is sent.
    let text = expect_error(
        addr,
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n",
        413,
    );
    assert!(text.contains("1000"), "{}", text);
    let huge = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551615\r\n\r\n";
    expect_error(addr, huge, 413);
    // Chunked, growing past the limit.
    let mut client = Client::connect(addr);
    client.send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    client.send(format!("258\r\n{}\r\n", "a".repeat(600)));
    client.send(format!("258\r\n{}\r\n", "a".repeat(600)));
    assert_eq!(client.reply().status, 413);
    // Exactly at the limit passes.
    let mut client = Client::connect(addr);
    client.send(format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{}",
        "b".repeat(1000)
    ));
    assert_eq!(client.reply().status, 200);
}

#[test]
fn body_budget_503_and_release() {
    let server = start(
        ServerOptions {
            max_body_bytes: 1000,
            max_body_bytes_in_flight: 1500,
            ..options()
        },
        echo,
    );
    let addr = server.local_addr();
    // Holds 1000 bytes of budget while its body trickles in.
    let mut holder = Client::connect(addr);
    holder.send("POST /hold HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nabc");
    // Probing before the server has read the holder's head would race it
    // (a probe that fits could make the holder the one refused): wait on
    // the gauge instead.
    wait_for("the holder's reservation", || {
        server.stats().snapshot().body_bytes_in_flight == 1000
    });
    let mut probe = Client::connect(addr);
    probe.send(format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 800\r\n\r\n{}",
        "p".repeat(800)
    ));
    assert_eq!(probe.reply().status, 503);
    assert_eq!(server.stats().snapshot().refused_budget, 1);
    // Chunked bodies take budget as they grow.
    let mut chunked = Client::connect(addr);
    chunked.send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    chunked.send(format!("190\r\n{}\r\n", "c".repeat(400)));
    chunked.send(format!("c8\r\n{}\r\n0\r\n\r\n", "c".repeat(200)));
    let reply = chunked.reply();
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.text().starts_with("E503: "));
    // Small bodies still fit.
    let mut small = Client::connect(addr);
    small.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(small.reply().status, 200);
    // Once the holder is done, its share is back.
    holder.send("x".repeat(997));
    assert_eq!(holder.reply().status, 200);
    // The share is given back before the answer is written.
    assert_eq!(server.stats().snapshot().body_bytes_in_flight, 0);
    let mut after = Client::connect(addr);
    after.send(format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{}",
        "d".repeat(1000)
    ));
    assert_eq!(after.reply().status, 200);
}

#[test]
fn slow_body_from_one_host_does_not_delay_another() {
    let server = start(
        ServerOptions {
            body_grace: Duration::from_millis(500),
            min_body_rate: 1000,
            ..options()
        },
        echo,
    );
    let addr = server.local_addr();
    let slow = thread::spawn(move || {
        let mut client = Client::connect_from(OTHER, addr);
        client.send("POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
        let started = Instant::now();
        // 20 bytes a second, far below the minimum rate, until an answer.
        for _ in 0..200 {
            if client.try_send("x").is_err() || !client.quiet_for(Duration::from_millis(50)) {
                break;
            }
        }
        let reply = client.reply();
        (reply.status, reply.text(), started.elapsed())
    });
    let mut fast = Client::connect(addr);
    for i in 0..20 {
        let started = Instant::now();
        let reply = fast.get(&format!("/fast/{}", i));
        assert_eq!(reply.status, 200);
        assert!(started.elapsed() < Duration::from_secs(1));
        thread::sleep(Duration::from_millis(20));
    }
    let (status, text, elapsed) = slow.join().unwrap();
    assert_eq!(status, 408, "{}", text);
    assert!(text.starts_with("E408: "));
    // Cut soon after the grace: 20 B/s never catches up with 1000 B/s.
    assert!(elapsed >= Duration::from_millis(500), "{:?}", elapsed);
    assert!(elapsed < Duration::from_secs(3), "{:?}", elapsed);
    assert_eq!(server.stats().snapshot().body_timeouts, 1);
}

#[test]
fn a_body_at_the_minimum_rate_passes() {
    let server = start(
        ServerOptions {
            body_grace: Duration::from_millis(200),
            min_body_rate: 100,
            ..options()
        },
        echo,
    );
    let mut client = Client::connect(server.local_addr());
    client.send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    // 10 bytes every 50 ms = 200 B/s, twice the minimum, for about 1 s.
    for _ in 0..20 {
        client.send("a\r\n0123456789\r\n");
        thread::sleep(Duration::from_millis(50));
    }
    client.send("0\r\n\r\n");
    let reply = client.reply();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().starts_with("POST / 200 "));
}

#[test]
fn slowloris_head_gets_408_and_silent_connections_close() {
    let server = start(
        ServerOptions {
            header_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(400),
            ..options()
        },
        echo,
    );
    let addr = server.local_addr();
    // A head dribbled a byte at a time never completes in time.
    let mut loris = Client::connect(addr);
    let started = Instant::now();
    loris.send("GET / HTTP/1.1\r\nHo");
    // Until the answer comes: the client's own pace must not decide how
    // long the test waits (the server keeps reading after its 408).
    for byte in "st: t\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".bytes() {
        if loris.try_send([byte]).is_err() || !loris.quiet_for(Duration::from_millis(30)) {
            break;
        }
    }
    let reply = loris.reply();
    assert_eq!(reply.status, 408);
    assert!(reply.closes());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(2),
        "{:?}",
        elapsed
    );
    // A connection that never sends a byte is closed without an answer.
    let mut silent = Client::connect(addr);
    assert!(silent.closed());
    // So is a kept-alive one that waits too long for its next request.
    // Timed from before the request: the server's idle clock starts later.
    let mut idle = Client::connect(addr);
    let started = Instant::now();
    assert_eq!(idle.get("/").status, 200);
    assert!(idle.closed());
    assert!(started.elapsed() >= Duration::from_millis(350));
    // A kept-alive connection gets a fresh header_timeout per request
    // (four pauses well under the idle timeout add up to more than one
    // header_timeout).
    let mut kept = Client::connect(addr);
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(150));
        assert_eq!(kept.get("/").status, 200);
    }
    let stats = server.stats().snapshot();
    assert_eq!(stats.header_timeouts, 1);
    assert_eq!(stats.idle_closes, 2);
}

#[test]
fn the_longest_idle_connection_makes_room() {
    let server = start(
        ServerOptions {
            max_connections: 3,
            ..options()
        },
        echo,
    );
    let addr = server.local_addr();
    // Each answered connection is waited for until the server shows it
    // idle, so the order of idle times is the clients'.
    let mut clients: Vec<Client> = (0..3)
        .map(|i| {
            let mut client = Client::connect(addr);
            assert_eq!(client.get(&format!("/{}", i)).status, 200);
            wait_busy(&server, 0);
            thread::sleep(Duration::from_millis(20));
            client
        })
        .collect();
    // Freshen the first one: the second is now the longest idle.
    assert_eq!(clients[0].get("/again").status, 200);
    wait_busy(&server, 0);
    let mut newcomer = Client::connect(addr);
    assert_eq!(newcomer.get("/new").status, 200);
    assert!(
        clients[1].closed(),
        "the longest-idle connection was closed"
    );
    assert_eq!(clients[0].get("/still").status, 200);
    assert_eq!(clients[2].get("/still").status, 200);
    let stats = server.stats().snapshot();
    assert_eq!(stats.evicted_idle, 1);
    assert_eq!(stats.open, 3);
}

/// A connection whose head is still arriving: busy, so not evictable.
fn busy(client: &mut Client) {
    client.send("GET /busy HTTP/1.1\r\nHost: t\r\n");
}

#[test]
fn full_of_busy_connections_answers_503_with_the_hook_body() {
    let server = start(
        ServerOptions {
            max_connections: 2,
            ..options()
        },
        echo,
    );
    let addr = server.local_addr();
    let mut first = Client::connect(addr);
    let mut second = Client::connect(addr);
    busy(&mut first);
    busy(&mut second);
    wait_busy(&server, 2);
    let mut newcomer = Client::connect(addr);
    let reply = newcomer.reply();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("Content-Type"), Some("text/x-test"));
    assert!(reply.text().starts_with("E503: "), "{}", reply.text());
    assert!(reply.closes());
    assert!(newcomer.closed(), "closed, not reset");
    assert_eq!(server.stats().snapshot().refused_full, 1);
    // The busy ones are untouched.
    first.send("\r\n");
    assert_eq!(first.reply().status, 200);
    second.send("\r\n");
    assert_eq!(second.reply().status, 200);
}

#[test]
fn one_address_cannot_take_every_slot() {
    let server = start(
        ServerOptions {
            max_connections: 100,
            max_connections_per_ip: 2,
            ..options()
        },
        echo,
    );
    let addr = server.local_addr();
    let mut a1 = Client::connect_from(OTHER, addr);
    let mut a2 = Client::connect_from(OTHER, addr);
    busy(&mut a1);
    busy(&mut a2);
    wait_busy(&server, 2);
    let mut a3 = Client::connect_from(OTHER, addr);
    let reply = a3.reply();
    assert_eq!(reply.status, 503);
    assert!(reply.text().starts_with("E503: "), "{}", reply.text());
    assert!(a3.closed());
    assert_eq!(server.stats().snapshot().refused_per_ip, 1);
    // Another address is served.
    let mut b1 = Client::connect_from(THIRD, addr);
    let reply = b1.get("/b1");
    assert_eq!(reply.text(), "GET /b1 0 127.0.0.3 ");
    // b1 shown idle (only a1 and a2 busy) before b2 comes: b1 is the
    // longest idle.
    wait_busy(&server, 2);
    thread::sleep(Duration::from_millis(20));
    let mut b2 = Client::connect_from(THIRD, addr);
    assert_eq!(b2.get("/b2").status, 200);
    wait_busy(&server, 2);
    // At its cap with idle connections, an address's newcomer evicts that
    // address's longest-idle connection, not another address's.
    let mut b3 = Client::connect_from(THIRD, addr);
    assert_eq!(b3.get("/b3").status, 200);
    assert!(b1.closed());
    assert_eq!(b2.get("/b2").status, 200);
    a1.send("\r\n");
    assert_eq!(a1.reply().text(), "GET /busy 0 127.0.0.2 ");
    a2.send("\r\n");
    assert_eq!(a2.reply().status, 200);
}

#[test]
fn a_client_that_never_reads_is_cut_by_the_write_deadline() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let server = start(
        ServerOptions {
            write_timeout: Duration::from_millis(300),
            ..options()
        },
        move |request| {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = request.respond(Response::from_data(vec![b'z'; 4 << 20]));
        },
    );
    let mut client = Client::connect(server.local_addr());
    // Pipelines 30 requests (120 MiB of answers) and never reads.
    let requests = "GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(30);
    client.send(requests);
    wait_for("a write timeout", || {
        server.stats().snapshot().write_timeouts == 1
    });
    wait_for("the connection to close", || {
        server.stats().snapshot().open == 0
    });
    let served = calls.load(Ordering::SeqCst);
    assert!(served < 30, "no request after the broken write was served");
    thread::sleep(Duration::from_millis(100));
    assert_eq!(calls.load(Ordering::SeqCst), served);
    // The server goes on.
    let mut other = Client::connect(server.local_addr());
    other.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(other.reply().body.len(), 4 << 20);
}

#[test]
fn stop_lets_requests_in_flight_finish() {
    let started = Arc::new(AtomicUsize::new(0));
    let seen = started.clone();
    let server = start(options(), move |request: tiny_http::Request| {
        if request.url() == "/slow" {
            seen.fetch_add(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(300));
        }
        let _ = request.respond(Response::from_string("done"));
    });
    let addr = server.local_addr();
    let mut idle = Client::connect(addr);
    assert_eq!(idle.get("/").text(), "done");
    let mut working = Client::connect(addr);
    working.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_for("the request in flight", || {
        started.load(Ordering::SeqCst) == 1
    });
    let stopping = Instant::now();
    server.stop();
    assert!(stopping.elapsed() < Duration::from_secs(5));
    assert_eq!(working.reply().text(), "done");
    assert!(working.closed());
    assert!(idle.closed());
}
