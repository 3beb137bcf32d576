//! One call: kwargs to WIT values, a store armed with fuel, memory,
//! deadline and output limits, the run, and how its end is classified
//! into an [`Outcome`].

use super::*;

/// What one call produced, whatever its outcome.
#[derive(Debug)]
pub struct Outcome {
    /// The export's result as JSON (`null` when it returns nothing), or why
    /// the call failed.
    pub result: Result<Value, CallError>,
    /// Fuel burned, start-up included.
    pub fuel_used: u64,
    /// What the guest wrote to stdout (up to the cap).
    pub stdout: Vec<u8>,
    /// What the guest wrote to stderr (up to the cap).
    pub stderr: Vec<u8>,
    /// Wall-clock time of instantiation (when there was one) and call.
    pub elapsed: Duration,
    /// Jobs the instance has served, this one included: 1 for a fresh
    /// instance, more for a kept one ([`Module::call_reusing`]), 0 when the
    /// call never reached an instance (unknown task, bad kwargs).
    pub instance_jobs: u32,
    /// The follow-up jobs the task staged, in order: to be put only because
    /// it succeeded, so empty unless `result` is `Ok`.
    pub puts: Vec<PutRequest>,
    /// The most linear memory the call's store held at once, in bytes (for
    /// a kept instance, what earlier jobs grew included); 0 when the call
    /// never reached a store.
    pub memory_peak: u64,
    /// The budgets the call reached (log lines and bytes, puts, output),
    /// with what went past them; empty when it stayed within all.
    pub budget_hits: Vec<BudgetHit>,
}

impl Outcome {
    /// An outcome of a call that never ran or was stopped from outside:
    /// nothing used, nothing staged.
    pub fn stopped(result: Result<Value, CallError>, elapsed: Duration) -> Self {
        Self {
            result,
            fuel_used: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            elapsed,
            instance_jobs: 0,
            puts: Vec::new(),
            memory_peak: 0,
            budget_hits: Vec::new(),
        }
    }

    /// The budget hits as one phrase for a log line, e.g. `log budget of
    /// 1000 lines exceeded (5 lines dropped)`; `None` without any.
    pub fn budget_summary(&self) -> Option<String> {
        let hits: Vec<String> = self.budget_hits.iter().map(ToString::to_string).collect();
        (!hits.is_empty()).then(|| hits.join("; "))
    }
}

/// WASI capabilities beyond the bare sandbox. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Preopened directories.
    pub dirs: Vec<DirGrant>,
    /// Environment variables, sorted by name.
    pub env: Vec<(String, String)>,
}

/// A host directory preopened in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// Absolute path on the host.
    pub host: std::path::PathBuf,
    /// Absolute path the guest sees it at.
    pub guest: String,
    /// Read-write (`rw`) rather than read-only (`ro`).
    pub writable: bool,
}

/// Everything a call needs besides the module, task and kwargs.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The budget.
    pub limits: Limits,
    /// The job's facts, as the guest sees them.
    pub job: JobInfo,
    /// Where log lines and follow-up puts go.
    pub services: SharedServices,
    /// What WASI grants beyond nothing.
    pub grants: Arc<Grants>,
    /// Where `job.attempt` comes from when it was not known at the start
    /// (then `job.attempt` is a placeholder).
    pub attempt: Option<Arc<AttemptCell>>,
}

impl CallContext {
    /// A context for running outside a queue: job id 0, attempt 1.
    pub fn standalone(task: &str, limits: Limits) -> Self {
        Self {
            limits,
            job: JobInfo {
                id: 0,
                tube: String::new(),
                task: task.to_string(),
                attempt: 1,
            },
            services: Arc::new(Standalone),
            grants: Arc::new(Grants::default()),
            attempt: None,
        }
    }
}

impl Module {
    /// Calls `task` with `kwargs` in a fresh instance under `ctx.limits`.
    pub async fn call(
        &self,
        task: &str,
        kwargs: &Map<String, Value>,
        ctx: &CallContext,
    ) -> Outcome {
        self.call_in(task, kwargs, ctx, None).await
    }

