//! Tenants end to end (`runner --config`): one tenant's backlog does not
//! starve another, each sees only its own grants and modules and puts only
//! where allowed, a bad file is refused naming file, line and key, and
//! SIGHUP with a bad file keeps the old tenants.

use std::path::Path;
use std::time::{Duration, Instant};

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{Envelope, JobState, Producer, ReplyBody};
use serde_json::{Value, json};

use crate::deploy_support::{
    Modules, assert_stays_ready, replies_by_job, tube_stats, wait_watching, write_config,
};
use crate::support;
use crate::worker_support::Runner;
use crate::worker_support::{
    Replies, TempDir, abc, connect, err, job_stats, ok, put, run_bounded, wait_deleted, wait_state,
};

/// Starts a worker on `modules` with the tenants file `config`.
fn start(addr: &str, modules: &Modules, config: &str, env: &[(&str, &str)]) -> Runner {
    Runner::start(
        addr,
        &["--modules", modules.as_str(), "--config", config],
        env,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_of_one_tenant_does_not_delay_another() {
    const BACKLOG: usize = 1_000;
    const QUICK: usize = 20;
    // b's jobs take milliseconds; behind a's backlog they would take 200 s.
    const BOUND: Duration = Duration::from_secs(20);
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hostile", "hello"]);
    let dir = TempDir::new("fairness");
    let config = write_config(
        &dir,
        "[tenants.a]\nmodules = [\"hostile\"]\nconcurrency = 1\n\n\
         [tenants.b]\nmodules = [\"hello\"]\nconcurrency = 1\n",
    );
    let _worker = start(&addr, &modules, &config, &[]);
    let mut client = connect(&addr).await;
    wait_watching(&mut client, "hostile", 1).await;
    wait_watching(&mut client, "hello", 1).await;

    let mut producer = Producer::connect(&addr).await.unwrap();
    for _ in 0..BACKLOG {
        put(
            &mut producer,
            "hostile",
            "sleep-ms",
            json!({"ms": 200}),
            None,
        )
        .await;
    }
    let mut replies = Replies::watch(&addr, "b-replies").await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..QUICK {
        ids.push(put(&mut producer, "hello", "task-one", abc(), Some("b-replies")).await);
    }
    let answered = replies_by_job(&mut replies, QUICK, BOUND).await;
    let elapsed = started.elapsed();
    let a = tube_stats(&mut client, "hostile").await.unwrap();
    eprintln!(
        "fairness: tenant b's {QUICK} jobs done in {elapsed:.0?} behind tenant a's backlog \
         of {BACKLOG}; a finished {} meanwhile",
        a.cmd_delete
    );

    for id in &ids {
        assert_eq!(ok(&answered[id]), &json!("abc"));
    }
    assert!(elapsed < BOUND, "tenant b waited {elapsed:?}");
    // a ran one 200 ms job at a time, as its share says.
    let share = u64::try_from(started.elapsed().as_millis() / 200).unwrap() + 5;
    assert!(
        a.cmd_delete <= share,
        "tenant a finished {} jobs",
        a.cmd_delete
    );
    assert!(a.current_jobs_reserved <= 1, "{a:?}");
    assert!(
        a.current_jobs_ready >= (BACKLOG as u64) - share,
        "tenant a's backlog: {a:?}"
    );
}

/// What a job of the grants test must answer.
enum Expect {
    /// Success with this value.
    Gives(Value),
    /// Failure of the task itself: its file or directory was refused.
    Denied,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_dirs_and_env() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hostile"]);
    modules.copy("hostile", "hostile2");
    let dir = TempDir::new("grants");
    let (a_ro, a_rw, b_secret) = (
        dir.path().join("a-ro"),
        dir.path().join("a-rw"),
        dir.path().join("b-secret"),
    );
    for d in [&a_ro, &a_rw, &b_secret] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(a_ro.join("file.txt"), "a's input").unwrap();
    std::fs::write(b_secret.join("secret.txt"), "b's secret").unwrap();
    // A link out of a's directory into b's.
    std::os::unix::fs::symlink(b_secret.join("secret.txt"), a_ro.join("escape")).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let config = write_config(
        &dir,
        &format!(
            "[tenants.a]\nmodules = [\"hostile\"]\nmax_attempts = 1\n\
             env = {{ GREETING = \"hi\" }}\n\
             dirs = [\n  {{ host = '{}', guest = \"/ro\", mode = \"ro\" }},\n  \
             {{ host = '{}', guest = \"/rw\", mode = \"rw\" }},\n]\n\n\
             [tenants.b]\nmodules = [\"hostile2\"]\nmax_attempts = 1\n\
             dirs = [{{ host = '{}', guest = \"/secret\" }}]\n",
            path(&a_ro),
            path(&a_rw),
            path(&b_secret)
        ),
    );
    let _worker = start(
        &addr,
        &modules,
        &config,
        &[("BEANBOX_SECRET", "worker-only"), ("HOME", "/root")],
    );

    let read = |p: &str| json!({"path": p});
    let env = |n: &str| json!({"name": n});
    let host_secret = path(&b_secret.join("secret.txt"));
    use Expect::{Denied, Gives};
    let cases = [
        // a's grants work as granted.
        (
            "hostile",
            "read-file",
            read("/ro/file.txt"),
            Gives(json!("a's input")),
        ),
        (
            "hostile",
            "write-file",
            json!({"path": "/rw/out.txt", "contents": "from a"}),
            Gives(json!(6)),
        ),
        ("hostile", "read-env", env("GREETING"), Gives(json!("hi"))),
        // ... and no further.
        (
            "hostile",
            "write-file",
            json!({"path": "/ro/x", "contents": "no"}),
            Denied,
        ),
        ("hostile", "read-file", read(&host_secret), Denied),
        ("hostile", "read-file", read("/secret/secret.txt"), Denied),
        ("hostile", "read-file", read("/etc/passwd"), Denied),
        ("hostile", "read-file", read("/ro/../../etc/passwd"), Denied),
        ("hostile", "read-file", read("/ro/escape"), Denied),
        ("hostile", "read-env", env("PATH"), Gives(Value::Null)),
        ("hostile", "read-env", env("HOME"), Gives(Value::Null)),
        (
            "hostile",
            "read-env",
            env("BEANBOX_SECRET"),
            Gives(Value::Null),
        ),
        // b has its own directory, read-only by default, and nothing of a's.
        (
            "hostile2",
            "read-file",
            read("/secret/secret.txt"),
            Gives(json!("b's secret")),
        ),
        (
            "hostile2",
            "write-file",
            json!({"path": "/secret/x", "contents": "no"}),
            Denied,
        ),
        ("hostile2", "read-file", read("/ro/file.txt"), Denied),
        ("hostile2", "read-file", read("/rw/out.txt"), Denied),
        ("hostile2", "read-env", env("GREETING"), Gives(Value::Null)),
        (
            "hostile2",
            "read-env",
            env("BEANBOX_SECRET"),
            Gives(Value::Null),
        ),
    ];

    let mut replies = Replies::watch(&addr, "grant-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let mut ids = Vec::new();
    for (tube, task, kwargs, _) in &cases {
        ids.push(
            put(
                &mut producer,
                tube,
                task,
                kwargs.clone(),
                Some("grant-replies"),
            )
            .await,
        );
    }
    let answered = replies_by_job(&mut replies, cases.len(), Duration::from_secs(20)).await;
    let mut wrong = Vec::new();
    for ((tube, task, kwargs, expect), id) in cases.iter().zip(&ids) {
        let outcome = &answered[id].outcome;
        let fine = match (expect, outcome) {
            (Gives(want), Ok(got)) => want == got,
            // The task ran and its I/O failed (not, say, a bad kwarg).
            (Denied, Err(e)) => e.kind == "guest-error",
            _ => false,
        };
        if !fine {
            wrong.push(format!("{tube} {task} {kwargs}: {outcome:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "unexpected replies:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        std::fs::read_to_string(a_rw.join("out.txt")).unwrap(),
        "from a"
    );
    assert!(!a_ro.join("x").exists() && !b_secret.join("x").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_puts_go_only_to_allowed_tubes() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello", "hostile"]);
    let dir = TempDir::new("puts");
    let config = write_config(
        &dir,
        "[tenants.a]\nmodules = [\"hello\"]\nmax_attempts = 1\nput_tubes = [\"allowed\"]\n\n\
         [tenants.b]\nmodules = [\"hostile\"]\n",
    );
    let _worker = start(&addr, &modules, &config, &[]);
    let mut replies = Replies::watch(&addr, "put-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let follow_up = |tube: &str| json!({"tube": tube, "word": "w"});
    let allowed = put(
        &mut producer,
        "hello",
        "follow-up",
        follow_up("allowed"),
        Some("put-replies"),
    )
    .await;
    let other = put(
        &mut producer,
        "hello",
        "follow-up",
        follow_up("other"),
        Some("put-replies"),
    )
    .await;
    let theirs = put(
        &mut producer,
        "hello",
        "follow-up",
        follow_up("hostile"),
        Some("put-replies"),
    )
    .await;
    let answered = replies_by_job(&mut replies, 3, Duration::from_secs(20)).await;

    let mut client = connect(&addr).await;
    // `put` returns the staged put's number within the job.
    assert_eq!(ok(&answered[&allowed]), &serde_json::json!(1));
    client.use_tube("allowed").await.unwrap();
    let new_id = client
        .peek_ready()
        .await
        .expect("the follow-up job exists")
        .id;
    let stats = job_stats(&mut client, new_id)
        .await
        .expect("the follow-up job exists");
    assert_eq!(
        (stats.tube.as_str(), stats.state),
        ("allowed", JobState::Ready)
    );
    let body = client.peek(new_id).await.unwrap().body;
    assert_eq!(Envelope::parse(&body).unwrap().task, "task-one");

    for (id, tube) in [(other, "other"), (theirs, "hostile")] {
        let error = err(&answered[&id]);
        assert!(
            error.message.contains("denied") && error.message.contains(tube),
            "a put to `{tube}` should be denied, naming the tube: {error}"
        );
    }
    assert_eq!(
        tube_stats(&mut client, "other")
            .await
            .map_or(0, |s| s.total_jobs),
        0
    );
    assert_eq!(
        tube_stats(&mut client, "hostile")
            .await
            .map_or(0, |s| s.total_jobs),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_tube_never_runs_another_tenants_module() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello", "hostile"]);
    let dir = TempDir::new("foreign-task");
    let config = write_config(
        &dir,
        "[tenants.a]\nmodules = [\"hello\"]\n\n[tenants.b]\nmodules = [\"hostile\"]\n",
    );
    let worker = start(&addr, &modules, &config, &[]);
    let mut replies = Replies::watch(&addr, "foreign-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    // Each names a task only the other tenant's module has.
    let on_a = put(
        &mut producer,
        "hello",
        "read-env",
        json!({"name": "PATH"}),
        Some("foreign-replies"),
    )
    .await;
    let on_b = put(
        &mut producer,
        "hostile",
        "version",
        json!({}),
        Some("foreign-replies"),
    )
    .await;
    let answered = replies_by_job(&mut replies, 2, Duration::from_secs(20)).await;

    let mut client = connect(&addr).await;
    for (id, tube, task, own_task) in [
        (on_a, "hello", "read-env", "task-one"),
        (on_b, "hostile", "version", "sleep-ms"),
    ] {
        let error = err(&answered[&id]);
        assert_eq!(error.kind, "unknown-task", "{error}");
        // The message lists the tasks of the tenant's own module.
        assert!(
            error.message.contains(task) && error.message.contains(own_task),
            "{error}"
        );
        let stats = wait_state(&mut client, id, JobState::Buried).await;
        assert_eq!(
            (stats.tube.as_str(), stats.reserves),
            (tube, 1),
            "{stats:?}"
        );
    }
    // The other module never ran them: no job finished with their task.
    let ran: Vec<Value> = worker
        .events_starting("job done")
        .into_iter()
        .filter(|e| e["job"] == json!(on_a) || e["job"] == json!(on_b))
        .collect();
    assert!(ran.is_empty(), "{ran:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_file_line_and_key() {
    let dir = TempDir::new("bad-config");
    let modules = dir.path().join("modules");
    std::fs::create_dir(&modules).unwrap();
    let cases = [
        (
            "[tenants.a]\nmodules = [\"hello\"]\nfule = 3\n",
            3,
            "tenants.a.fule",
        ),
        (
            "[tenants.a]\nmodules = [\"hello\"]\n\n[tenants.b]\nmodules = [\"hello\"]\n",
            5,
            "tenants.b.modules[0]",
        ),
        (
            "[tenants.a]\nmodules = [\"hello\"]\ndirs = [\n  { host = \"missing\", guest = \"/in\" },\n]\n",
            4,
            "tenants.a.dirs[0].host",
        ),
    ];
    for (text, line, key) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let output = run_bounded(
            support::runner()
                .args(["--config", file.to_str().unwrap()])
                .args(["--modules", modules.to_str().unwrap()])
                .args(["--beanstalkd", "127.0.0.1:1"]),
            Duration::from_secs(30),
        )
        .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{text}: the worker should refuse to start"
        );
        assert!(
            stderr.contains(&format!("bad.toml:{line}")) && stderr.contains(&format!("`{key}`")),
            "{text}: stderr should name bad.toml:{line} and `{key}`:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_bad_file_keeps_the_old_tenants() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello", "showcase"]);
    let dir = TempDir::new("sighup");
    let one = "[defaults]\nconcurrency = 1\n\n";
    let config = write_config(&dir, &format!("{one}[tenants.a]\nmodules = [\"hello\"]\n"));
    let mut worker = start(&addr, &modules, &config, &[]);
    let mut client = connect(&addr).await;
    wait_watching(&mut client, "hello", 1).await;
    let mut replies = Replies::watch(&addr, "hup-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let hello = async |producer: &mut Producer, replies: &mut Replies| {
        let id = put(producer, "hello", "task-one", abc(), Some("hup-replies")).await;
        let reply: ReplyBody = replies.next(Duration::from_secs(15)).await;
        assert_eq!((reply.job, ok(&reply)), (id, &json!("abc")));
    };
    hello(&mut producer, &mut replies).await;
    // No tenant has showcase yet.
    let echo = put(
        &mut producer,
        "showcase",
        "echo-string",
        json!({"v": "s"}),
        Some("hup-replies"),
    )
    .await;

    write_config(
        &dir,
        &format!("{one}[tenants.a]\nmodules = [\"hello\"]\nconcurrency = \"many\"\n"),
    );
    worker.signal("HUP");
    let failed = worker
        .wait_event("config reload failed", Duration::from_secs(10))
        .await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("tenants.toml:6") && error.contains("tenants.a.concurrency"),
        "{failed}"
    );
    hello(&mut producer, &mut replies).await;
    assert_stays_ready(&mut client, echo, Duration::from_millis(300)).await;

    write_config(
        &dir,
        &format!(
            "{one}[tenants.a]\nmodules = [\"hello\"]\n\n[tenants.b]\nmodules = [\"showcase\"]\n"
        ),
    );
    worker.signal("HUP");
    worker
        .wait_event("config reloaded", Duration::from_secs(10))
        .await;
    let reply = replies.next(Duration::from_secs(15)).await;
    assert_eq!((reply.job, ok(&reply)), (echo, &json!("s")));
    wait_deleted(&mut client, echo).await;
    hello(&mut producer, &mut replies).await;
    assert!(worker.is_running(), "the worker exited");
}
