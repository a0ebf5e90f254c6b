//! replog: a replicated, append-only message log.
//!
//! One master gives every message a key (1, 2, 3, … with no gaps) and replicates it over HTTP
//! to its secondaries; each append says how many nodes must hold it before it is answered
//! (its write concern). The contract is `SPEC.md`; the README says how to run it;
//! `docs/architecture.md` draws the folders below and the path of an append through them.
//!
//! # Layout
//!
//! - [`domain`]: the shared vocabulary: entries, log identity, epochs and histories, key sets.
//! - [`storage`]: the log store (the [`storage::LogStore`] contract, the file store, the
//!   in-memory one, the offline check) and its single writer (key assignment, group commit,
//!   the idempotency index, log matching on the write path). Knows no peer and no HTTP.
//! - [`master`]: what a master does: replication tasks, ack tracking, heartbeats and quorum,
//!   tail recovery, the replication client.
//! - [`secondary`]: what only a secondary has: the test hooks (`/delay`, injected errors).
//! - [`http`]: the HTTP layer: accept loop, routes and handlers of both roles, the one error
//!   shape, the OpenAPI document, `/metrics`.
//! - [`node`]: a running node: its shared state, its role as runtime state, startup and
//!   shutdown.
//! - [`cmd`]: the command line, the clients (`append`, `read`, `status`, `bench`) and
//!   `replog cluster`.
//! - [`config`], [`telemetry`], [`metrics`], [`protocol`]: settings, logging, the metrics
//!   registry, and the wire types peers exchange.

pub mod cmd;
pub mod config;
pub mod domain;
pub mod http;
pub mod master;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod secondary;
pub mod storage;
pub mod telemetry;
