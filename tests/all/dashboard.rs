//! The dashboard in a real browser (headless Chromium through WebDriver,
//! see `browser_support.rs`) against a real worker and beanstalkd: it shows
//! the tube, its buried jobs with why they failed, the tenant and module;
//! kick is refused without the right token and retries the job with it;
//! delete and pause act; after a restart the reason is still shown; with
//! two beanstalkd servers, a job buried on the second is shown with its
//! server and kicked there. Also
//! the admin listener's `/api/buried` and actions over plain HTTP, with
//! their errors.

use std::path::Path;
use std::time::Duration;

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{Client, JobState, Producer};
use fantoccini::Locator;
use serde_json::{Value, json};

use crate::browser_support::Browser;
use crate::http_support::{Answer, free_addr, get, request};
use crate::worker_support::{
    Worker, abc, connect, job_stats, put, put_buried, wait_deleted, wait_state,
};

const TOKEN: &str = "dash-s3cret";

/// A worker serving tube `m` with hello.wasm, burying a failed job at once,
/// with its admin listener on `admin` (actions enabled with `token`).
async fn worker(addr: &str, admin: &str, token: Option<&str>) -> Worker {
    let mut args = vec![
        "--max-attempts",
        "1",
        "--concurrency",
        "1",
        "--admin",
        admin,
    ];
    if let Some(token) = token {
        args.extend(["--admin-token", token]);
    }
    let mut worker = Worker::start(addr, &[("m", "hello")], &args);
    worker.wait_ready(addr, "m", 1).await;
    worker
}

/// `POST path` with a JSON `body` and, if given, the bearer `token`.
fn post(admin: &str, path: &str, token: Option<&str>, body: &str) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    request(admin, "POST", path, &headers, body)
        .unwrap_or_else(|| panic!("no answer to POST {path} from {admin}"))
}

