//! What the worker and `runner put` tests share: a temporary directory, one
//! guard for a `runner` worker process killed on drop (its JSON log captured
//! to a file and searchable), a reply-tube reader, and bounded polling of
//! beanstalkd's state.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use beanbox_queue::{Client, JobState, JobStats, Producer, PutOptions, ReplyBody};
use serde_json::{Value, json};

use crate::support;

/// How often state is polled.
pub const POLL: Duration = Duration::from_millis(25);

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh, empty directory whose name starts with `label`.
    pub fn new(label: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("beanbox-{label}-{}-{n}", std::process::id()));
        // A leftover from an earlier run with the same pid.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The directory as a `&str`, for command lines.
    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("temp dir path is UTF-8")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `runner` worker process started with the test's own arguments;
/// SIGKILLed and reaped on drop. Its stderr (JSON log lines) goes to a file,
/// printed when the test panics. [`Worker`] is one started on modules of
/// its own.
#[derive(Debug)]
pub struct Runner {
    child: Child,
    log: PathBuf,
    /// Holds the log and the code cache; removed after the process is gone.
    _dir: TempDir,
}

impl Runner {
    /// Starts `runner --beanstalkd addr --log-format json ARGS` with `env`
    /// added to its environment. Its `XDG_CACHE_HOME` (its default code
    /// cache) is a directory of its own, removed with it, unless `env` sets
    /// one.
    pub fn start(addr: &str, args: &[&str], env: &[(&str, &str)]) -> Runner {
        let dir = TempDir::new("runner-log");
        let log = dir.path().join("worker.log");
        let stderr = File::create(&log).expect("cannot create the worker log");
        let mut command = support::runner();
        command
            .env("XDG_CACHE_HOME", dir.path().join("cache-home"))
            .args(["--beanstalkd", addr, "--log-format", "json"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = command.spawn().expect("cannot start the runner");
        Runner {
            child,
            log,
            _dir: dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`"HUP"`, `"TERM"`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("failed to run `kill`");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait failed").is_none()
    }

    /// Waits up to `timeout` for the process to exit; panics (with the log)
    /// when it does not.
    pub async fn exits_within(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait failed") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not exit within {timeout:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `fields` of the log's JSON events so far (`fields.message` is
    /// the message), plus `level`; lines that are not JSON are skipped.
    pub fn events(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|mut event| {
                let mut fields = event["fields"].take();
                fields["level"] = event["level"].take();
                fields
            })
            .collect()
    }

    /// The events whose message starts with `prefix`.
    pub fn events_starting(&self, prefix: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
            .collect()
    }

    /// Waits up to `timeout` for an event whose message starts with
    /// `prefix`; returns the first. Panics when the process exits first.
    pub async fn wait_event(&mut self, prefix: &str, timeout: Duration) -> Value {
        self.wait_event_where(prefix, timeout, |_| true).await
    }

    /// [`Runner::wait_event`] for the first such event that `filter` accepts.
    pub async fn wait_event_where(
        &mut self,
        prefix: &str,
        timeout: Duration,
        filter: impl Fn(&Value) -> bool,
    ) -> Value {
        let what = format!("a log line starting with {prefix:?}");
        eventually(timeout, &what, async || {
            let found = self.events_starting(prefix).into_iter().find(&filter);
            if found.is_none()
                && let Some(status) = self.child.try_wait().expect("try_wait failed")
            {
                panic!("the worker exited with {status} while waiting for {what}");
            }
            found
        })
        .await
    }

    /// The messages of its log about compiling and the code cache.
    pub fn cache_messages(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .filter(|m| m.starts_with("module compiled") || m.contains("cache"))
            .collect()
    }

    /// Waits for the log line that says module `name` serves: modules load
    /// in the background after the worker has started.
    pub async fn wait_loaded(&mut self, name: &str) -> Value {
        self.wait_event_where("module loaded", Duration::from_secs(20), |e| {
            e["module"] == name
        })
        .await
    }

    /// The log lines about job `id` that carry an `outcome` (one per
    /// finished attempt).
    pub fn outcomes(&self, id: u64) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|fields| fields["job"] == json!(id) && fields.get("outcome").is_some())
            .collect()
    }

    /// Waits until the log has `n` outcome lines for job `id`; returns them.
    pub async fn wait_outcomes(&self, id: u64, n: usize) -> Vec<Value> {
        eventually(
            Duration::from_secs(10),
            &format!("{n} log lines for job {id}"),
            async || {
                let lines = self.outcomes(id);
                (lines.len() >= n).then_some(lines)
            },
        )
        .await
    }

    /// Waits until `slots` of this worker's connections wait in `reserve`
    /// on `tube`: the worker has loaded its modules and is ready.
    pub async fn wait_ready(&mut self, addr: &str, tube: &str, slots: u64) {
        let mut client = connect(addr).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(stats) = client.stats_tube(tube).await
                && stats.current_waiting >= slots
            {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait failed") {
                panic!("the worker exited with {status} before it was ready");
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not wait on tube `{tube}` with {slots} connections within 20 s"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- worker {} log ---\n{}--- end of log ---",
                self.pid(),
                self.log()
            );
        }
    }
}

