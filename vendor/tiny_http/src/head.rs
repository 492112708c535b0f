//! PATCH: a strict parser of request heads (RFC 9112) for `Server::serve`.
//!
//! [`HeadScanner`] finds where a head ends as its bytes arrive and enforces
//! the size limits before the head is complete, so a client cannot make the
//! server buffer more than the limits. [`parse_head`] then turns the complete
//! head into a [`Head`] or a [`HeadError`] carrying the status to answer and
//! a message naming what is wrong. Anything the RFC lets a server reject and
//! that has been used to smuggle requests (bare LF, obs-fold, whitespace
//! before the colon, doubtful framing) is rejected.

use std::fmt::Write as _;

use ascii::AsciiString;

use crate::common::{HTTPVersion, Header, HeaderField, Method};
use crate::limits::MAX_QUOTED_BYTES;

/// Size limits of a head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    /// Longest request line, without its CRLF (else 414).
    pub request_line: usize,
    /// Largest header section, CRLFs included (else 431).
    pub header_bytes: usize,
    /// Most header fields (else 431).
    pub header_count: usize,
}

/// Why a head is refused: the status to answer and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeadError {
    pub status: u16,
    pub message: String,
}

fn error(status: u16, message: impl Into<String>) -> HeadError {
    HeadError {
        status,
        message: message.into(),
    }
}

fn bad(message: impl Into<String>) -> HeadError {
    error(400, message)
}

/// Client bytes quoted in a message: at most `MAX_QUOTED_BYTES`, with
/// anything not printable escaped.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes.iter().take(MAX_QUOTED_BYTES) {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{:02x}", b);
            }
        }
    }
    if bytes.len() > MAX_QUOTED_BYTES {
        out.push_str("...");
    }
    out.push('"');
    out
}

/// Where a complete head lies in the bytes given to [`HeadScanner::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadSpan {
    /// First byte of the request line (empty lines before it are skipped).
    pub start: usize,
    /// One past the CRLF that ends the head.
    pub end: usize,
}

/// Finds the end of a head in a buffer that grows as bytes arrive.
#[derive(Debug)]
pub(crate) struct HeadScanner {
    limits: HeadLimits,
    /// Next byte to look at.
    pos: usize,
    /// First byte of the current line.
    line_start: usize,
    /// First byte of the request line, once seen.
    request_line: Option<usize>,
    /// First byte of the header section, once the request line ended.
    headers_start: Option<usize>,
    /// Header lines seen so far.
    fields: usize,
}

impl HeadScanner {
    pub(crate) fn new(limits: HeadLimits) -> Self {
        HeadScanner {
            limits,
            pos: 0,
            line_start: 0,
            request_line: None,
            headers_start: None,
            fields: 0,
        }
    }

