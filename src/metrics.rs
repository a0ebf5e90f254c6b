//! A node's figures for `GET /metrics` (Prometheus text, version 0.0.4, with the
//! `prometheus-client` crate): the registry of events and the master's [`Timeline`]. The
//! endpoint itself, which adds the node's state read at scrape time, is
//! `crate::http::metrics`.
//!
//! Role: [`Metrics`] lives in the node (`crate::node::Node`). Two kinds of figures:
//!
//! * **Events**, counted where they happen, in a registry built once at startup: appends by
//!   write concern and outcome, their latency (a histogram by `w`), refused appends by status,
//!   and on secondaries the replication requests received. The append path pays one counter
//!   increment and one histogram observation (an uncontended lock) per request, on handles
//!   created at startup (no label hashing); see [`Metrics::observe_append`].
//! * **State**, read at scrape time from what the node keeps anyway (the replicas' progress and
//!   health views, the quorum, the ack tracker, the store, the idempotency index) into a
//!   registry built for that one scrape (`crate::http::metrics`). Nothing is added to the hot
//!   path for these.
//!
//! Replication lag in seconds is the age of the oldest message a secondary lacks (key
//! `acked_key + 1`). Keys carry no time, so the master keeps a [`Timeline`]: a task
//! (`crate::node`) samples the
//! end of its log (at most every [`SAMPLE_EVERY`]) and remembers when each end was first seen.
//! The age is exact to within the sampling interval; keys that were in the log when the master
//! started count from its start. Samples no secondary needs any more are dropped, and at most
//! [`MAX_SAMPLES`] are kept (beyond that, neighbours are merged, keeping the earlier time:
//! an old lag is then overstated, never hidden). A secondary that comes back empty after every
//! secondary had caught up lacks keys whose samples were dropped: its age is then that of the
//! oldest sample kept, a lower bound.
//!
//! Invariants: metric names are unique across the two registries (so the concatenated text is
//! one valid exposition); every name starts with `replog_`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::storage::writer::WriteStats;

