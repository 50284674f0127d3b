//! The Helm chart's values, as types: `make manifests` writes
//! `values.schema.json` from them (Helm refuses values that do not fit,
//! naming the field, before rendering anything), and a test reads the
//! chart's `values.yaml` into them, so the two cannot drift. The defaults
//! and the documentation of each value live in `values.yaml`.

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Values {
    pub image: Image,
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Every replica serves the webhooks; the Lease holder reconciles.
    #[schemars(range(min = 1))]
    pub replicas: u32,
    /// A tracing filter (`RUST_LOG` syntax), e.g. `info` or
    /// `info,keelson_operator=debug`.
    #[schemars(length(min = 1))]
    pub log_level: String,
    pub log_format: LogFormat,
    /// Arguments after `keelson run`'s own.
    pub extra_args: Vec<String>,
    /// Environment variables after Keelson's own.
    pub extra_env: Vec<EnvVar>,
    #[schemars(range(min = 1, max = 65535))]
    pub webhook_port: u16,
    #[schemars(range(min = 1, max = 65535))]
    pub admin_port: u16,
    pub resources: ResourceRequirements,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    /// Empty: replicas preferably on different nodes.
    pub affinity: Affinity,
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    pub priority_class_name: String,
    pub pod_annotations: BTreeMap<String, String>,
    pub pod_labels: BTreeMap<String, String>,
    pub pod_disruption_budget: DisruptionBudget,
    pub service_monitor: Monitor,
    pub pod_monitor: Monitor,
    pub control_planes: Vec<ControlPlaneGrant>,
    /// Namespaces whose workloads DataPlanes may restart; `*` for all.
    pub data_plane_namespaces: Vec<String>,
    pub network_policy: NetworkPolicy,
    pub linkerd_webhook_shells: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Image {
    #[schemars(length(min = 1))]
    pub repository: String,
    /// Empty: the chart's appVersion.
    pub tag: String,
    /// `sha256:<64 hex>`; when set, the image is pulled by digest and the
    /// tag is not used.
    #[schemars(regex(pattern = r"^(sha256:[0-9a-f]{64})?$"))]
    pub digest: String,
    pub pull_policy: PullPolicy,
}

#[derive(Deserialize, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisruptionBudget {
    pub enabled: bool,
    /// Pods a voluntary disruption may take at once: a number or a
    /// percentage.
    pub max_unavailable: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
}

/// A Prometheus Operator ServiceMonitor or PodMonitor for `/metrics`.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Monitor {
    pub enabled: bool,
    /// Scrape interval, e.g. `30s`.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub interval: String,
    /// Labels on the monitor, for a Prometheus that selects by them.
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControlPlaneGrant {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub namespace: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicy {
    pub enabled: bool,
    pub webhook_from: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
    pub metrics_from: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

/// `values.schema.json`: every subschema inline (Helm's validators differ
/// in how they resolve references), every object closed to unknown keys
/// where Keelson defines it.
pub fn schema_json() -> String {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let schema = generator.into_root_schema_for::<Values>();
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/helm/keelson");

    #[test]
    fn the_charts_values_are_what_the_schema_describes() {
        let text = std::fs::read_to_string(format!("{CHART}/values.yaml")).unwrap();
        let values: Values =
            yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("values.yaml: {e}"));
        assert_eq!(values.replicas, 2);
        assert!(!values.service_monitor.enabled && !values.pod_monitor.enabled);
        // A misspelt key is refused, as Helm refuses it with the schema.
        let misspelt = text.replace("replicas:", "replica:");
        assert!(yaml_serde::from_str::<Values>(&misspelt).is_err());
        let schema: serde_json::Value = serde_json::from_str(&schema_json()).unwrap();
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            schema["properties"]["image"]["properties"]["pullPolicy"]["enum"],
            serde_json::json!(["Always", "IfNotPresent", "Never"])
        );
    }
}
