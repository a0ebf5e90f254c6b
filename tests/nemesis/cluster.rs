//! What the nemesis needs of a cluster, whatever runs it: the node URLs and the faults.
//!
//! Two backends: [`TestCluster`] (real `replog serve` processes on loopback: SIGSTOP/SIGCONT,
//! SIGKILL, the data dir removed) and [`crate::docker::DockerCluster`] (compose services:
//! `docker pause`, `docker kill -s KILL` + `docker start`, the data volume removed,
//! `docker network disconnect`/`connect`). The schedule runner (`run.rs`) is generic over
//! this trait, so both run the same schedules and the same checker.
//!
//! Each call returns once the fault is in effect (a paused node answers nothing any more, a
//! killed one is gone, a partitioned one is off the network) or once it is lifted (resumed,
//! process started, network reconnected): the runner takes its times around the calls, so a
//! fault's recorded span always covers the fault itself. A restarted node may still be
//! starting when `start` returns; the runner waits for its `/heartbeat`.

use std::path::Path;

use crate::helpers::TestCluster;

/// Node 0 is the master, nodes 1.. its secondaries. Errors are a text for the report (a
/// problem of the run, which fails the schedule).
#[allow(async_fn_in_trait)] // used only generically, never as `dyn`, and never sent
pub trait Cluster {
    /// The backend, for the report ("processes", "docker").
    fn kind(&self) -> &'static str;
    /// Where the test's clients reach node `i`.
    fn url(&self, i: usize) -> String;
    /// Whether [`Cluster::partition`] is possible (not on loopback).
    fn can_partition(&self) -> bool;
    async fn pause(&mut self, i: usize) -> Result<(), String>;
    async fn resume(&mut self, i: usize) -> Result<(), String>;
    /// kill -9: no shutdown of any kind.
    async fn kill(&mut self, i: usize) -> Result<(), String>;
    /// Starts killed node `i` again, on its data.
    async fn start(&mut self, i: usize) -> Result<(), String>;
    /// kill -9, every byte of its data gone, started again on an empty data dir.
    async fn wipe(&mut self, i: usize) -> Result<(), String>;
    /// Cuts node `i` off the cluster network: nobody reaches it, it reaches nobody (the
    /// test's clients included).
    async fn partition(&mut self, i: usize) -> Result<(), String>;
    async fn heal_partition(&mut self, i: usize) -> Result<(), String>;
    /// Saves what the nodes printed and logged into `dir`, for a failing schedule.
    async fn keep_output(&self, dir: &Path);
}

impl Cluster for TestCluster {
    fn kind(&self) -> &'static str {
        "processes"
    }

    fn url(&self, i: usize) -> String {
        TestCluster::url(self, i)
    }

    fn can_partition(&self) -> bool {
        false
    }

    async fn pause(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].pause();
        Ok(())
    }

    async fn resume(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].resume();
        Ok(())
    }

    async fn kill(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].kill();
        Ok(())
    }

    async fn start(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].start();
        Ok(())
    }

    async fn wipe(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].kill();
        let dir = self.dir().join("data").join(&self.nodes[i].name);
        let wiped = std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("could not wipe {}: {e}", dir.display()));
        self.nodes[i].start();
        wiped
    }

    async fn partition(&mut self, _i: usize) -> Result<(), String> {
        Err("processes on loopback cannot be partitioned".into())
    }

    async fn heal_partition(&mut self, _i: usize) -> Result<(), String> {
        Err("processes on loopback cannot be partitioned".into())
    }

    async fn keep_output(&self, dir: &Path) {
        for n in &self.nodes {
            let _ = std::fs::copy(&n.out, dir.join(format!("{}.out", n.name)));
        }
        let _ = std::fs::copy(&self.log, dir.join("app.log"));
    }
}
