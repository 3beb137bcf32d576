//! Which requests the admin listener answers, against browsers turned on
//! it: DNS rebinding (a page on `evil.example`, re-resolved to 127.0.0.1,
//! reading `/api/state` from the operator's browser: its `Host` is
//! `evil.example`), cross-site POSTs (a form on another site posting to the
//! listener), and framing (the dashboard in another site's invisible frame).
//!
//! [`check`] is the decision (pure); [`layer`] applies it to every route
//! and adds `nosniff` and no-framing headers to every answer. No CORS header
//! is ever sent, so a browser lets no other origin read an answer or send
//! the `Authorization` header the actions need.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The host names requests may name besides IP literals and `localhost`:
/// the `--admin` address's host and every `--admin-host`. Lowercase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts(Vec<String>);

impl Hosts {
    /// The names of `--admin ADDR` (its host, when a name) and `extra`
    /// (`--admin-host`, for names a proxy forwards).
    ///
    /// # Errors
    ///
    /// An `extra` entry that is not a host name (a port, a scheme, a
    /// space…), naming it.
    pub fn new(admin: &str, extra: &[String]) -> Result<Hosts, String> {
        let mut names = Vec::new();
        if let Some(Authority::Name(name)) = authority(admin) {
            names.push(name);
        }
        for given in extra {
            let name = given.trim().trim_end_matches('.').to_ascii_lowercase();
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
            if !valid {
                return Err(format!(
                    "--admin-host `{given}`: not a host name (give the name alone, \
                     e.g. dash.example.com, without scheme or port)"
                ));
            }
            names.push(name);
        }
        names.sort();
        names.dedup();
        Ok(Hosts(names))
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `Host` (or the absolute request target) names a host this listener
    /// does not answer for (421).
    UnknownHost(String),
    /// A `Host` header that is not a host (400).
    BadHost,
    /// A POST (or any method but GET/HEAD/OPTIONS) from a page of another
    /// site: `Sec-Fetch-Site` other than `same-origin`/`none`, or an
    /// `Origin` naming another host (403).
    CrossSite,
}

impl Refused {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Refused::UnknownHost(_) => StatusCode::MISDIRECTED_REQUEST,
            Refused::BadHost => StatusCode::BAD_REQUEST,
            Refused::CrossSite => StatusCode::FORBIDDEN,
        }
    }

    /// One line saying why.
    pub fn message(&self) -> String {
        match self {
            Refused::UnknownHost(host) => format!(
                "host `{host}` is not served here (DNS rebinding guard): use an IP address \
                 or localhost, or start the worker with --admin-host {host}"
            ),
            Refused::BadHost => "the Host header is not a host name".to_string(),
            Refused::CrossSite => {
                "cross-site request refused: actions come from the dashboard's own page \
                 or from a client such as curl"
                    .to_string()
            }
        }
    }
}

/// What a request says about where it comes from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'a> {
    /// The request method.
    pub method: &'a str,
    /// The host of an absolute request target (`GET http://h/ HTTP/1.1`),
    /// which takes precedence over `Host`.
    pub target_host: Option<&'a str>,
    /// The `Host` header's bytes.
    pub host: Option<&'a [u8]>,
    /// The `Origin` header's bytes.
    pub origin: Option<&'a [u8]>,
    /// The `Sec-Fetch-Site` header's bytes.
    pub fetch_site: Option<&'a [u8]>,
}

