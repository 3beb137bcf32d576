//! The admin commands, for operators without a browser: `runner stats`,
//! `buried`, `kick`, `delete` and `pause`, each a thin shell over
//! [`crate::ops`] printing an aligned table, or JSON with `--json`.

use std::process::ExitCode;

use beanbox_queue::Servers;
use clap::{ArgGroup, Args};
use serde_json::json;

use super::{EXIT_BAD_INPUT, EXIT_ERROR};
use crate::ops::{self, BuriedList, Kick, Kicked, Over, TubeTotal};

/// The exit codes of every admin command.
macro_rules! admin_exit_codes {
    () => {
        "Exit codes:
  0  success
  1  beanstalkd unreachable (the message names the address), or it refused
  2  bad input: invalid or unknown tube, no such job, a job in the wrong
     tube or state for the command, a job id on several servers

With several servers (--beanstalkd a:11300,b:11300) every one is read and
acted on; a server not reached is named on stderr (exit 1) and what the
others answered is printed. Job ids are per server: the server is shown
beside each id, and --server picks the one a job id is on."
    };
}

pub(super) const STATS_HELP: &str = concat!(
    "One row per tube beanstalkd lists (or the one asked for), beanbox.failures
(the failure records) last. PAUSED is the time left of a pause.

Examples:
  runner stats
  runner stats --tube images --json
  runner stats --beanstalkd 10.0.0.5:11300,10.0.0.6:11300   # sums, then each server

",
    admin_exit_codes!()
);

pub(super) const BURIED_HELP: &str = concat!(
    "Lists the tube's buried jobs with the task, attempt and reason of their
failure, kept on the tube beanbox.failures (one record per buried job,
written by the worker before it buries the job, so it survives restarts).
A job buried without a record (by another tool, or its record was refused)
shows `-`; beanstalkd can show only the oldest of those. --json adds the
first 4 KiB of each body.

Examples:
  runner buried --tube images
  runner buried --tube images --json | jq '.jobs[].reason'

",
    admin_exit_codes!()
);

pub(super) const KICK_HELP: &str = concat!(
    "Retries buried jobs with a FRESH attempt budget: each is put again on its
tube as a new job (same body, priority and TTR; its attempt is 1) and the
buried one is deleted with its failure record. Prints old and new ids.
(beanstalkd's own `kick`, from other tools, gives a job one more attempt
only: its release count, hence its attempt, stays.) Deploy the fix first,
then kick.

Examples:
  runner kick --tube images --job 12
  runner kick --tube images --job 12 --server 10.0.0.6:11300
  runner kick --tube images --all

",
    admin_exit_codes!()
);

pub(super) const DELETE_HELP: &str = concat!(
    "Deletes a buried or delayed job and its failure record; a ready job only
with --force. A reserved (running) job cannot be deleted.

Examples:
  runner delete --job 12
  runner delete --job 12 --server 10.0.0.6:11300
  runner delete --job 40 --force

",
    admin_exit_codes!()
);

pub(super) const PAUSE_HELP: &str = concat!(
    "Pauses a tube on every server: no worker reserves from it for S seconds
(0 ends a pause).

Examples:
  runner pause --tube images --secs 300

",
    admin_exit_codes!()
);

