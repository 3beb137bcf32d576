//! Misbehaving exports for the sandbox's tests. Each one is written so that
//! the optimizer cannot remove the misbehaviour (`black_box` around the work).

use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use beanbox_sdk::log::{self, Level};
use beanbox_sdk::queue::{self, PutOptions};

beanbox_sdk::generate!("hostile");

const MIB: usize = 1 << 20;
/// Bytes between two writes when touching memory: one per 4 KiB, so that
/// every page is really written.
const PAGE: usize = 4096;

static CALLS: AtomicU32 = AtomicU32::new(0);

struct Hostile;

impl Guest for Hostile {
    fn spin() {
        let mut n: u64 = 0;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }

    fn burn(iterations: u64) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for i in 0..iterations {
            hash = black_box((hash ^ i).wrapping_mul(0x0000_0100_0000_01b3));
        }
        hash
    }

    fn allocate_forever() {
        loop {
            std::mem::forget(touched_block());
        }
    }

    fn allocate_mb(mb: u32) -> u32 {
        let blocks: Vec<Vec<u8>> = (0..mb).map(|_| touched_block()).collect();
        black_box(&blocks);
        mb
    }

    fn recurse(depth: u64) -> u64 {
        recurse_frames(depth)
    }

    fn panic(message: String) {
        panic!("{message}");
    }

    fn print(bytes: u64) -> u64 {
        // Lines of 63 'x' and a newline, written 64 KiB at a time.
        let len = usize::try_from(bytes).unwrap_or(usize::MAX).min(64 * 1024);
        let mut chunk = vec![b'x'; len];
        for i in (63..len).step_by(64) {
            chunk[i] = b'\n';
        }
        let mut out = std::io::stdout().lock();
        let mut written: u64 = 0;
        while written < bytes {
            let n = usize::try_from(bytes - written).map_or(len, |left| left.min(len));
            if out.write_all(&chunk[..n]).is_err() {
                break;
            }
            written += n as u64;
        }
        let _ = out.flush();
        written
    }

    fn write_file(path: String, contents: String) -> Result<u64, String> {
        std::fs::write(&path, contents.as_bytes())
            .map(|()| contents.len() as u64)
            .map_err(|e| e.to_string())
    }

    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(&path).map_err(|e| e.to_string())
    }

    fn read_env(name: String) -> Option<String> {
        std::env::var(name).ok()
    }

    fn connect(addr: String) -> Result<String, String> {
        match std::net::TcpStream::connect(addr.as_str()) {
            Ok(stream) => Ok(stream
                .peer_addr()
                .map_or_else(|_| addr.clone(), |a| a.to_string())),
            Err(e) => Err(e.to_string()),
        }
    }

    fn sleep_ms(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    fn big_result(bytes: u32) -> String {
        "r".repeat(bytes as usize)
    }

    fn big_error(bytes: u32) -> Result<String, String> {
        Err("e".repeat(bytes as usize))
    }

    fn count_calls() -> u32 {
        CALLS.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn log_huge(mb: u32, times: u32) -> u32 {
        let message = "x".repeat(usize::try_from(mb).unwrap_or(usize::MAX) * MIB);
        for _ in 0..times {
            log::log(Level::Info, black_box(&message));
        }
        times
    }

    fn log_bomb(n: u32, len: u32) -> u32 {
        let message = "x".repeat(usize::try_from(len).unwrap_or(usize::MAX));
        for _ in 0..n {
            log::log(Level::Info, black_box(&message));
        }
        n
    }

    fn put_bomb(n: u32) -> u32 {
        let mut ok = 0;
        for _ in 0..n {
            if put_follow_up().is_ok() {
                ok += 1;
            }
        }
        ok
    }

    fn put_huge(mb: u32, times: u32) -> u32 {
        let text = "x".repeat(usize::try_from(mb).unwrap_or(usize::MAX) * MIB);
        let kwargs = format!(r#"{{"text": "{text}"}}"#);
        let tube = beanbox_sdk::job::info().tube;
        for _ in 0..times {
            let _ = black_box(queue::put(&tube, "x", &kwargs, PutOptions::default()));
        }
        times
    }

    fn put_then_fail() -> Result<u64, String> {
        let number = put_follow_up().map_err(|e| e.to_string())?;
        Err(format!("failed after staging follow-up {number}"))
    }

    fn put_one() -> Result<u64, String> {
        put_follow_up().map_err(|e| e.to_string())
    }
}

/// Puts a `count-calls` job on the current job's own tube.
fn put_follow_up() -> Result<u64, queue::PutError> {
    let tube = beanbox_sdk::job::info().tube;
    queue::put(&tube, "count-calls", "{}", PutOptions::default())
}

/// A 1 MiB allocation with one byte written in every 4 KiB page, so that the
/// memory is really used; cheap in fuel (no memset).
fn touched_block() -> Vec<u8> {
    let mut block: Vec<u8> = Vec::with_capacity(MIB);
    for byte in block.spare_capacity_mut().iter_mut().step_by(PAGE) {
        byte.write(1);
    }
    black_box(block)
}

/// Recursion that is not a tail call and keeps a small array alive across
/// the call, so that neither can be turned into a loop.
#[inline(never)]
fn recurse_frames(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    let mut frame = [depth; 4];
    black_box(&mut frame);
    let below = recurse_frames(black_box(depth - 1));
    black_box(&frame)[(depth % 4) as usize]
        .wrapping_add(below)
        .wrapping_add(1)
}

export!(Hostile);
