//! The HTTP API: a fixed pool of worker threads over tiny_http that read a
//! request, call the coordinator, and answer as SPEC.md says.
//!
//! ```text
//!   mod.rs     the server, its workers, writing answers
//!   routes.rs  routing and one handler per route
//!   answer.rs  answers and their JSON bodies
//! ```

mod answer;
mod routes;

use crate::coordinator::Coordinator;
use crate::metrics::Metrics;
use answer::Answer;
use std::io::{self, Cursor};
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use tiny_http::{Header, Request, Response, Server};

/// Threads answering HTTP requests. Requests wait in tiny_http's queue when
/// all are busy; reads wait on the master, so a few more than the cores.
pub const WORKERS: usize = 8;
/// Most client connections open at once; more are closed on accept.
pub const MAX_CLIENT_CONNECTIONS: usize = 1024;

/// What the request handlers need.
pub struct Api {
    pub coordinator: Coordinator,
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

fn serve(server: &Server, api: &Api) {
    // The body buffer is reused from request to request.
    let mut body = Vec::new();
    while let Ok(request) = server.recv() {
        // A panic must never take a worker down for good: tiny_http answers
        // 500 when the request is dropped, and the worker goes on.
        let handled = panic::catch_unwind(AssertUnwindSafe(|| handle(api, request, &mut body)));
        if handled.is_err() {
            crate::log!(
                "error: a request handler panicked; the client got 500, the worker goes on"
            );
        }
        if body.capacity() > KEEP_BUFFER_BYTES {
            body = Vec::new();
        }
    }
}

fn handle(api: &Api, mut request: Request, body: &mut Vec<u8>) {
    let (route, answer) = routes::route(api, &mut request, body);
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
