//! Logging (SPEC §9): every event goes to stdout and is appended to `log.file`, one line per
//! event with time, level, node name, message and fields.
//!
//! Several nodes may append to the same file (docker-compose shares `./log/app.log`): each
//! event is written with one `write` on a file opened in append mode, so lines from different
//! processes interleave but never tear. Each event is formatted once and written to both sinks
//! by one background thread (`tracing_appender::non_blocking`), so a slow disk or terminal does
//! not stall requests; the returned guard flushes it at exit. Per-message events go through a
//! [`LineBudget`] so that their rate, and the cost of logging them, stays bounded under load. A burst of events is written with one syscall
//! (`WholeEvents`).

use std::fmt;
use std::io::Write;
use std::path::Path;

use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Collects whole events and hands them to the file or terminal in one `write` per burst.
///
/// The `non_blocking` worker writes each event with one `write_all`, drains whatever else is
/// queued, then flushes; buffering here turns a burst of events into one syscall instead of
/// one per event. Events are never split: the buffer is written out *before* an event that
/// would overflow it, so each `write` to an `O_APPEND` file holds whole lines and lines from
/// several processes sharing the file never tear.
struct WholeEvents<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

const EVENT_BUFFER: usize = 64 * 1024;

impl<W: Write> WholeEvents<W> {
    fn new(inner: W) -> Self {
        WholeEvents {
            inner,
            buf: Vec::with_capacity(EVENT_BUFFER),
        }
    }

    fn write_out(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let r = self.inner.write_all(&self.buf);
            self.buf.clear();
            r?;
        }
        Ok(())
    }
}

impl<W: Write> Write for WholeEvents<W> {
    fn write(&mut self, event: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + event.len() > EVENT_BUFFER {
            self.write_out()?;
        }
        self.buf.extend_from_slice(event);
        Ok(event.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_out()?;
        self.inner.flush()
    }
}

/// `2026-11-27T10:00:00.123456Z  INFO master: message field=value`
struct NodeFormat {
    node: String,
}

impl<S, N> FormatEvent<S, N> for NodeFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut writer)?;
        write!(writer, " {:>5} {}: ", event.metadata().level(), self.node)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the global subscriber for node `node` at `level` (a `log.level` value), logging
/// to stdout and, unless `file` is empty, appending to `file`. Keep the guards until exit.
pub fn init(node: &str, level: &str, file: &Path) -> anyhow::Result<Vec<WorkerGuard>> {
    let file = if file.as_os_str().is_empty() {
        None
    } else {
        if let Some(dir) = file.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("cannot create the log directory {}: {e}", dir.display())
            })?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", file.display()))?;
        Some(WholeEvents::new(f))
    };
    // One layer formats each event once; one background thread writes it to both sinks.
    // Lossy: if the sinks stall (a terminal nobody reads), events are dropped rather than
    // blocking the node; with the per-kind line budget the rate is low enough for that not to
    // happen otherwise.
    let (writer, guard) = tracing_appender::non_blocking(Tee {
        stdout: WholeEvents::new(std::io::stdout()),
        file,
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        .event_format(NodeFormat {
            node: node.to_string(),
        })
        .with_filter(EnvFilter::try_new(crate::config::level_directive(level))?);
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(vec![guard])
}

/// Writes every event to stdout and, when configured, to the log file.
struct Tee {
    stdout: WholeEvents<std::io::Stdout>,
    file: Option<WholeEvents<std::fs::File>>,
}

impl Write for Tee {
    fn write(&mut self, event: &[u8]) -> std::io::Result<usize> {
        // stdout is best effort (a closed pipe must not silence the file); the file's errors
        // are reported.
        let _ = self.stdout.write_all(event);
        if let Some(f) = self.file.as_mut() {
            f.write_all(event)?;
        }
        Ok(event.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.stdout.flush();
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

/// A budget of log lines per second for one kind of high-rate event (appends, replication
/// batches).
///
/// Under light load every event gets its own line, as SPEC §9 asks. Under heavy load, lines
/// for tens of thousands of events a second would cost more CPU than the events themselves
/// and bury everything else, so past the budget events are only counted, and the next line
/// of that kind says how many were not logged one by one. Nothing about rarer events (retries,
/// health and mode changes, recovery) is ever suppressed: they do not go through a budget.
pub struct LineBudget {
    per_second: u32,
    state: parking_lot::Mutex<BudgetState>,
}

struct BudgetState {
    window: std::time::Instant,
    used: u32,
    suppressed: u64,
    suppressed_since: Option<std::time::Instant>,
}

/// What a [`LineBudget`] allows for one event.
pub enum Admit {
    /// Log it; first say that `n` events were not logged during the `span` before.
    Yes {
        suppressed: Option<(u64, std::time::Duration)>,
    },
    /// Over the budget: don't log it (it has been counted).
    No,
}

impl Admit {
    /// True if the event gets its line; first logs how many `what` were not logged.
    pub fn log(self, what: &str) -> bool {
        match self {
            Admit::Yes { suppressed } => {
                if let Some((n, span)) = suppressed {
                    tracing::info!(
                        suppressed = n,
                        "{n} more {what} in the last {:.1} s were not logged one by one (over log.max_event_lines_per_s)",
                        span.as_secs_f64()
                    );
                }
                true
            }
            Admit::No => false,
        }
    }
}

impl LineBudget {
    /// `per_second = 0` means no limit.
    pub fn new(per_second: u32) -> Self {
        LineBudget {
            per_second,
            state: parking_lot::Mutex::new(BudgetState {
                window: std::time::Instant::now(),
                used: 0,
                suppressed: 0,
                suppressed_since: None,
            }),
        }
    }

    /// Whether the next event of this kind gets a line.
    pub fn admit(&self) -> Admit {
        if self.per_second == 0 {
            return Admit::Yes { suppressed: None };
        }
        let now = std::time::Instant::now();
        let mut s = self.state.lock();
        if now.duration_since(s.window) >= std::time::Duration::from_secs(1) {
            s.window = now;
            s.used = 0;
        }
        if s.used < self.per_second {
            s.used += 1;
            let suppressed = (s.suppressed > 0).then(|| {
                let since = s
                    .suppressed_since
                    .map_or(std::time::Duration::ZERO, |t| now - t);
                (std::mem::take(&mut s.suppressed), since)
            });
            s.suppressed_since = None;
            Admit::Yes { suppressed }
        } else {
            s.suppressed += 1;
            s.suppressed_since.get_or_insert(now);
            Admit::No
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_admits_up_to_the_limit_then_counts() {
        let b = LineBudget::new(3);
        for _ in 0..3 {
            assert!(matches!(b.admit(), Admit::Yes { suppressed: None }));
        }
        for _ in 0..5 {
            assert!(matches!(b.admit(), Admit::No));
        }
        // A new window: the first line reports the 5 not logged.
        b.state.lock().window -= std::time::Duration::from_secs(2);
        match b.admit() {
            Admit::Yes {
                suppressed: Some((5, _)),
            } => {}
            _ => panic!("expected a report of 5 suppressed events"),
        }
        assert!(matches!(
            LineBudget::new(0).admit(),
            Admit::Yes { suppressed: None }
        ));
    }
}
