//! PATCH: request bodies for `Server::serve`: the process-wide budget of
//! buffered body bytes, and a strict decoder of chunked bodies (RFC 9112
//! §7.1) that buffers the decoded body in memory.
//!
//! The decoder reads from any `BufRead`; the server gives it a socket reader
//! whose reads never block past the body deadline, so a slow body shows up
//! here as a `TimedOut` error.

use std::convert::TryFrom;
use std::io::{self, BufRead, Cursor, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::head::quote;
use crate::limits::{MAX_CHUNK_LINE_BYTES, MAX_TRAILER_BYTES};

/// The bytes of body that all requests together may hold in memory.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    limit: u64,
    /// Shared with [`crate::ServerStats`], which shows it.
    used: Arc<AtomicU64>,
}

impl BodyBudget {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        BodyBudget::counting_in(limit, Arc::default())
    }

    /// A budget that keeps the bytes held in `used`, which others may read.
    pub(crate) fn counting_in(limit: u64, used: Arc<AtomicU64>) -> Arc<Self> {
        Arc::new(BodyBudget { limit, used })
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget if they fit in what is left.
    fn take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// A request's share of the [`BodyBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl Reservation {
    pub(crate) fn new(budget: &Arc<BodyBudget>) -> Self {
        Reservation {
            budget: budget.clone(),
            bytes: 0,
        }
    }

    /// Adds `bytes` to the share; false (and nothing taken) when the budget
    /// has not that much left.
    pub(crate) fn grow(&mut self, bytes: u64) -> bool {
        let taken = self.budget.take(bytes);
        if taken {
            self.bytes += bytes;
        }
        taken
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// The body a handler reads: the buffered bytes, holding their share of the
/// budget until the request is dropped.
pub(crate) struct BufferedBody {
    bytes: Cursor<SharedBytes>,
    _reservation: Option<Reservation>,
}

/// A body shared between its reader and `Request::body_bytes`, so a
/// handler can parse it in place instead of copying it out.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl BufferedBody {
    pub(crate) fn new(bytes: Arc<Vec<u8>>, reservation: Option<Reservation>) -> Self {
        BufferedBody {
            bytes: Cursor::new(SharedBytes(bytes)),
            _reservation: reservation,
        }
    }
}

impl Read for BufferedBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.bytes.read(buf)
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The body is larger than the limit (413).
    TooLarge,
    /// The budget of buffered body bytes is spent (503).
    OverBudget,
    /// The chunked framing is broken (400); says what is wrong.
    Malformed(String),
    /// The socket failed, closed, or the body deadline passed (`TimedOut`).
    Io(io::Error),
}

impl From<io::Error> for BodyError {
    fn from(error: io::Error) -> Self {
        BodyError::Io(error)
    }
}

fn malformed(message: impl Into<String>) -> BodyError {
    BodyError::Malformed(message.into())
}

/// Decodes a whole chunked body from `source` into `out`, taking each
/// decoded byte from `reservation` first. Stops after the trailer section,
/// leaving what follows (a pipelined request) in `source`.
pub(crate) fn read_chunked<R: BufRead>(
    source: &mut R,
    max_bytes: u64,
    reservation: &mut Reservation,
    out: &mut Vec<u8>,
) -> Result<(), BodyError> {
    let mut line = Vec::new();
    loop {
        read_line(source, &mut line, MAX_CHUNK_LINE_BYTES, "chunk-size line")?;
        let size = parse_chunk_size(&line)?;
        if size == 0 {
            return read_trailers(source, &mut line);
        }
        let total = (out.len() as u64).saturating_add(size);
        if total > max_bytes {
            return Err(BodyError::TooLarge);
        }
        copy_chunk(source, size, reservation, out)?;
        expect_crlf(source)?;
    }
}

/// Appends `size` bytes of chunk data to `out`, reserving them as they come.
fn copy_chunk<R: BufRead>(
    source: &mut R,
    size: u64,
    reservation: &mut Reservation,
    out: &mut Vec<u8>,
) -> Result<(), BodyError> {
    let mut left = size;
    while left > 0 {
        let available = source.fill_buf()?;
        if available.is_empty() {
            return Err(eof("chunk data"));
        }
        let take = available
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        let piece = available.get(..take).unwrap_or(&[]);
        if !reservation.grow(piece.len() as u64) {
            return Err(BodyError::OverBudget);
        }
        out.extend_from_slice(piece);
        source.consume(take);
        left -= take as u64;
    }
    Ok(())
}

