//! Version changes as a state machine over the ControlPlane's status.
//!
//! Pure: from the spec, the stored status and the observed components it
//! decides which release to apply, how far through the stages, and the next
//! status. The reconciler does the I/O. Because every step lives in status, a
//! restarted operator picks up exactly where the last one stopped.
//!
//! An upgrade walks the catalog's path one stable release at a time; for each
//! step it applies the release's CRDs (at every stage, before anything else),
//! in CNI mode rolls out the plugin's DaemonSet and waits for it on every
//! node, rolls out identity, waits for it to be available at the new
//! release, then destination, then the webhooks. A first install in CNI mode
//! waits for the plugin the same way before anything else. A gate that does not pass
//! within `spec.upgrade.healthDeadline` rolls back to the release the upgrade
//! started from (when `automaticRollback` is on) and is not retried until the
//! spec changes again.

use super::status::{self, DEGRADED, PROGRESSING, READY};
use crate::catalog;
use crate::render::Stage;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_crds::controlplane::{
    ComponentStatus, ControlPlanePhase, FailedUpgrade, UpgradeOutcome, UpgradeRecord, UpgradeStage,
    UpgradeState,
};
use keelson_crds::{ControlPlaneSpec, ControlPlaneStatus};
use std::time::Duration;

/// How many version changes status remembers.
const HISTORY: usize = 10;

/// What the reconciler should do now.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// Release to render and apply.
    pub version: String,
    /// Apply objects of the stages up to and including this one; every
    /// plan reaches at least `Identity`, so the CRDs are always applied.
    pub through: Stage,
    /// The rendering is complete for `version`, so leftovers may be pruned.
    pub prune: bool,
    pub status: ControlPlaneStatus,
    pub requeue: Duration,
}

fn component_name(stage: UpgradeStage) -> &'static str {
    match stage {
        UpgradeStage::Cni => "cni",
        UpgradeStage::Identity => "identity",
        UpgradeStage::Destination => "destination",
    }
}

fn render_stage(stage: UpgradeStage) -> Stage {
    match stage {
        UpgradeStage::Cni => Stage::Cni,
        UpgradeStage::Identity => Stage::Identity,
        UpgradeStage::Destination => Stage::Destination,
    }
}

/// The stage a step starts with: the CNI plugin in CNI mode, else identity.
fn first_stage(spec: &ControlPlaneSpec) -> UpgradeStage {
    if spec.cni.is_some() {
        UpgradeStage::Cni
    } else {
        UpgradeStage::Identity
    }
}

/// Whether a stage's component is available at the release being rolled out.
fn gate_passed(components: &[ComponentStatus], stage: UpgradeStage, version: &str) -> bool {
    components.iter().any(|c| {
        c.name == component_name(stage) && c.available && c.version.as_deref() == Some(version)
    })
}

fn elapsed(since: &Time, now: &Time) -> Duration {
    let secs = now.0.as_second() - since.0.as_second();
    Duration::from_secs(secs.max(0) as u64)
}

