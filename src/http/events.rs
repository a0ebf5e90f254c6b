//! `GET /events` (SPEC §12): the node's state as server-sent events, for the cluster page.
//!
//! Role: one [`Hub`] per router. While anyone listens, a publisher task takes a [`State`]
//! of the node at every change of a secondary's health watch and every [`TICK`], compares it
//! with what the listeners were last told, and broadcasts one event per difference:
//!
//! | event | data | when |
//! |---|---|---|
//! | `node` | name, role, log id, failover, fault injection, secondaries, members, heartbeat settings | first; when the role or log id changes |
//! | `health` | a secondary's name, url, status (and the one before), failures in a row, error, progress | first (one per secondary); when its status changes |
//! | `acked` | a secondary's name, acked key, lag, in-flight batches, failures, error, heartbeat age | its acked key moved (≤ 10/s per secondary) |
//! | `progress` | the same | in-flight, failures or error changed, the key did not (same budget) |
//! | `mode` | read-write / read-only, quorum, available, why | first (master); when any of them changes |
//! | `appended` | last key (a secondary: its contiguous key, held-aside entries) | first; when it moves (≤ 10/s) |
//! | `master` | epoch, the master's name and url (null while unknown) | first; when they change |
//! | `election` | epoch, whether this node stands | first (failover); when that changes |
//! | `rates` | per-second appended and replicated messages over the last minute | first only |
//!
//! Every event's data also has `t_ms`: when the node took the state it tells, in milliseconds
//! on the node's monotonic clock (for rates and ages; not a wall-clock time).
//!
//! Invariants:
//! * Every event's `id` is the hub's sequence number, increasing; a new listener gets the
//!   current state first, taken under the same lock as the broadcasts, so it misses nothing
//!   and every later event is newer than what it was told.
//! * Memory never grows with a listener: events go through one `broadcast` ring of
//!   [`CAPACITY`]; a listener that falls behind it (`Lagged`) or that has more than
//!   [`MAX_BACKLOG`] bytes not yet taken by its socket (counted by
//!   [`super::server::Connection`], whose send buffer is made small) is disconnected. It
//!   reconnects and gets the current state first.
//! * With nobody listening the publisher only samples the rates, once a second.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::Request;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;

use super::server::Connection;
use crate::master::health::HealthView;
use crate::master::replication::task::snapshot;
use crate::node::{MasterState, Node};

/// How often the publisher looks for changes, and the shortest gap between two coalesced
/// events of one kind (`appended`; `acked`/`progress` per secondary): ≤ 10 per second.
pub const TICK: Duration = Duration::from_millis(100);
/// Events the broadcast ring holds; a listener further behind is dropped.
pub const CAPACITY: usize = 1024;
/// Bytes sent to a listener and not yet written to its socket, beyond its first burst, at
/// which it is dropped as too slow.
pub const MAX_BACKLOG: u64 = 32 * 1024;
/// Seconds of rate history.
const RATE_SECONDS: usize = 60;
/// Between keep-alive comments on an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// One event as broadcast: its sequence number, name and JSON data.
#[derive(Debug)]
pub struct Frame {
    pub id: u64,
    pub event: &'static str,
    pub data: String,
}

impl Frame {
    /// Its size on the wire (`id:`, `event:`, one `data:` line: the JSON has no newline).
    fn wire_len(&self) -> u64 {
        let id_len = self.id.checked_ilog10().unwrap_or(0) as usize + 1;
        (4 + id_len + 1 + 7 + self.event.len() + 1 + 6 + self.data.len() + 2) as u64
    }
}

/// One secondary as the master sees it.
#[derive(Clone, Debug, PartialEq)]
struct Replica {
    name: String,
    url: String,
    status: &'static str,
    failures: u32,
    error: Option<String>,
    acked_key: u64,
    inflight: usize,
    /// Milliseconds since the last answered heartbeat was sent (not compared: it always moves).
    heartbeat_age_ms: Option<u64>,
}

impl Replica {
    fn moved(&self, other: &Replica) -> bool {
        self.acked_key != other.acked_key
            || self.inflight != other.inflight
            || self.failures != other.failures
            || self.error != other.error
    }

    fn json(&self, last_key: u64) -> Value {
        json!({
            "name": self.name,
            "url": self.url,
            "status": self.status,
            "failures": self.failures,
            "error": self.error,
            "acked_key": self.acked_key,
            "lag": last_key.saturating_sub(self.acked_key),
            "inflight": self.inflight,
            "heartbeat_age_ms": self.heartbeat_age_ms,
        })
    }
}

