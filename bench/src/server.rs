//! The processes the bench starts: its own beanstalkd on a free loopback
//! port, and the clients under test, each placed on CPUs by `--pin`
//! (`taskset`). Every one is killed by its guard, by PID.

use std::ffi::OsStr;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use beanbox_queue::Client;

/// Where processes run. Unpinned figures are bimodal on a 2-vCPU VM: they
/// depend on whether the kernel puts client and server on one vCPU (no
/// wake-up latency, one core for both) or on two (a ~65 µs cross-vCPU
/// wake-up per round trip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pin {
    /// beanstalkd on CPU 0, the clients under test on CPU 1.
    Split,
    /// beanstalkd and the clients all on CPU 0.
    Same,
    /// Let the kernel place everything.
    None,
}

impl Pin {
    fn server_cpu(self) -> Option<u32> {
        match self {
            Pin::Split | Pin::Same => Some(0),
            Pin::None => None,
        }
    }

    fn client_cpu(self) -> Option<u32> {
        match self {
            Pin::Split => Some(1),
            Pin::Same => Some(0),
            Pin::None => None,
        }
    }

    /// One line for table headers.
    pub fn describe(self) -> &'static str {
        match self {
            Pin::Split => {
                "pin=split: beanstalkd on CPU 0; runner, raw-drain and the seed workers on CPU 1 (taskset)"
            }
            Pin::Same => {
                "pin=same: beanstalkd, runner, raw-drain and the seed workers all on CPU 0 (taskset)"
            }
            Pin::None => "pin=none: the kernel places every process (figures are bimodal)",
        }
    }

    /// A command for a client under test, pinned.
    pub fn client(self, program: impl AsRef<OsStr>) -> Command {
        pinned(self.client_cpu(), program.as_ref())
    }
}

fn pinned(cpu: Option<u32>, program: &OsStr) -> Command {
    match cpu {
        // taskset execs the program: the child's PID is the program's.
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// A beanstalkd of our own, SIGKILLed and reaped on drop.
#[derive(Debug)]
pub struct Beanstalkd {
    child: Child,
    port: u16,
}

impl Beanstalkd {
    /// Starts `beanstalkd -l 127.0.0.1 -p <free port>`, on CPU 0 unless
    /// `pin` is `none`.
    pub fn start(pin: Pin) -> anyhow::Result<Beanstalkd> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut child = pinned(pin.server_cpu(), OsStr::new("beanstalkd"))
                .args(["-l", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start beanstalkd (install it: apt-get install beanstalkd, or run scripts/setup.sh)")?;
            // Up when it accepts; gone if another process took the port.
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(Beanstalkd { child, port });
                }
                if child.try_wait()?.is_some() || Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if Instant::now() >= deadline {
                bail!("beanstalkd did not start within 5 s");
            }
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new connection.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Client::connect(&self.addr())
            .await
            .context("cannot connect to the bench's beanstalkd")
    }
}

impl Drop for Beanstalkd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// beanstalkd's own CPU seconds (`rusage-utime` + `rusage-stime`).
pub async fn server_cpu(client: &mut Client) -> anyhow::Result<f64> {
    let stats = client.stats().await?;
    let field = |name: &str| -> f64 { stats.get(name).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    Ok(field("rusage-utime") + field("rusage-stime"))
}

/// A tube name no earlier run used.
pub fn fresh_tube(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Child processes under test, SIGKILLed and reaped on drop (a graceful stop
/// is not what is measured, and the seed's takes ~20 s).
#[derive(Debug, Default)]
pub struct Children(pub Vec<Child>);

impl Children {
    /// Their PIDs.
    pub fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }

    /// Fails if any has exited.
    pub fn check_alive(&mut self, what: &str) -> anyhow::Result<()> {
        for child in &mut self.0 {
            if let Some(status) = child.try_wait()? {
                bail!("{what} (pid {}) exited early: {status}", child.id());
            }
        }
        Ok(())
    }

    /// Kills and reaps them all now.
    pub fn kill(&mut self) {
        for mut child in self.0.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill();
    }
}
