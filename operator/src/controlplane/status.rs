//! Status of a ControlPlane, computed from what was observed. Pure: the
//! reconciler writes the result only when it differs from what is stored.

use crate::render::proxy::TRUST_ROOT_SHA256;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use keelson_crds::ControlPlaneStatus;
use keelson_crds::controlplane::{CniStatus, ComponentStatus, ControlPlanePhase};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const KUBERNETES_SUPPORTED: &str = "KubernetesVersionSupported";
pub const CERTIFICATES_EXPIRING_SOON: &str = "CertificatesExpiringSoon";
/// The conditions `kstatus` (Flux, `kubectl wait`-style tools, Argo CD's
/// health checks) reads: work under way, and work that cannot go on
/// without someone changing something.
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// A component's state from its Deployment: available once every replica of
/// the current template is updated and available.
pub fn component(name: &str, deployment: Option<&Deployment>) -> ComponentStatus {
    let Some(d) = deployment else {
        return ComponentStatus {
            name: name.into(),
            ..ComponentStatus::default()
        };
    };
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let available = status.available_replicas.unwrap_or(0);
    let current = status.observed_generation >= d.metadata.generation
        && status.updated_replicas.unwrap_or(0) >= desired
        && status.replicas.unwrap_or(0) == desired;
    ComponentStatus {
        name: name.into(),
        version: d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("linkerd.io/proxy-version").cloned()),
        desired_replicas: desired,
        available_replicas: available,
        available: current && available >= desired,
    }
}

/// CNI mode's plugin as a component: available once its DaemonSet is rolled
/// out and available on every node it schedules to, at the release its
/// annotation names.
pub fn cni_component(daemon_set: Option<&DaemonSet>) -> ComponentStatus {
    let name = "cni";
    let Some(d) = daemon_set else {
        return ComponentStatus {
            name: name.into(),
            ..ComponentStatus::default()
        };
    };
    let status = d.status.clone().unwrap_or_default();
    let desired = status.desired_number_scheduled;
    let available = status.number_available.unwrap_or(0);
    let current = status.observed_generation >= d.metadata.generation
        && status.updated_number_scheduled.unwrap_or(0) == desired
        && status.number_unavailable.unwrap_or(0) == 0;
    ComponentStatus {
        name: name.into(),
        version: d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::render::cni::LINKERD_VERSION).cloned()),
        desired_replicas: desired,
        available_replicas: available,
        // A cluster with no schedulable node has nowhere to run pods either.
        available: current && desired > 0 && available == desired,
    }
}

/// What every node's plugin runs: the redirect settings of the DaemonSet's
/// template once it is rolled out and available everywhere; while it is
/// not, the settings recorded before: nodes the rollout has not reached
/// still run them, and a pod the injector marks with older settings than
/// its node's is restarted once more when the rollout is done. (A change
/// reverted mid-rollout can leave pods created on the nodes it reached
/// with the reverted settings and the older mark; they are not restarted.)
pub fn cni_status(previous: Option<&CniStatus>, daemon_set: Option<&DaemonSet>) -> CniStatus {
    let rolled_out = daemon_set
        .filter(|d| cni_component(Some(d)).available)
        .and_then(|d| {
            template_annotation(
                d.spec.as_ref()?.template.metadata.as_ref(),
                crate::render::cni::REDIRECT_SHA256,
            )
        });
    match rolled_out {
        Some(digest) => CniStatus {
            redirect_sha256: Some(digest),
        },
        None => previous.cloned().unwrap_or_default(),
    }
}

/// An annotation of a workload's pod template.
fn template_annotation(
    template: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    key: &str,
) -> Option<String> {
    template?.annotations.as_ref()?.get(key).cloned()
}

/// The trust-bundle digest the control plane runs with: the one every
/// component's template carries, once all of them are rolled out and
/// available with it.
pub fn rolled_out_bundle(deployments: &[Option<Deployment>]) -> Option<String> {
    let mut digests = deployments.iter().map(|d| {
        let d = d.as_ref()?;
        component("", Some(d)).available.then_some(())?;
        template_annotation(
            d.spec.as_ref()?.template.metadata.as_ref(),
            TRUST_ROOT_SHA256,
        )
    });
    let first = digests.next()??;
    digests.all(|d| d.as_ref() == Some(&first)).then_some(first)
}

