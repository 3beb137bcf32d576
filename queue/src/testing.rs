//! A throwaway beanstalkd for tests: [`Beanstalkd`] starts the real server
//! on a free loopback port (or a given one) and kills it when dropped; it
//! can be killed (`kill -9`) and restarted on the same port, from its
//! binlog when started with `-b DIR`. Synchronous, so sync
//! and async tests alike can use it. Behind the `testing` feature.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::beanstalk::proto::{self, Response};

/// How long a server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(5);

/// A running beanstalkd, killed (SIGKILL) and reaped on drop.
///
/// The binary is `beanstalkd` from `PATH`, or the path in the `BEANSTALKD`
/// environment variable.
#[derive(Debug)]
pub struct Beanstalkd {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
}

impl Beanstalkd {
    /// Starts `beanstalkd -l 127.0.0.1 -p <free port>`.
    ///
    /// # Panics
    ///
    /// When the binary is missing or the server does not come up within 5 s.
    pub fn start() -> Beanstalkd {
        Beanstalkd::start_with_args(&[])
    }

    /// Starts beanstalkd with extra arguments, e.g. `["-z", "10"]` or
    /// `["-b", dir]`.
    ///
    /// # Panics
    ///
    /// When the binary is missing or the server does not come up within 5 s.
    pub fn start_with_args(args: &[&str]) -> Beanstalkd {
        let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        let deadline = Instant::now() + STARTUP;
        loop {
            // Another process may take the port between our probe and the
            // server's bind; the server then exits and we try another.
            let port = free_port();
            match spawn(port, &args, deadline) {
                Ok(child) => {
                    return Beanstalkd {
                        child: Some(child),
                        port,
                        args,
                    };
                }
                Err(why) if Instant::now() >= deadline => {
                    panic!("beanstalkd did not start: {why}")
                }
                Err(_) => {}
            }
        }
    }

    /// Starts beanstalkd on `port` (e.g. one from [`Beanstalkd::free_port`]
    /// that clients were told of before the server existed), with extra
    /// arguments such as `["-b", dir]`.
    ///
    /// # Panics
    ///
    /// When the server does not come up on that port within 5 s.
    pub fn start_on(port: u16, args: &[&str]) -> Beanstalkd {
        let mut server = Beanstalkd {
            child: None,
            port,
            args: args.iter().map(|&a| a.to_owned()).collect(),
        };
        server.restart();
        server
    }

    /// A loopback port free right now, for [`Beanstalkd::start_on`].
    pub fn free_port() -> u16 {
        free_port()
    }

    /// `"127.0.0.1:PORT"`, ready for [`Client::connect`](crate::Client::connect).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port the server listens on; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL, `kill -9`: nothing flushed beyond what
    /// beanstalkd already wrote) and waits for it to exit. Connections see
    /// EOF; new ones are refused until [`Beanstalkd::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only when it already exited, which is what we want.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server is running (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (if running) and starts it again on the same port
    /// with the same arguments (with `-b DIR` its jobs come back from the
    /// binlog).
    ///
    /// # Panics
    ///
    /// When the server does not come up again within 5 s.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + STARTUP;
        loop {
            match spawn(self.port, &self.args, deadline) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(why) if Instant::now() >= deadline => {
                    panic!("beanstalkd did not restart on port {}: {why}", self.port)
                }
                // The old socket may linger a moment; try again.
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Puts the server into drain mode (SIGUSR1): later puts get
    /// `DRAINING`.
    ///
    /// # Panics
    ///
    /// When the server is not running or `kill` cannot be run.
    pub fn drain(&self) {
        let pid = self.pid().expect("beanstalkd is not running");
        let status = Command::new("kill")
            .args(["-USR1", &pid.to_string()])
            .status()
            .expect("failed to run `kill`");
        assert!(status.success(), "kill -USR1 {pid} failed: {status}");
    }
}

impl Drop for Beanstalkd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
    listener
        .local_addr()
        .expect("bound socket has an address")
        .port()
}

/// Starts the server and waits until it answers on `port`. An `Err` means
/// this attempt failed (the child is reaped) and another may succeed.
fn spawn(port: u16, args: &[String], deadline: Instant) -> Result<Child, String> {
    let program = std::env::var_os("BEANSTALKD").unwrap_or_else(|| "beanstalkd".into());
    let mut child = match Command::new(&program)
        .args(["-l", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("beanstalkd not found: install it with `apt-get install beanstalkd`")
        }
        Err(e) => panic!("cannot run {program:?}: {e}"),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            return Err(format!(
                "beanstalkd exited with {status}: {}",
                stderr.trim()
            ));
        }
        // Compare pids: the port might be answered by another test's server
        // that won the race for it.
        if server_pid(addr) == Some(child.id()) {
            forward_stderr(&mut child);
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no answer on {addr} within {STARTUP:?}"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Asks the server at `addr` for its pid (`stats`).
fn server_pid(addr: SocketAddr) -> Option<u32> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(b"stats\r\n").ok()?;
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    let yaml = loop {
        match proto::parse(&mut buf).ok()? {
            Some(Response::Ok(yaml)) => break yaml,
            Some(_) => return None,
            None => {}
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    crate::beanstalk::stats::parse_map(&yaml)
        .ok()?
        .get("pid")?
        .parse()
        .ok()
}

/// A never-read stderr pipe would block the server once full; pass it on.
fn forward_stderr(child: &mut Child) {
    if let Some(mut pipe) = child.stderr.take() {
        thread::spawn(move || {
            let _ = std::io::copy(&mut pipe, &mut std::io::stderr());
        });
    }
}
