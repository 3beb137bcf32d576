//! The admin listener attacked: a connection flood (idle and half-sent
//! requests) does not starve the worker of file descriptors or I/O; DNS
//! rebinding (`Host: evil.example`) reads nothing; another site's page can
//! neither act nor read; oversized and malformed requests are refused at
//! once; label values from the config cannot forge `/metrics` lines.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use beanbox_queue::Producer;
use beanbox_queue::testing::Beanstalkd;
use serde_json::Value;

use crate::deploy_support::{Modules, wait_watching, write_config};
use crate::http_support::{RawAnswer, exchange, free_addr, get};
use crate::worker_support::Runner;
use crate::worker_support::{TempDir, Worker, abc, connect, put, wait_deleted};

/// Connections the flood opens: many more than the listener serves at
/// once (64), more than the worker's descriptors ([`NOFILE`]).
const FLOOD: usize = 400;

/// The worker's descriptor limit in the flood test: systemd's default
/// soft limit (1024) scaled down, so that the flood would exhaust it.
const NOFILE: u64 = 256;

/// Puts `n` jobs on tube `m` and waits until each is done.
async fn serve_jobs(addr: &str, n: usize) {
    let mut producer = Producer::connect(addr).await.unwrap();
    let mut client = connect(addr).await;
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(put(&mut producer, "m", "task-one", abc(), None).await);
    }
    for id in ids {
        wait_deleted(&mut client, id).await;
    }
}

/// The number of descriptors process `pid` has open.
fn open_files(pid: u32) -> u64 {
    let dir = format!("/proc/{pid}/fd");
    std::fs::read_dir(&dir).map_or(0, |d| d.count() as u64)
}

/// Sets process `pid`'s descriptor limit (soft and hard) to `n`.
fn limit_files(pid: u32, n: u64) {
    use rustix::process::{Pid, Resource, Rlimit, prlimit};
    let pid = Pid::from_raw(i32::try_from(pid).unwrap()).expect("a process id");
    let limit = Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    prlimit(Some(pid), Resource::Nofile, limit).expect("cannot set the worker's file limit");
}