    /// Looks at the bytes not seen yet. `buf` must start with the bytes given
    /// to the previous calls. Gives the span of the head once it is complete,
    /// `None` while more bytes are needed, or the error to answer.
    ///
    /// PATCH: a line at a time, not a byte at a time. The size checks grow
    /// with the position in a line, so checking a line's last byte before
    /// its LF fails exactly when checking each byte did.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<Option<HeadSpan>, HeadError> {
        while let Some(new) = buf.get(self.pos..).filter(|new| !new.is_empty()) {
            let Some(offset) = new.iter().position(|&b| b == b'\n') else {
                // No line end yet: what arrived of the line must fit.
                self.check_sizes(buf.len() - 1)?;
                self.pos = buf.len();
                return Ok(None);
            };
            let at = self.pos + offset;
            if offset > 0 {
                self.check_sizes(at - 1)?;
            }
            // `buf` holds every byte scanned so far, so the one before the
            // LF is there even if it came in an earlier call.
            if at == 0 || buf.get(at - 1) != Some(&b'\r') {
                return Err(bad(
                    "bare LF in the request head (lines must end with CRLF)",
                ));
            }
            self.pos = at + 1;
            if let Some(span) = self.end_of_line(at)? {
                return Ok(Some(span));
            }
        }
        Ok(None)
    }

    /// A line ended with the LF at `at`; gives the head's span if it was the
    /// empty line closing the header section.
    fn end_of_line(&mut self, at: usize) -> Result<Option<HeadSpan>, HeadError> {
        // The line without its CRLF.
        let length = at.saturating_sub(1).saturating_sub(self.line_start);
        let next = at + 1;
        match (self.request_line, self.headers_start) {
            // Empty lines before the request line are skipped (RFC 9112 §2.2),
            // but count against the request-line limit.
            (None, _) if length == 0 => {
                if next > self.limits.request_line {
                    return Err(bad("too many empty lines before the request line"));
                }
            }
            (None, _) => {
                if length > self.limits.request_line {
                    return Err(request_line_too_long(self.limits));
                }
                self.request_line = Some(self.line_start);
                self.headers_start = Some(next);
            }
            (Some(start), Some(_)) if length == 0 => {
                return Ok(Some(HeadSpan { start, end: next }));
            }
            (Some(_), _) => {
                self.fields += 1;
                if self.fields > self.limits.header_count {
                    return Err(error(
                        431,
                        format!("more than {} header fields", self.limits.header_count),
                    ));
                }
            }
        }
        self.line_start = next;
        Ok(None)
    }

    /// Fails as soon as the line or header section in progress is too long.
    fn check_sizes(&self, at: usize) -> Result<(), HeadError> {
        let line = at + 1 - self.line_start;
        match self.headers_start {
            // One byte of slack: the last byte may be the CR of the CRLF.
            None if line > self.limits.request_line + 1 => Err(request_line_too_long(self.limits)),
            Some(start) if at + 1 - start > self.limits.header_bytes => Err(error(
                431,
                format!(
                    "header section larger than {} bytes",
                    self.limits.header_bytes
                ),
            )),
            _ => Ok(()),
        }
    }
}

fn request_line_too_long(limits: HeadLimits) -> HeadError {
    error(
        414,
        format!("request line longer than {} bytes", limits.request_line),
    )
}

/// How the body of a request is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed and checked request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub method: Method,
    /// The target in origin-form (`/path?query`), or `*` (OPTIONS), or an
    /// authority (CONNECT).
    pub target: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
    pub framing: Framing,
    /// The client lets the connection stay open after this request.
    pub keep_alive: bool,
    /// The framing is doubtful (Transfer-Encoding with Content-Length): close
    /// after the answer (RFC 9112 §6.3).
    pub close_after: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
}

/// Parses a complete head: the bytes of a [`HeadSpan`], from the request
/// line to the CRLF ending the header section.
pub(crate) fn parse_head(head: &[u8]) -> Result<Head, HeadError> {
    // The scanner checked that every LF follows a CR.
    let mut lines = head.split(|&b| b == b'\n').map(|line| {
        // Cannot fail on the scanner's output; a line without its CR would
        // simply keep its last byte and fail the checks below.
        line.strip_suffix(b"\r").unwrap_or(line)
    });
    let request_line = lines.next().unwrap_or(&[]);
    let (method, raw_target, version) = parse_request_line(request_line)?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        headers.push(parse_field_line(line)?);
    }
    let target = normalize_target(&method, raw_target)?;
    check_host(&version, &headers)?;
    let framing = parse_framing(&version, &headers)?;
    let expect_continue = parse_expect(&version, &headers)?;
    let (close, keep_alive_token, upgrade) = connection_tokens(&headers);
    let keep_alive = !close && !upgrade && (version >= HTTPVersion(1, 1) || keep_alive_token);
    let close_after = framing == Framing::Chunked && field_count(&headers, "Content-Length") > 0;
    Ok(Head {
        method,
        target,
        version,
        headers,
        framing,
        keep_alive,
        close_after,
        expect_continue,
    })
}

/// `tchar` of RFC 9110 §5.6.2, one lookup per byte (PATCH: header names
/// are checked byte by byte on every request).
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// `method SP request-target SP HTTP-version`.
fn parse_request_line(line: &[u8]) -> Result<(Method, &[u8], HTTPVersion), HeadError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or(&[]);
    let target = parts.next();
    let version = parts.next();
    let (target, version) = match (target, version) {
        (Some(target), Some(version)) => (target, version),
        _ => {
            return Err(bad(format!(
                "request line {} is not \"method target HTTP-version\"",
                quote(line)
            )))
        }
    };
    if !is_token(method) {
        return Err(bad(format!("method {} is not a token", quote(method))));
    }
    if target.is_empty() {
        return Err(bad(
            "empty request target (two spaces in the request line?)",
        ));
    }
    if let Some(&b) = target.iter().find(|&&b| !(0x21..=0x7e).contains(&b)) {
        return Err(bad(format!(
            "request target {} contains the byte 0x{:02x}",
            quote(target),
            b
        )));
    }
    let version = parse_version(version)?;
    // Every byte was checked to be a tchar: ASCII, so this cannot fail.
    let method = std::str::from_utf8(method)
        .ok()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| bad("method is not ASCII"))?;
    Ok((method, target, version))
}

