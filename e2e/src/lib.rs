//! Keelson's end-to-end harness.
//!
//! [`Cluster`] starts a real etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler on loopback (Kubernetes 1.20.2 built from Debian's source and
//! cached per version) with [`hollow`] nodes standing in for kubelets.
//! [`shared::env`] gives every test of a test binary the same cluster and each
//! test its own namespace.
#![forbid(unsafe_code)]

pub mod argocd;
pub mod cluster;
mod error;
pub mod hollow;
pub mod pki;
mod process;
pub mod shared;

pub use cluster::{Cluster, ClusterOptions, Component};
pub use error::Error;

/// Installs ring as rustls's process-wide crypto provider; kube's TLS client
/// panics without one. Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// User and system CPU time process `pid` (`"self"` for this one) has used,
/// in seconds.
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    use anyhow::Context as _;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which ends at the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("unreadable /proc/pid/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short /proc/pid/stat")?.parse()?)
    };
    // utime and stime (fields 14 and 15), in clock ticks of 1/100 s on Linux.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}
