//! The operator actions over the beanstalkd servers of a list
//! (`--beanstalkd a,b,c`), for the CLI and the dashboard. Every server is
//! asked at once, each on its own connection, so one down or slow holds up
//! no other; their answers add up in [`super::merge`]. A server down gives
//! an error naming it next to what the others answered ([`Over`]). Job ids
//! are per server: an action on one job goes to the server named, or to the
//! one server holding that id.

use std::future::Future;

use beanbox_queue::Servers;

use super::merge::{self, Split, TubeTotal};
use super::{
    BuriedList, Kick, Kicked, OpsError, buried, check_tube, delete, kick, listing, pause,
    tube_stats,
};

/// What an action over several servers came to: what those that answered
/// said (`None` when none did) and one error per server that failed, each
/// naming it.
#[derive(Debug)]
pub struct Over<T> {
    /// The answer, from the servers that gave one.
    pub value: Option<T>,
    /// What went wrong, one line each.
    pub errors: Vec<OpsError>,
}

impl<T> Over<T> {
    fn failed(errors: Vec<OpsError>) -> Over<T> {
        Over {
            value: None,
            errors,
        }
    }

    fn of(result: Result<T, OpsError>) -> Over<T> {
        match result {
            Ok(value) => Over {
                value: Some(value),
                errors: Vec::new(),
            },
            Err(e) => Over::failed(vec![e]),
        }
    }

    /// `merge` of the answers, if any, and the errors.
    fn merged<A>(split: Split<A>, merge: impl FnOnce(Vec<(String, A)>) -> T) -> Over<T> {
        Over {
            value: (!split.answers.is_empty()).then(|| merge(split.answers)),
            errors: split.errors,
        }
    }

    /// Whether every error was the input's fault (the CLI's exit 2).
    pub fn bad_input(&self) -> bool {
        self.errors.iter().all(OpsError::is_bad_input)
    }
}

/// Runs `action` on each of `servers` at once; the results in list order.
async fn each<T, F>(
    servers: &[String],
    action: impl Fn(String) -> F,
) -> Vec<(String, Result<T, OpsError>)>
where
    F: Future<Output = Result<T, OpsError>> + Send + 'static,
    T: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for (i, addr) in servers.iter().enumerate() {
        let asked = action(addr.clone());
        set.spawn(async move { (i, asked.await) });
    }
    let mut results: Vec<Option<Result<T, OpsError>>> = servers.iter().map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, result)) => results[i] = Some(result),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    servers
        .iter()
        .cloned()
        .zip(
            results
                .into_iter()
                .map(|r| r.expect("every server answered")),
        )
        .collect()
}

/// `server` if it is one of `servers`.
///
/// # Errors
///
/// [`OpsError::NotListed`].
pub fn listed(servers: &Servers, server: &str) -> Result<String, OpsError> {
    let server = server.trim();
    if servers.iter().any(|s| s == server) {
        Ok(server.to_owned())
    } else {
        Err(OpsError::NotListed {
            server: server.to_owned(),
            servers: servers.to_string(),
        })
    }
}

/// The servers an action on every server goes to: `server` alone when
/// given.
fn targets(servers: &Servers, server: Option<&str>) -> Result<Vec<String>, OpsError> {
    match server {
        Some(s) => Ok(vec![listed(servers, s)?]),
        None => Ok(servers.as_slice().to_vec()),
    }
}

/// The server holding job `id`: `server` when given, the only one, or the
/// one server that has a job `id` (each asked).
async fn holder(servers: &Servers, server: Option<&str>, id: u64) -> Result<String, Vec<OpsError>> {
    match server {
        Some(s) => listed(servers, s).map_err(|e| vec![e]),
        None if servers.len() == 1 => Ok(servers.first().to_owned()),
        None => {
            let lookups = each(servers.as_slice(), move |addr| async move {
                listing::has_job(&addr, id).await
            })
            .await;
            merge::holder(id, lookups)
        }
    }
}