/// What the events describe, taken at one moment.
#[derive(Clone, Debug, PartialEq)]
struct State {
    node: Value,
    replicas: Vec<Replica>,
    /// A master's mode.
    mode: Option<Value>,
    last_key: u64,
    held_aside: usize,
    master: Value,
    /// With failover: whether this node stands for election.
    electing: Option<bool>,
    /// With failover: its candidacies so far (`Failover::candidacies`).
    candidacies: u64,
    epoch: u64,
}

impl State {
    fn take(node: &Node) -> State {
        let epoch = node.writer.current_epochs().current;
        let failover = node.failover.as_deref();
        let master = match (failover, node.master()) {
            (Some(f), _) => match f.known_master() {
                Some(m) => json!({"epoch": epoch, "name": m.name, "url": m.url}),
                None if node.is_master() => {
                    json!({"epoch": epoch, "name": node.name(), "url": f.me.url})
                }
                None => json!({"epoch": epoch, "name": null, "url": null}),
            },
            (None, Some(_)) => json!({"epoch": epoch, "name": node.name(), "url": null}),
            (None, None) => {
                json!({"epoch": epoch, "name": null, "url": node.known_master.lock().clone()})
            }
        };
        let candidacies = failover.map_or(0, |f| f.candidacies.load(Ordering::Acquire));
        let electing = failover.map(|f| f.electing.load(Ordering::Acquire));
        let log_id = node.store.log_id().map(|i| i.to_string());
        let settings = &node.settings;
        let refs = |v: &[crate::config::SecondaryRef]| -> Vec<Value> {
            v.iter()
                .map(|s| json!({"name": s.name, "url": s.url}))
                .collect()
        };
        let mut info = json!({
            "name": node.name(),
            "role": if node.is_master() { "master" } else { "secondary" },
            "log_id": log_id,
            "failover": failover.is_some(),
            "fault": node.faults.enabled(),
            "token": settings.node.cluster_token.is_some(),
            "heartbeat": {
                "interval_ms": settings.heartbeat.interval_ms,
                "suspected_after": settings.heartbeat.suspected_after,
                "unhealthy_after": settings.heartbeat.unhealthy_after,
            },
            "members": refs(&settings.failover.members),
        });
        let Some(m) = node.master() else {
            // A secondary: its own end of the log.
            let held_aside = node.writer.held_aside();
            return State {
                node: info,
                replicas: Vec::new(),
                mode: None,
                last_key: node.acknowledged_key(),
                held_aside,
                master,
                electing,
                candidacies,
                epoch,
            };
        };
        info["secondaries"] = Value::Array(refs(&settings.master.secondaries));
        let last_key = node.acknowledged_key();
        let now = Instant::now();
        let replicas: Vec<Replica> = m
            .replicas
            .iter()
            .map(|r| {
                let h = r.health.borrow().clone();
                let p = snapshot(r);
                Replica {
                    name: r.name.clone(),
                    url: r.url.clone(),
                    status: h.status.as_str(),
                    failures: h.failures,
                    error: p.error.or(h.error),
                    acked_key: p.acked_key,
                    inflight: p.inflight,
                    heartbeat_age_ms: r
                        .last_ok_sent
                        .lock()
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                }
            })
            .collect();
        State {
            node: info,
            mode: Some(mode_of(&m, &replicas, node.lease_holds(&m))),
            replicas,
            last_key,
            held_aside: 0,
            master,
            electing,
            candidacies,
            epoch,
        }
    }
}

/// A master's mode from the same statuses its `health` events show (the quorum's own flag
/// may be a moment behind them), with why it is read-only.
fn mode_of(m: &MasterState, replicas: &[Replica], lease_holds: bool) -> Value {
    let available = 1 + replicas.iter().filter(|r| r.status != "unhealthy").count();
    let quorum = m.quorum.quorum();
    let why = if available < quorum {
        Some("no quorum")
    } else if m.recovering.load(Ordering::Acquire) {
        Some("recovering its log")
    } else if !m.in_office.load(Ordering::Acquire) {
        Some("taking office")
    } else if !lease_holds {
        Some("no majority within its lease")
    } else {
        None
    };
    json!({
        "mode": if why.is_some() { "read-only" } else { "read-write" },
        "quorum": quorum,
        "available": available,
        "reason": why,
    })
}

