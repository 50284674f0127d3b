//! Linkerd's policy types (policy.linkerd.io) as Keelson reads them.
//!
//! Linkerd's own CRDs (installed by the ControlPlane) are authoritative for the
//! schema; these types cover the fields Keelson reads and writes, and keep any
//! field they do not know intact on a round trip through the API server.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A port of a set of pods that policy applies to (policy.linkerd.io/v1beta3).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1beta3",
    kind = "Server",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    /// Pods this Server selects; exactly one of `podSelector` and
    /// `externalWorkloadSelector` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// ExternalWorkloads this Server selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_workload_selector: Option<LabelSelector>,
    /// Port number or container port name.
    pub port: IntOrString,
    /// `unknown` (detect), `HTTP/1`, `HTTP/2`, `gRPC`, `opaque` or `TLS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<String>,
    /// Default policy for traffic no authorization matches: one of Linkerd's
    /// default policies; Linkerd treats unset as `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_policy: Option<String>,
}

/// Authorizes clients to reach a Server, route or namespace
/// (policy.linkerd.io/v1alpha1).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "AuthorizationPolicy",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    /// What the policy applies to: a Server, an HTTPRoute, a GRPCRoute or a
    /// Namespace.
    pub target_ref: PolicyTargetRef,
    /// Authentications a client must satisfy: at most one
    /// MeshTLSAuthentication or one ServiceAccount, plus at most one
    /// NetworkAuthentication.
    #[serde(default)]
    pub required_authentication_refs: Vec<PolicyTargetRef>,
}

/// A reference to an object by group, kind and name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetRef {
    /// API group; empty for the core group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
    /// Namespace of the referent; unset means the policy's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Clients authenticated by mesh TLS identity (policy.linkerd.io/v1alpha1).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "MeshTLSAuthentication",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct MeshTlsAuthenticationSpec {
    /// Identity names, or `*` prefixed patterns; exclusive with `identityRefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<Vec<String>>,
    /// ServiceAccounts (or a Namespace) whose identities are authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_refs: Option<Vec<PolicyTargetRef>>,
}

/// Clients authenticated by source network (policy.linkerd.io/v1alpha1).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "NetworkAuthentication",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAuthenticationSpec {
    pub networks: Vec<Network>,
}

/// A network, with exceptions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// CIDR or single address.
    pub cidr: String,
    /// Addresses or CIDRs inside `cidr` that are not part of the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<Vec<String>>,
}
