//! Replies on a job's `reply_to` tube. A reply never decides its job's fate:
//! one that is too big for beanstalkd is replaced by a small `reply-too-big`
//! error that fits, one refused for a reason that may pass is tried again
//! briefly and then reported lost, and the job settles either way.

use beanbox_queue::{ErrorKind, reply_err, reply_ok};
use serde_json::Value;

use super::conn::Conn;
use super::settle::Failure;

/// Replies go out like any job: default priority, no delay, default TTR.
const OPTIONS: (u32, u32, u32) = (
    beanbox_queue::producer::DEFAULT_PRIORITY,
    0,
    beanbox_queue::producer::DEFAULT_TTR,
);

/// What became of a reply, for the job's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// On the tube.
    Sent,
    /// Too big for beanstalkd: a `reply-too-big` error went instead.
    TooBig {
        /// The size of the reply that did not fit, in bytes.
        size: usize,
    },
    /// Not on the tube: beanstalkd kept refusing it.
    Lost(String),
}

impl Delivery {
    /// The word in the log line.
    pub fn describe(&self) -> String {
        match self {
            Delivery::Sent => "sent".into(),
            Delivery::TooBig { size } => {
                format!("too big ({size} bytes); {} sent", ErrorKind::ReplyTooBig)
            }
            Delivery::Lost(why) => format!("lost: {why}"),
        }
    }
}

/// The reply body for a finished job.
pub fn body(job: u64, task: &str, result: Result<&Value, &Failure>) -> Vec<u8> {
    match result {
        Ok(value) => reply_ok(job, task, value),
        Err(failure) => {
            let value = match failure {
                Failure::Call(e) => e.guest_value(),
                _ => None,
            };
            reply_err(
                job,
                task,
                failure.kind().as_str(),
                &failure.to_string(),
                value,
            )
        }
    }
}

/// The small error that replaces a reply of `size` bytes beanstalkd
/// refused as too big.
pub fn too_big(job: u64, task: &str, size: usize) -> Vec<u8> {
    reply_err(
        job,
        task,
        ErrorKind::ReplyTooBig.as_str(),
        &format!(
            "the reply was {size} bytes, more than beanstalkd's maximum job size; \
             the job itself finished and was settled"
        ),
        None,
    )
}

/// Puts `body` on `tube`. Only a lost connection is an error: every
/// refusal is reported in the [`Delivery`].
pub(super) async fn send(
    conn: &mut Conn,
    tube: &str,
    job: u64,
    task: &str,
    body: &[u8],
) -> beanbox_queue::Result<Delivery> {
    let delivery = match conn.put_retrying(tube, OPTIONS, body).await {
        // Put, though beanstalkd buried it for want of memory: it is there.
        Ok(_) | Err(beanbox_queue::Error::Buried(_)) => Delivery::Sent,
        Err(e) if e.is_connection_error() => return Err(e),
        Err(beanbox_queue::Error::Server(beanbox_queue::ServerError::JobTooBig)) => {
            let size = body.len();
            match conn
                .put_retrying(tube, OPTIONS, &too_big(job, task, size))
                .await
            {
                Ok(_) | Err(beanbox_queue::Error::Buried(_)) => Delivery::TooBig { size },
                Err(e) if e.is_connection_error() => return Err(e),
                Err(e) => Delivery::Lost(format!("{e} (the reply was {size} bytes)")),
            }
        }
        Err(e) => Delivery::Lost(e.to_string()),
    };
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;
    use beanbox_queue::ReplyBody;

    #[test]
    fn a_too_big_stand_in_is_small_and_says_the_size() {
        let reply = ReplyBody::parse(&too_big(7, "big", 70_000)).unwrap();
        assert_eq!(reply.job, 7);
        let error = reply.outcome.unwrap_err();
        assert_eq!(ErrorKind::parse(&error.kind), Some(ErrorKind::ReplyTooBig));
        assert!(error.message.contains("70000 bytes"), "{}", error.message);
        assert!(too_big(u64::MAX, &"t".repeat(200), usize::MAX).len() < 1024);
    }

    #[test]
    fn bodies_carry_the_value_or_the_failure_kind() {
        let ok = ReplyBody::parse(&body(1, "t", Ok(&Value::from("abc")))).unwrap();
        assert_eq!(ok.outcome.unwrap(), Value::from("abc"));
        let failure = Failure::FollowUps("DRAINING".into());
        let err = ReplyBody::parse(&body(1, "t", Err(&failure))).unwrap();
        let err = err.outcome.unwrap_err();
        assert_eq!(err.kind, "follow-ups-failed");
        assert_eq!(err.value, None);
    }

    #[test]
    fn a_guest_error_carries_its_err_value() {
        let value = serde_json::json!({"off-grid": {"x": 11, "y": 0}});
        let failure = Failure::Call(crate::sandbox::CallError::Guest {
            task: "place".into(),
            payload: value.clone(),
        });
        let reply = ReplyBody::parse(&body(3, "place", Err(&failure))).unwrap();
        let err = reply.outcome.unwrap_err();
        assert_eq!(err.kind, "guest-error");
        assert_eq!(err.value, Some(value));
        assert!(err.message.contains("off-grid"), "{}", err.message);
    }
}
