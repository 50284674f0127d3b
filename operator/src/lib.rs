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
