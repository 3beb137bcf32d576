//! `runner deploy`: put a new version of a module in a worker's modules
//! directory safely. The component is compiled first with the worker's engine
//! configuration (a module that would not load is refused, nothing written),
//! then written atomically (temporary file in the directory, fsync, rename);
//! with `--admin` the command waits until the worker's `/api/state` shows the
//! new version serving.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::Value;

use super::{EXIT_BAD_INPUT, EXIT_OK, EXIT_TASK_FAILED};
use crate::sandbox::{self, Sandbox};

pub(super) const AFTER_HELP: &str = "\
Prints `deployed NAME sha256=HASH to PATH`; with --admin, then
`live NAME sha256=HASH after S s` once the worker serves that version (HASH
is what the admin listener's /api/state shows as the module's `hash`).

Examples:
  runner deploy target/wasm32-wasip2/release/my_task.wasm --modules modules --name images
  runner deploy hello.wasm --modules modules --admin 127.0.0.1:9090

Exit codes:
  0  deployed (and, with --admin, serving)
  1  runner error: the file cannot be written, the admin listener does not
     answer (checked before anything is written), or the new version is not
     serving within --timeout
  2  bad input: the component does not load (the reason is shown; nothing is
     written), a bad --name, --modules not a directory
  3  the worker reports that the new version failed to load (its error is
     shown; the previous version keeps serving)";

/// Arguments of `runner deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The component file (.wasm) to deploy.
    pub file: PathBuf,
    /// The worker's modules directory (its `--modules`, or a tenant's `dir`).
    #[arg(long, value_name = "DIR")]
    pub modules: PathBuf,
    /// The module name (the file is DIR/NAME.wasm) [default: FILE's stem].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The worker's admin listener (`--admin` of the worker, HOST:PORT or
    /// http://HOST:PORT): wait until it serves the new version.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// With --admin: seconds to wait for the new version to serve.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    pub timeout: f64,
    /// The largest module file read, in MiB (as the worker's flag).
    #[arg(long, value_name = "MIB", default_value_t = sandbox::DEFAULT_MAX_MODULE_BYTES >> 20, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_module_mb: u64,
}

/// How often `/api/state` is asked while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Runs `runner deploy`.
///
/// # Errors
///
/// Runner errors (exit 1): writing the file, the admin listener, a version
/// not serving within `--timeout`.
pub fn execute(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .with_context(|| {
            format!(
                "--timeout must be a positive number of seconds, got {}",
                args.timeout
            )
        })?;
    let name = match args.name.clone().map_or_else(|| stem(&args.file), Ok) {
        Ok(name) => name,
        Err(e) => return Ok(bad_input(&e)),
    };
    if let Err(e) = check_name(&name) {
        return Ok(bad_input(&e));
    }
    if !args.modules.is_dir() {
        let e = format!("--modules {} is not a directory", args.modules.display());
        return Ok(bad_input(&e));
    }
    let bytes = match sandbox::read_module(&args.file, args.max_module_mb << 20) {
        Ok(bytes) => bytes,
        Err(e) => return Ok(bad_input(&e.to_string())),
    };
    // The worker's engine configuration: what loads here loads there.
    let sandbox = Sandbox::new()?;
    let hash = match sandbox.load(&bytes, &args.file.display().to_string()) {
        Ok(module) => module.content_hash(),
        Err(e) => return Ok(bad_input(&format!("{e}; nothing deployed"))),
    };
    // Ask the admin listener before writing: an address that does not answer
    // deploys nothing.
    let admin = args.admin.as_deref().map(admin_addr);
    let before = match &admin {
        Some(addr) => Some(module_state(&state(addr)?, &name)),
        None => None,
    };

    let path = write_atomically(&args.modules, &name, &bytes)?;
    println!("deployed {name} sha256={hash} to {}", path.display());
    let (Some(addr), Some(before)) = (admin, before) else {
        return Ok(ExitCode::from(EXIT_OK));
    };

    let started = Instant::now();
    loop {
        let now = module_state(&state(&addr)?, &name);
        match verdict(&before, &now, &hash) {
            Verdict::Live => {
                let secs = started.elapsed().as_secs_f64();
                println!("live {name} sha256={hash} after {secs:.2} s");
                return Ok(ExitCode::from(EXIT_OK));
            }
            Verdict::Failed(error) => {
                eprintln!(
                    "error: the worker at {addr} did not load the new version of {name}: {error}"
                );
                return Ok(ExitCode::from(EXIT_TASK_FAILED));
            }
            Verdict::Waiting if started.elapsed() >= timeout => {
                let serving = now.hash.as_deref().unwrap_or("none");
                anyhow::bail!(
                    "the worker at {addr} does not serve the new version of {name} after {:.0} s \
                     (serving: {serving}{})",
                    timeout.as_secs_f64(),
                    now.error
                        .map(|e| format!("; its load error: {e}"))
                        .unwrap_or_default()
                );
            }
            Verdict::Waiting => std::thread::sleep(POLL),
        }
    }
}

/// Prints `error` and returns the bad-input exit code.
fn bad_input(error: &str) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(EXIT_BAD_INPUT)
}

/// The module name a file deploys as by default: its stem.
fn stem(file: &Path) -> Result<String, String> {
    file.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "cannot take a module name from {}; give --name",
                file.display()
            )
        })
}

/// Checks a module name: a file stem the worker picks up, and a valid tube
/// name (a module's tube is its name unless a config says otherwise).
fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-+;.$_()".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid module name `{name}`: use letters, digits and - + ; . $ _ ( ), \
             not starting with - or ., at most 200 bytes"
        ))
    }
}

