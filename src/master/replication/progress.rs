//! [`Progress`]: what the master knows one secondary holds, and what to send it next.
//!
//! Knowledge is tied to an *incarnation* of the secondary (a random id it picks at every
//! start): a restarted secondary may have lost entries, so when the incarnation changes the
//! knowledge is rebuilt from what the new incarnation reports (its contiguous key), and
//! everything beyond is sent again. Acks from an incarnation that was already replaced are
//! ignored for sending decisions.
//!
//! An answer (to a batch or a heartbeat) may bring in a new incarnation only if its request
//! went out after the current incarnation was learnt ([`Progress::switches`], recorded with
//! each request): an answer to an older request may come from an incarnation that ran *before*
//! the current one (one this master never heard of, so not on the retired list — it answered,
//! then was wiped before its successor was learnt). Taking it as new would count keys the
//! running incarnation does not hold and retire the running one for good (model finding (d) of
//! issue 15, and its heartbeat mirror). The next heartbeat reports whichever incarnation runs,
//! so ignoring such an answer only delays learning it by one heartbeat.
//!
//! Invariants:
//! * `known` only holds keys the current incarnation acknowledged (a 2xx answer to a request
//!   carrying them, or its reported contiguous prefix);
//! * batches are consecutive key ranges that never include a key in `known`;
//! * `next` only moves backwards through [`Progress::go_back`] (after a failure or a restart),
//!   which makes every key not in `known` eligible again.

use crate::domain::rangeset::RangeSet;
use crate::protocol::BatchAck;

