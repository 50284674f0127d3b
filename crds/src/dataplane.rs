//! `DataPlane`: which meshed workloads follow which proxy version, and how fast
//! their pods may be restarted to get there.

use crate::duration::Duration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Meshed workloads of one namespace whose proxies Keelson keeps at the right
/// version and trust bundle, restarting their pods in paced waves.
///
/// A proxy only changes when its pod is re-created. Keelson compares each
/// selected workload's pods (`linkerd.io/proxy-version`,
/// `linkerd.io/trust-root-sha256`) with what they should run and restarts the
/// lagging ones in batches, never making more pods unavailable than allowed
/// and never breaking a PodDisruptionBudget.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "keelson.dev",
    version = "v1alpha1",
    kind = "DataPlane",
    namespaced,
    status = "DataPlaneStatus",
    shortname = "ldp",
    category = "keelson",
    printcolumn = r#"{"name":"Workloads","type":"integer","jsonPath":".status.workloads"}"#,
    printcolumn = r#"{"name":"Up-to-date","type":"integer","jsonPath":".status.upToDate"}"#,
    printcolumn = r#"{"name":"Pending","type":"integer","jsonPath":".status.pending"}"#,
    printcolumn = r#"{"name":"Restarting","type":"integer","jsonPath":".status.restarting"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.failed"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DataPlaneSpec {
    /// Name of the ControlPlane these workloads are meshed with. May be left
    /// out when the cluster has exactly one ControlPlane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<String>,

    /// Selects workloads (Deployments, StatefulSets, DaemonSets) in this
    /// namespace by their labels. Empty selects every meshed workload of the
    /// namespace.
    #[serde(default)]
    pub selector: LabelSelector,

    /// Which proxy version the selected workloads run.
    #[serde(default)]
    pub proxy_version: ProxyVersionPolicy,

    /// How fast pods are restarted.
    #[serde(default)]
    pub rollout: RolloutSpec,
}

/// Which proxy version workloads run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyVersionPolicy {
    /// `FollowControlPlane` (the default): the proxy of the ControlPlane's
    /// current version, updated after each control-plane upgrade. `Pinned`:
    /// the release in `version`, within Linkerd's skew rule (proxies at most
    /// one minor release behind the control plane).
    #[serde(default)]
    pub policy: VersionPolicy,

    /// Linkerd release to pin proxies to; required with `policy: Pinned` and
    /// not allowed otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Whether proxies follow the control plane.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VersionPolicy {
    #[default]
    FollowControlPlane,
    Pinned,
}

/// Pacing of pod restarts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Most workloads restarted in one batch. Defaults to 5.
    #[serde(default = "default_batch_size")]
    // The upper bound is i32's: the API server then refuses a larger number
    // naming the field, instead of storing one Keelson cannot read back.
    #[schemars(range(min = 1, max = 2147483647))]
    pub batch_size: i32,

    /// Most pods of this DataPlane that may be unavailable at once because of
    /// restarts, as a number or a percentage of all selected pods (`25%`).
    /// Percentages round down, but never below one pod.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: IntOrString,

    /// Pause between one batch becoming available and the next starting.
    #[serde(default = "default_interval")]
    pub interval: Duration,

    /// Stop starting new batches; restarts already under way finish.
    #[serde(default)]
    pub paused: bool,

    /// How long a restarted StatefulSet or DaemonSet may take to become
    /// available before its restart counts as failed. Deployments use their
    /// own `progressDeadlineSeconds`.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: Duration,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            batch_size: default_batch_size(),
            max_unavailable: default_max_unavailable(),
            interval: default_interval(),
            paused: false,
            progress_deadline: default_progress_deadline(),
        }
    }
}

fn default_batch_size() -> i32 {
    5
}

fn default_max_unavailable() -> IntOrString {
    IntOrString::String("25%".to_owned())
}

fn default_interval() -> Duration {
    std::time::Duration::from_secs(10).into()
}

fn default_progress_deadline() -> Duration {
    std::time::Duration::from_secs(600).into()
}

/// Observed state of a DataPlane.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataPlaneStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (every workload up to date), `Progressing` (a wave is under
    /// way) and `Degraded` (a workload failed to become available).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Selected meshed workloads.
    #[serde(default)]
    pub workloads: i32,

    /// Workloads whose pods all run the desired proxy version and trust bundle.
    #[serde(default)]
    pub up_to_date: i32,

    /// Workloads not up to date that are neither restarting nor failed:
    /// waiting for a batch, or held (see `lagging` for why).
    #[serde(default)]
    pub pending: i32,

    /// Workloads in the batch being restarted.
    #[serde(default)]
    pub restarting: i32,

    /// Workloads that did not become available after a restart in the
    /// current wave.
    #[serde(default)]
    pub failed: i32,

    /// Proxy version the workloads should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_proxy_version: Option<String>,

    /// SHA-256 of the trust bundle the workloads should carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_trust_root_sha256: Option<String>,

    /// In CNI mode: SHA-256 of the plugin's redirect settings the
    /// workloads' pods should have been set up with (the ControlPlane's
    /// `status.cni.redirectSha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cni_redirect_sha256: Option<String>,

    /// Workloads not yet up to date, and why (at most 50 are listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lagging: Vec<LaggingWorkload>,

    /// The current wave of restarts, persisted batch by batch so that a
    /// restarted operator resumes exactly where it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<Wave>,
}

/// A wave: the restarts that bring the selected workloads to one target.
/// A new wave starts when the target (proxy version or trust bundle) or the
/// DataPlane's spec (`metadata.generation`) changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    /// Counts waves since the DataPlane was created.
    pub number: i64,
    /// The DataPlane `metadata.generation` the wave belongs to.
    pub generation: i64,
    /// When the wave started. A workload whose restart token is not older
    /// was restarted in this wave and is not restarted again.
    pub started_at: Time,
    /// The batch under way: workloads restarted and not yet available.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarting: Vec<WaveRestart>,
    /// When the batch under way started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_started_at: Option<Time>,
    /// When the last batch finished; the next waits `spec.rollout.interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_batch_finished_at: Option<Time>,
    /// Workloads whose restart failed. The wave starts no new batch while
    /// any is listed, and they are not restarted again until the target or
    /// the DataPlane's spec changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<WaveFailure>,
}

/// A workload restarted in the batch under way.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveRestart {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: String,
    pub name: String,
    /// Value of the pod-template annotation `keelson.dev/restarted-at` that
    /// restarts it.
    pub token: String,
}

/// A workload whose restart failed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveFailure {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: String,
    pub name: String,
    /// What went wrong.
    pub message: String,
}

/// A workload that is not up to date.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaggingWorkload {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: String,
    pub name: String,
    /// Why it lags: `ProxyVersion` or `TrustBundle` (waiting for a batch),
    /// `Restarting`, `Failed`, `Unchanged` (restarted in this wave, but its
    /// pods still do not carry the target), `Progressing` (its own rollout
    /// or unavailable pods come first), `PodDisruptionBudget`,
    /// `MaxUnavailable` (its rollout alone may take down more pods than
    /// allowed) or `OnDelete` (its update strategy never replaces pods).
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
