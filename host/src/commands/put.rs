//! `runner put`: put one job on a tube (what a producer does), and with
//! `--wait` wait for its result on a private reply tube and print it. With
//! several servers the job goes to one of them (round-robin, or by `--key`)
//! and the output names it.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use beanbox_queue::{
    Client, KwargsError, MultiProducer, Placed, PutError, PutOptions, ReplyBody, ReplyError,
    Servers,
};
use clap::Args;

use super::{EXIT_BAD_INPUT, EXIT_ERROR, EXIT_LIMIT, EXIT_TASK_FAILED, exit_codes_help};

pub(super) const AFTER_HELP: &str = concat!(
    "Examples:
  runner put --tube hello task_one --kwargs '{\"arg1\":\"a\",\"arg2\":\"b\",\"arg3\":\"c\"}'
  runner put --tube hello task_one --kwargs '{\"arg1\":\"a\",\"arg2\":\"b\",\"arg3\":\"c\"}' --wait
  runner put --tube resize thumbnail --kwargs '{\"url\":\"https://example.com/a.png\"}' --reply-to results
  runner put --beanstalkd a:11300,b:11300 --key customer-42 --tube invoices render --kwargs '{}'

Without --wait it prints the new job's id; with more than one server, the id
and the server that holds it (`7 b:11300`; job ids are per server). With
--wait it prints the task's JSON result, or the error on stderr with the exit
code of its kind (and, when the task returned `err`, its err value on stdout
as JSON); with --wait, exit codes are those of `runner call`.

Several servers: the job goes to the next server in turn (starting at a
random one), or with --key to the one the key hashes to (rendezvous hashing,
the same as the beanbox-queue crate's), so jobs with one key share a server.
A server that cannot be reached is skipped and the next one takes the job;
when none can, it exits 1 naming each. If the connection breaks after the
job was sent, it exits 1 saying the outcome is unknown and does not put the
job again.

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
    /// beanstalkd server, or a comma-separated list to spread jobs over.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT...]", env = beanbox_queue::ADDR_ENV, default_value = beanbox_queue::DEFAULT_ADDR)]
    pub beanstalkd: Servers,
    /// With several servers: put the job on the server this key hashes to
    /// (the same key, the same server, while it is up) instead of the next
    /// in turn.
    #[arg(long)]
    pub key: Option<String>,
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
        let mut producer = MultiProducer::new(args.beanstalkd.clone());
        let several = args.beanstalkd.len() > 1;
        let mut opts = PutOptions {
            priority: args.priority,
            delay: args.delay,
            ttr: args.ttr,
            reply_to: args.reply_to.clone(),
            key: args.key.clone(),
        };
        if !args.wait {
            let placed = producer
                .put(&args.tube, &args.task, &kwargs, &opts)
                .await
                .map_err(|e| put_failed(e, &args.tube, several))?;
            println!("{}", job_ref(&placed, several));
            return Ok(ExitCode::SUCCESS);
        }
        // A private reply tube on the server that takes the job; watched
        // after the put, as a reply that comes first waits in the tube.
        let reply_tube = private_tube_name();
        opts.reply_to = Some(reply_tube.clone());
        let placed = producer
            .put(&args.tube, &args.task, &kwargs, &opts)
            .await
            .map_err(|e| put_failed(e, &args.tube, several))?;
        let (id, addr) = (placed.id, &placed.addr);
        let at = if several { format!(" on {addr}") } else { String::new() };
        let mut replies = Client::connect(addr).await.with_context(|| {
            format!("job {id} was put, but cannot reach beanstalkd at {addr} to wait for its result")
        })?;
        replies.watch(&reply_tube).await?;
        replies.ignore("default").await?;
        eprintln!(
            "job {id} put on tube `{}`{at}; waiting for its result",
            args.tube
        );
        let waited = wait_for_reply(&mut replies, id, args.timeout).await?;
        // Neither connection uses or watches the reply tube any more, so
        // beanstalkd drops it (unless a reply comes after all: see the
        // README on `put --wait`).
        drop(producer);
        replies.watch("default").await?;
        replies.ignore(&reply_tube).await?;
        Ok(match waited {
            None => {
                eprintln!(
                    "error: no result for job {id}{at} within {}s; it may still be queued or retrying",
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

/// What `runner put` prints: the job's id, and with several servers the
/// server beside it (ids are per server).
fn job_ref(placed: &Placed, several: bool) -> String {
    if several {
        format!("{} {}", placed.id, placed.addr)
    } else {
        placed.id.to_string()
    }
}

/// The error to print for a failed put. With one server the messages are
/// those of a plain producer: `cannot reach beanstalkd at ADDR`, or the
/// server's refusal.
fn put_failed(e: PutError, tube: &str, several: bool) -> anyhow::Error {
    let context = format!("failed to put the job on tube `{tube}`");
    match e {
        PutError::AllDown(down) if !several && down.len() == 1 => {
            anyhow::anyhow!(
                "cannot reach beanstalkd at {}: {}",
                down[0].addr,
                down[0].why
            )
        }
        PutError::Refused { source, .. } if !several => anyhow::Error::new(source).context(context),
        PutError::Invalid(source) => anyhow::Error::new(source).context(context),
        e @ PutError::AllDown(_) => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(context),
    }
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
