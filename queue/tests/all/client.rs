//! The client against a real beanstalkd: every command, its success and its
//! error replies.

use std::time::Duration;

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{Error, JobState, ServerError};

use crate::connect;

#[tokio::test]
async fn put_reserve_delete_round_trip() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    c.use_tube("jobs").await.unwrap();
    let id = c.put(10, 0, 60, b"hello\r\nworld").await.unwrap();
    assert_eq!(c.watch("jobs").await.unwrap(), 2);
    let job = c.reserve().await.unwrap();
    assert_eq!(job.id, id);
    assert_eq!(&job.body[..], b"hello\r\nworld");
    c.delete(id).await.unwrap();
    assert!(c.delete(id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn delete_of_missing_job_is_not_found() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    let e = c.delete(12345).await.unwrap_err();
    assert!(matches!(e, Error::Server(ServerError::NotFound)), "{e:?}");
    assert!(!e.is_connection_error());
    // An error reply leaves the connection usable.
    assert!(!c.is_broken());
    c.put(0, 0, 1, b"x").await.unwrap();
}

#[tokio::test]
async fn reserve_with_timeout_on_empty_tube_times_out() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    let e = c.reserve_with_timeout(0).await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    let started = std::time::Instant::now();
    let e = c.reserve_with_timeout(1).await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn reserve_waits_until_a_job_is_put() {
    let server = Beanstalkd::start();
    let mut worker = connect(&server).await;
    let mut producer = connect(&server).await;
    let reserve = tokio::spawn(async move { worker.reserve().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!reserve.is_finished());
    let id = producer.put(0, 0, 60, b"late").await.unwrap();
    let job = reserve.await.unwrap().unwrap();
    assert_eq!((job.id, &job.body[..]), (id, &b"late"[..]));
}

#[tokio::test]
async fn reserve_gets_deadline_soon_while_holding_a_job_about_to_expire() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    c.put(0, 0, 1, b"short").await.unwrap();
    c.reserve().await.unwrap();
    let e = c.reserve_with_timeout(2).await.unwrap_err();
    assert!(e.is_deadline_soon(), "{e:?}");
    assert!(matches!(e, Error::Server(ServerError::DeadlineSoon)));
}

#[tokio::test]
async fn reserve_job_takes_that_job_or_not_found() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    let _first = c.put(0, 0, 60, b"first").await.unwrap();
    let second = c.put(0, 0, 60, b"second").await.unwrap();
    let job = c.reserve_job(second).await.unwrap();
    assert_eq!((job.id, &job.body[..]), (second, &b"second"[..]));
    // Already reserved, and missing.
    assert!(c.reserve_job(second).await.unwrap_err().is_not_found());
    assert!(c.reserve_job(999).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn release_sets_priority_and_delay() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    let id = c.put(100, 0, 60, b"x").await.unwrap();
    c.reserve().await.unwrap();
    c.release(id, 7, 0).await.unwrap();
    let stats = c.stats_job(id).await.unwrap();
    assert_eq!(
        (stats.state, stats.pri, stats.releases),
        (JobState::Ready, 7, 1)
    );
    c.reserve().await.unwrap();
    c.release(id, 8, 100).await.unwrap();
    let stats = c.stats_job(id).await.unwrap();
    assert_eq!((stats.state, stats.delay), (JobState::Delayed, 100));
    // Not reserved by us any more.
    assert!(c.release(id, 0, 0).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn bury_then_kick_and_kick_job() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    let a = c.put(0, 0, 60, b"a").await.unwrap();
    let b = c.put(0, 0, 60, b"b").await.unwrap();
    c.reserve().await.unwrap();
    c.reserve().await.unwrap();
    c.bury(a, 3).await.unwrap();
    c.bury(b, 4).await.unwrap();
    let stats = c.stats_job(a).await.unwrap();
    assert_eq!(
        (stats.state, stats.pri, stats.buries),
        (JobState::Buried, 3, 1)
    );
    assert_eq!(c.peek_buried().await.unwrap().id, a);
    c.kick_job(a).await.unwrap();
    assert_eq!(c.stats_job(a).await.unwrap().state, JobState::Ready);
    assert_eq!(c.kick(10).await.unwrap(), 1);
    let stats = c.stats_job(b).await.unwrap();
    assert_eq!((stats.state, stats.kicks), (JobState::Ready, 1));
    assert_eq!(c.kick(10).await.unwrap(), 0);
    // Ready jobs cannot be kicked; missing ones neither; bury needs a reservation.
    assert!(c.kick_job(a).await.unwrap_err().is_not_found());
    assert!(c.kick_job(999).await.unwrap_err().is_not_found());
    assert!(c.bury(a, 0).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn touch_restarts_the_time_to_run() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    // time-left counts whole seconds: after 1.2 s it reads at most 58, and
    // right after the touch 59 (the next request comes within a second).
    // A long TTR keeps a slow machine from timing the job out meanwhile.
    let id = c.put(0, 0, 60, b"slow").await.unwrap();
    c.reserve().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = c.stats_job(id).await.unwrap().time_left;
    c.touch(id).await.unwrap();
    let after = c.stats_job(id).await.unwrap().time_left;
    assert!(after > before, "time-left {before} then {after}");
    assert!(c.touch(999).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn watch_and_ignore_until_not_ignored() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    assert_eq!(c.list_tubes_watched().await.unwrap(), ["default"]);
    assert_eq!(c.watch("a").await.unwrap(), 2);
    assert_eq!(c.watch("a").await.unwrap(), 2);
    assert_eq!(c.list_tubes_watched().await.unwrap(), ["default", "a"]);
    assert_eq!(c.ignore("default").await.unwrap(), 1);
    let e = c.ignore("a").await.unwrap_err();
    assert!(matches!(e, Error::Server(ServerError::NotIgnored)), "{e:?}");
    assert_eq!(c.list_tubes_watched().await.unwrap(), ["a"]);
}

#[tokio::test]
async fn peek_by_id_and_by_state() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    c.use_tube("t").await.unwrap();
    c.watch("t").await.unwrap();
    c.ignore("default").await.unwrap();
    assert!(c.peek_ready().await.unwrap_err().is_not_found());
    assert!(c.peek_delayed().await.unwrap_err().is_not_found());
    assert!(c.peek_buried().await.unwrap_err().is_not_found());
    let buried = c.put(0, 0, 60, b"buried").await.unwrap();
    c.reserve().await.unwrap();
    c.bury(buried, 0).await.unwrap();
    let ready = c.put(0, 0, 60, b"ready").await.unwrap();
    let delayed = c.put(0, 100, 60, b"delayed").await.unwrap();
    let job = c.peek(delayed).await.unwrap();
    assert_eq!((job.id, &job.body[..]), (delayed, &b"delayed"[..]));
    assert_eq!(c.peek_ready().await.unwrap().id, ready);
    assert_eq!(c.peek_delayed().await.unwrap().id, delayed);
    assert_eq!(&c.peek_buried().await.unwrap().body[..], b"buried");
    assert!(c.peek(999).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn stats_job_reports_every_field() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    c.use_tube("stats").await.unwrap();
    let id = c.put(5, 30, 10, b"x").await.unwrap();
    let s = c.stats_job(id).await.unwrap();
    assert_eq!(s.id, id);
    assert_eq!(s.tube, "stats");
    assert_eq!(s.state, JobState::Delayed);
    assert_eq!((s.pri, s.delay, s.ttr), (5, 30, 10));
    assert!(s.time_left > 0 && s.time_left <= 30);
    assert_eq!((s.file, s.reserves, s.timeouts), (0, 0, 0));
    assert_eq!((s.releases, s.buries, s.kicks), (0, 0, 0));
    assert!(s.age < 5);
    assert!(c.stats_job(999).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn stats_tube_counts_jobs_and_connections() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    c.use_tube("t").await.unwrap();
    c.put(0, 0, 60, b"urgent").await.unwrap();
    c.put(2000, 0, 60, b"ready").await.unwrap();
    c.put(0, 100, 60, b"delayed").await.unwrap();
    let s = c.stats_tube("t").await.unwrap();
    assert_eq!(s.name, "t");
    assert_eq!(
        (
            s.current_jobs_urgent,
            s.current_jobs_ready,
            s.current_jobs_delayed
        ),
        (1, 2, 1)
    );
    assert_eq!(
        (s.current_jobs_reserved, s.current_jobs_buried, s.total_jobs),
        (0, 0, 3)
    );
    assert_eq!(
        (s.current_using, s.current_watching, s.current_waiting),
        (1, 0, 0)
    );
    assert_eq!(
        (s.cmd_delete, s.cmd_pause_tube, s.pause, s.pause_time_left),
        (0, 0, 0, 0)
    );
    assert!(c.stats_tube("nope").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn stats_reports_the_server() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    let stats = c.stats().await.unwrap();
    assert_eq!(stats["pid"], server.pid().unwrap().to_string());
    assert_eq!(stats["version"], "1.12");
    assert_eq!(stats["current-connections"], "1");
}

#[tokio::test]
async fn lists_tubes_and_the_used_one() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    assert_eq!(c.list_tube_used().await.unwrap(), "default");
    c.use_tube("emails").await.unwrap();
    assert_eq!(c.list_tube_used().await.unwrap(), "emails");
    let mut tubes = c.list_tubes().await.unwrap();
    tubes.sort();
    assert_eq!(tubes, ["default", "emails"]);
}

#[tokio::test]
async fn pause_tube_holds_back_its_jobs() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    c.put(0, 0, 60, b"x").await.unwrap();
    c.pause_tube("default", 60).await.unwrap();
    let s = c.stats_tube("default").await.unwrap();
    assert_eq!((s.pause, s.cmd_pause_tube), (60, 1));
    assert!(s.pause_time_left > 0);
    assert!(c.reserve_with_timeout(0).await.unwrap_err().is_timeout());
    assert!(c.pause_tube("nope", 1).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn job_over_the_size_limit_is_too_big_and_the_connection_survives() {
    let server = Beanstalkd::start_with_args(&["-z", "10"]);
    let mut c = connect(&server).await;
    let e = c.put(0, 0, 60, b"eleven byte").await.unwrap_err();
    assert!(matches!(e, Error::Server(ServerError::JobTooBig)), "{e:?}");
    let id = c.put(0, 0, 60, b"ten bytes!").await.unwrap();
    assert_eq!(&c.peek(id).await.unwrap().body[..], b"ten bytes!");
}

#[tokio::test]
async fn large_bodies_arrive_whole() {
    let server = Beanstalkd::start_with_args(&["-z", "3000000"]);
    let mut c = connect(&server).await;
    let body: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    let id = c.put(0, 0, 60, &body).await.unwrap();
    let job = c.reserve().await.unwrap();
    assert_eq!(job.id, id);
    assert!(job.body == body, "body differs");
}

#[tokio::test]
async fn draining_server_refuses_puts() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    c.put(0, 0, 60, b"before").await.unwrap();
    server.drain();
    // The signal is handled asynchronously; wait for it to take effect.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let e = loop {
        match c.put(0, 0, 60, b"after").await {
            Err(e) => break e,
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(_) => panic!("server never started draining"),
        }
    };
    assert!(matches!(e, Error::Server(ServerError::Draining)), "{e:?}");
    assert!(e.is_server_busy());
    // Reserving still works in drain mode.
    assert_eq!(&c.reserve().await.unwrap().body[..], b"before");
}

#[tokio::test]
async fn delete_and_reserve_with_timeout_does_both() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    let first = c.put(0, 0, 60, b"1").await.unwrap();
    let second = c.put(0, 0, 60, b"2").await.unwrap();
    assert_eq!(c.reserve().await.unwrap().id, first);

    let (deleted, next) = c.delete_and_reserve_with_timeout(first, 0).await;
    deleted.unwrap();
    assert_eq!(next.unwrap().id, second);
    assert!(c.peek(first).await.unwrap_err().is_not_found());

    let (deleted, next) = c.delete_and_reserve_with_timeout(second, 0).await;
    deleted.unwrap();
    assert!(next.unwrap_err().is_timeout());

    // A failed delete does not stop the reserve.
    let third = c.put(0, 0, 60, b"3").await.unwrap();
    let (deleted, next) = c.delete_and_reserve_with_timeout(999, 0).await;
    assert!(deleted.unwrap_err().is_not_found());
    assert_eq!(next.unwrap().id, third);
    assert!(!c.is_broken());
}

#[tokio::test]
async fn stats_delete_and_reserve_with_timeout_does_all_three() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    let first = c.put(7, 0, 42, b"1").await.unwrap();
    let second = c.put(9, 0, 60, b"2").await.unwrap();
    assert_eq!(c.reserve().await.unwrap().id, first);

    let (stats, deleted, next) = c.stats_delete_and_reserve_with_timeout(first, 0).await;
    let stats = stats.unwrap();
    assert_eq!(
        (stats.id, stats.pri, stats.ttr, stats.releases),
        (first, 7, 42, 0)
    );
    assert_eq!(stats.tube, "default");
    deleted.unwrap();
    assert_eq!(next.unwrap().id, second);
    assert!(c.peek(first).await.unwrap_err().is_not_found());

    // Unknown job: stats and delete fail, the reserve still runs.
    let (stats, deleted, next) = c.stats_delete_and_reserve_with_timeout(999, 0).await;
    assert!(stats.unwrap_err().is_not_found());
    assert!(deleted.unwrap_err().is_not_found());
    assert!(next.unwrap_err().is_timeout());
    assert!(!c.is_broken());
}

#[tokio::test]
async fn stats_and_delete_does_both_in_one_write() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    let first = c.put(7, 0, 42, b"1").await.unwrap();
    assert_eq!(c.reserve().await.unwrap().id, first);

    let (stats, deleted) = c.stats_and_delete(first).await;
    let stats = stats.unwrap();
    assert_eq!((stats.id, stats.pri, stats.ttr), (first, 7, 42));
    deleted.unwrap();
    assert!(c.peek(first).await.unwrap_err().is_not_found());

    // Unknown job: both fail, and the connection stays in step.
    let (stats, deleted) = c.stats_and_delete(999).await;
    assert!(stats.unwrap_err().is_not_found());
    assert!(deleted.unwrap_err().is_not_found());
    assert!(!c.is_broken());
    assert!(c.reserve_with_timeout(0).await.unwrap_err().is_timeout());
}

#[tokio::test]
async fn invalid_tube_names_are_refused_before_sending() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    for bad in ["", "-x", "a b", "new\r\nline", &"x".repeat(201)] {
        let e = c.use_tube(bad).await.unwrap_err();
        assert!(matches!(e, Error::InvalidTube(_)), "{bad:?}: {e:?}");
        assert!(!e.is_connection_error());
        assert!(matches!(c.watch(bad).await, Err(Error::InvalidTube(_))));
        assert!(matches!(c.ignore(bad).await, Err(Error::InvalidTube(_))));
        assert!(matches!(
            c.stats_tube(bad).await,
            Err(Error::InvalidTube(_))
        ));
        assert!(matches!(
            c.pause_tube(bad, 1).await,
            Err(Error::InvalidTube(_))
        ));
    }
    assert_eq!(c.list_tube_used().await.unwrap(), "default");
}