pub fn plan(
    spec: &ControlPlaneSpec,
    generation: Option<i64>,
    previous: &ControlPlaneStatus,
    components: Vec<ComponentStatus>,
    now: &Time,
) -> Plan {
    let desired = spec.version.as_str();
    let generation_n = generation.unwrap_or_default();
    let Some(mut u) = previous.upgrade.clone() else {
        let Some(current) = previous.current_version.clone() else {
            // First install: everything at once, as `linkerd install` does;
            // in CNI mode the plugin first, on every node, since no pod of
            // the control plane can start where it is missing.
            if spec.cni.is_some() && !gate_passed(&components, UpgradeStage::Cni, desired) {
                return install_cni_first(desired, generation, previous, components, now);
            }
            return converge(desired, generation, previous, components, now);
        };
        if current == desired {
            return converge(desired, generation, previous, components, now);
        }
        if let Some(failed) = previous
            .failed_upgrade
            .as_ref()
            .filter(|f| f.version == desired && f.generation == generation_n)
        {
            let message = format!("staying on {current}: {}", failed.message);
            return degraded(
                converge(&current, generation, previous, components, now),
                "UpgradeFailed",
                &message,
                generation,
                now,
            );
        }
        let path = match catalog::upgrade_path(&current, desired) {
            Ok(path) => path,
            Err(e) => {
                let message = format!("spec.version: {e}; staying on {current}");
                return degraded(
                    converge(&current, generation, previous, components, now),
                    "UpgradeRefused",
                    &message,
                    generation,
                    now,
                );
            }
        };
        let first = path
            .first()
            .map(|r| r.version.to_string())
            .unwrap_or_else(|| desired.to_owned());
        let mut next = previous.clone();
        next.failed_upgrade = None;
        next.history.insert(
            0,
            UpgradeRecord {
                from: Some(current.clone()),
                to: desired.to_owned(),
                started_at: now.clone(),
                finished_at: None,
                outcome: UpgradeOutcome::InProgress,
                message: None,
            },
        );
        next.history.truncate(HISTORY);
        next.upgrade = Some(UpgradeState {
            from: current,
            to: desired.to_owned(),
            step: first,
            stage: first_stage(spec),
            stage_started_at: now.clone(),
            rolling_back: false,
        });
        return step(&next, generation, components, now);
    };

    let deadline: Duration = spec.upgrade.health_deadline.or_zero();
    if gate_passed(&components, u.stage, &u.step) {
        let following = match u.stage {
            UpgradeStage::Cni => Some(UpgradeStage::Identity),
            UpgradeStage::Identity => Some(UpgradeStage::Destination),
            UpgradeStage::Destination => None,
        };
        if let Some(stage) = following {
            u.stage = stage;
            u.stage_started_at = now.clone();
            let mut next = previous.clone();
            next.upgrade = Some(u);
            return step(&next, generation, components, now);
        }
        // Both components run `u.step`: the step is done.
        if u.rolling_back {
            return finish(
                previous,
                u,
                generation,
                components,
                now,
                UpgradeOutcome::RolledBack,
            );
        }
        match catalog::upgrade_path(&u.step, desired)
            .ok()
            .and_then(|p| p.first().map(|r| r.version.to_string()))
        {
            Some(next_step) => {
                u.step = next_step;
                u.to = desired.to_owned();
                u.stage = first_stage(spec);
                u.stage_started_at = now.clone();
                let mut next = previous.clone();
                next.upgrade = Some(u);
                step(&next, generation, components, now)
            }
            None => finish(
                previous,
                u,
                generation,
                components,
                now,
                UpgradeOutcome::Succeeded,
            ),
        }
    } else if elapsed(&u.stage_started_at, now) > deadline {
        let message = format!(
            "{} did not become available on {} within {}",
            component_name(u.stage),
            u.step,
            crate::render::go_duration(deadline)
        );
        let mut next = previous.clone();
        if let Some(record) = next.history.first_mut() {
            record.message = Some(message.clone());
        }
        if spec.upgrade.automatic_rollback && !u.rolling_back {
            u.rolling_back = true;
            u.step = u.from.clone();
            u.stage = first_stage(spec);
            u.stage_started_at = now.clone();
            next.upgrade = Some(u);
            let plan = step(&next, generation, components, now);
            return degraded(
                plan,
                "RollingBack",
                &format!("{message}; rolling back"),
                generation,
                now,
            );
        }
        // No rollback (or the rollback itself is stuck): keep applying and
        // say so; the gate may still pass.
        next.upgrade = Some(u);
        let mut plan = step(&next, generation, components, now);
        plan.status.phase = Some(ControlPlanePhase::Failed);
        degraded(plan, "UpgradeStuck", &message, generation, now)
    } else {
        step(previous, generation, components, now)
    }
}

/// A first install in CNI mode, until the plugin runs on every node: its
/// objects only (and the CRDs, always), nothing pruned.
fn install_cni_first(
    version: &str,
    generation: Option<i64>,
    previous: &ControlPlaneStatus,
    components: Vec<ComponentStatus>,
    now: &Time,
) -> Plan {
    let mut plan = converge(version, generation, previous, components, now);
    plan.through = Stage::Cni;
    plan.prune = false;
    plan.requeue = Duration::from_secs(3);
    let message = format!(
        "installing {version}: waiting for the CNI plugin's DaemonSet to be available on every node"
    );
    status::set_condition(
        &mut plan.status.conditions,
        PROGRESSING,
        true,
        "InstallingCNI",
        &message,
        generation,
        now,
    );
    plan
}

