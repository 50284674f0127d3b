//! `keelson check`: a health checklist for users, like `linkerd check`.
//!
//! The checks here are pure: each judges objects already read (and the time)
//! and says pass, warn or fail, with a message that names what it looked at.
//! [`cluster`] reads the cluster and probes the webhooks.

pub mod cluster;

use crate::identity;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use keelson_crds::ControlPlane;
use keelson_crds::controlplane::ControlPlanePhase;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
}

/// One line of the checklist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub outcome: Outcome,
    pub message: String,
}

impl Finding {
    fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
        }
    }
}

/// Findings under a heading.
#[derive(Clone, Debug)]
pub struct Section {
    pub title: String,
    pub findings: Vec<Finding>,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub sections: Vec<Section>,
}

impl Report {
    pub fn section(&mut self, title: impl Into<String>, findings: Vec<Finding>) {
        self.sections.push(Section {
            title: title.into(),
            findings,
        });
    }

    fn all(&self) -> impl Iterator<Item = &Finding> {
        self.sections.iter().flat_map(|s| &s.findings)
    }

    /// Whether any check failed: `keelson check` then exits non-zero.
    pub fn failed(&self) -> bool {
        self.all().any(|f| f.outcome == Outcome::Fail)
    }

    /// The messages of the findings with `outcome`.
    pub fn messages(&self, outcome: Outcome) -> Vec<&str> {
        self.all()
            .filter(|f| f.outcome == outcome)
            .map(|f| f.message.as_str())
            .collect()
    }

    /// The checklist as `keelson check` prints it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for section in &self.sections {
            let _ = writeln!(
                out,
                "{}\n{}",
                section.title,
                "-".repeat(section.title.len())
            );
            for f in &section.findings {
                let mark = match f.outcome {
                    Outcome::Pass => "√",
                    Outcome::Warn => "‼",
                    Outcome::Fail => "×",
                };
                let _ = writeln!(out, "{mark} {}", f.message);
            }
            out.push('\n');
        }
        let (fails, warns) = (
            self.messages(Outcome::Fail).len(),
            self.messages(Outcome::Warn).len(),
        );
        let _ = writeln!(
            out,
            "Status check results are {}: {fails} failed, {warns} warnings",
            if fails > 0 { "×" } else { "√" }
        );
        out
    }
}

/// Readiness and phase of a ControlPlane, and any version change under way.
pub fn control_plane(cp: &ControlPlane) -> Vec<Finding> {
    let name = cp.name_any();
    let status = cp.status.clone().unwrap_or_default();
    let version = status
        .current_version
        .as_deref()
        .unwrap_or("no release yet");
    let phase = status
        .phase
        .map_or_else(|| "none".to_owned(), |p| format!("{p:?}"));
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    let mut out = vec![match ready {
        Some(c) if c.status == "True" => Finding::new(
            Outcome::Pass,
            format!("ControlPlane {name} is Ready (phase {phase}, running {version})"),
        ),
        Some(c) => Finding::new(
            Outcome::Fail,
            format!(
                "ControlPlane {name} is not Ready (phase {phase}): {}: {}",
                c.reason, c.message
            ),
        ),
        None => Finding::new(
            Outcome::Fail,
            format!("ControlPlane {name} has no Ready condition yet (phase {phase})"),
        ),
    }];
    if status.observed_generation < cp.metadata.generation {
        out.push(Finding::new(
            Outcome::Warn,
            format!("ControlPlane {name}: the operator has not seen its latest spec yet"),
        ));
    }
    if let Some(u) = &status.upgrade {
        out.push(Finding::new(
            Outcome::Warn,
            format!(
                "ControlPlane {name} is {} from {} to {} (at {}, stage {:?})",
                if u.rolling_back {
                    "rolling back"
                } else {
                    "upgrading"
                },
                u.from,
                u.to,
                u.step,
                u.stage
            ),
        ));
    }
    if let Some(f) = &status.failed_upgrade {
        let outcome = if status.phase == Some(ControlPlanePhase::Failed) {
            Outcome::Fail
        } else {
            Outcome::Warn
        };
        out.push(Finding::new(
            outcome,
            format!(
                "ControlPlane {name}: the upgrade to {} failed: {}",
                f.version, f.message
            ),
        ));
    }
    out
}

/// Whether a control-plane Deployment has every replica it wants available.
pub fn deployment(d: &Deployment) -> Finding {
    let name = format!(
        "Deployment {}/{}",
        d.namespace().unwrap_or_default(),
        d.name_any()
    );
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let available = d
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    if wanted == 0 {
        Finding::new(Outcome::Fail, format!("{name} is scaled to 0"))
    } else if available < wanted {
        Finding::new(
            Outcome::Fail,
            format!("{name} has {available} of {wanted} replicas available"),
        )
    } else {
        Finding::new(
            Outcome::Pass,
            format!("{name} has {available} of {wanted} replicas available"),
        )
    }
}

