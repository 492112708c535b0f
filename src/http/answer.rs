//! Answers: a status, a body and its content type, written as SPEC.md says:
//! JSON everywhere except `/metrics`, errors as `{"status":"KO","message"}`.

use serde::Serialize;
use std::fmt;

/// An answer: status, body, content type, and an `Allow` header for 405.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub allow: Option<&'static str>,
}

impl Answer {
    pub fn json(status: u16, value: &impl Serialize) -> Answer {
        Answer {
            status,
            // Serializing our own plain structs cannot fail.
            body: serde_json::to_vec(value).unwrap_or_default(),
            content_type: "application/json",
            allow: None,
        }
    }

    /// `{"status":"OK"}`
    pub fn ok() -> Answer {
        Answer::json(200, &Status { status: "OK" })
    }

    /// `{"status":"KO","message":...}` with `status`.
    pub fn ko(status: u16, message: impl fmt::Display) -> Answer {
        Answer::json(status, &ko_body(message))
    }

    /// 405 with the methods the route allows.
    pub fn method_not_allowed(allow: &'static str) -> Answer {
        let mut answer = Answer::ko(405, format!("method not allowed; use {allow}"));
        answer.allow = Some(allow);
        answer
    }

    /// Any text body, e.g. the Prometheus metrics.
    pub fn text(body: String, content_type: &'static str) -> Answer {
        Answer {
            status: 200,
            body: body.into_bytes(),
            content_type,
            allow: None,
        }
    }
}

/// The body of every error answer.
pub fn ko_body(message: impl fmt::Display) -> Ko {
    Ko {
        status: "KO",
        message: message.to_string(),
    }
}

#[derive(Serialize)]
pub struct Status {
    pub status: &'static str,
}

#[derive(Serialize)]
pub struct Ko {
    pub status: &'static str,
    pub message: String,
}

#[derive(Serialize)]
pub struct Accepted {
    pub status: &'static str,
    pub accepted: usize,
}

#[derive(Serialize)]
pub struct Count<'a> {
    pub tenant: &'a str,
    pub counter: u64,
}

#[derive(Serialize)]
pub struct Health {
    pub status: &'static str,
    pub master: usize,
}
