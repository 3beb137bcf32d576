//! Guests run on their own runtime: a call is spawned onto the guest
//! runtime's threads and awaited from the slot, which stays on the I/O
//! runtime that reserves, touches, logs and handles signals. However a
//! guest spins (in wasm or inside a host import), those threads are never
//! its: another slot's reserve, a touch or a shutdown is never delayed by it.
//!
//! The outcome goes back to the slot as soon as the call returns; the
//! call's store is dropped after that, on the guest thread, while the slot
//! settles the job.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde_json::{Map, Value};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::sandbox::{CallContext, CallError, KeptInstance, Module, Outcome};

/// One call running on the guest runtime. Dropping it aborts the call (at
/// the guest's next yield), which discards its instance.
pub(super) struct GuestCall {
    task: String,
    handle: JoinHandle<()>,
    done: oneshot::Receiver<(Outcome, KeptInstance)>,
    /// The slot's kept instance, back from a finished call.
    kept: Option<KeptInstance>,
}

impl GuestCall {
    /// Starts `module.call_reusing(…)` on `guests`. The slot's kept
    /// instance moves into the call and comes back with
    /// [`GuestCall::into_kept`] once the call finished.
    pub(super) fn spawn(
        guests: &Handle,
        module: Module,
        task: String,
        kwargs: Map<String, Value>,
        ctx: CallContext,
        kept: &mut KeptInstance,
        jobs_per_instance: u32,
    ) -> GuestCall {
        let mut instance = std::mem::take(kept);
        let name = task.clone();
        let (tx, done) = oneshot::channel();
        let handle = guests.spawn(async move {
            let outcome = module
                .call_reusing(&task, &kwargs, &ctx, &mut instance, jobs_per_instance)
                .await;
            // The store of a call that is not kept is dropped here, after
            // the slot has the outcome: resetting pooled memory is off the
            // job's path. The instance that is kept goes back with it.
            let spent = instance.take_spent();
            let _ = tx.send((outcome, instance));
            drop(spent);
        });
        GuestCall {
            task: name,
            handle,
            done,
            kept: None,
        }
    }

    /// The instance the call leaves for the slot's next job: empty unless
    /// the call finished and its instance may serve again.
    pub(super) fn into_kept(mut self) -> KeptInstance {
        self.kept.take().unwrap_or_default()
    }
}

impl Future for GuestCall {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = &mut *self;
        match Pin::new(&mut this.done).poll(cx) {
            Poll::Ready(Ok((outcome, kept))) => {
                this.kept = Some(kept);
                Poll::Ready(outcome)
            }
            Poll::Pending => Poll::Pending,
            // The call panicked (a bug of ours, not the guest's: a guest
            // traps): the job fails like a trap, and the slot goes on. The
            // task's end says why.
            Poll::Ready(Err(_)) => Pin::new(&mut this.handle).poll(cx).map(|ended| {
                let why = ended
                    .err()
                    .map_or_else(|| "no outcome".to_string(), |e| e.to_string());
                Outcome::stopped(
                    Err(CallError::Trap {
                        task: this.task.clone(),
                        message: format!("the sandbox failed: {why}"),
                    }),
                    std::time::Duration::ZERO,
                )
            }),
        }
    }
}

impl Drop for GuestCall {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
