//! A tiny HTTP/1.1 client for the admin listener's tests: one request per
//! connection over a std `TcpStream` (`Connection: close`), enough for
//! fixed-length answers. Not a general client.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A loopback `127.0.0.1:PORT` nothing listens on now.
pub fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
    let port = listener.local_addr().expect("bound socket").port();
    format!("127.0.0.1:{port}")
}

/// An answer: status code and body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// Sends `METHOD path` to `addr` with `headers` and `body`; `None` when
/// nothing answers (connection refused, reset, or a malformed answer).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Answer> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        body: body.to_string(),
    })
}

/// `GET path`; panics when nothing answers.
pub fn get(addr: &str, path: &str) -> Answer {
    request(addr, "GET", path, &[], "")
        .unwrap_or_else(|| panic!("no answer to GET {path} from {addr}"))
}

/// An answer with its head (status line and headers, as sent).
#[derive(Debug)]
pub struct RawAnswer {
    /// The status code.
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    /// The body, as text.
    pub body: String,
}

impl RawAnswer {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends the bytes `raw` (a whole request, written by the test) to `addr`
/// and reads the answer until the server closes; `None` when nothing
/// answers.
pub fn exchange(addr: &str, raw: &[u8]) -> Option<RawAnswer> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(raw).ok()?;
    let mut got = Vec::new();
    // An answer the server sends before closing is kept even if the close
    // resets the connection.
    let _ = stream.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(RawAnswer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}
