//! The beanstalkd wire protocol without I/O: [`Command::encode`] writes a
//! request, [`parse`] takes one reply off the front of a read buffer. Both are
//! pure, so the codec is tested from byte literals.
//!
//! Why this file is over 600 lines: the code is ~415 lines; the rest is the
//! codec's unit tests (one per command and reply), kept beside what they pin.

use std::fmt::{self, Write as _};

use bytes::{Buf, Bytes, BytesMut};

use super::error::Error;
pub use super::server_error::ServerError;

/// Longest tube name beanstalkd accepts.
pub const MAX_TUBE_NAME: usize = 200;

/// Largest body a reply may announce. beanstalkd's `-z` cannot go higher, so
/// anything bigger is a corrupt stream, not a reason to buffer a gigabyte.
pub const MAX_BODY: usize = 1 << 30;

/// Longest reply line. The longest legal one is `USING` and a 200-byte name.
const MAX_LINE: usize = 512;

/// One request. `encode` does not validate tube names: callers check them
/// with [`validate_tube`] first (the [`Client`](super::Client) does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `use <tube>`
    Use(&'a str),
    /// `put <pri> <delay> <ttr> <bytes>` and the body
    Put {
        /// 0 is most urgent.
        priority: u32,
        /// Seconds before the job becomes ready.
        delay: u32,
        /// Seconds a worker may hold the job.
        ttr: u32,
        /// The job body, sent verbatim.
        body: &'a [u8],
    },
    /// `reserve`
    Reserve,
    /// `reserve-with-timeout <seconds>`
    ReserveWithTimeout(u32),
    /// `reserve-job <id>`
    ReserveJob(u64),
    /// `delete <id>`
    Delete(u64),
    /// `release <id> <pri> <delay>`
    Release {
        /// The reserved job.
        id: u64,
        /// Its new priority.
        priority: u32,
        /// Seconds before it becomes ready again.
        delay: u32,
    },
    /// `bury <id> <pri>`
    Bury {
        /// The reserved job.
        id: u64,
        /// Its new priority.
        priority: u32,
    },
    /// `touch <id>`
    Touch(u64),
    /// `watch <tube>`
    Watch(&'a str),
    /// `ignore <tube>`
    Ignore(&'a str),
    /// `peek <id>`
    Peek(u64),
    /// `peek-ready`
    PeekReady,
    /// `peek-delayed`
    PeekDelayed,
    /// `peek-buried`
    PeekBuried,
    /// `kick <bound>`
    Kick(u32),
    /// `kick-job <id>`
    KickJob(u64),
    /// `stats-job <id>`
    StatsJob(u64),
    /// `stats-tube <tube>`
    StatsTube(&'a str),
    /// `stats`
    Stats,
    /// `list-tubes`
    ListTubes,
    /// `list-tube-used`
    ListTubeUsed,
    /// `list-tubes-watched`
    ListTubesWatched,
    /// `pause-tube <tube> <delay>`
    PauseTube {
        /// The tube to pause.
        tube: &'a str,
        /// Seconds during which no job is reserved from it.
        delay: u32,
    },
}

impl Command<'_> {
    /// Appends the request, line and (for `put`) body, to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        match *self {
            Command::Use(tube) => line(dst, format_args!("use {tube}")),
            Command::Put {
                priority,
                delay,
                ttr,
                body,
            } => {
                let len = body.len();
                dst.reserve(len + 40);
                line(dst, format_args!("put {priority} {delay} {ttr} {len}"));
                dst.extend_from_slice(body);
                dst.extend_from_slice(b"\r\n");
            }
            Command::Reserve => line(dst, format_args!("reserve")),
            Command::ReserveWithTimeout(secs) => {
                line(dst, format_args!("reserve-with-timeout {secs}"));
            }
            Command::ReserveJob(id) => line(dst, format_args!("reserve-job {id}")),
            Command::Delete(id) => line(dst, format_args!("delete {id}")),
            Command::Release {
                id,
                priority,
                delay,
            } => line(dst, format_args!("release {id} {priority} {delay}")),
            Command::Bury { id, priority } => line(dst, format_args!("bury {id} {priority}")),
            Command::Touch(id) => line(dst, format_args!("touch {id}")),
            Command::Watch(tube) => line(dst, format_args!("watch {tube}")),
            Command::Ignore(tube) => line(dst, format_args!("ignore {tube}")),
            Command::Peek(id) => line(dst, format_args!("peek {id}")),
            Command::PeekReady => line(dst, format_args!("peek-ready")),
            Command::PeekDelayed => line(dst, format_args!("peek-delayed")),
            Command::PeekBuried => line(dst, format_args!("peek-buried")),
            Command::Kick(bound) => line(dst, format_args!("kick {bound}")),
            Command::KickJob(id) => line(dst, format_args!("kick-job {id}")),
            Command::StatsJob(id) => line(dst, format_args!("stats-job {id}")),
            Command::StatsTube(tube) => line(dst, format_args!("stats-tube {tube}")),
            Command::Stats => line(dst, format_args!("stats")),
            Command::ListTubes => line(dst, format_args!("list-tubes")),
            Command::ListTubeUsed => line(dst, format_args!("list-tube-used")),
            Command::ListTubesWatched => line(dst, format_args!("list-tubes-watched")),
            Command::PauseTube { tube, delay } => {
                line(dst, format_args!("pause-tube {tube} {delay}"));
            }
        }
    }

    /// The command's name on the wire, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Use(_) => "use",
            Command::Put { .. } => "put",
            Command::Reserve => "reserve",
            Command::ReserveWithTimeout(_) => "reserve-with-timeout",
            Command::ReserveJob(_) => "reserve-job",
            Command::Delete(_) => "delete",
            Command::Release { .. } => "release",
            Command::Bury { .. } => "bury",
            Command::Touch(_) => "touch",
            Command::Watch(_) => "watch",
            Command::Ignore(_) => "ignore",
            Command::Peek(_) => "peek",
            Command::PeekReady => "peek-ready",
            Command::PeekDelayed => "peek-delayed",
            Command::PeekBuried => "peek-buried",
            Command::Kick(_) => "kick",
            Command::KickJob(_) => "kick-job",
            Command::StatsJob(_) => "stats-job",
            Command::StatsTube(_) => "stats-tube",
            Command::Stats => "stats",
            Command::ListTubes => "list-tubes",
            Command::ListTubeUsed => "list-tube-used",
            Command::ListTubesWatched => "list-tubes-watched",
            Command::PauseTube { .. } => "pause-tube",
        }
    }
}