/// Per-second counts over the last minute, from the node's log end and acked keys.
struct Rates {
    since: Option<Instant>,
    base_last: u64,
    base_acked: Vec<(String, u64)>,
    appended: VecDeque<u64>,
    replicated: VecDeque<u64>,
}

impl Rates {
    fn sample(&mut self, s: &State, now: Instant) {
        let acked: Vec<(String, u64)> = s
            .replicas
            .iter()
            .map(|r| (r.name.clone(), r.acked_key))
            .collect();
        let Some(since) = self.since else {
            (self.since, self.base_last, self.base_acked) = (Some(now), s.last_key, acked);
            return;
        };
        if now.duration_since(since) < Duration::from_secs(1) {
            return;
        }
        let replicated = acked
            .iter()
            .map(|(name, k)| {
                let before = self
                    .base_acked
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(*k, |(_, b)| *b);
                k.saturating_sub(before)
            })
            .sum();
        for (v, q) in [
            (
                s.last_key.saturating_sub(self.base_last),
                &mut self.appended,
            ),
            (replicated, &mut self.replicated),
        ] {
            q.push_back(v);
            if q.len() > RATE_SECONDS {
                q.pop_front();
            }
        }
        (self.since, self.base_last, self.base_acked) = (Some(now), s.last_key, acked);
    }

    fn json(&self) -> Value {
        json!({"interval_ms": 1000, "appended": self.appended, "replicated": self.replicated})
    }
}

struct Inner {
    seq: u64,
    /// Events carry their time since this (`t_ms`, monotonic).
    epoch: Instant,
    /// What listeners were told (coalesced parts: as last sent).
    told: Option<State>,
    /// When each coalesced kind was last sent: `appended`, then one per secondary by name.
    last_appended: Option<Instant>,
    last_replica: Vec<(String, Instant)>,
    rates: Rates,
}

