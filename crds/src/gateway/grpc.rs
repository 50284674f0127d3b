//! GRPCRoute (gateway.networking.k8s.io/v1, served as v1alpha2 with the same
//! schema), Gateway API v1.1.1 experimental.

use super::{
    BackendRef, HOSTNAME, HeaderMatch, HttpHeaderFilter, LocalObjectReference, ParentReference,
    RequestMirror, RouteStatus, SessionPersistence, once_each, parent_refs_rules, rules,
    union_rules,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Routes gRPC requests to backends.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "GRPCRoute",
    root = "GrpcRoute",
    namespaced,
    status = "RouteStatus",
    doc = "GRPCRoute provides a way to route gRPC requests.",
    printcolumn = r#"{"name":"Hostnames","type":"string","jsonPath":".spec.hostnames"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = parent_refs_rules()))]
    pub parent_refs: Option<Vec<ParentReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253), regex(pattern = HOSTNAME)))]
    pub hostnames: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub rules: Option<Vec<GrpcRouteRule>>,
}

/// Which calls a rule takes, what it does to them and where it sends them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub matches: Option<Vec<GrpcRouteMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-validations" = filter_list_rules()))]
    pub filters: Option<Vec<GrpcRouteFilter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub backend_refs: Option<Vec<GrpcBackendRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<SessionPersistence>,
}

/// Each header modifier appears once in a filter list.
fn filter_list_rules() -> Value {
    rules(once_each(&[
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
    ]))
}

/// A condition on calls: all of its parts must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct GrpcRouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<GrpcMethodMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
    pub headers: Option<Vec<HeaderMatch>>,
}

/// A service and method condition; an exact one must be made of valid
/// identifiers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = method_rules()))]
pub struct GrpcMethodMatch {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Exact", "enum" = ["Exact", "RegularExpression"]))]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub method: Option<String>,
}

fn method_rules() -> Value {
    const SERVICE: &str = r"^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$";
    const METHOD: &str = r"^[A-Za-z_][A-Za-z_0-9]*$";
    let valid = |field: &str, pattern: &str| {
        (
            format!(
                r#"(!has(self.type) || self.type == 'Exact') && has(self.{field}) ? self.{field}.matches(r"""{pattern}"""): true"#
            ),
            format!("{field} must only contain valid characters (matching {pattern})"),
        )
    };
    rules([
        (
            "has(self.type) ? has(self.service) || has(self.method) : true".to_string(),
            "One or both of 'service' or 'method' must be specified".to_string(),
        ),
        valid("service", SERVICE),
        valid("method", METHOD),
    ])
}

/// What a rule (or a backend) does to calls; `type` names the one field set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = union_rules(&[
    ("requestHeaderModifier", "RequestHeaderModifier"),
    ("responseHeaderModifier", "ResponseHeaderModifier"),
    ("requestMirror", "RequestMirror"),
    ("extensionRef", "ExtensionRef"),
])))]
pub struct GrpcRouteFilter {
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["ResponseHeaderModifier", "RequestHeaderModifier", "RequestMirror", "ExtensionRef"]))]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<RequestMirror>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<LocalObjectReference>,
}

/// A backend of a GRPCRoute rule, with filters of its own.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct GrpcBackendRef {
    #[serde(flatten)]
    pub backend: BackendRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-validations" = filter_list_rules()))]
    pub filters: Option<Vec<GrpcRouteFilter>>,
}