/// CNI mode's plugin: its DaemonSet is available on every node it
/// schedules to, rolled out, and runs the plugin image of `release`.
pub fn cni_daemon_set(
    namespace: &str,
    daemon_set: Option<&k8s_openapi::api::apps::v1::DaemonSet>,
    release: Option<&crate::catalog::Release>,
) -> Finding {
    let name = format!("DaemonSet {namespace}/{}", crate::render::cni::NAME);
    let Some(d) = daemon_set else {
        return Finding::new(
            Outcome::Fail,
            format!("{name} is missing: no node can start meshed pods in CNI mode"),
        );
    };
    // The rule the upgrade's gate applies.
    let plugin = crate::controlplane::status::cni_component(Some(d));
    let (desired, available) = (plugin.desired_replicas, plugin.available_replicas);
    let image = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    if desired == 0 {
        return Finding::new(Outcome::Fail, format!("{name} schedules to no node"));
    }
    if !plugin.available {
        let updated = d
            .status
            .as_ref()
            .and_then(|s| s.updated_number_scheduled)
            .unwrap_or(0);
        return Finding::new(
            Outcome::Fail,
            format!(
                "{name} is available on {available} of {desired} nodes ({updated} up to date): pods on the others cannot start meshed"
            ),
        );
    }
    if let Some(r) = release
        && image != r.images.cni_plugin
    {
        return Finding::new(
            Outcome::Fail,
            format!(
                "{name} runs {image}, not {} of Linkerd {}",
                r.images.cni_plugin, r.version
            ),
        );
    }
    Finding::new(
        Outcome::Pass,
        format!("{name} is available on all {desired} nodes, running {image}"),
    )
}

/// Expiry of every certificate in `pem` (named `what` in messages): fails
/// when one is expired or not yet valid, warns when one expires within
/// `warn_within`.
pub fn certificates(
    what: &str,
    pem: Option<&str>,
    now: SystemTime,
    warn_within: Duration,
) -> Vec<Finding> {
    let Some(pem) = pem else {
        return vec![Finding::new(Outcome::Fail, format!("{what} is missing"))];
    };
    let certs = match identity::certificates_in(pem, "certificate") {
        Ok(certs) if !certs.is_empty() => certs,
        _ => {
            return vec![Finding::new(
                Outcome::Fail,
                format!("{what} holds no readable PEM certificate"),
            )];
        }
    };
    certs
        .into_iter()
        .map(|(subject, v)| {
            let days = |d: Duration| d.as_secs() / 86_400;
            match v.not_after.duration_since(now) {
                Err(ago) => Finding::new(
                    Outcome::Fail,
                    format!(
                        "{what} ({subject}) expired {} days ago",
                        days(ago.duration())
                    ),
                ),
                Ok(_) if now < v.not_before => Finding::new(
                    Outcome::Fail,
                    format!("{what} ({subject}) is not valid yet"),
                ),
                Ok(left) if left < warn_within => Finding::new(
                    Outcome::Warn,
                    format!("{what} ({subject}) expires in {} days", days(left)),
                ),
                Ok(left) => Finding::new(
                    Outcome::Pass,
                    format!("{what} ({subject}) is valid for {} more days", days(left)),
                ),
            }
        })
        .collect()
}

/// Whether a replica of Keelson leads (holds the Lease and renews it), so
/// that the reconcilers run. Judged by the wall clock against the record's
/// renewTime: good to a human's needs, not to the election's.
pub fn leader(lease: &str, spec: Option<&LeaseSpec>, now: SystemTime) -> Finding {
    let held = spec.and_then(|s| {
        let holder = s.holder_identity.as_deref().filter(|h| !h.is_empty())?;
        Some((s, holder))
    });
    let Some((spec, holder)) = held else {
        return Finding::new(
            Outcome::Fail,
            format!(
                "no Keelson replica holds the Lease {lease}: nothing reconciles (is the operator running?)"
            ),
        );
    };
    let renewed = spec.renew_time.as_ref().map(|t| SystemTime::from(t.0));
    let valid_for =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    match renewed.map(|at| (now.duration_since(at).unwrap_or_default(), at + valid_for)) {
        Some((ago, expiry)) if now < expiry => Finding::new(
            Outcome::Pass,
            format!(
                "Keelson replica {holder} leads (renewed the Lease {lease} {}s ago)",
                ago.as_secs()
            ),
        ),
        Some((ago, _)) => Finding::new(
            Outcome::Fail,
            format!(
                "the Lease {lease} of Keelson replica {holder} was last renewed {}s ago and has expired: nothing reconciles",
                ago.as_secs()
            ),
        ),
        None => Finding::new(
            Outcome::Fail,
            format!("the Lease {lease} names {holder} but no renewTime"),
        ),
    }
}

/// Proxies at another release than the control plane's: `versions` holds
/// each meshed pod's `linkerd.io/proxy-version` annotation.
pub fn version_skew(current: Option<&str>, versions: &[Option<String>]) -> Finding {
    let Some(current) = current else {
        return Finding::new(
            Outcome::Warn,
            "the control plane runs no release yet: proxy versions not compared",
        );
    };
    if versions.is_empty() {
        return Finding::new(Outcome::Pass, "no meshed pods");
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in versions {
        *counts.entry(v.as_deref().unwrap_or("unknown")).or_default() += 1;
    }
    let behind: Vec<String> = counts
        .iter()
        .filter(|(v, _)| **v != current)
        .map(|(v, n)| format!("{n} at {v}"))
        .collect();
    if behind.is_empty() {
        Finding::new(
            Outcome::Pass,
            format!("all {} meshed pods run proxy {current}", versions.len()),
        )
    } else {
        Finding::new(
            Outcome::Warn,
            format!(
                "meshed pods run other proxies than the control plane's {current}: {} (restart them to upgrade)",
                behind.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests;
