//! Linkerd's ServiceProfile (linkerd.io): per-route metrics, retries and
//! timeouts for a Service. Modelled on `charts/linkerd-crds/templates/serviceprofile.yaml`
//! and Linkerd's Go types (`controller/gen/apis/serviceprofile/v1alpha2`) at
//! edge-24.11.8, edge-25.4.4 and edge-25.10.7.

use crate::preserved::Preserved;
use crate::schema;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Service's routes and their retry and timeout settings (linkerd.io/v1alpha2;
/// v1alpha1 is served with the same schema, where Linkerd's also requires
/// `routes`). Unlike other kinds, the object itself does not require `spec`
/// in Linkerd's schema; the CRD generation drops that requirement.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "linkerd.io",
    version = "v1alpha2",
    kind = "ServiceProfile",
    namespaced,
    shortname = "sp",
    doc = "Routes of a Service, with their retry and timeout settings."
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProfileSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<RouteSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
    /// The chart states the fields of an override on the list, where the
    /// API server checks nothing; so does Keelson, to accept what Linkerd
    /// accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("required" = ["authority", "weight"]))]
    pub dst_overrides: Option<Vec<WeightedDst>>,
    /// Ports whose traffic is not inspected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opaque_ports: Option<Vec<String>>,
}

/// A route of the Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    pub name: String,
    /// The requests of the route: a recursive match on path, method and
    /// combinations, which Keelson never reads.
    #[schemars(with = "RequestMatch")]
    pub condition: Preserved,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_classes: Option<Vec<ResponseClass>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_retryable: Option<bool>,
    /// A Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Which responses count as failures.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseClass {
    /// A recursive match on status ranges and combinations.
    #[schemars(with = "ResponseMatch")]
    pub condition: Preserved,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_failure: Option<bool>,
}

/// How many retries the Service's clients may add.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    pub retry_ratio: f32,
    pub min_retries_per_second: i32,
    /// A Go duration.
    pub ttl: String,
}

/// A share of the Service's traffic sent elsewhere.
///
/// Both fields are optional, as in Linkerd's schema (see `dstOverrides`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct WeightedDst {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity")]
    pub weight: Option<Quantity>,
}

/// A quantity as Kubernetes' own schemas state it: a number or a string of
/// quantity syntax.
fn quantity(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": schema::QUANTITY,
    })
}

/// The schema of a route's request match: its top level is typed, the
/// nested matches of `all`, `any` and `not` are kept as they are.
#[derive(JsonSchema)]
#[schemars(rename_all = "camelCase")]
#[allow(dead_code)] // Fields exist for their schema.
struct RequestMatch {
    path_regex: Option<String>,
    method: Option<String>,
    all: Option<Vec<Preserved>>,
    any: Option<Vec<Preserved>>,
    not: Option<Vec<Preserved>>,
}

/// The schema of a response class's match: status bounds at the top, the
/// nested matches kept as they are (`not` is one match, not a list).
#[derive(JsonSchema)]
#[allow(dead_code)] // Fields exist for their schema.
struct ResponseMatch {
    all: Option<Vec<Preserved>>,
    any: Option<Vec<Preserved>>,
    not: Option<Preserved>,
    status: Option<StatusRange>,
}

/// HTTP statuses from `min` to `max`, inclusive.
#[derive(JsonSchema)]
#[allow(dead_code)] // Fields exist for their schema.
struct StatusRange {
    max: Option<i32>,
    min: Option<i32>,
}