fn line(dst: &mut BytesMut, args: fmt::Arguments<'_>) {
    // Formatting into a BytesMut cannot fail: it grows as needed.
    let _ = dst.write_fmt(args);
    dst.extend_from_slice(b"\r\n");
}

/// Checks a tube name the way beanstalkd does, so a bad name fails here with
/// a clear message instead of as a bare `BAD_FORMAT` from the server.
///
/// # Errors
///
/// [`Error::InvalidTube`] unless the name is 1 to 200 bytes of ASCII letters,
/// digits and `-+/;.$_()` and does not start with `-`.
pub fn validate_tube(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= MAX_TUBE_NAME
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-+/;.$_()".contains(&b));
    if valid {
        Ok(())
    } else {
        // Keep the message one readable line even for a megabyte of garbage.
        let shown: String = name.chars().take(MAX_TUBE_NAME + 1).collect();
        Err(Error::InvalidTube(shown))
    }
}

/// One server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `INSERTED <id>`
    Inserted(u64),
    /// `BURIED <id>` after `put`, plain `BURIED` after `release` and `bury`.
    Buried(Option<u64>),
    /// `USING <tube>`
    Using(String),
    /// `RESERVED <id> <bytes>` and the body
    Reserved {
        /// The job's id.
        id: u64,
        /// The job's body.
        body: Bytes,
    },
    /// `DELETED`
    Deleted,
    /// `RELEASED`
    Released,
    /// `TOUCHED`
    Touched,
    /// `WATCHING <count>`
    Watching(u32),
    /// `FOUND <id> <bytes>` and the body
    Found {
        /// The job's id.
        id: u64,
        /// The job's body.
        body: Bytes,
    },
    /// `KICKED <count>` after `kick`, plain `KICKED` after `kick-job`.
    Kicked(Option<u64>),
    /// `OK <bytes>` and a YAML body (stats and lists).
    Ok(Bytes),
    /// `PAUSED`
    Paused,
    /// One of the error replies.
    ServerError(ServerError),
}