/// Whether the listener answers a request, given the `allowed` names.
///
/// Any host that is an IP literal or `localhost` (a rebinding page cannot
/// make the browser send those: its requests carry its own name), or one
/// of `allowed`. A request with no host at all (HTTP/1.0 tools) is no
/// browser's and is answered. Methods other than GET, HEAD and OPTIONS are
/// also refused from another site's page.
///
/// # Errors
///
/// [`Refused`] says why not.
pub fn check(asked: &Asked<'_>, allowed: &Hosts) -> Result<(), Refused> {
    let host = match (asked.target_host, asked.host) {
        (Some(target), _) => Some(target.as_bytes()),
        (None, host) => host,
    };
    if let Some(host) = host {
        let text = std::str::from_utf8(host).map_err(|_| Refused::BadHost)?;
        match authority(text).ok_or(Refused::BadHost)? {
            Authority::Ip => {}
            Authority::Name(name) if name == "localhost" || allowed.0.contains(&name) => {}
            Authority::Name(name) => return Err(Refused::UnknownHost(shorten(&name))),
        }
    }
    let safe = matches!(asked.method, "GET" | "HEAD" | "OPTIONS");
    if !safe {
        let site_ok = match asked.fetch_site {
            None => true,
            Some(site) => matches!(site, b"same-origin" | b"none"),
        };
        let origin_ok = match asked.origin {
            None => true,
            Some(origin) => origin_host(origin).is_some_and(|a| match a {
                Authority::Ip => true,
                Authority::Name(name) => name == "localhost" || allowed.0.contains(&name),
            }),
        };
        if !(site_ok && origin_ok) {
            return Err(Refused::CrossSite);
        }
    }
    Ok(())
}

/// A host as a request names it.
#[derive(Debug, PartialEq, Eq)]
enum Authority {
    /// An IPv4 or IPv6 literal.
    Ip,
    /// A name, lowercase, without a trailing dot.
    Name(String),
}

/// The host of `host[:port]` (`[v6]:port` for IPv6); `None` when it is
/// not one.
fn authority(text: &str) -> Option<Authority> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        ip.parse::<Ipv6Addr>().ok()?;
        return port_ok(after.strip_prefix(':').unwrap_or(after)).then_some(Authority::Ip);
    }
    let (name, port) = text.rsplit_once(':').unwrap_or((text, ""));
    if !port_ok(port) {
        return None;
    }
    if name.parse::<Ipv4Addr>().is_ok() {
        return Some(Authority::Ip);
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    valid.then_some(Authority::Name(name))
}

