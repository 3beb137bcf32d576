//! The benchmark's compute task: naive Fibonacci and FNV-1a over a buffer
//! generated in the guest give the answers the benchmark's native code does.

use serde_json::json;

use crate::support::ok;

#[tokio::test]
async fn fib_recurses_to_the_right_number() {
    assert_eq!(ok("compute", "fib", json!({"n": 10})).await, json!(55));
    assert_eq!(ok("compute", "fib", json!({"n": 0})).await, json!(0));
}

#[tokio::test]
async fn hash_is_fnv1a_over_the_generated_buffer() {
    // No bytes: the FNV-1a offset basis.
    assert_eq!(
        ok("compute", "hash", json!({"bytes": 0})).await,
        json!(0xcbf2_9ce4_8422_2325_u64)
    );
    // Byte i is the top byte of i * 2654435761 (wrapping, 32-bit).
    let expected = (0..1000_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    assert_eq!(
        ok("compute", "hash", json!({"bytes": 1000})).await,
        json!(expected)
    );
}
