//! [`Transport`]: the master's replication connections to one secondary, on plain hyper.
//!
//! Replication requests are the hot path of the master: one per batch per secondary. A general
//! HTTP client (reqwest) parses the URL, checks a pool out and hands the request to a separate
//! connection task for every request, and each hand-over is a wake-up — often on another
//! thread. Here every connection is driven *inside* the future of the request that uses it:
//! a request is one future, woken only by its own socket, and it runs in the replication task
//! that awaits it.
//! The exchange itself is `crate::master::http1`'s (the head and body in one vectored write, the
//! answer read whole), not a general client's.
//!
//! Invariants:
//! * a connection is used by one request at a time (it is taken out of the idle list for the
//!   request and put back only after the whole answer was read), so the window of in-flight
//!   batches is a set of connections;
//! * a request that fails, times out or is dropped takes its connection with it (closed);
//! * a failure on a *reused* connection (the secondary may have closed it while idle) is
//!   retried once on a fresh one: batches are idempotent, so that is always safe;
//! * a connection can also die *silently*: across a network partition, or when either end
//!   comes back on another address, no FIN or RST ever arrives, and a request on it hangs for
//!   its whole timeout. So the idle connections are dropped ([`Transport::forget_idle`])
//!   when a request times out and when a heartbeat to the secondary gets no answer: they
//!   were idle through the same outage. Fresh ones cost a connect (the name resolved afresh).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue};

/// Most idle connections kept per secondary.
const MAX_IDLE: usize = 32;

type Conn = crate::master::http1::Connection;

/// Connections to one secondary; see the module docs.
pub struct Transport {
    host: String,
    port: u16,
    /// `host:port`, the `Host` header.
    authority: HeaderValue,
    /// Why the base URL is unusable, if it is.
    invalid: Option<String>,
    idle: parking_lot::Mutex<Vec<Conn>>,
    dns: FreshDns,
}

/// A request: method and path, extra headers, body.
pub struct Call {
    pub method: hyper::Method,
    pub path: &'static str,
    /// Every header but `Host` and `Content-Length`, built once by the caller: a request
    /// clones the map instead of parsing names and values again.
    pub headers: Arc<HeaderMap>,
    pub body: Bytes,
}

impl Transport {
    /// For a base URL like `http://secondary1:8001`. A URL that does not parse (config
    /// validation rules it out) gives a transport whose every request fails, saying why.
    pub fn new(base_url: &str) -> Transport {
        let parsed = reqwest::Url::parse(base_url)
            .map_err(|e| format!("{base_url}: {e}"))
            .and_then(|url| {
                let raw = url
                    .host_str()
                    .ok_or_else(|| format!("{base_url} has no host"))?
                    .to_string();
                Ok((raw, url.port_or_known_default().unwrap_or(80)))
            });
        let (raw_host, port, mut invalid) = match parsed {
            Ok((h, p)) => (h, p, None),
            Err(e) => (String::new(), 0, Some(e)),
        };
        let authority = HeaderValue::from_str(&format!("{raw_host}:{port}")).unwrap_or_else(|e| {
            invalid.get_or_insert(format!("{base_url}: not a Host header: {e}"));
            HeaderValue::from_static("invalid")
        });
        Transport {
            authority,
            host: raw_host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            invalid,
            idle: parking_lot::Mutex::new(Vec::new()),
            dns: FreshDns::default(),
        }
    }

    /// Sends `call` and reads the whole answer, within `timeout`.
    pub async fn send(
        &self,
        call: &Call,
        timeout: Duration,
    ) -> Result<(hyper::StatusCode, Bytes), PeerError> {
        match tokio::time::timeout(timeout, self.send_inner(call)).await {
            Ok(r) => r,
            Err(_) => {
                self.forget_idle();
                Err(PeerError::Timeout(timeout))
            }
        }
    }

    /// Closes every idle connection: the path to the secondary failed, and connections that
    /// were idle through that may be dead without a sign (see the module docs). Requests in
    /// flight keep theirs.
    pub fn forget_idle(&self) {
        let dropped = std::mem::take(&mut *self.idle.lock());
        drop(dropped);
    }

