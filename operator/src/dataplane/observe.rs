//! What a DataPlane's reconcile sees, from the operator's caches: its target,
//! and its selected meshed workloads as the planner's facts. Pure.

use super::pods::NamespacePods;
use crate::render::CONTROL_PLANE_LABEL;
pub use crate::render::cni::REDIRECT_SHA256 as CNI_REDIRECT_SHA256;
pub use crate::render::proxy::{TRUST_ROOT_SHA256, TRUST_ROOTS};
use crate::render::proxy::{TRUST_ROOTS_KEY, published_trust_root_sha256};
use crate::rollout::{Desired, Kind, PodProxy, RESTARTED_AT, Strategy, Target, Workload};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_crds::controlplane::ControlPlane;
use keelson_crds::dataplane::{DataPlane, VersionPolicy};
use kube::core::{Selector, SelectorExt};
use kube::{Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub const PROXY_VERSION: &str = "linkerd.io/proxy-version";
pub const INJECT: &str = "linkerd.io/inject";
/// Label the Deployment controller gives a ReplicaSet's pods; the
/// ReplicaSet is named `<deployment>-<hash>`.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The target of `dp`, from its ControlPlane's status and trust bundle.
/// `trust_roots` finds the bundle ConfigMap in a namespace.
pub fn desired(
    dp: &DataPlane,
    control_planes: &[Arc<ControlPlane>],
    trust_roots: impl Fn(&str) -> Option<Arc<ConfigMap>>,
) -> Desired {
    let cp = match control_plane(dp, control_planes) {
        Ok(cp) => cp,
        Err(message) => {
            return Desired::Held {
                reason: "NoControlPlane",
                message,
            };
        }
    };
    let cp_name = cp.name_any();
    let version = match (dp.spec.proxy_version.policy, &dp.spec.proxy_version.version) {
        (VersionPolicy::Pinned, Some(v)) => v.clone(),
        (VersionPolicy::Pinned, None) => {
            return Desired::Held {
                reason: "InvalidSpec",
                message: "spec.proxyVersion.version: required when policy is Pinned".into(),
            };
        }
        (VersionPolicy::FollowControlPlane, _) => match settled_version(cp) {
            Some(v) => v.to_owned(),
            None => {
                let phase = cp
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .map_or("unknown".to_owned(), |p| format!("{p:?}"));
                return Desired::Held {
                    reason: "ControlPlaneNotReady",
                    message: format!(
                        "waiting for ControlPlane {cp_name} to be Ready with no upgrade under way (phase {phase})"
                    ),
                };
            }
        },
    };
    let namespace = &cp.spec.namespace;
    // The target is the bundle the control plane reports running with; the
    // ConfigMap the injector reads only says whether a new one is on its way
    // (then proxies wait, so none gets a certificate from an identity
    // controller that has not loaded the matching issuer yet).
    let running = cp
        .status
        .as_ref()
        .and_then(|s| s.identity.as_ref())
        .and_then(|i| i.trust_root_sha256.clone());
    let published = trust_roots(namespace).and_then(|cm| published_trust_root_sha256(&cm));
    let cni_redirect_sha256 = match cni_redirect(cp) {
        Ok(digest) => digest,
        Err(held) => return held,
    };
    match (running, published) {
        (Some(running), Some(published)) if running == published => Desired::Target(Target {
            proxy_version: version,
            trust_root_sha256: running,
            cni_redirect_sha256,
        }),
        (Some(running), Some(published)) => Desired::Held {
            reason: "TrustBundleRolling",
            message: format!(
                "ControlPlane {cp_name} is rolling out trust bundle sha256 {} (it runs with {})",
                short(&published),
                short(&running)
            ),
        },
        _ => Desired::Held {
            reason: "NoTrustBundle",
            message: format!(
                "waiting for ControlPlane {cp_name} to run with the trust bundle in ConfigMap {namespace}/{TRUST_ROOTS} (key {TRUST_ROOTS_KEY})"
            ),
        },
    }
}

/// In CNI mode, the redirect settings every node's plugin runs: those of
/// the ControlPlane's spec at its running release, once its status says the
/// plugin's DaemonSet rolled them out everywhere. Until then pods restarted
/// now could land on a node with the settings being replaced.
fn cni_redirect(cp: &ControlPlane) -> Result<Option<String>, Desired> {
    let Some(cni) = &cp.spec.cni else {
        return Ok(None);
    };
    let status = cp.status.as_ref();
    let want = status
        .and_then(|s| s.current_version.as_deref())
        .and_then(|v| crate::catalog::find(v).ok())
        .map(|release| crate::render::cni::redirect_sha256(release, cni));
    let rolled_out = status
        .and_then(|s| s.cni.as_ref())
        .and_then(|c| c.redirect_sha256.clone());
    match (want, rolled_out) {
        (Some(want), Some(rolled_out)) if want == rolled_out => Ok(Some(want)),
        (_, rolled_out) => Err(Desired::Held {
            reason: "CniRolling",
            message: format!(
                "waiting for ControlPlane {}'s CNI plugin to run its redirect settings on every node (it runs {})",
                cp.name_any(),
                rolled_out.as_deref().map_or("none yet", short)
            ),
        }),
    }
}

fn short(sha: &str) -> &str {
    crate::identity::rotation::short(sha)
}

/// The ControlPlane a DataPlane names, or the cluster's only one.
fn control_plane<'a>(
    dp: &DataPlane,
    control_planes: &'a [Arc<ControlPlane>],
) -> Result<&'a ControlPlane, String> {
    match &dp.spec.control_plane {
        Some(name) => control_planes
            .iter()
            .find(|cp| &cp.name_any() == name)
            .map(AsRef::as_ref)
            .ok_or_else(|| format!("spec.controlPlane: ControlPlane {name} does not exist")),
        None => match control_planes {
            [only] => Ok(only),
            [] => Err("no ControlPlane exists".into()),
            many => Err(format!(
                "{} ControlPlanes exist; name one in spec.controlPlane",
                many.len()
            )),
        },
    }
}