/// `HTTP/DIGIT.DIGIT`: 1.0 and 1.1 are served (1.x as 1.1, RFC 9110 §6.2);
/// any other well-formed version gets 505.
fn parse_version(version: &[u8]) -> Result<HTTPVersion, HeadError> {
    let malformed = || bad(format!("malformed HTTP version {}", quote(version)));
    let digits = version.strip_prefix(b"HTTP/").ok_or_else(malformed)?;
    let (major, minor) = match digits {
        [major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            (major - b'0', minor - b'0')
        }
        _ => return Err(malformed()),
    };
    match (major, minor) {
        (1, 0) => Ok(HTTPVersion(1, 0)),
        (1, _) => Ok(HTTPVersion(1, 1)),
        _ => Err(error(
            505,
            format!(
                "HTTP/{}.{} is not supported; use HTTP/1.1 or HTTP/1.0",
                major, minor
            ),
        )),
    }
}

/// `field-name ":" OWS field-value OWS`, strictly.
fn parse_field_line(line: &[u8]) -> Result<Header, HeadError> {
    if matches!(line.first(), Some(b' ') | Some(b'\t')) {
        return Err(bad(format!(
            "header line {} starts with whitespace (obsolete line folding)",
            quote(line)
        )));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| bad(format!("header line {} has no colon", quote(line))))?;
    let (name, rest) = line.split_at(colon);
    let value = rest.get(1..).unwrap_or(&[]);
    if matches!(name.last(), Some(b' ') | Some(b'\t')) {
        return Err(bad(format!(
            "whitespace between header name {} and its colon",
            quote(name)
        )));
    }
    if !is_token(name) {
        return Err(bad(format!("header name {} is not a token", quote(name))));
    }
    let value = trim_ows(value);
    if let Some(&b) = value
        .iter()
        .find(|&&b| !(b == b'\t' || (0x20..=0x7e).contains(&b)))
    {
        return Err(bad(format!(
            "header {} has the byte 0x{:02x} in its value (only visible ASCII is accepted)",
            quote(name),
            b
        )));
    }
    let field = HeaderField::from_bytes(name.to_vec()).map_err(|_| bad("header name not ASCII"))?;
    let value =
        AsciiString::from_ascii(value.to_vec()).map_err(|_| bad("header value not ASCII"))?;
    Ok(Header { field, value })
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The target as the handler sees it: origin-form for absolute-form,
/// asterisk-form only for OPTIONS, authority-form only for CONNECT.
fn normalize_target(method: &Method, target: &[u8]) -> Result<String, HeadError> {
    // The request line parser let through visible ASCII only.
    let text = std::str::from_utf8(target).map_err(|_| bad("request target is not ASCII"))?;
    if *method == Method::Connect {
        return authority_form(text);
    }
    if text.starts_with('/') {
        return Ok(text.to_owned());
    }
    if text == "*" {
        return if *method == Method::Options {
            Ok(text.to_owned())
        } else {
            Err(bad("the target \"*\" is only for OPTIONS"))
        };
    }
    absolute_form(text)
}

/// `host:port`, the only target CONNECT takes.
fn authority_form(text: &str) -> Result<String, HeadError> {
    let port_ok = |port: &str| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port_ok(port) && !text.contains('/') => {
            Ok(text.to_owned())
        }
        _ => Err(bad(format!(
            "CONNECT needs a host:port target, not {}",
            quote(text.as_bytes())
        ))),
    }
}

/// `http://authority/path?query` becomes `/path?query`.
fn absolute_form(text: &str) -> Result<String, HeadError> {
    let invalid = || {
        bad(format!(
            "request target {} is neither a path nor an http URL",
            quote(text.as_bytes())
        ))
    };
    let (scheme, rest) = text.split_once("://").ok_or_else(invalid)?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(invalid());
    }
    let path_at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(path_at);
    if authority.is_empty() || authority.contains('#') {
        return Err(invalid());
    }
    Ok(if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{}", path)
    })
}