/// A [`Runner`] serving tubes from a modules directory of its own (links to
/// task components); everything else is the runner's.
#[derive(Debug)]
pub struct Worker {
    // Declared first: dropped (killed) before its modules go.
    runner: Runner,
    modules: TempDir,
}

impl Worker {
    /// Starts `runner --tube T … --modules DIR --beanstalkd addr --log-format
    /// json ARGS`, where `DIR/T.wasm` links to the task component named in
    /// each `(tube, component)` pair.
    pub fn start(addr: &str, tubes: &[(&str, &str)], args: &[&str]) -> Worker {
        let paths: Vec<(&str, PathBuf)> = tubes
            .iter()
            .map(|(tube, component)| (*tube, support::wasm(component)))
            .collect();
        let paths: Vec<(&str, &Path)> = paths.iter().map(|(t, p)| (*t, p.as_path())).collect();
        Worker::start_files(addr, &paths, args)
    }

    /// [`Worker::start`] with each tube's component given by its file, e.g.
    /// [`support::python_wasm`].
    pub fn start_files(addr: &str, tubes: &[(&str, &Path)], args: &[&str]) -> Worker {
        let modules = TempDir::new("modules");
        for (tube, file) in tubes {
            let link = modules.path().join(format!("{tube}.wasm"));
            std::os::unix::fs::symlink(file, &link)
                .unwrap_or_else(|e| panic!("cannot link {}: {e}", link.display()));
        }
        let mut all: Vec<&str> = Vec::new();
        for (tube, _) in tubes {
            all.extend(["--tube", tube]);
        }
        all.extend(["--modules", modules.as_str()]);
        all.extend(args);
        Worker {
            runner: Runner::start(addr, &all, &[]),
            modules,
        }
    }

    /// Starts a worker serving one tube with `hello.wasm`.
    pub fn hello(addr: &str, tube: &str, args: &[&str]) -> Worker {
        Worker::start(addr, &[(tube, "hello")], args)
    }

    /// The directory the worker loads modules from.
    pub fn modules_dir(&self) -> &Path {
        self.modules.path()
    }
}

impl std::ops::Deref for Worker {
    type Target = Runner;

    fn deref(&self) -> &Runner {
        &self.runner
    }
}

impl std::ops::DerefMut for Worker {
    fn deref_mut(&mut self) -> &mut Runner {
        &mut self.runner
    }
}

/// Polls `check` every [`POLL`] until it returns `Some`, for at most
/// `timeout`; panics naming `what` otherwise.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A client connection to `addr`.
pub async fn connect(addr: &str) -> Client {
    Client::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to beanstalkd at {addr}: {e}"))
}

/// Puts a raw `body` on `tube` with time-to-run `ttr`.
pub async fn put_raw(producer: &mut Producer, tube: &str, body: &[u8], ttr: u32) -> u64 {
    let opts = PutOptions {
        ttr,
        ..PutOptions::default()
    };
    producer
        .put_body(tube, body, &opts)
        .await
        .unwrap_or_else(|e| panic!("put on `{tube}` failed: {e}"))
}

/// Puts `{"task": task, "kwargs": kwargs, "reply_to": reply_to}` on `tube`.
pub async fn put(
    producer: &mut Producer,
    tube: &str,
    task: &str,
    kwargs: Value,
    reply_to: Option<&str>,
) -> u64 {
    put_with(producer, tube, task, kwargs, reply_to, 60).await
}

/// [`put`] with a time-to-run.
pub async fn put_with(
    producer: &mut Producer,
    tube: &str,
    task: &str,
    kwargs: Value,
    reply_to: Option<&str>,
    ttr: u32,
) -> u64 {
    let opts = PutOptions {
        ttr,
        reply_to: reply_to.map(str::to_owned),
        ..PutOptions::default()
    };
    producer
        .put(tube, task, &support::object(kwargs), &opts)
        .await
        .unwrap_or_else(|e| panic!("put of `{task}` on `{tube}` failed: {e}"))
}

/// A job's stats, or `None` once it is gone (deleted).
pub async fn job_stats(client: &mut Client, id: u64) -> Option<JobStats> {
    match client.stats_job(id).await {
        Ok(stats) => Some(stats),
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("stats-job {id} failed: {e}"),
    }
}

