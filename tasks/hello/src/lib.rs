//! The seed framework's `task_one`, plus small exports that the worker's
//! tests use: a failing task, job facts, a follow-up put and a nap.

use std::time::Duration;

use beanbox_sdk::queue::{self, PutOptions};

beanbox_sdk::generate!("hello");

struct Hello;

/// Patched in the built .wasm by hot-deploy tests (same length, new digits).
static VERSION_MARKER: &str = "beanbox-version:0000";

impl Guest for Hello {
    fn task_one(arg1: String, arg2: String, arg3: String) -> String {
        beanbox_sdk::log::info("task_one joining 3 strings");
        arg1 + &arg2 + &arg3
    }

    fn fail(message: String) -> Result<String, String> {
        Err(message)
    }

    fn describe_job() -> String {
        let job = beanbox_sdk::job::info();
        format!(
            "id={} tube={} task={} attempt={}",
            job.id, job.tube, job.task, job.attempt
        )
    }

    fn follow_up(tube: String, word: String) -> Result<u64, String> {
        let word = json_string(&word);
        let kwargs = format!(r#"{{"arg1":{word},"arg2":{word},"arg3":{word}}}"#);
        queue::put(&tube, "task-one", &kwargs, PutOptions::default()).map_err(|e| e.to_string())
    }

    fn nap(ms: u32) -> u32 {
        std::thread::sleep(Duration::from_millis(ms.into()));
        ms
    }

    fn version() -> String {
        // black_box keeps the bytes in the data segment, where tests patch them.
        std::hint::black_box(VERSION_MARKER).to_string()
    }
}

/// `s` as a JSON string literal, quotes included.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

export!(Hello);
