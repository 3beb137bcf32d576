//! A call's captured stdout or stderr: an in-memory pipe with a cap, like
//! wasmtime-wasi's `MemoryOutputPipe`, that can also be emptied and given a
//! new cap. An instance kept for several jobs keeps the streams it was built
//! with (the guest may hold them), so each job's output is what the pipe
//! caught since it was last emptied, under that job's cap.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// A capped in-memory output pipe, cheap to clone (clones share it).
#[derive(Debug, Clone)]
pub(crate) struct Capture {
    inner: Arc<Mutex<Buffer>>,
}

#[derive(Debug)]
struct Buffer {
    bytes: BytesMut,
    capacity: usize,
}

impl Capture {
    /// An empty pipe that takes up to `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Buffer {
                bytes: BytesMut::new(),
                capacity,
            })),
        }
    }

    /// Empties the pipe and sets the cap of what comes next.
    pub(crate) fn reset(&self, capacity: usize) {
        let mut buffer = self.lock();
        buffer.bytes.clear();
        buffer.capacity = capacity;
    }

    /// What the pipe holds.
    pub(crate) fn contents(&self) -> Bytes {
        self.lock().bytes.clone().freeze()
    }

    /// Whether the pipe has taken all it may.
    pub(crate) fn is_full(&self) -> bool {
        let buffer = self.lock();
        buffer.bytes.len() >= buffer.capacity
    }

    /// The buffer. A writer that panicked while holding the lock left at
    /// worst a partial write behind, which is still the guest's output.
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        let mut buffer = self.lock();
        if bytes.len() > buffer.capacity.saturating_sub(buffer.bytes.len()) {
            // As MemoryOutputPipe does: a write past the cap traps the guest.
            return Err(StreamError::Trap(wasmtime::format_err!(
                "write beyond the output cap of {} bytes",
                buffer.capacity
            )));
        }
        buffer.bytes.extend_from_slice(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        let buffer = self.lock();
        match buffer.capacity.saturating_sub(buffer.bytes.len()) {
            // Full: no more bytes will ever be taken this call.
            0 => Err(StreamError::Closed),
            room => Ok(room),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut buffer = self.lock();
        let room = buffer.capacity.saturating_sub(buffer.bytes.len());
        let taken = buf.len().min(room);
        buffer.bytes.extend_from_slice(&buf[..taken]);
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_up_to_its_cap_and_starts_over_when_reset() {
        let mut pipe = Capture::new(4);
        pipe.write(Bytes::from_static(b"abc")).unwrap();
        assert_eq!(pipe.check_write().unwrap(), 1);
        assert!(matches!(
            pipe.write(Bytes::from_static(b"de")),
            Err(StreamError::Trap(_))
        ));
        pipe.write(Bytes::from_static(b"d")).unwrap();
        assert!(pipe.is_full());
        assert!(matches!(pipe.check_write(), Err(StreamError::Closed)));
        assert_eq!(&pipe.contents()[..], b"abcd");

        // A clone handed to the guest earlier writes into the reset pipe.
        let mut held = pipe.clone();
        pipe.reset(2);
        assert!(pipe.contents().is_empty());
        assert!(!pipe.is_full());
        held.write(Bytes::from_static(b"xy")).unwrap();
        assert_eq!(&pipe.contents()[..], b"xy");
        assert!(pipe.is_full());
    }
}
