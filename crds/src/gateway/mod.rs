//! The Gateway API route kinds of the bundle Linkerd's chart ships: Gateway
//! API v1.1.1, experimental channel (HTTPRoute, GRPCRoute, TLSRoute,
//! TCPRoute), the bundle of every catalog release from edge-25.4.4.
//!
//! Every validation fact of the bundle's schemas is stated here, on the
//! types: required fields, enums, patterns, lengths, item limits, defaults,
//! list types and map keys, and the CEL rules (`x-kubernetes-validations`),
//! which the API server enforces from Kubernetes 1.25. The older bundle
//! Linkerd shipped until edge-24.11.8 (v0.7.1) is this one without some of
//! those facts ([`Bundle::V0_7_1`]); `e2e/hack/crd-parity.sh` compares both
//! with Linkerd's chart.
//!
//! The `gateway-api` crate is not used: it models Gateway API v1.5 (fields
//! the v1.1.1 bundle lacks, without `sessionPersistence` of v1.1.1's
//! experimental channel) and none of its validations.

pub mod grpc;
pub mod http;
pub mod stream;

pub use grpc::{GrpcRoute, GrpcRouteSpec};
pub use http::{HttpRoute, HttpRouteSpec};
pub use stream::{TcpRoute, TcpRouteSpec, TlsRoute, TlsRouteSpec};

use crate::schema::{CONDITION_REASON, CONDITION_TYPE, DNS_LABEL, GROUP, KIND};
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A Gateway API bundle whose CRDs Linkerd's chart has shipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bundle {
    /// Linkerd's bundle up to edge-24.11.8: no CEL rules (Gateway API's
    /// webhook checked those), `remove` header lists without a list type, no
    /// `sessionPersistence` nor HTTPRoute `timeouts`, and a default
    /// GRPCRoute rule.
    V0_7_1,
    /// Linkerd's bundle from edge-25.4.4.
    V1_1_1,
}

impl Bundle {
    /// The bundle of a `gateway.networking.k8s.io/bundle-version` annotation.
    pub fn from_version(version: &str) -> Option<Self> {
        match version {
            "v0.7.1" => Some(Self::V0_7_1),
            "v1.1.1" => Some(Self::V1_1_1),
            _ => None,
        }
    }

    /// Brings a route schema generated from the v1.1.1 types to this bundle.
    pub fn adapt(self, kind: &str, schema: &mut Value) {
        if self == Self::V1_1_1 {
            return;
        }
        crate::schema::strip_cel(schema);
        let rule = &mut schema["properties"]["spec"]["properties"]["rules"];
        if let Some(props) = rule["items"]["properties"].as_object_mut() {
            props.remove("sessionPersistence");
            props.remove("timeouts");
        }
        if kind == "GRPCRoute" {
            rule["default"] = json!([{"matches": [{"method": {"type": "Exact"}}]}]);
        }
        strip_remove_list_type(schema);
    }
}

/// v0.7.1's header filters state no list type for `remove`.
fn strip_remove_list_type(schema: &mut Value) {
    crate::schema::visit_mut(schema, &mut |node| {
        let remove = node.get_mut("properties").and_then(|p| p.get_mut("remove"));
        if let Some(remove) = remove.and_then(Value::as_object_mut)
            && remove.get("type") == Some(&json!("array"))
        {
            remove.remove("x-kubernetes-list-type");
        }
    });
}

/// A hostname, optionally a wildcard (`*.example.com`).
pub const HOSTNAME: &str =
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A hostname without wildcard; also a listener's section name.
pub const PRECISE_HOSTNAME: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// An HTTP header or query parameter name (RFC 7230 token).
pub const HEADER_NAME: &str = r"^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$";
/// A Gateway API duration: up to four `<number><unit>` parts.
pub const DURATION: &str = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$";
/// A controller name: a domain-prefixed path.
pub const CONTROLLER_NAME: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$";

/// CEL rules as the schema lists them: `(rule, message)` pairs.
pub(crate) fn rules<S: AsRef<str>>(list: impl IntoIterator<Item = (S, S)>) -> Value {
    list.into_iter()
        .map(|(rule, message)| json!({"message": message.as_ref(), "rule": rule.as_ref()}))
        .collect()
}

/// The rules of a filter union: the field of each filter type is set when,
/// and only when, `type` names it.
pub(crate) fn union_rules(members: &[(&str, &str)]) -> Value {
    rules(members.iter().flat_map(|(field, kind)| {
        [
            (
                format!("!(has(self.{field}) && self.type != '{kind}')"),
                format!("filter.{field} must be nil if the filter.type is not {kind}"),
            ),
            (
                format!("!(!has(self.{field}) && self.type == '{kind}')"),
                format!("filter.{field} must be specified for {kind} filter.type"),
            ),
        ]
    }))
}

/// A rule per filter type that may appear once in a list.
pub(crate) fn once_each(kinds: &[&str]) -> Vec<(String, String)> {
    kinds
        .iter()
        .map(|kind| {
            (
                format!("self.filter(f, f.type == '{kind}').size() <= 1"),
                format!("{kind} filter cannot be repeated"),
            )
        })
        .collect()
}