/// A request to `admin` with the given head lines (after the request
/// line; `Connection: close` is added) and body.
fn ask(admin: &str, request_line: &str, headers: &[&str], body: &str) -> RawAnswer {
    let mut raw = format!("{request_line}\r\n");
    for h in headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str(&format!(
        "Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    exchange(admin, raw.as_bytes()).unwrap_or_else(|| panic!("no answer to {request_line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_does_not_starve_the_worker() {
    let mut server = Beanstalkd::start();
    let addr = server.addr();
    let admin = free_addr();
    let args = ["--concurrency", "2", "--admin", &admin];
    let mut worker = Worker::hello(&addr, "m", &args);
    worker.wait_ready(&addr, "m", 2).await;
    assert_eq!(get(&admin, "/healthz").status, 200);
    limit_files(worker.pid(), NOFILE);
    let before = open_files(worker.pid());
    assert!(before < NOFILE / 2, "the worker has {before} files open");

    // Idle connections and half-sent requests (slowloris), all held open.
    let mut flood = Vec::new();
    let to: std::net::SocketAddr = admin.parse().unwrap();
    for n in 0..FLOOD {
        // A listener out of descriptors stops accepting: flood no further.
        let Ok(mut stream) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) else {
            break;
        };
        if n % 2 == 1 {
            let _ = stream.write_all(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ");
        }
        flood.push(stream);
    }
    // Jobs keep being served…
    serve_jobs(&addr, 5).await;
    // …and the worker still has descriptors to reconnect to beanstalkd.
    server.restart();
    worker.wait_ready(&addr, "m", 2).await;
    serve_jobs(&addr, 5).await;
    assert!(
        open_files(worker.pid()) < NOFILE - 64,
        "the flood holds the worker's descriptors"
    );

    // The listener closes every flood connection: those over its limit at
    // once, the others when their headers have not come within 10 s (the
    // 120 s here are a margin of 12).
    let flood = tokio::task::spawn_blocking(move || {
        flood
            .into_iter()
            .map(|mut stream| {
                stream
                    .set_read_timeout(Some(Duration::from_secs(120)))
                    .unwrap();
                let mut sink = Vec::new();
                match stream.read_to_end(&mut sink) {
                    Ok(_) => true,
                    Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                }
            })
            .filter(|closed| !closed)
            .count()
    });
    assert_eq!(flood.await.unwrap(), 0, "flood connections left open");
    let health = get(&admin, "/healthz");
    assert_eq!((health.status, health.body.trim()), (200, "ok"));
    assert!(
        worker.log().contains("too many connections"),
        "{}",
        worker.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_naming_another_host_are_refused() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let admin = free_addr();
    let port = admin.rsplit_once(':').unwrap().1.to_string();
    let modules = Modules::with(&["hello"]);
    let args = [
        "--modules",
        modules.as_str(),
        "--tube",
        "hello",
        "--concurrency",
        "1",
    ];
    let env = [
        ("BEANBOX_ADMIN", admin.as_str()),
        ("BEANBOX_ADMIN_HOSTS", "dash.example,other.example"),
    ];
    let _worker = Runner::start(&addr, &args, &env);
    wait_watching(&mut connect(&addr).await, "hello", 1).await;

    // A page of evil.example re-resolved to 127.0.0.1: its requests name
    // evil.example.
    let evil = ask(
        &admin,
        "GET /api/state HTTP/1.1",
        &[&format!("Host: evil.example:{port}")],
        "",
    );
    assert_eq!(evil.status, 421, "{evil:?}");
    assert!(
        evil.body.contains("`evil.example`") && evil.body.contains("--admin-host"),
        "{}",
        evil.body
    );
    assert!(!evil.body.contains("tubes"), "{}", evil.body);
    let absolute = ask(
        &admin,
        &format!("GET http://evil.example:{port}/metrics HTTP/1.1"),
        &[&format!("Host: {admin}")],
        "",
    );
    assert_eq!(absolute.status, 421, "{absolute:?}");
    let bad = ask(&admin, "GET /healthz HTTP/1.1", &["Host: a b"], "");
    assert_eq!(bad.status, 400, "{bad:?}");

    for host in [
        admin.clone(),
        format!("localhost:{port}"),
        format!("DASH.example:{port}"),
        "other.example".to_string(),
    ] {
        let answer = ask(
            &admin,
            "GET /api/state HTTP/1.1",
            &[&format!("Host: {host}")],
            "",
        );
        assert_eq!(answer.status, 200, "{host}: {answer:?}");
        let state: Value = serde_json::from_str(&answer.body).expect("JSON");
        assert!(state["tubes"].is_array(), "{host}: {state}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_admin_host_stops_the_worker_at_start() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let admin = free_addr();
    let args = ["--admin", &admin, "--admin-host", "https://dash.example"];
    let mut worker = Worker::hello(&addr, "m", &args);
    let status = worker.exits_within(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(1), "{}", worker.log());
    assert!(
        worker.log().contains("--admin-host `https://dash.example`"),
        "{}",
        worker.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_site_can_neither_act_nor_read() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let admin = free_addr();
    let args = ["--admin", &admin, "--admin-token", "s3cret"];
    let mut worker = Worker::hello(&addr, "m", &args);
    worker.wait_ready(&addr, "m", 1).await;
    let host = format!("Host: {admin}");
    let no_cors = |answer: &RawAnswer| {
        assert!(
            !answer.head.to_ascii_lowercase().contains("access-control-"),
            "{}",
            answer.head
        );
    };

    // A cross-origin fetch with the token is preflighted: nothing allows it.
    let preflight = ask(
        &admin,
        "OPTIONS /api/kick HTTP/1.1",
        &[
            &host,
            "Origin: http://evil.example",
            "Access-Control-Request-Method: POST",
            "Access-Control-Request-Headers: authorization, content-type",
        ],
        "",
    );
    assert!(!(200..300).contains(&preflight.status), "{preflight:?}");
    no_cors(&preflight);
    // Reading from another origin: answered, but no header lets the page
    // see the answer.
    let read = ask(
        &admin,
        "GET /api/state HTTP/1.1",
        &[&host, "Origin: http://evil.example"],
        "",
    );
    assert_eq!(read.status, 200, "{read:?}");
    no_cors(&read);

    // A form another site's page posts (no preflight, no token).
    let form = [
        host.as_str(),
        "Content-Type: application/x-www-form-urlencoded",
    ];
    let from_page = [
        form[0],
        form[1],
        "Origin: http://evil.example",
        "Sec-Fetch-Site: cross-site",
    ];
    for path in ["/api/kick", "/api/delete", "/api/pause"] {
        let line = format!("POST {path} HTTP/1.1");
        let refused = ask(&admin, &line, &from_page, "tube=m&all=true");
        assert_eq!(refused.status, 403, "{path}: {refused:?}");
        assert!(refused.body.contains("cross-site"), "{}", refused.body);
        no_cors(&refused);
        // Without browser headers and without the token: not done either
        // (401 from the token check, before the form body is looked at).
        let bare = ask(&admin, &line, &form, "tube=m&all=true");
        assert_eq!(bare.status, 401, "{path}: {bare:?}");
    }

    // The dashboard cannot be framed by another page (clickjacking).
    let page = ask(&admin, "GET / HTTP/1.1", &[&host], "");
    assert_eq!(
        page.header("x-frame-options"),
        Some("DENY"),
        "{}",
        page.head
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{}", page.head);
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
}

/// Sends a `Content-Length: 100 MiB` POST to `admin` with the token and
/// writes the body until the server stops it; returns the bytes written
/// and whether the server closed the connection (rather than stalling).
fn send_huge_body(admin: &str) -> (usize, bool) {
    const SIZE: usize = 100 << 20;
    let mut stream = TcpStream::connect(admin).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /api/kick HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer s3cret\r\n\
         Content-Type: application/json\r\nContent-Length: {SIZE}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b' '; 1 << 20];
    let mut sent = 0;
    while sent < SIZE {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => {
                let closed = !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
                return (sent, closed);
            }
        }
    }
    (sent, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_requests_are_refused_and_the_worker_serves_on() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let admin = free_addr();
    let args = ["--admin", &admin, "--admin-token", "s3cret"];
    let mut worker = Worker::hello(&addr, "m", &args);
    worker.wait_ready(&addr, "m", 1).await;
    let host = format!("Host: {admin}");

    let target = admin.clone();
    let (sent, closed) = tokio::task::spawn_blocking(move || send_huge_body(&target))
        .await
        .unwrap();
    assert!(closed, "the listener read a 100 MiB body ({sent} bytes)");
    assert!(
        sent < 50 << 20,
        "{sent} bytes sent before the listener closed"
    );

    let query = "a".repeat(1 << 20);
    let long_url = ask(
        &admin,
        &format!("GET /healthz?{query} HTTP/1.1"),
        &[&host],
        "",
    );
    assert_eq!(long_url.status, 431, "{long_url:?}");
    let many: Vec<String> = (0..5000).map(|n| format!("X-H{n}: v")).collect();
    let mut headers: Vec<&str> = many.iter().map(String::as_str).collect();
    headers.push(&host);
    let many_headers = ask(&admin, "GET /healthz HTTP/1.1", &headers, "");
    assert_eq!(many_headers.status, 431, "{many_headers:?}");
    let nul = exchange(&admin, b"GET /\0 HTTP/1.1\r\n\r\n").expect("an answer");
    assert_eq!(nul.status, 400, "{nul:?}");
    let mut bytes = b"GET /\xff\xfe HTTP/1.1\r\n".to_vec();
    bytes.extend_from_slice(format!("{host}\r\nConnection: close\r\n\r\n").as_bytes());
    let invalid = exchange(&admin, &bytes).expect("an answer");
    assert_eq!(invalid.status, 400, "{invalid:?}");

    assert_eq!(get(&admin, "/healthz").status, 200);
    serve_jobs(&addr, 3).await;
    assert!(worker.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_is_answered_at_a_bounded_rate() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let admin = free_addr();
    let mut worker = Worker::hello(&addr, "m", &["--admin", &admin]);
    worker.wait_ready(&addr, "m", 1).await;

    // 1,000 requests for the costliest page, pipelined on one connection.
    const N: usize = 1000;
    let one = format!("GET /api/state HTTP/1.1\r\nHost: {admin}\r\n\r\n");
    let mut raw = one.repeat(N - 1);
    raw.push_str(&format!(
        "GET /api/state HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    ));
    let target = admin.clone();
    let (text, secs) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let mut stream = TcpStream::connect(&target).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        (
            String::from_utf8_lossy(&got).into_owned(),
            started.elapsed().as_secs_f64(),
        )
    })
    .await
    .unwrap();
    let answered = text.matches("HTTP/1.1 200 ").count();
    let refused = text.matches("HTTP/1.1 429 ").count();
    assert_eq!(answered + refused, N, "{}", &text[..text.len().min(2000)]);
    // At most the burst (200) and 100 a second, however fast this ran.
    let bound = 200.0 + 100.0 * secs;
    assert!(
        (answered as f64) <= bound + 1.0,
        "{answered} answered in {secs:.2} s"
    );
    if refused > 0 {
        assert!(text.contains("retry-after: 1"), "no Retry-After");
    }
    // Health checks are never refused, and the worker serves on.
    for _ in 0..300 {
        assert_eq!(get(&admin, "/healthz").status, 200);
    }
    serve_jobs(&addr, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_the_config_cannot_forge_metrics_lines() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let admin = free_addr();
    let modules = Modules::with(&["hello"]);
    let dir = TempDir::new("label-injection");
    // A tenant name that would end the label, the sample and the line.
    let config = write_config(
        &dir,
        r#"[tenants."x\"} 1\nbeanbox_forged{a=\"b"]
modules = ["hello"]
concurrency = 1
"#,
    );
    let args = [
        "--modules",
        modules.as_str(),
        "--config",
        &config,
        "--admin",
        &admin,
    ];
    let _worker = Runner::start(&addr, &args, &[]);
    wait_watching(&mut connect(&addr).await, "hello", 1).await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(&mut producer, "hello", "task-one", abc(), None).await;
    wait_deleted(&mut connect(&addr).await, id).await;

    let metrics = get(&admin, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains(r#"tenant="x\"} 1\nbeanbox_forged{a=\"b""#),
        "{}",
        metrics.body
    );
    for line in metrics.body.lines() {
        assert!(!line.starts_with("beanbox_forged"), "forged: {line}");
    }
    let lines = metrics.body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("/metrics parses");
}
