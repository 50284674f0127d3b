//! HTTPRoute (gateway.networking.k8s.io/v1, served as v1beta1 with the same
//! schema), Gateway API v1.1.1 experimental.

use super::{
    BackendRef, DURATION, HEADER_NAME, HOSTNAME, HeaderMatch, HttpHeaderFilter,
    LocalObjectReference, PRECISE_HOSTNAME, ParentReference, RequestMirror, RouteStatus,
    SessionPersistence, once_each, parent_refs_rules, rules, unformatted, union_rules,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Routes HTTP requests from a Gateway (or, for Linkerd, a Service or
/// Server) to backends.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    root = "HttpRoute",
    namespaced,
    status = "RouteStatus",
    doc = "HTTPRoute provides a way to route HTTP requests.",
    printcolumn = r#"{"name":"Hostnames","type":"string","jsonPath":".spec.hostnames"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = parent_refs_rules()))]
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
#[schemars(extend("x-kubernetes-validations" = rule_rules()))]
pub struct HttpRouteRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), extend("default" = [{"path": {"type": "PathPrefix", "value": "/"}}]))]
    pub matches: Option<Vec<HttpRouteMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-validations" = filter_list_rules(false)))]
    pub filters: Option<Vec<HttpRouteFilter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub backend_refs: Option<Vec<HttpBackendRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HttpRouteTimeouts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<SessionPersistence>,
}

/// A request redirect excludes backends; a prefix rewrite needs exactly one
/// prefix match.
fn rule_rules() -> Value {
    let prefix_rewrite = |filter: &str, within_backends: bool| {
        let found = format!(
            "filters.exists_one(f, has(f.{filter}) && has(f.{filter}.path) && f.{filter}.path.type == 'ReplacePrefixMatch' && has(f.{filter}.path.replacePrefixMatch))"
        );
        let condition = if within_backends {
            format!(
                "(has(self.backendRefs) && self.backendRefs.exists_one(b, (has(b.filters) && b.{found}) ))"
            )
        } else {
            format!("(has(self.filters) && self.{found})")
        };
        format!(
            "{condition} ? ((size(self.matches) != 1 || !has(self.matches[0].path) || self.matches[0].path.type != 'PathPrefix') ? false : true) : true"
        )
    };
    rules([
        (
            "(has(self.backendRefs) && size(self.backendRefs) > 0) ? (!has(self.filters) || self.filters.all(f, !has(f.requestRedirect))): true".to_string(),
            "RequestRedirect filter must not be used together with backendRefs".to_string(),
        ),
        (
            prefix_rewrite("requestRedirect", false),
            "When using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified".to_string(),
        ),
        (
            prefix_rewrite("urlRewrite", false),
            "When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified".to_string(),
        ),
        (
            prefix_rewrite("requestRedirect", true),
            "Within backendRefs, when using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified".to_string(),
        ),
        (
            prefix_rewrite("urlRewrite", true),
            "Within backendRefs, When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified".to_string(),
        ),
    ])
}

/// A filter list: a redirect and a rewrite exclude each other, and each
/// filter type but mirrors and extensions appears once. The bundle states
/// the exclusion twice in a backend's filter list, and so does Keelson.
fn filter_list_rules(of_backend: bool) -> Value {
    let exclusive = (
        "!(self.exists(f, f.type == 'RequestRedirect') && self.exists(f, f.type == 'URLRewrite'))".to_string(),
        "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both".to_string(),
    );
    let mut list = vec![exclusive.clone()];
    if of_backend {
        list.push(exclusive);
    }
    list.extend(once_each(&[
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
    ]));
    rules(list)
}

/// A condition on requests: all of its parts must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {"type": "PathPrefix", "value": "/"}))]
    pub path: Option<HttpPathMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
    pub headers: Option<Vec<HeaderMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
    pub query_params: Option<Vec<QueryParamMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]))]
    pub method: Option<String>,
}

/// A path condition. Exact and prefix paths must be absolute and
/// normalized: no `//`, `/./`, `/../`, encoded slashes or fragments.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = path_rules()))]
pub struct HttpPathMatch {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "PathPrefix", "enum" = ["Exact", "PathPrefix", "RegularExpression"]))]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), extend("default" = "/"))]
    pub value: Option<String>,
}

