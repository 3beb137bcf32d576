//! Each limit as a pair, obeyed and violated, through hostile's misbehaving
//! exports: fuel, memory, wall-clock deadline, output size and stack depth;
//! plus a fresh instance per call and the host outliving every violation.

use std::time::Duration;

use beanbox::sandbox::{CallError, DEFAULT_OUTPUT_BYTES, FailureClass, Limits};
use serde_json::json;

use crate::support::{call_with, fails_with, fuel, memory_mb, ok, timeout};

/// A fuel budget far below the default: a few milliseconds of guest work.
const SMALL_FUEL: u64 = 5_000_000;

/// How long past its deadline a call may take to come back.
const MARGIN: Duration = Duration::from_millis(4500);

/// The checksum hostile's `burn` computes.
fn burn_checksum(iterations: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..iterations {
        hash = (hash ^ i).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The checksum hostile's `recurse` computes: each level adds its depth and 1.
fn recurse_checksum(depth: u64) -> u64 {
    depth * (depth + 1) / 2 + depth
}

/// Asserts the host still serves calls after a violation.
async fn host_lives_on() {
    assert_eq!(
        ok("hostile", "burn", json!({"iterations": 10})).await,
        json!(burn_checksum(10))
    );
}

#[tokio::test]
async fn bounded_work_within_fuel_succeeds_and_reports_fuel_used() {
    let outcome = call_with(
        "hostile",
        "burn",
        json!({"iterations": 1000}),
        fuel(SMALL_FUEL),
    )
    .await;
    let value = outcome.result.expect("burn within budget");
    assert_eq!(value, json!(burn_checksum(1000)));
    assert!(outcome.fuel_used > 0, "fuel used: {}", outcome.fuel_used);
    assert!(
        outcome.fuel_used < SMALL_FUEL,
        "fuel used: {}",
        outcome.fuel_used
    );
}

#[tokio::test]
async fn more_work_than_fuel_allows_runs_out_of_fuel() {
    let limits = fuel(SMALL_FUEL);
    let outcome = call_with(
        "hostile",
        "burn",
        json!({"iterations": 1_000_000_000}),
        limits,
    )
    .await;
    let error = outcome.result.expect_err("burn beyond budget");
    assert!(
        matches!(
            error,
            CallError::Fuel {
                limit: SMALL_FUEL,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.class(), FailureClass::LimitHit);
    assert!(error.to_string().contains("ran out of fuel"), "{error}");
    assert_eq!(outcome.fuel_used, SMALL_FUEL);
    host_lives_on().await;
}

#[tokio::test]
async fn fuel_used_grows_with_the_work_done() {
    let small = call_with(
        "hostile",
        "burn",
        json!({"iterations": 1000}),
        Limits::default(),
    )
    .await;
    let large = call_with(
        "hostile",
        "burn",
        json!({"iterations": 100_000}),
        Limits::default(),
    )
    .await;
    assert!(small.result.is_ok() && large.result.is_ok());
    assert!(
        large.fuel_used > small.fuel_used + 100_000,
        "{} vs {}",
        large.fuel_used,
        small.fuel_used
    );
}

#[tokio::test]
async fn endless_loop_runs_out_of_fuel() {
    let error = fails_with("hostile", "spin", json!({}), fuel(SMALL_FUEL)).await;
    assert!(matches!(error, CallError::Fuel { .. }), "{error:?}");
    assert_eq!(error.class(), FailureClass::LimitHit);
}

#[tokio::test]
async fn allocation_within_memory_limit_succeeds() {
    let outcome = call_with("hostile", "allocate-mb", json!({"mb": 8}), memory_mb(64)).await;
    assert_eq!(outcome.result.expect("8 MiB under 64 MiB"), json!(8));
}

#[tokio::test]
async fn allocation_beyond_memory_limit_is_a_memory_error() {
    let error = fails_with("hostile", "allocate-mb", json!({"mb": 100}), memory_mb(64)).await;
    assert!(
        matches!(error, CallError::Memory { limit, .. } if limit == 64 << 20),
        "{error:?}"
    );
    assert_eq!(error.class(), FailureClass::LimitHit);
    assert!(
        error.to_string().contains("memory limit of 64 MiB"),
        "{error}"
    );
    host_lives_on().await;
}

#[tokio::test]
async fn allocating_forever_is_a_memory_error() {
    let error = fails_with("hostile", "allocate-forever", json!({}), memory_mb(32)).await;
    assert!(
        matches!(error, CallError::Memory { limit, .. } if limit == 32 << 20),
        "{error:?}"
    );
}

#[tokio::test]
async fn panic_is_a_trap_carrying_the_panic_message() {
    let message = "the flux capacitor is at 1.21 GW";
    let error = fails_with(
        "hostile",
        "panic",
        json!({ "message": message }),
        Limits::default(),
    )
    .await;
    let CallError::Trap { message: said, .. } = &error else {
        panic!("expected a trap, got {error:?}");
    };
    assert!(said.contains(message), "{said}");
    assert_eq!(error.class(), FailureClass::TaskFailed);
    host_lives_on().await;
}

#[tokio::test]
async fn endless_loop_with_ample_fuel_hits_the_deadline_on_time() {
    let budget = Duration::from_millis(500);
    let outcome = call_with("hostile", "spin", json!({}), timeout(budget)).await;
    let error = outcome.result.expect_err("spin cannot finish");
    assert!(
        matches!(error, CallError::Deadline { after, .. } if after == budget),
        "{error:?}"
    );
    assert_eq!(error.class(), FailureClass::LimitHit);
    assert!(
        outcome.elapsed >= budget,
        "stopped early: {:?}",
        outcome.elapsed
    );
    assert!(
        outcome.elapsed < budget + MARGIN,
        "stopped late: {:?}",
        outcome.elapsed
    );
    host_lives_on().await;
}

#[tokio::test]
async fn sleep_past_the_deadline_is_cut_short() {
    let budget = Duration::from_millis(500);
    let outcome = call_with(
        "hostile",
        "sleep-ms",
        json!({"ms": 60_000}),
        timeout(budget),
    )
    .await;
    let error = outcome
        .result
        .expect_err("a minute's sleep in half a second");
    assert!(matches!(error, CallError::Deadline { .. }), "{error:?}");
    assert_eq!(error.class(), FailureClass::LimitHit);
    assert!(
        outcome.elapsed >= budget,
        "stopped early: {:?}",
        outcome.elapsed
    );
    assert!(
        outcome.elapsed < budget + MARGIN,
        "stopped late: {:?}",
        outcome.elapsed
    );
    host_lives_on().await;
}

#[tokio::test]
async fn short_sleep_within_the_deadline_succeeds() {
    let outcome = call_with(
        "hostile",
        "sleep-ms",
        json!({"ms": 10}),
        timeout(Duration::from_millis(500)),
    )
    .await;
    assert_eq!(outcome.result.expect("10 ms under 500 ms"), json!(10));
    assert!(
        outcome.elapsed >= Duration::from_millis(10),
        "{:?}",
        outcome.elapsed
    );
}

#[tokio::test]
async fn output_within_the_cap_is_captured() {
    let limits = Limits {
        output_bytes: 1 << 20,
        ..Limits::default()
    };
    let outcome = call_with("hostile", "print", json!({"bytes": 1000}), limits).await;
    assert_eq!(outcome.result.expect("1000 bytes under 1 MiB"), json!(1000));
    assert_eq!(outcome.stdout.len(), 1000);
    assert!(outcome.stdout.starts_with(&[b'x'; 63]));
    assert_eq!(outcome.stdout[63], b'\n');
    assert!(
        outcome.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&outcome.stderr)
    );
}

#[tokio::test]
async fn output_beyond_the_default_cap_is_an_output_error() {
    let outcome = call_with(
        "hostile",
        "print",
        json!({"bytes": 104_857_600}),
        Limits::default(),
    )
    .await;
    let error = outcome.result.expect_err("100 MiB under a 1 MiB cap");
    assert!(
        matches!(
            error,
            CallError::Output {
                stream: "stdout",
                limit: DEFAULT_OUTPUT_BYTES,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.class(), FailureClass::LimitHit);
    assert!(
        outcome.stdout.len() <= DEFAULT_OUTPUT_BYTES,
        "{}",
        outcome.stdout.len()
    );
    host_lives_on().await;
}

#[tokio::test]
async fn output_beyond_an_odd_cap_is_an_output_error() {
    // A cap that is no multiple of the guest's write size: the write that
    // crosses it must still count as hitting the cap.
    let limits = Limits {
        output_bytes: 100_000,
        ..Limits::default()
    };
    let error = fails_with("hostile", "print", json!({"bytes": 1_000_000}), limits).await;
    assert!(
        matches!(
            error,
            CallError::Output {
                stream: "stdout",
                limit: 100_000,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn shallow_recursion_succeeds() {
    assert_eq!(
        ok("hostile", "recurse", json!({"depth": 1000})).await,
        json!(recurse_checksum(1000))
    );
}

#[tokio::test]
async fn runaway_recursion_is_a_stack_overflow_trap() {
    let error = fails_with(
        "hostile",
        "recurse",
        json!({"depth": 1_000_000_000}),
        Limits::default(),
    )
    .await;
    let CallError::Trap { message, .. } = &error else {
        panic!("expected a trap, got {error:?}");
    };
    assert!(message.contains("stack"), "{message}");
    assert_eq!(error.class(), FailureClass::TaskFailed);
    assert_eq!(
        ok("hostile", "recurse", json!({"depth": 10})).await,
        json!(recurse_checksum(10))
    );
}

#[tokio::test]
async fn every_call_gets_a_fresh_instance() {
    assert_eq!(ok("hostile", "count-calls", json!({})).await, json!(1));
    assert_eq!(ok("hostile", "count-calls", json!({})).await, json!(1));
}