/// Install or steady state: everything of `version`, pruned.
fn converge(
    version: &str,
    generation: Option<i64>,
    previous: &ControlPlaneStatus,
    components: Vec<ComponentStatus>,
    now: &Time,
) -> Plan {
    let status = status::converging(previous, generation, version, components, now);
    let ready = status.phase == Some(ControlPlanePhase::Ready);
    Plan {
        version: version.to_owned(),
        through: Stage::Webhooks,
        prune: true,
        status,
        requeue: if ready {
            Duration::from_secs(300)
        } else {
            Duration::from_secs(5)
        },
    }
}

/// Keep rolling out the stored upgrade's current step and stage.
fn step(
    previous: &ControlPlaneStatus,
    generation: Option<i64>,
    components: Vec<ComponentStatus>,
    now: &Time,
) -> Plan {
    let u = previous
        .upgrade
        .clone()
        .expect("called with an upgrade in progress");
    let mut next = previous.clone();
    next.observed_generation = generation;
    next.target_version = Some(u.to.clone());
    let ready = components.iter().all(|c| c.available) && !components.is_empty();
    next.components = components;
    next.phase = Some(if u.rolling_back {
        ControlPlanePhase::RollingBack
    } else {
        ControlPlanePhase::Upgrading
    });
    let verb = if u.rolling_back {
        "rolling back"
    } else {
        "upgrading"
    };
    let message = format!(
        "{verb} from {} to {}: rolling out {} at {}",
        u.from,
        u.to,
        component_name(u.stage),
        u.step
    );
    let serving = if ready {
        "ComponentsAvailable"
    } else {
        "ComponentsUnavailable"
    };
    status::set_condition(
        &mut next.conditions,
        READY,
        ready,
        serving,
        &message,
        generation,
        now,
    );
    status::set_condition(
        &mut next.conditions,
        PROGRESSING,
        true,
        if u.rolling_back {
            "RollingBack"
        } else {
            "Upgrading"
        },
        &message,
        generation,
        now,
    );
    if !u.rolling_back {
        status::set_condition(
            &mut next.conditions,
            DEGRADED,
            false,
            "AsExpected",
            "",
            generation,
            now,
        );
    }
    Plan {
        version: u.step.clone(),
        through: render_stage(u.stage),
        prune: false,
        status: next,
        requeue: Duration::from_secs(3),
    }
}

/// The last step is available: record the outcome and converge on it.
fn finish(
    previous: &ControlPlaneStatus,
    u: UpgradeState,
    generation: Option<i64>,
    components: Vec<ComponentStatus>,
    now: &Time,
    outcome: UpgradeOutcome,
) -> Plan {
    let mut next = previous.clone();
    next.upgrade = None;
    next.current_version = Some(u.step.clone());
    let message = next.history.first().and_then(|r| r.message.clone());
    if let Some(record) = next.history.first_mut() {
        record.finished_at = Some(now.clone());
        record.outcome = outcome;
    }
    let plan = converge(&u.step, generation, &next, components, now);
    if outcome != UpgradeOutcome::RolledBack {
        return plan;
    }
    let reason = message.unwrap_or_else(|| "a health gate failed".into());
    let mut plan = degraded(
        plan,
        "UpgradeRolledBack",
        &format!("upgrade to {} rolled back to {}: {reason}", u.to, u.from),
        generation,
        now,
    );
    plan.status.failed_upgrade = Some(FailedUpgrade {
        version: u.to,
        generation: generation.unwrap_or_default(),
        message: reason,
    });
    plan
}

