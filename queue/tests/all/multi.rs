//! The multi-server producer against real beanstalkd processes: spreading,
//! keys, down servers, and a put whose reply never comes.

use std::time::Duration;

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{Client, MultiProducer, Placed, PutError, PutOptions, Servers, placement};

use crate::wire::fake_server;

fn servers_of(addrs: &[String]) -> Servers {
    addrs.join(",").parse().unwrap()
}

fn start(n: usize) -> (Vec<Beanstalkd>, Servers) {
    let guards: Vec<Beanstalkd> = (0..n).map(|_| Beanstalkd::start()).collect();
    let addrs: Vec<String> = guards.iter().map(Beanstalkd::addr).collect();
    (guards, servers_of(&addrs))
}

/// Ready jobs in `tube` on the server at `addr` (0 when the tube is gone).
async fn ready(addr: &str, tube: &str) -> u64 {
    let mut c = Client::connect(addr).await.unwrap();
    match c.stats_tube(tube).await {
        Ok(stats) => stats.current_jobs_ready,
        Err(e) if e.is_not_found() => 0,
        Err(e) => panic!("stats-tube {tube} on {addr}: {e}"),
    }
}

/// `put`s the server at `addr` has seen since it started.
async fn puts_seen(addr: &str) -> u64 {
    let mut c = Client::connect(addr).await.unwrap();
    c.stats().await.unwrap()["cmd-put"].parse().unwrap()
}

async fn put(p: &mut MultiProducer, tube: &str, key: Option<&str>) -> Placed {
    let opts = PutOptions {
        key: key.map(str::to_owned),
        ..PutOptions::default()
    };
    p.put_body(tube, b"x", &opts)
        .await
        .unwrap_or_else(|e| panic!("put on {tube}: {e}"))
}

#[tokio::test]
async fn round_robin_spreads_jobs_over_all_servers() {
    let (_guards, servers) = start(3);
    let mut p = MultiProducer::new(servers.clone());
    let mut placed = [0u64; 3];
    for _ in 0..3_000 {
        let job = put(&mut p, "rr", None).await;
        assert_eq!(job.addr, servers.as_slice()[job.server]);
        placed[job.server] += 1;
    }
    for (i, addr) in servers.iter().enumerate() {
        let n = ready(addr, "rr").await;
        assert_eq!(n, placed[i], "{addr}");
        assert!((600..=1_350).contains(&n), "{addr} got {n} of 3000");
    }
}

#[tokio::test]
async fn a_key_always_lands_on_its_server_and_keys_spread() {
    let (_guards, servers) = start(3);
    let mut p = MultiProducer::new(servers.clone());
    let mut keys_per_server = [0u64; 3];
    for k in 0..300 {
        let key = format!("customer-{k}");
        let expected = placement::by_key(servers.as_slice(), &key)[0];
        for _ in 0..3 {
            assert_eq!(
                put(&mut p, "keyed", Some(&key)).await.server,
                expected,
                "{key}"
            );
        }
        keys_per_server[expected] += 1;
    }
    // A fresh producer (another process) places them the same way.
    let mut other = MultiProducer::new(servers.clone());
    for k in 0..300 {
        let key = format!("customer-{k}");
        let job = put(&mut other, "keyed", Some(&key)).await;
        assert_eq!(job.server, placement::by_key(servers.as_slice(), &key)[0]);
    }
    for (i, addr) in servers.iter().enumerate() {
        assert!(keys_per_server[i] >= 50, "{keys_per_server:?}");
        assert_eq!(ready(addr, "keyed").await, keys_per_server[i] * 4, "{addr}");
    }
}

#[tokio::test]
async fn a_killed_server_is_skipped_and_none_are_lost_or_doubled() {
    let (mut guards, servers) = start(3);
    let mut p = MultiProducer::new(servers.clone());
    let mut placed = [0u64; 3];
    for _ in 0..300 {
        placed[put(&mut p, "kill", None).await.server] += 1;
    }
    guards[1].kill();
    for k in 0..300 {
        let job = put(&mut p, "kill", None).await;
        assert_ne!(job.server, 1, "put {k} went to the killed server");
        placed[job.server] += 1;
        // A keyed job whose first choice is the dead server goes to its
        // second choice.
        let key = format!("k{k}");
        let ranking = placement::by_key(servers.as_slice(), &key);
        let keyed = put(&mut p, "kill-keyed", Some(&key)).await;
        let expected = if ranking[0] == 1 {
            ranking[1]
        } else {
            ranking[0]
        };
        assert_eq!(keyed.server, expected, "{key}");
    }
    for i in [0, 2] {
        let addr = &servers.as_slice()[i];
        assert_eq!(ready(addr, "kill").await, placed[i], "{addr}");
    }
    assert!(placed[0] + placed[2] > 300, "{placed:?}");

    // Back after the skip window: tried again, and round-robin uses it.
    guards[1].restart();
    tokio::time::sleep(placement::SKIP_FOR + Duration::from_millis(200)).await;
    let mut back = 0;
    for _ in 0..30 {
        if put(&mut p, "kill-back", None).await.server == 1 {
            back += 1;
        }
    }
    assert!(
        (5..=15).contains(&back),
        "{back} of 30 on the restarted server"
    );
    assert_eq!(ready(&servers.as_slice()[1], "kill-back").await, back);
}

#[tokio::test]
async fn a_draining_server_is_skipped() {
    let (guards, servers) = start(2);
    guards[0].drain();
    let mut p = MultiProducer::new(servers.clone());
    for _ in 0..10 {
        assert_eq!(put(&mut p, "drain", None).await.server, 1);
    }
    assert_eq!(ready(&servers.as_slice()[1], "drain").await, 10);
}

#[tokio::test]
async fn all_servers_down_names_every_one() {
    let (mut guards, servers) = start(3);
    for g in &mut guards {
        g.kill();
    }
    let mut p = MultiProducer::new(servers.clone());
    for _ in 0..2 {
        // The second time every server is in its skip window: still tried.
        let err = p
            .put_body("down", b"x", &PutOptions::default())
            .await
            .unwrap_err();
        let PutError::AllDown(down) = &err else {
            panic!("{err:?}")
        };
        let named: Vec<&str> = down.iter().map(|u| u.addr.as_str()).collect();
        assert_eq!(named, servers.as_slice());
        let message = err.to_string();
        for addr in &servers {
            assert!(message.contains(addr.as_str()), "{message}");
        }
        assert!(message.contains("refused"), "{message}");
    }
}

#[tokio::test]
async fn a_put_whose_reply_is_lost_is_reported_and_not_repeated() {
    // A broken server: takes the put command whole, then hangs up.
    let (fake, script) = fake_server(vec![(b"put 1024 0 60 1\r\nx\r\n", vec![])]).await;
    let (_guards, real) = start(2);
    let addrs: Vec<String> = std::iter::once(fake.clone())
        .chain(real.iter().cloned())
        .collect();
    let servers = servers_of(&addrs);
    let key = (0..)
        .map(|k| format!("k{k}"))
        .find(|key| placement::by_key(servers.as_slice(), key)[0] == 0)
        .unwrap();
    let mut p = MultiProducer::new(servers);
    let opts = PutOptions {
        key: Some(key),
        ..PutOptions::default()
    };
    let err = p.put_body("default", b"x", &opts).await.unwrap_err();
    script.await.unwrap();
    match &err {
        PutError::OutcomeUnknown { addr, .. } => assert_eq!(addr, &fake),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&fake), "{err}");
    for addr in &real {
        assert_eq!(puts_seen(addr).await, 0, "{addr} got the put");
    }
}
