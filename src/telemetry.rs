//! Logging (SPEC §9): every event goes to stdout and is appended to `log.file`, one line per
//! event with time, level, node name, message and fields.
//!
//! Several nodes may append to the same file (docker-compose shares `./log/app.log`): each
//! event is written with one `write` on a file opened in append mode, so lines from different
//! processes interleave but never tear. Writing happens on a background thread
//! (`tracing_appender::non_blocking`) so a slow disk or terminal does not stall requests; the
//! returned guards flush it at exit. A burst of events is written with one syscall
//! ([`WholeEvents`]).

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
    let mut guards = Vec::new();
    let filter = || EnvFilter::try_new(crate::config::level_directive(level));

    let (stdout, g) = tracing_appender::non_blocking(WholeEvents::new(std::io::stdout()));
    guards.push(g);
    let stdout_layer = tracing_subscriber::fmt::layer()
        .with_writer(stdout)
        .with_ansi(false)
        .event_format(NodeFormat {
            node: node.to_string(),
        })
        .with_filter(filter()?);

    let file_layer = if file.as_os_str().is_empty() {
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
        let (w, g) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .finish(WholeEvents::new(f));
        guards.push(g);
        Some(
            tracing_subscriber::fmt::layer()
                .with_writer(w)
                .with_ansi(false)
                .event_format(NodeFormat {
                    node: node.to_string(),
                })
                .with_filter(filter()?),
        )
    };

    tracing_subscriber::registry()
        .with(stdout_layer)
        .with(file_layer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(guards)
}
