//! What the nemesis needs of a cluster, whatever runs it: the node URLs and the faults.
//!
//! Two backends: [`TestCluster`] (real `replog serve` processes on loopback: SIGSTOP/SIGCONT,
//! SIGKILL, the data dir removed, a segment's tail cut) and [`crate::docker::DockerCluster`]
//! (compose services: `docker pause`, `docker kill -s KILL` + `docker start`, the data volume
//! removed, a segment's tail cut through `docker cp`, `docker network disconnect`/`connect`). The schedule runner (`run.rs`) is generic over
//! this trait, so both run the same schedules and the same checker.
//!
//! Each call returns once the fault is in effect (a paused node answers nothing any more, a
//! killed one is gone, a partitioned one is off the network) or once it is lifted (resumed,
//! process started, network reconnected): the runner takes its times around the calls, so a
//! fault's recorded span always covers the fault itself. A restarted node may still be
//! starting when `start` returns; the runner waits for its `/heartbeat`.

use std::path::{Path, PathBuf};

use crate::helpers::TestCluster;

/// Node 0 is the master (with failover: the node configured as master, which stands first),
/// nodes 1.. its secondaries. Errors are a text for the report (a problem of the run, which
/// fails the schedule).
#[allow(async_fn_in_trait)] // used only generically, never as `dyn`, and never sent
pub trait Cluster {
    /// The backend, for the report ("processes", "docker").
    fn kind(&self) -> &'static str;
    /// Where the test's clients reach node `i`.
    fn url(&self, i: usize) -> String;
    /// The URL the nodes know node `i` by (its failover member URL: what `/health`'s
    /// `master` and a 421 name); on loopback the same as [`Cluster::url`], in compose the
    /// service name, which does not resolve on the host.
    fn member_url(&self, i: usize) -> String;
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
    /// What a power loss does to the disk of killed node `i`: cuts the tail of its newest
    /// segment (see [`cut_newest_segment`]; `choose` gets the bytes after the header and says
    /// how many of them to cut). Returns what it did, for the fault log.
    async fn cut_tail(
        &mut self,
        i: usize,
        choose: impl FnOnce(u64) -> u64,
    ) -> Result<String, String>;
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

    fn member_url(&self, i: usize) -> String {
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

    async fn cut_tail(
        &mut self,
        i: usize,
        choose: impl FnOnce(u64) -> u64,
    ) -> Result<String, String> {
        if self.nodes[i].is_running() {
            return Err(format!(
                "{} is running: only a killed node's segment is cut",
                self.nodes[i].name
            ));
        }
        let dir = self.dir().join("data").join(&self.nodes[i].name);
        cut_newest_segment(&dir, choose).map(|(_, text)| text)
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

/// A segment file's header ("RPLOGSEG", format version, number): a power loss never takes
/// it (the segment was created, and its header fsynced, before any record went in).
pub const SEGMENT_HEADER: u64 = 16;

/// Cuts the tail of the newest segment in data dir `dir` (`NNNNNNNNNN.seg`, the highest
/// number): `choose(room)` says how many of the `room` bytes after the header go (more than
/// `room` counts as `room`). Under fsync `never` nothing of the active segment is sure to be
/// on disk, so any such cut is what a power loss can do — a record torn mid-way included
/// (recovery cuts torn tails). Returns the file and what was done; a dir without a segment
/// (a wiped node that never wrote one) is left alone.
pub fn cut_newest_segment(
    dir: &Path,
    choose: impl FnOnce(u64) -> u64,
) -> Result<(Option<PathBuf>, String), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("could not list {}: {e}", dir.display()))?;
    let newest = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "seg")
                && p.file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        })
        .max_by_key(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
        });
    let Some(seg) = newest else {
        return Ok((
            None,
            format!("no segment in {}: nothing to cut", dir.display()),
        ));
    };
    let name = seg
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let len = std::fs::metadata(&seg)
        .map_err(|e| format!("could not stat {}: {e}", seg.display()))?
        .len();
    let room = len.saturating_sub(SEGMENT_HEADER);
    let cut = choose(room).min(room);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .map_err(|e| format!("could not open {}: {e}", seg.display()))?;
    file.set_len(len - cut)
        .map_err(|e| format!("could not truncate {}: {e}", seg.display()))?;
    Ok((
        Some(seg),
        format!(
            "cut {cut} of its last {room} bytes off {name} ({len} → {} bytes)",
            len - cut
        ),
    ))
}
