//! `runner put`: put one job on a tube (what a producer does), and with
//! `--wait` wait for its result on a private reply tube and print it.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use beanbox_queue::{Client, KwargsError, Producer, PutOptions, ReplyBody, ReplyError};
use clap::Args;

use super::{EXIT_BAD_INPUT, EXIT_ERROR, EXIT_LIMIT, EXIT_TASK_FAILED, exit_codes_help};

pub(super) const AFTER_HELP: &str = concat!(
    "Examples:
  runner put --tube hello task_one --kwargs '{\"arg1\":\"a\",\"arg2\":\"b\",\"arg3\":\"c\"}'
  runner put --tube hello task_one --kwargs '{\"arg1\":\"a\",\"arg2\":\"b\",\"arg3\":\"c\"}' --wait
  runner put --tube resize thumbnail --kwargs '{\"url\":\"https://example.com/a.png\"}' --reply-to results

Without --wait it prints the new job's id. With --wait it prints the task's
JSON result, or the error on stderr with the exit code of its kind (and,
when the task returned `err`, its err value on stdout as JSON); with
--wait, exit codes are those of `runner call`.

",
    exit_codes_help!()
);

/// Arguments of `runner put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The tube to put the job on.
    #[arg(long)]
    pub tube: String,
    /// The task (export) the job runs.
    pub task: String,
    /// The kwargs, a JSON object.
    #[arg(long, default_value = "{}")]
    pub kwargs: String,
    /// beanstalkd priority; lower runs first.
    #[arg(long, default_value_t = beanbox_queue::producer::DEFAULT_PRIORITY)]
    pub priority: u32,
    /// Seconds before the job becomes ready.
    #[arg(long, default_value_t = 0)]
    pub delay: u32,
    /// Seconds a worker may hold the job; also caps the task's run time.
    #[arg(long, default_value_t = beanbox_queue::producer::DEFAULT_TTR)]
    pub ttr: u32,
    /// A tube that gets the job's result (not with --wait, which uses its own).
    #[arg(long, conflicts_with = "wait")]
    pub reply_to: Option<String>,
    /// Wait for the result and print it.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (retries included).
    #[arg(long, default_value_t = 60, requires = "wait")]
    pub timeout: u32,
    /// beanstalkd address.
    #[arg(long, value_name = "HOST:PORT", env = beanbox_queue::ADDR_ENV, default_value = beanbox_queue::DEFAULT_ADDR)]
    pub beanstalkd: String,
}

/// Runs `runner put`.
///
/// # Errors
///
/// beanstalkd unreachable or refusing the job.
pub fn execute(args: PutArgs) -> anyhow::Result<ExitCode> {
    let kwargs = match beanbox_queue::parse_kwargs(&args.kwargs) {
        Ok(map) => map,
        Err(KwargsError::NotObject(other)) => {
            eprintln!("error: --kwargs must be a JSON object, got {other}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
        Err(KwargsError::NotJson(e)) => {
            eprintln!("error: --kwargs is not valid JSON: {e}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    super::runtime()?.block_on(async move {
        let addr = &args.beanstalkd;
        let mut producer = Producer::connect(addr)
            .await
            .with_context(|| format!("cannot reach beanstalkd at {addr}"))?;
        let mut opts = PutOptions {
            priority: args.priority,
            delay: args.delay,
            ttr: args.ttr,
            reply_to: args.reply_to.clone(),
        };
        if !args.wait {
            let id = producer
                .put(&args.tube, &args.task, &kwargs, &opts)
                .await
                .with_context(|| format!("failed to put the job on tube `{}`", args.tube))?;
            println!("{id}");
            return Ok(ExitCode::SUCCESS);
        }
        // A private reply tube, watched before the job can finish.
        let reply_tube = private_tube_name();
        let mut replies = Client::connect(addr)
            .await
            .with_context(|| format!("cannot reach beanstalkd at {addr}"))?;
        replies.watch(&reply_tube).await?;
        replies.ignore("default").await?;
        opts.reply_to = Some(reply_tube.clone());
        let id = producer
            .put(&args.tube, &args.task, &kwargs, &opts)
            .await
            .with_context(|| format!("failed to put the job on tube `{}`", args.tube))?;
        eprintln!(
            "job {id} put on tube `{}`; waiting for its result",
            args.tube
        );
        let waited = wait_for_reply(&mut replies, id, args.timeout).await?;
        // Neither connection uses or watches the reply tube any more, so
        // beanstalkd drops it (unless a reply comes after all: see the
        // README on `put --wait`).
        producer.client().use_tube("default").await?;
        replies.watch("default").await?;
        replies.ignore(&reply_tube).await?;
        Ok(match waited {
            None => {
                eprintln!(
                    "error: no result for job {id} within {}s; it may still be queued or retrying",
                    args.timeout
                );
                ExitCode::from(EXIT_ERROR)
            }
            Some(Ok(value)) => {
                println!("{value}");
                ExitCode::SUCCESS
            }
            Some(Err(e)) => {
                eprintln!("error: {}", e.message);
                if let Some(value) = &e.value {
                    println!("{value}");
                }
                ExitCode::from(exit_code_for_kind(&e.kind))
            }
        })
    })
}

/// Reserves and deletes replies on the private tube until job `id`'s comes
/// (`Some`) or `timeout` seconds pass (`None`).
async fn wait_for_reply(
    replies: &mut Client,
    id: u64,
    timeout: u32,
) -> anyhow::Result<Option<Result<serde_json::Value, ReplyError>>> {
    let deadline = Instant::now() + Duration::from_secs(u64::from(timeout));
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        let job = match replies
            .reserve_with_timeout(u32::try_from(left).unwrap_or(u32::MAX))
            .await
        {
            Ok(job) => job,
            Err(e) if e.is_timeout() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        replies.delete(job.id).await?;
        let reply = ReplyBody::parse(&job.body).context("the reply is not a beanbox result")?;
        if reply.job == id {
            return Ok(Some(reply.outcome));
        }
    }
}

/// The exit code for an error reply's kind: those of `runner call`; a job
/// that finished but whose reply could not be put is a runner error.
fn exit_code_for_kind(kind: &str) -> u8 {
    use beanbox_queue::ErrorKind as K;
    match K::parse(kind) {
        Some(K::UnknownTask | K::BadKwargs | K::BadEnvelope) => EXIT_BAD_INPUT,
        Some(K::Fuel | K::Memory | K::Deadline | K::Output) => EXIT_LIMIT,
        Some(K::ReplyTooBig) => EXIT_ERROR,
        // guest-error, trap, follow-ups-failed, and kinds newer than us.
        _ => EXIT_TASK_FAILED,
    }
}

fn private_tube_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("beanbox-reply-{}-{nanos}", std::process::id())
}