    async fn send_inner(&self, call: &Call) -> Result<(hyper::StatusCode, Bytes), PeerError> {
        let reused = self.idle.lock().pop();
        // A reused connection may have been closed by the secondary while idle: on failure,
        // a fresh connection gets one more try.
        if let Some(mut conn) = reused
            && let Ok((answer, keep)) = self.round_trip(&mut conn, call).await
        {
            if keep {
                self.put_back(conn);
            }
            return Ok(answer);
        }
        let mut conn = self.connect().await?;
        let (answer, keep) = self
            .round_trip(&mut conn, call)
            .await
            .map_err(PeerError::Unreachable)?;
        if keep {
            self.put_back(conn);
        }
        Ok(answer)
    }

    fn put_back(&self, conn: Conn) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, PeerError> {
        if let Some(why) = &self.invalid {
            return Err(PeerError::Unreachable(why.clone()));
        }
        let addr = match self.host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.port),
            Err(_) => {
                let ip = self
                    .dns
                    .lookup(&self.host)
                    .await
                    .map_err(|e| PeerError::Unreachable(format!("{}: {e}", self.host)))?;
                SocketAddr::new(ip, self.port)
            }
        };
        Conn::open(&[addr])
            .await
            .map_err(|e| PeerError::Unreachable(format!("{addr}: {e}")))
    }

    /// One exchange on `conn`: the answer, and whether the connection may be used again.
    async fn round_trip(
        &self,
        conn: &mut Conn,
        call: &Call,
    ) -> Result<((hyper::StatusCode, Bytes), bool), String> {
        let head = request_head(call, &self.authority);
        let answer = conn.exchange(&[&head, &call.body]).await?;
        let status = hyper::StatusCode::from_u16(answer.status)
            .map_err(|_| format!("bad status code {}", answer.status))?;
        Ok(((status, Bytes::from(conn.body())), !answer.close))
    }
}

