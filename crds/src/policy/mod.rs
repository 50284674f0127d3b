//! Linkerd's policy API (policy.linkerd.io): the types Keelson reads, and the
//! schemas of the CustomResourceDefinitions a ControlPlane installs.
//!
//! Modelled on `charts/linkerd-crds/templates/policy/` and the policy
//! controller's types (`policy-controller/k8s/api`) at edge-24.11.8,
//! edge-25.4.4 and edge-25.10.7, which define these kinds identically. The
//! schemas state what the chart's state: required fields, enums, defaults,
//! one-of rules, name patterns and length limits (`e2e/hack/crd-parity.sh`
//! compares them fact by fact). Where the chart's schema differs from the
//! type Keelson reads, `#[schemars(with = ...)]` names a schema-only type.
//!
//! The types of the current version of each kind sit at the top of this
//! module; the older versions Linkerd still serves, where their schema
//! differs, in a module named after the version.

use crate::schema;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod httproute;
pub use httproute::{HttpRoute, HttpRouteSpec, HttpRouteStatus, v1beta1 as httproute_v1beta1};

/// A port of a set of pods or ExternalWorkloads that policy applies to.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1beta3",
    kind = "Server",
    namespaced,
    shortname = "srv",
    doc = "A port of a set of pods or ExternalWorkloads that Linkerd policy applies to.",
    printcolumn = r#"{"name":"Port","type":"string","description":"The port the server is listening on","jsonPath":".spec.port"}"#,
    printcolumn = r#"{"name":"Protocol","type":"string","description":"The protocol of the server","jsonPath":".spec.proxyProtocol"}"#,
    printcolumn = r#"{"name":"Access Policy","type":"string","description":"The default access policy applied when the traffic doesn't match any of the policy rules","jsonPath":".spec.accessPolicy"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["podSelector"]}, {"required": ["externalWorkloadSelector"]}]))]
pub struct ServerSpec {
    /// Pods this Server selects; exactly one of `podSelector` and
    /// `externalWorkloadSelector` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<schema::LabelSelector>")]
    pub pod_selector: Option<LabelSelector>,
    /// ExternalWorkloads this Server selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<schema::LabelSelector>")]
    pub external_workload_selector: Option<LabelSelector>,
    /// Port number or container port name.
    pub port: IntOrString,
    /// `unknown` (detect), `HTTP/1`, `HTTP/2`, `gRPC`, `opaque` or `TLS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "unknown"))]
    pub proxy_protocol: Option<String>,
    /// Default policy for traffic no authorization matches: one of Linkerd's
    /// default policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "deny"))]
    pub access_policy: Option<String>,
}

/// Server as of policy.linkerd.io/v1beta2: `externalWorkloadSelector`, no
/// `accessPolicy`.
pub mod v1beta2 {
    use super::*;

    /// A port of a set of pods or ExternalWorkloads.
    #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
    #[kube(
        group = "policy.linkerd.io",
        version = "v1beta2",
        kind = "Server",
        namespaced,
        shortname = "srv",
        doc = "A port of a set of pods or ExternalWorkloads that Linkerd policy applies to.",
        printcolumn = r#"{"name":"Port","type":"string","description":"The port the server is listening on","jsonPath":".spec.port"}"#,
        printcolumn = r#"{"name":"Protocol","type":"string","description":"The protocol of the server","jsonPath":".spec.proxyProtocol"}"#
    )]
    #[serde(rename_all = "camelCase")]
    #[schemars(extend("oneOf" = [{"required": ["podSelector"]}, {"required": ["externalWorkloadSelector"]}]))]
    pub struct ServerSpec {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(with = "Option<schema::LabelSelector>")]
        pub pod_selector: Option<LabelSelector>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(with = "Option<schema::LabelSelector>")]
        pub external_workload_selector: Option<LabelSelector>,
        pub port: IntOrString,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("default" = "unknown"))]
        pub proxy_protocol: Option<String>,
    }
}

/// Server as of policy.linkerd.io/v1beta1: pods only.
pub mod v1beta1 {
    use super::*;

