//! The identity part of a ControlPlane's status: the certificates in use,
//! the trust-anchor rotation under way, the `CertificatesExpiringSoon`
//! condition, expiry metrics, and an Event for every rotation phase.

use super::material::Material;
use super::{Context, publish, status};
use crate::identity::{self, IdentityError, rotation::short};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_crds::controlplane::{
    CertificateSummary, ControlPlane, ControlPlaneStatus, DECLARED_TRUST_ANCHOR_SECRET,
    DeclaredAnchor, DeclaredAnchorState, IdentityStatus, IssuerRequest, ROTATE_TRUST_ANCHOR,
};
use kube::ResourceExt;
use kube::runtime::events::{Event, EventType};
use std::time::{Duration, SystemTime};

/// Records identity facts in `next` and publishes what changed. Returns
/// whether a trust-anchor rotation is under way.
pub(super) async fn record(
    ctx: &Context,
    cp: &ControlPlane,
    next: &mut ControlPlaneStatus,
    material: &Material,
    control_plane_bundle: Option<String>,
    now: &Time,
) -> bool {
    let previous = next.identity.clone().unwrap_or_default();
    let computed = identity_status(
        &previous,
        material,
        control_plane_bundle,
        cp.annotations().get(ROTATE_TRUST_ANCHOR),
        now,
    );
    let identity = match computed {
        Ok(identity) => identity,
        Err(e) => {
            // Unreadable certificates: what status said stays; the
            // condition says why it cannot be checked.
            status::set_condition(
                &mut next.conditions,
                status::CERTIFICATES_EXPIRING_SOON,
                true,
                "Unreadable",
                format!("cannot check certificate expiry: {e}"),
                cp.metadata.generation,
                now,
            );
            return previous.rotation.is_some();
        }
    };
    let renew_at = cp.spec.identity.rotation.renew_at_percent;
    let (ok, reason, message) = expiring(&identity, renew_at, now);
    status::set_condition(
        &mut next.conditions,
        status::CERTIFICATES_EXPIRING_SOON,
        ok,
        reason,
        message,
        cp.metadata.generation,
        now,
    );
    let certificates = identity
        .trust_anchors
        .iter()
        .map(|a| (format!("trust-anchor/{}", short(&a.sha256)), a))
        .chain(identity.issuer.iter().map(|i| ("issuer".to_owned(), i)))
        .map(|(name, c)| (name, system_time(&c.not_after)))
        .collect();
    ctx.metrics.identity_certificates(certificates);
    if let Some((reason, note)) = material.rotation.as_ref().and_then(|p| p.event.clone()) {
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: "RotateTrustAnchor".into(),
            secondary: None,
        };
        publish(ctx, cp, &event).await;
    }
    if let Some(event) = declared_event(previous.declared_anchor.as_ref(), &identity) {
        publish(ctx, cp, &event).await;
    }
    let request = issuer_request_event(
        previous.issuer_request.as_ref(),
        identity.issuer_request.as_ref(),
        material.issuer_installed,
    );
    if let Some(event) = request {
        publish(ctx, cp, &event).await;
    }
    let rotating = identity.rotation.is_some();
    next.identity = Some(identity);
    rotating
}

/// An Event when a declared anchor is newly rejected or left waiting; its
/// adoption shows as the rotation's own `RotationStarted`.
fn declared_event(before: Option<&DeclaredAnchor>, identity: &IdentityStatus) -> Option<Event> {
    let declared = identity.declared_anchor.as_ref()?;
    if before == Some(declared) {
        return None;
    }
    let (type_, reason) = match declared.state {
        DeclaredAnchorState::Rejected => (EventType::Warning, "DeclaredAnchorRejected"),
        DeclaredAnchorState::Pending => (EventType::Normal, "DeclaredAnchorPending"),
        DeclaredAnchorState::Adopted => return None,
    };
    let sha = declared
        .sha256
        .as_deref()
        .map(short)
        .unwrap_or("unreadable");
    Some(Event {
        type_,
        reason: reason.into(),
        note: Some(format!(
            "Secret {DECLARED_TRUST_ANCHOR_SECRET} (sha256 {sha}): {}",
            declared.message.as_deref().unwrap_or_default()
        )),
        action: "RotateTrustAnchor".into(),
        secondary: None,
    })
}

/// An Event when an `OfflineRoot` issuer is asked for, when a certificate
/// found for it is rejected, and when one is installed.
fn issuer_request_event(
    before: Option<&IssuerRequest>,
    now: Option<&IssuerRequest>,
    installed: bool,
) -> Option<Event> {
    let (type_, reason, note) = match (before, now) {
        _ if installed => (
            EventType::Normal,
            "IssuerInstalled",
            "installed the issuer certificate signed off the cluster; the identity controller reloads it".to_owned(),
        ),
        (Some(b), Some(n)) if b == n => return None,
        (_, Some(IssuerRequest { secret, sha256, rejected: None })) => (
            EventType::Warning,
            "IssuerSigningRequested",
            format!(
                "the issuer is due for renewal: sign tls.csr of Secret {secret} (sha256 {}) with your trust anchor, as a CA with path length 0, and add the certificate to that Secret as tls.crt",
                short(sha256)
            ),
        ),
        (_, Some(IssuerRequest { secret, rejected: Some(why), .. })) => (
            EventType::Warning,
            "SignedIssuerRejected",
            format!("the certificate in Secret {secret} was not installed: {why}"),
        ),
        (_, None) => return None,
    };
    Some(Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "RenewIssuer".into(),
        secondary: None,
    })
}

