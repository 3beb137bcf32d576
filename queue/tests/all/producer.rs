//! The producer: options reach the server, one connection serves many
//! tubes, and the body is the documented envelope.

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{Envelope, Error, JobState, Producer, PutOptions};
use serde_json::{Map, Value, json};

use crate::connect;

fn kwargs(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[test]
fn default_options_match_the_documentation() {
    let opts = PutOptions::default();
    assert_eq!(
        (opts.priority, opts.delay, opts.ttr, opts.reply_to, opts.key),
        (1024, 0, 60, None, None)
    );
}

#[tokio::test]
async fn put_options_reach_the_server() {
    let server = Beanstalkd::start();
    let mut producer = Producer::connect(&server.addr()).await.unwrap();
    let opts = PutOptions {
        priority: 5,
        delay: 30,
        ttr: 90,
        reply_to: None,
        key: None,
    };
    let id = producer
        .put("images", "resize", &Map::new(), &opts)
        .await
        .unwrap();
    let mut c = connect(&server).await;
    let stats = c.stats_job(id).await.unwrap();
    assert_eq!(stats.tube, "images");
    assert_eq!(stats.state, JobState::Delayed);
    assert_eq!((stats.pri, stats.delay, stats.ttr), (5, 30, 90));
}

#[tokio::test]
async fn body_is_the_envelope_with_reply_to() {
    let server = Beanstalkd::start();
    let mut producer = Producer::connect(&server.addr()).await.unwrap();
    let opts = PutOptions {
        reply_to: Some("results".into()),
        ..PutOptions::default()
    };
    let id = producer
        .put("images", "resize", &kwargs(json!({"width": 200})), &opts)
        .await
        .unwrap();
    let mut c = connect(&server).await;
    let job = c.peek(id).await.unwrap();
    let body: Value = serde_json::from_slice(&job.body).unwrap();
    assert_eq!(
        body,
        json!({"task": "resize", "kwargs": {"width": 200}, "reply_to": "results"})
    );
    let env = Envelope::parse(&job.body).unwrap();
    assert_eq!(env.reply_to.as_deref(), Some("results"));
}

#[tokio::test]
async fn one_connection_serves_many_tubes_and_skips_redundant_use() {
    let server = Beanstalkd::start();
    let mut c = connect(&server).await;
    let connections = |stats: &std::collections::BTreeMap<String, String>| -> u64 {
        stats["total-connections"].parse().unwrap()
    };
    let before = connections(&c.stats().await.unwrap());
    let mut producer = Producer::connect(&server.addr()).await.unwrap();
    let opts = PutOptions::default();
    let a1 = producer.put("a", "t", &Map::new(), &opts).await.unwrap();
    let a2 = producer.put("a", "t", &Map::new(), &opts).await.unwrap();
    let b = producer.put("b", "t", &Map::new(), &opts).await.unwrap();
    let d = producer.put_body("default", b"raw", &opts).await.unwrap();
    let stats = c.stats().await.unwrap();
    // One producer connection, and `use` only on a change of tube: a, b,
    // then back to default.
    assert_eq!(connections(&stats), before + 1);
    assert_eq!(stats["cmd-use"], "3");
    for (id, tube) in [(a1, "a"), (a2, "a"), (b, "b"), (d, "default")] {
        assert_eq!(c.stats_job(id).await.unwrap().tube, tube);
    }
    assert_eq!(&c.peek(d).await.unwrap().body[..], b"raw");
}

#[tokio::test]
async fn client_access_makes_the_producer_forget_the_used_tube() {
    let server = Beanstalkd::start();
    let mut producer = Producer::connect(&server.addr()).await.unwrap();
    producer.client().use_tube("elsewhere").await.unwrap();
    let id = producer
        .put("default", "t", &Map::new(), &PutOptions::default())
        .await
        .unwrap();
    let mut c = connect(&server).await;
    assert_eq!(c.stats_job(id).await.unwrap().tube, "default");
}

#[tokio::test]
async fn bad_tube_or_reply_to_is_refused_before_sending() {
    let server = Beanstalkd::start();
    let mut producer = Producer::connect(&server.addr()).await.unwrap();
    let e = producer
        .put("bad tube", "t", &Map::new(), &PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidTube(_)), "{e:?}");
    let opts = PutOptions {
        reply_to: Some("-bad".into()),
        ..PutOptions::default()
    };
    let e = producer
        .put("ok", "t", &Map::new(), &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidTube(ref t) if t == "-bad"),
        "{e:?}"
    );
    let mut c = connect(&server).await;
    assert_eq!(c.stats().await.unwrap()["cmd-put"], "0");
}
