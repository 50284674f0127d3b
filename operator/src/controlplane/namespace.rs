//! Which namespace a ControlPlane may take, and which it may delete.
//!
//! Keelson lowers Pod Security to `privileged` in the control plane's
//! namespace, turns injection off there and, on uninstall, used to delete
//! it: naming `payments` in `spec.namespace` once deleted `payments` with
//! everything in it. So a ControlPlane takes only a namespace that does not
//! exist yet (Keelson creates it and records so), one it created, or one
//! its owner handed over by labelling it `keelson.dev/control-plane:
//! <ControlPlane>`; and uninstall deletes only a namespace Keelson created
//! that holds nothing Keelson did not put there. Pure: the reconciler and
//! the validator pass in what they observed.

use crate::render::CONTROL_PLANE_LABEL;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Annotation on a namespace Keelson created: the UID of the ControlPlane
/// it created it for.
pub const CREATED_BY: &str = "keelson.dev/created-by";

/// Annotation on a ControlPlane: uninstall deletes the namespace Keelson
/// created even if it holds objects Keelson did not create.
pub const DELETE_NAMESPACE: &str = "keelson.dev/delete-namespace";

/// What a ControlPlane may do with the namespace it names.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// It does not exist: Keelson creates it, recording [`CREATED_BY`].
    Create,
    /// Keelson created it for this ControlPlane: it may be deleted on
    /// uninstall.
    Created,
    /// Its owner handed it over (or an older Keelson took it): it is used,
    /// and kept on uninstall.
    HandedOver,
    /// Someone else's: refused, with the message for `spec.namespace`.
    Refused(String),
}

/// Whether ControlPlane `name` (UID `uid`) may take the namespace whose
/// metadata is `existing`. Having installed somewhere proves nothing: a
/// stored spec whose namespace was changed behind the validator's back
/// must not take the new one.
///
/// `granted` lists the namespaces Keelson's install grants it for control
/// planes (its RBAC reaches no other); `None` means any.
pub fn claim(
    name: &str,
    uid: Option<&str>,
    namespace: &str,
    existing: Option<&ObjectMeta>,
    granted: Option<&[String]>,
) -> Claim {
    if let Some(granted) = granted
        && !granted.iter().any(|g| g == namespace)
    {
        let list = if granted.is_empty() {
            "no namespace".to_owned()
        } else {
            format!("only namespaces {}", granted.join(", "))
        };
        return Claim::Refused(format!(
            "Keelson's install grants it {list} for control planes, not {namespace}: name a granted one, or add {namespace} to the install's controlPlanes"
        ));
    }
    let Some(meta) = existing else {
        return Claim::Create;
    };
    let annotation = meta.annotations.as_ref().and_then(|a| a.get(CREATED_BY));
    if uid.is_some() && annotation.map(String::as_str) == uid {
        return Claim::Created;
    }
    // Keelson labels every namespace it uses, so one an older Keelson
    // created without the annotation is found this way too.
    let label = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(CONTROL_PLANE_LABEL));
    if label.map(String::as_str) == Some(name) {
        return Claim::HandedOver;
    }
    let ns = namespace;
    let whose = match label {
        Some(other) => format!(" (it is ControlPlane {other}'s)"),
        None => String::new(),
    };
    Claim::Refused(format!(
        "namespace {ns} already exists and Keelson did not create it{whose}: name a namespace that does not exist yet, or hand this one over by labelling it {CONTROL_PLANE_LABEL}={name} (Keelson then sets Pod Security to privileged and turns injection off in it, and never deletes it)"
    ))
}

/// Why an uninstall keeps the namespace it would otherwise delete, if it
/// does: `foreign` names objects in it that Keelson did not create.
pub fn keep_on_uninstall(claim: &Claim, force: bool, foreign: &[String]) -> Option<String> {
    match claim {
        Claim::Created if force || foreign.is_empty() => None,
        Claim::Created => Some(format!(
            "it holds objects Keelson did not create ({}{}); annotate the ControlPlane {DELETE_NAMESPACE}=true to delete it anyway",
            foreign
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if foreign.len() > 5 { ", ..." } else { "" }
        )),
        Claim::Create => Some("it does not exist".into()),
        Claim::HandedOver | Claim::Refused(_) => Some("Keelson did not create it".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        ObjectMeta {
            name: Some("payments".into()),
            labels: map(labels),
            annotations: map(annotations),
            ..Default::default()
        }
    }

    #[test]
    fn only_an_absent_created_or_handed_over_namespace_is_taken() {
        assert_eq!(
            claim("linkerd", Some("u1"), "payments", None, None),
            Claim::Create
        );
        let created = meta(&[], &[(CREATED_BY, "u1")]);
        assert_eq!(
            claim("linkerd", Some("u1"), "payments", Some(&created), None),
            Claim::Created
        );
        // Created for another ControlPlane (a deleted one of the same name).
        assert!(matches!(
            claim("linkerd", Some("u2"), "payments", Some(&created), None),
            Claim::Refused(_)
        ));
        let handed = meta(&[(CONTROL_PLANE_LABEL, "linkerd")], &[]);
        assert_eq!(
            claim("linkerd", Some("u1"), "payments", Some(&handed), None),
            Claim::HandedOver
        );
        let Claim::Refused(why) = claim(
            "linkerd",
            Some("u1"),
            "payments",
            Some(&meta(&[], &[])),
            None,
        ) else {
            panic!("a user's namespace must be refused");
        };
        assert!(why.contains("namespace payments already exists"), "{why}");
        assert!(why.contains("keelson.dev/control-plane=linkerd"), "{why}");
        let Claim::Refused(why) = claim(
            "linkerd",
            None,
            "payments",
            Some(&meta(&[(CONTROL_PLANE_LABEL, "other")], &[])),
            None,
        ) else {
            panic!("another ControlPlane's namespace must be refused");
        };
        assert!(why.contains("ControlPlane other's"), "{why}");
    }

    #[test]
    fn only_a_namespace_the_install_granted_is_taken() {
        let granted = ["linkerd".to_owned()];
        let Claim::Refused(why) = claim("linkerd", Some("u1"), "payments", None, Some(&granted))
        else {
            panic!("a namespace outside the install's grant must be refused");
        };
        assert!(why.contains("only namespaces linkerd"), "{why}");
        assert!(
            why.contains("add payments to the install's controlPlanes"),
            "{why}"
        );
        let Claim::Refused(why) = claim("linkerd", Some("u1"), "linkerd", None, Some(&[])) else {
            panic!("an install that grants no namespace takes none");
        };
        assert!(why.contains("grants it no namespace"), "{why}");
        assert_eq!(
            claim("linkerd", Some("u1"), "linkerd", None, Some(&granted)),
            Claim::Create
        );
    }

    #[test]
    fn uninstall_deletes_only_an_empty_namespace_keelson_created() {
        assert_eq!(keep_on_uninstall(&Claim::Created, false, &[]), None);
        let foreign = ["Deployment payments/api".to_owned()];
        let kept = keep_on_uninstall(&Claim::Created, false, &foreign).unwrap();
        assert!(kept.contains("Deployment payments/api"), "{kept}");
        assert!(kept.contains(DELETE_NAMESPACE), "{kept}");
        assert_eq!(keep_on_uninstall(&Claim::Created, true, &foreign), None);
        assert!(keep_on_uninstall(&Claim::HandedOver, true, &[]).is_some());
    }
}
