//! The `replog` binary: parse the command line, then hand over to the library.

use clap::Parser;
use replog::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(config).await,
            Command::Cluster {
                secondaries,
                base_port,
                data_dir,
                host,
                log_file,
                config,
            } => {
                replog::cluster::run(replog::cluster::ClusterOptions {
                    secondaries,
                    base_port,
                    data_dir,
                    host,
                    log_file: log_file.into(),
                    extra_config: config,
                })
                .await
            }
            Command::Check { dir } => check(&dir),
            other => replog::client::run(other).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the causes.
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {line}");
            if e.downcast_ref::<replog::client::AppendPending>().is_some() {
                std::process::ExitCode::from(replog::client::EXIT_PENDING)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

async fn serve(config: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let settings = replog::config::Settings::load(config.as_deref(), std::env::vars())?;
    let _guards =
        replog::telemetry::init(&settings.node.name, &settings.log.level, &settings.log.file)?;
    let app = match replog::startup::Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            return Err(e);
        }
    };
    app.run_until_stopped(replog::startup::shutdown_signal())
        .await
}

/// `replog check DIR`: prints the report; exits non-zero unless the directory is clean.
fn check(dir: &std::path::Path) -> anyhow::Result<()> {
    let report = replog::log::check::check(dir)
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
