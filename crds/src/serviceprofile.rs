//! Linkerd's ServiceProfile (linkerd.io): per-route metrics, retries and
//! timeouts for a Service. Modelled on `charts/linkerd-crds/templates/serviceprofile.yaml`
//! and Linkerd's Go types (`controller/gen/apis/serviceprofile/v1alpha2`) at
//! edge-24.11.8, edge-25.4.4 and edge-25.10.7.

use crate::preserved::Preserved;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Service's routes and their retry and timeout settings (linkerd.io/v1alpha2;
/// v1alpha1 is served with the same schema, where Linkerd's also requires
/// `routes`).
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
/// Linkerd's chart places `required` on the list rather than its items, where
/// the API server ignores it; both fields stay optional to accept what
/// Linkerd accepts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct WeightedDst {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<Quantity>,
}