/// What every admin command takes.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// beanstalkd servers, comma-separated: each is read (and acted on).
    #[arg(long, value_name = "HOST:PORT[,...]", env = beanbox_queue::ADDR_ENV, default_value = beanbox_queue::DEFAULT_ADDR)]
    pub beanstalkd: Servers,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `runner stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this tube.
    #[arg(long)]
    pub tube: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Arguments of `runner buried`.
#[derive(Debug, Args)]
pub struct BuriedArgs {
    /// The tube.
    #[arg(long)]
    pub tube: String,
    /// Show at most this many jobs.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Arguments of `runner kick`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["all", "job"])))]
pub struct KickArgs {
    /// The tube of the buried jobs.
    #[arg(long)]
    pub tube: String,
    /// Kick every job buried in the tube.
    #[arg(long)]
    pub all: bool,
    /// Kick this job.
    #[arg(long, value_name = "ID")]
    pub job: Option<u64>,
    /// The server of the job (ids are per server); with --all: kick there
    /// only. Without it a job is looked for on every server.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Arguments of `runner delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The job.
    #[arg(long, value_name = "ID")]
    pub job: u64,
    /// Delete a ready job too.
    #[arg(long)]
    pub force: bool,
    /// The server of the job (ids are per server). Without it the job is
    /// looked for on every server.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Arguments of `runner pause`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The tube.
    #[arg(long)]
    pub tube: String,
    /// Seconds (0 ends a pause).
    #[arg(long, value_name = "S")]
    pub secs: u32,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Runs `runner stats`.
///
/// # Errors
///
/// Only when no runtime can be started; the rest are exit codes.
pub fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let servers = &args.admin.beanstalkd;
    let split = servers.len() > 1;
    let over = super::runtime()?.block_on(ops::tube_stats_over(servers, args.tube.as_deref()));
    Ok(report(over, |tubes| {
        if !args.admin.json {
            stats_table(&tubes, split)
        } else if split {
            json!({ "tubes": tubes }).to_string()
        } else {
            let rows: Vec<_> = tubes.into_iter().map(|t| t.total).collect();
            json!({ "tubes": rows }).to_string()
        }
    }))
}

/// Runs `runner buried`.
///
/// # Errors
///
/// Only when no runtime can be started.
pub fn buried(args: BuriedArgs) -> anyhow::Result<ExitCode> {
    let servers = &args.admin.beanstalkd;
    let over = super::runtime()?.block_on(ops::buried_over(servers, &args.tube, args.limit));
    Ok(report(over, |list| {
        if args.admin.json {
            serde_json::to_string(&list).expect("serialisable")
        } else {
            buried_table(&list, crate::metrics::unix_now())
        }
    }))
}

/// Runs `runner kick`.
///
/// # Errors
///
/// Only when no runtime can be started.
pub fn kick(args: KickArgs) -> anyhow::Result<ExitCode> {
    let servers = &args.admin.beanstalkd;
    let which = args.job.map_or(Kick::All, Kick::Job);
    let over = super::runtime()?.block_on(ops::kick_over(
        servers,
        args.server.as_deref(),
        &args.tube,
        which,
    ));
    Ok(report(over, |kicked| {
        if args.admin.json {
            json!({ "kicked": kicked }).to_string()
        } else {
            kick_lines(&args.tube, &kicked)
        }
    }))
}

/// Runs `runner delete`.
///
/// # Errors
///
/// Only when no runtime can be started.
pub fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let servers = &args.admin.beanstalkd;
    let split = servers.len() > 1;
    let id = args.job;
    let over = super::runtime()?.block_on(ops::delete_over(
        servers,
        args.server.as_deref(),
        id,
        args.force,
    ));
    Ok(report(over, |server| match (args.admin.json, split) {
        (true, false) => json!({ "deleted": id }).to_string(),
        (true, true) => json!({ "deleted": id, "server": server }).to_string(),
        (false, false) => format!("deleted job {id}"),
        (false, true) => format!("deleted job {id} on {server}"),
    }))
}

/// Runs `runner pause`.
///
/// # Errors
///
/// Only when no runtime can be started.
pub fn pause(args: PauseArgs) -> anyhow::Result<ExitCode> {
    let servers = &args.admin.beanstalkd;
    let split = servers.len() > 1;
    let over = super::runtime()?.block_on(ops::pause_over(servers, &args.tube, args.secs));
    Ok(report(over, |paused| {
        let on = if split {
            format!(" on {}", paused.join(", "))
        } else {
            String::new()
        };
        if args.admin.json && split {
            json!({ "paused": args.tube, "secs": args.secs, "servers": paused }).to_string()
        } else if args.admin.json {
            json!({ "paused": args.tube, "secs": args.secs }).to_string()
        } else if args.secs == 0 {
            format!("tube `{}` no longer paused{on}", args.tube)
        } else {
            format!("tube `{}` paused for {} s{on}", args.tube, args.secs)
        }
    }))
}