fn field_count(headers: &[Header], name: &'static str) -> usize {
    headers.iter().filter(|h| h.field.equiv(name)).count()
}

fn field_values<'a>(
    headers: &'a [Header],
    name: &'static str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// Elements of a comma-separated list spread over every field `name`.
fn list_elements<'a>(
    headers: &'a [Header],
    name: &'static str,
) -> impl Iterator<Item = &'a str> + 'a {
    field_values(headers, name)
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|element| !element.is_empty())
}

/// HTTP/1.1 requires exactly one Host (RFC 9112 §3.2).
fn check_host(version: &HTTPVersion, headers: &[Header]) -> Result<(), HeadError> {
    match field_count(headers, "Host") {
        0 if *version >= HTTPVersion(1, 1) => Err(bad("HTTP/1.1 request without a Host header")),
        0 | 1 => Ok(()),
        _ => Err(bad("more than one Host header")),
    }
}

/// The framing of the body (RFC 9112 §6): chunked is the only transfer
/// coding, it wins over Content-Length, and Content-Length must be exactly
/// one field of digits.
fn parse_framing(version: &HTTPVersion, headers: &[Header]) -> Result<Framing, HeadError> {
    if field_count(headers, "Transfer-Encoding") > 0 {
        return parse_transfer_encoding(version, headers);
    }
    let mut lengths = field_values(headers, "Content-Length");
    let length = match (lengths.next(), lengths.next()) {
        (None, _) => return Ok(Framing::None),
        (Some(length), None) => length,
        (Some(_), Some(_)) => return Err(bad("more than one Content-Length header")),
    };
    parse_content_length(length).map(Framing::Length)
}