    pub(super) async fn call_in(
        &self,
        task: &str,
        kwargs: &Map<String, Value>,
        ctx: &CallContext,
        mut reuse: Option<(&mut KeptInstance, u32)>,
    ) -> Outcome {
        let started = Instant::now();
        // Out of the slot before anything else: only a call that succeeds
        // puts it back, so a failed or abandoned one never leaves it behind.
        let kept = reuse.as_mut().and_then(|(slot, _)| {
            slot.spent = None;
            slot.kept.take()
        });
        let (task, params) = match self.prepare(task, kwargs) {
            Ok(prepared) => prepared,
            Err(e) => return Outcome::stopped(Err(e), started.elapsed()),
        };
        let limits = ctx.limits;
        let (mut live, setup) = match kept.filter(|k| k.serves(&self.inner, ctx)) {
            Some(kept) => (kept.resume(ctx), Ok(())),
            None => self.fresh(ctx),
        };
        let mut result = setup
            .and_then(|()| self.arm(&mut live.store, &limits, started))
            .map_err(|message| CallError::Trap {
                task: task.name.clone(),
                message,
            });

        let mut value = Value::Null;
        if result.is_ok() {
            let run = run(
                &self.inner.pre,
                &mut live.store,
                &mut live.instance,
                task,
                &params,
            );
            // Epochs interrupt at the deadline itself (the timeout is then
            // only for a guest blocked in a host call); without them, the
            // timeout is the deadline.
            let grace = if self.inner.options.epochs {
                DEADLINE_GRACE
            } else {
                Duration::ZERO
            };
            result = match tokio::time::timeout(limits.timeout + grace, run).await {
                Ok(Ok(v)) => {
                    value = v;
                    Ok(())
                }
                Ok(Err(RunError::Guest(payload))) => Err(CallError::Guest {
                    task: task.name.clone(),
                    payload,
                }),
                Ok(Err(RunError::Wasm(e))) => {
                    Err(classify(e, task, &limits, &live.store, &live.stderr))
                }
                Err(_elapsed) => Err(CallError::Deadline {
                    task: task.name.clone(),
                    after: limits.timeout,
                }),
            };
        }
        // A guest that filled its capture went past the cap, whether it then
        // trapped on the refused write or carried on: a limit hit either way.
        if matches!(result, Ok(()) | Err(CallError::Trap { .. }))
            && let Some(e) = output_overflow(task, &limits, &live.stdout, &live.stderr)
        {
            result = Err(e);
        }
        let state = live.store.data_mut();
        let mut budget_hits = state.budgets.hits();
        budget_hits.extend(output_hits(&limits, &live.stdout, &live.stderr));
        // Staged puts go out only for a call that succeeded.
        let puts = std::mem::take(&mut state.puts);
        state.deadline = None;
        let outcome = Outcome {
            puts: if result.is_ok() { puts } else { Vec::new() },
            result: result.map(|()| value),
            fuel_used: limits
                .fuel
                .saturating_sub(live.store.get_fuel().unwrap_or(limits.fuel)),
            stdout: live.stdout.contents().to_vec(),
            stderr: live.stderr.contents().to_vec(),
            elapsed: started.elapsed(),
            instance_jobs: live.jobs,
            memory_peak: live.store.data().limiter.memory_peak(),
            budget_hits,
        };
        if let Some((slot, max_jobs)) = reuse {
            if outcome.result.is_ok() && live.jobs < max_jobs && live.instance.is_some() {
                slot.kept = Some(Kept {
                    live,
                    module: self.inner.clone(),
                    limits,
                    grants: ctx.grants.clone(),
                });
            } else {
                // Never called again; dropping it (returning its pooled
                // memory) is left to the caller, after it has the outcome.
                slot.spent = Some(live);
            }
        }
        outcome
    }

    /// The task `name` and `kwargs` as its typed parameters.
    fn prepare(
        &self,
        name: &str,
        kwargs: &Map<String, Value>,
    ) -> Result<(&Task, Vec<Val>), CallError> {
        let task = self.task(name)?;
        let params = convert::kwargs_to_params(&task.params, kwargs).map_err(|error| {
            CallError::BadKwargs {
                task: task.name.clone(),
                error,
            }
        })?;
        Ok((task, params))
    }

