//! [`Transport`]: the master's replication connections to one secondary, on plain hyper.
//!
//! Replication requests are the hot path of the master: one per batch per secondary. A general
//! HTTP client (reqwest) parses the URL, checks a pool out and hands the request to a separate
//! connection task for every request, and each hand-over is a wake-up — often on another
//! thread. Here every connection is driven *inside* the future of the request that uses it:
//! a request is one future, woken only by its own socket, and it runs in the replication task
//! that awaits it.
//!
//! The HTTP/1.1 exchange itself is written here, not by hyper's client: these requests are
//! always the same shape (one request with a known length, to our own server), so a request
//! is its head and body in one vectored write, and the answer is parsed with `httparse` and
//! read by its `content-length` (or chunked encoding, or until close). hyper's client
//! dispatcher cost ~17 k instructions per request on the master (callgrind, w=3, one client),
//! about as much as the master spent serving the append itself.
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

use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{HeaderMap, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::peer::{FreshDns, PeerError};

/// Most idle connections kept per secondary.
const MAX_IDLE: usize = 32;

/// Largest answer head (status line and headers) read.
const MAX_HEAD: usize = 16 * 1024;
/// Largest answer body read: acks and error messages are small.
const MAX_BODY: usize = 1 << 20;

/// One keep-alive connection, and what was read of the next answer.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
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
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| PeerError::Unreachable(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
        })
    }

    /// One exchange on `conn`: the answer, and whether the connection may be used again.
    async fn round_trip(
        &self,
        conn: &mut Conn,
        call: &Call,
    ) -> Result<((hyper::StatusCode, Bytes), bool), String> {
        let head = request_head(call, &self.authority);
        // Head and body in one system call (one segment, usually).
        let mut slices = [IoSlice::new(&head), IoSlice::new(&call.body)];
        let mut left: &mut [IoSlice<'_>] = &mut slices;
        while !left.is_empty() {
            match conn.stream.write_vectored(left).await {
                Ok(0) => return Err("the connection closed while sending the request".into()),
                Ok(n) => IoSlice::advance_slices(&mut left, n),
                Err(e) => return Err(format!("sending the request: {e}")),
            }
        }
        read_answer(conn).await
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

/// Reads more of the connection into its buffer; the connection closing is an error.
async fn fill(conn: &mut Conn) -> Result<(), String> {
    match conn.stream.read_buf(&mut conn.buf).await {
        Ok(0) => Err("the connection was closed before the answer".to_string()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("reading the answer: {e}")),
    }
}

/// How an answer's body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// Reads one answer from `conn`: its status and body, and whether the connection stays usable.
async fn read_answer(conn: &mut Conn) -> Result<((hyper::StatusCode, Bytes), bool), String> {
    let (status, framing, mut keep) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut answer = httparse::Response::new(&mut headers);
        match answer.parse(&conn.buf) {
            Ok(httparse::Status::Complete(n)) => {
                let code = answer.code.unwrap_or(0);
                let status = hyper::StatusCode::from_u16(code)
                    .map_err(|_| format!("bad status code {code}"))?;
                let mut framing = Framing::Close;
                let mut keep = answer.version == Some(1);
                for h in answer.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let len = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .ok_or("a bad content-length in the answer")?;
                        framing = Framing::Length(len);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        framing = Framing::Chunked;
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                        if v.contains("close") {
                            keep = false;
                        }
                    }
                }
                // No body: 1xx (never asked for), 204, 304.
                if code < 200 || code == 204 || code == 304 {
                    framing = Framing::Length(0);
                }
                conn.buf.advance(n);
                break (status, framing, keep);
            }
            Ok(httparse::Status::Partial) if conn.buf.len() < MAX_HEAD => fill(conn).await?,
            Ok(httparse::Status::Partial) => return Err("the answer's head is too large".into()),
            Err(e) => return Err(format!("an unreadable answer: {e}")),
        }
    };
    let body = match framing {
        Framing::Length(len) if len > MAX_BODY => {
            return Err(format!("an answer of {len} bytes is too large"));
        }
        Framing::Length(len) => {
            while conn.buf.len() < len {
                fill(conn).await?;
            }
            conn.buf.split_to(len).freeze()
        }
        Framing::Chunked => read_chunked(conn).await?,
        Framing::Close => {
            keep = false;
            loop {
                if conn.buf.len() > MAX_BODY {
                    return Err("the answer is too large".into());
                }
                match conn.stream.read_buf(&mut conn.buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(format!("reading the answer: {e}")),
                }
            }
            conn.buf.split().freeze()
        }
    };
    // Anything beyond the answer was never asked for: the connection is out of step.
    keep &= conn.buf.is_empty();
    Ok(((status, body), keep))
}

/// Reads a chunked body (RFC 9112 §7.1), trailers ignored.
async fn read_chunked(conn: &mut Conn) -> Result<Bytes, String> {
    let mut body = BytesMut::new();
    loop {
        let (start, size) = loop {
            match httparse::parse_chunk_size(&conn.buf) {
                Ok(httparse::Status::Complete((start, size))) => break (start, size),
                Ok(httparse::Status::Partial) if conn.buf.len() < MAX_HEAD => fill(conn).await?,
                _ => return Err("a bad chunk in the answer".into()),
            }
        };
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > MAX_BODY.saturating_sub(body.len()) {
            return Err("the answer is too large".into());
        }
        conn.buf.advance(start);
        if size == 0 {
            // Trailers, if any, then the empty line.
            loop {
                match conn.buf.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        conn.buf.advance(2);
                        return Ok(body.freeze());
                    }
                    Some(i) => conn.buf.advance(i + 2),
                    None if conn.buf.len() < MAX_HEAD => fill(conn).await?,
                    None => return Err("the answer's trailers are too large".into()),
                }
            }
        }
        while conn.buf.len() < size + 2 {
            fill(conn).await?;
        }
        body.extend_from_slice(&conn.buf[..size]);
        if &conn.buf[size..size + 2] != b"\r\n" {
            return Err("a bad chunk in the answer".into());
        }
        conn.buf.advance(size + 2);
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
}