/// The version a ControlPlane runs everywhere: Ready, with no upgrade under
/// way, and not being deleted. Proxies never chase a release mid-upgrade.
fn settled_version(cp: &ControlPlane) -> Option<&str> {
    let status = cp.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    (ready && status.upgrade.is_none() && cp.metadata.deletion_timestamp.is_none())
        .then_some(status.current_version.as_deref())
        .flatten()
}

/// A workload object from the caches.
#[derive(Clone, Debug)]
pub enum Object {
    Deployment(Arc<Deployment>),
    StatefulSet(Arc<StatefulSet>),
    DaemonSet(Arc<DaemonSet>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Deployment(_) => Kind::Deployment,
            Object::StatefulSet(_) => Kind::StatefulSet,
            Object::DaemonSet(_) => Kind::DaemonSet,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Deployment(o) => &o.metadata,
            Object::StatefulSet(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> String {
        self.meta().name.clone().unwrap_or_default()
    }

    /// The reference Events about it carry.
    pub fn reference(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        match self {
            Object::Deployment(o) => o.object_ref(&()),
            Object::StatefulSet(o) => o.object_ref(&()),
            Object::DaemonSet(o) => o.object_ref(&()),
        }
    }

    fn template(&self) -> Option<&ObjectMeta> {
        match self {
            Object::Deployment(o) => o.spec.as_ref()?.template.metadata.as_ref(),
            Object::StatefulSet(o) => o.spec.as_ref()?.template.metadata.as_ref(),
            Object::DaemonSet(o) => o.spec.as_ref()?.template.metadata.as_ref(),
        }
    }

    fn template_annotation(&self, key: &str) -> Option<&str> {
        self.template()?
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    fn template_labels(&self) -> Option<&BTreeMap<String, String>> {
        self.template()?.labels.as_ref()
    }

    fn labels(&self) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        self.meta().labels.as_ref().unwrap_or(&NONE)
    }

    /// The planner's facts about it.
    pub fn workload(&self, pods: Vec<PodProxy>, budgets: &[Budget]) -> Workload {
        let mut w = match self {
            Object::Deployment(d) => deployment(d),
            Object::StatefulSet(s) => stateful_set(s),
            Object::DaemonSet(d) => daemon_set(d),
        };
        w.name = self.name();
        w.generation = self.meta().generation.unwrap_or_default();
        w.restarted_at = self.template_annotation(RESTARTED_AT).map(str::to_owned);
        w.pods = pods;
        let labels = self.template_labels().cloned().unwrap_or_default();
        w.disruption_budget = budgets
            .iter()
            .filter(|b| b.selector.matches(&labels))
            .min_by_key(|b| b.disruptions_allowed)
            .map(|b| (b.name.clone(), b.disruptions_allowed));
        w
    }
}

/// Facts common to every kind, before the kind fills them in.
fn facts(kind: Kind, strategy: Strategy) -> Workload {
    Workload {
        kind,
        name: String::new(),
        replicas: 0,
        current: 0,
        updated: 0,
        available: 0,
        generation: 0,
        observed_generation: 0,
        strategy,
        stalled: None,
        crashing: None,
        restarted_at: None,
        pods: Vec::new(),
        disruption_budget: None,
    }
}

fn rolling(max_unavailable: Option<IntOrString>, default: IntOrString, round_up: bool) -> Strategy {
    Strategy::Rolling {
        max_unavailable: max_unavailable.unwrap_or(default),
        round_up,
    }
}

fn deployment(d: &Deployment) -> Workload {
    let spec = d.spec.as_ref();
    let strategy = spec.and_then(|s| s.strategy.as_ref());
    let strategy = match strategy.and_then(|s| s.type_.as_deref()) {
        Some("Recreate") => Strategy::Recreate,
        _ => rolling(
            strategy
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_unavailable.clone()),
            IntOrString::String("25%".into()),
            false,
        ),
    };
    let mut w = facts(Kind::Deployment, strategy);
    w.replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    if let Some(s) = &d.status {
        w.current = s.replicas.unwrap_or(0);
        w.updated = s.updated_replicas.unwrap_or(0);
        w.available = s.available_replicas.unwrap_or(0);
        w.observed_generation = s.observed_generation.unwrap_or(0);
        w.stalled = s
            .conditions
            .iter()
            .flatten()
            .find(|c| {
                c.type_ == "Progressing"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
            .map(|c| {
                c.message
                    .clone()
                    .unwrap_or_else(|| "ProgressDeadlineExceeded".into())
            });
    }
    w
}

fn stateful_set(s: &StatefulSet) -> Workload {
    let spec = s.spec.as_ref();
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    let strategy = match strategy.and_then(|s| s.type_.as_deref()) {
        Some("OnDelete") => Strategy::OnDelete,
        _ => rolling(
            strategy
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_unavailable.clone()),
            IntOrString::Int(1),
            true,
        ),
    };
    let mut w = facts(Kind::StatefulSet, strategy);
    w.replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    if let Some(st) = &s.status {
        w.current = st.replicas;
        // Every pod runs the update revision once the revisions agree.
        let converged = st.update_revision.is_some() && st.update_revision == st.current_revision;
        w.updated = if converged {
            st.replicas
        } else {
            st.updated_replicas.unwrap_or(0)
        };
        // availableReplicas arrived in Kubernetes 1.22; readiness before.
        w.available = st
            .available_replicas
            .unwrap_or(st.ready_replicas.unwrap_or(0));
        w.observed_generation = st.observed_generation.unwrap_or(0);
    }
    w
}

fn daemon_set(d: &DaemonSet) -> Workload {
    let strategy = d.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    let strategy = match strategy.and_then(|s| s.type_.as_deref()) {
        Some("OnDelete") => Strategy::OnDelete,
        _ => rolling(
            strategy
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_unavailable.clone()),
            IntOrString::Int(1),
            true,
        ),
    };
    let mut w = facts(Kind::DaemonSet, strategy);
    if let Some(st) = &d.status {
        w.replicas = st.desired_number_scheduled;
        w.current = st.current_number_scheduled;
        w.updated = st.updated_number_scheduled.unwrap_or(0);
        w.available = st.number_available.unwrap_or(0);
        w.observed_generation = st.observed_generation.unwrap_or(0);
    }
    w
}

/// A PodDisruptionBudget, as far as restarts care.
#[derive(Clone, Debug)]
pub struct Budget {
    pub name: String,
    pub selector: Selector,
    pub disruptions_allowed: i32,
}

impl Budget {
    /// From a PodDisruptionBudget of policy/v1 or policy/v1beta1 (the same
    /// fields). A status not yet computed allows nothing.
    pub fn from_object(pdb: &kube::api::DynamicObject) -> Option<Self> {
        let selector: LabelSelector =
            serde_json::from_value(pdb.data["spec"]["selector"].clone()).ok()?;
        Some(Self {
            name: pdb.name_any(),
            selector: Selector::try_from(selector).ok()?,
            disruptions_allowed: pdb.data["status"]["disruptionsAllowed"]
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(0),
        })
    }
}

/// The workloads `dp` selects among `objects` (all of its namespace): those
/// whose labels its selector matches, that are meshed, that no DataPlane
/// sorting before it selects, and that are not a control plane's own.
pub fn selected(
    dp: &DataPlane,
    siblings: &[Arc<DataPlane>],
    objects: Vec<Object>,
    namespace: Option<&ObjectMeta>,
    pods: &HashMap<(Kind, String), Vec<PodProxy>>,
) -> Vec<Object> {
    let selects = |d: &DataPlane, o: &Object| {
        Selector::try_from(d.spec.selector.clone()).is_ok_and(|s| s.matches(o.labels()))
    };
    let name = dp.name_any();
    let namespace_injects = namespace
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(INJECT))
        .is_some_and(|v| injects(v));
    objects
        .into_iter()
        .filter(|o| !o.labels().contains_key(CONTROL_PLANE_LABEL))
        .filter(|o| selects(dp, o))
        .filter(|o| {
            !siblings
                .iter()
                .any(|d| d.name_any() < name && selects(d, o))
        })
        .filter(|o| {
            let has_proxy = pods
                .get(&(o.kind(), o.name()))
                .is_some_and(|p| p.iter().any(|p| p.version.is_some()));
            let template = o.template_annotation(INJECT);
            has_proxy
                || template.is_some_and(injects)
                || (namespace_injects && template != Some("disabled"))
        })
        .collect()
}