    /// A new store for one call (or the first of a kept instance's calls):
    /// WASI with the grants and fresh captures, the job's facts, the
    /// limiter. The error says why a grant could not be made.
    fn fresh(&self, ctx: &CallContext) -> (Live, Result<(), String>) {
        let limits = ctx.limits;
        let stdout = Capture::new(limits.output_bytes);
        let stderr = Capture::new(limits.output_bytes);
        // Nothing is inherited: no files, env, args or network beyond the
        // grants, which name each directory and variable.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .envs(&ctx.grants.env);
        let mut setup = Ok(());
        for dir in &ctx.grants.dirs {
            let perms = if dir.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            if let Err(e) = wasi.preopened_dir(&dir.host, &dir.guest, perms) {
                setup = Err(format!(
                    "cannot open granted directory {}: {e:#}",
                    dir.host.display()
                ));
            }
        }
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter::new(&limits),
            job: ctx.job.clone(),
            attempt: ctx.attempt.clone(),
            services: ctx.services.clone(),
            budgets: Budgets::new(limits.log_lines, limits.output_bytes, limits.max_puts),
            puts: Vec::new(),
            deadline: None,
            fuel_mark: 0,
        };
        let mut store = Store::new(self.inner.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        let live = Live {
            store,
            instance: None,
            stdout,
            stderr,
            jobs: 1,
        };
        (live, setup)
    }

    /// Gives `store` this call's fuel and, with epochs, its deadline.
    fn arm(
        &self,
        store: &mut Store<State>,
        limits: &Limits,
        started: Instant,
    ) -> Result<(), String> {
        let options = self.inner.options;
        let state = store.data_mut();
        state.deadline = Some(started + limits.timeout);
        state.fuel_mark = limits.fuel;
        if options.fuel {
            // Yielding every few milliseconds of fuel keeps a spinning guest
            // from starving the async runtime and lets the call's timeout
            // stop it, at no cost beyond the fuel counting itself.
            store
                .set_fuel(limits.fuel)
                .and_then(|()| store.fuel_async_yield_interval(Some(YIELD_EVERY_FUEL)))
                .map_err(|e| format!("{e:#}"))?;
        }
        if options.epochs {
            let deadline = started + limits.timeout;
            store.epoch_deadline_callback(move |_| {
                // Yield each tick so a spinning guest never starves the async
                // runtime; stop it once the deadline has passed.
                Ok(if Instant::now() >= deadline {
                    UpdateDeadline::Interrupt
                } else {
                    UpdateDeadline::Yield(1)
                })
            });
            store.set_epoch_deadline(1);
        }
        Ok(())
    }
}

/// A store ready for a call, with its captures: fresh, or a kept
/// instance's.
pub(super) struct Live {
    pub(super) store: Store<State>,
    /// `None` until the call instantiates it.
    pub(super) instance: Option<Instance>,
    pub(super) stdout: Capture,
    pub(super) stderr: Capture,
    /// Jobs the instance has served, the coming call included.
    pub(super) jobs: u32,
}

pub(super) enum RunError {
    Guest(Value),
    Wasm(wasmtime::Error),
}

impl From<wasmtime::Error> for RunError {
    fn from(e: wasmtime::Error) -> Self {
        RunError::Wasm(e)
    }
}

/// Calls `task` in `instance`, instantiating it first when there is none.
pub(super) async fn run(
    pre: &InstancePre<State>,
    store: &mut Store<State>,
    instance: &mut Option<Instance>,
    task: &Task,
    params: &[Val],
) -> Result<Value, RunError> {
    let instance = match *instance {
        Some(live) => live,
        None => *instance.insert(pre.instantiate_async(&mut *store).await?),
    };
    let func = instance.get_func(&mut *store, task.index).ok_or_else(|| {
        wasmtime::format_err!("export `{}` vanished after instantiation", task.name)
    })?;
    let mut results = vec![Val::Bool(false); usize::from(task.result.is_some())];
    func.call_async(&mut *store, params, &mut results).await?;
    match results.pop() {
        None => Ok(Value::Null),
        // A top-level `result` is the task's own verdict: `err` fails the job.
        Some(Val::Result(Ok(ok))) => Ok(ok.as_deref().map_or(Value::Null, convert::to_json)),
        Some(Val::Result(Err(err))) => Err(RunError::Guest(
            err.as_deref().map_or(Value::Null, convert::to_json),
        )),
        Some(v) => Ok(convert::to_json(&v)),
    }
}