#[tokio::test]
async fn killed_server_is_a_connection_error_and_a_restart_serves_again() {
    let mut server = Beanstalkd::start();
    let mut c = connect(&server).await;
    c.put(0, 0, 60, b"lost").await.unwrap();
    server.kill();
    let e = c.reserve_with_timeout(1).await.unwrap_err();
    assert!(e.is_connection_error(), "{e:?}");
    assert!(c.is_broken());
    assert!(c.stats().await.unwrap_err().is_connection_error());
    server.restart();
    let mut c = connect(&server).await;
    // Without -b nothing survives the restart.
    assert!(c.reserve_with_timeout(0).await.unwrap_err().is_timeout());
}

#[tokio::test]
async fn abandoned_request_breaks_the_client() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    let pending = tokio::time::timeout(Duration::from_millis(100), c.reserve()).await;
    assert!(
        pending.is_err(),
        "nothing to reserve, so it must still wait"
    );
    assert!(c.is_broken());
    let e = c.put(0, 0, 60, b"x").await.unwrap_err();
    assert!(
        matches!(e, Error::Protocol(_)) && e.is_connection_error(),
        "{e:?}"
    );
    assert!(e.to_string().contains("reconnect"), "{e}");
}

/// Serves one connection by relaying it to `upstream`, with every `from` in
/// the server's replies replaced by `to` (as long: reply lengths stay true).
/// A short reply reaches us in one read on loopback, so a match is never
/// split between reads.
async fn rewriting_proxy(upstream: String, from: &'static [u8], to: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    assert_eq!(from.len(), to.len());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
        let (mut client_rd, mut client_wr) = client.into_split();
        let (mut server_rd, mut server_wr) = server.into_split();
        tokio::spawn(async move { tokio::io::copy(&mut client_rd, &mut server_wr).await });
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = server_rd.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            let mut chunk = buf[..n].to_vec();
            let mut i = 0;
            while i + from.len() <= chunk.len() {
                if &chunk[i..i + from.len()] == from {
                    chunk[i..i + from.len()].copy_from_slice(to);
                }
                i += 1;
            }
            if client_wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    addr
}