/// Replication progress for one secondary; see the module docs.
// Clone, Eq and Hash: the stateright model (`tests/model.rs`) keeps it in its states.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Progress {
    known: RangeSet,
    next: u64,
    instance: Option<String>,
    /// Incarnations that were replaced; their late answers must not switch us back.
    retired: Vec<String>,
    /// How many times the incarnation changed: a request records it when sent, and its answer
    /// may switch the incarnation only if it is unchanged since (see the module docs).
    switches: u64,
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

    /// The incarnation-switch count: to be recorded with a request when it is sent and given
    /// back to [`Progress::on_ack`] with its answer.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// The secondary is (now) incarnation `instance`, holding `1..=contiguous`, as told by the
    /// answer to a request sent when [`Progress::switches`] was `asked_in`. Returns false if
    /// that is an incarnation we already saw replaced, or the request went out before the
    /// current incarnation was learnt (see the module docs): a late answer, which changes
    /// nothing.
    pub fn become_incarnation(&mut self, instance: &str, contiguous: u64, asked_in: u64) -> bool {
        if self.instance.as_deref() == Some(instance) {
            return true;
        }
        if asked_in != self.switches || self.retired.iter().any(|r| r == instance) {
            return false;
        }
        if let Some(old) = self.instance.take() {
            self.retired.push(old);
            if self.retired.len() > 16 {
                self.retired.remove(0);
            }
        }
        self.instance = Some(instance.to_string());
        self.switches += 1;
        self.known.clear();
        if contiguous > 0 {
            self.known.insert(1, contiguous);
        }
        self.go_back();
        true
    }

    /// A 2xx answer to a batch of keys `lo..=hi`, sent when [`Progress::switches`] was
    /// `sent_in`. Returns false when the answer came from a replaced incarnation, or from one
    /// not current whose request went out before the current one was learnt (it may be older
    /// than the current one; see the module docs): it then counts for nothing and teaches us
    /// nothing about what to send.
    ///
    /// Within one incarnation only the keys of the answered request are learnt, not the
    /// secondary's whole contiguous prefix: keys in that prefix that this master never had
    /// acknowledged may hold another message (stored by a script through `PUT /message`), and
    /// believing them held would skip sending them and hide the conflict.
    pub fn on_ack(&mut self, ack: &BatchAck, lo: u64, hi: u64, sent_in: u64) -> bool {
        if self.instance.as_deref() != Some(ack.instance.as_str())
            && !self.become_incarnation(&ack.instance, ack.contiguous_key, sent_in)
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
            unlabelled_from: None,
        }
    }

    #[test]
    fn sends_in_consecutive_batches_and_skips_what_is_known() {
        let mut p = Progress::new();
        assert!(p.become_incarnation("a", 2, 0));
        assert_eq!(p.next_range(10, 3), Some((3, 3)));
        p.sent(3, 3);
        assert_eq!(p.next_range(10, 3), Some((6, 3)));
        p.sent(6, 3);
        // 6..=8 acknowledged before 3..=5: a hole at 3..=5.
        assert!(p.on_ack(&ack("a", 2), 6, 8, p.switches()));
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
        p.become_incarnation("a", 1, 0);
        p.sent(2, 1);
        // The secondary also holds a key 3 that this master never sent (a script's PUT).
        assert!(p.on_ack(&ack("a", 3), 2, 2, p.switches()));
        assert_eq!(p.acked_key(), 2);
        assert_eq!(p.next_range(3, 10), Some((3, 1)), "key 3 is still sent");
    }

    #[test]
    fn a_new_incarnation_resets_knowledge_and_late_answers_are_ignored() {
        let mut p = Progress::new();
        p.become_incarnation("a", 0, 0);
        p.sent(1, 10);
        let sent_in = p.switches();
        assert!(p.on_ack(&ack("a", 10), 1, 10, sent_in));
        assert_eq!(p.acked_key(), 10);
        // Restarted empty: everything is sent again.
        assert!(p.on_ack(&ack("b", 0), 11, 12, sent_in));
        assert_eq!(p.acked_key(), 0);
        assert_eq!(p.next_range(12, 100), Some((1, 10)));
        // A late answer from the old process changes nothing.
        assert!(!p.on_ack(&ack("a", 10), 1, 10, sent_in));
        assert_eq!(p.instance(), Some("b"));
        assert_eq!(p.acked_key(), 0);
    }

    /// Model finding (d) of issue 15: incarnation 1 is known; key 1 goes out; the secondary
    /// restarts as incarnation 2, stores key 1 and answers (the answer in flight); it is wiped
    /// and restarts as incarnation 3, which the heartbeat brings in; then incarnation 2's late
    /// answer arrives. Incarnation 2 was never seen, so it is not on the retired list: it must
    /// neither be counted nor displace incarnation 3, whose answers must keep counting.
    #[test]
    fn model_15_d_a_late_answer_of_an_unseen_older_incarnation_is_ignored() {
        let mut p = Progress::new();
        assert!(p.become_incarnation("1", 0, 0), "heartbeat: incarnation 1");
        assert_eq!(p.next_range(1, 10), Some((1, 1)));
        p.sent(1, 1);
        let sent_in = p.switches();
        // The heartbeat of incarnation 3 (wiped: holds nothing), sent after the batch.
        assert!(p.become_incarnation("3", 0, sent_in));
        // The late answer of incarnation 2 to the batch sent before 3 was learnt.
        assert!(
            !p.on_ack(&ack("2", 1), 1, 1, sent_in),
            "incarnation 2's late answer was taken"
        );
        assert_eq!(p.instance(), Some("3"), "incarnation 3 was displaced");
        assert_eq!(
            p.acked_key(),
            0,
            "key 1 is counted, which only the master holds"
        );
        // Incarnation 3 is still current: its answer to the resent key 1 counts.
        p.go_back();
        assert_eq!(p.next_range(1, 10), Some((1, 1)));
        p.sent(1, 1);
        assert!(p.on_ack(&ack("3", 1), 1, 1, p.switches()));
        assert_eq!(p.acked_key(), 1);
    }

    /// An answer to a request sent after the current incarnation was learnt still brings in a
    /// new one (a restart the heartbeat has not reported yet), as before.
    #[test]
    fn an_answer_to_a_request_sent_in_the_current_incarnation_brings_in_a_newer_one() {
        let mut p = Progress::new();
        p.become_incarnation("1", 0, 0);
        p.sent(1, 2);
        assert!(p.on_ack(&ack("2", 2), 1, 2, p.switches()));
        assert_eq!(p.instance(), Some("2"));
        assert_eq!(p.acked_key(), 2);
    }

    /// The heartbeat mirror of finding (d): incarnation 2's heartbeat (it holds key 1) is
    /// answered before it is wiped; incarnation 3 then answers a batch and is brought in; 2's
    /// heartbeat, asked before 3 was learnt, must neither bring 2 in nor retire 3.
    #[test]
    fn model_15_d_a_late_heartbeat_of_an_unseen_older_incarnation_is_ignored() {
        let mut p = Progress::new();
        assert!(p.become_incarnation("1", 0, 0));
        let asked_in = p.switches(); // incarnation 2's heartbeat goes out
        p.sent(1, 2);
        assert!(p.on_ack(&ack("3", 0), 2, 2, p.switches()));
        assert!(
            !p.become_incarnation("2", 1, asked_in),
            "incarnation 2's late heartbeat was taken"
        );
        assert_eq!(p.instance(), Some("3"));
        assert_eq!(
            p.acked_key(),
            0,
            "key 1 is counted, which incarnation 3 lacks"
        );
        // A heartbeat asked now tells the truth, whichever incarnation runs.
        assert!(p.become_incarnation("2", 1, p.switches()));
        assert_eq!(p.instance(), Some("2"));
    }
}