fn eof(what: &str) -> BodyError {
    BodyError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("connection closed in the {}", what),
    ))
}

/// Reads one line into `line` (without its CRLF). A bare LF, a CR not
/// followed by LF, or a line longer than `max` is malformed.
fn read_line<R: BufRead>(
    source: &mut R,
    line: &mut Vec<u8>,
    max: usize,
    what: &str,
) -> Result<(), BodyError> {
    line.clear();
    loop {
        let available = source.fill_buf()?;
        if available.is_empty() {
            return Err(eof(what));
        }
        let (piece, found) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (available.get(..at).unwrap_or(&[]), true),
            None => (available, false),
        };
        let used = piece.len() + usize::from(found);
        line.extend_from_slice(piece);
        source.consume(used);
        if line.len() > max + 1 {
            return Err(malformed(format!("{} longer than {} bytes", what, max)));
        }
        if found {
            return match line.pop() {
                Some(b'\r') if !line.contains(&b'\r') => Ok(()),
                Some(b'\r') => Err(malformed(format!("CR inside the {}", what))),
                _ => Err(malformed(format!("{} ends with a bare LF", what))),
            };
        }
    }
}

/// `chunk-size [ chunk-ext ]`: hex digits, then optionally `;` extensions,
/// which are ignored.
fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (hex, rest) = line.split_at(digits);
    if hex.is_empty() {
        return Err(malformed(format!(
            "chunk size {} is not a hex number",
            quote(line)
        )));
    }
    let rest = trim_start_ows(rest);
    if !(rest.is_empty() || rest.starts_with(b";")) {
        return Err(malformed(format!(
            "chunk-size line {} has junk after the size",
            quote(line)
        )));
    }
    if let Some(&b) = rest
        .iter()
        .find(|&&b| b != b'\t' && !(0x20..=0x7e).contains(&b))
    {
        return Err(malformed(format!(
            "chunk extension has the byte 0x{:02x}",
            b
        )));
    }
    hex.iter()
        .try_fold(0u64, |size, &digit| {
            let value = char::from(digit).to_digit(16)?;
            size.checked_mul(16)?.checked_add(u64::from(value))
        })
        .ok_or_else(|| malformed(format!("chunk size {} overflows", quote(hex))))
}

fn trim_start_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// The CRLF after chunk data.
fn expect_crlf<R: BufRead>(source: &mut R) -> Result<(), BodyError> {
    for expected in [b'\r', b'\n'] {
        let available = source.fill_buf()?;
        match available.first() {
            None => return Err(eof("chunk data")),
            Some(&b) if b == expected => source.consume(1),
            Some(_) => return Err(malformed("chunk data is not followed by CRLF")),
        }
    }
    Ok(())
}