/// Whether `port` is empty or digits.
fn port_ok(port: &str) -> bool {
    port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// The host of an `Origin` header (`scheme://host[:port]`); `None` for
/// `null` or anything else.
fn origin_host(origin: &[u8]) -> Option<Authority> {
    let text = std::str::from_utf8(origin).ok()?;
    let (_, rest) = text.split_once("://")?;
    authority(rest)
}

/// At most 100 bytes of `name` (it is echoed in the refusal).
fn shorten(name: &str) -> String {
    name.chars().take(100).collect()
}

/// Axum middleware: answers [`Refused`] requests with their status and one
/// line, and adds the no-sniffing, no-framing headers to every answer.
/// Applied with `.layer(axum::middleware::from_fn_with_state(hosts, guard::layer))`.
pub async fn layer(State(allowed): State<Hosts>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let asked = Asked {
        method: request.method().as_str(),
        target_host: request.uri().host(),
        host: headers.get(header::HOST).map(HeaderValue::as_bytes),
        origin: headers.get(header::ORIGIN).map(HeaderValue::as_bytes),
        fetch_site: headers.get("sec-fetch-site").map(HeaderValue::as_bytes),
    };
    let verdict = check(&asked, &allowed);
    let mut response = match verdict {
        Ok(()) => next.run(request).await,
        Err(why) => {
            let method = request.method().clone();
            let body = if method == Method::HEAD {
                String::new()
            } else {
                format!("{}\n", why.message())
            };
            (why.status(), body).into_response()
        }
    };
    harden(response.headers_mut());
    response
}

/// The headers every answer carries unless its route set its own (the
/// dashboard sets a fuller Content-Security-Policy): no MIME sniffing,
/// never in a frame (clickjacking the dashboard's buttons), no referrer to
/// other sites.
fn harden(headers: &mut HeaderMap) {
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in defaults {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(host: &str) -> Result<(), Refused> {
        let asked = Asked {
            method: "GET",
            host: Some(host.as_bytes()),
            ..Asked::default()
        };
        check(
            &asked,
            &Hosts::new("127.0.0.1:9100", &["dash.example.com".into()]).unwrap(),
        )
    }

    fn post(origin: Option<&str>, site: Option<&str>) -> Result<(), Refused> {
        let asked = Asked {
            method: "POST",
            host: Some(b"127.0.0.1:9100"),
            origin: origin.map(str::as_bytes),
            fetch_site: site.map(str::as_bytes),
            ..Asked::default()
        };
        check(&asked, &Hosts::default())
    }

    #[test]
    fn ip_literals_localhost_and_named_hosts_are_answered() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:9100",
            "10.1.2.3:80",
            "[::1]:9100",
            "[::1]",
            "localhost:9100",
            "LOCALHOST",
            "localhost.",
            "dash.example.com",
            "Dash.Example.Com:443",
        ] {
            assert_eq!(get(host), Ok(()), "{host}");
        }
    }

    #[test]
    fn a_rebinding_page_s_host_is_refused_with_421() {
        for (host, name) in [
            ("evil.example", "evil.example"),
            ("evil.example:9100", "evil.example"),
            ("127.0.0.1.evil.example", "127.0.0.1.evil.example"),
            ("sub.localhost", "sub.localhost"),
            ("2130706433", "2130706433"),
        ] {
            let refused = get(host).unwrap_err();
            assert_eq!(refused, Refused::UnknownHost(name.into()), "{host}");
            assert_eq!(refused.status(), StatusCode::MISDIRECTED_REQUEST);
            assert!(refused.message().contains("--admin-host"), "{host}");
        }
    }

    #[test]
    fn what_is_not_a_host_is_a_bad_request() {
        for host in [
            "",
            "a b",
            "[::1",
            "[zz]:1",
            "h:port",
            "h:123456",
            "é.example",
        ] {
            assert_eq!(get(host), Err(Refused::BadHost), "{host:?}");
        }
        let asked = Asked {
            method: "GET",
            host: Some(b"\xff"),
            ..Asked::default()
        };
        assert_eq!(check(&asked, &Hosts::default()), Err(Refused::BadHost));
    }

    #[test]
    fn an_absolute_target_s_host_counts_over_the_host_header() {
        let asked = Asked {
            method: "GET",
            target_host: Some("evil.example"),
            host: Some(b"127.0.0.1"),
            ..Asked::default()
        };
        assert!(matches!(
            check(&asked, &Hosts::default()),
            Err(Refused::UnknownHost(_))
        ));
        // No host at all (HTTP/1.0): no browser sends that.
        assert_eq!(
            check(
                &Asked {
                    method: "GET",
                    ..Asked::default()
                },
                &Hosts::default()
            ),
            Ok(())
        );
    }

    #[test]
    fn the_admin_address_s_own_name_is_answered() {
        let hosts = Hosts::new("worker-7.internal:9100", &[]).unwrap();
        let asked = Asked {
            method: "GET",
            host: Some(b"worker-7.internal:9100"),
            ..Asked::default()
        };
        assert_eq!(check(&asked, &hosts), Ok(()));
        assert_eq!(Hosts::new("0.0.0.0:9100", &[]).unwrap(), Hosts::default());
    }

    #[test]
    fn admin_host_names_are_checked() {
        for bad in ["https://dash.example", "dash.example:443", "a b", ""] {
            let err = Hosts::new("127.0.0.1:1", &[bad.to_string()]).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
        let hosts = Hosts::new("127.0.0.1:1", &["Dash.Example.".into()]).unwrap();
        assert_eq!(hosts, Hosts(vec!["dash.example".into()]));
    }

    #[test]
    fn posts_from_another_site_s_page_are_refused() {
        assert_eq!(post(None, None), Ok(()), "curl");
        assert_eq!(
            post(Some("http://127.0.0.1:9100"), Some("same-origin")),
            Ok(())
        );
        assert_eq!(post(Some("http://localhost:9100"), None), Ok(()));
        for (origin, site) in [
            (Some("https://evil.example"), Some("cross-site")),
            (None, Some("cross-site")),
            (None, Some("same-site")),
            (Some("https://evil.example"), None),
            (Some("null"), None),
        ] {
            let refused = post(origin, site).unwrap_err();
            assert_eq!(refused, Refused::CrossSite, "{origin:?} {site:?}");
            assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        }
        // Reads are not refused for their origin: no CORS header lets
        // another site read the answer anyway.
        let asked = Asked {
            method: "GET",
            origin: Some(b"https://evil.example"),
            fetch_site: Some(b"cross-site"),
            ..Asked::default()
        };
        assert_eq!(check(&asked, &Hosts::default()), Ok(()));
    }
}
