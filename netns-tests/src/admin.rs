//! Requests to the daemons' admin API (`/metrics`, `/api/v1/...`) from inside a lab namespace.
//!
//! `pgm-routerd` and `pgm-dlrd` listen on loopback ([`DEFAULT_LISTEN`] unless configured
//! otherwise) in their own namespace, so a request must come from a thread in that namespace:
//! [`get`], [`post`] and [`request_in`] run it on a fresh thread moved into the namespace
//! ([`Ns::run`]); [`request`] uses the calling thread's namespace (for threads already in it,
//! such as one started with [`Ns::spawn_thread`]).
//!
//! A request is one plain HTTP/1.0 exchange, bounded in time: at most 2 s to connect and 5 s
//! each for writing and reading. [`get`] and [`post`] accept only a `200` answer.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::lab::Ns;

/// The default `admin.listen` of both daemons (pgm-config): `127.0.0.1:9470`.
pub const DEFAULT_LISTEN: SocketAddr = loopback(9470);

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long writing the request, and reading the answer, may each take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// `127.0.0.1:<port>`, for a daemon's `admin.listen`.
pub const fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// An HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code (`200`); 0 if the status line has none.
    pub status: u16,
    /// The status line (`HTTP/1.1 200 OK`).
    pub status_line: String,
    /// Everything after the header (invalid UTF-8 replaced).
    pub body: String,
}

impl Response {
    /// The body of a `200` answer; any other status is an error quoting the answer.
    pub fn body_if_ok(self) -> Result<String> {
        if self.status != 200 {
            bail!("{}\n{}", self.status_line, self.body);
        }
        Ok(self.body)
    }

    /// Splits a raw answer into status and body. An answer that ends before the blank line
    /// after its header is cut short: an error.
    fn parse(raw: &[u8]) -> Result<Self> {
        let text = String::from_utf8_lossy(raw);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            bail!("answer cut short before the end of its header: {text:?}");
        };
        let status_line = head.lines().next().unwrap_or("").to_owned();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(Self {
            status,
            status_line,
            body: body.to_owned(),
        })
    }
}

/// Sends `<method> <path>` (no body) to `addr` from the calling thread's network namespace
/// and returns the answer, whatever its status.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Result<Response> {
    let what = || format!("{method} http://{addr}{path}");
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).with_context(what)?;
    s.set_read_timeout(Some(IO_TIMEOUT)).with_context(what)?;
    s.set_write_timeout(Some(IO_TIMEOUT)).with_context(what)?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: lab\r\nContent-Length: 0\r\n\r\n"
    )
    .with_context(what)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).with_context(what)?;
    Response::parse(&raw).with_context(what)
}

/// [`request`] from a thread inside `ns`.
pub fn request_in(ns: &Ns, addr: SocketAddr, method: &str, path: &str) -> Result<Response> {
    ns.run(|| request(addr, method, path))
        .with_context(|| format!("enter {ns}"))?
}

/// `GET <path>` from inside `ns`: the body of a `200` answer.
pub fn get(ns: &Ns, addr: SocketAddr, path: &str) -> Result<String> {
    call(ns, addr, "GET", path)
}

/// `POST <path>` (no body) from inside `ns`: the body of a `200` answer.
pub fn post(ns: &Ns, addr: SocketAddr, path: &str) -> Result<String> {
    call(ns, addr, "POST", path)
}

fn call(ns: &Ns, addr: SocketAddr, method: &str, path: &str) -> Result<String> {
    request_in(ns, addr, method, path)?
        .body_if_ok()
        .with_context(|| format!("{method} http://{addr}{path} in {ns}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\na 1\nb 2\n";
        let r = Response::parse(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.status_line, "HTTP/1.1 200 OK");
        assert_eq!(r.body, "a 1\nb 2\n");
        assert_eq!(r.body_if_ok().unwrap(), "a 1\nb 2\n");

        let r = Response::parse(b"HTTP/1.0 404 Not Found\r\n\r\nno such path").unwrap();
        assert_eq!(r.status, 404);
        let err = r.body_if_ok().unwrap_err().to_string();
        assert!(
            err.contains("404 Not Found") && err.contains("no such path"),
            "{err}"
        );
    }

    #[test]
    fn odd_answers_are_errors_or_not_ok() {
        for raw in [
            &b""[..],
            b"garbage",
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 200 OK\r\n",
        ] {
            assert!(Response::parse(raw).is_err(), "{raw:?}");
        }
        for raw in [
            &b"HTTP/1.1\r\n\r\n"[..],
            b"\r\n\r\n200",
            b"HTTP/1.1 OK 200\r\n\r\n",
        ] {
            let r = Response::parse(raw).unwrap();
            assert_eq!(r.status, 0, "{raw:?}");
            assert!(r.body_if_ok().is_err());
        }
    }
}
