//! Everything `keelson run` runs, wired together: the ControlPlane
//! controller and the admission webhooks, stopped by one shutdown signal.

use crate::admission;
use crate::catalog::KubeVersion;
use crate::metrics::{self, Metrics};
use crate::policy;
use futures::FutureExt;
use kube::Client;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Why the operator stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("reading the API server version: {0}")]
    Version(String),
    #[error(transparent)]
    Admission(#[from] admission::AdmissionError),
}

/// Runs the operator until `shutdown` completes: the controllers finish the
/// reconciles under way, and the webhook server drains.
/// The sockets the operator serves on, bound by the caller (so a port
/// conflict is reported before anything starts).
pub struct Listeners {
    /// HTTPS for the admission webhooks.
    pub webhooks: TcpListener,
    /// Plain HTTP for `/metrics` and `/live`; `None` serves no admin endpoint.
    pub admin: Option<TcpListener>,
}

pub async fn run(
    client: Client,
    admission: admission::Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), RuntimeError> {
    run_with(
        client,
        admission,
        listeners,
        policy::Config::default(),
        shutdown,
    )
    .await
}

/// [`run`] with the policy controller's proxy-metrics source and interval
/// chosen by the caller (tests stand in for proxies).
pub async fn run_with(
    client: Client,
    admission: admission::Config,
    listeners: Listeners,
    policy: policy::Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), RuntimeError> {
    let kubernetes = kubernetes_version(&client).await?;
    let metrics = Arc::new(Metrics::default());
    let shutdown = shutdown.shared();
    if let Some(admin) = listeners.admin {
        tokio::spawn(metrics::serve_admin(
            admin,
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
    }
    let controller =
        crate::controlplane::run(client.clone(), Arc::clone(&metrics), shutdown.clone());
    let policy = policy::run(
        client.clone(),
        Arc::clone(&metrics),
        policy,
        shutdown.clone(),
    );
    let webhooks = admission::run(
        client,
        admission,
        listeners.webhooks,
        kubernetes,
        metrics,
        shutdown,
    );
    let ((), (), served) = tokio::join!(controller, policy, webhooks);
    served?;
    Ok(())
}

/// The API server's MAJOR.MINOR.
pub async fn kubernetes_version(client: &Client) -> Result<KubeVersion, RuntimeError> {
    let info = client
        .apiserver_version()
        .await
        .map_err(|e| RuntimeError::Version(e.to_string()))?;
    // Providers append suffixes to the minor version ("27+").
    let minor: String = info
        .minor
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    KubeVersion::try_from(format!("{}.{minor}", info.major)).map_err(RuntimeError::Version)
}
