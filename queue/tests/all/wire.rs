//! The client against scripted fake servers: replies split across reads,
//! pipelining, replies out of step, garbage and hang-ups.

use std::time::Duration;

use beanbox_queue::{Client, Error, ServerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One step of a fake server: the exact bytes it must receive, then the
/// chunks it answers with (flushed one by one with a pause between them).
pub(crate) type Step = (&'static [u8], Vec<&'static [u8]>);

/// Serves one connection by `script`, then hangs up. Returns the address;
/// the task panics (and the test with it) on an unexpected request.
pub(crate) async fn fake_server(script: Vec<Step>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        for (expect, replies) in script {
            let mut got = vec![0; expect.len()];
            conn.read_exact(&mut got).await.unwrap();
            assert_eq!(
                got.escape_ascii().to_string(),
                expect.escape_ascii().to_string()
            );
            for chunk in replies {
                conn.write_all(chunk).await.unwrap();
                conn.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn reply_split_into_many_reads_is_reassembled() {
    let chunks: Vec<&'static [u8]> = vec![
        b"RES",
        b"ERVED 7 1",
        b"1\r",
        b"\nhello",
        b" world",
        b"\r",
        b"\n",
    ];
    let (addr, server) = fake_server(vec![(b"reserve\r\n", chunks)]).await;
    let mut c = Client::connect(&addr).await.unwrap();
    let job = c.reserve().await.unwrap();
    assert_eq!((job.id, &job.body[..]), (7, &b"hello world"[..]));
    assert!(!c.is_broken());
    server.await.unwrap();
}

#[tokio::test]
async fn delete_and_reserve_go_out_in_one_write() {
    // The fake answers nothing until it has both commands: a client that
    // waited for the delete's reply first would hang here.
    let (addr, server) = fake_server(vec![(
        b"delete 5\r\nreserve-with-timeout 3\r\n",
        vec![b"DELETED\r\nRESERVED 6 2\r\nok\r\n"],
    )])
    .await;
    let mut c = Client::connect(&addr).await.unwrap();
    let (deleted, reserved) = tokio::time::timeout(
        Duration::from_secs(5),
        c.delete_and_reserve_with_timeout(5, 3),
    )
    .await
    .expect("both commands must be sent before any reply is awaited");
    deleted.unwrap();
    assert_eq!(reserved.unwrap().id, 6);
    server.await.unwrap();
}

#[tokio::test]
async fn reply_that_does_not_fit_the_command_breaks_the_client() {
    let (addr, _server) = fake_server(vec![(b"delete 1\r\n", vec![b"INSERTED 3\r\n"])]).await;
    let mut c = Client::connect(&addr).await.unwrap();
    let e = c.delete(1).await.unwrap_err();
    assert!(
        matches!(&e, Error::Protocol(m) if m.contains("INSERTED") && m.contains("delete")),
        "{e:?}"
    );
    assert!(e.is_connection_error());
    assert!(c.is_broken());
    assert!(matches!(c.delete(1).await, Err(Error::Protocol(_))));
}

#[tokio::test]
async fn out_of_step_delete_reply_fails_the_pipelined_reserve_too() {
    let (addr, _server) = fake_server(vec![(
        b"delete 1\r\nreserve-with-timeout 0\r\n",
        vec![b"TOUCHED\r\nTIMED_OUT\r\n"],
    )])
    .await;
    let mut c = Client::connect(&addr).await.unwrap();
    let (deleted, reserved) = c.delete_and_reserve_with_timeout(1, 0).await;
    assert!(deleted.unwrap_err().is_connection_error());
    assert!(reserved.unwrap_err().is_connection_error());
}

#[tokio::test]
async fn garbage_reply_is_a_protocol_error() {
    let (addr, _server) =
        fake_server(vec![(b"stats\r\n", vec![b"HTTP/1.1 400 Bad Request\r\n"])]).await;
    let mut c = Client::connect(&addr).await.unwrap();
    let e = c.stats().await.unwrap_err();
    assert!(
        matches!(&e, Error::Protocol(m) if m.contains("HTTP/1.1")),
        "{e:?}"
    );
    assert!(c.is_broken());
}

#[tokio::test]
async fn hang_up_mid_reply_is_closed() {
    let (addr, _server) = fake_server(vec![(b"peek 1\r\n", vec![b"FOUND 1 10\r\nhalf"])]).await;
    let mut c = Client::connect(&addr).await.unwrap();
    let e = c.peek(1).await.unwrap_err();
    assert!(matches!(e, Error::Closed), "{e:?}");
    assert!(e.is_connection_error());
}

#[tokio::test]
async fn pipelined_requests_both_fail_when_the_server_hangs_up() {
    let (addr, _server) =
        fake_server(vec![(b"delete 1\r\nreserve-with-timeout 0\r\n", vec![])]).await;
    let mut c = Client::connect(&addr).await.unwrap();
    let (deleted, reserved) = c.delete_and_reserve_with_timeout(1, 0).await;
    assert!(matches!(deleted, Err(Error::Closed)), "{deleted:?}");
    assert!(matches!(reserved, Err(Error::Closed)), "{reserved:?}");
}

#[tokio::test]
async fn use_reply_naming_another_tube_is_refused() {
    let (addr, _server) = fake_server(vec![(b"use a\r\n", vec![b"USING b\r\n"])]).await;
    let mut c = Client::connect(&addr).await.unwrap();
    assert!(c.use_tube("a").await.unwrap_err().is_connection_error());
}

#[tokio::test]
async fn buried_put_carries_the_new_id() {
    let (addr, _server) = fake_server(vec![
        (b"put 1 2 3 1\r\nx\r\n", vec![b"BURIED 9\r\n"]),
        (b"release 9 1 0\r\n", vec![b"BURIED\r\n"]),
        (b"put 1 2 3 1\r\ny\r\n", vec![b"OUT_OF_MEMORY\r\n"]),
    ])
    .await;
    let mut c = Client::connect(&addr).await.unwrap();
    assert!(matches!(
        c.put(1, 2, 3, b"x").await,
        Err(Error::Buried(Some(9)))
    ));
    assert!(matches!(c.release(9, 1, 0).await, Err(Error::Buried(None))));
    let e = c.put(1, 2, 3, b"y").await.unwrap_err();
    assert!(
        matches!(e, Error::Server(ServerError::OutOfMemory)) && e.is_server_busy(),
        "{e:?}"
    );
    assert!(!c.is_broken());
}

/// A `stats-job` reply as beanstalkd writes it, `time-left` set to `value`.
fn stats_job_reply(value: &str) -> &'static [u8] {
    let body = format!(
        "---\nid: 4\ntube: default\nstate: reserved\npri: 0\nage: 9\ndelay: 0\nttr: 5\ntime-left: {value}\nfile: 0\nreserves: 1\ntimeouts: 0\nreleases: 0\nburies: 0\nkicks: 0\n"
    );
    format!("OK {}\r\n{body}\r\n", body.len())
        .into_bytes()
        .leak()
}

#[tokio::test]
async fn negative_time_left_is_read() {
    let (addr, server) = fake_server(vec![(b"stats-job 4\r\n", vec![stats_job_reply("-1")])]).await;
    let mut c = Client::connect(&addr).await.unwrap();
    assert_eq!(c.stats_job(4).await.unwrap().time_left, -1);
    server.await.unwrap();
}

#[tokio::test]
async fn unreadable_stats_field_fails_that_call_and_the_next_one_works() {
    let (addr, server) = fake_server(vec![
        (b"stats-job 4\r\n", vec![stats_job_reply("soon")]),
        (b"use a\r\n", vec![b"USING a\r\n"]),
        (
            b"stats-job 4\r\ndelete 4\r\nreserve-with-timeout 0\r\n",
            vec![stats_job_reply("1e3"), b"DELETED\r\nRESERVED 5 1\r\nx\r\n"],
        ),
    ])
    .await;
    let mut c = Client::connect(&addr).await.unwrap();
    let e = c.stats_job(4).await.unwrap_err();
    assert!(
        matches!(&e, Error::Malformed(m) if m.contains("time-left") && m.contains("soon")),
        "{e:?}"
    );
    assert!(!e.is_connection_error());
    assert!(!c.is_broken());
    c.use_tube("a").await.unwrap();
    // In a pipeline, the statistics fail alone.
    let (stats, deleted, reserved) = c.stats_delete_and_reserve_with_timeout(4, 0).await;
    assert!(matches!(stats, Err(Error::Malformed(_))), "{stats:?}");
    deleted.unwrap();
    assert_eq!(reserved.unwrap().id, 5);
    assert!(!c.is_broken());
    server.await.unwrap();
}