/// The identity status after this reconcile. Pure.
fn identity_status(
    previous: &IdentityStatus,
    material: &Material,
    control_plane_bundle: Option<String>,
    requested: Option<&String>,
    now: &Time,
) -> Result<IdentityStatus, IdentityError> {
    let mut out = previous.clone();
    out.trust_anchors = identity::summaries(&material.identity.trust_anchors_pem, "trust bundle")?;
    out.issuer = match &material.issuer_cert_pem {
        Some(pem) => identity::summaries(pem, "issuer")?.into_iter().next(),
        None => None,
    };
    // DataPlanes roll workloads to the bundle the control plane runs with,
    // never to one it is still rolling out.
    if control_plane_bundle.is_some() {
        out.trust_root_sha256 = control_plane_bundle;
    }
    out.declared_anchor = material.declared.clone();
    out.issuer_request = material.issuer_request.clone();
    if let Some(plan) = &material.rotation {
        // A resumed rotation may be the requested one whose start was
        // stored but not recorded: the request counts as handled either way.
        let began = ["RotationStarted", "RotationResumed"];
        if plan.event.as_ref().is_some_and(|(r, _)| began.contains(r)) {
            out.rotation_request = requested.cloned().or(out.rotation_request);
        }
        if plan.finished {
            out.last_rotation = Some(now.clone());
        }
        out.rotation = plan.rotation.clone();
    }
    Ok(out)
}

/// `CertificatesExpiringSoon`: true once a certificate in use has passed
/// `renew_at` percent of its lifetime (when Keelson would have replaced a
/// managed one), with what and when.
fn expiring(identity: &IdentityStatus, renew_at: u8, now: &Time) -> (bool, &'static str, String) {
    let now_s = now.0.as_second();
    let mut expired = false;
    let mut soon = Vec::new();
    let named = identity
        .trust_anchors
        .iter()
        .map(|a| ("trust anchor", a))
        .chain(identity.issuer.iter().map(|i| ("issuer", i)));
    for (what, c) in named {
        let (from, to) = (c.not_before.0.as_second(), c.not_after.0.as_second());
        let due = from + (to - from) * i64::from(renew_at) / 100;
        if now_s >= due {
            expired |= now_s >= to;
            soon.push(describe(what, c, now_s));
        }
    }
    if soon.is_empty() {
        return (
            false,
            "AsExpected",
            format!("every certificate in use is within the first {renew_at}% of its lifetime"),
        );
    }
    let mut message = soon.join("; ");
    if let Some(r) = &identity.rotation {
        message.push_str(&format!("; trust-anchor rotation in phase {:?}", r.phase));
    }
    (true, if expired { "Expired" } else { "Expiring" }, message)
}

fn describe(what: &str, c: &CertificateSummary, now: i64) -> String {
    let left = c.not_after.0.as_second() - now;
    let when = if left < 0 {
        format!("expired {} ago", human(-left))
    } else {
        format!("expires in {}", human(left))
    };
    format!(
        "{what} {} (sha256 {}) {when}, at {}",
        c.subject,
        short(&c.sha256),
        c.not_after.0
    )
}

fn human(seconds: i64) -> String {
    match seconds {
        s if s >= 2 * 86400 => format!("{}d", s / 86400),
        s if s >= 2 * 3600 => format!("{}h", s / 3600),
        s if s >= 120 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn system_time(t: &Time) -> SystemTime {
    let s = t.0.as_second();
    if s >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    fn cert(subject: &str, from: i64, to: i64) -> CertificateSummary {
        CertificateSummary {
            subject: subject.into(),
            sha256: "0123456789abcdef".into(),
            not_before: at(from),
            not_after: at(to),
        }
    }

    #[test]
    fn a_certificate_past_renew_at_percent_is_expiring_and_named() {
        let mut identity = IdentityStatus {
            trust_anchors: vec![cert("root.linkerd.cluster.local", 0, 1000 * 86400)],
            issuer: Some(cert("identity.linkerd.cluster.local", 0, 10 * 86400)),
            ..IdentityStatus::default()
        };
        let (ok, reason, _) = expiring(&identity, 70, &at(6 * 86400));
        assert!(!ok);
        assert_eq!(reason, "AsExpected");

        let (ok, reason, message) = expiring(&identity, 70, &at(8 * 86400));
        assert!(ok);
        assert_eq!(reason, "Expiring");
        assert!(
            message.contains("issuer identity.linkerd.cluster.local")
                && message.contains("expires in 2d")
                && !message.contains("trust anchor"),
            "{message}"
        );

        identity.issuer = Some(cert("identity.linkerd.cluster.local", 0, 86400));
        let (ok, reason, message) = expiring(&identity, 70, &at(3 * 86400));
        assert!(ok);
        assert_eq!(reason, "Expired");
        assert!(message.contains("expired 2d ago"), "{message}");
    }
}
