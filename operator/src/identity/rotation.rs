//! Trust-anchor rotation as a state machine over ControlPlane status.
//!
//! Linkerd's manual procedure, made continuous and crash-safe:
//! 1. `AddAnchor`: the bundle becomes old + new; the old anchor still signs
//!    the issuer. Wait until the control plane and every meshed pod carry it.
//! 2. `SwitchIssuer`: the new anchor signs a new issuer; the bundle becomes
//!    new + old (a different digest, so everything rolls again and every
//!    proxy gets a certificate from the new issuer). Wait again.
//! 3. `RemoveAnchor`: the bundle becomes new alone. Wait again; done.
//!
//! The bundle is a function of the stored anchors alone ([`Anchors::bundle`]),
//! and each phase's anchors are one write of one Secret, so whatever the
//! operator had written when it stopped, the next reconcile publishes a
//! bundle consistent with it. Status records the phase and the fingerprints
//! it is about; a phase whose anchors were stored but not yet recorded is
//! adopted from the Secret. A phase only advances on observed facts: the
//! control plane rolled out with the phase's bundle and no live meshed pod
//! carrying another. The signing anchor always comes first in the bundle, so
//! a pod's bundle names the anchor its certificate chains to.

use super::{IdentityError, fingerprint};
use crate::render::TlsPair;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_crds::controlplane::{AnchorRotation, RotationPhase};

/// The managed anchors, as stored in Keelson's anchor Secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Anchors {
    /// Signs the issuer. For a bundle imported from an adopted installation
    /// its key is empty (Keelson holds none) and its certificate is the
    /// whole bundle as installed: the adopted issuer keeps signing until a
    /// rotation to an anchor Keelson made replaces them all.
    pub active: TlsPair,
    /// Joining the bundle (`AddAnchor`).
    pub next: Option<TlsPair>,
    /// Leaving the bundle (`SwitchIssuer`); its key is no longer needed.
    pub previous: Option<String>,
}

impl Anchors {
    /// The trust bundle proxies get, the signing anchor first, trimmed as
    /// the trust-roots ConfigMap holds it: every digest of the bundle (the
    /// control plane's templates, the injector's, DataPlanes') is of this text.
    pub fn bundle(&self) -> String {
        // As it was installed, final newline and all: that text is what
        // the adopted pods' `linkerd.io/trust-root-sha256` digests.
        if self.imported() && self.next.is_none() && self.previous.is_none() {
            return self.active.cert_pem.clone();
        }
        [
            Some(&self.active.cert_pem),
            self.next.as_ref().map(|n| &n.cert_pem),
            self.previous.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|pem| pem.trim())
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// Whether the active anchors were imported from an adopted
    /// installation, with no key.
    pub fn imported(&self) -> bool {
        self.active.key_pem.is_empty()
    }

    /// The phase these anchors belong to, when a rotation is under way.
    pub fn stage(&self) -> Option<RotationPhase> {
        if self.next.is_some() {
            Some(RotationPhase::AddAnchor)
        } else if self.previous.is_some() {
            Some(RotationPhase::SwitchIssuer)
        } else {
            None
        }
    }

    /// Fingerprints of the anchor being replaced and the one replacing it.
    fn old_and_new(&self) -> Result<Option<(String, String)>, IdentityError> {
        let active = fingerprint(&self.active.cert_pem, "trust anchor")?;
        Ok(match (&self.next, &self.previous) {
            (Some(next), _) => Some((active, fingerprint(&next.cert_pem, "new trust anchor")?)),
            (None, Some(previous)) => Some((fingerprint(previous, "old trust anchor")?, active)),
            (None, None) => None,
        })
    }
}

/// Live meshed pods whose bundle is not the current one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lagging {
    pub count: usize,
    /// A few of them, `namespace/name`.
    pub examples: Vec<String>,
}

/// Why a rotation starts now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The active anchor aged past `renewAtPercent`.
    Scheduled,
    /// The `keelson.dev/rotate-trust-anchor` annotation has a new value.
    Requested,
    /// An anchor was declared in Secret `keelson-identity-next-trust-anchor`.
    Declared,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "Scheduled",
            Trigger::Requested => "Requested",
            Trigger::Declared => "Declared",
        }
    }
}

