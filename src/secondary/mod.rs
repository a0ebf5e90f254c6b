//! What only a secondary has: the test hooks of its replication endpoint ([`faults`]:
//! `/delay` and injected errors). Storing batches — reconciling with the master's epoch
//! history first, hiding what lies beyond a gap — is the store's and its writer's
//! (`crate::storage`); the endpoints are in `crate::http::secondary`.

pub mod faults;
