//! [`Peer`]: the master's typed HTTP client for one secondary.
//!
//! Every failure is classified ([`PeerError`]): no answer in time, no connection, or an answer
//! that is not a success. None of them is ever taken as an acknowledgement; the replication
//! task decides the retry from the class.

use std::time::Duration;

use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;

use crate::log::{Entry, LogId};
use crate::protocol::{self, BatchAck, Heartbeat};

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
    fn from_reqwest(e: reqwest::Error, timeout: Duration) -> Self {
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

/// The headers of replication batches and the log they were built for.
type BatchHeaders = (LogId, std::sync::Arc<HeaderMap>);

/// Client for one secondary. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct Peer {
    pub name: String,
    /// Base URL without a trailing slash.
    pub url: String,
    client: reqwest::Client,
    /// Replication batches go over these (see `crate::transport`); the rest over `client`.
    batches: std::sync::Arc<crate::transport::Transport>,
    token: Option<String>,
    master_url: Option<String>,
    /// The headers of replication batches for the log they were built for (see
    /// [`Peer::batch_headers`]).
    batch_headers: std::sync::Arc<parking_lot::Mutex<Option<BatchHeaders>>>,
}

impl Peer {
    pub fn new(
        name: &str,
        url: &str,
        client: reqwest::Client,
        token: Option<String>,
        master_url: Option<String>,
    ) -> Self {
        let url = url.trim_end_matches('/').to_string();
        let batches = std::sync::Arc::new(crate::transport::Transport::new(&url));
        Peer {
            name: name.to_string(),
            url,
            client,
            batches,
            token,
            master_url,
            batch_headers: Default::default(),
        }
    }

    /// The same secondary, its calls other than replication batches made with `client`; the
    /// replication connections are shared.
    pub fn with_client(&self, client: reqwest::Client) -> Peer {
        Peer {
            client,
            ..self.clone()
        }
    }

    /// A client suited to talking to secondaries: keep-alive connections, no proxies, and
    /// names resolved afresh on every new connection ([`FreshDns`]).
    pub fn http_client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(FreshDns::default())
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.client.request(method, format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(m) = &self.master_url {
            rb = rb.header(protocol::MASTER_HEADER, m);
        }
        rb
    }

    /// Sends entries through the batch endpoint; Ok only on a 2xx with a readable ack.
    pub async fn replicate(
        &self,
        log_id: LogId,
        entries: &[Entry],
        timeout: Duration,
    ) -> Result<BatchAck, PeerError> {
        let call = crate::transport::Call {
            method: hyper::Method::POST,
            path: "/replicate",
            headers: self.batch_headers(log_id)?,
            body: protocol::encode_batch(entries),
        };
        let (status, body) = self.batches.send(&call, timeout).await?;
        let body = success(status, body)?;
        serde_json::from_slice(&body).map_err(|e| PeerError::BadAnswer(e.to_string()))
    }

    /// The headers of every replication batch for log `log_id`: built once (names and values
    /// checked, the log id formatted) and shared by all of them.
    fn batch_headers(&self, log_id: LogId) -> Result<std::sync::Arc<HeaderMap>, PeerError> {
        let mut cached = self.batch_headers.lock();
        if let Some((id, headers)) = &*cached
            && *id == log_id
        {
            return Ok(headers.clone());
        }
        let value = |v: &str| {
            HeaderValue::from_str(v).map_err(|e| {
                PeerError::Unreachable(format!("cannot send a header value to {}: {e}", self.url))
            })
        };
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(
            HeaderName::from_static(protocol::LOG_ID_HEADER),
            value(&log_id.to_string())?,
        );
        if let Some(t) = &self.token {
            let mut v = value(&format!("Bearer {t}"))?;
            v.set_sensitive(true);
            h.insert(AUTHORIZATION, v);
        }
        if let Some(m) = &self.master_url {
            h.insert(HeaderName::from_static(protocol::MASTER_HEADER), value(m)?);
        }
        let h = std::sync::Arc::new(h);
        *cached = Some((log_id, h.clone()));
        Ok(h)
    }

    /// `GET /replicate?from=&limit=`: up to `limit` of the secondary's visible entries from
    /// key `from`.
    pub async fn fetch(
        &self,
        from: u64,
        limit: usize,
        max_value: usize,
        timeout: Duration,
    ) -> Result<Vec<Entry>, PeerError> {
        let resp = self
            .request(
                reqwest::Method::GET,
                &format!("/replicate?from={from}&limit={limit}"),
            )
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| PeerError::from_reqwest(e, timeout))?;
        let body = read_ok(resp, timeout).await?;
        protocol::decode_batch(body, max_value).map_err(|e| PeerError::BadAnswer(e.to_string()))
    }

    /// `GET /heartbeat`. No answer (timeout, no connection) also drops the idle replication
    /// connections: they may have died silently in the same outage (a partition, a new
    /// address), and the resend after the secondary is back must not hang on one.
    pub async fn heartbeat(&self, timeout: Duration) -> Result<Heartbeat, PeerError> {
        let resp = self
            .request(reqwest::Method::GET, "/heartbeat")
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| PeerError::from_reqwest(e, timeout));
        let r = match resp {
            Ok(resp) => read_json(resp, timeout).await,
            Err(e) => Err(e),
        };
        if let Err(PeerError::Timeout(_) | PeerError::Unreachable(_)) = &r {
            self.batches.forget_idle();
        }
        r
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    timeout: Duration,
) -> Result<T, PeerError> {
    let body = read_ok(resp, timeout).await?;
    serde_json::from_slice(&body).map_err(|e| PeerError::BadAnswer(e.to_string()))
}

/// The whole body of a 2xx answer; anything else is a [`PeerError::Remote`].
async fn read_ok(resp: reqwest::Response, timeout: Duration) -> Result<bytes::Bytes, PeerError> {
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| PeerError::from_reqwest(e, timeout))?;
    success(status, body)
}

/// `body` if `status` is a success; otherwise the error the secondary's answer describes.
fn success(status: StatusCode, body: bytes::Bytes) -> Result<bytes::Bytes, PeerError> {
    if status.is_success() {
        Ok(body)
    } else {
        Err(PeerError::Remote {
            status: status.as_u16(),
            message: error_message(status, &body),
        })
    }
}

/// The `error` sentence of a JSON error body, or the start of whatever the body was.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(msg) = v.get("error").and_then(|m| m.as_str())
    {
        return msg.to_string();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
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
    use reqwest::dns::Resolve;

    #[tokio::test]
    async fn fresh_dns_resolves_names_from_the_hosts_file() {
        let name: reqwest::dns::Name = "localhost".parse().expect("a valid name");
        let addrs: Vec<std::net::SocketAddr> = FreshDns::default()
            .resolve(name)
            .await
            .expect("resolves")
            .collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
