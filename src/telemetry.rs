//! Logging (SPEC §9): every event goes to stdout and is appended to `log.file`, one line per
//! event with time, level, node name, message and fields.
//!
//! Several nodes may append to the same file (docker-compose shares `./log/app.log`): each
//! event is written with one `write` on a file opened in append mode, so lines from different
//! processes interleave but never tear. Writing happens on a background thread
//! (`tracing_appender::non_blocking`) so a slow disk or terminal does not stall requests; the
//! returned guards flush it at exit.

use std::fmt;
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

    let (stdout, g) = tracing_appender::non_blocking(std::io::stdout());
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
            .finish(f);
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
