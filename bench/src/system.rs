//! What the bench reads from Linux: CPU time of the machine, of a process
//! and of reaped children (`/proc`), resident memory, and a description of
//! the machine for the report.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Clock ticks a second, the unit of `/proc/*/stat` times.
fn ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU-seconds the hypervisor gave to others while this machine's vCPUs
/// wanted to run (`steal` in /proc/stat), since boot. On a shared host it
/// slows everything measured, the raw client as much as the runner: a run
/// with much of it is not comparable with one without.
pub fn machine_steal() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let first = stat.lines().next().unwrap_or_default();
    first
        .split_whitespace()
        .nth(8)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0) as f64
        / ticks()
}

/// user + nice + system CPU-seconds of the whole machine since boot. IRQ
/// time is left out: no process's rusage carries it either.
pub fn machine_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let first = stat.lines().next().unwrap_or_default();
    let sum: u64 = first
        .split_whitespace()
        .skip(1)
        .take(3)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    sum as f64 / ticks()
}

/// The fields of `/proc/<pid>/stat` after the command name: index 0 is the
/// state (field 3 in proc(5)).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// utime + stime of a live process (all its threads), in seconds.
pub fn process_cpu(pid: u32) -> f64 {
    stat_fields(&pid.to_string())
        .and_then(|f| Some(f.get(11)? + f.get(12)?))
        .unwrap_or(0) as f64
        / ticks()
}

/// cutime + cstime of this process: the CPU of every child reaped so far.
pub fn children_cpu() -> f64 {
    stat_fields("self")
        .and_then(|f| Some(f.get(13)? + f.get(14)?))
        .unwrap_or(0) as f64
        / ticks()
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Waits (up to `patience`) until the machine is idle: under 5% of all its
/// CPUs busy over 0.3 s. The box may be shared; a bench run on top of a
/// build measures the build. Returns whether it got idle.
pub fn wait_idle(patience: Duration) -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let until = Instant::now() + patience;
    loop {
        let before = machine_cpu();
        std::thread::sleep(Duration::from_millis(300));
        if (machine_cpu() - before) / 0.3 < 0.05 * cpus {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
    }
}

/// The machine, for the report's header.
#[derive(Debug)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: usize,
    /// `model name` from /proc/cpuinfo.
    pub model: String,
    /// `uname -sr`.
    pub kernel: String,
}

impl Machine {
    /// Reads it.
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, m)| m.trim().to_string());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            model,
            kernel: command_line("uname", &["-sr"]),
        }
    }
}

/// The first line a command prints, or `unknown`.
pub fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}
