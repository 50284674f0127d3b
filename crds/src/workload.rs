//! Linkerd's ExternalWorkload (workload.linkerd.io): a workload outside the
//! cluster enrolled in the mesh. Modelled on
//! `charts/linkerd-crds/templates/workload/external-workload.yaml` at
//! edge-24.11.8, edge-25.4.4 and edge-25.10.7 (identical in all three).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A workload outside the cluster in the mesh (workload.linkerd.io/v1beta1).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "workload.linkerd.io",
    version = "v1beta1",
    kind = "ExternalWorkload",
    namespaced,
    category = "external",
    status = "ExternalWorkloadStatus",
    doc = "An ExternalWorkload describes a single workload (i.e. a deployable unit) external to the cluster that should be enrolled in the mesh.",
    printcolumn = r#"{"name":"Identity","type":"string","jsonPath":".spec.meshTLS.identity"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct ExternalWorkloadSpec {
    #[serde(rename = "meshTLS")]
    pub mesh_tls: MeshTls,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<WorkloadPort>>,
    /// At most one IPv4 and one IPv6 address.
    #[serde(
        default,
        rename = "workloadIPs",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 2))]
    pub workload_ips: Option<Vec<WorkloadIp>>,
}

/// The workload's TLS identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshTls {
    /// The identity in the workload's certificate, verified by peers.
    #[schemars(length(min = 1, max = 253))]
    pub identity: String,
    /// The DNS name the workload terminates TLS for (SNI).
    #[schemars(length(min = 1, max = 253))]
    pub server_name: String,
}

/// A port the workload exposes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct WorkloadPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// `TCP` or `UDP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "TCP"))]
    pub protocol: Option<String>,
}

/// An address of the workload.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct WorkloadIp {
    /// Optional in Linkerd's schema, though its controllers need it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// Written by the workload's own agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ExternalWorkloadStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::probed_conditions")]
    pub conditions: Vec<WorkloadCondition>,
}

/// A condition as the workload's agent reports it: unlike the API's usual
/// Condition, only the type and status are required, and the last probe is
/// recorded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Status of a condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// ExternalWorkload as of workload.linkerd.io/v1alpha1: `meshTls` spelled
/// differently, one address, and a status without the status subresource
/// (the CRD generation drops the subresource kube derives from `status`).
pub mod v1alpha1 {
    use super::*;

    /// A workload outside the cluster in the mesh (workload.linkerd.io/v1alpha1).
    #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
    #[kube(
        group = "workload.linkerd.io",
        version = "v1alpha1",
        kind = "ExternalWorkload",
        namespaced,
        category = "external",
        status = "ExternalWorkloadStatus",
        doc = "An ExternalWorkload describes a single workload (i.e. a deployable unit) external to the cluster that should be enrolled in the mesh.",
        printcolumn = r#"{"name":"Identity","type":"string","jsonPath":".spec.meshTls.identity"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )]
    #[serde(rename_all = "camelCase")]
    pub struct ExternalWorkloadSpec {
        pub mesh_tls: MeshTls,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ports: Option<Vec<WorkloadPort>>,
        #[serde(
            default,
            rename = "workloadIPs",
            skip_serializing_if = "Option::is_none"
        )]
        #[schemars(length(max = 1))]
        pub workload_ips: Option<Vec<WorkloadIp>>,
    }
}
