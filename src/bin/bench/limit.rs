//! The one-process limit: a minimal std-only HTTP/1.1 server, a thread per
//! connection, serde parse, each item applied to four in-process maps (one
//! per would-be replica) with per-tenant counts: what the work costs with no
//! distribution at all. The service is measured against it.

use serde::Deserialize;
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "ID", alias = "id", alias = "Id")]
    id: i64,
    #[serde(alias = "Tenant")]
    tenant: String,
}

/// One map: ID → tenant, and items per tenant.
#[derive(Default)]
struct Replica {
    tenant_of: HashMap<i64, String>,
    counts: HashMap<String, u64>,
}

impl Replica {
    fn apply(&mut self, item: &Item) {
        if let Some(old) = self.tenant_of.insert(item.id, item.tenant.clone())
            && let Some(count) = self.counts.get_mut(&old)
        {
            *count -= 1;
        }
        *self.counts.entry(item.tenant.clone()).or_default() += 1;
    }
}

type Replicas = Arc<[Mutex<Replica>; 4]>;

/// Serves until dropped; its maps go once its last connection closes.
pub struct LimitServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for LimitServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then ends.
        let _ = TcpStream::connect(self.addr);
    }
}

impl LimitServer {
    pub fn start() -> io::Result<LimitServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let replicas: Replicas = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let replicas = replicas.clone();
                thread::spawn(move || {
                    let _ = serve(stream, &replicas);
                });
            }
        });
        Ok(LimitServer { addr, stop })
    }
}

fn serve(stream: TcpStream, replicas: &Replicas) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut body = Vec::new();
    let mut out = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut length = 0;
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            if line.trim_end().is_empty() {
                break;
            }
            if let Some((key, value)) = line.split_once(':')
                && key.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
        let (status, answer) = answer(&method, &path, &body, replicas);
        // Formatted into a buffer first: `write!` straight to the socket
        // sends each piece of the format in its own segment (six per answer).
        out.clear();
        write!(
            out,
            "HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        )?;
        writer.write_all(&out)?;
    }
}

fn answer(method: &str, path: &str, body: &[u8], replicas: &Replicas) -> (u16, String) {
    match (method, path.strip_prefix("/items")) {
        ("POST", Some("")) => match serde_json::from_slice::<Vec<Item>>(body) {
            Ok(items) => {
                for replica in replicas.iter() {
                    let mut replica = replica.lock().unwrap_or_else(|e| e.into_inner());
                    for item in &items {
                        replica.apply(item);
                    }
                }
                (
                    200,
                    format!("{{\"status\":\"OK\",\"accepted\":{}}}", items.len()),
                )
            }
            Err(_) => (400, "{\"status\":\"KO\"}".to_string()),
        },
        ("GET", Some(rest)) => {
            let tenant = rest
                .strip_prefix('/')
                .and_then(|r| r.strip_suffix("/count"))
                .unwrap_or("");
            let count = replicas[0]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .counts
                .get(tenant)
                .copied()
                .unwrap_or(0);
            (
                200,
                format!("{{\"tenant\":\"{tenant}\",\"counter\":{count}}}"),
            )
        }
        _ => (404, "{\"status\":\"KO\"}".to_string()),
    }
}