#[tokio::test]
async fn unreadable_stats_field_from_a_real_server_leaves_the_client_usable() {
    let server = Beanstalkd::start();
    let proxy = rewriting_proxy(server.addr(), b"time-left: 0\n", b"time-left: ?\n").await;
    let mut c = beanbox_queue::Client::connect(&proxy).await.unwrap();
    let id = c.put(0, 0, 60, b"ready").await.unwrap();
    // A ready job's time-left is 0, which the proxy garbles.
    let e = c.stats_job(id).await.unwrap_err();
    assert!(
        matches!(&e, Error::Malformed(m) if m.contains("time-left")),
        "{e:?}"
    );
    assert!(!e.is_connection_error() && !c.is_broken(), "{e:?}");
    // The same connection goes on: reserve, delete, statistics.
    let job = c.reserve_with_timeout(0).await.unwrap();
    assert_eq!(job.id, id);
    let s = c.stats_job(id).await.unwrap();
    assert!(s.time_left > 0 && s.time_left <= 60, "{s:?}");
    c.delete(id).await.unwrap();
    assert!(c.stats_job(id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn put_in_leaves_no_tube_in_use() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    let id = c.put_in("replies-1", 5, 0, 60, b"one").await.unwrap();
    assert_eq!(c.list_tube_used().await.unwrap(), "default");
    let s = c.stats_job(id).await.unwrap();
    assert_eq!((s.tube.as_str(), s.pri, s.ttr), ("replies-1", 5, 60));
    // Once its job is gone, nothing keeps the tube.
    c.delete(id).await.unwrap();
    assert_eq!(c.list_tubes().await.unwrap(), ["default"]);
    // A refused put leaves the connection in step and using `default`.
    let small = Beanstalkd::start_with_args(&["-z", "10"]);
    let mut c = connect(&small).await;
    let e = c
        .put_in("replies-2", 0, 0, 60, b"eleven byte")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Server(ServerError::JobTooBig)), "{e:?}");
    assert!(!c.is_broken());
    assert_eq!(c.list_tube_used().await.unwrap(), "default");
    assert_eq!(c.list_tubes().await.unwrap(), ["default"]);
    assert!(matches!(
        c.put_in("no spaces", 0, 0, 60, b"x").await,
        Err(Error::InvalidTube(_))
    ));
}
