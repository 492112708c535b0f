//! Mangled requests never make the engine panic, and the server keeps
//! serving. Alone in its binary: it installs a panic hook that counts every
//! panic of the process.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{echo, options, start, wait_for, Client};
use tiny_http::ServerOptions;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// xorshift: reproducible "random" mutations without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&[u8]] = &[
    b"GET /a?b=c HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    b"PUT /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
];

/// A seed with a few bytes replaced, inserted or removed.
fn mangle(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = SEEDS[rng.below(SEEDS.len())].to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len());
        let byte = match rng.below(6) {
            0 => b'\r',
            1 => b'\n',
            2 => b' ',
            3 => b':',
            4 => b'0' + rng.below(10) as u8,
            _ => rng.next() as u8,
        };
        match rng.below(3) {
            0 => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            _ => {
                bytes.remove(at);
            }
        }
    }
    bytes
}

#[test]
fn mangled_requests_never_panic_the_engine() {
    std::panic::set_hook(Box::new(|info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        eprintln!("panic: {}", info);
    }));
    let server = start(
        ServerOptions {
            header_timeout: Duration::from_millis(200),
            body_grace: Duration::from_millis(200),
            close_linger: Duration::from_millis(50),
            ..options()
        },
        echo,
    );
    let addr = server.local_addr();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..400 {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let _ = stream.write_all(&mangle(&mut rng));
        // Close our side: the server answers or times out, then closes.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = std::io::copy(&mut stream, &mut std::io::sink());
    }
    wait_for("every connection closed", || {
        server.stats().snapshot().open == 0
    });
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
    let mut client = Client::connect(addr);
    assert_eq!(client.get("/after").status, 200);
    let stats = server.stats().snapshot();
    assert_eq!(stats.handler_panics, 0);
    println!("{:?}", stats);
}
