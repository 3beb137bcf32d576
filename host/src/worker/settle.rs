//! What becomes of a finished job: one pure decision from what happened, the
//! attempt it was and the tenant's policy. This is the failure table of
//! docs/architecture.md, row by row; `job.rs` carries the action out against
//! beanstalkd in one place.

use std::time::Duration;

use beanbox_queue::{EnvelopeError, ErrorKind};

use crate::sandbox::CallError;

/// Why a job did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The body is not a job envelope: it can never run.
    BadEnvelope(EnvelopeError),
    /// The call failed: the sandbox says how.
    Call(CallError),
    /// The task succeeded, but the follow-up jobs it asked for could not
    /// all be put: its work is not done until they are.
    FollowUps(String),
}

impl Failure {
    /// The kind a reply carries (`error.kind`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Failure::BadEnvelope(_) => ErrorKind::BadEnvelope,
            Failure::FollowUps(_) => ErrorKind::FollowUpsFailed,
            Failure::Call(e) => match e {
                CallError::UnknownTask { .. } => ErrorKind::UnknownTask,
                CallError::BadKwargs { .. } => ErrorKind::BadKwargs,
                CallError::Guest { .. } => ErrorKind::GuestError,
                CallError::Trap { .. } => ErrorKind::Trap,
                CallError::Fuel { .. } => ErrorKind::Fuel,
                CallError::Memory { .. } => ErrorKind::Memory,
                CallError::Deadline { .. } => ErrorKind::Deadline,
                CallError::Output { .. } => ErrorKind::Output,
            },
        }
    }

    /// Whether running the job again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Failure::BadEnvelope(_) => false,
            Failure::Call(e) => e.is_retryable(),
            // beanstalkd refused a put (draining, out of memory): later it
            // may not.
            Failure::FollowUps(_) => true,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BadEnvelope(e) => write!(f, "bad envelope: {e}"),
            Failure::Call(e) => write!(f, "{e}"),
            Failure::FollowUps(why) => write!(f, "follow-up jobs could not be put: {why}"),
        }
    }
}

/// A tenant's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts before a failing job is buried.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles each time.
    pub backoff: Duration,
    /// The longest wait between attempts.
    pub backoff_max: Duration,
}

/// What to do with a finished job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It succeeded: delete it (after its reply).
    Delete,
    /// Try again after `delay` seconds. No reply: the job is not finished.
    Release {
        /// Seconds before it is ready again.
        delay: u32,
    },
    /// Give up: bury it (and reply with the failure).
    Bury,
}

impl Action {
    /// Whether the job's `reply_to` tube hears of it now: only once the job
    /// is finished, deleted or buried, never on a retry.
    pub fn replies(self) -> bool {
        !matches!(self, Action::Release { .. })
    }

    /// The word in the job's log line and in the metrics.
    pub fn outcome(self) -> &'static str {
        match self {
            Action::Delete => "deleted",
            Action::Release { .. } => "released",
            Action::Bury => "buried",
        }
    }
}

/// The failure table: success is deleted; a retryable failure is released
/// with backoff until the last attempt, then buried; anything else is
/// buried at once. `failure` is `None` for a success; `attempt` starts at
/// 1 (a success's attempt does not matter).
pub fn decide(failure: Option<&Failure>, attempt: u32, policy: &Policy) -> Action {
    match failure {
        None => Action::Delete,
        Some(failure) if failure.is_retryable() && attempt < policy.max_attempts => {
            Action::Release {
                delay: backoff_delay(policy, attempt),
            }
        }
        Some(_) => Action::Bury,
    }
}