    /// A port of a set of pods.
    #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
    #[kube(
        group = "policy.linkerd.io",
        version = "v1beta1",
        kind = "Server",
        namespaced,
        shortname = "srv",
        doc = "A port of a set of pods that Linkerd policy applies to.",
        printcolumn = r#"{"name":"Port","type":"string","description":"The port the server is listening on","jsonPath":".spec.port"}"#,
        printcolumn = r#"{"name":"Protocol","type":"string","description":"The protocol of the server","jsonPath":".spec.proxyProtocol"}"#
    )]
    #[serde(rename_all = "camelCase")]
    pub struct ServerSpec {
        #[schemars(with = "schema::LabelSelector")]
        pub pod_selector: LabelSelector,
        pub port: IntOrString,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("default" = "unknown"))]
        pub proxy_protocol: Option<String>,
    }
}

/// Server as of policy.linkerd.io/v1alpha1: as v1beta1, with a selector that
/// needs labels or expressions, and no printer columns.
pub mod v1alpha1 {
    use super::*;

    /// A port of a set of pods.
    #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
    #[kube(
        group = "policy.linkerd.io",
        version = "v1alpha1",
        kind = "Server",
        namespaced,
        shortname = "srv",
        doc = "A port of a set of pods that Linkerd policy applies to."
    )]
    #[serde(rename_all = "camelCase")]
    pub struct ServerSpec {
        #[schemars(with = "schema::NonEmptyLabelSelector")]
        pub pod_selector: LabelSelector,
        pub port: IntOrString,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("default" = "unknown"))]
        pub proxy_protocol: Option<String>,
    }
}

/// Authorizes clients to reach Servers (policy.linkerd.io/v1beta1; v1alpha1
/// has the same schema). Superseded by AuthorizationPolicy, still honoured.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1beta1",
    kind = "ServerAuthorization",
    namespaced,
    shortname = "saz",
    shortname = "serverauthz",
    shortname = "srvauthz",
    doc = "Authorizes clients to communicate with Linkerd-proxied servers.",
    printcolumn = r#"{"name":"Server","type":"string","description":"The server that this grants access to","jsonPath":".spec.server.name"}"#
)]
pub struct ServerAuthorizationSpec {
    pub server: ServerRef,
    pub client: AuthorizedClient,
}

/// The Servers of the authorization's namespace it applies to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(extend("oneOf" = [{"required": ["name"]}, {"required": ["selector"]}]))]
pub struct ServerRef {
    /// A Server by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = schema::DNS_LABEL))]
    pub name: Option<String>,
    /// Servers by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<schema::LabelSelector>")]
    pub selector: Option<LabelSelector>,
}

/// The clients a ServerAuthorization admits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizedClient {
    /// Client networks; unset means the server's default (all networks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<Network>>,
    /// Admits clients without a mesh identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unauthenticated: Option<bool>,
    #[serde(default, rename = "meshTLS", skip_serializing_if = "Option::is_none")]
    pub mesh_tls: Option<AuthorizedMeshTls>,
}

/// Mesh identities a ServerAuthorization admits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizedMeshTls {
    /// Admits TLS clients without an identity (the identity controller's
    /// own clients, which have no certificate yet).
    #[serde(
        default,
        rename = "unauthenticatedTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub unauthenticated_tls: Option<bool>,
    /// Identity names; `*` prefixes match a domain, `*` alone any identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = schema::IDENTITY)))]
    pub identities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<Vec<ServiceAccountRef>>,
}

/// A ServiceAccount; its namespace defaults to the referrer's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ServiceAccountRef {
    #[schemars(regex(pattern = schema::DNS_LABEL))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = schema::DNS_LABEL))]
    pub namespace: Option<String>,
}

/// Authorizes clients to reach a Server, route or namespace
/// (policy.linkerd.io/v1alpha1).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "AuthorizationPolicy",
    namespaced,
    shortname = "authzpolicy",
    doc = "Authorizes clients to communicate with Linkerd-proxied server resources."
)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    /// What the policy applies to: a Server, an HTTPRoute, a GRPCRoute or a
    /// Namespace.
    pub target_ref: LocalTargetRef,
    /// Authentications a client must satisfy: at most one
    /// MeshTLSAuthentication or one ServiceAccount, plus at most one
    /// NetworkAuthentication.
    pub required_authentication_refs: Vec<PolicyTargetRef>,
}

/// A reference to an object of the referrer's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalTargetRef {
    /// API group; empty for the core group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = schema::GROUP))]
    pub group: Option<String>,
    #[schemars(length(min = 1, max = 63), regex(pattern = schema::KIND))]
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to an object by group, kind and name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetRef {
    /// API group; empty for the core group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = schema::GROUP))]
    pub group: Option<String>,
    #[schemars(length(min = 1, max = 63), regex(pattern = schema::KIND))]
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the referent; unset means the policy's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub namespace: Option<String>,
}