/// Reads the trailer section up to its empty line, at most
/// `MAX_TRAILER_BYTES`; the fields are dropped.
fn read_trailers<R: BufRead>(source: &mut R, line: &mut Vec<u8>) -> Result<(), BodyError> {
    let mut total = 0usize;
    loop {
        read_line(source, line, MAX_TRAILER_BYTES, "trailer section")?;
        if line.is_empty() {
            return Ok(());
        }
        total += line.len() + 2;
        if total > MAX_TRAILER_BYTES {
            return Err(malformed(format!(
                "trailer section larger than {} bytes",
                MAX_TRAILER_BYTES
            )));
        }
        if matches!(line.first(), Some(b' ') | Some(b'\t')) || !line.contains(&b':') {
            return Err(malformed(format!(
                "trailer line {} is not a field",
                quote(line)
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_with(input: &[u8], max: u64, budget: u64) -> (Result<(), BodyError>, Vec<u8>, usize) {
        let budget = BodyBudget::new(budget);
        let mut reservation = Reservation::new(&budget);
        let mut source = input;
        let mut out = Vec::new();
        let result = read_chunked(&mut source, max, &mut reservation, &mut out);
        (result, out, source.len())
    }

    fn decode(input: &[u8]) -> Result<Vec<u8>, BodyError> {
        let (result, out, _) = decode_with(input, 1 << 20, 1 << 20);
        result.map(|()| out)
    }

    fn malformed_message(input: &[u8]) -> String {
        match decode(input) {
            Err(BodyError::Malformed(message)) => message,
            other => panic!("{:?} gave {:?}", String::from_utf8_lossy(input), other),
        }
    }

    #[test]
    fn decodes_and_stops_at_the_end() {
        let input = b"5\r\nhello\r\n1;name=value\r\n \r\nA\r\n0123456789\r\n0\r\n\r\nGET /";
        let (result, out, left) = decode_with(input, 100, 100);
        result.unwrap();
        assert_eq!(out, b"hello 0123456789");
        assert_eq!(left, 5, "the next request is left unread");
    }

    #[test]
    fn accepts_extensions_trailers_and_leading_zeros() {
        assert_eq!(
            decode(b"0005 ; a=b;c\r\nhello\r\n0\r\n\r\n").unwrap(),
            b"hello"
        );
        assert_eq!(
            decode(b"2\r\nhi\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n").unwrap(),
            b"hi"
        );
        assert_eq!(decode(b"0\r\n\r\n").unwrap(), b"");
        assert_eq!(
            decode(b"f\r\n0123456789abcde\r\n0\r\n\r\n").unwrap().len(),
            15
        );
    }

    #[test]
    fn bad_sizes_are_malformed() {
        for input in [
            &b"x\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"+5\r\nhello\r\n",
            b"0x5\r\nhello\r\n",
            b"5 5\r\nhello\r\n",
            b"5\x00\r\nhello\r\n",
            b"10000000000000000\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            malformed_message(input);
        }
        assert!(malformed_message(b"10000000000000000\r\n").contains("overflows"));
    }

    #[test]
    fn line_endings_are_strict() {
        malformed_message(b"5\nhello\r\n0\r\n\r\n");
        malformed_message(b"5\r\nhello\n0\r\n\r\n");
        malformed_message(b"5\r\nhelloXX0\r\n\r\n");
        malformed_message(b"5\r\nhello\r\n0\r\n\n");
        malformed_message(b"5\r\r\nhello\r\n0\r\n\r\n");
        malformed_message(b"5;a\rb\r\nhello\r\n0\r\n\r\n");
    }

    #[test]
    fn long_lines_and_trailers_are_bounded() {
        let mut long = b"5;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE_BYTES + 10));
        long.extend_from_slice(b"\r\n");
        malformed_message(&long);
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..(MAX_TRAILER_BYTES / 10 + 1) {
            trailers.extend_from_slice(b"X-A: 1234\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert!(malformed_message(&trailers).contains("trailer"));
        malformed_message(b"0\r\nnot a field\r\n\r\n");
        malformed_message(b"0\r\n folded: x\r\n\r\n");
    }

    #[test]
    fn early_end_is_an_io_error() {
        for input in [
            &b""[..],
            b"5\r\nhel",
            b"5\r\nhello",
            b"5\r\nhello\r\n",
            b"0\r\n",
        ] {
            match decode(input) {
                Err(BodyError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
                other => panic!("{:?}", other),
            }
        }
    }

    #[test]
    fn size_limit_is_413_before_the_data() {
        let (result, out, _) = decode_with(b"4\r\nabcd\r\n8\r\n", 10, 100);
        assert!(matches!(result, Err(BodyError::TooLarge)), "{:?}", result);
        assert_eq!(out, b"abcd");
    }

    #[test]
    fn budget_is_taken_as_the_body_grows_and_given_back() {
        let budget = BodyBudget::new(6);
        let mut first = Reservation::new(&budget);
        let mut out = Vec::new();
        read_chunked(
            &mut &b"4\r\nabcd\r\n0\r\n\r\n"[..],
            100,
            &mut first,
            &mut out,
        )
        .unwrap();
        assert_eq!(budget.used(), 4);
        let mut second = Reservation::new(&budget);
        let result = read_chunked(
            &mut &b"3\r\nabc\r\n0\r\n\r\n"[..],
            100,
            &mut second,
            &mut out,
        );
        assert!(matches!(result, Err(BodyError::OverBudget)), "{:?}", result);
        drop(second);
        assert_eq!(budget.used(), 4, "a refused piece takes nothing");
        drop(first);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn buffered_body_reads_and_releases() {
        let budget = BodyBudget::new(10);
        let mut reservation = Reservation::new(&budget);
        assert!(reservation.grow(3));
        assert!(!reservation.grow(8));
        let mut body = BufferedBody::new(Arc::new(b"abc".to_vec()), Some(reservation));
        let mut text = String::new();
        body.read_to_string(&mut text).unwrap();
        assert_eq!(text, "abc");
        assert_eq!(budget.used(), 3);
        drop(body);
        assert_eq!(budget.used(), 0);
    }
}