/// Prints what `show` makes of the servers' answer, if any, and each
/// error on stderr; the exit code says whether any error was the
/// servers' (1) or all were the input's (2).
fn report<T>(over: Over<T>, show: impl FnOnce(T) -> String) -> ExitCode {
    let bad_input = over.bad_input();
    if let Some(value) = over.value {
        println!("{}", show(value));
    }
    for e in &over.errors {
        eprintln!("error: {e}");
    }
    if over.errors.is_empty() {
        ExitCode::SUCCESS
    } else if bad_input {
        ExitCode::from(EXIT_BAD_INPUT)
    } else {
        ExitCode::from(EXIT_ERROR)
    }
}

/// One row per tube; with `split` (several servers), each followed by one
/// indented row per server.
fn stats_table(tubes: &[TubeTotal], split: bool) -> String {
    let header = [
        "TUBE", "READY", "RESERVED", "DELAYED", "BURIED", "URGENT", "WAITING", "PAUSED", "TOTAL",
    ];
    let rows = tubes.iter().flat_map(|t| {
        let servers = t.servers.iter().filter(|_| split);
        std::iter::once((t.total.tube.clone(), &t.total))
            .chain(servers.map(|s| (format!("  {}", s.server), &s.row)))
    });
    let body = rows.map(|(name, r)| {
        vec![
            name,
            r.ready.to_string(),
            r.reserved.to_string(),
            r.delayed.to_string(),
            r.buried.to_string(),
            r.urgent.to_string(),
            r.waiting.to_string(),
            if r.paused {
                format!("{}s", r.pause_time_left)
            } else {
                "-".to_owned()
            },
            r.total.to_string(),
        ]
    });
    table(&header, body)
}

/// The longest reason shown in a table (the JSON has it whole).
const TABLE_REASON_CHARS: usize = 120;

fn buried_table(list: &BuriedList, now: u64) -> String {
    let mut out = format!("tube `{}`: {} buried", list.tube, list.buried);
    if !list.servers.is_empty() {
        let each: Vec<String> = list
            .servers
            .iter()
            .map(|s| format!("{} on {}", s.buried, s.server))
            .collect();
        out.push_str(&format!(" ({})", each.join(", ")));
    }
    if list.unrecorded > 0 {
        out.push_str(&format!(", {} without a failure record", list.unrecorded));
    }
    if !list.complete {
        out.push_str(" (another reader held some records: the list may be partial)");
    }
    if list.jobs.is_empty() {
        return out;
    }
    out.push('\n');
    let dash = || "-".to_owned();
    let split = !list.servers.is_empty();
    let mut header = vec!["JOB", "TASK", "ATTEMPT", "KIND", "BURIED", "AGE", "REASON"];
    if split {
        header.insert(1, "SERVER");
    }
    let body = list.jobs.iter().map(|j| {
        let reason = j.reason.as_deref().map_or_else(dash, |r| {
            let line: String = r.split_whitespace().collect::<Vec<_>>().join(" ");
            let mut shown: String = line.chars().take(TABLE_REASON_CHARS).collect();
            if shown.len() < line.len() {
                shown.push('…');
            }
            shown
        });
        let mut row = vec![
            j.job.to_string(),
            j.task.clone().unwrap_or_else(dash),
            j.attempt.map_or_else(dash, |a| a.to_string()),
            j.kind.clone().unwrap_or_else(dash),
            j.at.map_or_else(dash, |at| {
                format!("{} ago", duration(now.saturating_sub(at)))
            }),
            duration(u64::try_from(j.age).unwrap_or(0)),
            reason,
        ];
        if split {
            row.insert(1, j.server.clone().unwrap_or_else(dash));
        }
        row
    });
    out.push_str(&table(&header, body));
    out
}