/// The rules of a route's `parentRefs`: references to the same parent must
/// tell their sections or ports apart.
pub(crate) fn parent_refs_rules() -> Value {
    rules([
        (
            r"self.all(p1, self.all(p2, p1.group == p2.group && p1.kind == p2.kind && p1.name == p2.name && (((!has(p1.__namespace__) || p1.__namespace__ == '') && (!has(p2.__namespace__) || p2.__namespace__ == '')) || (has(p1.__namespace__) && has(p2.__namespace__) && p1.__namespace__ == p2.__namespace__)) ? ((!has(p1.sectionName) || p1.sectionName == '') == (!has(p2.sectionName) || p2.sectionName == '') && (!has(p1.port) || p1.port == 0) == (!has(p2.port) || p2.port == 0)): true))",
            "sectionName or port must be specified when parentRefs includes 2 or more references to the same parent",
        ),
        (
            r"self.all(p1, self.exists_one(p2, p1.group == p2.group && p1.kind == p2.kind && p1.name == p2.name && (((!has(p1.__namespace__) || p1.__namespace__ == '') && (!has(p2.__namespace__) || p2.__namespace__ == '')) || (has(p1.__namespace__) && has(p2.__namespace__) && p1.__namespace__ == p2.__namespace__ )) && (((!has(p1.sectionName) || p1.sectionName == '') && (!has(p2.sectionName) || p2.sectionName == '')) || ( has(p1.sectionName) && has(p2.sectionName) && p1.sectionName == p2.sectionName)) && (((!has(p1.port) || p1.port == 0) && (!has(p2.port) || p2.port == 0)) || (has(p1.port) && has(p2.port) && p1.port == p2.port))))",
            "sectionName or port must be unique when parentRefs includes 2 or more references to the same parent",
        ),
    ])
}

/// A schema's `format`, removed where the bundle states only `type: integer`.
pub(crate) fn unformatted(schema: &mut Schema) {
    schema.remove("format");
}

/// The parent (a Gateway, or for Linkerd a Service or Server) a route
/// attaches to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = GROUP),
        extend("default" = "gateway.networking.k8s.io")
    )]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = KIND), extend("default" = "Gateway"))]
    pub kind: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = PRECISE_HOSTNAME))]
    pub section_name: Option<String>,
}

/// An object a route sends traffic to; a Service needs a port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = rules([(
    "(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true",
    "Must have port for Service reference",
)])))]
pub struct BackendObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = GROUP), extend("default" = ""))]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = KIND), extend("default" = "Service"))]
    pub kind: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// A backend with the share of traffic it receives.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct BackendRef {
    #[serde(flatten)]
    pub object: BackendObjectReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000), extend("default" = 1))]
    pub weight: Option<i32>,
}

/// A reference to an object of the route's namespace that extends a filter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalObjectReference {
    #[schemars(length(max = 253), regex(pattern = GROUP))]
    pub group: String,
    #[schemars(length(min = 1, max = 63), regex(pattern = KIND))]
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// An HTTP header and its value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HttpHeader {
    #[schemars(length(min = 1, max = 256), regex(pattern = HEADER_NAME))]
    pub name: String,
    #[schemars(length(min = 1, max = 4096))]
    pub value: String,
}

/// Headers to set, add and remove.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HttpHeaderFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
    pub set: Option<Vec<HttpHeader>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
    pub add: Option<Vec<HttpHeader>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "set"))]
    pub remove: Option<Vec<String>>,
}

/// A header a request must carry: exactly or by regular expression.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HeaderMatch {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Exact", "enum" = ["Exact", "RegularExpression"]))]
    pub type_: Option<String>,
    #[schemars(length(min = 1, max = 256), regex(pattern = HEADER_NAME))]
    pub name: String,
    #[schemars(length(min = 1, max = 4096))]
    pub value: String,
}

/// Requests copied to another backend, whose responses are ignored.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestMirror {
    pub backend_ref: BackendObjectReference,
}

/// Sessions kept on one backend, by cookie or header.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = rules([(
    "!has(self.cookieConfig) || !has(self.cookieConfig.lifetimeType) || self.cookieConfig.lifetimeType != 'Permanent' || has(self.absoluteTimeout)",
    "AbsoluteTimeout must be specified when cookie lifetimeType is Permanent",
)])))]
pub struct SessionPersistence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub session_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION))]
    pub absolute_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION))]
    pub idle_timeout: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Cookie", "enum" = ["Cookie", "Header"]))]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_config: Option<CookieConfig>,
}

/// How long a session cookie lives.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CookieConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Session", "enum" = ["Permanent", "Session"]))]
    pub lifetime_type: Option<String>,
}

/// What the controllers of a route's parents report of it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct RouteStatus {
    #[schemars(length(max = 32))]
    pub parents: Vec<RouteParentStatus>,
}

/// One controller's report on one parent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentReference,
    #[schemars(length(min = 1, max = 253), regex(pattern = CONTROLLER_NAME))]
    pub controller_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(min = 1, max = 8),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
}

/// A status condition (metav1.Condition), as Gateway API's schemas state it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    #[schemars(length(max = 316), regex(pattern = CONDITION_TYPE))]
    pub type_: String,
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    #[schemars(length(min = 1, max = 1024), regex(pattern = CONDITION_REASON))]
    pub reason: String,
    #[schemars(length(max = 32768))]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_rules_follow_gateway_apis_wording() {
        let rules = union_rules(&[("urlRewrite", "URLRewrite")]);
        assert_eq!(
            rules,
            json!([
                {"rule": "!(has(self.urlRewrite) && self.type != 'URLRewrite')",
                 "message": "filter.urlRewrite must be nil if the filter.type is not URLRewrite"},
                {"rule": "!(!has(self.urlRewrite) && self.type == 'URLRewrite')",
                 "message": "filter.urlRewrite must be specified for URLRewrite filter.type"},
            ])
        );
    }
}