impl Response {
    /// The reply's keyword, for error messages that must not dump a body.
    pub fn name(&self) -> &'static str {
        match self {
            Response::Inserted(_) => "INSERTED",
            Response::Buried(_) => "BURIED",
            Response::Using(_) => "USING",
            Response::Reserved { .. } => "RESERVED",
            Response::Deleted => "DELETED",
            Response::Released => "RELEASED",
            Response::Touched => "TOUCHED",
            Response::Watching(_) => "WATCHING",
            Response::Found { .. } => "FOUND",
            Response::Kicked(_) => "KICKED",
            Response::Ok(_) => "OK",
            Response::Paused => "PAUSED",
            Response::ServerError(e) => e.name(),
        }
    }
}

/// What a reply line says, before its body (if any) has arrived.
enum Head {
    Complete(Response),
    Body { kind: BodyKind, len: usize },
}

enum BodyKind {
    Reserved(u64),
    Found(u64),
    Ok,
}

/// Takes one complete reply off the front of `buf`.
///
/// Returns `Ok(None)` and leaves `buf` untouched while the reply is still
/// incomplete; on success consumes exactly that reply's bytes.
///
/// # Errors
///
/// [`Error::Protocol`] when the bytes cannot be a beanstalkd reply (unknown
/// keyword, bad number, missing CRLF after a body, a line or body over the
/// limits). The stream is then out of step and the connection must go.
pub fn parse(buf: &mut BytesMut) -> Result<Option<Response>, Error> {
    let window = &buf[..buf.len().min(MAX_LINE + 2)];
    let Some(line_len) = window.windows(2).position(|w| w == b"\r\n") else {
        if window.len() == MAX_LINE + 2 {
            return Err(protocol("reply line too long", window));
        }
        return Ok(None);
    };
    match parse_head(&buf[..line_len])? {
        Head::Complete(response) => {
            buf.advance(line_len + 2);
            Ok(Some(response))
        }
        Head::Body { kind, len } => {
            let body_start = line_len + 2;
            let body_end = body_start + len;
            if buf.len() < body_end + 2 {
                return Ok(None);
            }
            if &buf[body_end..body_end + 2] != b"\r\n" {
                return Err(protocol("body not followed by CRLF", &buf[..line_len]));
            }
            buf.advance(body_start);
            let body = buf.split_to(len).freeze();
            buf.advance(2);
            Ok(Some(match kind {
                BodyKind::Reserved(id) => Response::Reserved { id, body },
                BodyKind::Found(id) => Response::Found { id, body },
                BodyKind::Ok => Response::Ok(body),
            }))
        }
    }
}

