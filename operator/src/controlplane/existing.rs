//! A Linkerd control plane Keelson did not install, found in the namespace
//! a ControlPlane names before Keelson writes anything there.
//!
//! Teams come to Keelson with Linkerd already running, installed with its
//! Helm charts or its CLI, with their own trust anchor. Installing over it
//! would publish a new trust bundle in one write: every meshed pod would
//! hold a certificate the new bundle does not trust. So Keelson looks
//! first, reports what it found, and leaves it alone.

use super::ReconcileError;
use crate::identity;
use crate::render::CONTROL_PLANE_LABEL;
use crate::render::proxy::{TRUST_ROOTS, TRUST_ROOTS_KEY};
use k8s_openapi::Resource as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_crds::controlplane::ExistingInstallation;
use kube::Client;
use kube::api::{Api, ListParams};
use std::collections::BTreeSet;

/// The objects whose presence, unmade by Keelson, means Linkerd runs here.
const CONFIG_MAPS: [&str; 2] = ["linkerd-config", TRUST_ROOTS];
const DEPLOYMENTS: [&str; 3] = [
    "linkerd-identity",
    "linkerd-destination",
    "linkerd-proxy-injector",
];
/// Listed when found, but not a sign of an installation alone: Keelson's
/// `External` and `OfflineRoot` modes ask the user to create it first.
const ISSUER: &str = "linkerd-identity-issuer";

/// One object found, as much of it as the judgement needs.
pub struct Found {
    pub kind: &'static str,
    pub meta: ObjectMeta,
    /// A Deployment's first container image.
    pub image: Option<String>,
    /// The trust roots' bundle (PEM).
    pub bundle: Option<String>,
}

impl Found {
    fn keelsons(&self) -> bool {
        self.meta
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(CONTROL_PLANE_LABEL))
    }

    fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or_default()
    }
}

/// What the found objects say: an installation Keelson did not make, if
/// any of Linkerd's own objects lacks Keelson's label. Pure.
pub fn judge(found: &[Found], helm_releases: &[String]) -> Option<ExistingInstallation> {
    let foreign: Vec<&Found> = found.iter().filter(|f| !f.keelsons()).collect();
    if !foreign.iter().any(|f| f.name() != ISSUER) {
        return None;
    }
    let version = foreign
        .iter()
        .filter_map(|f| f.image.as_deref())
        .find_map(|image| image.rsplit_once(':').map(|(_, tag)| tag.to_owned()));
    let managers: BTreeSet<String> = foreign
        .iter()
        .flat_map(|f| f.meta.managed_fields.iter().flatten())
        .filter_map(|m| m.manager.clone())
        .collect();
    let trust_anchors = foreign
        .iter()
        .filter_map(|f| f.bundle.as_deref())
        .find_map(|pem| identity::summaries(pem, "trust bundle").ok())
        .unwrap_or_default();
    Some(ExistingInstallation {
        version,
        objects: foreign
            .iter()
            .map(|f| format!("{}/{}", f.kind, f.name()))
            .collect(),
        helm_releases: helm_releases.to_vec(),
        managers: managers.into_iter().collect(),
        trust_anchors,
    })
}

/// The condition's message for an installation found in `namespace`.
pub fn message(namespace: &str, found: &ExistingInstallation) -> String {
    let mut what = found.objects.join(", ");
    if !found.helm_releases.is_empty() {
        what.push_str(&format!(
            "; Helm releases {}",
            found.helm_releases.join(", ")
        ));
    }
    format!(
        "spec.adoption: namespace {namespace} runs a Linkerd control plane Keelson did not install (Linkerd {}: {what}); Keelson changes nothing there, since installing over it would replace its trust anchors. Set spec.adoption to take it over, keeping its trust anchors and issuer (`keelson adopt` prints the ControlPlane that reproduces it), or name another namespace",
        found.version.as_deref().unwrap_or("of unknown version")
    )
}

