use crate::common::{HTTPVersion, Header, StatusCode};
use crate::limits::WRITE_BUFFER_BYTES;
use httpdate::HttpDate;
use std::cmp::Ordering;
use std::sync::mpsc::Receiver;

use std::io::Result as IoResult;
use std::io::{self, Cursor, Read, Write};

use std::fs::File;

use std::str::FromStr;
use std::time::SystemTime;

/// Object representing an HTTP response whose purpose is to be given to a `Request`.
///
/// Some headers cannot be changed. Trying to define the value
/// of one of these will have no effect:
///
///  - `Connection`
///  - `Trailer`
///  - `Transfer-Encoding`
///  - `Upgrade`
///
/// Some headers have special behaviors:
///
///  - `Content-Encoding`: If you define this header, the library
///    will assume that the data from the `Read` object has the specified encoding
///    and will just pass-through.
///
///  - `Content-Length`: The length of the data should be set manually
///    using the `Reponse` object's API. Attempting to set the value of this
///    header will be equivalent to modifying the size of the data but the header
///    itself may not be present in the final result.
///
///  - `Content-Type`: You may only set this header to one value at a time. If you
///    try to set it more than once, the existing value will be overwritten. This
///    behavior differs from the default for most headers, which is to allow them to
///    be set multiple times in the same response.
///
pub struct Response<R> {
    reader: R,
    status_code: StatusCode,
    headers: Vec<Header>,
    data_length: Option<usize>,
    chunked_threshold: Option<usize>,
}

/// A `Response` without a template parameter.
pub type ResponseBox = Response<Box<dyn Read + Send>>;

/// Transfer encoding to use when sending the message.
/// Note that only *supported* encoding are listed here.
#[derive(Copy, Clone)]
enum TransferEncoding {
    Identity,
    Chunked,
}

impl FromStr for TransferEncoding {
    type Err = ();

    fn from_str(input: &str) -> Result<TransferEncoding, ()> {
        if input.eq_ignore_ascii_case("identity") {
            Ok(TransferEncoding::Identity)
        } else if input.eq_ignore_ascii_case("chunked") {
            Ok(TransferEncoding::Chunked)
        } else {
            Err(())
        }
    }
}

/// PATCH: appends the value of a `Date` header now, formatted at most once
/// a second per thread (an HTTP date has whole seconds).
fn push_http_date_now(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != second {
            *last = (second, HttpDate::from(now).to_string());
        }
        out.extend_from_slice(last.1.as_bytes());
    })
}

/// PATCH: the body to send, as given or read whole first (for a client
/// that needs the length of a body that has none). An enum and not a
/// `Box<dyn Read>`: one allocation less per answer.
enum Body<R> {
    AsGiven(R),
    ReadWhole(Cursor<Vec<u8>>),
}

impl<R: Read> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Body::AsGiven(reader) => reader.read(buf),
            Body::ReadWhole(whole) => whole.read(buf),
        }
    }
}

/// PATCH: appends `n` in decimal. The head is written without `fmt`,
/// whose machinery cost more than the rest of a small answer's head.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// PATCH: room for the status line and the fields the library adds
/// (`Server`, `Date`, `Connection`, the framing) in an answer's head buffer.
const HEAD_ROOM: usize = 256;

/// PATCH: an answer's head as `print` and `print_bytes` write it. The
/// library's own fields are written as text, in the order they had as
/// headers: Connection and Upgrade, Server, Date first (Server and Date
/// unless the caller gives them); the caller's fields; Connection: close
/// and the framing last.
struct HeadLayout<'a> {
    http_version: &'a HTTPVersion,
    status_code: StatusCode,
    upgrade: Option<&'a str>,
    closing: bool,
    transfer_encoding: Option<TransferEncoding>,
    data_length: Option<usize>,
}

