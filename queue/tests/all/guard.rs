//! The `Beanstalkd` test guard: starts, restarts on the same port with the
//! same arguments, and leaves no process behind.

use std::net::TcpStream;
use std::path::Path;

use beanbox_queue::testing::Beanstalkd;

use crate::connect;

#[test]
fn start_serves_on_its_port_and_drop_kills_it() {
    let server = Beanstalkd::start();
    assert_eq!(server.addr(), format!("127.0.0.1:{}", server.port()));
    TcpStream::connect(server.addr()).unwrap();
    let pid = server.pid().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(server);
    // Reaped, not a zombie: the /proc entry is gone.
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn servers_get_distinct_ports() {
    let a = Beanstalkd::start();
    let b = Beanstalkd::start();
    assert_ne!(a.port(), b.port());
}

#[test]
fn kill_stops_the_server() {
    let mut server = Beanstalkd::start();
    server.kill();
    assert_eq!(server.pid(), None);
    assert!(TcpStream::connect(server.addr()).is_err());
}

#[tokio::test]
async fn restart_keeps_port_and_arguments() {
    let dir = std::env::temp_dir().join(format!("beanbox-queue-binlog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = Beanstalkd::start_with_args(&["-b", dir.to_str().unwrap(), "-z", "100"]);
    let port = server.port();
    let old_pid = server.pid();
    let mut c = connect(&server).await;
    let id = c.put(0, 0, 60, b"durable").await.unwrap();
    drop(c);
    server.restart();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), old_pid);
    let mut c = connect(&server).await;
    // -b came back: the job was replayed from the binlog; -z too.
    assert_eq!(&c.peek(id).await.unwrap().body[..], b"durable");
    assert_eq!(c.stats().await.unwrap()["max-job-size"], "100");
    drop(c);
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}
