//! `keelson-cluster`: runs the e2e test cluster in the foreground, for `make demo`
//! and for running tests against a long-lived cluster.
#![forbid(unsafe_code)]

use clap::Parser;
use keelson_e2e::{Cluster, ClusterOptions};
use std::path::PathBuf;

/// Start a local Kubernetes 1.20.2 cluster (etcd, apiserver, controller-manager,
/// scheduler, hollow nodes) on loopback and keep it running until interrupted.
#[derive(Parser, Debug)]
struct Args {
    /// Directory for data, logs and the kubeconfig; emptied at start.
    #[arg(long, default_value = ".keelson/cluster")]
    dir: PathBuf,
    /// Number of hollow nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube_client=off".into()),
        )
        .init();
    keelson_e2e::install_crypto_provider();
    let args = Args::parse();
    let dir = std::path::absolute(&args.dir)?;
    let mut cluster = Cluster::start(ClusterOptions {
        nodes: args.nodes,
        dir: Some(dir.clone()),
    })
    .await?;
    // Written last: its presence tells scripts the cluster is usable.
    std::fs::write(dir.join("ready"), std::process::id().to_string())?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    let outcome = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = term.recv() => break Ok(()),
            _ = tick.tick() => if let Err(e) = cluster.check() { break Err(e) },
        }
    };
    let _ = std::fs::remove_file(dir.join("ready"));
    drop(cluster);
    Ok(outcome?)
}