impl HeadLayout<'_> {
    /// A buffer with room for the head with `fields` and `body` more bytes.
    fn allocate<'f>(
        &self,
        fields: impl Iterator<Item = (&'f [u8], &'f [u8])>,
        body: usize,
    ) -> Vec<u8> {
        let fields: usize = fields
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum();
        Vec::with_capacity(HEAD_ROOM + fields + body)
    }

    fn push<'f>(
        &self,
        head: &mut Vec<u8>,
        fields: impl Iterator<Item = (&'f [u8], &'f [u8])> + Clone,
    ) {
        let given = |wanted: &[u8]| {
            fields
                .clone()
                .any(|(name, _)| name.eq_ignore_ascii_case(wanted))
        };
        head.extend_from_slice(b"HTTP/");
        push_decimal(head, self.http_version.0.into());
        head.push(b'.');
        push_decimal(head, self.http_version.1.into());
        head.push(b' ');
        push_decimal(head, self.status_code.0.into());
        head.push(b' ');
        head.extend_from_slice(self.status_code.default_reason_phrase().as_bytes());
        head.extend_from_slice(b"\r\n");
        if let Some(upgrade) = self.upgrade {
            head.extend_from_slice(b"Connection: upgrade\r\n");
            // The token is checked like any header value.
            if let Ok(header) = Header::from_bytes(&b"Upgrade"[..], upgrade.as_bytes()) {
                // Writing to a Vec cannot fail.
                let _ = write!(head, "Upgrade: {}\r\n", header.value);
            }
        }
        if !given(b"Server") {
            head.extend_from_slice(b"Server: tiny-http (Rust)\r\n");
        }
        if !given(b"Date") {
            head.extend_from_slice(b"Date: ");
            push_http_date_now(head);
            head.extend_from_slice(b"\r\n");
        }
        for (name, value) in fields {
            head.extend_from_slice(name);
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        if self.upgrade.is_none() && self.closing {
            head.extend_from_slice(b"Connection: close\r\n");
        }
        match (self.transfer_encoding, self.data_length) {
            (Some(TransferEncoding::Chunked), _) => {
                head.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
            }
            (Some(TransferEncoding::Identity), Some(length)) => {
                head.extend_from_slice(b"Content-Length: ");
                push_decimal(head, length as u64);
                head.extend_from_slice(b"\r\n");
            }
            _ => (),
        }
        head.extend_from_slice(b"\r\n");
    }
}

/// PATCH: fields the library writes itself, which an answer from borrowed
/// parts may not give (`Response::add_header` drops them silently).
const LIBRARY_FIELDS: [&str; 5] = [
    "Connection",
    "Content-Length",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
];

/// PATCH: a field an answer from borrowed parts may carry: a token for a
/// name that is not one of `LIBRARY_FIELDS`, a value of visible ASCII,
/// spaces and tabs (the checks `Header::from_bytes` makes, and no CR or LF
/// that could end the head early).
pub(crate) fn check_field(name: &str, value: &str) -> IoResult<()> {
    let token = !name.is_empty() && name.bytes().all(crate::head::is_tchar);
    let library = LIBRARY_FIELDS
        .iter()
        .any(|owned| owned.eq_ignore_ascii_case(name));
    let text = value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
    if token && !library && text {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("the answer field {name:?}: {value:?} cannot be sent"),
    ))
}

/// PATCH: status 1xx, 204 and 304 answers must not include a body (shared
/// by `print` and `print_bytes`).
fn forbids_body(status_code: StatusCode) -> bool {
    matches!(status_code.0, 100..=199 | 204 | 304)
}

/// PATCH: writes an answer whose fields and body the caller lends, for
/// `Request::respond_bytes`, which checked `fields` (`check_field`): no
/// `Response`, no `Header` built, and one `send` for a small answer. The
/// body's length is always sent as `Content-Length` (valid for every
/// client, HTTP/1.0 included); `print` may choose chunked for the same
/// body.
pub(crate) fn print_bytes<W: Write>(
    mut writer: W,
    http_version: &HTTPVersion,
    status_code: StatusCode,
    fields: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
    closing: bool,
) -> IoResult<()> {
    let send_body = !head_only && !forbids_body(status_code) && !body.is_empty();
    let inline_body = send_body && body.len() <= WRITE_BUFFER_BYTES / 2;
    let fields = fields
        .iter()
        .map(|(name, value)| (name.as_bytes(), value.as_bytes()));
    let layout = HeadLayout {
        http_version,
        status_code,
        upgrade: None,
        closing,
        transfer_encoding: Some(TransferEncoding::Identity),
        data_length: Some(body.len()),
    };
    let mut head = layout.allocate(fields.clone(), if inline_body { body.len() } else { 0 });
    layout.push(&mut head, fields);
    if inline_body {
        head.extend_from_slice(body);
        return writer.write_all(&head);
    }
    writer.write_all(&head)?;
    if send_body {
        writer.write_all(body)?;
    }
    Ok(())
}