/// The event hub of one router; see the module docs.
pub struct Hub {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Frame>>,
    /// Wakes the publisher when the first listener comes.
    listener: Notify,
    started: std::sync::Once,
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub {
            inner: Mutex::new(Inner {
                seq: 0,
                epoch: Instant::now(),
                told: None,
                last_appended: None,
                last_replica: Vec::new(),
                rates: Rates {
                    since: None,
                    base_last: 0,
                    base_acked: Vec::new(),
                    appended: VecDeque::new(),
                    replicated: VecDeque::new(),
                },
            }),
            tx: broadcast::channel(CAPACITY).0,
            listener: Notify::new(),
            started: std::sync::Once::new(),
        })
    }

    /// A new listener: the current state as events, and the receiver of every later one.
    pub fn subscribe(
        self: &Arc<Self>,
        node: &Arc<Node>,
    ) -> (Vec<Arc<Frame>>, broadcast::Receiver<Arc<Frame>>) {
        self.started.call_once(|| {
            tokio::spawn(publish(node.clone(), self.clone()));
        });
        // Taken under the lock, as the publisher does: no state older than one already told.
        let mut inner = self.inner.lock();
        let now = Instant::now();
        let cur = State::take(node);
        self.tell(&mut inner, &cur, now);
        let mut frames = Vec::new();
        let id = inner.seq;
        let t_ms = now.duration_since(inner.epoch).as_millis() as u64;
        let mut add = |event: &'static str, mut data: Value| {
            data["t_ms"] = json!(t_ms);
            frames.push(Arc::new(Frame {
                id,
                event,
                data: data.to_string(),
            }))
        };
        add("node", cur.node.clone());
        add("master", cur.master.clone());
        if let Some(e) = cur.electing {
            add("election", json!({"epoch": cur.epoch, "standing": e}));
        }
        if let Some(m) = &cur.mode {
            add("mode", m.clone());
        }
        add("appended", appended_json(&cur));
        for r in &cur.replicas {
            let mut v = r.json(cur.last_key);
            v["from"] = Value::Null;
            add("health", v);
        }
        add("rates", inner.rates.json());
        let rx = self.tx.subscribe();
        drop(inner);
        self.listener.notify_one();
        (frames, rx)
    }

    /// Broadcasts what changed between what listeners were told and `cur`.
    fn tell(&self, inner: &mut Inner, cur: &State, now: Instant) {
        inner.rates.sample(cur, now);
        let Some(told) = inner.told.as_mut() else {
            inner.told = Some(cur.clone());
            return;
        };
        let mut out: Vec<(&'static str, Value)> = Vec::new();
        let due = |last: Option<Instant>| last.is_none_or(|t| now.duration_since(t) >= TICK);
        // The election first: a node stands, then turns master (`node`) in a new epoch
        // (`master`), and a reader sees them in that order.
        let stood_meanwhile = told.candidacies != cur.candidacies;
        if (told.electing != cur.electing || stood_meanwhile)
            && let Some(e) = cur.electing
        {
            if stood_meanwhile && !e && told.electing != Some(true) {
                // A whole candidacy ran between two looks (an election takes milliseconds
                // once a majority answers): it is told all the same, as it began and ended.
                out.push(("election", json!({"epoch": cur.epoch, "standing": true})));
            }
            out.push(("election", json!({"epoch": cur.epoch, "standing": e})));
            told.electing = cur.electing;
        }
        told.candidacies = cur.candidacies;
        if told.node != cur.node {
            out.push(("node", cur.node.clone()));
            told.node = cur.node.clone();
        }
        if told.master != cur.master || told.epoch != cur.epoch {
            out.push(("master", cur.master.clone()));
            (told.master, told.epoch) = (cur.master.clone(), cur.epoch);
        }
        // Secondaries that came or went with a role change are told in full.
        let same_set = told.replicas.len() == cur.replicas.len()
            && told
                .replicas
                .iter()
                .zip(&cur.replicas)
                .all(|(a, b)| a.name == b.name);
        if !same_set {
            for r in &cur.replicas {
                let mut v = r.json(cur.last_key);
                v["from"] = Value::Null;
                out.push(("health", v));
            }
            told.replicas = cur.replicas.clone();
        }
        for (t, c) in told.replicas.iter_mut().zip(&cur.replicas) {
            if t.status != c.status {
                let mut v = c.json(cur.last_key);
                v["from"] = json!(t.status);
                out.push(("health", v));
                *t = c.clone();
                continue;
            }
            if !t.moved(c) {
                continue;
            }
            let last = inner
                .last_replica
                .iter()
                .find(|(n, _)| *n == c.name)
                .map(|(_, at)| *at);
            if !due(last) {
                continue;
            }
            let event = if t.acked_key != c.acked_key {
                "acked"
            } else {
                "progress"
            };
            out.push((event, c.json(cur.last_key)));
            *t = c.clone();
            match inner.last_replica.iter_mut().find(|(n, _)| *n == c.name) {
                Some(e) => e.1 = now,
                None => inner.last_replica.push((c.name.clone(), now)),
            }
        }
        if told.mode != cur.mode {
            if let Some(m) = &cur.mode {
                out.push(("mode", m.clone()));
            }
            told.mode = cur.mode.clone();
        }
        if (told.last_key != cur.last_key || told.held_aside != cur.held_aside)
            && due(inner.last_appended)
        {
            out.push(("appended", appended_json(cur)));
            (told.last_key, told.held_aside) = (cur.last_key, cur.held_aside);
            inner.last_appended = Some(now);
        }
        let t_ms = now.duration_since(inner.epoch).as_millis() as u64;
        for (event, mut data) in out {
            inner.seq += 1;
            data["t_ms"] = json!(t_ms);
            // No listener is no error: the next one gets the state first.
            let _ = self.tx.send(Arc::new(Frame {
                id: inner.seq,
                event,
                data: data.to_string(),
            }));
        }
    }
}

fn appended_json(s: &State) -> Value {
    if s.mode.is_some() {
        json!({"last_key": s.last_key})
    } else {
        json!({"last_key": s.last_key, "held_aside": s.held_aside})
    }
}