/// [`OpsError::UnknownTube`] as "nothing there", for a tube that may
/// exist on some servers only.
fn or_none<T>(result: Result<T, OpsError>) -> Result<Option<T>, OpsError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(OpsError::UnknownTube(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every answer is "no such tube" and every server answered: the tube is
/// unknown.
fn unknown_everywhere<T>(split: &Split<Option<T>>) -> bool {
    split.errors.is_empty() && split.answers.iter().all(|(_, a)| a.is_none())
}

/// Asks each of `targets` about `tube` with `ask(addr, tube)` (a server
/// without the tube answers `None`); refused when no server has the tube.
async fn ask_about_tube<T, F>(
    targets: &[String],
    tube: &str,
    ask: impl Fn(String, String) -> F,
) -> Result<Split<Option<T>>, Vec<OpsError>>
where
    F: Future<Output = Result<Option<T>, OpsError>> + Send + 'static,
    T: Send + 'static,
{
    let results = each(targets, |addr| ask(addr, tube.to_owned())).await;
    let split = merge::split(results).map_err(|e| vec![e])?;
    if unknown_everywhere(&split) {
        return Err(vec![OpsError::UnknownTube(tube.to_owned())]);
    }
    Ok(split)
}

/// [`tube_stats`] over every server: each tube summed, with each server's
/// counts.
pub async fn tube_stats_over(servers: &Servers, tube: Option<&str>) -> Over<Vec<TubeTotal>> {
    if let Some(t) = tube
        && let Err(e) = check_tube(t)
    {
        return Over::failed(vec![e]);
    }
    let owned = tube.map(str::to_owned);
    let results = each(servers.as_slice(), move |addr| {
        let tube = owned.clone();
        async move { or_none(tube_stats(&addr, tube.as_deref()).await) }
    })
    .await;
    let split = match merge::split(results) {
        Ok(split) => split,
        Err(e) => return Over::failed(vec![e]),
    };
    if let Some(t) = tube
        && unknown_everywhere(&split)
    {
        return Over::failed(vec![OpsError::UnknownTube(t.to_owned())]);
    }
    Over::merged(split, |answers| {
        let rows: Vec<(String, Vec<_>)> = answers
            .into_iter()
            .map(|(s, rows)| (s, rows.unwrap_or_default()))
            .collect();
        merge::sum_tubes(&rows)
    })
}

/// [`buried`] over every server: the jobs of each, with their server when
/// there is more than one.
pub async fn buried_over(servers: &Servers, tube: &str, limit: usize) -> Over<BuriedList> {
    let asked = ask_about_tube(servers.as_slice(), tube, |addr, tube| async move {
        or_none(buried(&addr, &tube, limit).await)
    });
    let split = match asked.await {
        Ok(split) => split,
        Err(errors) => return Over::failed(errors),
    };
    let show = servers.len() > 1;
    Over::merged(split, |answers| {
        let lists = answers
            .into_iter()
            .filter_map(|(s, list)| Some((s, list?)))
            .collect();
        merge::join_buried(tube, lists, limit, show)
    })
}

/// [`kick`]: one job on the server named (or the one holding it), or every
/// buried job of the tube on every server (or the one named).
pub async fn kick_over(
    servers: &Servers,
    server: Option<&str>,
    tube: &str,
    which: Kick,
) -> Over<Vec<Kicked>> {
    let show = servers.len() > 1;
    let mark = move |addr: &str, mut kicked: Vec<Kicked>| {
        if show {
            for k in &mut kicked {
                k.server = Some(addr.to_owned());
            }
        }
        kicked
    };
    if let Kick::Job(id) = which {
        if let Err(e) = check_tube(tube) {
            return Over::failed(vec![e]);
        }
        return match holder(servers, server, id).await {
            Ok(addr) => Over::of(kick(&addr, tube, which).await.map(|k| mark(&addr, k))),
            Err(errors) => Over::failed(errors),
        };
    }
    let targets = match targets(servers, server) {
        Ok(t) => t,
        Err(e) => return Over::failed(vec![e]),
    };
    let asked = ask_about_tube(&targets, tube, |addr, tube| async move {
        let kicked = or_none(kick(&addr, &tube, Kick::All).await)?;
        Ok(kicked.map(|k| mark(&addr, k)))
    });
    let split = match asked.await {
        Ok(split) => split,
        Err(errors) => return Over::failed(errors),
    };
    Over::merged(split, |answers| {
        answers
            .into_iter()
            .flat_map(|(_, k)| k.unwrap_or_default())
            .collect()
    })
}

/// [`delete`] on the server named, or the one holding job `id`: the
/// server it was deleted on.
pub async fn delete_over(
    servers: &Servers,
    server: Option<&str>,
    id: u64,
    force: bool,
) -> Over<String> {
    match holder(servers, server, id).await {
        Ok(addr) => Over::of(delete(&addr, id, force).await.map(|_| addr)),
        Err(errors) => Over::failed(errors),
    }
}

/// [`pause`] on every server where the tube exists: those paused.
pub async fn pause_over(servers: &Servers, tube: &str, secs: u32) -> Over<Vec<String>> {
    let asked = ask_about_tube(servers.as_slice(), tube, |addr, tube| async move {
        or_none(pause(&addr, &tube, secs).await)
    });
    let split = match asked.await {
        Ok(split) => split,
        Err(errors) => return Over::failed(errors),
    };
    Over::merged(split, |answers| {
        answers
            .into_iter()
            .filter_map(|(s, paused)| paused.map(|()| s))
            .collect()
    })
}