/// Writes `bytes` to `dir/name.wasm` atomically: a hidden temporary file in
/// `dir` (which the worker ignores), synced, renamed into place, and the
/// directory synced.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let to = dir.join(format!("{name}.wasm"));
    let temp = dir.join(format!(".{name}.wasm.deploy-{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, &to)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot write {}", to.display()));
    }
    Ok(to)
}

/// `HOST:PORT` from `--admin` (an `http://` prefix and a trailing `/` are
/// dropped).
fn admin_addr(admin: &str) -> String {
    let addr = admin.strip_prefix("http://").unwrap_or(admin);
    addr.trim_end_matches('/').to_string()
}

/// What `/api/state` says of one module.
#[derive(Debug, Clone, Default, PartialEq)]
struct ModuleView {
    hash: Option<String>,
    error: Option<String>,
}

/// Whether the new version serves yet.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// The module's hash is the new one.
    Live,
    /// A load error that was not there before the deploy stands.
    Failed(String),
    /// Neither yet.
    Waiting,
}

/// The decision: `before` is the module's state before the file was written,
/// `now` its state now, `hash` the new version's.
fn verdict(before: &ModuleView, now: &ModuleView, hash: &str) -> Verdict {
    if now.hash.as_deref() == Some(hash) {
        return Verdict::Live;
    }
    match &now.error {
        Some(error) if now.error != before.error => Verdict::Failed(error.clone()),
        _ => Verdict::Waiting,
    }
}

/// Module `name` in an `/api/state` document (empty when it is not listed).
fn module_state(state: &Value, name: &str) -> ModuleView {
    let module = state["modules"]
        .as_array()
        .and_then(|modules| modules.iter().find(|m| m["name"] == name));
    let text = |key: &str| module.and_then(|m| m[key].as_str()).map(str::to_string);
    ModuleView {
        hash: text("hash"),
        error: text("error"),
    }
}

/// `GET /api/state` from the admin listener at `addr`.
fn state(addr: &str) -> anyhow::Result<Value> {
    let context = || format!("cannot read the worker's state from the admin listener at {addr}");
    let body = get(addr, "/api/state").with_context(context)?;
    serde_json::from_str(&body)
        .context("/api/state is not JSON")
        .with_context(context)
}

/// One HTTP/1.1 `GET path` (`Connection: close`); the body of a 200 answer.
fn get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    // The Host is the address as given: an IP literal passes a listener
    // that checks it.
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).context("the answer is not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("not an HTTP answer")?;
    let status = head.split(' ').nth(1).context("not an HTTP answer")?;
    anyhow::ensure!(status == "200", "GET {path} answered {status}");
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .replace(' ', "")
            .starts_with("transfer-encoding:chunked")
    });
    if chunked {
        dechunk(body).context("a malformed chunked answer")
    } else {
        Ok(body.to_string())
    }
}

/// The payload of a chunked HTTP body.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn view(hash: Option<&str>, error: Option<&str>) -> ModuleView {
        ModuleView {
            hash: hash.map(Into::into),
            error: error.map(Into::into),
        }
    }

    #[test]
    fn live_once_the_hash_is_the_new_one() {
        let before = view(Some("old"), None);
        assert_eq!(
            verdict(&before, &view(Some("old"), None), "new"),
            Verdict::Waiting
        );
        assert_eq!(
            verdict(&before, &view(Some("new"), None), "new"),
            Verdict::Live
        );
        assert_eq!(
            verdict(&view(None, None), &view(Some("new"), None), "new"),
            Verdict::Live
        );
    }

    #[test]
    fn a_new_error_fails_and_an_old_one_is_waited_past() {
        let before = view(Some("old"), Some("broken earlier"));
        assert_eq!(
            verdict(&before, &view(Some("old"), Some("broken earlier")), "new"),
            Verdict::Waiting
        );
        assert_eq!(
            verdict(&before, &view(Some("old"), Some("new error")), "new"),
            Verdict::Failed("new error".into())
        );
        assert_eq!(
            verdict(
                &view(Some("old"), None),
                &view(Some("old"), Some("bad")),
                "new"
            ),
            Verdict::Failed("bad".into())
        );
    }

    #[test]
    fn module_state_finds_the_module_by_name() {
        let state = json!({"modules": [
            {"name": "a", "hash": "h1", "error": null},
            {"name": "b", "hash": null, "error": "no"},
        ]});
        assert_eq!(module_state(&state, "a"), view(Some("h1"), None));
        assert_eq!(module_state(&state, "b"), view(None, Some("no")));
        assert_eq!(module_state(&state, "c"), view(None, None));
    }

    #[test]
    fn names_are_file_stems_and_tube_names() {
        assert!(check_name("hello").is_ok());
        assert!(check_name("img_resize-2.v1").is_ok());
        for bad in ["", ".hidden", "-x", "a/b", "a b", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(stem(Path::new("dir/x.wasm")), Ok("x".to_string()));
    }

    #[test]
    fn admin_addresses_and_chunked_bodies() {
        assert_eq!(admin_addr("http://127.0.0.1:9/"), "127.0.0.1:9");
        assert_eq!(admin_addr("127.0.0.1:9"), "127.0.0.1:9");
        assert_eq!(
            dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").as_deref(),
            Some("abcde")
        );
        assert_eq!(dechunk("5\r\nab"), None);
    }
}
