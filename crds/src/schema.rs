//! Schema facts that several of Linkerd's CRDs share, as Linkerd's chart
//! states them (`charts/linkerd-crds/templates`): name patterns, the label
//! selector and status condition shapes of its hand-written schemas.
//!
//! The types here only describe schemas (`#[schemars(with = ...)]` on the
//! fields that Keelson reads with its own or k8s-openapi's types); they are
//! never built. Where the chart's schema is looser than the Kubernetes type
//! (a condition's required fields), the looser one is kept: Linkerd's
//! controllers write those objects, and a stricter CRD would refuse them.

#![allow(dead_code)] // Fields exist for their schemas.

use crate::preserved::Preserved;
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// An API group: empty (the core group) or a DNS subdomain.
pub const GROUP: &str = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A kind: a letter, then letters, digits and dashes, not ending in a dash.
pub const KIND: &str = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$";
/// A DNS label (RFC 1123): namespaces, ServiceAccounts, Server names.
pub const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A mesh identity as ServerAuthorization lists it: dot-separated DNS
/// labels, the first of which may be `*`.
pub const IDENTITY: &str =
    r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A condition type: a qualified name, optionally prefixed by a DNS subdomain.
pub const CONDITION_TYPE: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$";
/// A condition reason: CamelCase-like, as metav1.Condition requires.
pub const CONDITION_REASON: &str = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$";
/// A resource quantity (`1`, `500m`, `1.5Gi`, `1e3`).
pub const QUANTITY: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// A label selector as Linkerd's policy CRDs describe it: the labels are an
/// object of any fields, the expressions' operators an enum.
#[derive(JsonSchema)]
#[schemars(rename_all = "camelCase")]
pub struct LabelSelector {
    match_labels: Option<Preserved>,
    match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

/// A label selector that needs one of its two fields (Server v1alpha1).
#[derive(JsonSchema)]
#[schemars(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["matchExpressions"]}, {"required": ["matchLabels"]}]))]
pub struct NonEmptyLabelSelector {
    match_labels: Option<Preserved>,
    match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

/// One expression of a label selector.
#[derive(JsonSchema)]
pub struct LabelSelectorRequirement {
    key: String,
    #[schemars(extend("enum" = ["In", "NotIn", "Exists", "DoesNotExist"]))]
    operator: String,
    values: Option<Vec<String>>,
}

/// A status condition as Linkerd's policy controller writes it.
#[derive(JsonSchema)]
#[schemars(rename_all = "camelCase")]
pub struct Condition {
    #[schemars(extend("format" = "date-time"))]
    last_transition_time: Option<String>,
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    status: Option<String>,
    #[schemars(rename = "type", length(max = 316), regex(pattern = CONDITION_TYPE))]
    type_: Option<String>,
    #[schemars(length(min = 1, max = 1024), regex(pattern = CONDITION_REASON))]
    reason: Option<String>,
    #[schemars(length(max = 32768))]
    message: Option<String>,
}

/// A status condition as an ExternalWorkload's agent writes it: with the
/// time of the last probe.
#[derive(JsonSchema)]
#[schemars(rename_all = "camelCase")]
pub struct ProbedCondition {
    #[schemars(extend("format" = "date-time"))]
    last_probe_time: Option<String>,
    #[schemars(flatten)]
    condition: Condition,
}

/// The conditions of a policy resource's status. The chart states the
/// fields every condition needs (`status`, `type`) on the list rather than
/// on its items, where the API server checks nothing; Keelson states it
/// the same way, so that it accepts the conditions Linkerd accepts.
pub fn conditions(generator: &mut SchemaGenerator) -> Schema {
    required_on_list(Vec::<Condition>::json_schema(generator))
}

/// The conditions of an ExternalWorkload's status (see [`conditions`]).
pub fn probed_conditions(generator: &mut SchemaGenerator) -> Schema {
    required_on_list(Vec::<ProbedCondition>::json_schema(generator))
}

fn required_on_list(mut list: Schema) -> Schema {
    list.insert("required".into(), serde_json::json!(["status", "type"]));
    list
}

/// Calls `f` on every node of a JSON schema: the node itself, then each
/// subschema under it (properties, items, additional properties and items,
/// definitions, the combinators). A property named like a keyword is a
/// subschema, never taken for the keyword.
pub fn visit_mut<F: FnMut(&mut serde_json::Map<String, serde_json::Value>)>(
    schema: &mut serde_json::Value,
    f: &mut F,
) {
    use serde_json::Value;
    let Some(node) = schema.as_object_mut() else {
        return;
    };
    f(node);
    for (keyword, child) in node.iter_mut() {
        match (keyword.as_str(), child) {
            ("properties" | "patternProperties" | "definitions", Value::Object(map)) => {
                map.values_mut().for_each(|c| visit_mut(c, f));
            }
            ("allOf" | "anyOf" | "oneOf" | "items", Value::Array(list)) => {
                list.iter_mut().for_each(|c| visit_mut(c, f));
            }
            ("items" | "additionalProperties" | "additionalItems" | "not", child) => {
                visit_mut(child, f);
            }
            _ => {}
        }
    }
}

/// Removes every CEL rule (`x-kubernetes-validations`) from a schema: for a
/// schema that states none (Linkerd's own CRDs, Gateway API v0.7.1), or an
/// API server that does not take them (before Kubernetes 1.25). Returns how
/// many rules it removed.
pub fn strip_cel(schema: &mut serde_json::Value) -> usize {
    let mut removed = 0;
    visit_mut(schema, &mut |node| {
        if let Some(serde_json::Value::Array(rules)) = node.remove("x-kubernetes-validations") {
            removed += rules.len();
        }
    });
    removed
}