fn parse_head(line: &[u8]) -> Result<Head, Error> {
    let text = std::str::from_utf8(line).map_err(|_| protocol("reply is not ASCII", line))?;
    let mut words = text.split(' ');
    let keyword = words.next().unwrap_or_default();
    let bad = |what: &str| protocol(what, line);
    let mut arg = || words.next().ok_or_else(|| bad("missing argument"));
    let head = match keyword {
        "INSERTED" => Head::Complete(Response::Inserted(number(arg()?, line)?)),
        "USING" => {
            let tube = arg()?;
            validate_tube(tube).map_err(|_| bad("invalid tube name"))?;
            Head::Complete(Response::Using(tube.to_owned()))
        }
        "WATCHING" => Head::Complete(Response::Watching(number(arg()?, line)?)),
        "RESERVED" | "FOUND" => {
            let id = number(arg()?, line)?;
            let len = body_len(arg()?, line)?;
            let kind = if keyword == "RESERVED" {
                BodyKind::Reserved(id)
            } else {
                BodyKind::Found(id)
            };
            Head::Body { kind, len }
        }
        "OK" => Head::Body {
            kind: BodyKind::Ok,
            len: body_len(arg()?, line)?,
        },
        // Optional argument: `BURIED <id>` answers put, `BURIED` the rest;
        // `KICKED <n>` answers kick, `KICKED` kick-job.
        "BURIED" | "KICKED" => {
            let n = match words.next() {
                Some(word) => Some(number(word, line)?),
                None => None,
            };
            Head::Complete(if keyword == "BURIED" {
                Response::Buried(n)
            } else {
                Response::Kicked(n)
            })
        }
        _ => Head::Complete(match keyword {
            "DELETED" => Response::Deleted,
            "RELEASED" => Response::Released,
            "TOUCHED" => Response::Touched,
            "PAUSED" => Response::Paused,
            other => match ServerError::from_name(other) {
                Some(e) => Response::ServerError(e),
                None => return Err(bad("unknown reply")),
            },
        }),
    };
    if words.next().is_some() {
        return Err(bad("unexpected argument"));
    }
    Ok(head)
}

/// A decimal integer as beanstalkd writes them: digits only, no sign.
fn number<T: TryFrom<u64>>(word: &str, line: &[u8]) -> Result<T, Error> {
    let bad = || protocol("bad number", line);
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = word.bytes().try_fold(0u64, |n, b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    });
    n.and_then(|n| T::try_from(n).ok()).ok_or_else(bad)
}

fn body_len(word: &str, line: &[u8]) -> Result<usize, Error> {
    let len: u64 = number(word, line)?;
    match usize::try_from(len) {
        Ok(len) if len <= MAX_BODY => Ok(len),
        _ => Err(protocol("body length over 1 GiB", line)),
    }
}

