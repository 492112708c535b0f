//! Helpers for the tests of `Server::serve`: a raw HTTP client, clients
//! bound to other loopback addresses, and waiting for a condition.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::io::FromRawFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Request, Response, Server, ServerOptions, Serving};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Starts `Server::serve` on 127.0.0.1 with `options`.
pub fn start<H>(options: ServerOptions, handler: H) -> Serving
where
    H: Fn(Request) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    Server::serve(listener, options, handler).expect("serve")
}

/// Options for tests: the error hook says `E<status>: <message>` in
/// `text/x-test`, so tests can tell the hook was used.
pub fn options() -> ServerOptions {
    ServerOptions {
        error_body: Arc::new(|status, message| {
            (
                format!("E{}: {}", status, message).into_bytes(),
                "text/x-test",
            )
        }),
        ..ServerOptions::default()
    }
}

/// A handler that answers `method url body-length remote-ip body`.
pub fn echo(mut request: Request) {
    let mut body = Vec::new();
    request.as_reader().read_to_end(&mut body).expect("body");
    let text = format!(
        "{} {} {} {} {}",
        request.method(),
        request.url(),
        body.len(),
        request
            .remote_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default(),
        String::from_utf8_lossy(&body)
    );
    let _ = request.respond(Response::from_string(text));
}

/// Polls `condition` until it holds or `PATIENCE` passes.
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {}", what);
        thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until exactly `busy` of `server`'s connections are busy. A
/// connection turns idle when its thread marks it so, just after writing
/// its answer: a client can have the answer before that.
pub fn wait_busy(server: &Serving, busy: u64) {
    wait_for(&format!("{busy} busy connections"), || {
        server.stats().snapshot().busy == busy
    });
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn closes(&self) -> bool {
        self.header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A raw HTTP client.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// Connects from `source` (another loopback address).
    pub fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> Client {
        Client::from_stream(connect_from(source, addr).expect("connect from"))
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Client { stream, reader }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("send");
    }

    /// Sends, and ignores a failure (the server may have closed).
    pub fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> io::Result<()> {
        self.stream.write_all(bytes.as_ref())
    }

    pub fn get(&mut self, path: &str) -> Reply {
        self.send(format!("GET {} HTTP/1.1\r\nHost: t\r\n\r\n", path));
        self.reply()
    }

    /// Reads one response with its body.
    pub fn reply(&mut self) -> Reply {
        self.read_reply(false).expect("a reply")
    }

    /// Reads one response to HEAD: no body whatever the headers say.
    pub fn head_reply(&mut self) -> Reply {
        self.read_reply(true).expect("a reply")
    }

    pub fn read_reply(&mut self, head_only: bool) -> io::Result<Reply> {
        let status_line = self.line()?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("status line {:?}", status_line)))?;
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status / 100 == 1 || status == 204 || status == 304 {
            return Ok(reply);
        }
        if let Some(length) = reply.header("Content-Length") {
            let mut body = vec![0; length.parse().expect("length")];
            self.reader.read_exact(&mut body)?;
            reply.body = body;
        } else if reply
            .header("Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            reply.body = self.chunked()?;
        }
        Ok(reply)
    }

    fn chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size = usize::from_str_radix(self.line()?.trim(), 16).expect("chunk size");
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk)?;
            chunk.truncate(size);
            body.extend(chunk);
        }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        Ok(line.trim_end_matches("\r\n").to_owned())
    }

    /// True if the server closed the connection (EOF, or a reset) with
    /// nothing more to read, within `PATIENCE`.
    pub fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
        }
    }

    /// True if nothing arrives (and the connection stays open) for `time`.
    /// Reads nothing.
    pub fn quiet_for(&mut self, time: Duration) -> bool {
        if !self.reader.buffer().is_empty() {
            return false;
        }
        self.stream.set_read_timeout(Some(time)).expect("timeout");
        let mut byte = [0u8; 1];
        let quiet = match self.stream.peek(&mut byte) {
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            Ok(_) => false,
        };
        self.stream
            .set_read_timeout(Some(PATIENCE))
            .expect("timeout");
        quiet
    }
}

/// A TCP connection to `to` from the local address `source`: std cannot
/// bind a socket before connecting it, so this goes through libc.
pub fn connect_from(source: Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
    let SocketAddr::V4(to) = to else {
        return Err(io::Error::other("IPv4 only"));
    };
    let sockaddr = |addr: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let from = sockaddr(SocketAddrV4::new(source, 0));
    let to = sockaddr(to);
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // addresses are valid sockaddr_in values that outlive the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let from_ptr = &from as *const libc::sockaddr_in as *const libc::sockaddr;
        if libc::bind(fd, from_ptr, length) != 0 {
            return Err(io::Error::last_os_error());
        }
        let to_ptr = &to as *const libc::sockaddr_in as *const libc::sockaddr;
        if libc::connect(fd, to_ptr, length) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// Threads of this process now.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of this process, in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
