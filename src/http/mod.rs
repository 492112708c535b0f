//! The HTTP API: a fixed pool of worker threads over tiny_http, routing, and
//! the JSON answers of SPEC.md.

use crate::batch;
use crate::cluster::FaultError;
use crate::coordinator::Coordinator;
use crate::metrics::{self, Metrics};
use crate::store::Entry;
use crate::wal::{Pending, Wal, WalError, record};
use serde::Serialize;
use std::fmt;
use std::io::{self, Cursor, Read};
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response, Server};

/// Threads answering HTTP requests. Requests wait in tiny_http's queue when
/// all are busy; reads wait on the master, so a few more than the cores.
pub const WORKERS: usize = 8;
/// Longest stall `POST /nodes/{id}/stall?ms=N` accepts.
pub const MAX_STALL_MS: u64 = 600_000;
/// Most client connections open at once; more are closed on accept.
pub const MAX_CLIENT_CONNECTIONS: usize = 1024;

/// What the request handlers need.
pub struct Api {
    pub coordinator: Coordinator,
    /// The log, in durable mode.
    pub wal: Option<Arc<Wal>>,
    pub metrics: Metrics,
    pub max_body_bytes: usize,
    pub fault_injection: bool,
}

/// The running HTTP server and its workers.
pub struct HttpServer {
    server: Arc<Server>,
    addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(listener: TcpListener, api: Arc<Api>) -> io::Result<HttpServer> {
        let addr = listener.local_addr()?;
        tiny_http::limits::set_max_connections(MAX_CLIENT_CONNECTIONS);
        let server = Server::from_listener(listener, None).map_err(io::Error::other)?;
        let server = Arc::new(server);
        let mut workers = Vec::with_capacity(WORKERS);
        for index in 0..WORKERS {
            let server = server.clone();
            let api = api.clone();
            let worker = thread::Builder::new()
                .name(format!("http-{index}"))
                .spawn(move || serve(&server, &api))?;
            workers.push(worker);
        }
        Ok(HttpServer {
            server,
            addr,
            workers,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Lets each worker finish its request, then stops it.
    pub fn stop(self) {
        for _ in &self.workers {
            self.server.unblock();
        }
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

/// A worker keeps buffers up to this size between requests; a larger one
/// (a huge batch) is freed, so one big POST does not pin its memory on a
/// small box for good.
pub const KEEP_BUFFER_BYTES: usize = 1024 * 1024;

/// Buffers a worker reuses from request to request.
#[derive(Default)]
struct Buffers {
    body: Vec<u8>,
    frame: Vec<u8>,
}

impl Buffers {
    fn trim(&mut self) {
        for buffer in [&mut self.body, &mut self.frame] {
            if buffer.capacity() > KEEP_BUFFER_BYTES {
                *buffer = Vec::new();
            }
        }
    }
}

fn serve(server: &Server, api: &Api) {
    let mut buffers = Buffers::default();
    while let Ok(request) = server.recv() {
        // A panic must never take a worker down for good: tiny_http answers
        // 500 when the request is dropped, and the worker goes on.
        let handled = panic::catch_unwind(AssertUnwindSafe(|| handle(api, request, &mut buffers)));
        if handled.is_err() {
            eprintln!("error: a request handler panicked; the client got 500, the worker goes on");
            buffers = Buffers::default();
        }
        buffers.trim();
    }
}

/// An answer: status, body, content type, and an `Allow` header for 405.
struct Answer {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    allow: Option<&'static str>,
}

impl Answer {
    fn json(status: u16, value: &impl Serialize) -> Answer {
        Answer {
            status,
            // Serializing our own plain structs cannot fail.
            body: serde_json::to_vec(value).unwrap_or_default(),
            content_type: "application/json",
            allow: None,
        }
    }

    fn ok() -> Answer {
        Answer::json(200, &Status { status: "OK" })
    }

    fn ko(status: u16, message: impl fmt::Display) -> Answer {
        Answer::json(
            status,
            &Ko {
                status: "KO",
                message: message.to_string(),
            },
        )
    }

    fn method_not_allowed(allow: &'static str) -> Answer {
        let mut answer = Answer::ko(405, format!("method not allowed; use {allow}"));
        answer.allow = Some(allow);
        answer
    }
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

#[derive(Serialize)]
struct Ko {
    status: &'static str,
    message: String,
}

#[derive(Serialize)]
struct Accepted {
    status: &'static str,
    accepted: usize,
}

#[derive(Serialize)]
struct Count<'a> {
    tenant: &'a str,
    counter: u64,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    master: usize,
}

fn handle(api: &Api, mut request: Request, buffers: &mut Buffers) {
    let (route, answer) = route(api, &mut request, buffers);
    respond(api, request, route, answer);
}

fn respond(api: &Api, request: Request, route: &'static str, answer: Answer) {
    api.metrics.record_request(route, answer.status);
    let length = answer.body.len();
    let mut response = Response::new(
        answer.status.into(),
        Vec::new(),
        Cursor::new(answer.body),
        Some(length),
        None,
    );
    if let Ok(header) = Header::from_bytes("Content-Type", answer.content_type) {
        response.add_header(header);
    }
    if let Some(allow) = answer
        .allow
        .and_then(|allow| Header::from_bytes("Allow", allow).ok())
    {
        response.add_header(allow);
    }
    // The client may have gone; nothing to do about it.
    let _ = request.respond(response);
}

/// Picks the handler; returns the route pattern (for metrics) and the answer.
fn route(api: &Api, request: &mut Request, buffers: &mut Buffers) -> (&'static str, Answer) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = request.method().clone();
    match segments.as_slice() {
        ["items"] => (
            "/items",
            match method {
                Method::Post => post_items(api, request, buffers),
                _ => Answer::method_not_allowed("POST"),
            },
        ),
        ["items", tenant, "count"] => (
            "/items/{tenant}/count",
            match method {
                Method::Get => get_count(api, tenant),
                _ => Answer::method_not_allowed("GET"),
            },
        ),
        ["health"] => (
            "/health",
            match method {
                Method::Get => health(api),
                _ => Answer::method_not_allowed("GET"),
            },
        ),
        ["nodes"] => (
            "/nodes",
            match method {
                Method::Get => Answer::json(200, &api.coordinator.cluster().status()),
                _ => Answer::method_not_allowed("GET"),
            },
        ),
        ["metrics"] => (
            "/metrics",
            match method {
                Method::Get => metrics_answer(api),
                _ => Answer::method_not_allowed("GET"),
            },
        ),
        ["nodes", id, action] if api.fault_injection => (
            "/nodes/{id}/{action}",
            match method {
                Method::Post => fault(api, id, action, query),
                _ => Answer::method_not_allowed("POST"),
            },
        ),
        _ => ("other", Answer::ko(404, format!("no such route: {path}"))),
    }
}

fn post_items(api: &Api, request: &mut Request, buffers: &mut Buffers) -> Answer {
    let limit = api.max_body_bytes;
    if request
        .body_length()
        .is_some_and(|declared| declared > limit)
    {
        return too_large(limit);
    }
    buffers.body.clear();
    let read = request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut buffers.body);
    if let Err(e) = read {
        return Answer::ko(400, format!("could not read the body: {e}"));
    }
    if buffers.body.len() > limit {
        return too_large(limit);
    }
    let items = match batch::parse(&buffers.body) {
        Ok(items) => items,
        Err(e) => return Answer::ko(400, e),
    };
    if api.coordinator.cluster().live().is_empty() {
        return Answer::ko(503, "no node is alive to take the items");
    }
    let entries = api.coordinator.order(&items);
    // The log write and the nodes' stores run at the same time; the POST
    // answers 200 only when both are done.
    let logged = api.wal.as_ref().map(|wal| log_batch(api, wal, &entries));
    let stored = api.coordinator.store(&entries, &mut buffers.frame);
    if let Some(Err(e)) = logged.map(|pending| pending.and_then(Pending::wait)) {
        return Answer::ko(503, format!("cannot write the log: {e}"));
    }
    match stored {
        Ok(()) => {
            api.metrics.record_accepted(entries.len());
            Answer::json(
                200,
                &Accepted {
                    status: "OK",
                    accepted: entries.len(),
                },
            )
        }
        Err(e) => Answer::ko(503, e),
    }
}

fn log_batch(api: &Api, wal: &Wal, entries: &[Entry]) -> Result<Pending, WalError> {
    let tenants = api.coordinator.cluster().tenants();
    let mut bytes = Vec::with_capacity(64 + entries.len() * 20);
    // A huge batch (a raised --max-body-bytes) becomes several records, each
    // far below record::MAX_PAYLOAD_BYTES; versions keep their order.
    for part in entries.chunks(record::MAX_ENTRIES_PER_RECORD) {
        record::encode_batch(&mut bytes, part, |tenant| {
            tenants.name(tenant).unwrap_or_default()
        });
    }
    wal.append(bytes)
}

fn too_large(limit: usize) -> Answer {
    Answer::ko(
        413,
        format!("body is larger than the {limit}-byte limit (--max-body-bytes)"),
    )
}

fn get_count(api: &Api, raw_tenant: &str) -> Answer {
    let tenant = match percent_decode(raw_tenant) {
        Ok(tenant) => tenant,
        Err(why) => return Answer::ko(400, format!("tenant in the path {why}")),
    };
    if tenant.is_empty() || tenant.len() > batch::MAX_TENANT_BYTES {
        return Answer::ko(
            400,
            format!(
                "tenant in the path must be 1 to {} bytes long",
                batch::MAX_TENANT_BYTES
            ),
        );
    }
    match api.coordinator.count(&tenant) {
        Ok(counter) => Answer::json(
            200,
            &Count {
                tenant: &tenant,
                counter,
            },
        ),
        Err(e) => Answer::ko(503, e),
    }
}

fn health(api: &Api) -> Answer {
    match api.coordinator.cluster().master() {
        Some((slot, _)) => Answer::json(
            200,
            &Health {
                status: "OK",
                master: slot.id,
            },
        ),
        None => Answer::ko(503, "no master is alive"),
    }
}

fn metrics_answer(api: &Api) -> Answer {
    let wal = api.wal.as_deref().map(Wal::stats);
    let text = api.metrics.render(&api.coordinator.cluster().status(), wal);
    Answer {
        status: 200,
        body: text.into_bytes(),
        content_type: metrics::CONTENT_TYPE,
        allow: None,
    }
}

fn fault(api: &Api, id: &str, action: &str, query: &str) -> Answer {
    let cluster = api.coordinator.cluster();
    let Ok(id) = id.parse::<usize>() else {
        return Answer::ko(
            404,
            format!(
                "no node {id:?}: node ids are 0 to {}",
                cluster.slots().len() - 1
            ),
        );
    };
    let done = match action {
        "crash" => cluster.crash(id),
        "restart" => cluster.restart(id),
        "disconnect" => cluster.disconnect(id).map(|_| ()),
        "stall" => match stall_duration(query) {
            Ok(duration) => cluster.stall(id, duration),
            Err(why) => return Answer::ko(400, why),
        },
        _ => {
            return Answer::ko(
                404,
                format!("no fault {action:?}: use crash, restart, disconnect or stall"),
            );
        }
    };
    match done {
        Ok(()) => Answer::ok(),
        Err(e @ FaultError::UnknownNode(_)) => Answer::ko(404, e),
        Err(e @ FaultError::WrongState { .. }) => Answer::ko(409, e),
        Err(e @ (FaultError::Node(_) | FaultError::Disk(_))) => Answer::ko(503, e),
    }
}

fn stall_duration(query: &str) -> Result<Duration, String> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .ok_or("query parameter ms is missing: use ?ms=N")?;
    match value.parse::<u64>() {
        Ok(ms) if ms <= MAX_STALL_MS => Ok(Duration::from_millis(ms)),
        _ => Err(format!(
            "query parameter ms must be a whole number from 0 to {MAX_STALL_MS}, got {value:?}"
        )),
    }
}

/// Decodes `%XX` escapes of one path segment into UTF-8.
pub fn percent_decode(segment: &str) -> Result<String, &'static str> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("has a truncated %-escape")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "has a bad %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "has a bad %-escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once decoded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_follows_the_spec() {
        assert_eq!(percent_decode("a%20b%2Fc").as_deref(), Ok("a b/c"));
        assert_eq!(percent_decode("%C3%A9t%C3%A9").as_deref(), Ok("été"));
        assert_eq!(percent_decode("plain").as_deref(), Ok("plain"));
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("a%zz").is_err());
        assert!(percent_decode("%FF").is_err());
    }

    #[test]
    fn stall_needs_a_bounded_ms() {
        assert_eq!(stall_duration("ms=250"), Ok(Duration::from_millis(250)));
        assert_eq!(stall_duration("x=1&ms=0"), Ok(Duration::ZERO));
        assert!(stall_duration("").unwrap_err().contains("missing"));
        assert!(stall_duration("ms=-1").is_err());
        assert!(stall_duration("ms=abc").is_err());
        assert!(stall_duration(&format!("ms={}", MAX_STALL_MS + 1)).is_err());
    }
}
