//! Instance reuse (opt-in): a [`KeptInstance`] holds a caller's instance
//! between jobs, and [`Module::call_reusing`] calls in it when it still
//! serves this module version, limits and grants.

use super::*;

impl Module {
    /// Calls `task` like [`Module::call`], but in the instance `kept` holds
    /// when it is this module's (this very version, same limits and grants)
    /// and has served fewer than `jobs_per_instance` jobs; otherwise in a
    /// fresh one, which `kept` then holds if the call succeeds and
    /// `jobs_per_instance` allows another job.
    ///
    /// The instance is taken out of `kept` when the call starts and put back
    /// only when it succeeds: a failed call (guest error, trap, any limit,
    /// bad kwargs) discards it, and so does dropping the call unfinished.
    /// Each call gets its own fuel, deadline, output caps, job facts and
    /// services; the instance's memory, globals and WASI state carry over,
    /// and its memory counts against `ctx.limits.memory_bytes` for its whole
    /// life.
    pub async fn call_reusing(
        &self,
        task: &str,
        kwargs: &Map<String, Value>,
        ctx: &CallContext,
        kept: &mut KeptInstance,
        jobs_per_instance: u32,
    ) -> Outcome {
        self.call_in(task, kwargs, ctx, Some((kept, jobs_per_instance)))
            .await
    }
}

/// Where [`Module::call_reusing`] keeps an instance between calls: empty, or
/// one instance with the jobs it has served. One per worker slot, so only
/// that slot's (one tenant's) consecutive jobs ever share an instance.
///
/// It also holds the store of its last call that is not kept, until
/// [`KeptInstance::take_spent`]: dropping a store (resetting its pooled
/// memory) is a third of a fresh call's CPU, and the worker does it after
/// the slot has the outcome, off the job's critical path.
#[derive(Default)]
pub struct KeptInstance {
    pub(super) kept: Option<Kept>,
    pub(super) spent: Option<Live>,
}

impl std::fmt::Debug for KeptInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptInstance")
            .field("module", &self.kept.as_ref().map(|k| &k.module.name))
            .field("jobs", &self.jobs())
            .finish()
    }
}

impl KeptInstance {
    /// Jobs the kept instance has served, if one is kept.
    pub fn jobs(&self) -> Option<u32> {
        self.kept.as_ref().map(|k| k.live.jobs)
    }

    /// Drops the kept instance, if any (and a spent store).
    pub fn clear(&mut self) {
        self.kept = None;
        self.spent = None;
    }

    /// Takes the store of the last call if it is not kept, for the caller
    /// to drop when it likes (the next call or `clear` would drop it too).
    pub fn take_spent(&mut self) -> Spent {
        Spent(self.spent.take())
    }
}

/// The store of a call that is not kept ([`KeptInstance::take_spent`]):
/// dropping it returns its pooled memory and table slots.
pub struct Spent(#[allow(dead_code, reason = "held only to be dropped")] Option<Live>);

impl std::fmt::Debug for Spent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spent")
            .field("store", &self.0.is_some())
            .finish()
    }
}

/// A live instance and what it was built for.
pub(super) struct Kept {
    /// Its store, with the instance always `Some`.
    pub(super) live: Live,
    pub(super) module: Arc<ModuleInner>,
    pub(super) limits: Limits,
    pub(super) grants: Arc<Grants>,
}

impl Kept {
    /// Whether a call of `module` under `ctx` may run in this instance: the
    /// same loaded version, with the same caps (only the deadline may
    /// differ, e.g. cut to a job's TTR) and the same grants.
    pub(super) fn serves(&self, module: &Arc<ModuleInner>, ctx: &CallContext) -> bool {
        let same_caps = Limits {
            timeout: ctx.limits.timeout,
            ..self.limits
        } == ctx.limits;
        Arc::ptr_eq(&self.module, module)
            && same_caps
            && (Arc::ptr_eq(&self.grants, &ctx.grants) || self.grants == ctx.grants)
    }

    /// The instance, readied for its next job: empty captures with that
    /// job's cap, its facts and services (fuel and deadline are armed by
    /// the call).
    pub(super) fn resume(self, ctx: &CallContext) -> Live {
        let mut live = self.live;
        live.stdout.reset(ctx.limits.output_bytes);
        live.stderr.reset(ctx.limits.output_bytes);
        live.store.data_mut().start_job(ctx);
        live.jobs += 1;
        live
    }
}