fn protocol(what: &str, line: &[u8]) -> Error {
    const SHOWN: usize = 80;
    let shown = &line[..line.len().min(SHOWN)];
    let more = if line.len() > SHOWN { "…" } else { "" };
    Error::Protocol(format!("{what}: \"{}{more}\"", shown.escape_ascii()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<Vec<Response>, Error> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(r) = parse(&mut buf)? {
            out.push(r);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    fn one(bytes: &[u8]) -> Response {
        let mut out = parse_all(bytes).unwrap();
        assert_eq!(out.len(), 1, "{bytes:?}");
        out.remove(0)
    }

    fn err(bytes: &[u8]) -> String {
        let mut buf = BytesMut::from(bytes);
        match parse(&mut buf) {
            Err(Error::Protocol(m)) => m,
            other => panic!(
                "{:?}: expected a protocol error, got {other:?}",
                bytes.escape_ascii()
            ),
        }
    }

    /// Every reply kind beanstalkd 1.12 sends, with what it must parse to.
    fn samples() -> Vec<(&'static [u8], Response)> {
        use Response as R;
        use ServerError as S;
        vec![
            (b"INSERTED 42\r\n", R::Inserted(42)),
            (b"BURIED 7\r\n", R::Buried(Some(7))),
            (b"BURIED\r\n", R::Buried(None)),
            (b"USING foo\r\n", R::Using("foo".into())),
            (
                b"RESERVED 3 5\r\nhello\r\n",
                R::Reserved {
                    id: 3,
                    body: Bytes::from_static(b"hello"),
                },
            ),
            (
                b"RESERVED 4 0\r\n\r\n",
                R::Reserved {
                    id: 4,
                    body: Bytes::new(),
                },
            ),
            (
                // A body may hold CRLF and anything else.
                b"FOUND 18446744073709551615 6\r\na\r\n\0\xffz\r\n",
                R::Found {
                    id: u64::MAX,
                    body: Bytes::from_static(b"a\r\n\0\xffz"),
                },
            ),
            (b"DELETED\r\n", R::Deleted),
            (b"RELEASED\r\n", R::Released),
            (b"TOUCHED\r\n", R::Touched),
            (b"WATCHING 2\r\n", R::Watching(2)),
            (b"KICKED 10\r\n", R::Kicked(Some(10))),
            (b"KICKED\r\n", R::Kicked(None)),
            (
                b"OK 14\r\n---\n- default\n\r\n",
                R::Ok(Bytes::from_static(b"---\n- default\n")),
            ),
            (b"PAUSED\r\n", R::Paused),
            (b"OUT_OF_MEMORY\r\n", R::ServerError(S::OutOfMemory)),
            (b"INTERNAL_ERROR\r\n", R::ServerError(S::InternalError)),
            (b"BAD_FORMAT\r\n", R::ServerError(S::BadFormat)),
            (b"UNKNOWN_COMMAND\r\n", R::ServerError(S::UnknownCommand)),
            (b"EXPECTED_CRLF\r\n", R::ServerError(S::ExpectedCrlf)),
            (b"JOB_TOO_BIG\r\n", R::ServerError(S::JobTooBig)),
            (b"DRAINING\r\n", R::ServerError(S::Draining)),
            (b"DEADLINE_SOON\r\n", R::ServerError(S::DeadlineSoon)),
            (b"TIMED_OUT\r\n", R::ServerError(S::TimedOut)),
            (b"NOT_FOUND\r\n", R::ServerError(S::NotFound)),
            (b"NOT_IGNORED\r\n", R::ServerError(S::NotIgnored)),
        ]
    }

    #[test]
    fn parses_every_reply_kind() {
        for (bytes, expected) in samples() {
            assert_eq!(one(bytes), expected, "{}", bytes.escape_ascii());
        }
    }

    #[test]
    fn server_errors_map_to_client_errors() {
        let e: Error = ServerError::TimedOut.into();
        assert!(e.is_timeout());
        let e: Error = ServerError::DeadlineSoon.into();
        assert!(e.is_deadline_soon());
        let e: Error = ServerError::NotFound.into();
        assert!(e.is_not_found());
        let e: Error = ServerError::Draining.into();
        assert!(e.is_server_busy() && !e.is_connection_error());
    }

    #[test]
    fn partial_frames_wait_at_every_split_point() {
        for (bytes, expected) in samples() {
            for split in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..split]);
                assert_eq!(
                    parse(&mut buf).unwrap(),
                    None,
                    "{} split at {split}",
                    bytes.escape_ascii()
                );
                // A partial frame must be left untouched for the next read.
                assert_eq!(&buf[..], &bytes[..split]);
                buf.extend_from_slice(&bytes[split..]);
                assert_eq!(parse(&mut buf).unwrap(), Some(expected.clone()));
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn takes_one_frame_at_a_time() {
        let mut buf = BytesMut::from(&b"DELETED\r\nRESERVED 9 2\r\nhi\r\nTIMED_OUT\r\nINSER"[..]);
        assert_eq!(parse(&mut buf).unwrap(), Some(Response::Deleted));
        assert_eq!(
            parse(&mut buf).unwrap(),
            Some(Response::Reserved {
                id: 9,
                body: Bytes::from_static(b"hi")
            })
        );
        assert_eq!(
            parse(&mut buf).unwrap(),
            Some(Response::ServerError(ServerError::TimedOut))
        );
        assert_eq!(parse(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], b"INSER");
    }

    #[test]
    fn all_samples_back_to_back_parse_in_order() {
        let samples = samples();
        let stream: Vec<u8> = samples
            .iter()
            .flat_map(|(b, _)| b.iter().copied())
            .collect();
        let expected: Vec<Response> = samples.into_iter().map(|(_, r)| r).collect();
        assert_eq!(parse_all(&stream).unwrap(), expected);
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        assert!(err(b"HELLO\r\n").contains("unknown reply"));
        assert!(err(b"inserted 1\r\n").contains("unknown reply"));
        assert!(err(b"\r\n").contains("unknown reply"));
        assert!(err(b"INSERTED\r\n").contains("missing argument"));
        assert!(err(b"INSERTED x\r\n").contains("bad number"));
        assert!(err(b"INSERTED -1\r\n").contains("bad number"));
        assert!(err(b"INSERTED +1\r\n").contains("bad number"));
        assert!(err(b"INSERTED 1 2\r\n").contains("unexpected argument"));
        assert!(err(b"INSERTED  1\r\n").contains("bad number"));
        assert!(err(b"INSERTED 18446744073709551616\r\n").contains("bad number"));
        assert!(err(b"WATCHING 4294967296\r\n").contains("bad number"));
        assert!(err(b"DELETED extra\r\n").contains("unexpected argument"));
        assert!(err(b"USING bad name\r\n").contains("unexpected argument"));
        assert!(err(b"USING -x\r\n").contains("invalid tube name"));
        assert!(err(b"RESERVED 1\r\n").contains("missing argument"));
        assert!(err(b"RESERVED 1 3\r\nabcX\r\n").contains("not followed by CRLF"));
        assert!(err(b"OK 3\r\nabc\n\n").contains("not followed by CRLF"));
        assert!(err(b"NOT_\xffFOUND\r\n").contains("not ASCII"));
    }

    #[test]
    fn huge_body_length_is_refused_without_allocating() {
        let m = err(b"RESERVED 1 1073741825\r\n");
        assert!(m.contains("over 1 GiB"), "{m}");
        assert!(err(b"OK 99999999999999999999\r\n").contains("bad number"));
        // At the limit it is merely incomplete.
        let mut buf = BytesMut::from(&b"OK 1073741824\r\n"[..]);
        assert_eq!(parse(&mut buf).unwrap(), None);
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn endless_line_is_refused() {
        let mut buf = BytesMut::from(&[b'A'; MAX_LINE + 1][..]);
        assert_eq!(parse(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"A");
        assert!(err(&buf).contains("too long"));
        // A legal line of the maximum length still parses.
        let tube = "t".repeat(MAX_TUBE_NAME);
        let line = format!("USING {tube}\r\n");
        assert_eq!(one(line.as_bytes()), Response::Using(tube));
    }

    /// xorshift64*: enough randomness for fuzzing, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_and_mutated_input_never_panics_and_terminates() {
        const ALPHABET: &[u8] = b"\r\n 0123456789ABCDEFGIKLMNOPRSTUVW_-\xff";
        let samples = samples();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut parsed, mut errors) = (0u32, 0u32);
        for round in 0..100_000 {
            let mut input: Vec<u8> = if round % 2 == 0 {
                let len = rng.below(64);
                (0..len)
                    .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                    .collect()
            } else {
                let mut v = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    v.extend_from_slice(samples[rng.below(samples.len())].0);
                }
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(v.len() + 1);
                    match rng.below(4) {
                        0 if at < v.len() => v[at] = ALPHABET[rng.below(ALPHABET.len())],
                        1 if at < v.len() => {
                            v.remove(at);
                        }
                        2 => v.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                        _ => v.truncate(at),
                    }
                }
                v
            };
            if round % 1000 == 0 {
                input.extend_from_slice(b"OK 1073741824\r\n");
            }
            let mut buf = BytesMut::from(&input[..]);
            // Each successful parse consumes at least one byte, so the loop
            // ends within input.len() + 1 steps.
            for _ in 0..=input.len() {
                let before = buf.len();
                match parse(&mut buf) {
                    Ok(Some(_)) => {
                        assert!(buf.len() < before);
                        parsed += 1;
                    }
                    Ok(None) => {
                        assert_eq!(buf.len(), before);
                        break;
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
        }
        // The generator must exercise both paths to mean anything.
        assert!(parsed > 10_000 && errors > 10_000, "{parsed} {errors}");
    }

    fn wire(cmd: Command<'_>) -> String {
        let mut dst = BytesMut::new();
        cmd.encode(&mut dst);
        String::from_utf8(dst.to_vec()).unwrap()
    }

    #[test]
    fn encodes_every_command() {
        use Command as C;
        let cases = [
            (C::Use("jobs"), "use jobs\r\n"),
            (
                C::Put {
                    priority: 1024,
                    delay: 5,
                    ttr: 60,
                    body: b"a\r\nb",
                },
                "put 1024 5 60 4\r\na\r\nb\r\n",
            ),
            (
                C::Put {
                    priority: u32::MAX,
                    delay: 0,
                    ttr: 0,
                    body: b"",
                },
                "put 4294967295 0 0 0\r\n\r\n",
            ),
            (C::Reserve, "reserve\r\n"),
            (C::ReserveWithTimeout(0), "reserve-with-timeout 0\r\n"),
            (C::ReserveJob(12), "reserve-job 12\r\n"),
            (C::Delete(u64::MAX), "delete 18446744073709551615\r\n"),
            (
                C::Release {
                    id: 3,
                    priority: 10,
                    delay: 20,
                },
                "release 3 10 20\r\n",
            ),
            (C::Bury { id: 4, priority: 5 }, "bury 4 5\r\n"),
            (C::Touch(6), "touch 6\r\n"),
            (C::Watch("a-b"), "watch a-b\r\n"),
            (C::Ignore("default"), "ignore default\r\n"),
            (C::Peek(7), "peek 7\r\n"),
            (C::PeekReady, "peek-ready\r\n"),
            (C::PeekDelayed, "peek-delayed\r\n"),
            (C::PeekBuried, "peek-buried\r\n"),
            (C::Kick(100), "kick 100\r\n"),
            (C::KickJob(8), "kick-job 8\r\n"),
            (C::StatsJob(9), "stats-job 9\r\n"),
            (C::StatsTube("t"), "stats-tube t\r\n"),
            (C::Stats, "stats\r\n"),
            (C::ListTubes, "list-tubes\r\n"),
            (C::ListTubeUsed, "list-tube-used\r\n"),
            (C::ListTubesWatched, "list-tubes-watched\r\n"),
            (
                C::PauseTube {
                    tube: "t",
                    delay: 30,
                },
                "pause-tube t 30\r\n",
            ),
        ];
        for (cmd, expected) in cases {
            assert_eq!(wire(cmd), expected, "{}", cmd.name());
            assert!(expected.starts_with(cmd.name()));
        }
    }

    #[test]
    fn encodes_pipelined_commands_back_to_back() {
        let mut dst = BytesMut::new();
        Command::Delete(1).encode(&mut dst);
        Command::ReserveWithTimeout(5).encode(&mut dst);
        assert_eq!(&dst[..], b"delete 1\r\nreserve-with-timeout 5\r\n");
    }

    #[test]
    fn validates_tube_names_like_beanstalkd() {
        for ok in ["default", "a", "A-z0_9+/;.$()", &"x".repeat(200)] {
            assert!(validate_tube(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a b", "a\r\nput", "é", "a*", &"x".repeat(201)] {
            assert!(
                matches!(validate_tube(bad), Err(Error::InvalidTube(_))),
                "{bad:?}"
            );
        }
    }
}