/// The publisher task of `hub`, until the node shuts down; see the module docs.
async fn publish(node: Arc<Node>, hub: Arc<Hub>) {
    // The health watches of the current master term, to wake at every heartbeat result. The
    // weak reference tells one term from the next (and keeps its address from being reused).
    let mut watched: Option<(
        std::sync::Weak<MasterState>,
        Vec<watch::Receiver<HealthView>>,
    )> = None;
    loop {
        if hub.tx.receiver_count() == 0 {
            {
                let mut inner = hub.inner.lock();
                let cur = State::take(&node);
                inner.rates.sample(&cur, Instant::now());
            }
            tokio::select! {
                _ = node.shutdown.cancelled() => return,
                _ = hub.listener.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        {
            let mut inner = hub.inner.lock();
            let cur = State::take(&node);
            hub.tell(&mut inner, &cur, Instant::now());
        }

        let m = node.master();
        let same = match (&watched, &m) {
            (Some((w, _)), Some(m)) => std::sync::Weak::ptr_eq(w, &Arc::downgrade(m)),
            (None, None) => true,
            _ => false,
        };
        if !same {
            watched = m.map(|m| {
                let rxs = m
                    .replicas
                    .iter()
                    .map(|r| {
                        let mut rx = r.health.clone();
                        rx.borrow_and_update();
                        rx
                    })
                    .collect();
                (Arc::downgrade(&m), rxs)
            });
        }
        let any_health = async {
            match watched.as_mut() {
                Some((_, rxs)) if !rxs.is_empty() => {
                    let changes = rxs.iter_mut().map(|rx| Box::pin(rx.changed()));
                    let (r, i, _) = futures::future::select_all(changes).await;
                    // A closed watch (its term ended) is watched no more.
                    r.is_err().then_some(i)
                }
                _ => std::future::pending().await,
            }
        };
        let closed = tokio::select! {
            _ = node.shutdown.cancelled() => return,
            c = any_health => c,
            _ = tokio::time::sleep(TICK) => None,
        };
        if let (Some(i), Some((_, rxs))) = (closed, watched.as_mut()) {
            rxs.remove(i);
        }
    }
}

/// `GET /events`: the state first, then every change; see the module docs.
pub async fn events(node: Arc<Node>, req: Request) -> Response {
    let Some(hub) = req.extensions().get::<Arc<Hub>>().cloned() else {
        return super::ApiError::internal("the event hub is not installed").into_response();
    };
    let conn = req.extensions().get::<Connection>().cloned();
    let (initial, rx) = hub.subscribe(&node);
    if let Some(c) = &conn {
        c.small_send_buffer();
    }
    let burst: u64 = initial.iter().map(|f| f.wire_len()).sum();
    let listener = Listener {
        initial: initial.into(),
        rx,
        base: conn.as_ref().map_or(0, Connection::written),
        conn,
        sent: 0,
        allowance: burst + MAX_BACKLOG,
        shutdown: node.shutdown.clone(),
        first: true,
    };
    let stream = futures::stream::unfold(listener, |mut l| async move {
        let frame = l.next().await?;
        let mut ev = Event::default()
            .id(frame.id.to_string())
            .event(frame.event)
            .data(&frame.data);
        if std::mem::take(&mut l.first) {
            // Reconnect soon after a drop or a restart.
            ev = ev.retry(Duration::from_millis(1000));
        }
        Some((Ok::<Event, Infallible>(ev), l))
    });
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// One listener's stream state.
struct Listener {
    initial: VecDeque<Arc<Frame>>,
    rx: broadcast::Receiver<Arc<Frame>>,
    conn: Option<Connection>,
    /// The connection's bytes written when the stream began.
    base: u64,
    /// Event bytes handed to the connection.
    sent: u64,
    allowance: u64,
    shutdown: tokio_util::sync::CancellationToken,
    first: bool,
}

impl Listener {
    /// The next frame to send, or `None` to end the stream (shutdown, or a listener too slow:
    /// then its connection is closed).
    async fn next(&mut self) -> Option<Arc<Frame>> {
        let frame = match self.initial.pop_front() {
            Some(f) => f,
            None => tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                r = self.rx.recv() => match r {
                    Ok(f) => f,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::info!("events: dropped a listener {n} events behind; it reconnects for the current state");
                        if let Some(c) = &self.conn {
                            c.close();
                        }
                        return None;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            },
        };
        self.sent += frame.wire_len();
        if let Some(c) = &self.conn {
            let delivered = c.written().saturating_sub(self.base);
            let behind = self.sent.saturating_sub(delivered);
            if behind > self.allowance {
                tracing::info!(
                    behind,
                    "events: dropped a listener that stopped reading ({behind} bytes not taken); it reconnects for the current state"
                );
                c.close();
                return None;
            }
        }
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(name: &str, status: &'static str, acked_key: u64) -> Replica {
        Replica {
            name: name.into(),
            url: format!("http://{name}"),
            status,
            failures: 0,
            error: None,
            acked_key,
            inflight: 0,
            heartbeat_age_ms: Some(5),
        }
    }

    fn state(last_key: u64, replicas: Vec<Replica>) -> State {
        State {
            node: json!({"name": "m", "role": "master"}),
            replicas,
            mode: Some(json!({"mode": "read-write", "quorum": 2, "available": 3})),
            last_key,
            held_aside: 0,
            master: json!({"epoch": 1, "name": "m", "url": null}),
            electing: None,
            candidacies: 0,
            epoch: 1,
        }
    }

    fn drain(rx: &mut broadcast::Receiver<Arc<Frame>>) -> Vec<(u64, &'static str, Value)> {
        let mut out = Vec::new();
        while let Ok(f) = rx.try_recv() {
            let data = serde_json::from_str(&f.data).expect("JSON");
            out.push((f.id, f.event, data));
        }
        out
    }

    #[test]
    fn changes_are_told_once_in_order_and_acks_coalesced() {
        let hub = Hub::new();
        let mut rx = hub.tx.subscribe();
        let t0 = Instant::now();
        let mut inner = hub.inner.lock();
        hub.tell(&mut inner, &state(0, vec![replica("s1", "healthy", 0)]), t0);
        assert!(drain(&mut rx).is_empty(), "the first state is no change");

        // A key and an ack: both told.
        let at = |ms| t0 + Duration::from_millis(ms);
        hub.tell(
            &mut inner,
            &state(1, vec![replica("s1", "healthy", 1)]),
            at(10),
        );
        let told = drain(&mut rx);
        let names: Vec<&str> = told.iter().map(|t| t.1).collect();
        assert_eq!(names, ["acked", "appended"]);
        assert_eq!(told[0].2["lag"], 0);
        assert_eq!(told[0].2["t_ms"], 10);

        // Within the same 100 ms: the ack and the key wait; a status change does not.
        hub.tell(
            &mut inner,
            &state(2, vec![replica("s1", "healthy", 2)]),
            at(50),
        );
        assert!(drain(&mut rx).is_empty(), "coalesced");
        hub.tell(
            &mut inner,
            &state(3, vec![replica("s1", "suspected", 2)]),
            at(60),
        );
        let told = drain(&mut rx);
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!(told[0].1, "health");
        assert_eq!(
            (told[0].2["from"].as_str(), told[0].2["status"].as_str()),
            (Some("healthy"), Some("suspected"))
        );

        // After 100 ms: the newest key, once.
        hub.tell(
            &mut inner,
            &state(3, vec![replica("s1", "suspected", 3)]),
            at(115),
        );
        let told = drain(&mut rx);
        let names: Vec<(&str, Value)> = told
            .iter()
            .map(|t| (t.1, t.2["last_key"].clone()))
            .collect();
        assert_eq!(
            names,
            [("acked", Value::Null), ("appended", json!(3))],
            "{told:?}"
        );
        let ids: Vec<u64> = told.iter().map(|t| t.0).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_mode_and_a_changed_set_of_secondaries_are_told() {
        let hub = Hub::new();
        let mut rx = hub.tx.subscribe();
        let t0 = Instant::now();
        let mut inner = hub.inner.lock();
        hub.tell(&mut inner, &state(0, vec![replica("s1", "healthy", 0)]), t0);
        let mut s = state(
            0,
            vec![replica("s1", "healthy", 0), replica("s2", "healthy", 0)],
        );
        s.mode = Some(json!({"mode": "read-only", "quorum": 2, "available": 1}));
        hub.tell(&mut inner, &s, t0 + Duration::from_millis(1));
        let names: Vec<&str> = drain(&mut rx).iter().map(|t| t.1).collect();
        assert_eq!(names, ["health", "health", "mode"]);
    }

    #[tokio::test]
    async fn the_counted_size_of_an_event_is_its_size_on_the_wire() {
        let frame = Frame {
            id: 1234,
            event: "acked",
            data: json!({"name": "s1", "acked_key": 7}).to_string(),
        };
        let ev = Event::default()
            .id(frame.id.to_string())
            .event(frame.event)
            .data(&frame.data);
        let body = Sse::new(futures::stream::iter([Ok::<Event, Infallible>(ev)]))
            .into_response()
            .into_body();
        let bytes = axum::body::to_bytes(body, 1 << 16).await.expect("body");
        assert_eq!(frame.wire_len(), bytes.len() as u64, "{bytes:?}");
    }
}