fn choose_transfer_encoding(
    status_code: StatusCode,
    request_headers: &[Header],
    http_version: &HTTPVersion,
    entity_length: &Option<usize>,
    has_additional_headers: bool,
    chunked_threshold: usize,
) -> TransferEncoding {
    use crate::util;

    // HTTP 1.0 doesn't support other encoding
    if *http_version <= (1, 0) {
        return TransferEncoding::Identity;
    }

    // Per section 3.3.1 of RFC7230:
    // A server MUST NOT send a Transfer-Encoding header field in any response with a status code
    // of 1xx (Informational) or 204 (No Content).
    if status_code.0 < 200 || status_code.0 == 204 {
        return TransferEncoding::Identity;
    }

    // parsing the request's TE header
    let user_request = request_headers
        .iter()
        // finding TE
        .find(|h| h.field.equiv("TE"))
        // getting its value
        .map(|h| h.value.clone())
        // getting the corresponding TransferEncoding
        .and_then(|value| {
            // getting list of requested elements
            let mut parse = util::parse_header_value(value.as_str()); // TODO: remove conversion

            // sorting elements by most priority
            parse.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(Ordering::Equal));

            // trying to parse each requested encoding
            for value in parse.iter() {
                // q=0 are ignored
                if value.1 <= 0.0 {
                    continue;
                }

                if let Ok(te) = TransferEncoding::from_str(value.0) {
                    return Some(te);
                }
            }

            // encoding not found
            None
        });

    if let Some(user_request) = user_request {
        return user_request;
    }

    // if we have additional headers, using chunked
    if has_additional_headers {
        return TransferEncoding::Chunked;
    }

    // if we don't have a Content-Length, or if the Content-Length is too big, using chunks writer
    if entity_length
        .as_ref()
        .is_none_or(|val| *val >= chunked_threshold)
    {
        return TransferEncoding::Chunked;
    }

    // Identity by default
    TransferEncoding::Identity
}