/// Waits until job `id` is in `state`; returns its stats.
pub async fn wait_state(client: &mut Client, id: u64, state: JobState) -> JobStats {
    let what = format!("job {id} to be {state:?}");
    eventually(Duration::from_secs(10), &what, async || {
        job_stats(client, id).await.filter(|s| s.state == state)
    })
    .await
}

/// Waits until job `id` is gone (deleted).
pub async fn wait_deleted(client: &mut Client, id: u64) {
    let what = format!("job {id} to be deleted");
    eventually(Duration::from_secs(10), &what, async || {
        job_stats(client, id).await.is_none().then_some(())
    })
    .await;
}

/// A connection that reads result jobs from one reply tube.
#[derive(Debug)]
pub struct Replies {
    client: Client,
    tube: String,
}

impl Replies {
    /// Watches `tube` (and nothing else) on a new connection.
    pub async fn watch(addr: &str, tube: &str) -> Replies {
        let mut client = connect(addr).await;
        client.watch(tube).await.expect("watch failed");
        client.ignore("default").await.expect("ignore failed");
        Replies {
            client,
            tube: tube.to_owned(),
        }
    }

    /// The next reply, waiting up to `timeout`; it is deleted from the tube.
    pub async fn next(&mut self, timeout: Duration) -> ReplyBody {
        let secs = u32::try_from(timeout.as_secs().max(1)).unwrap_or(u32::MAX);
        let job = tokio::time::timeout(
            timeout + Duration::from_secs(1),
            self.client.reserve_with_timeout(secs),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("no reply on `{}` within {timeout:?}", self.tube));
        self.take(job).await
    }

    /// A reply that is ready now, if any.
    pub async fn try_next(&mut self) -> Option<ReplyBody> {
        match self.client.reserve_with_timeout(0).await {
            Ok(job) => Some(self.take(job).await),
            Err(e) if e.is_timeout() || e.is_deadline_soon() => None,
            Err(e) => panic!("reserve on `{}` failed: {e}", self.tube),
        }
    }

    async fn take(&mut self, job: beanbox_queue::Job) -> ReplyBody {
        self.client
            .delete(job.id)
            .await
            .unwrap_or_else(|e| panic!("delete of reply {} failed: {e}", job.id));
        ReplyBody::parse(&job.body).unwrap_or_else(|e| {
            panic!(
                "reply {:?} is not a beanbox result: {e}",
                String::from_utf8_lossy(&job.body)
            )
        })
    }
}

/// Buries job `id` (reserved by `client`) after writing a record for it
/// with `reason`, as the worker does.
pub async fn bury_with_record(client: &mut Client, id: u64, tube: &str, reasons: &[&str]) {
    for reason in reasons {
        let record = beanbox::failures::FailureRecord::new(beanbox::failures::Failed {
            job: id,
            tube,
            task: "fail",
            tenant: "test",
            attempt: 1,
            kind: beanbox_queue::ErrorKind::GuestError,
            reason,
        });
        let written = beanbox::failures::write(client, &record).await.unwrap();
        assert!(written.lost().is_none(), "{written:?}");
    }
    client.bury(id, 0).await.unwrap();
}

/// Puts a job of task `fail` on `tube` of the server at `addr` and buries
/// it with a failure record saying `reason`, as a worker would: its id.
pub async fn put_buried(addr: &str, tube: &str, reason: &str) -> u64 {
    let mut client = connect(addr).await;
    let body = json!({"task": "fail", "kwargs": {"message": reason}}).to_string();
    let id = client
        .put_in(tube, 0, 0, 60, body.as_bytes())
        .await
        .unwrap();
    client.reserve_job(id).await.unwrap();
    bury_with_record(&mut client, id, tube, &[reason]).await;
    id
}

/// Runs `command` to completion, for at most `timeout`; kills it and panics
/// when it takes longer.
pub async fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("try_wait failed").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("wait failed");
            panic!(
                "{command:?} did not finish within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(POLL).await;
    }
    child.wait_with_output().expect("wait failed")
}

/// `{"arg1": "a", "arg2": "b", "arg3": "c"}`: hello's `task_one` kwargs.
pub fn abc() -> Value {
    json!({"arg1": "a", "arg2": "b", "arg3": "c"})
}

/// The `ok` value of a reply that must be a success.
pub fn ok(reply: &ReplyBody) -> &Value {
    match &reply.outcome {
        Ok(value) => value,
        Err(e) => panic!(
            "job {} ({}) failed: {} ({})",
            reply.job, reply.task, e.message, e.kind
        ),
    }
}

/// The error of a reply that must be a failure.
pub fn err(reply: &ReplyBody) -> &beanbox_queue::ReplyError {
    match &reply.outcome {
        Ok(value) => panic!(
            "job {} ({}) should have failed, returned {value}",
            reply.job, reply.task
        ),
        Err(e) => e,
    }
}
