//! [`Transport`]: the master's replication connections to one secondary, on plain hyper.
//!
//! Replication requests are the hot path of the master: one per batch per secondary. A general
//! HTTP client (reqwest) parses the URL, checks a pool out and hands the request to a separate
//! connection task for every request, and each hand-over is a wake-up — often on another
//! thread. Here every connection is driven *inside* the future of the request that uses it
//! (hyper's low-level `http1` API): a request is one future, woken only by its own socket, and
//! it runs in the replication task that awaits it.
//!
//! Invariants:
//! * a connection is used by one request at a time (it is taken out of the idle list for the
//!   request and put back only after the whole answer was read), so the window of in-flight
//!   batches is a set of connections;
//! * a request that fails, times out or is dropped takes its connection with it (closed);
//! * a failure on a *reused* connection (the secondary may have closed it while idle) is
//!   retried once on a fresh one: batches are idempotent, so that is always safe.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::peer::{FreshDns, PeerError};

/// Most idle connections kept per secondary.
const MAX_IDLE: usize = 32;

struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: http1::Connection<TokioIo<TcpStream>, Full<Bytes>>,
}

/// Connections to one secondary; see the module docs.
pub struct Transport {
    host: String,
    port: u16,
    /// `host:port`, the `Host` header.
    authority: String,
    idle: parking_lot::Mutex<Vec<Conn>>,
    dns: FreshDns,
}

/// A request: method and path, extra headers, body.
pub struct Call<'a> {
    pub method: hyper::Method,
    pub path: &'a str,
    pub headers: &'a [(&'static str, String)],
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Transport {
    /// For a base URL like `http://secondary1:8001`.
    pub fn new(base_url: &str) -> Result<Transport, String> {
        let url = reqwest::Url::parse(base_url).map_err(|e| format!("{base_url}: {e}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("{base_url} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        Ok(Transport {
            authority: format!("{}:{port}", url.host_str().unwrap_or(&host)),
            host,
            port,
            idle: parking_lot::Mutex::new(Vec::new()),
            dns: FreshDns::default(),
        })
    }

    /// Sends `call` and reads the whole answer, within `timeout`.
    pub async fn send(
        &self,
        call: &Call<'_>,
        timeout: Duration,
    ) -> Result<(hyper::StatusCode, Bytes), PeerError> {
        match tokio::time::timeout(timeout, self.send_inner(call)).await {
            Ok(r) => r,
            Err(_) => Err(PeerError::Timeout(timeout)),
        }
    }

    async fn send_inner(&self, call: &Call<'_>) -> Result<(hyper::StatusCode, Bytes), PeerError> {
        let reused = self.idle.lock().pop();
        // A reused connection may have been closed by the secondary while idle: on failure,
        // a fresh connection gets one more try.
        if let Some(mut conn) = reused
            && let Ok(answer) = self.round_trip(&mut conn, call).await
        {
            self.put_back(conn);
            return Ok(answer);
        }
        let mut conn = self.connect().await?;
        let answer = self
            .round_trip(&mut conn, call)
            .await
            .map_err(PeerError::Unreachable)?;
        self.put_back(conn);
        Ok(answer)
    }

    fn put_back(&self, conn: Conn) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, PeerError> {
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
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| PeerError::Unreachable(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, driver) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        Ok(Conn { sender, driver })
    }

    /// One request on `conn`, driving the connection while waiting.
    async fn round_trip(
        &self,
        conn: &mut Conn,
        call: &Call<'_>,
    ) -> Result<(hyper::StatusCode, Bytes), String> {
        let mut req = hyper::Request::builder()
            .method(call.method.clone())
            .uri(call.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, call.content_type);
        for (name, value) in call.headers {
            req = req.header(*name, value);
        }
        // Only a header value with bytes HTTP forbids fails here (config validation keeps
        // tokens and URLs printable).
        let req = req
            .body(Full::new(call.body.clone()))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let Conn { sender, driver } = conn;
        let exchange = async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        tokio::pin!(exchange);
        let cause = |e: &hyper::Error| {
            let mut cause: &dyn std::error::Error = e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            cause.to_string()
        };
        tokio::select! {
            r = &mut exchange => r.map_err(|e| cause(&e)),
            // The connection ended before the answer (reset, closed by the secondary). The
            // exchange would wait for a reply that can no longer come: answer now.
            r = driver => Err(match r {
                Err(e) => cause(&e),
                Ok(()) => "the connection was closed before the answer".to_string(),
            }),
        }
    }
}