/// Adds `Reconciling` and `Stalled`, the "abnormal-true" conditions of the
/// kstatus conventions, as copies of `Progressing` and `Degraded` (their
/// reasons, messages, generations and transition times): the operator
/// decides each state once, and GitOps tools that know only the
/// conventions read the same answer. Called on every status written.
pub fn with_kstatus(conditions: &mut Vec<Condition>) {
    for (source, mirror) in [(PROGRESSING, RECONCILING), (DEGRADED, STALLED)] {
        let copy = conditions
            .iter()
            .find(|c| c.type_ == source)
            .map(|c| Condition {
                type_: mirror.to_owned(),
                ..c.clone()
            });
        conditions.retain(|c| c.type_ != mirror);
        conditions.extend(copy);
    }
}

/// Sets a condition, keeping its transition time while its status holds.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if ok { "True" } else { "False" };
    // k8s-openapi writes an empty message as null, which the schema refuses.
    let message = Some(message.into())
        .filter(|m: &String| !m.is_empty())
        .unwrap_or_else(|| reason.to_owned());
    let last_transition_time = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// The status after a reconcile that applied `version` and observed
/// `components`, starting from the stored status.
pub fn converging(
    previous: &ControlPlaneStatus,
    generation: Option<i64>,
    version: &str,
    components: Vec<ComponentStatus>,
    now: &Time,
) -> ControlPlaneStatus {
    let mut next = previous.clone();
    next.observed_generation = generation;
    let ready = !components.is_empty() && components.iter().all(|c| c.available);
    let waiting: Vec<&str> = components
        .iter()
        .filter(|c| !c.available)
        .map(|c| c.name.as_str())
        .collect();
    let conditions = &mut next.conditions;
    if ready {
        set_condition(
            conditions,
            READY,
            true,
            "ComponentsAvailable",
            format!("Linkerd {version} is available"),
            generation,
            now,
        );
        set_condition(
            conditions,
            PROGRESSING,
            false,
            "Converged",
            "",
            generation,
            now,
        );
        next.current_version = Some(version.into());
        next.target_version = None;
        next.phase = Some(ControlPlanePhase::Ready);
    } else if previous.current_version.as_deref() == Some(version) {
        // Installed, nothing left to apply: a component went down on its
        // own (a node failure, an eviction). Kubernetes is restarting it;
        // there is no change of Keelson's to wait for.
        let message = format!("{} unavailable", waiting.join(", "));
        set_condition(
            conditions,
            READY,
            false,
            "ComponentsUnavailable",
            &message,
            generation,
            now,
        );
        set_condition(
            conditions,
            PROGRESSING,
            false,
            "Converged",
            "",
            generation,
            now,
        );
        set_condition(
            conditions,
            DEGRADED,
            true,
            "ComponentsUnavailable",
            message,
            generation,
            now,
        );
        next.target_version = None;
        next.phase = Some(ControlPlanePhase::Degraded);
        next.components = components;
        return next;
    } else {
        let message = format!("waiting for {} to become available", waiting.join(", "));
        set_condition(
            conditions,
            READY,
            false,
            "ComponentsUnavailable",
            &message,
            generation,
            now,
        );
        set_condition(
            conditions,
            PROGRESSING,
            true,
            "Applying",
            message,
            generation,
            now,
        );
        next.target_version = Some(version.into());
        next.phase = Some(if previous.current_version.is_some() {
            ControlPlanePhase::Upgrading
        } else {
            ControlPlanePhase::Installing
        });
    }
    set_condition(
        &mut next.conditions,
        DEGRADED,
        false,
        "AsExpected",
        "",
        generation,
        now,
    );
    next.components = components;
    next
}

