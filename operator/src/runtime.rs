//! Everything `keelson run` runs, wired together: the admission webhooks on
//! every replica, the reconcilers (ControlPlane, DataPlane) on the elected
//! leader only, stopped by one shutdown signal.

use crate::admission;
use crate::catalog::KubeVersion;
use crate::leader::{self, LeaderOnly, lease};
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
    #[error(transparent)]
    Lease(#[from] lease::LeaseError),
    #[error(transparent)]
    Leader(#[from] leader::LeaderError),
}

/// How long the reconcilers may take to finish on shutdown, within
/// Kubernetes' default 30 s termination grace period.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(20);

/// The sockets the operator serves on, bound by the caller (so a port
/// conflict is reported before anything starts).
pub struct Listeners {
    /// HTTPS for the admission webhooks.
    pub webhooks: TcpListener,
    /// Plain HTTP for `/metrics` and `/live`; `None` serves no admin endpoint.
    pub admin: Option<TcpListener>,
}

/// Runs the operator until `shutdown` completes: the reconcilers finish the
/// work under way and hand the lease back, and the webhook server drains.
pub async fn run(
    client: Client,
    admission: admission::Config,
    election: lease::Config,
    policy: policy::Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), RuntimeError> {
    election.validate()?;
    let kubernetes = kubernetes_version(&client).await?;
    let metrics = Arc::new(Metrics::default());
    let client = metrics::counting(client, &metrics);
    // A reconciler that stops by itself stops the whole replica.
    let (failed, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = futures::future::select(Box::pin(shutdown), stopped)
        .map(|_| ())
        .shared();
    if let Some(admin) = listeners.admin {
        tokio::spawn(metrics::serve_admin(
            admin,
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
    }
    let (elector, leadership) = lease::elector(client.clone(), election, Arc::clone(&metrics));
    let reconcilers = LeaderOnly::new(DRAIN)
        .task("controlplane", {
            let (client, metrics) = (client.clone(), Arc::clone(&metrics));
            let granted = admission.control_plane_namespaces.clone();
            let own = admission.namespace.clone();
            move |stop| {
                crate::controlplane::run(
                    client.clone(),
                    Arc::clone(&metrics),
                    granted.clone(),
                    own.clone(),
                    stop,
                )
            }
        })
        .task("dataplane", {
            let (client, metrics) = (client.clone(), Arc::clone(&metrics));
            move |stop| {
                crate::dataplane::run(client.clone(), kubernetes, Arc::clone(&metrics), stop)
            }
        })
        .task("policy", {
            let (client, metrics) = (client.clone(), Arc::clone(&metrics));
            move |stop| policy::run(client.clone(), Arc::clone(&metrics), policy.clone(), stop)
        });
    // The lease is handed back only once the reconcilers have stopped.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let electing = elector.run(released.map(|_| ()));
    let leading = {
        let (leadership, shutdown) = (leadership.clone(), shutdown.clone());
        async move {
            let result = reconcilers.run(leadership, shutdown).await;
            if result.is_err() {
                let _ = failed.send(());
            }
            let _ = release.send(());
            result
        }
    };
    let webhooks = admission::run(
        client,
        admission,
        listeners.webhooks,
        kubernetes,
        metrics,
        leadership,
        shutdown,
    );
    let ((), led, served) = tokio::join!(electing, leading, webhooks);
    led?;
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