/// The `{"error": …}` of a refusal with `status`.
fn error(answer: &Answer, status: u16) -> String {
    assert_eq!(answer.status, status, "{}", answer.body);
    let body: Value = serde_json::from_str(&answer.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", answer.body));
    body["error"].as_str().expect("an error line").to_string()
}

async fn state(client: &mut Client, id: u64) -> Option<JobState> {
    job_stats(client, id).await.map(|s| s.state)
}

/// `/api/buried` lists the jobs with their records; every action needs the
/// token, names what was wrong, and GET never acts.
async fn api_lists_and_refuses(admin: &str, client: &mut Client, buried: &[(u64, &str)]) {
    let list = get(admin, "/api/buried?tube=m");
    assert_eq!(list.status, 200, "{}", list.body);
    let list: Value = serde_json::from_str(&list.body).unwrap();
    assert_eq!(list["buried"], 3, "{list}");
    for (id, message) in buried {
        let job = list["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job"] == *id)
            .unwrap_or_else(|| panic!("job {id} not listed: {list}"));
        assert_eq!(job["task"], "fail", "{job}");
        assert!(job["reason"].as_str().unwrap().contains(message), "{job}");
        assert!(job["body"].as_str().unwrap().contains(message), "{job}");
    }
    assert!(error(&get(admin, "/api/buried"), 400).contains("missing tube"));
    assert!(error(&get(admin, "/api/buried?tube=nosuch"), 404).contains("nosuch"));

    let (id, _) = buried[0];
    let kick = json!({"tube": "m", "job": id}).to_string();
    let refusals = [
        (post(admin, "/api/kick", None, &kick), 401, "missing token"),
        (
            post(admin, "/api/kick", Some("nope"), &kick),
            401,
            "wrong token",
        ),
        (
            post(admin, "/api/kick", Some(TOKEN), r#"{"tube":"m"}"#),
            400,
            "which job",
        ),
        (
            post(admin, "/api/kick", Some(TOKEN), "{not json"),
            400,
            "JSON",
        ),
        (
            post(
                admin,
                "/api/kick",
                Some(TOKEN),
                r#"{"tube":"m","job":999999}"#,
            ),
            404,
            "no such job: 999999",
        ),
        (
            post(
                admin,
                "/api/kick",
                Some(TOKEN),
                &json!({"tube": "default", "job": id}).to_string(),
            ),
            409,
            "in tube `m`, not `default`",
        ),
        (
            post(
                admin,
                "/api/pause",
                Some(TOKEN),
                r#"{"tube":"-x","secs":1}"#,
            ),
            400,
            "invalid tube name `-x`",
        ),
        (
            post(
                admin,
                "/api/delete",
                Some("nope"),
                &json!({"job": id}).to_string(),
            ),
            401,
            "wrong token",
        ),
    ];
    for (answer, status, says) in refusals {
        let line = error(&answer, status);
        assert!(
            line.contains(says),
            "expected {status} saying {says:?}, got {line:?}"
        );
    }
    // No action on GET.
    let get_kick = request(admin, "GET", &format!("/api/kick?tube=m&job={id}"), &[], "").unwrap();
    assert_eq!(get_kick.status, 405, "{}", get_kick.body);
    assert_eq!(state(client, id).await, Some(JobState::Buried));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_buried_jobs_and_retries_them_with_the_token() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let admin = free_addr();
    let first = worker(&addr, &admin, Some(TOKEN)).await;

    let mut producer = Producer::connect(&addr).await.unwrap();
    let mut client = connect(&addr).await;
    // 20 jobs succeed and 3 fail, over a few seconds (for the rate chart).
    // The kept one's message is HTML: the page must show it as text.
    let messages = ["kick me", "delete me", "keep <b>me</b>"];
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for round in 0..4 {
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for _ in 0..5 {
            done.push(put(&mut producer, "m", "task-one", abc(), None).await);
        }
        if let Some(message) = messages.get(round) {
            let id = put(
                &mut producer,
                "m",
                "fail",
                json!({ "message": message }),
                None,
            )
            .await;
            failed.push((id, *message));
        }
    }
    for &id in &done {
        wait_deleted(&mut client, id).await;
    }
    for &(id, _) in &failed {
        wait_state(&mut client, id, JobState::Buried).await;
    }
    api_lists_and_refuses(&admin, &mut client, &failed).await;

    let Some(browser) = Browser::start().await else {
        return;
    };
    let [(kicked, _), (deleted, _), (kept, kept_message)] = failed[..] else {
        unreachable!()
    };
    browser.goto(&format!("http://{admin}/")).await;
    let job = |id: u64| format!("#buried tr[data-job=\"{id}\"]");
    for &(id, message) in &failed {
        let reason = format!("{} td.reason", job(id));
        browser
            .wait_text(&reason, message, |t| t.contains(message))
            .await;
        let body = format!("{} pre.body", job(id));
        browser
            .wait_text(&body, "the job's body", |t| t.contains("\"fail\""))
            .await;
    }
    browser
        .wait_text("#tubes tr[data-tube=\"m\"] td.buried", "3", |t| t == "3")
        .await;
    let jobs = |t: &str| t.parse::<u64>().is_ok_and(|n| n > 0);
    browser
        .wait_text("#tenants tr[data-tenant=\"m\"] td.jobs", "its jobs", jobs)
        .await;
    browser.find("#modules tr[data-module=\"m\"]").await;
    browser.find("#rate-chart polyline[data-tube=\"m\"]").await;
    browser
        .wait_until("3 recent failures", async |c| {
            let rows = c.find_all(Locator::Css("#failures tbody tr")).await.ok()?;
            (rows.len() >= 3).then_some(())
        })
        .await;
    // The README's picture: retaken into docs/ with
    // BEANBOX_UPDATE_SCREENSHOT=1, else next to the test's other files so a
    // test run leaves the working tree clean.
    let update = std::env::var_os("BEANBOX_UPDATE_SCREENSHOT").is_some();
    let shot = if update {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png")
    } else {
        std::env::temp_dir().join(format!("beanbox-dashboard-{}.png", std::process::id()))
    };
    browser.screenshot(&shot).await;
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
        "the screenshot {} is missing or empty",
        shot.display()
    );
    if !update {
        let _ = std::fs::remove_file(&shot);
    }

    // Refused without the token, and with a wrong one: still buried.
    let kick = format!("button[data-action=\"kick\"][data-job=\"{kicked}\"]");
    browser.click(&kick).await;
    browser
        .wait_text("#status[data-state=\"error\"]", "a 401", |t| {
            t.contains("401") && t.contains("missing token")
        })
        .await;
    browser.type_into("#token", "not-the-token").await;
    browser.click(&kick).await;
    browser
        .wait_text("#status[data-state=\"error\"]", "wrong token", |t| {
            t.contains("wrong token")
        })
        .await;
    assert_eq!(state(&mut client, kicked).await, Some(JobState::Buried));

    // With it: pause the tube (so that the retry waits, ready), then kick.
    browser.type_into("#token", TOKEN).await;
    browser
        .type_into("input.pause-secs[data-tube=\"m\"]", "600")
        .await;
    browser
        .click("button[data-action=\"pause\"][data-tube=\"m\"]")
        .await;
    browser
        .wait_text("#status[data-state=\"ok\"]", "the pause", |t| {
            t.contains("paused tube m for 600 s")
        })
        .await;
    assert!(client.stats_tube("m").await.unwrap().pause_time_left > 0);
    let body = client.peek(kicked).await.unwrap().body;
    browser.click(&kick).await;
    let done = browser
        .wait_text("#status[data-state=\"ok\"]", "the kick", |t| {
            t.starts_with("kicked job")
        })
        .await;
    let new_job: u64 = done
        .rsplit("new job ")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no new job id in {done:?}"));
    assert_ne!(new_job, kicked);
    assert_eq!(
        state(&mut client, kicked).await,
        None,
        "the buried copy is gone"
    );
    let retried = job_stats(&mut client, new_job)
        .await
        .expect("the retry exists");
    assert_eq!(
        (retried.state, retried.tube.as_str()),
        (JobState::Ready, "m")
    );
    assert_eq!(client.peek(new_job).await.unwrap().body, body);

    // Delete asks twice.
    let delete = format!("button[data-action=\"delete\"][data-job=\"{deleted}\"]");
    browser.click(&delete).await;
    browser
        .wait_text(&delete, "the confirmation", |t| t == "confirm delete")
        .await;
    browser.click(&delete).await;
    browser
        .wait_text("#status[data-state=\"ok\"]", "the delete", |t| {
            t == format!("deleted job {deleted}")
        })
        .await;
    wait_deleted(&mut client, deleted).await;
    browser
        .wait_text("#tubes tr[data-tube=\"m\"] td.buried", "1", |t| t == "1")
        .await;

    // Another worker, read-only: the reason comes from the record on
    // beanstalkd (its recent failures are empty), and nothing can act.
    drop(first);
    let admin = free_addr();
    let _second = worker(&addr, &admin, None).await;
    browser.goto(&format!("http://{admin}/")).await;
    let reason = format!("{} td.reason", job(kept));
    browser
        .wait_text(&reason, kept_message, |t| t.contains(kept_message))
        .await;
    assert!(
        browser
            .text("#failures-section")
            .await
            .contains("No failures.")
    );
    browser
        .wait_text("#actions-hint", "the read-only hint", |t| {
            t.contains("--admin-token")
        })
        .await;
    let kick = format!("button[data-action=\"kick\"][data-job=\"{kept}\"]");
    assert!(!browser.find(&kick).await.is_enabled().await.unwrap());
    let line = error(
        &post(
            &admin,
            "/api/kick",
            Some(TOKEN),
            &json!({"tube": "m", "job": kept}).to_string(),
        ),
        403,
    );
    assert!(line.contains("read-only"), "{line}");
    assert_eq!(state(&mut client, kept).await, Some(JobState::Buried));

    // Two servers: a job buried on the second is listed with its server
    // and kicked there (its tube paused there, so that the retry waits).
    let other = Beanstalkd::start();
    let other_addr = other.addr();
    let id = put_buried(&other_addr, "m", "second server on fire").await;
    let mut other_client = connect(&other_addr).await;
    other_client.pause_tube("m", 600).await.unwrap();
    let admin = free_addr();
    let servers = format!("{addr},{other_addr}");
    let args = ["--admin", &admin, "--admin-token", TOKEN];
    let _third = Worker::start(&servers, &[("m", "hello")], &args);
    browser.goto(&format!("http://{admin}/")).await;
    let server_row = format!("#servers tr[data-server=\"{other_addr}\"]");
    browser
        .wait_text(&format!("{server_row} td.state"), "up", |t| t == "up")
        .await;
    let counts = format!("{server_row} div[data-tube=\"m\"]");
    browser
        .wait_text(&counts, "its buried job", |t| t.contains("1 buried"))
        .await;
    let row = format!("#buried tr[data-server=\"{other_addr}\"][data-job=\"{id}\"]");
    browser
        .wait_text(&format!("{row} td.reason"), "its reason", |t| {
            t.contains("second server on fire")
        })
        .await;
    assert_eq!(browser.text(&format!("{row} td.server")).await, other_addr);
    browser.type_into("#token", TOKEN).await;
    browser
        .click(&format!("{row} button[data-action=\"kick\"]"))
        .await;
    let done = browser
        .wait_text("#status[data-state=\"ok\"]", "the kick there", |t| {
            t.starts_with("kicked job") && t.contains(&other_addr)
        })
        .await;
    assert_eq!(state(&mut other_client, id).await, None, "{done}");
    assert_eq!(state(&mut client, kept).await, Some(JobState::Buried));
    browser.close().await;
}