impl<R> Response<R>
where
    R: Read,
{
    /// Creates a new Response object.
    ///
    /// The `additional_headers` argument is a receiver that
    ///  may provide headers even after the response has been sent.
    ///
    /// All the other arguments are straight-forward.
    pub fn new(
        status_code: StatusCode,
        headers: Vec<Header>,
        data: R,
        data_length: Option<usize>,
        additional_headers: Option<Receiver<Header>>,
    ) -> Response<R> {
        let mut response = Response {
            reader: data,
            status_code,
            headers: Vec::with_capacity(16),
            data_length,
            chunked_threshold: None,
        };

        for h in headers {
            response.add_header(h)
        }

        // dummy implementation
        if let Some(additional_headers) = additional_headers {
            for h in additional_headers.iter() {
                response.add_header(h)
            }
        }

        response
    }

    /// Set a threshold for `Content-Length` where we chose chunked
    /// transfer. Notice that chunked transfer might happen regardless of
    /// this threshold, for instance when the request headers indicate
    /// it is wanted or when there is no `Content-Length`.
    pub fn with_chunked_threshold(mut self, length: usize) -> Response<R> {
        self.chunked_threshold = Some(length);
        self
    }

    /// Convert the response into the underlying `Read` type.
    ///
    /// This is mainly useful for testing as it must consume the `Response`.
    pub fn into_reader(self) -> R {
        self.reader
    }

    /// The current `Content-Length` threshold for switching over to
    /// chunked transfer. The default is 32768 bytes. Notice that
    /// chunked transfer is mutually exclusive with sending a
    /// `Content-Length` header as per the HTTP spec.
    pub fn chunked_threshold(&self) -> usize {
        self.chunked_threshold.unwrap_or(32768)
    }

    /// Adds a header to the list.
    /// Does all the checks.
    pub fn add_header<H>(&mut self, header: H)
    where
        H: Into<Header>,
    {
        let header = header.into();

        // ignoring forbidden headers
        if header.field.equiv("Connection")
            || header.field.equiv("Trailer")
            || header.field.equiv("Transfer-Encoding")
            || header.field.equiv("Upgrade")
        {
            return;
        }

        // if the header is Content-Length, setting the data length
        if header.field.equiv("Content-Length") {
            if let Ok(val) = usize::from_str(header.value.as_str()) {
                self.data_length = Some(val)
            }

            return;
        // if the header is Content-Type and it's already set, overwrite it
        } else if header.field.equiv("Content-Type") {
            if let Some(content_type_header) = self
                .headers
                .iter_mut()
                .find(|h| h.field.equiv("Content-Type"))
            {
                content_type_header.value = header.value;
                return;
            }
        }

        self.headers.push(header);
    }

    /// Returns the same request, but with an additional header.
    ///
    /// Some headers cannot be modified and some other have a
    ///  special behavior. See the documentation above.
    #[inline]
    pub fn with_header<H>(mut self, header: H) -> Response<R>
    where
        H: Into<Header>,
    {
        self.add_header(header.into());
        self
    }

    /// Returns the same request, but with a different status code.
    #[inline]
    pub fn with_status_code<S>(mut self, code: S) -> Response<R>
    where
        S: Into<StatusCode>,
    {
        self.status_code = code.into();
        self
    }

    /// Returns the same request, but with different data.
    pub fn with_data<S>(self, reader: S, data_length: Option<usize>) -> Response<S>
    where
        S: Read,
    {
        Response {
            reader,
            headers: self.headers,
            status_code: self.status_code,
            data_length,
            chunked_threshold: self.chunked_threshold,
        }
    }

    /// Prints the HTTP response to a writer.
    ///
    /// This function is the one used to send the response to the client's socket.
    /// Therefore you shouldn't expect anything pretty-printed or even readable.
    ///
    /// The HTTP version and headers passed as arguments are used to
    ///  decide which features (most notably, encoding) to use.
    ///
    /// Note: does not flush the writer.
    pub fn raw_print<W: Write>(
        self,
        writer: W,
        http_version: HTTPVersion,
        request_headers: &[Header],
        do_not_send_body: bool,
        upgrade: Option<&str>,
    ) -> IoResult<()> {
        self.print(
            writer,
            http_version,
            request_headers,
            do_not_send_body,
            upgrade,
            false,
        )
    }

    /// PATCH: `raw_print`, plus `Connection: close` when `closing` is true.
    ///
    /// `add_header` drops `Connection` headers (the library owns them), so
    /// this is how the server tells a client that it closes the connection
    /// after this answer.
    pub(crate) fn print<W: Write>(
        mut self,
        mut writer: W,
        http_version: HTTPVersion,
        request_headers: &[Header],
        do_not_send_body: bool,
        upgrade: Option<&str>,
        closing: bool,
    ) -> IoResult<()> {
        let mut transfer_encoding = Some(choose_transfer_encoding(
            self.status_code,
            request_headers,
            &http_version,
            &self.data_length,
            false, /* TODO */
            self.chunked_threshold(),
        ));

        // handling upgrade
        if upgrade.is_some() {
            transfer_encoding = None;
        }

        // if the transfer encoding is identity, the content length must be known ; therefore if
        // we don't know it, we buffer the entire response first here
        // while this is an expensive operation, it is only ever needed for clients using HTTP 1.0
        let (mut reader, data_length) = match (self.data_length, transfer_encoding) {
            (Some(l), _) => (Body::AsGiven(self.reader), Some(l)),
            (None, Some(TransferEncoding::Identity)) => {
                let mut buf = Vec::new();
                self.reader.read_to_end(&mut buf)?;
                let l = buf.len();
                (Body::ReadWhole(Cursor::new(buf)), Some(l))
            }
            _ => (Body::AsGiven(self.reader), None),
        };

        // checking whether to ignore the body of the response
        let do_not_send_body = do_not_send_body || forbids_body(self.status_code);

        // PATCH: the head, and a body of known length up to half of
        // `WRITE_BUFFER_BYTES`, go out in one write from one buffer sized
        // for them; a larger body follows through a buffer of its own. The
        // engine hands `print` its socket unbuffered, so a small answer
        // costs one allocation of its size and one `send`. The head is
        // laid out by `HeadLayout`.
        let send_body = !do_not_send_body && data_length.is_some_and(|l| l >= 1);
        let inline_body = match (send_body, transfer_encoding, data_length) {
            (true, Some(TransferEncoding::Identity), Some(l)) if l <= WRITE_BUFFER_BYTES / 2 => l,
            _ => 0,
        };
        let fields = self
            .headers
            .iter()
            .map(|h| (h.field.as_str().as_bytes(), h.value.as_bytes()));
        let layout = HeadLayout {
            http_version: &http_version,
            status_code: self.status_code,
            upgrade,
            closing,
            transfer_encoding,
            data_length,
        };
        let mut head = layout.allocate(fields.clone(), inline_body);
        layout.push(&mut head, fields);
        if inline_body > 0 {
            reader.take(inline_body as u64).read_to_end(&mut head)?;
            return writer.write_all(&head);
        }
        writer.write_all(&head)?;
        drop(head);

        // sending the body (through a buffer made only for a body sent)
        if !do_not_send_body {
            match transfer_encoding {
                Some(TransferEncoding::Chunked) => {
                    use chunked_transfer::Encoder;

                    let mut writer = io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
                    // Dropping the encoder writes the last chunk.
                    io::copy(&mut reader, &mut Encoder::new(&mut writer))?;
                    writer.flush()?;
                }

                Some(TransferEncoding::Identity) => {
                    assert!(data_length.is_some());
                    let data_length = data_length.unwrap();

                    if data_length >= 1 {
                        let mut writer = io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
                        io::copy(&mut reader, &mut writer)?;
                        writer.flush()?;
                    }
                }

                _ => (),
            }
        }

        Ok(())
    }

    /// Retrieves the current value of the `Response` status code
    pub fn status_code(&self) -> StatusCode {
        self.status_code
    }

    /// Retrieves the current value of the `Response` data length
    pub fn data_length(&self) -> Option<usize> {
        self.data_length
    }

    /// Retrieves the current list of `Response` headers
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }
}