/// The master samples the end of its log at most this often (the lag-seconds resolution).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// Most samples the [`Timeline`] keeps.
pub const MAX_SAMPLES: usize = 1 << 16;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppendLabels {
    w: u16,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WLabel {
    w: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: u16,
}

/// Handles of one write concern's append metrics, made at startup.
struct PerW {
    created: Counter,
    duplicate: Counter,
    timeout: Counter,
    latency: Histogram,
}

/// A node's metrics; see the module docs.
pub struct Metrics {
    /// The event registry of every node (the writer's figures), encoded first in every scrape.
    pub events: Registry,
    /// The events of a master (appends) and of a secondary (replication requests received):
    /// a scrape encodes those of the node's role then.
    pub master_events: Registry,
    pub secondary_events: Registry,
    /// Index `w - 1`; empty on a secondary.
    per_w: Vec<PerW>,
    refused: Family<StatusLabel, Counter>,
    requests: Family<RequestLabels, Counter>,
    /// When each end of the log was first seen (master).
    pub timeline: Timeline,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics of a node in a cluster of `all` nodes (master: `master` true) whose log ends at
    /// `last_key` at startup; `writes` are its writer's figures.
    pub fn new(all: usize, last_key: u64, writes: &WriteStats) -> Self {
        let mut events = Registry::with_prefix("replog");
        events.register(
            "fsync_duration_seconds",
            "Time each fsync of the log took (storage.fsync \"always\": one per group of writes made while the previous one ran; \"interval\": one per interval with new data)",
            writes.fsync.clone(),
        );
        events.register(
            "write_batch_messages",
            "Messages carried by each write of the log (appends on the master, replicated entries on a secondary): group commit shows as batches above 1",
            writes.batch.clone(),
        );
        let appends = Family::<AppendLabels, Counter>::default();
        let latency = Family::<WLabel, Histogram>::new_with_constructor(|| {
            // 100 µs to about 13 s; a w waiting for a paused node lands in +Inf.
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let refused = Family::<StatusLabel, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let mut per_w = Vec::new();
        // A node's role can change at run time: the figures of both roles exist from the
        // start, and a scrape shows those of the role the node has then.
        let mut master_events = Registry::with_prefix("replog");
        let mut secondary_events = Registry::with_prefix("replog");
        {
            let events = &mut master_events;
            events.register(
                "appends",
                "Appends that were given a key or found their id, by write concern and outcome (created: 201, duplicate: 200, timeout: 504)",
                appends.clone(),
            );
            events.register(
                "append_duration_seconds",
                "Time from receiving an append to answering it 201 or 200, by write concern",
                latency.clone(),
            );
            events.register(
                "appends_refused",
                "Appends answered with another status (400, 413, 503 read-only or recovering, 500), by status",
                refused.clone(),
            );
            for w in 1..=all.min(u16::MAX as usize) as u16 {
                let c = |outcome| appends.get_or_create(&AppendLabels { w, outcome }).clone();
                per_w.push(PerW {
                    created: c("created"),
                    duplicate: c("duplicate"),
                    timeout: c("timeout"),
                    latency: latency.get_or_create(&WLabel { w }).clone(),
                });
            }
        }
        {
            secondary_events.register(
                "replication_requests_received",
                "Replication requests this secondary received (POST /replicate, PUT /message), by endpoint and answer status",
                requests.clone(),
            );
        }
        Metrics {
            events,
            master_events,
            secondary_events,
            per_w,
            refused,
            requests,
            timeline: Timeline::new(last_key, Instant::now()),
        }
    }

    /// Records one answered append: `status`, the write concern it was answered with (when
    /// known) and when it was received.
    pub fn observe_append(&self, status: StatusCode, w: Option<u16>, started: Instant) {
        let per_w = w.and_then(|w| self.per_w.get(usize::from(w).checked_sub(1)?));
        match (status, per_w) {
            (StatusCode::CREATED, Some(m)) => {
                m.created.inc();
                m.latency.observe(started.elapsed().as_secs_f64());
            }
            (StatusCode::OK, Some(m)) => {
                m.duplicate.inc();
                m.latency.observe(started.elapsed().as_secs_f64());
            }
            (StatusCode::GATEWAY_TIMEOUT, Some(m)) => {
                m.timeout.inc();
            }
            // A key was assigned, but the w is not one of this cluster's: cannot happen (the
            // handler validates w), and would have no series to go to.
            (StatusCode::CREATED | StatusCode::OK | StatusCode::GATEWAY_TIMEOUT, None) => {}
            _ => {
                self.refused
                    .get_or_create(&StatusLabel {
                        status: status.as_u16(),
                    })
                    .inc();
            }
        }
    }

    /// Records one replication request a secondary received (`endpoint`: "replicate" or
    /// "put_message").
    pub fn observe_replication_request(&self, endpoint: &'static str, status: StatusCode) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                status: status.as_u16(),
            })
            .inc();
    }
}

/// When each end of the master's log was first seen; see the module docs.
#[derive(Debug)]
pub struct Timeline {
    /// `(k, t)`: the log's end reached `k` at `t`; keys and times increasing.
    samples: Mutex<VecDeque<(u64, Instant)>>,
}

impl Timeline {
    /// A timeline of a log that ends at `last_key` now (`started`).
    pub fn new(last_key: u64, started: Instant) -> Self {
        Timeline {
            samples: Mutex::new(VecDeque::from([(last_key, started)])),
        }
    }

    /// The log's end is `key` at `at`.
    pub fn record(&self, key: u64, at: Instant) {
        let mut s = self.samples.lock();
        if s.back().is_some_and(|(k, _)| *k >= key) {
            return;
        }
        s.push_back((key, at));
        if s.len() > MAX_SAMPLES {
            // Merge neighbours: (k1, t1), (k2, t2) → (k2, t1).
            let old = std::mem::take(&mut *s);
            let mut it = old.into_iter();
            while let Some((k1, t1)) = it.next() {
                match it.next() {
                    Some((k2, _)) => s.push_back((k2, t1)),
                    None => s.push_back((k1, t1)),
                }
            }
        }
    }

    /// Drops samples only keys below `key` need (no secondary lacks them).
    pub fn forget_below(&self, key: u64) {
        let mut s = self.samples.lock();
        while s.len() > 1 && s.front().is_some_and(|(k, _)| *k < key) {
            s.pop_front();
        }
    }

    /// How long ago key `key` was first seen in the log (zero if it is not there yet).
    pub fn age(&self, key: u64, now: Instant) -> Duration {
        let s = self.samples.lock();
        let i = s.partition_point(|(k, _)| *k < key);
        s.get(i)
            .map_or(Duration::ZERO, |(_, t)| now.saturating_duration_since(*t))
    }

    pub fn len(&self) -> usize {
        self.samples.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_ages_keys_from_when_the_log_first_reached_them() {
        let t0 = Instant::now();
        let t = Timeline::new(10, t0);
        t.record(12, t0 + Duration::from_secs(1));
        t.record(20, t0 + Duration::from_secs(2));
        let now = t0 + Duration::from_secs(5);
        assert_eq!(t.age(5, now), Duration::from_secs(5), "present at start");
        assert_eq!(t.age(11, now), Duration::from_secs(4));
        assert_eq!(t.age(12, now), Duration::from_secs(4));
        assert_eq!(t.age(13, now), Duration::from_secs(3));
        assert_eq!(t.age(21, now), Duration::ZERO, "not in the log yet");
        t.forget_below(13);
        assert_eq!(t.age(13, now), Duration::from_secs(3));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn timeline_stays_bounded_and_only_overstates_old_ages() {
        let t0 = Instant::now();
        let t = Timeline::new(0, t0);
        for k in 1..=(MAX_SAMPLES as u64 * 3) {
            t.record(k, t0 + Duration::from_millis(k));
        }
        assert!(t.len() <= MAX_SAMPLES + 1, "{}", t.len());
        let now = t0 + Duration::from_secs(1000);
        for k in [1u64, 777, 50_000, 150_000] {
            let exact = now - (t0 + Duration::from_millis(k));
            assert!(t.age(k, now) >= exact, "key {k}");
        }
    }

    #[test]
    fn appends_are_counted_by_w_and_outcome_and_render_as_prometheus_text() {
        let writes = WriteStats::default();
        let m = Metrics::new(3, 0, &writes);
        writes.fsync.observe(0.0003);
        writes.batch.observe(17.0);
        let started = Instant::now();
        m.observe_append(StatusCode::CREATED, Some(2), started);
        m.observe_append(StatusCode::OK, Some(2), started);
        m.observe_append(StatusCode::GATEWAY_TIMEOUT, Some(3), started);
        m.observe_append(StatusCode::SERVICE_UNAVAILABLE, None, started);
        m.observe_append(StatusCode::BAD_REQUEST, None, started);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &m.events).unwrap();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &m.master_events).unwrap();
        assert!(
            out.contains("replog_appends_total{w=\"2\",outcome=\"created\"} 1"),
            "{out}"
        );
        assert!(out.contains("replog_appends_total{w=\"2\",outcome=\"duplicate\"} 1"));
        assert!(out.contains("replog_appends_total{w=\"3\",outcome=\"timeout\"} 1"));
        assert!(out.contains("replog_appends_refused_total{status=\"503\"} 1"));
        assert!(out.contains("replog_appends_refused_total{status=\"400\"} 1"));
        assert!(out.contains("replog_append_duration_seconds_count{w=\"2\"} 2"));
        assert!(out.contains("# TYPE replog_append_duration_seconds histogram"));
        // The writer's figures, shared with the handles it was given.
        assert!(
            out.contains("replog_fsync_duration_seconds_count 1"),
            "{out}"
        );
        assert!(out.contains("replog_write_batch_messages_sum 17"), "{out}");
    }
}