fn kick_lines(tube: &str, kicked: &[Kicked]) -> String {
    if kicked.is_empty() {
        return format!("no buried jobs kicked in tube `{tube}`");
    }
    let lines: Vec<String> = kicked
        .iter()
        .map(|k| {
            let at = k
                .server
                .as_ref()
                .map_or_else(String::new, |s| format!(" at {s}"));
            format!(
                "job {} kicked: new job {} on `{tube}`{at} (attempt 1)",
                k.job, k.new_job
            )
        })
        .collect();
    lines.join("\n")
}

/// `95` → `1m35s`.
fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Columns padded to their widest cell, two spaces apart; the last is not
/// padded.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut all: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    all.extend(rows);
    let mut widths = vec![0; header.len()];
    for row in &all {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let lines: Vec<String> = all
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count();
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                } else {
                    line.push_str(cell);
                }
            }
            line
        })
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_aligned() {
        let rows = vec![
            vec!["a".to_owned(), "1".to_owned(), "x".to_owned()],
            vec!["longer".to_owned(), "12345".to_owned(), "y".to_owned()],
        ];
        let text = table(&["NAME", "N", "LAST"], rows.into_iter());
        assert_eq!(
            text,
            "NAME    N      LAST\n\
             a       1      x\n\
             longer  12345  y"
        );
    }

    #[test]
    fn several_servers_show_each_ones_row_under_the_sum() {
        let row = |ready| ops::TubeRow {
            ready,
            ..ops::merge::add_rows("t", std::iter::empty())
        };
        let answers = vec![
            ("a:1".to_string(), vec![row(2)]),
            ("b:2".to_string(), vec![row(3)]),
        ];
        let tubes = ops::merge::sum_tubes(&answers);
        let text = stats_table(&tubes, true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("t      5 "), "{text}");
        assert!(lines[2].starts_with("  a:1  2 "), "{text}");
        assert!(lines[3].starts_with("  b:2  3 "), "{text}");
        assert_eq!(
            stats_table(&tubes, false).lines().count(),
            2,
            "one server: one row"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(95), "1m35s");
        assert_eq!(duration(3 * 3600 + 120), "3h02m");
        assert_eq!(duration(2 * 86_400 + 3600), "2d01h");
    }

    #[test]
    fn buried_jobs_without_a_record_show_dashes() {
        let list = BuriedList {
            tube: "t".into(),
            buried: 2,
            jobs: vec![
                ops::BuriedJob {
                    job: 3,
                    server: None,
                    task: Some("fail".into()),
                    attempt: Some(1),
                    kind: Some("guest-error".into()),
                    reason: Some("task `fail` returned an error:\n\"boom\"".into()),
                    tenant: Some("t".into()),
                    at: Some(1000),
                    age: 70,
                    body: String::new(),
                },
                ops::BuriedJob {
                    job: 9,
                    server: None,
                    task: None,
                    attempt: None,
                    kind: None,
                    reason: None,
                    tenant: None,
                    at: None,
                    age: 5,
                    body: String::new(),
                },
            ],
            unrecorded: 1,
            complete: true,
            servers: Vec::new(),
        };
        let text = buried_table(&list, 1010);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "tube `t`: 2 buried, 1 without a failure record");
        assert!(lines[1].starts_with("JOB  TASK  ATTEMPT  KIND"), "{text}");
        assert!(
            lines[2].contains("fail") && lines[2].contains("10s ago") && lines[2].contains("1m10s"),
            "{text}"
        );
        assert!(lines[2].ends_with("returned an error: \"boom\""), "{text}");
        assert!(lines[3].starts_with("9    -     -"), "{text}");
    }
}