fn path_rules() -> Value {
    const EXACT_OR_PREFIX: &str = "(self.type in ['Exact','PathPrefix'])";
    const WHEN: &str = "when type one of ['Exact', 'PathPrefix']";
    let forbidden = |test: &str, what: &str, message: &str| {
        (
            format!("{EXACT_OR_PREFIX} ? !self.value.{test}('{what}') : true"),
            format!("{message} '{what}' {WHEN}"),
        )
    };
    let mut list = vec![(
        format!("{EXACT_OR_PREFIX} ? self.value.startsWith('/') : true"),
        format!("value must be an absolute path and start with '/' {WHEN}"),
    )];
    for what in ["//", "/./", "/../", "%2f", "%2F", "#"] {
        list.push(forbidden("contains", what, "must not contain"));
    }
    for what in ["/..", "/."] {
        list.push(forbidden("endsWith", what, "must not end with"));
    }
    list.push((
        "self.type in ['Exact','PathPrefix'] || self.type == 'RegularExpression'".into(),
        "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']".into(),
    ));
    const VALID: &str = r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$";
    list.push((
        format!(r#"{EXACT_OR_PREFIX} ? self.value.matches(r"""{VALID}""") : true"#),
        format!("must only contain valid characters (matching {VALID}) for types ['Exact', 'PathPrefix']"),
    ));
    rules(list)
}

/// A query parameter a request must carry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct QueryParamMatch {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Exact", "enum" = ["Exact", "RegularExpression"]))]
    pub type_: Option<String>,
    #[schemars(length(min = 1, max = 256), regex(pattern = HEADER_NAME))]
    pub name: String,
    #[schemars(length(min = 1, max = 1024))]
    pub value: String,
}

/// What a rule (or a backend) does to requests; `type` names the one field
/// set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = union_rules(&[
    ("requestHeaderModifier", "RequestHeaderModifier"),
    ("responseHeaderModifier", "ResponseHeaderModifier"),
    ("requestMirror", "RequestMirror"),
    ("requestRedirect", "RequestRedirect"),
    ("urlRewrite", "URLRewrite"),
    ("extensionRef", "ExtensionRef"),
])))]
pub struct HttpRouteFilter {
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "RequestRedirect", "URLRewrite", "ExtensionRef"]))]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<RequestMirror>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<HttpRequestRedirect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<HttpUrlRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<LocalObjectReference>,
}

/// A redirect response.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestRedirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["http", "https"]))]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = PRECISE_HOSTNAME))]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = unformatted, extend("default" = 302, "enum" = [301, 302]))]
    pub status_code: Option<i32>,
}

/// A rewrite of the request's host or path.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HttpUrlRewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = PRECISE_HOSTNAME))]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathModifier>,
}

/// A new path, whole or in place of the matched prefix; `type` names the
/// field set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = path_modifier_rules()))]
pub struct HttpPathModifier {
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["ReplaceFullPath", "ReplacePrefixMatch"]))]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub replace_full_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub replace_prefix_match: Option<String>,
}

fn path_modifier_rules() -> Value {
    rules(
        ["ReplaceFullPath", "ReplacePrefixMatch"]
            .iter()
            .flat_map(|kind| {
                let mut field = kind.to_string();
                field[..1].make_ascii_lowercase();
                [
                    (
                        format!("self.type == '{kind}' ? has(self.{field}) : true"),
                        format!("{field} must be specified when type is set to '{kind}'"),
                    ),
                    (
                        format!("has(self.{field}) ? self.type == '{kind}' : true"),
                        format!("type must be '{kind}' when {field} is set"),
                    ),
                ]
            }),
    )
}

/// A backend of an HTTPRoute rule, with filters of its own.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HttpBackendRef {
    #[serde(flatten)]
    pub backend: BackendRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-validations" = filter_list_rules(true)))]
    pub filters: Option<Vec<HttpRouteFilter>>,
}

/// How long a request, and each try at a backend, may take.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = rules([(
    "!(has(self.request) && has(self.backendRequest) && duration(self.request) != duration('0s') && duration(self.backendRequest) > duration(self.request))",
    "backendRequest timeout cannot be longer than request timeout",
)])))]
pub struct HttpRouteTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION))]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION))]
    pub backend_request: Option<String>,
}