fn injects(value: &str) -> bool {
    matches!(value, "enabled" | "ingress")
}

/// The proxies of one namespace's pods that are not being deleted, by the
/// workload that owns them.
pub fn pods_by_workload(pods: &NamespacePods) -> HashMap<(Kind, String), Vec<PodProxy>> {
    let mut out: HashMap<_, Vec<_>> = HashMap::new();
    for facts in pods.values() {
        if let (Some(owner), false) = (&facts.owner, facts.deleting) {
            out.entry(owner.clone())
                .or_default()
                .push(facts.proxy.clone());
        }
    }
    out
}

/// Why the pods of the restart `token` of `workload` cannot become ready:
/// the first of them with a container stuck waiting.
pub fn crashing(pods: &NamespacePods, workload: &(Kind, String), token: &str) -> Option<String> {
    // By name, so that the same pod is told each time.
    let mut stuck: Vec<(&String, String)> = pods
        .iter()
        .filter(|(_, p)| p.owner.as_ref() == Some(workload))
        .filter_map(|(name, p)| Some((name, p.stuck_in(name, token)?)))
        .collect();
    stuck.sort();
    stuck.into_iter().next().map(|(_, why)| why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::pods::{PodFacts, WatchedPod};
    use crate::render::proxy::trust_root_sha256;
    use keelson_crds::controlplane::CniStatus;
    use serde_json::{Value, json};

    fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn control_plane(status: Value) -> Arc<ControlPlane> {
        Arc::new(from(json!({
            "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
            "metadata": {"name": "mesh"},
            "spec": {"version": "edge-25.10.7", "namespace": "linkerd"},
            "status": status,
        })))
    }

    fn ready(version: &str) -> Value {
        json!({"currentVersion": version, "phase": "Ready", "conditions": [{
            "type": "Ready", "status": "True", "reason": "ComponentsAvailable", "message": "ok",
            "lastTransitionTime": "2025-01-01T00:00:00Z"}],
            "identity": {"trustRootSha256": trust_root_sha256("PEM")}})
    }

    fn data_plane(spec: Value) -> DataPlane {
        from(json!({
            "apiVersion": "keelson.dev/v1alpha1", "kind": "DataPlane",
            "metadata": {"name": "web", "namespace": "shop"}, "spec": spec,
        }))
    }

    fn roots(_: &str) -> Option<Arc<ConfigMap>> {
        Some(Arc::new(from(json!({
            "metadata": {"name": TRUST_ROOTS, "namespace": "linkerd"},
            "data": {"ca-bundle.crt": "PEM"},
        }))))
    }

    #[test]
    fn in_cni_mode_the_target_waits_for_the_plugins_settings_on_every_node() {
        let release = crate::catalog::find("edge-25.4.4").unwrap();
        let spec: keelson_crds::controlplane::CniSpec = from(json!({"ignoreInboundPorts": "25"}));
        let want = crate::render::cni::redirect_sha256(release, &spec);
        let in_cni_mode = |rolled_out: Option<&str>| {
            let mut cp = Arc::unwrap_or_clone(control_plane(ready("edge-25.4.4")));
            cp.spec.cni = Some(spec.clone());
            cp.status.as_mut().unwrap().cni = rolled_out.map(|d| CniStatus {
                redirect_sha256: Some(d.into()),
            });
            desired(&data_plane(json!({})), &[Arc::new(cp)], roots)
        };
        assert_eq!(
            in_cni_mode(Some(&want)),
            Desired::Target(Target {
                proxy_version: "edge-25.4.4".into(),
                trust_root_sha256: trust_root_sha256("PEM"),
                cni_redirect_sha256: Some(want.clone()),
            })
        );
        // The DaemonSet still rolls the spec's settings out, or never did.
        let other = crate::render::cni::redirect_sha256(
            release,
            &from(json!({"ignoreInboundPorts": "26"})),
        );
        for rolled_out in [Some(other.as_str()), None] {
            assert!(matches!(
                in_cni_mode(rolled_out),
                Desired::Held {
                    reason: "CniRolling",
                    ..
                }
            ));
        }
    }

    #[test]
    fn the_target_follows_a_ready_control_plane_or_the_pin() {
        let sha = trust_root_sha256("PEM");
        let follow = data_plane(json!({}));
        assert_eq!(
            desired(&follow, &[control_plane(ready("edge-25.4.4"))], roots),
            Desired::Target(Target {
                proxy_version: "edge-25.4.4".into(),
                trust_root_sha256: sha.clone(),
                cni_redirect_sha256: None,
            })
        );
        let mut upgrading = ready("edge-25.4.4");
        upgrading["upgrade"] = json!({"from": "edge-25.4.4", "to": "edge-25.10.7",
            "step": "edge-25.10.7", "stage": "Identity", "stageStartedAt": "2025-01-01T00:00:00Z"});
        assert!(matches!(
            desired(&follow, &[control_plane(upgrading)], roots),
            Desired::Held {
                reason: "ControlPlaneNotReady",
                ..
            }
        ));
        let pinned =
            data_plane(json!({"proxyVersion": {"policy": "Pinned", "version": "edge-24.11.8"}}));
        let unready = json!({"identity": {"trustRootSha256": trust_root_sha256("PEM")}});
        assert_eq!(
            desired(&pinned, &[control_plane(unready)], roots),
            Desired::Target(Target {
                proxy_version: "edge-24.11.8".into(),
                trust_root_sha256: sha,
                cni_redirect_sha256: None,
            })
        );
        assert!(matches!(
            desired(&follow, &[control_plane(ready("edge-25.4.4"))], |_| None),
            Desired::Held {
                reason: "NoTrustBundle",
                ..
            }
        ));
        // A new bundle in the ConfigMap waits until the control plane runs
        // with it; a control plane that reports none holds everything.
        let rolling = |_: &str| {
            Some(Arc::new(from(json!({
                "metadata": {"name": TRUST_ROOTS, "namespace": "linkerd"},
                "data": {"ca-bundle.crt": "NEW PEM"},
            }))))
        };
        assert!(matches!(
            desired(&follow, &[control_plane(ready("edge-25.4.4"))], rolling),
            Desired::Held {
                reason: "TrustBundleRolling",
                ..
            }
        ));
        let mut unreported = ready("edge-25.4.4");
        unreported["identity"] = json!({});
        assert!(matches!(
            desired(&follow, &[control_plane(unreported)], roots),
            Desired::Held {
                reason: "NoTrustBundle",
                ..
            }
        ));
        assert!(matches!(
            desired(&follow, &[], roots),
            Desired::Held {
                reason: "NoControlPlane",
                ..
            }
        ));
    }

    fn pod(
        owner_kind: &str,
        owner: &str,
        labels: Value,
        version: Option<&str>,
    ) -> (String, PodFacts) {
        let annotations = version.map_or(json!({}), |v| json!({PROXY_VERSION: v}));
        let pod: WatchedPod = from(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{owner}-1"), "namespace": "shop", "labels": labels,
                "annotations": annotations,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner,
                    "uid": "u", "controller": true}]},
        }));
        (format!("{owner}-1"), pod.facts)
    }

    #[test]
    fn pods_belong_to_the_deployment_their_replica_set_is_named_after() {
        let pods = [
            pod(
                "ReplicaSet",
                "web-api-5d9f",
                json!({POD_TEMPLATE_HASH: "5d9f"}),
                Some("v1"),
            ),
            pod("StatefulSet", "db", json!({}), None),
            pod("ReplicaSet", "orphan-rs", json!({}), None),
            pod("Job", "batch", json!({}), None),
        ]
        .into();
        let by = pods_by_workload(&pods);
        assert_eq!(by.len(), 2, "{by:?}");
        assert_eq!(
            by[&(Kind::Deployment, "web-api".into())][0]
                .version
                .as_deref(),
            Some("v1")
        );
        assert!(by.contains_key(&(Kind::StatefulSet, "db".into())));
    }

    fn deployment_object(name: &str, labels: Value, template_annotations: Value) -> Object {
        Object::Deployment(Arc::new(from(json!({
            "metadata": {"name": name, "namespace": "shop", "labels": labels, "generation": 2},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": name}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}},
                "template": {"metadata": {"labels": {"app": name}, "annotations": template_annotations}}},
            "status": {"replicas": 4, "updatedReplicas": 4, "availableReplicas": 3, "observedGeneration": 2,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                    "message": "ReplicaSet web-1 has timed out progressing."}]},
        }))))
    }

    #[test]
    fn selection_takes_meshed_workloads_matching_the_selector_once() {
        let objects = vec![
            deployment_object("a", json!({"tier": "web"}), json!({})),
            deployment_object("b", json!({"tier": "web"}), json!({INJECT: "disabled"})),
            deployment_object("c", json!({"tier": "db"}), json!({})),
            deployment_object(
                "d",
                json!({"tier": "web", CONTROL_PLANE_LABEL: "mesh"}),
                json!({}),
            ),
            deployment_object("e", json!({"tier": "web"}), json!({INJECT: "enabled"})),
        ];
        let dp = data_plane(json!({"selector": {"matchLabels": {"tier": "web"}}}));
        let names = |objs: Vec<Object>| objs.iter().map(Object::name).collect::<Vec<_>>();
        let injected_ns: ObjectMeta = from(json!({"annotations": {INJECT: "enabled"}}));
        let none = HashMap::new();
        assert_eq!(
            names(selected(
                &dp,
                &[],
                objects.clone(),
                Some(&injected_ns),
                &none
            )),
            ["a", "e"]
        );
        // Without the namespace annotation only the template's counts, or
        // pods that already carry a proxy.
        let mut pods = HashMap::new();
        pods.insert(
            (Kind::Deployment, "a".to_owned()),
            vec![PodProxy {
                version: Some("edge-25.4.4".into()),
                trust_root_sha256: None,
                cni_redirect_sha256: None,
            }],
        );
        assert_eq!(
            names(selected(&dp, &[], objects.clone(), None, &pods)),
            ["a", "e"]
        );
        assert_eq!(
            names(selected(&dp, &[], objects.clone(), None, &none)),
            ["e"]
        );
        // A DataPlane sorting first that selects the same workloads takes them.
        let mut first = data_plane(json!({}));
        first.metadata.name = Some("aaa".into());
        assert!(selected(&dp, &[Arc::new(first)], objects, None, &none).is_empty());
    }

    #[test]
    fn deployment_facts_and_budgets() {
        let o = deployment_object(
            "web",
            json!({}),
            json!({RESTARTED_AT: "w1-2025-01-01T00:00:00Z"}),
        );
        let budget = Budget::from_object(&from(json!({
            "apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web-pdb", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 3},
            "status": {"disruptionsAllowed": 0},
        })))
        .unwrap();
        let w = o.workload(Vec::new(), &[budget]);
        assert_eq!(
            (w.replicas, w.current, w.updated, w.available),
            (4, 4, 4, 3)
        );
        assert_eq!(w.generation, 2);
        assert_eq!(
            w.strategy,
            Strategy::Rolling {
                max_unavailable: IntOrString::String("50%".into()),
                round_up: false
            }
        );
        assert_eq!(w.restarted_at.as_deref(), Some("w1-2025-01-01T00:00:00Z"));
        assert_eq!(w.disruption_budget, Some(("web-pdb".into(), 0)));
        assert!(w.stalled.unwrap().contains("timed out"));
    }

    #[test]
    fn a_crash_loop_counts_only_for_pods_of_the_workload_and_its_restart() {
        let pod = |name: &str, owner: &str, token: &str, reason: &str| -> (String, PodFacts) {
            let pod: WatchedPod = from(json!({
                "metadata": {"name": name, "annotations": {RESTARTED_AT: token},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                        "name": owner, "uid": "u", "controller": true}]},
                "status": {"containerStatuses": [{"name": "app", "image": "x", "imageID": "",
                    "ready": false, "restartCount": 1,
                    "state": {"waiting": {"reason": reason, "message": "back-off"}}}]},
            }));
            (name.to_owned(), pod.facts)
        };
        let db = (Kind::StatefulSet, "db".to_owned());
        let pods: NamespacePods = [
            pod("db-0", "db", "old", "CrashLoopBackOff"),
            pod("db-1", "db", "new", "ContainerCreating"),
            pod("cache-0", "cache", "new", "CrashLoopBackOff"),
        ]
        .into();
        assert_eq!(crashing(&pods, &db, "new"), None);
        // Of several, the first by name is told.
        let pods: NamespacePods = [
            pod("db-2", "db", "new", "ImagePullBackOff"),
            pod("db-1", "db", "new", "CrashLoopBackOff"),
        ]
        .into();
        assert_eq!(
            crashing(&pods, &db, "new").as_deref(),
            Some("pod db-1: container app is in CrashLoopBackOff: back-off")
        );
    }
}