impl<R> Response<R>
where
    R: Read + Send + 'static,
{
    /// Turns this response into a `Response<Box<Read + Send>>`.
    pub fn boxed(self) -> ResponseBox {
        Response {
            reader: Box::new(self.reader) as Box<dyn Read + Send>,
            status_code: self.status_code,
            headers: self.headers,
            data_length: self.data_length,
            chunked_threshold: self.chunked_threshold,
        }
    }
}

impl Response<File> {
    /// Builds a new `Response` from a `File`.
    ///
    /// The `Content-Type` will **not** be automatically detected,
    ///  you must set it yourself.
    pub fn from_file(file: File) -> Response<File> {
        let file_size = file.metadata().ok().map(|v| v.len() as usize);

        Response::new(
            StatusCode(200),
            Vec::with_capacity(0),
            file,
            file_size,
            None,
        )
    }
}

impl Response<Cursor<Vec<u8>>> {
    pub fn from_data<D>(data: D) -> Response<Cursor<Vec<u8>>>
    where
        D: Into<Vec<u8>>,
    {
        let data = data.into();
        let data_len = data.len();

        Response::new(
            StatusCode(200),
            Vec::with_capacity(0),
            Cursor::new(data),
            Some(data_len),
            None,
        )
    }

    pub fn from_string<S>(data: S) -> Response<Cursor<Vec<u8>>>
    where
        S: Into<String>,
    {
        let data = data.into();
        let data_len = data.len();

        Response::new(
            StatusCode(200),
            vec![
                Header::from_bytes(&b"Content-Type"[..], &b"text/plain; charset=UTF-8"[..])
                    .unwrap(),
            ],
            Cursor::new(data.into_bytes()),
            Some(data_len),
            None,
        )
    }
}

impl Response<io::Empty> {
    /// Builds an empty `Response` with the given status code.
    pub fn empty<S>(status_code: S) -> Response<io::Empty>
    where
        S: Into<StatusCode>,
    {
        Response::new(
            status_code.into(),
            Vec::with_capacity(0),
            io::empty(),
            Some(0),
            None,
        )
    }

    /// DEPRECATED. Use `empty` instead.
    pub fn new_empty(status_code: StatusCode) -> Response<io::Empty> {
        Response::empty(status_code)
    }
}

impl Clone for Response<io::Empty> {
    fn clone(&self) -> Response<io::Empty> {
        Response {
            reader: io::empty(),
            status_code: self.status_code,
            headers: self.headers.clone(),
            data_length: self.data_length,
            chunked_threshold: self.chunked_threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::push_decimal;

    #[test]
    fn decimals_are_written_whole() {
        for n in [0, 7, 10, 200, 404, 1_000_000, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }
}
