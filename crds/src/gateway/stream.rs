//! TLSRoute and TCPRoute (gateway.networking.k8s.io/v1alpha2), Gateway API
//! v1.1.1 experimental: connections routed as a whole.

use super::{BackendRef, HOSTNAME, ParentReference, RouteStatus, parent_refs_rules};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Routes TLS connections by SNI (gateway.networking.k8s.io/v1alpha2).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1alpha2",
    kind = "TLSRoute",
    root = "TlsRoute",
    namespaced,
    status = "RouteStatus",
    doc = "Routes TLS connections by their SNI hostname.",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TlsRouteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = parent_refs_rules()))]
    pub parent_refs: Option<Vec<ParentReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253), regex(pattern = HOSTNAME)))]
    pub hostnames: Option<Vec<String>>,
    #[schemars(length(min = 1, max = 16))]
    pub rules: Vec<StreamRouteRule>,
}

/// Routes TCP connections (gateway.networking.k8s.io/v1alpha2).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1alpha2",
    kind = "TCPRoute",
    root = "TcpRoute",
    namespaced,
    status = "RouteStatus",
    doc = "Routes TCP connections to backends.",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TcpRouteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = parent_refs_rules()))]
    pub parent_refs: Option<Vec<ParentReference>>,
    #[schemars(length(min = 1, max = 16))]
    pub rules: Vec<StreamRouteRule>,
}

/// Where a TLSRoute's or TCPRoute's connections go.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamRouteRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub backend_refs: Option<Vec<BackendRef>>,
}
