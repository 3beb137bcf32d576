//! A list of beanstalkd servers, as `--beanstalkd a:11300,b:11300` and
//! `BEANSTALKD_ADDR` give it: one type, parsed and checked in one place, for
//! the worker, the producer and every admin command.

use std::fmt;
use std::str::FromStr;

/// At most this many servers in one list: a typo in a script that repeats
/// an address thousands of times is refused rather than connected to.
pub const MAX_SERVERS: usize = 64;

/// One or more distinct beanstalkd addresses (`HOST:PORT`), in the order
/// given. The order matters: it is each server's index, used by key hashing
/// and by the worker to spread its slots.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Servers(Vec<String>);

/// Why a server list was refused; the message names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServersError {
    /// Nothing but commas and spaces.
    #[error("no beanstalkd address given (expected HOST:PORT[,HOST:PORT...])")]
    Empty,
    /// An entry without `:PORT`, or with a port that is not 1–65535.
    #[error("`{0}` is not HOST:PORT (a port from 1 to 65535 after the last colon)")]
    NotHostPort(String),
    /// The same address twice: its jobs would be counted twice.
    #[error("`{0}` is listed twice")]
    Duplicate(String),
    /// More than [`MAX_SERVERS`].
    #[error("{0} beanstalkd addresses given; at most {MAX_SERVERS}")]
    TooMany(usize),
}

impl Servers {
    /// One server.
    ///
    /// # Errors
    ///
    /// [`ServersError::NotHostPort`] when `addr` is not `HOST:PORT`.
    pub fn one(addr: &str) -> Result<Servers, ServersError> {
        check_host_port(addr.trim())?;
        Ok(Servers(vec![addr.trim().to_owned()]))
    }

    /// The addresses, in the order given.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The addresses, in the order given.
    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    /// How many servers (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a list holds at least one server.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first server given.
    pub fn first(&self) -> &str {
        &self.0[0]
    }
}

impl FromStr for Servers {
    type Err = ServersError;

    /// Parses `a:11300,b:11300`: entries are trimmed, empty ones (a
    /// trailing comma) skipped.
    fn from_str(list: &str) -> Result<Servers, ServersError> {
        let mut out: Vec<String> = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            check_host_port(entry)?;
            if out.iter().any(|seen| seen == entry) {
                return Err(ServersError::Duplicate(entry.to_owned()));
            }
            out.push(entry.to_owned());
        }
        match out.len() {
            0 => Err(ServersError::Empty),
            n if n > MAX_SERVERS => Err(ServersError::TooMany(n)),
            _ => Ok(Servers(out)),
        }
    }
}

impl fmt::Display for Servers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

impl<'a> IntoIterator for &'a Servers {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// `HOST:PORT` with a non-empty host and a port from 1 to 65535 (an IPv6
/// host in brackets: `[::1]:11300`).
fn check_host_port(entry: &str) -> Result<(), ServersError> {
    let bad = || ServersError::NotHostPort(entry.to_owned());
    let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = !host.is_empty() && !host.contains(char::is_whitespace);
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_SERVERS, Servers, ServersError};

    #[test]
    fn a_list_keeps_its_order_and_trims() {
        let s: Servers = " a:1, b:2 ,[::1]:11300,".parse().unwrap();
        assert_eq!(s.as_slice(), ["a:1", "b:2", "[::1]:11300"]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.first(), "a:1");
        assert_eq!(s.to_string(), "a:1,b:2,[::1]:11300");
        assert_eq!(Servers::one("127.0.0.1:11300").unwrap().len(), 1);
    }

    #[test]
    fn bad_lists_are_refused_naming_the_entry() {
        assert_eq!("".parse::<Servers>(), Err(ServersError::Empty));
        assert_eq!(" , ".parse::<Servers>(), Err(ServersError::Empty));
        for bad in ["a", "a:", ":11300", "a:0", "a:65536", "a:x", "a b:1"] {
            assert_eq!(
                format!("{bad},b:1").parse::<Servers>(),
                Err(ServersError::NotHostPort(bad.to_owned())),
                "{bad}"
            );
        }
        assert_eq!(
            "a:1,b:2,a:1".parse::<Servers>(),
            Err(ServersError::Duplicate("a:1".to_owned()))
        );
        let many: Vec<String> = (1..=MAX_SERVERS + 1).map(|p| format!("h:{p}")).collect();
        assert_eq!(
            many.join(",").parse::<Servers>(),
            Err(ServersError::TooMany(MAX_SERVERS + 1))
        );
        assert!(
            ServersError::NotHostPort("a".into())
                .to_string()
                .contains("`a`")
        );
    }
}
