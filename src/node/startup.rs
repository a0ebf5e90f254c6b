//! [`Application`]: build a node (bind, open, start tasks), report its address, serve until
//! told to stop, then stop every task and wait for them.
//!
//! Binding happens in [`Application::build`], so a caller that asked for port 0 can read the
//! real port from [`Application::local_addr`] before serving.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::http;
use crate::node::Node;

/// A node, bound and started, not yet serving HTTP.
pub struct Application {
    listener: TcpListener,
    router: http::Service,
    limits: crate::config::LimitSettings,
    tasks: Vec<JoinHandle<()>>,
    /// Cancelled once, at shutdown: every background task of the node watches it.
    shutdown: CancellationToken,
    node: std::sync::Arc<Node>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let addr = settings.listen_addr();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (node.listen): {e}"))?;
        let shutdown = CancellationToken::new();
        let limits = settings.limits.clone();
        let (node, tasks) = Node::start(settings, shutdown.clone()).await?;
        // The role it has now, not `node.role`: with failover, `node.role` counts at the very
        // first start only and a restarted node waits for an election as a secondary.
        let role = if node.is_master() {
            crate::config::Role::Master
        } else {
            crate::config::Role::Secondary
        };
        tracing::info!(
            role = ?role,
            listen = %listener.local_addr()?,
            contiguous_key = node.store.contiguous_key(),
            "{} started as {:?} on {}",
            node.name(),
            role,
            listener.local_addr()?
        );
        let router = http::service(node.clone());
        Ok(Application {
            listener,
            router,
            limits,
            tasks,
            shutdown,
            node,
        })
    }

    /// The node: its role can be changed while it serves (`crate::node::role`).
    pub fn node(&self) -> std::sync::Arc<Node> {
        self.node.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `stop` resolves, then shuts the node down.
    pub async fn run_until_stopped(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        let server_stop = shutdown.clone();
        tokio::spawn(async move {
            stop.await;
            tracing::info!("shutting down");
            server_stop.cancel();
        });
        // Waiting appends may block for ever (w not reachable); give requests a moment to
        // finish, then stop serving regardless.
        let serve =
            crate::http::server::serve(self.listener, self.router, &self.limits, shutdown.clone());
        tokio::select! {
            _ = serve => {}
            _ = async {
                shutdown.cancelled().await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            } => {}
        }
        shutdown.cancel();
        self.node.join_role_tasks().await;
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
