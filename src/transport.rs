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
//!   retried once on a fresh one: batches are idempotent, so that is always safe;
//! * a connection can also die *silently*: across a network partition, or when either end
//!   comes back on another address, no FIN or RST ever arrives, and a request on it hangs for
//!   its whole timeout. So the idle connections are dropped ([`Transport::forget_idle`])
//!   when a request times out and when a heartbeat to the secondary gets no answer: they
//!   were idle through the same outage. Fresh ones cost a connect (the name resolved afresh).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{HOST, HeaderMap, HeaderValue};
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
        call: &Call,
    ) -> Result<(hyper::StatusCode, Bytes), String> {
        let mut req = hyper::Request::new(Full::new(call.body.clone()));
        *req.method_mut() = call.method.clone();
        *req.uri_mut() = hyper::Uri::from_static(call.path);
        *req.headers_mut() = HeaderMap::clone(&call.headers);
        req.headers_mut().insert(HOST, self.authority.clone());
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
            biased;
            r = &mut exchange => r.map_err(|e| cause(&e)),
            r = driver => {
                // The connection ended. It may have delivered the whole answer just before
                // (a server that closes after answering): one more poll collects it. If not,
                // the answer can no longer come: fail now rather than wait for the timeout.
                match futures::FutureExt::now_or_never(&mut exchange) {
                    Some(answer) => answer.map_err(|e| cause(&e)),
                    None => Err(match r {
                        Err(e) => cause(&e),
                        Ok(()) => "the connection was closed before the answer".to_string(),
                    }),
                }
            }
        }
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
}
