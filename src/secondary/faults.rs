//! Fault injection on secondaries, for tests and demonstrations (SPEC §3).
//!
//! Only active with `fault.enabled = true`: then `POST /delay` arms a one-shot delay that the
//! *next* replication request (single or batch) takes before it is stored, and `error_rate`
//! (config, or `POST /fault` at run time) is the probability that a replication request is
//! stored and then answered with a 500 — which exercises the master's retries and the
//! secondary's idempotent storage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// The fault knobs of one node.
pub struct Faults {
    enabled: bool,
    // Shared by concurrent requests; a plain lock held for a take() or a store, never across
    // an await.
    delay: Mutex<Option<Duration>>,
    /// `error_rate` as f64 bits, so reads on the request path take no lock.
    error_rate: AtomicU64,
}

impl Faults {
    pub fn new(enabled: bool, error_rate: f64) -> Self {
        Faults {
            enabled,
            delay: Mutex::new(None),
            error_rate: AtomicU64::new(if enabled { error_rate } else { 0.0 }.to_bits()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Arms the one-shot delay (replacing one not yet taken).
    pub fn arm_delay(&self, d: Duration) {
        *self.delay.lock() = Some(d);
    }

    /// Takes the armed delay, if any: exactly one replication request gets it.
    pub fn take_delay(&self) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        self.delay.lock().take()
    }

    pub fn error_rate(&self) -> f64 {
        f64::from_bits(self.error_rate.load(Ordering::Relaxed))
    }

    pub fn set_error_rate(&self, p: f64) {
        self.error_rate.store(p.to_bits(), Ordering::Relaxed);
    }

    /// Whether this request should be answered with an injected 500 (after storing).
    pub fn inject_error(&self) -> bool {
        let p = self.error_rate();
        self.enabled && p > 0.0 && rand::random::<f64>() < p
    }
}
