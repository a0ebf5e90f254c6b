//! [`Backoff`]: the growing delay between retries of failed replication requests (SPEC §4).
//!
//! The delays come from `replication.retry_delays_s`; the last one repeats for ever (retries
//! never stop). Invariant: a success resets it, so the next failure starts again from the
//! first delay.

use std::time::Duration;

/// Retry delays for one secondary; see the module docs.
#[derive(Clone, Debug)]
pub struct Backoff {
    delays: Vec<Duration>,
    attempt: usize,
}

impl Backoff {
    /// `delays` must not be empty (config validation guarantees it).
    pub fn new(delays: Vec<Duration>) -> Self {
        let delays = if delays.is_empty() {
            vec![Duration::from_secs(1)]
        } else {
            delays
        };
        Backoff { delays, attempt: 0 }
    }

    /// The delay before the next retry; each call moves one step along the list.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.delays[self.attempt.min(self.delays.len() - 1)];
        self.attempt += 1;
        d
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> usize {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_repeats_the_last_delay_and_resets() {
        let secs = |v: &[u64]| {
            v.iter()
                .map(|s| Duration::from_secs(*s))
                .collect::<Vec<_>>()
        };
        let mut b = Backoff::new(secs(&[1, 2, 5]));
        let got: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(got, secs(&[1, 2, 5, 5, 5]));
        assert_eq!(b.attempts(), 5);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