/// `backoff × 2^(attempt−1)`, capped at `backoff_max`, in whole seconds.
pub fn backoff_delay(policy: &Policy, attempt: u32) -> u32 {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    let delay = policy
        .backoff
        .saturating_mul(factor)
        .min(policy.backoff_max);
    u32::try_from(delay.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        max_attempts: 3,
        backoff: Duration::from_secs(1),
        backoff_max: Duration::from_secs(3600),
    };

    fn call(e: CallError) -> Failure {
        Failure::Call(e)
    }

    fn guest() -> CallError {
        CallError::Guest {
            task: "t".into(),
            payload: serde_json::json!("no"),
        }
    }

    #[test]
    fn success_is_deleted_whatever_the_attempt() {
        for attempt in [1, 3, 99] {
            assert_eq!(decide(None, attempt, &POLICY), Action::Delete);
        }
        assert!(Action::Delete.replies());
    }

    #[test]
    fn retryable_failures_are_released_with_doubling_backoff_then_buried() {
        let trap = || CallError::Trap {
            task: "t".into(),
            message: "unreachable".into(),
        };
        let deadline = || CallError::Deadline {
            task: "t".into(),
            after: Duration::from_secs(2),
        };
        for make in [guest as fn() -> CallError, trap, deadline] {
            assert_eq!(
                decide(Some(&call(make())), 1, &POLICY),
                Action::Release { delay: 1 }
            );
            assert_eq!(
                decide(Some(&call(make())), 2, &POLICY),
                Action::Release { delay: 2 }
            );
            assert_eq!(decide(Some(&call(make())), 3, &POLICY), Action::Bury);
            // A kicked job past its last attempt gets one more, then is buried.
            assert_eq!(decide(Some(&call(make())), 4, &POLICY), Action::Bury);
        }
        assert!(!Action::Release { delay: 1 }.replies());
    }

    #[test]
    fn bad_input_and_deterministic_limits_are_buried_at_once() {
        let failures = [
            CallError::UnknownTask {
                task: "t".into(),
                available: vec![],
            },
            CallError::Fuel {
                task: "t".into(),
                limit: 1,
            },
            CallError::Memory {
                task: "t".into(),
                limit: 1,
            },
            CallError::Output {
                task: "t".into(),
                stream: "stdout",
                limit: 1,
            },
        ];
        for e in failures {
            assert_eq!(decide(Some(&call(e)), 1, &POLICY), Action::Bury);
        }
        let bad = Failure::BadEnvelope(EnvelopeError::MissingTask);
        assert_eq!(decide(Some(&bad), 1, &POLICY), Action::Bury);
        assert!(Action::Bury.replies());
    }

    #[test]
    fn follow_ups_that_cannot_be_put_are_retried_like_a_failure() {
        let lost = Failure::FollowUps("DRAINING".into());
        assert_eq!(
            decide(Some(&lost), 1, &POLICY),
            Action::Release { delay: 1 }
        );
        assert_eq!(decide(Some(&lost), 3, &POLICY), Action::Bury);
    }

    #[test]
    fn a_single_attempt_policy_buries_the_first_failure() {
        let once = Policy {
            max_attempts: 1,
            ..POLICY
        };
        assert_eq!(decide(Some(&call(guest())), 1, &once), Action::Bury);
    }

    #[test]
    fn backoff_is_capped_and_never_overflows() {
        let capped = Policy {
            backoff_max: Duration::from_secs(5),
            ..POLICY
        };
        assert_eq!(backoff_delay(&capped, 3), 4);
        assert_eq!(backoff_delay(&capped, 4), 5);
        assert_eq!(backoff_delay(&capped, u32::MAX), 5);
        let huge = Policy {
            backoff: Duration::from_secs(u64::MAX / 2),
            backoff_max: Duration::MAX,
            max_attempts: 3,
        };
        assert_eq!(backoff_delay(&huge, 40), u32::MAX);
    }

    #[test]
    fn kinds_name_every_failure() {
        assert_eq!(
            Failure::BadEnvelope(EnvelopeError::MissingTask).kind(),
            ErrorKind::BadEnvelope
        );
        assert_eq!(
            Failure::FollowUps(String::new()).kind(),
            ErrorKind::FollowUpsFailed
        );
        assert_eq!(Failure::Call(guest()).kind(), ErrorKind::GuestError);
    }
}
