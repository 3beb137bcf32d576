//! Driving a `runner` worker from the bench: start one (pinned like every
//! client, log at `warn`), and put a job with `reply_to` and wait for its
//! reply.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use beanbox_queue::{Client, Producer, PutOptions, ReplyBody};
use serde_json::{Map, Value};

use crate::Ctx;
use crate::server::Children;

/// Starts `runner --modules DIR --cache-dir CACHE --log warn` plus `extra`
/// flags; its log goes to `DIR.log`.
pub fn start(ctx: &Ctx, modules: &Path, cache: &Path, extra: &[&str]) -> anyhow::Result<Children> {
    start_on(ctx, &ctx.server.addr(), modules, cache, extra, "log")
}

/// [`start`] against `servers` (`--beanstalkd`, a comma-separated list),
/// logging to `DIR.<log>`.
pub fn start_on(
    ctx: &Ctx,
    servers: &str,
    modules: &Path,
    cache: &Path,
    extra: &[&str],
    log: &str,
) -> anyhow::Result<Children> {
    let log = std::fs::File::create(modules.with_extension(log))?;
    let child = ctx
        .pin
        .client(&ctx.paths.runner)
        .arg("--modules")
        .arg(modules)
        .arg("--cache-dir")
        .arg(cache)
        .args(["--beanstalkd", servers, "--log", "warn"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start runner")?;
    Ok(Children(vec![child]))
}

/// A producer and a consumer of replies on one reply tube.
#[derive(Debug)]
pub struct Asker {
    producer: Producer,
    replies: Client,
    reply_to: String,
}

impl Asker {
    /// Connects both, the consumer watching only `reply_to`.
    pub async fn connect(ctx: &Ctx, reply_to: &str) -> anyhow::Result<Asker> {
        let producer = Producer::connect(&ctx.server.addr()).await?;
        let mut replies = ctx.server.connect().await?;
        replies.watch(reply_to).await?;
        replies.ignore("default").await?;
        Ok(Asker {
            producer,
            replies,
            reply_to: reply_to.to_string(),
        })
    }

    /// Puts `{"task", "kwargs", "reply_to"}` on `tube`.
    pub async fn put(
        &mut self,
        tube: &str,
        task: &str,
        kwargs: &Map<String, Value>,
    ) -> anyhow::Result<()> {
        let opts = PutOptions {
            reply_to: Some(self.reply_to.clone()),
            ..PutOptions::default()
        };
        self.producer.put(tube, task, kwargs, &opts).await?;
        Ok(())
    }

    /// Waits up to `timeout` for the next reply, deletes it and returns
    /// the task's result; a failed task is an error.
    pub async fn reply(&mut self, timeout: Duration) -> anyhow::Result<Value> {
        let secs = u32::try_from(timeout.as_secs().max(1)).unwrap_or(u32::MAX);
        let job = match self.replies.reserve_with_timeout(secs).await {
            Ok(job) => job,
            Err(e) if e.is_timeout() => bail!("no reply within {timeout:?}"),
            Err(e) => return Err(e.into()),
        };
        self.replies.delete(job.id).await?;
        let reply = ReplyBody::parse(&job.body)?;
        reply
            .outcome
            .map_err(|e| anyhow::anyhow!("job {} failed: {e}", reply.job))
    }

    /// `put`, then `reply`.
    pub async fn ask(
        &mut self,
        tube: &str,
        task: &str,
        kwargs: &Map<String, Value>,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        self.put(tube, task, kwargs).await?;
        self.reply(timeout).await
    }
}

/// A JSON object literal as kwargs.
pub fn kwargs(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A modules directory holding only `<tube>.wasm`, a copy of `wasm`.
pub fn modules_for(ctx: &Ctx, tube: &str, wasm: &Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = ctx.work.join(tube);
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(wasm, dir.join(format!("{tube}.wasm")))
        .with_context(|| format!("cannot copy {}", wasm.display()))?;
    Ok(dir)
}