/// The request line and headers of `call`.
fn request_head(call: &Call, authority: &HeaderValue) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(call.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(call.path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(authority.as_bytes());
    head.extend_from_slice(b"\r\ncontent-length: ");
    head.extend_from_slice(itoa::Buffer::new().format(call.body.len()).as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in call.headers.iter() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Why a call to a secondary failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PeerError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("answered {status}: {message}")]
    Remote { status: u16, message: String },
    #[error("unreadable answer: {0}")]
    BadAnswer(String),
}

impl PeerError {
    pub(crate) fn from_reqwest(e: reqwest::Error, timeout: Duration) -> Self {
        if e.is_timeout() {
            PeerError::Timeout(timeout)
        } else {
            // The innermost cause says what actually happened (refused, reset, …).
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            PeerError::Unreachable(cause.to_string())
        }
    }
}

/// Name resolution without a cache, through hickory (no libc resolver: works in a static binary
/// in a scratch image, reading the `/etc/resolv.conf` and `/etc/hosts` the container has).
///
/// A secondary that restarts in a container may come back on another address, and Docker's
/// DNS answers with a 600 s TTL: a caching resolver would keep dialling the old address for ten
/// minutes while the node is up. Lookups only happen when a new connection is opened
/// (connections are pooled and kept alive), so not caching costs nothing on the hot path.
#[derive(Clone, Default)]
pub struct FreshDns {
    resolver: std::sync::Arc<std::sync::OnceLock<Result<hickory_resolver::TokioResolver, String>>>,
}

impl FreshDns {
    /// The first address of `host`.
    pub async fn lookup(&self, host: &str) -> Result<std::net::IpAddr, String> {
        let resolver = self
            .resolver
            .get_or_init(FreshDns::build)
            .as_ref()
            .map_err(|e| e.clone())?;
        let lookup = resolver.lookup_ip(host).await.map_err(|e| e.to_string())?;
        lookup
            .iter()
            .next()
            .ok_or_else(|| format!("no address for {host}"))
    }

    fn build() -> Result<hickory_resolver::TokioResolver, String> {
        let mut builder = hickory_resolver::TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?;
        let opts = builder.options_mut();
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
        builder.build().map_err(|e| e.to_string())
    }
}

impl reqwest::dns::Resolve for FreshDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let cell = self.resolver.clone();
        Box::pin(async move {
            let resolver = cell
                .get_or_init(FreshDns::build)
                .as_ref()
                .map_err(|e| e.clone())?;
            let lookup = resolver.lookup_ip(name.as_str()).await?;
            let addrs: Vec<std::net::SocketAddr> = lookup
                .iter()
                .map(|ip| std::net::SocketAddr::new(ip, 0))
                .collect();
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: &'static str) -> Call {
        let mut headers = HeaderMap::new();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        Call {
            method: hyper::Method::POST,
            path: "/echo",
            headers: Arc::new(headers),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[tokio::test]
    async fn sequential_round_trips_reuse_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route("/echo", axum::routing::post(|b: Bytes| async { b }));
        let server = tokio::spawn(axum::serve(listener, app.clone()).into_future());
        let t = Transport::new(&format!("http://{addr}"));
        for body in ["a", "b", "c"] {
            let (status, got) = t
                .send(&call(body), Duration::from_secs(5))
                .await
                .expect("ok");
            assert_eq!((status.as_u16(), &got[..]), (200, body.as_bytes()));
        }
        assert_eq!(
            t.idle.lock().len(),
            1,
            "sequential requests share one connection"
        );

        server.abort();
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_replaced_at_once() {
        // A server that answers one request per connection, then closes it (though the answer
        // says keep-alive): every reused connection is dead by the next request.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepts.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                drop(s);
            }
        });
        let t = Transport::new(&format!("http://{addr}"));
        for _ in 0..3 {
            let (status, got) = t
                .send(&call("x"), Duration::from_secs(5))
                .await
                .expect("ok");
            assert_eq!((status.as_u16(), &got[..]), (200, &b"ok"[..]));
            // Let the close reach the client before the next request.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    /// A server that reads one request per connection and answers each with the next of
    /// `answers`, written in pieces of `piece` bytes; returns its address and its accepts.
    async fn scripted(
        answers: Vec<&'static [u8]>,
        piece: usize,
    ) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepts.clone();
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(answer) = answers.next() else { return };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                for chunk in answer.chunks(piece) {
                    let _ = s.write_all(chunk).await;
                    let _ = s.flush().await;
                    tokio::task::yield_now().await;
                }
                // Closing ends a body delimited by the close.
                drop(s);
            }
        });
        (addr, accepts)
    }

    #[tokio::test]
    async fn answers_framed_every_way_are_read_whole() {
        let answers: Vec<&'static [u8]> = vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n",
            b"HTTP/1.1 409 Conflict\r\nconnection: close\r\n\r\nuntil close",
            b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ];
        let want: [(u16, &[u8]); 5] = [
            (200, b"hello"),
            (201, b"abcde"),
            (409, b"until close"),
            (200, b"ok"),
            (204, b""),
        ];
        // Whole, then in pieces of 1 and 7 bytes.
        for piece in [4096, 1, 7] {
            let (addr, _) = scripted(answers.clone(), piece).await;
            let t = Transport::new(&format!("http://{addr}"));
            for (status, body) in want {
                let (got_status, got) = t
                    .send(&call("x"), Duration::from_secs(5))
                    .await
                    .expect("ok");
                assert_eq!(
                    (got_status.as_u16(), &got[..]),
                    (status, body),
                    "piece {piece}"
                );
                // Each scripted connection answers once; none is kept to be reused.
                t.forget_idle();
            }
        }
    }

    #[tokio::test]
    async fn bad_answers_are_errors_and_their_connection_is_not_kept() {
        let answers: Vec<&'static [u8]> = vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"NOT HTTP AT ALL\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ];
        let n = answers.len();
        // Each failure is tried once more on a fresh connection: two answers per request.
        let doubled: Vec<&'static [u8]> = answers.iter().flat_map(|a| [*a, *a]).collect();
        let (addr, accepts) = scripted(doubled, 4096).await;
        let t = Transport::new(&format!("http://{addr}"));
        for i in 0..n {
            let r = t.send(&call("x"), Duration::from_secs(5)).await;
            assert!(
                matches!(r, Err(PeerError::Unreachable(_))),
                "answer {i}: {r:?}"
            );
            assert!(t.idle.lock().is_empty());
        }
        assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), n);
    }

    #[tokio::test]
    async fn failures_are_classified() {
        let bad = Transport::new("not a url");
        assert!(matches!(
            bad.send(&call("x"), Duration::from_secs(1)).await,
            Err(PeerError::Unreachable(_))
        ));
        // A port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let closed = Transport::new(&format!("http://{addr}"));
        assert!(matches!(
            closed.send(&call("x"), Duration::from_secs(1)).await,
            Err(PeerError::Unreachable(_))
        ));
    }

    #[tokio::test]
    async fn fresh_dns_resolves_names_from_the_hosts_file() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().expect("a valid name");
        let addrs: Vec<std::net::SocketAddr> = FreshDns::default()
            .resolve(name)
            .await
            .expect("resolves")
            .collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