fn degraded(
    mut plan: Plan,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> Plan {
    status::set_condition(
        &mut plan.status.conditions,
        DEGRADED,
        true,
        reason,
        message,
        generation,
        now,
    );
    if plan.status.phase == Some(ControlPlanePhase::Ready) {
        plan.status.phase = Some(ControlPlanePhase::Degraded);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + secs).unwrap())
    }

    fn spec(version: &str) -> ControlPlaneSpec {
        yaml_serde::from_str(&format!(
            "version: {version}\nupgrade: {{healthDeadline: 60s}}"
        ))
        .unwrap()
    }

    fn comps(identity: Option<&str>, destination: Option<&str>) -> Vec<ComponentStatus> {
        let c = |name: &str, v: Option<&str>| ComponentStatus {
            name: name.into(),
            version: v.map(str::to_owned),
            desired_replicas: 1,
            available_replicas: i32::from(v.is_some()),
            available: v.is_some(),
        };
        vec![c("identity", identity), c("destination", destination)]
    }

    fn cond<'a>(s: &'a ControlPlaneStatus, ty: &str) -> (&'a str, &'a str) {
        let c = s.conditions.iter().find(|c| c.type_ == ty).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    /// Drives the machine like the reconciler would, with components reporting
    /// whatever `observe` says for the applied release and stage.
    fn converged(version: &str) -> ControlPlaneStatus {
        plan(
            &spec(version),
            Some(1),
            &ControlPlaneStatus::default(),
            comps(Some(version), Some(version)),
            &t(0),
        )
        .status
    }

    #[test]
    fn install_and_steady_state_apply_everything_and_prune() {
        let p = plan(
            &spec("edge-25.4.4"),
            Some(1),
            &ControlPlaneStatus::default(),
            comps(None, None),
            &t(0),
        );
        assert_eq!(
            (p.version.as_str(), p.through, p.prune),
            ("edge-25.4.4", Stage::Webhooks, true)
        );
        assert_eq!(p.status.phase, Some(ControlPlanePhase::Installing));
        let s = converged("edge-25.4.4");
        assert_eq!(s.current_version.as_deref(), Some("edge-25.4.4"));
        let again = plan(
            &spec("edge-25.4.4"),
            Some(1),
            &s,
            comps(Some("edge-25.4.4"), Some("edge-25.4.4")),
            &t(10),
        );
        assert_eq!(
            again.status, s,
            "a converged control plane plans no status change"
        );
    }

    #[test]
    fn an_upgrade_is_gated_identity_then_destination_then_recorded() {
        let old = "edge-25.4.4";
        let new = "edge-25.10.7";
        let s0 = converged(old);
        // The version changes: identity first, nothing pruned mid-way.
        let p1 = plan(&spec(new), Some(2), &s0, comps(Some(old), Some(old)), &t(1));
        assert_eq!(
            (p1.version.as_str(), p1.through, p1.prune),
            (new, Stage::Identity, false)
        );
        assert_eq!(p1.status.phase, Some(ControlPlanePhase::Upgrading));
        assert_eq!(
            p1.status.current_version.as_deref(),
            Some(old),
            "current moves only at the end"
        );
        assert_eq!(p1.status.history[0].outcome, UpgradeOutcome::InProgress);
        // Identity not yet available at the new release: keep waiting.
        let p2 = plan(
            &spec(new),
            Some(2),
            &p1.status,
            comps(Some(old), Some(old)),
            &t(10),
        );
        assert_eq!(p2.through, Stage::Identity);
        // Identity passes its gate: destination next.
        let p3 = plan(
            &spec(new),
            Some(2),
            &p2.status,
            comps(Some(new), Some(old)),
            &t(20),
        );
        assert_eq!(p3.through, Stage::Destination);
        assert_eq!(
            p3.status.upgrade.as_ref().unwrap().stage,
            UpgradeStage::Destination
        );
        // Destination passes: done, everything applied and pruned.
        let p4 = plan(
            &spec(new),
            Some(2),
            &p3.status,
            comps(Some(new), Some(new)),
            &t(30),
        );
        assert_eq!((p4.through, p4.prune), (Stage::Webhooks, true));
        assert_eq!(p4.status.current_version.as_deref(), Some(new));
        assert!(p4.status.upgrade.is_none());
        assert_eq!(p4.status.history[0].outcome, UpgradeOutcome::Succeeded);
        assert_eq!(p4.status.history[0].finished_at, Some(t(30)));
        assert_eq!(cond(&p4.status, READY).0, "True");
    }

    #[test]
    fn a_multi_release_jump_goes_through_each_stable_release() {
        let s0 = converged("edge-24.11.8");
        let p = plan(
            &spec("edge-25.10.7"),
            Some(2),
            &s0,
            comps(Some("edge-24.11.8"), Some("edge-24.11.8")),
            &t(1),
        );
        assert_eq!(p.version, "edge-25.4.4", "2.17 goes to 2.18 first");
        let p = plan(
            &spec("edge-25.10.7"),
            Some(2),
            &p.status,
            comps(Some("edge-25.4.4"), Some("edge-24.11.8")),
            &t(2),
        );
        let p = plan(
            &spec("edge-25.10.7"),
            Some(2),
            &p.status,
            comps(Some("edge-25.4.4"), Some("edge-25.4.4")),
            &t(3),
        );
        assert_eq!(
            (p.version.as_str(), p.through),
            ("edge-25.10.7", Stage::Identity)
        );
        assert_eq!(p.status.current_version.as_deref(), Some("edge-24.11.8"));
    }

    #[test]
    fn a_failed_gate_rolls_back_and_is_not_retried_until_the_spec_changes() {
        let (old, new) = ("edge-25.4.4", "edge-25.10.7");
        let s0 = converged(old);
        let p1 = plan(&spec(new), Some(2), &s0, comps(Some(old), Some(old)), &t(1));
        // Identity never comes up at the new release; the deadline passes.
        let p2 = plan(
            &spec(new),
            Some(2),
            &p1.status,
            comps(None, Some(old)),
            &t(62),
        );
        assert_eq!((p2.version.as_str(), p2.through), (old, Stage::Identity));
        assert_eq!(p2.status.phase, Some(ControlPlanePhase::RollingBack));
        assert_eq!(cond(&p2.status, DEGRADED), ("True", "RollingBack"));
        assert!(
            p2.status.history[0]
                .message
                .as_deref()
                .unwrap()
                .contains("identity did not become available on edge-25.10.7 within 1m0s")
        );
        // The old release comes back, component by component.
        let p3 = plan(
            &spec(new),
            Some(2),
            &p2.status,
            comps(Some(old), Some(old)),
            &t(70),
        );
        let p4 = plan(
            &spec(new),
            Some(2),
            &p3.status,
            comps(Some(old), Some(old)),
            &t(71),
        );
        assert_eq!(p4.status.current_version.as_deref(), Some(old));
        assert_eq!(p4.status.history[0].outcome, UpgradeOutcome::RolledBack);
        assert_eq!(cond(&p4.status, DEGRADED), ("True", "UpgradeRolledBack"));
        assert_eq!(cond(&p4.status, READY).0, "True");
        assert_eq!(p4.status.failed_upgrade.as_ref().unwrap().version, new);
        // Same spec: stays on the old release, says why, does not retry.
        let p5 = plan(
            &spec(new),
            Some(2),
            &p4.status,
            comps(Some(old), Some(old)),
            &t(400),
        );
        assert_eq!(p5.version, old);
        assert!(p5.status.upgrade.is_none());
        assert_eq!(cond(&p5.status, DEGRADED), ("True", "UpgradeFailed"));
        // A spec change (new generation) tries again.
        let p6 = plan(
            &spec(new),
            Some(3),
            &p5.status,
            comps(Some(old), Some(old)),
            &t(500),
        );
        assert_eq!((p6.version.as_str(), p6.through), (new, Stage::Identity));
    }

    #[test]
    fn a_path_the_catalog_cannot_serve_keeps_the_current_release() {
        let s0 = converged("edge-25.4.4");
        let p = plan(
            &spec("edge-99.1.1"),
            Some(2),
            &s0,
            comps(Some("edge-25.4.4"), Some("edge-25.4.4")),
            &t(1),
        );
        assert_eq!(p.version, "edge-25.4.4");
        assert_eq!(cond(&p.status, DEGRADED), ("True", "UpgradeRefused"));
        assert!(p.status.upgrade.is_none());
    }

    fn cni_spec(version: &str) -> ControlPlaneSpec {
        yaml_serde::from_str(&format!(
            "version: {version}\nupgrade: {{healthDeadline: 60s}}\ncni: {{}}"
        ))
        .unwrap()
    }

    /// The plugin, identity and destination, each at a release or none.
    fn cni_comps(
        cni: Option<&str>,
        identity: Option<&str>,
        destination: Option<&str>,
    ) -> Vec<ComponentStatus> {
        let mut all = vec![ComponentStatus {
            name: "cni".into(),
            version: cni.map(str::to_owned),
            desired_replicas: 3,
            available_replicas: if cni.is_some() { 3 } else { 0 },
            available: cni.is_some(),
        }];
        all.extend(comps(identity, destination));
        all
    }

    #[test]
    fn in_cni_mode_the_plugin_goes_first_at_install_and_at_every_step() {
        let (old, mid, new) = ("edge-25.10.7", "edge-26.6.3", "edge-26.8.3");
        // Install: the plugin alone until it runs on every node.
        let p = plan(
            &cni_spec(old),
            Some(1),
            &ControlPlaneStatus::default(),
            cni_comps(None, None, None),
            &t(0),
        );
        assert_eq!((p.through, p.prune), (Stage::Cni, false));
        assert_eq!(cond(&p.status, PROGRESSING), ("True", "InstallingCNI"));
        let p = plan(
            &cni_spec(old),
            Some(1),
            &p.status,
            cni_comps(Some(old), None, None),
            &t(1),
        );
        assert_eq!((p.through, p.prune), (Stage::Webhooks, true));
        let s0 = plan(
            &cni_spec(old),
            Some(1),
            &p.status,
            cni_comps(Some(old), Some(old), Some(old)),
            &t(2),
        )
        .status;
        assert_eq!(s0.current_version.as_deref(), Some(old));

        // An upgrade across two steps: plugin, identity, destination, each.
        let mut s = s0;
        let mut seen = Vec::new();
        let mut running = (old, old, old);
        for tick in 3..40 {
            let p = plan(
                &cni_spec(new),
                Some(2),
                &s,
                cni_comps(Some(running.0), Some(running.1), Some(running.2)),
                &t(tick),
            );
            let at = (p.version.clone(), p.through);
            if seen.last() != Some(&at) {
                seen.push(at);
            }
            // The cluster does what was applied.
            let v: &str = if p.version == mid {
                mid
            } else if p.version == new {
                new
            } else {
                old
            };
            match p.through {
                Stage::Cni => running.0 = v,
                Stage::Identity => running.1 = v,
                Stage::Destination => running.2 = v,
                _ => {}
            }
            s = p.status;
            if s.upgrade.is_none() && s.current_version.as_deref() == Some(new) {
                break;
            }
        }
        let stages: Vec<(&str, Stage)> = seen.iter().map(|(v, st)| (v.as_str(), *st)).collect();
        assert_eq!(
            stages,
            [
                (mid, Stage::Cni),
                (mid, Stage::Identity),
                (mid, Stage::Destination),
                (new, Stage::Cni),
                (new, Stage::Identity),
                (new, Stage::Destination),
                (new, Stage::Webhooks),
            ]
        );
    }

    #[test]
    fn a_plugin_that_does_not_roll_out_rolls_the_upgrade_back_plugin_first() {
        let (old, new) = ("edge-25.10.7", "edge-26.6.3");
        let s0 = plan(
            &cni_spec(old),
            Some(1),
            &ControlPlaneStatus::default(),
            cni_comps(Some(old), Some(old), Some(old)),
            &t(0),
        )
        .status;
        let p1 = plan(
            &cni_spec(new),
            Some(2),
            &s0,
            cni_comps(Some(old), Some(old), Some(old)),
            &t(1),
        );
        assert_eq!((p1.version.as_str(), p1.through), (new, Stage::Cni));
        // The DaemonSet never becomes available at the new release.
        let p2 = plan(
            &cni_spec(new),
            Some(2),
            &p1.status,
            cni_comps(None, Some(old), Some(old)),
            &t(90),
        );
        assert_eq!((p2.version.as_str(), p2.through), (old, Stage::Cni));
        assert_eq!(cond(&p2.status, DEGRADED), ("True", "RollingBack"));
        let message = p2.status.history[0].message.clone().unwrap();
        assert!(
            message.contains("cni did not become available on edge-26.6.3"),
            "{message}"
        );
        // Identity was never touched: it still runs the old release.
        assert_eq!(p2.status.upgrade.as_ref().unwrap().stage, UpgradeStage::Cni);
    }
}
