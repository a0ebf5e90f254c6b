//! [`Progress`]: what the master knows one secondary holds, and what to send it next.
//!
//! Knowledge is tied to an *incarnation* of the secondary (a random id it picks at every
//! start): a restarted secondary may have lost entries, so when the incarnation changes the
//! knowledge is rebuilt from what the new incarnation reports (its contiguous key), and
//! everything beyond is sent again. Acks from an incarnation that was already replaced are
//! ignored for sending decisions.
//!
//! Invariants:
//! * `known` only holds keys the current incarnation acknowledged (a 2xx answer to a request
//!   carrying them, or its reported contiguous prefix);
//! * batches are consecutive key ranges that never include a key in `known`;
//! * `next` only moves backwards through [`Progress::go_back`] (after a failure or a restart),
//!   which makes every key not in `known` eligible again.

use crate::protocol::BatchAck;
use crate::rangeset::RangeSet;

/// Replication progress for one secondary; see the module docs.
#[derive(Debug, Default)]
pub struct Progress {
    known: RangeSet,
    next: u64,
    instance: Option<String>,
    /// Incarnations that were replaced; their late answers must not switch us back.
    retired: Vec<String>,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            next: 1,
            ..Default::default()
        }
    }

    /// The end of the prefix the secondary is known to hold.
    pub fn acked_key(&self) -> u64 {
        self.known.prefix_end(1)
    }

    /// Whether anything is known about the secondary yet (its incarnation).
    pub fn is_known(&self) -> bool {
        self.instance.is_some()
    }

    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// The secondary is (now) incarnation `instance`, holding `1..=contiguous`. Returns false
    /// if that is an incarnation we already saw replaced (a late answer), which changes
    /// nothing.
    pub fn become_incarnation(&mut self, instance: &str, contiguous: u64) -> bool {
        if self.instance.as_deref() == Some(instance) {
            return true;
        }
        if self.retired.iter().any(|r| r == instance) {
            return false;
        }
        if let Some(old) = self.instance.take() {
            self.retired.push(old);
            if self.retired.len() > 16 {
                self.retired.remove(0);
            }
        }
        self.instance = Some(instance.to_string());
        self.known.clear();
        if contiguous > 0 {
            self.known.insert(1, contiguous);
        }
        self.go_back();
        true
    }

    /// A 2xx answer to a batch of keys `lo..=hi`. Returns false when the answer came from a
    /// replaced incarnation (it then teaches us nothing about what to send).
    ///
    /// Within one incarnation only the keys of the answered request are learnt, not the
    /// secondary's whole contiguous prefix: keys in that prefix that this master never had
    /// acknowledged may hold another message (stored by a script through `PUT /message`), and
    /// believing them held would skip sending them and hide the conflict.
    pub fn on_ack(&mut self, ack: &BatchAck, lo: u64, hi: u64) -> bool {
        if self.instance.as_deref() != Some(ack.instance.as_str())
            && !self.become_incarnation(&ack.instance, ack.contiguous_key)
        {
            return false;
        }
        self.known.insert(lo, hi);
        true
    }

    /// Makes every key not known to be held eligible for sending again.
    pub fn go_back(&mut self) {
        self.next = self.known.first_missing_from(1);
    }

    /// The next batch to send: `(first key, at most this many keys)`, consecutive, none
    /// known to be held, none beyond `last_key`.
    pub fn next_range(&mut self, last_key: u64, max_entries: usize) -> Option<(u64, usize)> {
        let from = self.known.first_missing_from(self.next.max(1));
        if from > last_key {
            self.next = from;
            return None;
        }
        let end = match self.known.next_present_from(from) {
            Some(p) => (p - 1).min(last_key),
            None => last_key,
        };
        let count = ((end - from + 1) as usize).min(max_entries.max(1));
        Some((from, count))
    }

    /// Records that keys `from..from + count` were sent.
    pub fn sent(&mut self, from: u64, count: usize) {
        self.next = from + count as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(instance: &str, contiguous: u64) -> BatchAck {
        BatchAck {
            contiguous_key: contiguous,
            instance: instance.into(),
            stored: 0,
        }
    }

    #[test]
    fn sends_in_consecutive_batches_and_skips_what_is_known() {
        let mut p = Progress::new();
        assert!(p.become_incarnation("a", 2));
        assert_eq!(p.next_range(10, 3), Some((3, 3)));
        p.sent(3, 3);
        assert_eq!(p.next_range(10, 3), Some((6, 3)));
        p.sent(6, 3);
        // 6..=8 acknowledged before 3..=5: a hole at 3..=5.
        assert!(p.on_ack(&ack("a", 2), 6, 8));
        assert_eq!(p.acked_key(), 2);
        assert_eq!(p.next_range(10, 5), Some((9, 2)));
        p.sent(9, 2);
        assert_eq!(p.next_range(10, 5), None);
        // 3..=5 failed: going back resends only the hole.
        p.go_back();
        assert_eq!(p.next_range(10, 10), Some((3, 3)));
    }

    #[test]
    fn a_contiguous_prefix_beyond_what_was_acknowledged_is_not_trusted() {
        let mut p = Progress::new();
        p.become_incarnation("a", 1);
        p.sent(2, 1);
        // The secondary also holds a key 3 that this master never sent (a script's PUT).
        assert!(p.on_ack(&ack("a", 3), 2, 2));
        assert_eq!(p.acked_key(), 2);
        assert_eq!(p.next_range(3, 10), Some((3, 1)), "key 3 is still sent");
    }

    #[test]
    fn a_new_incarnation_resets_knowledge_and_late_answers_are_ignored() {
        let mut p = Progress::new();
        p.become_incarnation("a", 0);
        p.sent(1, 10);
        assert!(p.on_ack(&ack("a", 10), 1, 10));
        assert_eq!(p.acked_key(), 10);
        // Restarted empty: everything is sent again.
        assert!(p.on_ack(&ack("b", 0), 11, 12));
        assert_eq!(p.acked_key(), 0);
        assert_eq!(p.next_range(12, 100), Some((1, 10)));
        // A late answer from the old process changes nothing.
        assert!(!p.on_ack(&ack("a", 10), 1, 10));
        assert_eq!(p.instance(), Some("b"));
        assert_eq!(p.acked_key(), 0);
    }
}
