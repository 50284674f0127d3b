//! Linkerd's own HTTPRoute (policy.linkerd.io): Gateway API's HTTPRoute as
//! Linkerd serves it to routes that attach to Servers and Services, where
//! Gateway API's is not installed. Its schema is Gateway API's route schema
//! with Linkerd's differences, which the types and transforms here state:
//! parents default to Linkerd's group, rules filter only headers and
//! redirects (backends also response headers), header `remove` lists carry
//! no list type, query parameter names no pattern, timeouts are Go
//! durations, and there are no CEL rules (the CRD generation strips those
//! of the shared Gateway API types).
//!
//! v1beta3 is the storage version; v1beta2 is it without `timeouts` (the
//! CRD generation drops them); v1alpha1 and v1beta1 ([`v1beta1`]) reference
//! backends by name, port and namespace only.

use crate::gateway::http::{HttpRequestRedirect, HttpRouteMatch};
use crate::gateway::{BackendRef, HOSTNAME, HttpHeaderFilter, ParentReference, RouteStatus};
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Routes of inbound (parent: a Server) or outbound (parent: a Service) HTTP
/// traffic (policy.linkerd.io/v1beta3).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1beta3",
    kind = "HTTPRoute",
    root = "HttpRoute",
    namespaced,
    status = "HttpRouteStatus",
    doc = "Routes HTTP requests to a Linkerd-proxied Server or Service.",
    printcolumn = r#"{"name":"Hostnames","type":"string","jsonPath":".spec.hostnames"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// The Servers (inbound) or Services (outbound) the route attaches to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), transform = linkerd_parents)]
    pub parent_refs: Option<Vec<ParentReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253), regex(pattern = HOSTNAME)))]
    pub hostnames: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("default" = [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]))]
    pub rules: Option<Vec<HttpRouteRule>>,
}

/// Which requests a rule takes, what it does to them and where it sends
/// them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 8),
        extend("default" = [{"path": {"type": "PathPrefix", "value": "/"}}]),
        transform = plain_query_param_names
    )]
    pub matches: Option<Vec<HttpRouteMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub filters: Option<Vec<RuleFilter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub backend_refs: Option<Vec<HttpBackendRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
}

/// What a rule does to requests: add, set or remove headers, or redirect.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleFilter {
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["RequestHeaderModifier", "RequestRedirect"]))]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = plain_remove_list)]
    pub request_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<HttpRequestRedirect>,
}

/// What a backend does to requests: a rule's filters and response headers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendFilter {
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect"]))]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = plain_remove_list)]
    pub request_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = plain_remove_list)]
    pub response_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<HttpRequestRedirect>,
}

/// A backend of a rule, with filters of its own.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HttpBackendRef {
    #[serde(flatten)]
    pub backend: BackendRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub filters: Option<Vec<BackendFilter>>,
}

/// How long a request, and each try at a backend, may take: Go durations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "duration"))]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "duration"))]
    pub backend_request: Option<String>,
}

/// Written by Linkerd's policy controller: Gateway API's route status, with
/// parents in Linkerd's group by default.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
#[schemars(transform = linkerd_status_parents)]
pub struct HttpRouteStatus(pub RouteStatus);

/// A route's parents default to Linkerd's group, not Gateway API's.
fn linkerd_parents(schema: &mut Schema) {
    set(
        schema,
        "/items/properties/group/default",
        json!("policy.linkerd.io"),
    );
}

fn linkerd_status_parents(schema: &mut Schema) {
    let group = "/properties/parents/items/properties/parentRef/properties/group/default";
    set(schema, group, json!("policy.linkerd.io"));
}

/// Header `remove` lists state no list type in Linkerd's schema.
fn plain_remove_list(schema: &mut Schema) {
    remove(schema, "/properties/remove", "x-kubernetes-list-type");
}

/// Query parameter names state no pattern in Linkerd's schema.
fn plain_query_param_names(schema: &mut Schema) {
    let name = "/items/properties/queryParams/items/properties/name";
    remove(schema, name, "pattern");
}

/// Sets the value at a JSON pointer of a generated schema (whose shape the
/// types fix, so a missing place is a bug).
fn set(schema: &mut Schema, pointer: &str, value: Value) {
    *schema
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the generated schema")) = value;
}

fn remove(schema: &mut Schema, pointer: &str, keyword: &str) {
    schema
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no {pointer} in the generated schema"))
        .remove(keyword);
}

/// HTTPRoute as of policy.linkerd.io/v1alpha1 and v1beta1 (one schema):
/// backends by name, port and namespace, and parent ports without bounds.
pub mod v1beta1 {
    use super::*;

    /// Routes of inbound HTTP traffic to a Server.
    #[derive(
        CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
    )]
    #[kube(
        group = "policy.linkerd.io",
        version = "v1beta1",
        kind = "HTTPRoute",
        root = "HttpRoute",
        namespaced,
        status = "HttpRouteStatus",
        doc = "Routes HTTP requests to a Linkerd-proxied Server.",
        printcolumn = r#"{"name":"Hostnames","type":"string","jsonPath":".spec.hostnames"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )]
    #[serde(rename_all = "camelCase")]
    pub struct HttpRouteSpec {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 32), transform = legacy_parents)]
        pub parent_refs: Option<Vec<ParentReference>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 16), inner(length(min = 1, max = 253), regex(pattern = HOSTNAME)))]
        pub hostnames: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 16), extend("default" = [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]))]
        pub rules: Option<Vec<HttpRouteRule>>,
    }

    /// A rule of the older versions.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct HttpRouteRule {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(
            length(max = 8),
            extend("default" = [{"path": {"type": "PathPrefix", "value": "/"}}]),
            transform = plain_query_param_names
        )]
        pub matches: Option<Vec<HttpRouteMatch>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 16))]
        pub filters: Option<Vec<RuleFilter>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub backend_refs: Option<Vec<LegacyBackendRef>>,
    }

    /// A backend by name, port and namespace (which defaults to `default`).
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
    pub struct LegacyBackendRef {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(transform = crate::gateway::unformatted)]
        pub port: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("default" = "default"))]
        pub namespace: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 16))]
        pub filters: Option<Vec<BackendFilter>>,
    }

    /// Linkerd's group by default, and ports that are plain integers.
    fn legacy_parents(schema: &mut Schema) {
        linkerd_parents(schema);
        set(schema, "/items/properties/port", json!({"type": "integer"}));
    }
}
