//! Compute-heavy exports for the benchmark: naive recursive Fibonacci and
//! FNV-1a over a generated buffer. The benchmark (`bench/src/compute.rs`)
//! runs the same code natively and checks that both give the same answers.

use std::hint::black_box;

beanbox_sdk::generate!("compute");

struct Compute;

impl Guest for Compute {
    fn fib(n: u32) -> u64 {
        fib(black_box(n))
    }

    fn hash(bytes: u32) -> u64 {
        let buffer: Vec<u8> = (0..black_box(bytes))
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        fnv1a(&buffer)
    }
}

fn fib(n: u32) -> u64 {
    if n < 2 {
        u64::from(n)
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

export!(Compute);