/// Reads Linkerd's objects in `namespace` and judges them.
pub async fn observe(
    client: &Client,
    namespace: &str,
) -> Result<Option<ExistingInstallation>, ReconcileError> {
    let failed =
        |what: &str, e| ReconcileError::kube(format!("looking for {what} in {namespace}"), e);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut found = Vec::new();
    for name in CONFIG_MAPS {
        if let Some(cm) = config_maps
            .get_opt(name)
            .await
            .map_err(|e| failed("Linkerd's ConfigMaps", e))?
        {
            let bundle = cm
                .data
                .as_ref()
                .and_then(|d| d.get(TRUST_ROOTS_KEY))
                .cloned();
            found.push(Found {
                kind: ConfigMap::KIND,
                meta: cm.metadata,
                image: None,
                bundle,
            });
        }
    }
    for name in DEPLOYMENTS {
        if let Some(d) = deployments
            .get_opt(name)
            .await
            .map_err(|e| failed("Linkerd's Deployments", e))?
        {
            let image = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone());
            found.push(Found {
                kind: Deployment::KIND,
                meta: d.metadata,
                image,
                bundle: None,
            });
        }
    }
    if let Some(issuer) = secrets
        .get_metadata_opt(ISSUER)
        .await
        .map_err(|e| failed("Linkerd's issuer", e))?
    {
        found.push(Found {
            kind: Secret::KIND,
            meta: issuer.metadata,
            image: None,
            bundle: None,
        });
    }
    // Helm keeps a release's records as Secrets labelled owner=helm and
    // name=<release>.
    let releases: BTreeSet<String> = secrets
        .list_metadata(&ListParams::default().labels("owner=helm"))
        .await
        .map_err(|e| failed("Helm release records", e))?
        .items
        .into_iter()
        .filter_map(|s| s.metadata.labels?.get("name").cloned())
        .collect();
    Ok(judge(&found, &releases.into_iter().collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    fn found(kind: &'static str, name: &str, keelsons: bool, manager: &str) -> Found {
        let meta = ObjectMeta {
            name: Some(name.into()),
            labels: keelsons
                .then(|| [(CONTROL_PLANE_LABEL.to_owned(), "linkerd".to_owned())].into()),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some(manager.into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        Found {
            kind,
            meta,
            image: (kind == "Deployment")
                .then(|| "cr.l5d.io/linkerd/controller:edge-25.4.4".to_owned()),
            bundle: None,
        }
    }

    #[test]
    fn linkerds_own_objects_unmade_by_keelson_are_an_installation() {
        let helm = vec!["linkerd-control-plane".to_owned()];
        let seen = [
            found("ConfigMap", "linkerd-config", false, "helm"),
            found("Deployment", "linkerd-identity", false, "helm"),
        ];
        let existing = judge(&seen, &helm).expect("an installation");
        assert_eq!(existing.version.as_deref(), Some("edge-25.4.4"));
        assert_eq!(
            existing.objects,
            ["ConfigMap/linkerd-config", "Deployment/linkerd-identity"]
        );
        assert_eq!(existing.managers, ["helm"]);
        assert_eq!(existing.helm_releases, helm);
        let text = message("linkerd", &existing);
        assert!(
            text.starts_with("spec.adoption: namespace linkerd runs a Linkerd control plane"),
            "{text}"
        );
        assert!(
            text.contains("edge-25.4.4") && text.contains("linkerd-control-plane"),
            "{text}"
        );
    }

    #[test]
    fn keelsons_objects_and_a_lone_issuer_are_not() {
        assert!(judge(&[], &[]).is_none());
        let keelsons = [found("Deployment", "linkerd-identity", true, "keelson")];
        assert!(judge(&keelsons, &[]).is_none());
        // External and OfflineRoot modes ask for the issuer Secret first.
        let issuer = [found("Secret", ISSUER, false, "kubectl-create")];
        assert!(judge(&issuer, &[]).is_none());
        // Helm releases alone (other charts in the namespace) are not one.
        assert!(judge(&[], &["something".to_owned()]).is_none());
        // A CLI install: kubectl's client-side apply, no Helm records.
        let cli = [found(
            "ConfigMap",
            "linkerd-identity-trust-roots",
            false,
            "kubectl-client-side-apply",
        )];
        assert_eq!(
            judge(&cli, &[]).expect("an installation").managers,
            ["kubectl-client-side-apply"]
        );
    }
}