/// Tells fuel, memory, deadline, output-cap and plain traps apart.
pub(super) fn classify(
    error: wasmtime::Error,
    task: &Task,
    limits: &Limits,
    store: &Store<State>,
    stderr: &Capture,
) -> CallError {
    let name = task.name.clone();
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            return CallError::Fuel {
                task: name,
                limit: limits.fuel,
            };
        }
        Some(Trap::Interrupt) => {
            return CallError::Deadline {
                task: name,
                after: limits.timeout,
            };
        }
        _ => {}
    }
    if store.data().limiter.memory_refused {
        return CallError::Memory {
            task: name,
            limit: limits.memory_bytes,
        };
    }
    let mut message = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{:#}", error),
    };
    // A Rust panic prints its message to stderr before it traps: that is
    // what the author wants to see.
    if let Some(said) = guest_complaint(&stderr.contents()) {
        message = format!("{message}: {said}");
    }
    if let Some(bt) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let trace = short_backtrace(bt);
        if !trace.is_empty() {
            message = format!("{message} (at {trace})");
        }
    }
    CallError::Trap {
        task: name,
        message,
    }
}

/// The output budgets a call reached: a capture that is full.
pub(super) fn output_hits(limits: &Limits, stdout: &Capture, stderr: &Capture) -> Vec<BudgetHit> {
    [(Budget::Stdout, stdout), (Budget::Stderr, stderr)]
        .into_iter()
        .filter(|(_, pipe)| pipe.is_full())
        .map(|(budget, _)| BudgetHit {
            budget,
            limit: limits.output_bytes as u64,
            refused: 0,
        })
        .collect()
}

pub(super) fn output_overflow(
    task: &Task,
    limits: &Limits,
    stdout: &Capture,
    stderr: &Capture,
) -> Option<CallError> {
    [("stdout", stdout), ("stderr", stderr)]
        .into_iter()
        .find(|(_, pipe)| pipe.is_full())
        .map(|(stream, _)| CallError::Output {
            task: task.name.clone(),
            stream,
            limit: limits.output_bytes,
        })
}

/// What a store holds for one call.
pub(crate) struct State {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: Limiter,
    pub(super) job: JobInfo,
    pub(super) attempt: Option<Arc<AttemptCell>>,
    pub(super) services: SharedServices,
    /// This call's log and put budgets.
    pub(super) budgets: Budgets,
    /// The follow-up jobs staged so far.
    pub(super) puts: Vec<PutRequest>,
    /// When the call must stop; set when it is armed. The imports check it.
    pub(super) deadline: Option<Instant>,
    /// Fuel left when the host last yielded (or the call was armed).
    pub(super) fuel_mark: u64,
}

impl State {
    /// Readies a kept instance's state for its next job: that job's facts,
    /// services and budgets, nothing staged, and no memory refusal on record.
    pub(super) fn start_job(&mut self, ctx: &CallContext) {
        let limits = &ctx.limits;
        self.job = ctx.job.clone();
        self.attempt = ctx.attempt.clone();
        self.services = ctx.services.clone();
        self.budgets = Budgets::new(limits.log_lines, limits.output_bytes, limits.max_puts);
        self.puts.clear();
        self.limiter.memory_refused = false;
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pipe_is_a_budget_hit_at_the_output_limit_and_an_open_one_is_not() {
        let limits = Limits {
            output_bytes: 64,
            ..Limits::default()
        };
        // A pipe of capacity 0 has taken all it may.
        let (full, open) = (Capture::new(0), Capture::new(64));
        assert!(output_hits(&limits, &open, &open).is_empty());
        let hits = output_hits(&limits, &open, &full);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].budget, Budget::Stderr);
        assert_eq!(hits[0].limit, 64);
        let both: Vec<Budget> = output_hits(&limits, &full, &full)
            .into_iter()
            .map(|h| h.budget)
            .collect();
        assert_eq!(both, [Budget::Stdout, Budget::Stderr]);
    }
}
