//! The HTTP/1.1 server: the accept loop, one task per connection, and the limits that keep
//! what a client can make a node hold bounded (`[limits]` in the config).
//!
//! - **Connections**: at most `limits.max_connections` are served at once. A connection
//!   beyond that is answered `503` (JSON, `Retry-After`, `Connection: close`) and closed at
//!   once, so a flood costs a file descriptor for a moment, not a task and buffers each.
//! - **Slow headers**: a client has `limits.header_read_timeout_ms` to send a request's line
//!   and headers, counted from the connection's start or the end of its previous answer (so
//!   the same bound closes idle keep-alive connections); then the connection is closed.
//! - **Large headers**: at most `limits.max_header_bytes` (hyper answers 431 above).
//! - **Slow or large bodies**: bounded where bodies are read, `crate::http::read_body`
//!   (`limits.body_read_timeout_ms`, 408; a size limit per endpoint, 413).
//!
//! - **Readers that stop reading**: every connection counts the bytes written to its socket
//!   and can be closed by its handler ([`Connection`], in each routed request's extensions):
//!   the event stream (`crate::http::events`) closes a reader that falls too far behind
//!   rather than buffer for it.
//!
//! Shutdown: once `shutdown` is cancelled the listener is closed (new connections are
//! refused by the kernel), every connection finishes the request in progress and closes,
//! and [`serve`] returns when the last one has. The caller bounds how long it waits.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::LimitSettings;

/// The answer to a connection beyond `limits.max_connections`.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 95\r\n\
\r\n\
{\"error\":\"this node serves too many connections at once (limits.max_connections); retry later\"}";

/// Serves `router` on `listener` until `shutdown` is cancelled and every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: crate::http::Service,
    limits: &LimitSettings,
    shutdown: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    // Answers are small: one flat buffer per answer (head and body copied together) costs
    // less than hyper's queue of buffers for a vectored write — A/B at w=1 with 64 clients,
    // six interleaved runs each: median 98.0 k against 93.0 k appends/s.
    http.writev(false)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout())
        .max_header_size(limits.max_header_bytes);
    let max = limits.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let refused = AtomicU64::new(0);
    let mut last_warned: Option<tokio::time::Instant> = None;

    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e, &shutdown).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(stream);
            let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
            // One line per second at most: a flood must not flood the log too.
            if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_warned = Some(tokio::time::Instant::now());
                tracing::warn!(
                    max_connections = max,
                    refused_total = n,
                    "refused a connection: {max} connections open (limits.max_connections); {n} refused so far"
                );
            }
            continue;
        };
        // Answers are small and latency matters: no Nagle delay behind an unacknowledged
        // segment (a streamed answer is written in several pieces).
        let _ = stream.set_nodelay(true);
        let connection = Connection::default();
        let abort = connection.abort.clone();
        let service = TowerToHyperService::new(router.with_connection(connection.clone()));
        let io = TokioIo::new(Metered {
            stream,
            conn: connection,
        });
        let http = http.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = http.serve_connection(io, service);
            tokio::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                // Closed by a handler (a reader too far behind): dropping the connection
                // closes the socket and frees whatever was buffered for it.
                _ = abort.cancelled() => Ok(()),
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        r = conn.as_mut() => r,
                        _ = abort.cancelled() => Ok(()),
                    }
                }
            };
            if let Err(e) = r {
                // A client that went away, sent garbage, or was too slow: its business.
                tracing::debug!("connection closed: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    // Every slot back: every connection is closed.
    let _ = slots.acquire_many(max as u32).await;
}

/// Send buffer of a connection that asked for a small one ([`Connection::small_send_buffer`]):
/// the kernel doubles it. Large enough for a burst of events, small enough that a reader
/// that stops reading shows as bytes not yet written within seconds.
const SMALL_SEND_BUFFER: usize = 8 * 1024;

/// One connection as its handlers see it (a request extension): how much has been written
/// to its socket, and a way to close it. Cheap to clone.
#[derive(Clone, Default)]
pub struct Connection {
    written: Arc<AtomicU64>,
    abort: CancellationToken,
    shrink: Arc<AtomicBool>,
}

impl Connection {
    /// Bytes written to the socket so far (accepted by the kernel), answers before this one
    /// included.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Closes the connection now, whatever it was writing.
    pub fn close(&self) {
        self.abort.cancel();
    }

    /// Asks for a small kernel send buffer from the next write on, so that what a reader does
    /// not take stays in the process, where [`Connection::written`] sees it (on loopback the
    /// kernel would otherwise buffer megabytes). For long, slow answers only.
    pub fn small_send_buffer(&self) {
        self.shrink.store(true, Ordering::Relaxed);
    }
}

/// A connection's socket, counting the bytes written (see [`Connection`]).
struct Metered {
    stream: TcpStream,
    conn: Connection,
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.conn.shrink.load(Ordering::Relaxed)
            && self.conn.shrink.swap(false, Ordering::Relaxed)
        {
            // Best effort: without it the reader is only found out later.
            let _ = socket2::SockRef::from(&self.stream).set_send_buffer_size(SMALL_SEND_BUFFER);
        }
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.conn.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Answers 503 and closes. Best effort and never waits: whatever the client already sent is
/// read first (closing with unread bytes would reset the connection and lose the answer).
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(BUSY);
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// A failed accept: a connection that died before it was accepted is nothing; anything else
/// (out of file descriptors) is logged and waited out for a second, instead of spinning.
async fn accept_failed(e: std::io::Error, shutdown: &CancellationToken) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!("cannot accept a connection: {e}; retrying in 1 s");
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::BUSY;

    #[test]
    fn the_busy_answer_has_the_right_length() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("limits.max_connections")
        );
    }
}