fn parse_transfer_encoding(
    version: &HTTPVersion,
    headers: &[Header],
) -> Result<Framing, HeadError> {
    if *version < HTTPVersion(1, 1) {
        return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    let mut chunked = 0;
    for coding in list_elements(headers, "Transfer-Encoding") {
        if !coding.eq_ignore_ascii_case("chunked") {
            return Err(error(
                501,
                format!(
                    "transfer coding {} is not supported; only chunked is",
                    quote(coding.as_bytes())
                ),
            ));
        }
        chunked += 1;
    }
    match chunked {
        0 => Err(bad("empty Transfer-Encoding header")),
        1 => Ok(Framing::Chunked),
        _ => Err(bad("chunked applied more than once")),
    }
}

/// `1*DIGIT` that fits in a u64.
fn parse_content_length(text: &str) -> Result<u64, HeadError> {
    let not_a_number = || {
        bad(format!(
            "Content-Length {} is not a number",
            quote(text.as_bytes())
        ))
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_number());
    }
    text.bytes()
        .try_fold(0u64, |sum, digit| {
            sum.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .ok_or_else(|| {
            bad(format!(
                "Content-Length {} is too large",
                quote(text.as_bytes())
            ))
        })
}

/// `Expect: 100-continue` is the only expectation met (and ignored from
/// HTTP/1.0 clients, RFC 9110 §10.1.1); any other gets 417.
fn parse_expect(version: &HTTPVersion, headers: &[Header]) -> Result<bool, HeadError> {
    let mut expects_continue = false;
    for expectation in list_elements(headers, "Expect") {
        if !expectation.eq_ignore_ascii_case("100-continue") {
            return Err(error(
                417,
                format!(
                    "expectation {} is not supported",
                    quote(expectation.as_bytes())
                ),
            ));
        }
        expects_continue = true;
    }
    Ok(expects_continue && *version >= HTTPVersion(1, 1))
}

/// `close`, `keep-alive` and `upgrade` among the Connection options.
fn connection_tokens(headers: &[Header]) -> (bool, bool, bool) {
    let mut tokens = (false, false, false);
    for option in list_elements(headers, "Connection") {
        if option.eq_ignore_ascii_case("close") {
            tokens.0 = true;
        } else if option.eq_ignore_ascii_case("keep-alive") {
            tokens.1 = true;
        } else if option.eq_ignore_ascii_case("upgrade") {
            tokens.2 = true;
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        request_line: 64,
        header_bytes: 256,
        header_count: 4,
    };

    /// Scans `bytes` in one go.
    fn scan(bytes: &[u8]) -> Result<Option<HeadSpan>, HeadError> {
        HeadScanner::new(LIMITS).scan(bytes)
    }

    /// Scans and parses a whole head.
    fn parse(text: &str) -> Result<Head, HeadError> {
        let bytes = text.as_bytes();
        let span = scan(bytes)?.expect("a complete head");
        assert_eq!(span.end, bytes.len(), "head ends where the text does");
        parse_head(&bytes[span.start..span.end])
    }

    fn status(text: &str) -> u16 {
        match parse(text) {
            Ok(_) => 200,
            Err(e) => e.status,
        }
    }

    fn get_with(header: &str) -> String {
        format!("POST / HTTP/1.1\r\nHost: a\r\n{}\r\n\r\n", header)
    }

    #[test]
    fn scanner_finds_the_end_byte_by_byte() {
        let text = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT";
        let mut scanner = HeadScanner::new(LIMITS);
        let mut found = None;
        for end in 1..=text.len() {
            if let Some(span) = scanner.scan(&text[..end]).unwrap() {
                found = Some((end, span));
                break;
            }
        }
        let (end, span) = found.unwrap();
        assert_eq!(end, text.len() - 4);
        assert_eq!(span, HeadSpan { start: 2, end });
    }

    /// The scanner as it was before it went a line at a time: a byte at a
    /// time, remembering whether the last byte was a CR.
    struct Bytewise {
        scanner: HeadScanner,
        after_cr: bool,
    }

    impl Bytewise {
        fn scan(&mut self, buf: &[u8]) -> Result<Option<HeadSpan>, HeadError> {
            let s = &mut self.scanner;
            for (offset, &byte) in buf[s.pos..].iter().enumerate() {
                let at = s.pos + offset;
                if byte == b'\n' {
                    if !self.after_cr {
                        return Err(bad(
                            "bare LF in the request head (lines must end with CRLF)",
                        ));
                    }
                    if let Some(span) = s.end_of_line(at)? {
                        s.pos = at + 1;
                        return Ok(Some(span));
                    }
                } else {
                    s.check_sizes(at)?;
                }
                self.after_cr = byte == b'\r';
            }
            s.pos = buf.len();
            Ok(None)
        }
    }

    #[test]
    fn scanner_matches_the_bytewise_one_on_any_input_in_any_pieces() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        // Short lines (many heads end, or hit the field count) and long
        // ones (the size limits, before and after their LF arrives).
        let alphabets: [&[u8]; 2] = [
            b"aaaaaaaa \r\n\r\n:",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        ];
        for case in 0..6000 {
            let alphabet = alphabets[case % 2];
            let len = next(400);
            let text: Vec<u8> = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
            let mut lines = HeadScanner::new(LIMITS);
            let mut bytes = Bytewise {
                scanner: HeadScanner::new(LIMITS),
                after_cr: false,
            };
            let mut end = 0;
            while end < text.len() {
                end = (end + 1 + next(40)).min(text.len());
                let got = lines.scan(&text[..end]);
                let want = bytes.scan(&text[..end]);
                assert_eq!(got, want, "{:?} up to {}", quote(&text), end);
                if !matches!(got, Ok(None)) {
                    break;
                }
            }
        }
    }

    #[test]
    fn scanner_needs_more_bytes() {
        assert_eq!(scan(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(scan(b""), Ok(None));
    }

    #[test]
    fn bare_lf_anywhere_is_400() {
        assert_eq!(scan(b"GET / HTTP/1.1\n").unwrap_err().status, 400);
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\nHost: a\n\r\n").unwrap_err().status,
            400
        );
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\nHost: a\r\n\n").unwrap_err().status,
            400
        );
        assert_eq!(scan(b"\nGET / HTTP/1.1\r\n\r\n").unwrap_err().status, 400);
    }

    #[test]
    fn long_request_line_is_414_before_it_ends() {
        let long = format!("GET /{} HTTP/1.1", "a".repeat(80));
        let err = scan(long.as_bytes()).unwrap_err();
        assert_eq!(err.status, 414);
        // Exactly at the limit passes.
        let line = format!("GET /{} HTTP/1.1", "a".repeat(64 - 14));
        assert_eq!(line.len(), 64);
        assert!(parse(&format!("{}\r\nHost: a\r\n\r\n", line)).is_ok());
        let line = format!("GET /{} HTTP/1.1", "a".repeat(65 - 14));
        assert_eq!(
            scan(format!("{}\r\n", line).as_bytes()).unwrap_err().status,
            414
        );
    }

    #[test]
    fn endless_empty_lines_are_refused() {
        assert_eq!(scan("\r\n".repeat(40).as_bytes()).unwrap_err().status, 400);
    }

    #[test]
    fn large_or_many_headers_are_431() {
        let big = format!("GET / HTTP/1.1\r\nX: {}", "v".repeat(300));
        assert_eq!(scan(big.as_bytes()).unwrap_err().status, 431);
        let many = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
        assert_eq!(scan(many.as_bytes()).unwrap_err().status, 431);
        let four = "GET / HTTP/1.1\r\nHost: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert!(parse(four).is_ok());
    }

    #[test]
    fn a_good_request() {
        let head = parse("GET /items/a?x=1 HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\n\r\n").unwrap();
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.target, "/items/a?x=1");
        assert_eq!(head.version, HTTPVersion(1, 1));
        assert_eq!(head.framing, Framing::None);
        assert!(head.keep_alive && !head.close_after && !head.expect_continue);
        assert_eq!(head.headers[1].value.as_str(), "z");
    }

    #[test]
    fn request_line_errors_are_400() {
        for line in [
            "GET /",
            "GET",
            "GET  / HTTP/1.1",
            "GET / HTTP/1.1 ",
            "GET /a b HTTP/1.1",
            "GET /\x01 HTTP/1.1",
            "GET /\x7f HTTP/1.1",
            "GET /\u{e9} HTTP/1.1",
            "G(T / HTTP/1.1",
            "GET / http/1.1",
            "GET / HTTP/1.10",
            "GET / HTTP/1",
            "GET / HTTP/a.b",
            "GET\t/ HTTP/1.1",
            "GET / HTTP/1.1\r",
        ] {
            let text = format!("{}\r\nHost: a\r\n\r\n", line);
            assert_eq!(status(&text), 400, "{:?}", line);
        }
    }

    #[test]
    fn versions() {
        for (version, expected) in [
            ("HTTP/2.0", 505),
            ("HTTP/3.0", 505),
            ("HTTP/9.9", 505),
            ("HTTP/0.9", 505),
            ("HTTP/1.0", 200),
            ("HTTP/1.1", 200),
        ] {
            let text = format!("GET / {}\r\nHost: a\r\n\r\n", version);
            assert_eq!(status(&text), expected, "{}", version);
        }
        let head = parse("GET / HTTP/1.2\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(head.version, HTTPVersion(1, 1));
    }

    #[test]
    fn header_line_errors_are_400() {
        for line in [
            "NoColon",
            "Name : value",
            "Name\t: value",
            " Folded: value",
            "\tFolded: value",
            "Bad Name: value",
            "Bad(Name): value",
            ": value",
            "X: a\x01b",
            "X: a\rb",
            "X: caf\u{e9}",
        ] {
            assert_eq!(status(&get_with(line)), 400, "{:?}", line);
        }
        // A continuation line after a good field is obs-fold too.
        assert_eq!(status(&get_with("X: a\r\n  b")), 400);
    }

    #[test]
    fn host_is_required_once_in_http_1_1() {
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 200);
        let err = parse("GET / HTTP/1.1\r\n\r\n").unwrap_err();
        assert!(err.message.contains("Host"), "{}", err.message);
    }

    #[test]
    fn target_forms() {
        let head =
            parse("GET http://example.com/items/a/count?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
                .unwrap();
        assert_eq!(head.target, "/items/a/count?x=1");
        let head = parse("GET HTTP://example.com HTTP/1.1\r\nHost: e\r\n\r\n").unwrap();
        assert_eq!(head.target, "/");
        let head = parse("GET https://example.com?q HTTP/1.1\r\nHost: e\r\n\r\n").unwrap();
        assert_eq!(head.target, "/?q");
        assert_eq!(
            parse("OPTIONS * HTTP/1.1\r\nHost: e\r\n\r\n")
                .unwrap()
                .target,
            "*"
        );
        assert_eq!(
            parse("CONNECT example.com:443 HTTP/1.1\r\nHost: e\r\n\r\n")
                .unwrap()
                .target,
            "example.com:443"
        );
        for line in [
            "GET * HTTP/1.1",
            "GET example.com:443 HTTP/1.1",
            "CONNECT /path HTTP/1.1",
            "CONNECT example.com HTTP/1.1",
            "GET ftp://example.com/ HTTP/1.1",
            "GET http:///path HTTP/1.1",
            "GET items HTTP/1.1",
        ] {
            assert_eq!(
                status(&format!("{}\r\nHost: a\r\n\r\n", line)),
                400,
                "{}",
                line
            );
        }
    }

    #[test]
    fn content_length() {
        let head = parse(&get_with("Content-Length: 0028")).unwrap();
        assert_eq!(head.framing, Framing::Length(28));
        let head = parse(&get_with("Content-Length: 18446744073709551615")).unwrap();
        assert_eq!(head.framing, Framing::Length(u64::MAX));
        for value in [
            "-1",
            "abc",
            "1e3",
            "+2",
            "28, 28",
            "2 8",
            "0x10",
            "18446744073709551616",
            "18446744073709551617",
            "",
        ] {
            let text = get_with(&format!("Content-Length: {}", value));
            let err = parse(&text).unwrap_err();
            assert_eq!(err.status, 400, "{:?}", value);
            assert!(err.message.contains("Content-Length"), "{}", err.message);
        }
        let err = parse(&get_with("Content-Length: 1e3")).unwrap_err();
        assert_eq!(err.message, "Content-Length \"1e3\" is not a number");
        let twice = get_with("Content-Length: 28\r\nContent-Length: 28");
        assert_eq!(status(&twice), 400);
    }

    #[test]
    fn transfer_encoding() {
        for value in ["chunked", "Chunked", "CHUNKED", " chunked ", "chunked,"] {
            let head = parse(&get_with(&format!("Transfer-Encoding:{}", value))).unwrap();
            assert_eq!(head.framing, Framing::Chunked, "{:?}", value);
            assert!(!head.close_after);
        }
        for (value, expected) in [
            ("gzip", 501),
            ("gzip, chunked", 501),
            ("chunked, gzip", 501),
            ("identity", 501),
            ("chunked;q=1", 501),
            ("chunked, chunked", 400),
            ("", 400),
            (",", 400),
        ] {
            let text = get_with(&format!("Transfer-Encoding: {}", value));
            assert_eq!(status(&text), expected, "{:?}", value);
        }
        let text = get_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked");
        assert_eq!(status(&text), 400);
        let http10 = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(http10), 400);
    }

    #[test]
    fn transfer_encoding_wins_over_content_length_and_closes() {
        let head = parse(&get_with("Content-Length: 5\r\nTransfer-Encoding: chunked")).unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert!(head.close_after);
        // Content-Length is ignored, even malformed.
        let head = parse(&get_with("Content-Length: x\r\nTransfer-Encoding: chunked")).unwrap();
        assert!(head.close_after);
    }

    #[test]
    fn expectations() {
        assert!(
            parse(&get_with("Expect: 100-continue"))
                .unwrap()
                .expect_continue
        );
        assert!(
            parse(&get_with("Expect: 100-Continue"))
                .unwrap()
                .expect_continue
        );
        assert_eq!(status(&get_with("Expect: 200-ok")), 417);
        let http10 = "POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n";
        assert!(!parse(http10).unwrap().expect_continue);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(
            parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(!parse(&get_with("Connection: close")).unwrap().keep_alive);
        assert!(
            !parse(&get_with("Connection: keep-alive, Close"))
                .unwrap()
                .keep_alive
        );
        assert!(!parse(&get_with("Connection: upgrade")).unwrap().keep_alive);
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        let http10 = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        assert!(parse(http10).unwrap().keep_alive);
    }

    #[test]
    fn quoting_escapes_and_truncates() {
        assert_eq!(quote(b"a\"b\x01"), "\"a\\\"b\\x01\"");
        let long = quote(&[b'x'; 100]);
        assert!(long.ends_with("...\"") && long.len() < 80);
    }
}
