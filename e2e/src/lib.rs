//! Keelson's end-to-end harness.
//!
//! [`Cluster`] starts a real etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler on loopback (Kubernetes 1.20.2 built from Debian's source and
//! cached per version) with [`hollow`] nodes standing in for kubelets.
//! [`shared::env`] gives every test of a test binary the same cluster and each
//! test its own namespace.
#![forbid(unsafe_code)]

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
