//! Keelson's operator: the release catalog, control-plane rendering and, as
//! they land, the reconcilers. The `keelson` binary wires these together.
#![forbid(unsafe_code)]

pub mod admission;
pub mod adopt;
pub mod apply;
pub mod catalog;
pub mod check;
pub mod controlplane;
pub mod dataplane;
pub mod identity;
pub mod inject;
pub mod install;
pub mod leader;
pub mod metrics;
pub mod policy;
pub mod render;
pub mod rollout;
pub mod runtime;

/// The log filter `keelson run` uses when `RUST_LOG` is unset, and the one
/// the install manifests set.
pub const DEFAULT_LOG_FILTER: &str = "info,kube_runtime=warn";
