//! What a master does: replicate its log to every secondary and answer appends once enough
//! nodes hold them.
//!
//! - [`replication`]: one task per secondary (progress, window, backoff), fed from the
//!   writer's tail and the store;
//! - [`acks`]: who holds which key, per node incarnation; wakes appends waiting on their write
//!   concern;
//! - [`health`]: one heartbeat worker per secondary, health states, the quorum and read-only
//!   mode;
//! - [`recovery`]: a master that lost the tail of its log takes it back from a secondary;
//! - the replication client: [`peer`] (typed calls, classified failures) over [`transport`]
//!   (replication connections) over [`http1`] (one HTTP/1.1 client connection).

pub mod acks;
pub mod health;
pub mod http1;
pub mod peer;
pub mod recovery;
pub mod replication;
pub mod transport;