pub struct Input<'a> {
    /// The rotation status records.
    pub rotation: Option<&'a AnchorRotation>,
    pub anchors: &'a Anchors,
    pub trigger: Option<Trigger>,
    /// The control plane's identity and destination are rolled out and
    /// available with the bundle of `anchors`.
    pub control_plane_rolled: bool,
    /// Meshed pods that do not carry the bundle of `anchors`, when they
    /// were listed (a rotation under way, the control plane rolled).
    pub lagging: Option<&'a Lagging>,
    pub now: &'a Time,
}

/// What the reconcile does about the anchors.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// Anchors to store before the bundle is published; `None` keeps them.
    pub store: Option<Anchors>,
    /// The rotation to record.
    pub rotation: Option<AnchorRotation>,
    /// A phase change worth an Event: reason and message.
    pub event: Option<(&'static str, String)>,
    /// The rotation finished in this round.
    pub finished: bool,
}

impl Plan {
    fn unchanged(rotation: Option<AnchorRotation>) -> Self {
        Self {
            store: None,
            rotation,
            event: None,
            finished: false,
        }
    }
}

/// Decides the next step. `new_anchor` makes the anchor a new rotation
/// introduces; it is called only when one starts.
pub fn plan(
    input: &Input<'_>,
    new_anchor: impl FnOnce() -> Result<TlsPair, IdentityError>,
) -> Result<Plan, IdentityError> {
    let anchors = input.anchors;
    let now = input.now;
    let stored = anchors.old_and_new()?;
    let recorded = input.rotation.filter(|r| {
        // A record about other anchors (replaced by hand) is not this
        // rotation's: it is resumed from the Secret instead.
        stored
            .as_ref()
            .is_none_or(|(old, new)| *old == r.old_anchor_sha256 && *new == r.new_anchor_sha256)
    });
    let Some(recorded) = recorded else {
        return start_or_resume(input, stored, new_anchor);
    };
    let mut rotation = recorded.clone();
    let phase = match anchors.stage() {
        Some(phase) => phase,
        None if fingerprint(&anchors.active.cert_pem, "trust anchor")?
            == recorded.new_anchor_sha256 =>
        {
            RotationPhase::RemoveAnchor
        }
        // The new anchor is gone before it signed anything: the bundle is
        // the old anchor alone, which every pod holds.
        None => {
            return Ok(Plan {
                store: None,
                rotation: None,
                event: Some((
                    "RotationAbandoned",
                    "the new trust anchor is no longer stored; the old one stays".into(),
                )),
                finished: false,
            });
        }
    };
    // A reconcile stored this phase's anchors and stopped before recording it.
    if phase != rotation.phase {
        rotation.phase = phase;
        rotation.phase_started_at = now.clone();
    }
    let digest = crate::render::proxy::trust_root_sha256(&anchors.bundle());
    let digest = short(&digest);
    if !input.control_plane_rolled {
        rotation.waiting_for = Some(format!(
            "identity and destination to roll out with trust bundle sha256 {digest}"
        ));
        return Ok(Plan::unchanged(Some(rotation)));
    }
    let Some(lagging) = input.lagging else {
        rotation.waiting_for = Some("the meshed pods to be listed".into());
        return Ok(Plan::unchanged(Some(rotation)));
    };
    if lagging.count > 0 {
        let more = lagging.count.saturating_sub(lagging.examples.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        rotation.waiting_for = Some(format!(
            "{} meshed pods to restart with trust bundle sha256 {digest}: {}{more} (DataPlanes restart the workloads they select; restart the others)",
            lagging.count,
            lagging.examples.join(", "),
        ));
        return Ok(Plan::unchanged(Some(rotation)));
    }
    let advance = |phase, store, event: (&'static str, String)| {
        let mut rotation = rotation.clone();
        rotation.phase = phase;
        rotation.phase_started_at = now.clone();
        rotation.waiting_for = None;
        Plan {
            store: Some(store),
            rotation: Some(rotation),
            event: Some(event),
            finished: false,
        }
    };
    Ok(match (phase, &anchors.next) {
        (RotationPhase::AddAnchor, Some(next)) => advance(
            RotationPhase::SwitchIssuer,
            Anchors {
                active: next.clone(),
                next: None,
                previous: Some(anchors.active.cert_pem.clone()),
            },
            (
                "IssuerSwitched",
                format!(
                    "every meshed pod trusts the new anchor {}: it now signs the issuer",
                    short(&rotation.new_anchor_sha256)
                ),
            ),
        ),
        (RotationPhase::SwitchIssuer, _) => advance(
            RotationPhase::RemoveAnchor,
            Anchors {
                active: anchors.active.clone(),
                next: None,
                previous: None,
            },
            (
                "AnchorRemoved",
                format!(
                    "every meshed pod has a certificate from the new issuer: the old anchor {} leaves the bundle",
                    short(&rotation.old_anchor_sha256)
                ),
            ),
        ),
        _ => Plan {
            store: None,
            rotation: None,
            event: Some((
                "RotationFinished",
                format!(
                    "trust anchor {} replaced {}; every meshed pod carries the new bundle",
                    short(&rotation.new_anchor_sha256),
                    short(&rotation.old_anchor_sha256)
                ),
            )),
            finished: true,
        },
    })
}

fn start_or_resume(
    input: &Input<'_>,
    stored: Option<(String, String)>,
    new_anchor: impl FnOnce() -> Result<TlsPair, IdentityError>,
) -> Result<Plan, IdentityError> {
    let now = input.now;
    let record = |phase, trigger: &str, (old, new): (String, String)| AnchorRotation {
        phase,
        trigger: trigger.to_owned(),
        started_at: now.clone(),
        phase_started_at: now.clone(),
        old_anchor_sha256: old,
        new_anchor_sha256: new,
        waiting_for: None,
    };
    if let (Some(pair), Some(phase)) = (stored, input.anchors.stage()) {
        let message = format!(
            "resuming the rotation from trust anchor {} to {} in phase {phase:?}",
            short(&pair.0),
            short(&pair.1)
        );
        return Ok(Plan {
            store: None,
            rotation: Some(record(phase, "Resumed", pair)),
            event: Some(("RotationResumed", message)),
            finished: false,
        });
    }
    let Some(trigger) = input.trigger else {
        return Ok(Plan::unchanged(None));
    };
    let next = new_anchor()?;
    let pair = (
        fingerprint(&input.anchors.active.cert_pem, "trust anchor")?,
        fingerprint(&next.cert_pem, "new trust anchor")?,
    );
    let message = format!(
        "rotating trust anchor {} ({}): the new anchor {} joins the bundle",
        short(&pair.0),
        trigger.as_str(),
        short(&pair.1)
    );
    Ok(Plan {
        store: Some(Anchors {
            active: input.anchors.active.clone(),
            next: Some(next),
            previous: None,
        }),
        rotation: Some(record(RotationPhase::AddAnchor, trigger.as_str(), pair)),
        event: Some(("RotationStarted", message)),
        finished: false,
    })
}

/// The first characters of a digest, enough to tell two apart.
pub fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{issuer, trust_anchor, verify_signed_by};
    use std::time::{Duration, SystemTime};

    const YEAR: Duration = Duration::from_secs(365 * 86400);

    fn anchor() -> TlsPair {
        trust_anchor("cluster.local", YEAR, SystemTime::now()).unwrap()
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::now())
    }

    struct World {
        anchors: Anchors,
        rotation: Option<AnchorRotation>,
        rolled: bool,
        lagging: usize,
    }

    impl World {
        fn new() -> Self {
            Self {
                anchors: Anchors {
                    active: anchor(),
                    next: None,
                    previous: None,
                },
                rotation: None,
                rolled: true,
                lagging: 0,
            }
        }

        /// One reconcile: plan, then store and record as the controller does.
        fn step(&mut self, trigger: Option<Trigger>) -> Plan {
            let lag = Lagging {
                count: self.lagging,
                examples: vec!["app/web-1".into()],
            };
            let plan = plan(
                &Input {
                    rotation: self.rotation.as_ref(),
                    anchors: &self.anchors,
                    trigger,
                    control_plane_rolled: self.rolled,
                    lagging: Some(&lag),
                    now: &now(),
                },
                || Ok(anchor()),
            )
            .unwrap();
            if let Some(store) = &plan.store {
                self.anchors = store.clone();
            }
            self.rotation = plan.rotation.clone();
            plan
        }

        fn phase(&self) -> Option<RotationPhase> {
            self.rotation.as_ref().map(|r| r.phase)
        }

        fn certs(&self) -> Vec<String> {
            self.anchors
                .bundle()
                .split_inclusive("-----END CERTIFICATE-----")
                .map(|c| c.trim().to_owned())
                .collect()
        }
    }

    #[test]
    fn an_adopted_keyless_bundle_rotates_to_a_managed_anchor_keeping_all_its_anchors() {
        let (first, second) = (anchor(), anchor());
        // Two anchors, as installed, final newline and all; no key.
        let installed = format!("{}\n{}\n", first.cert_pem.trim(), second.cert_pem.trim());
        let mut w = World::new();
        w.anchors = Anchors {
            active: TlsPair {
                cert_pem: installed.clone(),
                key_pem: String::new(),
            },
            next: None,
            previous: None,
        };
        assert!(w.anchors.imported());
        // Its digest is of the text as installed.
        assert_eq!(w.anchors.bundle(), installed);
        w.step(Some(Trigger::Scheduled));
        assert_eq!(w.phase(), Some(RotationPhase::AddAnchor));
        let new = w.anchors.next.clone().unwrap();
        assert_eq!(
            w.certs(),
            [
                first.cert_pem.trim(),
                second.cert_pem.trim(),
                new.cert_pem.trim()
            ]
        );
        w.step(None);
        assert_eq!(w.phase(), Some(RotationPhase::SwitchIssuer));
        // The new anchor, which Keelson holds the key of, signs now; every
        // adopted anchor is still trusted.
        assert_eq!(w.anchors.active, new);
        assert!(!w.anchors.imported());
        assert_eq!(
            w.certs(),
            [
                new.cert_pem.trim(),
                first.cert_pem.trim(),
                second.cert_pem.trim()
            ]
        );
        w.step(None);
        assert_eq!(w.phase(), Some(RotationPhase::RemoveAnchor));
        assert_eq!(w.certs(), [new.cert_pem.trim()]);
    }

    #[test]
    fn nothing_happens_without_a_trigger() {
        let mut w = World::new();
        let before = w.anchors.clone();
        let plan = w.step(None);
        assert_eq!(plan, Plan::unchanged(None));
        assert_eq!(w.anchors, before);
    }

    #[test]
    fn a_rotation_walks_the_three_phases_and_each_waits_on_the_facts() {
        let mut w = World::new();
        let old = w.anchors.active.clone();
        let plan = w.step(Some(Trigger::Requested));
        assert_eq!(plan.event.unwrap().0, "RotationStarted");
        assert_eq!(w.phase(), Some(RotationPhase::AddAnchor));
        let new = w.anchors.next.clone().unwrap();
        assert_eq!(w.certs(), [old.cert_pem.trim(), new.cert_pem.trim()]);

        // Held by the control plane, then by a pod, whatever time passes.
        w.rolled = false;
        w.step(None);
        let waiting = w.rotation.as_ref().unwrap().waiting_for.clone().unwrap();
        assert!(waiting.contains("identity and destination"), "{waiting}");
        w.rolled = true;
        w.lagging = 3;
        w.step(None);
        assert_eq!(w.phase(), Some(RotationPhase::AddAnchor));
        let waiting = w.rotation.as_ref().unwrap().waiting_for.clone().unwrap();
        assert!(waiting.contains("3 meshed pods") && waiting.contains("app/web-1"));

        w.lagging = 0;
        let plan = w.step(None);
        assert_eq!(plan.event.unwrap().0, "IssuerSwitched");
        assert_eq!(w.phase(), Some(RotationPhase::SwitchIssuer));
        assert_eq!(w.anchors.active, new);
        // Both still trusted, the new signer first: a new digest.
        assert_eq!(w.certs(), [new.cert_pem.trim(), old.cert_pem.trim()]);
        // The issuer the controller makes now chains to the new anchor only.
        let iss = issuer(
            &w.anchors.active,
            "linkerd",
            "cluster.local",
            YEAR,
            SystemTime::now(),
        )
        .unwrap();
        verify_signed_by(&iss.cert_pem, &new.cert_pem).unwrap();
        assert!(verify_signed_by(&iss.cert_pem, &old.cert_pem).is_err());

        let plan = w.step(None);
        assert_eq!(plan.event.unwrap().0, "AnchorRemoved");
        assert_eq!(w.phase(), Some(RotationPhase::RemoveAnchor));
        assert_eq!(w.certs(), [new.cert_pem.trim()]);

        w.lagging = 1;
        w.step(None);
        assert_eq!(w.phase(), Some(RotationPhase::RemoveAnchor));
        w.lagging = 0;
        let plan = w.step(None);
        assert!(plan.finished);
        assert_eq!(plan.event.unwrap().0, "RotationFinished");
        assert_eq!(w.rotation, None);
        assert_eq!(w.certs(), [new.cert_pem.trim()]);
        // A trigger still firing does not restart it by itself: the caller
        // decides triggers from the new anchor's age and recorded requests.
    }

    #[test]
    fn unlisted_pods_never_let_a_phase_advance() {
        let mut w = World::new();
        w.step(Some(Trigger::Scheduled));
        let plan = plan(
            &Input {
                rotation: w.rotation.as_ref(),
                anchors: &w.anchors,
                trigger: None,
                control_plane_rolled: true,
                lagging: None,
                now: &now(),
            },
            || unreachable!("no new anchor mid-rotation"),
        )
        .unwrap();
        assert_eq!(plan.store, None);
        assert_eq!(plan.rotation.unwrap().phase, RotationPhase::AddAnchor);
    }

    #[test]
    fn anchors_stored_but_not_recorded_are_adopted_at_every_phase() {
        // The operator stopped after storing the anchors of each phase and
        // before writing status: the next reconcile carries on from the
        // Secret and never makes another anchor.
        let mut w = World::new();
        w.step(Some(Trigger::Requested));
        let new = w.anchors.next.clone().unwrap();
        w.rotation = None;
        let plan = w.step(Some(Trigger::Requested));
        assert_eq!(plan.event.unwrap().0, "RotationResumed");
        assert_eq!(w.phase(), Some(RotationPhase::AddAnchor));
        assert_eq!(w.anchors.next.as_ref(), Some(&new));

        let before = w.rotation.clone();
        w.step(None); // advances to SwitchIssuer, stores the swap
        w.rotation = before; // ... but status still says AddAnchor
        w.lagging = 1;
        w.step(None);
        assert_eq!(w.phase(), Some(RotationPhase::SwitchIssuer));
        assert_eq!(w.anchors.active, new);

        w.lagging = 0;
        let before = w.rotation.clone();
        w.step(None); // stores the new anchor alone
        w.rotation = before;
        w.lagging = 1;
        w.step(None);
        assert_eq!(w.phase(), Some(RotationPhase::RemoveAnchor));
        w.lagging = 0;
        assert!(w.step(None).finished);
    }

    #[test]
    fn a_vanished_new_anchor_abandons_the_rotation_with_the_old_bundle() {
        let mut w = World::new();
        let old = w.anchors.active.clone();
        w.step(Some(Trigger::Requested));
        w.anchors.next = None;
        let plan = w.step(None);
        assert_eq!(plan.event.unwrap().0, "RotationAbandoned");
        assert_eq!(w.rotation, None);
        assert_eq!(w.certs(), [old.cert_pem.trim()]);
    }

    #[test]
    fn the_bundle_always_holds_the_anchor_each_pods_certificate_chains_to() {
        // A pod's certificate chains to the first anchor of the bundle it was
        // started with. Whatever bundle each phase publishes must hold the
        // signing anchor of every bundle pods may still carry: those of the
        // phase before it (the gate saw no other).
        let mut w = World::new();
        let mut bundles = vec![w.certs()];
        w.step(Some(Trigger::Requested));
        bundles.push(w.certs());
        while w.rotation.is_some() {
            w.step(None);
            bundles.push(w.certs());
        }
        for pair in bundles.windows(2) {
            let (carried, published) = (&pair[0], &pair[1]);
            assert!(
                published.contains(&carried[0]),
                "a published bundle lacks the signer of the one before it"
            );
        }
        assert_eq!(bundles.len(), 5, "start, add, switch, remove, done");
    }
}