/// A client a rate limit override names; its namespace must be a DNS label.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ClientRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = schema::GROUP))]
    pub group: Option<String>,
    #[schemars(length(min = 1, max = 63), regex(pattern = schema::KIND))]
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = schema::DNS_LABEL))]
    pub namespace: Option<String>,
}

/// Clients authenticated by mesh TLS identity (policy.linkerd.io/v1alpha1).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "MeshTLSAuthentication",
    namespaced,
    shortname = "meshtlsauthn",
    doc = "Mesh TLS identities an AuthorizationPolicy can require of clients."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["identities"]}, {"required": ["identityRefs"]}]))]
pub struct MeshTlsAuthenticationSpec {
    /// Identity names, or `*` prefixed patterns; exclusive with `identityRefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub identities: Option<Vec<String>>,
    /// ServiceAccounts (or a Namespace) whose identities are authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub identity_refs: Option<Vec<IdentityRef>>,
}

/// A reference to identities: one object, or every object of a kind when
/// `name` is unset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct IdentityRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = schema::GROUP))]
    pub group: Option<String>,
    #[schemars(length(min = 1, max = 63), regex(pattern = schema::KIND))]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub namespace: Option<String>,
}

/// Clients authenticated by source network (policy.linkerd.io/v1alpha1).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "NetworkAuthentication",
    namespaced,
    shortname = "netauthn",
    shortname = "networkauthn",
    doc = "Client networks an AuthorizationPolicy can require."
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

/// Per-Server HTTP rate limits (policy.linkerd.io/v1alpha1, from edge-24.11.2).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "HTTPLocalRateLimitPolicy",
    root = "HttpLocalRateLimitPolicy",
    namespaced,
    status = "HttpLocalRateLimitPolicyStatus",
    doc = "Rate limits for the HTTP traffic of a Server.",
    printcolumn = r#"{"name":"Target_kind","type":"string","description":"The resource kind to which the rate-limit applies","jsonPath":".spec.targetRef.kind"}"#,
    printcolumn = r#"{"name":"Target_name","type":"string","description":"The resource name to which the rate-limit applies","jsonPath":".spec.targetRef.name"}"#,
    printcolumn = r#"{"name":"Total_RPS","type":"integer","format":"int32","description":"The overall rate-limit","jsonPath":".spec.total.requestsPerSecond"}"#,
    printcolumn = r#"{"name":"Identity_RPS","type":"integer","format":"int32","description":"The rate-limit per identity","jsonPath":".spec.identity.requestsPerSecond"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HttpLocalRateLimitPolicySpec {
    /// The Server limited.
    pub target_ref: LocalTargetRef,
    /// Limit of all traffic to the target; unset means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<RateLimit>,
    /// Limit per client identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<RateLimit>,
    /// Limits for specific clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Vec<RateLimitOverride>>,
}

/// A rate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub requests_per_second: i64,
}

/// A rate for the clients named.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitOverride {
    pub requests_per_second: i64,
    pub client_refs: Vec<ClientRef>,
}

/// Written by Linkerd's policy controller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpLocalRateLimitPolicyStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    #[schemars(with = "StatusTargetRef")]
    pub target_ref: LocalTargetRef,
}

/// The Server a rate limit status names: the group and kind default to a
/// Server's.
#[derive(JsonSchema)]
#[allow(dead_code)] // Fields exist for their schema.
struct StatusTargetRef {
    #[schemars(
        length(max = 253),
        regex(pattern = schema::GROUP),
        extend("default" = "policy.linkerd.io")
    )]
    group: Option<String>,
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = schema::KIND),
        extend("default" = "Server")
    )]
    kind: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    name: String,
}

/// Destinations outside the cluster and what traffic to them is allowed
/// (policy.linkerd.io/v1alpha1, from edge-24.10.4).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "EgressNetwork",
    namespaced,
    category = "policy",
    status = "EgressNetworkStatus",
    doc = "An EgressNetwork captures traffic to egress destinations."
)]
#[serde(rename_all = "camelCase")]
pub struct EgressNetworkSpec {
    /// The networks; unset means every address outside the cluster networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<Network>>,
    /// What happens to traffic no route describes.
    pub traffic_policy: TrafficPolicy,
}

/// Policy for egress traffic no route describes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TrafficPolicy {
    Allow,
    Deny,
}

/// Written by Linkerd's policy controller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct EgressNetworkStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
}
