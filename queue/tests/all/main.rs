//! The queue crate's integration tests, one binary: the client against a
//! real beanstalkd and against scripted fake servers, the envelope, the
//! producer and the test server guard itself.

mod client;
mod envelope;
mod guard;
mod multi;
mod producer;
mod wire;

use beanbox_queue::Client;
use beanbox_queue::testing::Beanstalkd;

/// A fresh connection to `server`.
pub async fn connect(server: &Beanstalkd) -> Client {
    Client::connect(&server.addr())
        .await
        .expect("connect to test beanstalkd")
}
