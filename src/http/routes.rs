//! Routing and the handlers: each reads its request, calls the coordinator
//! and turns the outcome into an [`Answer`].

use super::answer::{Accepted, Answer, Count, Health};
use super::{Api, status_page};
use crate::batch;
use crate::cluster::Fault;
use crate::metrics;
use std::borrow::Cow;
use std::time::Duration;
use tiny_http::{Method, Request};

/// `GET /openapi.yaml`: the API as an OpenAPI document (JSON syntax, which is YAML too).
pub const OPENAPI: &str = include_str!("../../docs/openapi.yaml");

/// Longest stall `POST /nodes/{id}/stall?ms=N` accepts.
pub const MAX_STALL_MS: u64 = 600_000;

/// Picks the handler; returns the route pattern (for metrics) and the answer.
/// HEAD is answered wherever GET is, without the body (tiny_http drops it).
pub fn route(api: &Api, request: &Request) -> (&'static str, Answer) {
    let url = request.url();
    let path = cut_at(url, b'?').next().unwrap_or_default();
    // After the first '?', if there is one.
    let query = url.get(path.len() + 1..).unwrap_or_default();
    let segments = Segments::of(path);
    let method = match request.method() {
        Method::Head => Method::Get,
        other => other.clone(),
    };
    match segments.as_slice() {
        [""] => (
            "/",
            match method {
                Method::Get => Answer {
                    status: 200,
                    body: api.status_page.body(),
                    content_type: status_page::CONTENT_TYPE,
                    allow: None,
                },
                _ => Answer::method_not_allowed("GET"),
            },
        ),
        ["items"] => (
            "/items",
            match method {
                Method::Post => post_items(api, request),
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
                Method::Get => Answer::json(200, &api.backend.nodes()),
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
        ["openapi.yaml"] => (
            "/openapi.yaml",
            match method {
                Method::Get => Answer::text(OPENAPI.to_string(), "application/yaml"),
                _ => Answer::method_not_allowed("GET"),
            },
        ),
        [
            "nodes",
            id,
            action @ ("crash" | "restart" | "disconnect" | "stall"),
        ] if api.fault_injection => (
            "/nodes/{id}/{action}",
            match method {
                Method::Post => fault(api, id, action, query),
                _ => Answer::method_not_allowed("POST"),
            },
        ),
        _ => ("other", Answer::ko(404, format!("no such route: {path}"))),
    }
}

/// Most segments a route has (`/items/{tenant}/count`).
const MAX_SEGMENTS: usize = 3;

/// A path's segments after its leading `/`, kept on the stack: this runs
/// for every request.
struct Segments<'a> {
    found: [&'a str; MAX_SEGMENTS],
    /// `None` if the path has more segments than any route.
    count: Option<usize>,
}

impl<'a> Segments<'a> {
    fn of(path: &'a str) -> Segments<'a> {
        let mut found = [""; MAX_SEGMENTS];
        let mut count = 0;
        for segment in cut_at(path, b'/').skip(1) {
            match found.get_mut(count) {
                Some(slot) => *slot = segment,
                None => return Segments { found, count: None },
            }
            count += 1;
        }
        Segments {
            found,
            count: Some(count),
        }
    }

    /// The segments, or none at all (no route) for a path longer than any.
    fn as_slice(&self) -> &[&'a str] {
        self.count
            .and_then(|count| self.found.get(..count))
            .unwrap_or_default()
    }
}

/// `text` cut at each `separator` (an ASCII byte), found byte by byte:
/// `str::split` with a char pattern cost several times more on the short
/// paths of every request.
fn cut_at(text: &str, separator: u8) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut next_start = Some(0);
    std::iter::from_fn(move || {
        let start = next_start?;
        let rest = bytes.get(start..)?;
        let end = rest
            .iter()
            .position(|&b| b == separator)
            .map_or(bytes.len(), |at| start + at);
        next_start = (end < bytes.len()).then_some(end + 1);
        // Cut next to an ASCII byte: always a char boundary.
        text.get(start..end)
    })
}

/// The body arrived whole before the handler ran, within --max-body-bytes
/// (tiny_http answered 413 otherwise), and is parsed where it lies.
fn post_items(api: &Api, request: &Request) -> Answer {
    let body = request.body_bytes().unwrap_or_default();
    let items = match batch::parse(body) {
        Ok(items) => items,
        Err(e) => return Answer::ko(400, e),
    };
    match api.backend.write(&items) {
        Ok(accepted) => {
            api.metrics.record_accepted(accepted.items);
            Answer::json(
                200,
                &Accepted {
                    status: "OK",
                    accepted: accepted.items,
                },
            )
        }
        Err(e) => Answer::ko(e.status(), e),
    }
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
    match api.backend.count(&tenant) {
        Ok(counter) => Answer::json(
            200,
            &Count {
                tenant: &tenant,
                counter,
            },
        ),
        Err(e) => Answer::ko(e.status(), e),
    }
}

fn health(api: &Api) -> Answer {
    match api.backend.health() {
        Ok(master) => Answer::json(
            200,
            &Health {
                status: "OK",
                master,
            },
        ),
        Err(e) => Answer::ko(e.status(), e),
    }
}

fn metrics_answer(api: &Api) -> Answer {
    let http = api.http_stats.get().map(|stats| stats.snapshot());
    let text = api.metrics.render(http, api.backend.as_ref());
    Answer::text(text, metrics::CONTENT_TYPE)
}

/// `action` is one of the four the router matched: crash, restart,
/// disconnect, stall.
fn fault(api: &Api, id: &str, action: &str, query: &str) -> Answer {
    let Ok(id) = id.parse::<usize>() else {
        return Answer::ko(
            404,
            format!(
                "no node {id:?}: node ids are 0 to {}",
                api.backend.nodes().len().saturating_sub(1)
            ),
        );
    };
    let fault = match action {
        "crash" => Fault::Crash,
        "restart" => Fault::Restart,
        "disconnect" => Fault::Disconnect,
        _ => match stall_duration(query) {
            Ok(duration) => Fault::Stall(duration),
            Err(why) => return Answer::ko(400, why),
        },
    };
    match api.backend.fault(id, fault) {
        Ok(()) => Answer::ok(),
        Err(e) => Answer::ko(e.status(), e),
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
/// Borrows the segment when it has no escape (nearly always).
pub fn percent_decode(segment: &str) -> Result<Cow<'_, str>, &'static str> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
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
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| "is not UTF-8 once decoded")
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
        assert!(matches!(
            percent_decode("plain"),
            Ok(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn cutting_at_a_byte_is_splitting_at_its_char() {
        for text in ["", "/", "a", "/items/été/count", "a//b/", "?x=1", "/p?a?b"] {
            for separator in [b'/', b'?'] {
                let cut: Vec<&str> = cut_at(text, separator).collect();
                let split: Vec<&str> = text.split(char::from(separator)).collect();
                assert_eq!(cut, split, "{text:?} at {separator}");
            }
        }
    }

    #[test]
    fn a_path_is_cut_into_at_most_the_segments_of_a_route() {
        let cut = |path| Segments::of(path).as_slice().to_vec();
        assert_eq!(cut("/items/a/count"), ["items", "a", "count"]);
        assert_eq!(cut("/items"), ["items"]);
        assert_eq!(cut("/"), [""]);
        assert_eq!(cut("/items/a/"), ["items", "a", ""]);
        assert!(cut("").is_empty());
        assert!(cut("/items/a/count/more").is_empty());
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
