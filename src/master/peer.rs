//! [`Peer`]: the master's typed HTTP client for one secondary.
//!
//! Every failure is classified ([`PeerError`]): no answer in time, no connection, or an answer
//! that is not a success. None of them is ever taken as an acknowledgement; the replication
//! task decides the retry from the class.

use std::time::Duration;

use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;

use std::sync::Arc;

use super::transport::{FreshDns, PeerError};
use crate::domain::epoch::FromMaster;
use crate::domain::epoch::{Epochs, History};
use crate::domain::{Entry, LogId};
use crate::protocol::{self, BatchAck, Heartbeat};

/// The headers of replication batches and the log and epochs they were built for.
type BatchHeaders = (LogId, Arc<Epochs>, Arc<HeaderMap>);

/// Client for one secondary. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct Peer {
    pub name: String,
    /// Base URL without a trailing slash.
    pub url: String,
    client: reqwest::Client,
    /// Replication batches go over these (see `crate::master::transport`); the rest over `client`.
    batches: std::sync::Arc<crate::master::transport::Transport>,
    token: Option<String>,
    master_url: Option<String>,
    /// The sending node's name (failover: secondaries name their master in `/health`).
    master_name: Option<String>,
    /// Failover: the sending master's election timeout, sent with its heartbeats.
    election_timeout_ms: Option<u64>,
    /// Failover: the fingerprint of the sending master's member list, sent with its heartbeats.
    members: Option<String>,
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
        let batches = std::sync::Arc::new(crate::master::transport::Transport::new(&url));
        Peer {
            name: name.to_string(),
            url,
            client,
            batches,
            token,
            master_url,
            master_name: None,
            election_timeout_ms: None,
            members: None,
            batch_headers: Default::default(),
        }
    }

    /// The same peer, naming the sending node `name` in its requests (failover).
    pub fn with_master_name(self, name: &str) -> Peer {
        Peer {
            master_name: Some(name.to_string()),
            batch_headers: Default::default(),
            ..self
        }
    }

    /// The same peer, telling the secondary in its heartbeats that this master's election
    /// timeout is `timeout` (failover; see [`protocol::ELECTION_TIMEOUT_HEADER`]).
    pub fn with_election_timeout(self, timeout: Duration) -> Peer {
        Peer {
            election_timeout_ms: Some(timeout.as_millis() as u64),
            ..self
        }
    }

    /// The same peer, sending the fingerprint of this master's member list with its
    /// heartbeats (failover; see [`protocol::members_fingerprint`]).
    pub fn with_members(self, fingerprint: String) -> Peer {
        Peer {
            members: Some(fingerprint),
            ..self
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
        if let Some(n) = &self.master_name {
            rb = rb.header(protocol::MASTER_NAME_HEADER, n);
        }
        rb
    }

    /// Sends entries through the batch endpoint, with the master's epoch and history
    /// (`epochs`, read after the entries were: it labels every one of them); Ok only on a 2xx
    /// with a readable ack.
    pub async fn replicate(
        &self,
        log_id: LogId,
        epochs: &Arc<Epochs>,
        entries: &[Entry],
        timeout: Duration,
    ) -> Result<BatchAck, PeerError> {
        let call = crate::master::transport::Call {
            method: hyper::Method::POST,
            path: "/replicate",
            headers: self.batch_headers(log_id, epochs)?,
            body: protocol::encode_batch(entries),
        };
        let (status, body) = self.batches.send(&call, timeout).await?;
        let body = success(status, body)?;
        serde_json::from_slice(&body).map_err(|e| PeerError::BadAnswer(e.to_string()))
    }

    /// The headers of every replication batch for log `log_id` and epochs `epochs`: built
    /// once (names and values checked, the log id and history formatted) and shared by all of
    /// them until the epochs change.
    fn batch_headers(
        &self,
        log_id: LogId,
        epochs: &Arc<Epochs>,
    ) -> Result<Arc<HeaderMap>, PeerError> {
        let mut cached = self.batch_headers.lock();
        if let Some((id, e, headers)) = &*cached
            && *id == log_id
            && Arc::ptr_eq(e, epochs)
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
        h.insert(
            HeaderName::from_static(protocol::EPOCH_HEADER),
            value(itoa::Buffer::new().format(epochs.current))?,
        );
        h.insert(
            HeaderName::from_static(protocol::EPOCHS_HEADER),
            value(&epochs.history.to_header())?,
        );
        if let Some(t) = &self.token {
            let mut v = value(&format!("Bearer {t}"))?;
            v.set_sensitive(true);
            h.insert(AUTHORIZATION, v);
        }
        if let Some(m) = &self.master_url {
            h.insert(HeaderName::from_static(protocol::MASTER_HEADER), value(m)?);
        }
        if let Some(n) = &self.master_name {
            h.insert(
                HeaderName::from_static(protocol::MASTER_NAME_HEADER),
                value(n)?,
            );
        }
        let h = Arc::new(h);
        *cached = Some((log_id, epochs.clone(), h.clone()));
        Ok(h)
    }

    /// `GET /replicate?from=&limit=`: up to `limit` of the secondary's visible entries from
    /// key `from`, and the epoch and history that label them.
    pub async fn fetch(
        &self,
        from: u64,
        limit: usize,
        max_value: usize,
        timeout: Duration,
    ) -> Result<(Vec<Entry>, FromMaster), PeerError> {
        let resp = self
            .request(
                reqwest::Method::GET,
                &format!("/replicate?from={from}&limit={limit}"),
            )
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| PeerError::from_reqwest(e, timeout))?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (epoch, history) = (
            header(protocol::EPOCH_HEADER),
            header(protocol::EPOCHS_HEADER),
        );
        let body = read_ok(resp, timeout).await?;
        let labels = match (epoch, history) {
            (Some(e), Some(h)) => FromMaster {
                epoch: e.parse().map_err(|_| {
                    PeerError::BadAnswer(format!("bad {}: {e:?}", protocol::EPOCH_HEADER))
                })?,
                history: History::parse_header(&h)
                    .map_err(|e| PeerError::BadAnswer(e.to_string()))?,
            },
            _ => {
                return Err(PeerError::BadAnswer(format!(
                    "the answer lacks {} and {}",
                    protocol::EPOCH_HEADER,
                    protocol::EPOCHS_HEADER
                )));
            }
        };
        let entries = protocol::decode_batch(body, max_value)
            .map_err(|e| PeerError::BadAnswer(e.to_string()))?;
        Ok((entries, labels))
    }

    /// `GET /heartbeat`. No answer (timeout, no connection) also drops the idle replication
    /// connections: they may have died silently in the same outage (a partition, a new
    /// address), and the resend after the secondary is back must not hang on one.
    pub async fn heartbeat(&self, timeout: Duration, epoch: u64) -> Result<Heartbeat, PeerError> {
        let mut rb = self
            .request(reqwest::Method::GET, "/heartbeat")
            .header(protocol::EPOCH_HEADER, epoch);
        if let Some(ms) = self.election_timeout_ms {
            rb = rb.header(protocol::ELECTION_TIMEOUT_HEADER, ms);
        }
        if let Some(m) = &self.members {
            rb = rb.header(protocol::MEMBERS_HEADER, m);
        }
        let resp = rb
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

impl Peer {
    /// `POST /vote` (failover): a (pre-)vote asked of this member.
    pub async fn vote(
        &self,
        body: &crate::protocol::VoteBody,
        timeout: Duration,
    ) -> Result<crate::protocol::VoteReply, PeerError> {
        let resp = self
            .request(reqwest::Method::POST, "/vote")
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| PeerError::from_reqwest(e, timeout))?;
        read_json(resp, timeout).await
    }
}
