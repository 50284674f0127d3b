//! Proxy injection as Linkerd's injector does it (interface; the
//! implementation is being written).

use crate::catalog::{KubeVersion, Release};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_crds::ControlPlaneSpec;

/// The workload that owns a pod, as Linkerd's owner labels name it
/// (`Deployment` for a pod of a Deployment's ReplicaSet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// Everything one injection decision is made from.
pub struct Request<'a> {
    /// Name of the ControlPlane the pod is meshed with.
    pub control_plane: &'a str,
    pub spec: &'a ControlPlaneSpec,
    /// The release whose proxy the pod gets.
    pub release: &'a Release,
    pub kubernetes: KubeVersion,
    /// The trust bundle proxies receive, PEM.
    pub trust_anchors_pem: &'a str,
    /// Metadata of the pod's namespace.
    pub namespace: &'a ObjectMeta,
    /// The pod as submitted; `metadata.namespace` is set.
    pub pod: &'a Pod,
    pub owner: Option<Owner>,
}

/// What the webhook does with a pod.
#[derive(Debug)]
pub enum Decision {
    Inject(json_patch::Patch),
    Skip(SkipReason),
}

/// Why a pod is left alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("injection is not enabled for this pod or its namespace")]
    NotEnabled,
}

/// Decides whether and how to inject `req.pod`.
pub fn inject(_req: &Request<'_>) -> Decision {
    Decision::Skip(SkipReason::NotEnabled)
}
