//! replog: a replicated, append-only message log.
//!
//! One master gives every message a key (1, 2, 3, … with no gaps) and replicates it over HTTP
//! to its secondaries; each append says how many nodes must hold it before it is answered
//! (its write concern). The contract is `SPEC.md`; the README says how to run it.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap).
//! - [`config`]: typed settings, layered (defaults, TOML, `REPLOG_*`), validated once.
//! - [`telemetry`]: logging to stdout and the shared log file.
//! - [`startup`]: [`startup::Application`]: bind, start, serve, shut down.
//! - [`server`]: the HTTP/1.1 accept loop and its limits (connections, header size and time).
//! - [`node`]: [`node::Node`], the state a running node shares; wiring of its tasks.
//! - [`api`]: the HTTP endpoints, one router per role, one error shape; the route table
//!   (`api::routes`) carries each endpoint's OpenAPI description (`GET /openapi.json`).
//! - [`log`]: the [`log::LogStore`] trait (the storage contract) and its implementations.
//! - [`writer`]: the single task that writes a node's log (key assignment, group commit).
//! - [`dedup`]: the master's idempotency index (`id` → key) over the dedup window.
//! - [`acks`]: who holds which key; wakes appends waiting on their write concern.
//! - [`replication`]: one task per secondary: progress, window, backoff.
//! - [`health`]: heartbeats, health states, quorum and read-only mode.
//! - [`metrics`]: `GET /metrics` (Prometheus text): event counters and scrape-time state.
//! - [`recovery`]: a master that lost the tail of its log takes it back from a secondary.
//! - [`peer`]: the master's HTTP client for a secondary, with classified failures.
//! - [`transport`]: replication connections on plain hyper, each driven by its own request.
//! - [`protocol`]: wire types: public JSON, the binary replication batch.
//! - [`faults`]: `/delay` and injected errors on secondaries.
//! - [`rangeset`]: compact sets of keys.
//! - [`cluster`]: `replog cluster`, a local master and secondaries as child processes.
//! - [`client`]: `replog append | read | status | bench`.

pub mod acks;
pub mod api;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod dedup;
pub mod faults;
pub mod health;
pub mod http1;
pub mod log;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod protocol;
pub mod rangeset;
pub mod recovery;
pub mod replication;
pub mod server;
pub mod startup;
pub mod telemetry;
pub mod transport;
pub mod writer;
