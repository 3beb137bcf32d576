//! raw-drain: the throughput ceiling of a beanstalkd client. std only — a
//! blocking `TcpStream` per connection, no runtime, no parsing beyond the
//! reply line — so it measures what beanstalkd and the loopback allow.
//!
//! ```text
//! raw-drain put ADDR TUBE N BODY           put N copies of BODY on TUBE,
//!                                          pipelined (a writer and a reader)
//! raw-drain drain ADDR TUBE CONNS [pipe]   CONNS threads, each reserve-with-timeout 0
//!                                          → delete until TIMED_OUT; with `pipe`
//!                                          the delete and the next reserve go in
//!                                          one write
//! ```
//!
//! Prints one JSON line: `{"jobs":..,"secs":..,"jobs_per_s":..}`, timed from
//! the moment every connection is ready.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::Instant;

/// beanstalkc's put defaults, which the seed framework used: priority 2^31,
/// delay 0, TTR 120.
const PUT_ARGS: &str = "2147483648 0 120";

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: Vec<u8>,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| fail(&format!("{addr}: {e}")));
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        Conn {
            reader: BufReader::with_capacity(64 * 1024, stream.try_clone().expect("clone socket")),
            writer: stream,
            line: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    /// The next reply line, `\r\n` included.
    fn reply(&mut self) -> &[u8] {
        self.line.clear();
        if self.reader.read_until(b'\n', &mut self.line).expect("read") == 0 {
            fail("beanstalkd closed the connection");
        }
        &self.line
    }

    fn expect(&mut self, command: &str, reply: &str) {
        self.send(command.as_bytes());
        let got = self.reply();
        if !got.starts_with(reply.as_bytes()) {
            fail(&format!("{command:?} got {}", String::from_utf8_lossy(got)));
        }
    }
}

fn fail(why: &str) -> ! {
    eprintln!("raw-drain: {why}");
    std::process::exit(1)
}

fn number(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail(&format!("not a number: {}", bytes.escape_ascii())))
}

/// Reserves and deletes on one connection until the tube is empty.
fn drain_one(addr: &str, tube: &str, ready: &Barrier, pipe: bool) -> u64 {
    let mut conn = Conn::open(addr);
    conn.expect(&format!("watch {tube}\r\n"), "WATCHING");
    conn.expect("ignore default\r\n", "WATCHING");
    ready.wait();
    let mut body = Vec::new();
    let mut done = 0;
    conn.send(b"reserve-with-timeout 0\r\n");
    loop {
        let line = conn.reply();
        if line == b"TIMED_OUT\r\n" {
            return done;
        }
        // RESERVED <id> <bytes>\r\n<body>\r\n
        let fields: Vec<&[u8]> = line
            .strip_prefix(b"RESERVED ")
            .and_then(|rest| rest.strip_suffix(b"\r\n"))
            .unwrap_or_else(|| fail(&format!("expected RESERVED, got {}", line.escape_ascii())))
            .split(|&b| b == b' ')
            .collect();
        let (id, size) = (number(fields[0]), number(fields[1]));
        body.resize(usize::try_from(size).expect("body size") + 2, 0);
        conn.reader.read_exact(&mut body).expect("read body");
        let delete = format!("delete {id}\r\n");
        if pipe {
            conn.send(format!("{delete}reserve-with-timeout 0\r\n").as_bytes());
        } else {
            conn.send(delete.as_bytes());
        }
        if conn.reply() != b"DELETED\r\n" {
            fail(&format!("delete {id} failed"));
        }
        done += 1;
        if !pipe {
            conn.send(b"reserve-with-timeout 0\r\n");
        }
    }
}

fn drain(addr: &str, tube: &str, conns: usize, pipe: bool) -> (u64, f64) {
    let ready = Arc::new(Barrier::new(conns + 1));
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (addr, tube, ready) = (addr.to_owned(), tube.to_owned(), Arc::clone(&ready));
            std::thread::spawn(move || drain_one(&addr, &tube, &ready, pipe))
        })
        .collect();
    ready.wait();
    let started = Instant::now();
    let jobs = threads
        .into_iter()
        .map(|t| t.join().expect("drain thread"))
        .sum();
    (jobs, started.elapsed().as_secs_f64())
}

fn put(addr: &str, tube: &str, n: u64, body: &str) -> (u64, f64) {
    let mut conn = Conn::open(addr);
    conn.expect(&format!("use {tube}\r\n"), "USING");
    let command = format!("put {PUT_ARGS} {}\r\n{body}\r\n", body.len());
    let started = Instant::now();
    let mut writer = BufWriter::with_capacity(64 * 1024, conn.writer.try_clone().expect("clone"));
    let sender = std::thread::spawn(move || {
        for _ in 0..n {
            writer.write_all(command.as_bytes()).expect("write");
        }
        writer.flush().expect("flush");
    });
    for _ in 0..n {
        let line = conn.reply();
        if !line.starts_with(b"INSERTED ") {
            fail(&format!("put got {}", line.escape_ascii()));
        }
    }
    sender.join().expect("put thread");
    (n, started.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (jobs, secs) = match args.as_slice() {
        ["put", addr, tube, n, body] => put(addr, tube, number(n.as_bytes()), body),
        ["drain", addr, tube, conns] => drain(addr, tube, number(conns.as_bytes()) as usize, false),
        ["drain", addr, tube, conns, "pipe"] => {
            drain(addr, tube, number(conns.as_bytes()) as usize, true)
        }
        _ => {
            eprintln!(
                "usage: raw-drain put ADDR TUBE N BODY | raw-drain drain ADDR TUBE CONNS [pipe]"
            );
            std::process::exit(2);
        }
    };
    println!(
        "{{\"jobs\":{jobs},\"secs\":{secs:.6},\"jobs_per_s\":{:.0}}}",
        jobs as f64 / secs
    );
}
