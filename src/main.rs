//! The `replog` binary: parse the command line, then hand over to the library.

use clap::Parser;
use replog::cmd::cli::{Cli, Command};

// Every request allocates a little (bodies, JSON, futures); mimalloc's thread-local free lists
// make that markedly cheaper than glibc's allocator on the append path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. } | Command::Cluster { .. }) {
        // The client commands print for pipelines (`replog read | head`): a reader that
        // closes the pipe ends the process quietly, as with any Unix tool, instead of making
        // `println!` panic. Servers keep Rust's default (SIGPIPE ignored, EPIPE as an error).
        // SAFETY: called before any thread starts; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // `serve` reads its settings first: they say how many runtime threads the node gets.
    let mut settings = None;
    if let Command::Serve { config } = &cli.command {
        match replog::config::Settings::load(config.as_deref(), std::env::vars()) {
            Ok(s) => settings = Some(s),
            Err(e) => return exit_with(anyhow::Error::from(e)),
        }
    }
    let threads = settings.as_ref().map_or(0, |s| s.node.worker_threads);
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b.enable_all().build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve { .. } => match settings {
                Some(s) => serve(s).await,
                None => Ok(()),
            },
            Command::Cluster {
                secondaries,
                base_port,
                data_dir,
                host,
                log_file,
                config,
                worker_threads,
                failover,
            } => {
                replog::cmd::cluster::run(replog::cmd::cluster::ClusterOptions {
                    secondaries,
                    base_port,
                    data_dir,
                    host,
                    log_file: log_file.into(),
                    extra_config: config,
                    worker_threads,
                    failover,
                })
                .await
            }
            Command::Check { dir } => check(&dir),
            other => replog::cmd::client::run(other).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => exit_with(e),
    }
}

/// Prints the error as one line and picks the exit code.
fn exit_with(e: anyhow::Error) -> std::process::ExitCode {
    // One line, whatever the causes.
    let line = format!("{e:#}").replace('\n', " ");
    eprintln!("error: {line}");
    if e.downcast_ref::<replog::cmd::client::AppendPending>()
        .is_some()
    {
        std::process::ExitCode::from(replog::cmd::client::EXIT_PENDING)
    } else {
        std::process::ExitCode::FAILURE
    }
}

async fn serve(settings: replog::config::Settings) -> anyhow::Result<()> {
    let _guards =
        replog::telemetry::init(&settings.node.name, &settings.log.level, &settings.log.file)?;
    let app = match replog::node::startup::Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            return Err(e);
        }
    };
    app.run_until_stopped(replog::node::startup::shutdown_signal())
        .await
}

/// `replog check DIR`: prints the report; exits non-zero unless the directory is clean.
fn check(dir: &std::path::Path) -> anyhow::Result<()> {
    let report = replog::storage::check::check(dir)
        .map_err(|e| anyhow::anyhow!("cannot check {}: {e}", dir.display()))?;
    println!("{report}");
    if report.is_clean() {
        Ok(())
    } else if report.would_open() {
        anyhow::bail!(
            "{} has problems a node repairs when it opens it",
            dir.display()
        )
    } else {
        anyhow::bail!("{} has problems a node cannot start with", dir.display())
    }
}
