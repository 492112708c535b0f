//! A small WebDriver client: drives headless chromium through chromedriver's
//! HTTP+JSON protocol (W3C WebDriver), with std TCP and serde_json only.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Longest a WebDriver command may take (a navigation waits for the load).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest chromedriver may take to listen.
const STARTUP: Duration = Duration::from_secs(20);
/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The size of the page's viewport, in CSS pixels.
#[derive(Clone, Copy)]
enum Screen {
    Window { width: u32, height: u32 },
    Phone { width: u32, height: u32 },
}

/// A headless chromium under its own chromedriver. Dropping it deletes the
/// session, then kills chromedriver and everything it started.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

/// The path of `name` in `PATH`, if it is there.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless chromium whose window is
    /// `width`×`height` CSS pixels. `None`, after printing why, when chromium
    /// or chromedriver is not installed: the caller skips its test.
    pub fn start(width: u32, height: u32) -> Option<Browser> {
        Self::start_with(Screen::Window { width, height })
    }

    /// Like [`Browser::start`], with a phone's screen: chromium's own
    /// emulation of a `width`×`height` mobile viewport (a desktop window
    /// cannot be narrower than 500 px).
    pub fn start_phone(width: u32, height: u32) -> Option<Browser> {
        Self::start_with(Screen::Phone { width, height })
    }

    fn start_with(screen: Screen) -> Option<Browser> {
        let (Some(chromium), Some(chromedriver)) =
            (find_program("chromium"), find_program("chromedriver"))
        else {
            println!("skipped: chromium or chromedriver is not installed");
            return None;
        };
        let mut last_error = String::new();
        // A port picked free can be taken before chromedriver binds it; retry.
        for _ in 0..3 {
            match Self::try_start(&chromium, &chromedriver, screen) {
                Ok(browser) => return Some(browser),
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start chromium under chromedriver: {last_error}");
    }

    fn try_start(chromium: &Path, chromedriver: &Path, screen: Screen) -> Result<Browser, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let profile = fresh_dir("chromium-profile");
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that drop can end chromium too.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run chromedriver: {e}"))?;
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            profile,
        };
        browser.wait_until_ready()?;
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            format!("--user-data-dir={}", browser.profile.display()),
        ];
        let mut options = json!({"binary": chromium, "args": args});
        match screen {
            Screen::Window { width, height } => {
                options["args"]
                    .as_array_mut()
                    .expect("args is an array")
                    .push(json!(format!("--window-size={width},{height}")));
            }
            Screen::Phone { width, height } => {
                options["mobileEmulation"] = json!({"deviceMetrics": {
                    "width": width, "height": height, "pixelRatio": 1, "mobile": true, "touch": true,
                }});
            }
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
        }}});
        let created = browser.command("POST", "/session", Some(&capabilities))?;
        browser.session = created["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {created}"))?
            .to_string();
        Ok(browser)
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(status) = self.command("GET", "/status", None)
                && status["ready"] == true
            {
                return Ok(());
            }
            if let Ok(Some(exit)) = self.driver.try_wait() {
                return Err(format!("chromedriver exited: {exit}"));
            }
            if Instant::now() > deadline {
                return Err(format!("chromedriver not ready within {STARTUP:?}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// One WebDriver command; its `value`, or the WebDriver error.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        // chromedriver says "Connection: close" but may keep the socket
        // open: read by Content-Length, not to the end.
        let mut reader = BufReader::new(stream);
        let (status, length, chunked) =
            read_head(&mut reader).map_err(|e| format!("{method} {path}: {e}"))?;
        let payload = match (length, chunked) {
            (Some(length), _) => {
                let mut payload = vec![0; length];
                reader.read_exact(&mut payload).map(|()| payload)
            }
            (None, true) => read_chunked(&mut reader),
            (None, false) => {
                let mut payload = Vec::new();
                reader.read_to_end(&mut payload).map(|_| payload)
            }
        }
        .map_err(|e| format!("{method} {path}: {e}"))?;
        let payload = String::from_utf8_lossy(&payload);
        let json: Value = serde_json::from_str(&payload)
            .map_err(|e| format!("{method} {path}: {status}, not JSON ({e}): {payload}"))?;
        let value = json.get("value").cloned().unwrap_or(Value::Null);
        if status == 200 {
            Ok(value)
        } else {
            Err(format!("{method} {path}: {status} {value}"))
        }
    }

    fn session_command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.command(method, &path, body)
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        self.session_command("POST", "/url", Some(&json!({"url": url})));
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page.
    pub fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.session_command(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": args})),
        )
    }

    /// The first element matching the CSS `selector`.
    fn find(&self, selector: &str) -> String {
        let found = self.session_command(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": selector})),
        );
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element id for {selector} in {found}"))
            .to_string()
    }

    /// Clicks the element matching `selector`, as a user would.
    pub fn click(&self, selector: &str) {
        let element = self.find(selector);
        self.session_command(
            "POST",
            &format!("/element/{element}/click"),
            Some(&json!({})),
        );
    }

    /// Empties the input matching `selector` and types `text` into it.
    pub fn type_into(&self, selector: &str, text: &str) {
        let element = self.find(selector);
        self.session_command(
            "POST",
            &format!("/element/{element}/clear"),
            Some(&json!({})),
        );
        self.session_command(
            "POST",
            &format!("/element/{element}/value"),
            Some(&json!({"text": text})),
        );
    }

    /// The `textContent` of the element matching `selector` ("" if none).
    pub fn text(&self, selector: &str) -> String {
        let value = self.execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
            &[json!(selector)],
        );
        value.as_str().unwrap_or_default().to_string()
    }

    /// Polls `script` until it returns something truthy (not null, false,
    /// 0 or ""), and returns that; panics naming `what` after `patience`.
    pub fn wait_for(&self, what: &str, patience: Duration, script: &str, args: &[Value]) -> Value {
        let deadline = Instant::now() + patience;
        loop {
            let value = self.execute(script, args);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let page = self.execute("return document.body.innerText;", &[]);
                panic!(
                    "timed out after {patience:?} waiting until {what}; last value {value}; page:\n{}",
                    page.as_str().unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG of the window at `path`.
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.session_command("GET", "/screenshot", None);
        let png = base64_decode(encoded.as_str().expect("base64 text"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the screenshot dir");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.command("DELETE", &format!("/session/{}", self.session), None);
        }
        // chromedriver leads its own process group (see try_start); end the
        // group, in case a chromium outlived the session.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A new empty directory under the system temp dir.
fn fresh_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("dc-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// The status, `Content-Length` and whether the body is chunked.
fn read_head(reader: &mut impl BufRead) -> io::Result<(u16, Option<usize>, bool)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            return Ok((status, length, chunked));
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            length = value.parse().ok();
        } else if name == "transfer-encoding" {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim(), 16).map_err(io::Error::other)?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk)?;
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// Standard base64 (with or without padding) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c:?}"),
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .map(value)
        .collect();
    let mut bytes = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let bits = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | u32::from(*d) << (18 - 6 * i));
        let [_, a, b, c] = bits.to_be_bytes();
        bytes.extend_from_slice(&[a, b, c][..group.len() - 1]);
    }
    bytes
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aGk"), b"hi");
}
