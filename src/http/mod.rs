//! The HTTP API: tiny_http's connection threads read each request whole,
//! under deadlines, and run its handler right there; the handler calls the
//! backend (see [`crate::backend`]) and answers as SPEC.md says.
//!
//! ```text
//!   mod.rs     the server: options from the config, one handler per request
//!   routes.rs  routing and one handler per route
//!   answer.rs  answers and their JSON bodies
//!   status_page.{rs,html,css,js}  the live status page at `GET /`
//! ```
//!
//! No worker pool: a slow client holds only its own connection thread (see
//! README "Connections"), and a request costs no hand-off between threads.

mod answer;
mod routes;
pub mod status_page;

use crate::backend::Backend;
use crate::config::{ClientLimits, Config};
use crate::metrics::Metrics;
use answer::Answer;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use tiny_http::limits::ServerOptions;
use tiny_http::{Request, Server, ServerStats, Serving};

/// What the request handlers need.
pub struct Api {
    /// Where items are kept: the in-process cluster or a Redis Cluster.
    pub backend: Box<dyn Backend>,
    pub metrics: Metrics,
    pub fault_injection: bool,
    /// `GET /`, put together once at startup.
    pub status_page: status_page::StatusPage,
    /// The HTTP server's own counters (connections, deadlines).
    pub http_stats: std::sync::OnceLock<Arc<ServerStats>>,
}

/// The running HTTP server.
pub struct HttpServer {
    serving: Serving,
}

impl HttpServer {
    pub fn start(listener: TcpListener, api: Arc<Api>, config: &Config) -> io::Result<HttpServer> {
        let options = options(&config.clients, config.max_body_bytes);
        let handler_api = api.clone();
        let serving = Server::serve(listener, options, move |request| {
            handle(&handler_api, request)
        })?;
        let _ = api.http_stats.set(serving.stats().clone());
        Ok(HttpServer { serving })
    }

    pub fn addr(&self) -> SocketAddr {
        self.serving.local_addr()
    }

    /// Stops accepting, lets requests in flight finish, closes connections.
    pub fn stop(self) {
        self.serving.stop();
    }
}

/// The engine's options from the client limits; its own errors (400, 408,
/// 413, 414, 431, 503, 505...) carry the JSON error body.
fn options(limits: &ClientLimits, max_body_bytes: usize) -> ServerOptions {
    ServerOptions {
        max_connections: limits.max_connections,
        max_connections_per_ip: limits.max_connections_per_ip,
        header_timeout: limits.header_timeout,
        idle_timeout: limits.idle_timeout,
        body_grace: limits.body_timeout,
        min_body_rate: limits.min_body_rate,
        write_timeout: limits.write_timeout,
        max_body_bytes: max_body_bytes as u64,
        max_body_bytes_in_flight: limits.max_body_bytes_in_flight as u64,
        error_body: Arc::new(|_status, message| {
            let body = serde_json::to_vec(&answer::ko_body(message)).unwrap_or_default();
            (body, "application/json")
        }),
        ..ServerOptions::default()
    }
}

fn handle(api: &Api, request: Request) {
    // A panic must never take a connection thread down with the answer
    // unwritten: the request is dropped, tiny_http answers 500, and the
    // next request is served.
    let handled = panic::catch_unwind(AssertUnwindSafe(|| {
        let (route, answer) = routes::route(api, &request);
        respond(api, request, route, answer);
    }));
    if handled.is_err() {
        crate::log!("error: a request handler panicked; the client got 500");
    }
}

fn respond(api: &Api, request: Request, route: &'static str, answer: Answer) {
    api.metrics.record_request(route, answer.status);
    let content_type = ("Content-Type", answer.content_type);
    let with_allow;
    let fields: &[(&str, &str)] = match answer.allow {
        Some(allow) => {
            with_allow = [content_type, ("Allow", allow)];
            &with_allow
        }
        None => &[content_type],
    };
    // Sent from the answer's own bytes: no `Response` or `Header` is built
    // (vendor/tiny_http/PATCHES.md, 11). The client may have gone; the
    // engine closes the connection then.
    let _ = request.respond_bytes(answer.status, fields, &answer.body);
}