/// The status of a ControlPlane Keelson refuses to act on.
pub fn refused(
    previous: &ControlPlaneStatus,
    generation: Option<i64>,
    reason: &str,
    message: &str,
    now: &Time,
) -> ControlPlaneStatus {
    let mut next = previous.clone();
    next.observed_generation = generation;
    set_condition(
        &mut next.conditions,
        READY,
        false,
        reason,
        message,
        generation,
        now,
    );
    set_condition(
        &mut next.conditions,
        DEGRADED,
        true,
        reason,
        message,
        generation,
        now,
    );
    set_condition(
        &mut next.conditions,
        PROGRESSING,
        false,
        reason,
        "",
        generation,
        now,
    );
    next.phase = Some(ControlPlanePhase::Failed);
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn deployment(
        replicas: i32,
        available: i32,
        updated: i32,
        generation: i64,
        observed: i64,
    ) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "linkerd-identity", "generation": generation},
            "spec": {"replicas": replicas, "selector": {}, "template": {"metadata": {"annotations": {"linkerd.io/proxy-version": "edge-25.4.4"}}}},
            "status": {"replicas": replicas, "availableReplicas": available, "updatedReplicas": updated, "observedGeneration": observed},
        }))
        .unwrap()
    }

    #[test]
    fn kstatus_conditions_copy_progressing_and_degraded() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, READY, true, "Ready", "ok", Some(3), &t(1));
        set_condition(
            &mut conditions,
            PROGRESSING,
            true,
            "Upgrading",
            "to 2.20",
            Some(3),
            &t(2),
        );
        set_condition(
            &mut conditions,
            DEGRADED,
            false,
            "AsExpected",
            "",
            Some(3),
            &t(3),
        );
        with_kstatus(&mut conditions);
        with_kstatus(&mut conditions);
        fn get<'c>(conditions: &'c [Condition], type_: &str) -> &'c Condition {
            conditions.iter().find(|c| c.type_ == type_).unwrap()
        }
        assert_eq!(conditions.len(), 5, "{conditions:?}");
        let reconciling = get(&conditions, RECONCILING);
        assert_eq!(
            (
                reconciling.status.as_str(),
                reconciling.reason.as_str(),
                reconciling.message.as_str()
            ),
            ("True", "Upgrading", "to 2.20")
        );
        assert_eq!(reconciling.observed_generation, Some(3));
        assert_eq!(reconciling.last_transition_time, t(2));
        assert_eq!(get(&conditions, STALLED).status, "False");
        // Once Progressing is False, so is Reconciling.
        set_condition(
            &mut conditions,
            PROGRESSING,
            false,
            "Done",
            "",
            Some(4),
            &t(5),
        );
        with_kstatus(&mut conditions);
        assert_eq!(get(&conditions, RECONCILING).status, "False");
        assert_eq!(get(&conditions, RECONCILING).observed_generation, Some(4));
    }

    #[test]
    fn the_cni_status_records_settings_only_once_every_node_runs_them() {
        let daemon_set = |digest: &str, updated: i32| -> DaemonSet {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "linkerd-cni", "generation": 2},
                "spec": {"selector": {}, "template": {"metadata": {"annotations": {
                    crate::render::cni::REDIRECT_SHA256: digest}}}},
                "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                    "numberMisscheduled": 0, "numberReady": 3, "numberAvailable": 3,
                    "updatedNumberScheduled": updated, "observedGeneration": 2},
            }))
            .unwrap()
        };
        let old = CniStatus {
            redirect_sha256: Some("old".into()),
        };
        let rolled = cni_status(Some(&old), Some(&daemon_set("new", 3)));
        assert_eq!(rolled.redirect_sha256.as_deref(), Some("new"));
        // Two of three nodes have it: the third still runs the old ones.
        assert_eq!(cni_status(Some(&old), Some(&daemon_set("new", 2))), old);
        assert_eq!(
            cni_status(None, Some(&daemon_set("new", 2))),
            CniStatus::default()
        );
        assert_eq!(cni_status(Some(&old), None), old);
    }

    #[test]
    fn a_component_is_available_only_when_its_current_template_is() {
        assert!(component("identity", Some(&deployment(3, 3, 3, 2, 2))).available);
        assert!(
            !component("identity", Some(&deployment(3, 2, 3, 2, 2))).available,
            "one replica down"
        );
        assert!(
            !component("identity", Some(&deployment(3, 3, 1, 2, 2))).available,
            "old pods still serving"
        );
        assert!(
            !component("identity", Some(&deployment(3, 3, 3, 3, 2))).available,
            "new spec not yet seen"
        );
        assert!(!component("identity", None).available);
        assert_eq!(
            component("identity", Some(&deployment(1, 1, 1, 1, 1)))
                .version
                .as_deref(),
            Some("edge-25.4.4")
        );
    }

    #[test]
    fn the_control_plane_runs_a_bundle_once_every_component_is_rolled_out_with_it() {
        let with = |sha: &str, d: Deployment| {
            let mut d = d;
            let meta = d.spec.as_mut().unwrap().template.metadata.as_mut().unwrap();
            meta.annotations
                .get_or_insert_default()
                .insert(TRUST_ROOT_SHA256.into(), sha.into());
            Some(d)
        };
        let up = || deployment(1, 1, 1, 1, 1);
        assert_eq!(
            rolled_out_bundle(&[with("a", up()), with("a", up())]).as_deref(),
            Some("a")
        );
        // Mid-rollout (the controller has not seen the new template), two
        // bundles, or a missing component: not yet.
        assert_eq!(rolled_out_bundle(&[with("a", up()), with("b", up())]), None);
        assert_eq!(
            rolled_out_bundle(&[with("a", up()), with("a", deployment(1, 1, 1, 2, 1))]),
            None
        );
        assert_eq!(rolled_out_bundle(&[with("a", up()), None]), None);
    }

    #[test]
    fn converging_then_ready_keeps_transition_times_while_nothing_changes() {
        let down = vec![component("identity", Some(&deployment(1, 0, 1, 1, 1)))];
        let s1 = converging(
            &ControlPlaneStatus::default(),
            Some(1),
            "edge-25.4.4",
            down,
            &t(100),
        );
        assert_eq!(s1.phase, Some(ControlPlanePhase::Installing));
        assert_eq!(s1.target_version.as_deref(), Some("edge-25.4.4"));
        assert!(s1.current_version.is_none());

        let up = vec![component("identity", Some(&deployment(1, 1, 1, 1, 1)))];
        let s2 = converging(&s1, Some(1), "edge-25.4.4", up.clone(), &t(200));
        assert_eq!(s2.phase, Some(ControlPlanePhase::Ready));
        assert_eq!(s2.current_version.as_deref(), Some("edge-25.4.4"));
        let ready = s2.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), &ready.last_transition_time),
            ("True", &t(200))
        );

        // A later resync with nothing new produces the identical status, so
        // the reconciler has nothing to write.
        let s3 = converging(&s2, Some(1), "edge-25.4.4", up.clone(), &t(300));
        assert_eq!(s3, s2);
    }

    #[test]
    fn a_component_lost_in_steady_state_is_degraded_not_upgrading() {
        let up = vec![component("identity", Some(&deployment(1, 1, 1, 1, 1)))];
        let ready = converging(
            &ControlPlaneStatus::default(),
            Some(1),
            "edge-25.4.4",
            up.clone(),
            &t(100),
        );
        let down = vec![component("identity", Some(&deployment(1, 0, 1, 1, 1)))];
        let lost = converging(&ready, Some(1), "edge-25.4.4", down, &t(200));
        assert_eq!(lost.phase, Some(ControlPlanePhase::Degraded));
        assert_eq!(lost.current_version.as_deref(), Some("edge-25.4.4"));
        assert!(lost.target_version.is_none());
        let status_of = |s: &ControlPlaneStatus, type_: &str| {
            s.conditions
                .iter()
                .find(|c| c.type_ == type_)
                .map(|c| c.status.clone())
        };
        assert_eq!(status_of(&lost, DEGRADED).as_deref(), Some("True"));
        assert_eq!(status_of(&lost, READY).as_deref(), Some("False"));
        assert_eq!(status_of(&lost, PROGRESSING).as_deref(), Some("False"));

        let back = converging(&lost, Some(1), "edge-25.4.4", up, &t(300));
        assert_eq!(back.phase, Some(ControlPlanePhase::Ready));
        assert_eq!(status_of(&back, DEGRADED).as_deref(), Some("False"));
    }

    #[test]
    fn conditions_never_have_empty_messages() {
        let mut c = Vec::new();
        set_condition(&mut c, READY, true, "Converged", "", Some(1), &t(1));
        assert_eq!(c[0].message, "Converged");
    }

    #[test]
    fn refusal_is_degraded_and_not_ready() {
        let s = refused(
            &ControlPlaneStatus::default(),
            Some(4),
            "UnknownVersion",
            "spec.version: nope",
            &t(1),
        );
        let get = |ty: &str| {
            s.conditions
                .iter()
                .find(|c| c.type_ == ty)
                .unwrap()
                .status
                .clone()
        };
        assert_eq!(get(READY), "False");
        assert_eq!(get(DEGRADED), "True");
        assert_eq!(s.observed_generation, Some(4));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(4))
        );
    }
}
