//! Gateway API route kinds Linkerd bundles at versions the `gateway-api`
//! crate no longer carries: TLSRoute and TCPRoute v1alpha2. The crate (Gateway
//! API v1.5) has TLSRoute only at v1, which requires `hostnames` and
//! `backendRefs`, and TCPRoute v1alpha2 only in its experimental channel, with
//! required `backendRefs` and a newer field. These keep the v1alpha2 shape of
//! the bundles Linkerd ships (v0.7.1 and v1.1.1: `rules` required, the rest
//! optional) and reuse the crate's types for references and status, whose
//! shape is the same.

use gateway_api::apis::standard::tlsroutes::{
    TlsRouteParentRefs as ParentReference, TlsRouteRulesBackendRefs as BackendRef,
    TlsRouteStatus as RouteStatus,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Routes TLS connections by SNI (gateway.networking.k8s.io/v1alpha2).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1alpha2",
    kind = "TLSRoute",
    root = "TlsRoute",
    namespaced,
    status = "RouteStatus",
    doc = "Routes TLS connections by their SNI hostname."
)]
#[serde(rename_all = "camelCase")]
pub struct TlsRouteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostnames: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_refs: Option<Vec<ParentReference>>,
    pub rules: Vec<RouteRule>,
}

/// Routes TCP connections (gateway.networking.k8s.io/v1alpha2).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1alpha2",
    kind = "TCPRoute",
    root = "TcpRoute",
    namespaced,
    status = "RouteStatus",
    doc = "Routes TCP connections to backends."
)]
#[serde(rename_all = "camelCase")]
pub struct TcpRouteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_refs: Option<Vec<ParentReference>>,
    pub rules: Vec<RouteRule>,
}

/// Where a TLSRoute's or TCPRoute's connections go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_refs: Option<Vec<BackendRef>>,
    /// Names the rule, for policy attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The kinds Linkerd's bundles serve at Gateway API v1 (and, with the same
/// types, at v1beta1 and v1alpha2), straight from the `gateway-api` crate.
pub use gateway_api::apis::standard::{grpcroutes::GrpcRoute, httproutes::HttpRoute};
