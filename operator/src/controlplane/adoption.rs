//! Taking over a Linkerd that Keelson did not install (`spec.adoption`).
//!
//! The takeover is a state machine in `status.adoption`, each step judged
//! from what is observed so that one repeated after a crash does no harm:
//! 1. (on start) the running release becomes the current version and the
//!    trust bundle is copied, as installed, into Keelson's anchor Secret,
//!    with no key; the issuer stays where it is. Nothing of the mesh's
//!    identity changes, and pods Linkerd injected count as up to date.
//! 2. `TakeOwnership`: every object Keelson renders moves from Helm's or
//!    kubectl's field ownership to Keelson's, then is applied. Linkerd's
//!    CRDs are left as they are, as every CRD Keelson did not install is
//!    (`status.foreignCrds`).
//! 3. `HandOverInjector`: done by the leader's webhook loop, which owns the
//!    registrations: Linkerd's is pointed at Keelson's injector, Keelson's
//!    own filled, Linkerd's deleted. One injector answers at every moment.
//! 4. `RemoveLinkerdInjector`: Linkerd's injector Deployment, Service,
//!    Secret, ServiceAccount, PodDisruptionBudget and RBAC go.
//! 5. `ForgetHelmRelease`: the `linkerd-control-plane` release records go,
//!    so that a `helm upgrade` fails instead of undoing Keelson's changes.

use super::ReconcileError;
use super::material::{self, IMPORTED_CERT, ISSUER_SECRET, key};
use crate::apply::{Applier, ApplyError};
use crate::catalog;
use crate::identity;
use crate::render::CONTROL_PLANE_LABEL;
use crate::render::proxy::{TRUST_ROOTS, TRUST_ROOTS_KEY, trust_root_sha256};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_crds::ControlPlane;
use keelson_crds::controlplane::{AdoptionPhase, AdoptionStatus, IssuerMode};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// Name of Linkerd's injector Deployment, Service, ServiceAccount and PDB.
pub const LINKERD_INJECTOR: &str = "linkerd-proxy-injector";
/// Linkerd's injector registration (one name, whatever the namespace).
pub const LINKERD_INJECTOR_WEBHOOK: &str = "linkerd-proxy-injector-webhook-config";
/// The Helm release of Linkerd's control-plane chart.
pub const HELM_RELEASE: &str = "linkerd-control-plane";

/// What a running installation holds that the takeover keeps.
#[derive(Debug, PartialEq)]
pub struct Found<'a> {
    /// The release its controllers run.
    pub version: Option<&'a str>,
    /// `linkerd-config`'s values (YAML).
    pub values: Option<&'a str>,
    /// The trust-roots ConfigMap's bundle.
    pub trust_roots: Option<&'a str>,
    /// The issuer Secret.
    pub issuer: Option<&'a Secret>,
}

fn field<'v>(values: &'v yaml_serde::Value, key: &str) -> Option<&'v str> {
    values.get(key)?.as_str()
}

/// Judges a running installation for adoption by `cp`: the release to
/// adopt and the bundle to keep (as `linkerd-config` holds it, whose text
/// its pods' digests are of), or why it cannot be, naming the field. Pure.
pub fn judge(cp: &ControlPlane, found: &Found<'_>) -> Result<(String, String), String> {
    let ns = &cp.spec.namespace;
    let version = found.version.ok_or_else(|| {
        format!("spec.adoption: the release of the Linkerd running in {ns} is unknown (no controller image tag)")
    })?;
    catalog::find(version).map_err(|e| {
        format!("spec.adoption: the Linkerd running in {ns} is {version}, which Keelson cannot adopt: {e}")
    })?;
    let values: yaml_serde::Value = found
        .values
        .map(yaml_serde::from_str)
        .transpose()
        .map_err(|e| {
            format!("spec.adoption: ConfigMap {ns}/linkerd-config has unreadable values: {e}")
        })?
        .unwrap_or_default();
    let roots = found.trust_roots.unwrap_or_default();
    // The text the chart hashed, when it is the bundle proxies get.
    let bundle = match field(&values, "identityTrustAnchorsPEM") {
        Some(pem) if roots.trim().is_empty() || pem.trim() == roots.trim() => pem.to_owned(),
        _ if !roots.trim().is_empty() => roots.to_owned(),
        _ => {
            return Err(format!(
                "spec.adoption: the Linkerd running in {ns} publishes no trust bundle (ConfigMap linkerd-identity-trust-roots)"
            ));
        }
    };
    identity::summaries(&bundle, "trust bundle").map_err(|e| {
        format!("spec.adoption: the trust bundle of the Linkerd running in {ns} is unreadable: {e}")
    })?;
    let trust_domain = field(&values, "identityTrustDomain")
        .filter(|d| !d.is_empty())
        .or_else(|| field(&values, "clusterDomain"));
    if let Some(domain) = trust_domain
        && domain != cp.spec.trust_domain()
    {
        return Err(format!(
            "spec.identity.trustDomain: is {}, but the Linkerd running in {ns} issues identities in trust domain {domain}; set it to {domain} to adopt it",
            cp.spec.trust_domain()
        ));
    }
    let issuer = found.issuer.ok_or_else(|| {
        format!("spec.adoption: the Linkerd running in {ns} has no Secret {ISSUER_SECRET}")
    })?;
    let (cert, mode_needed) = match (key(issuer, "crt.pem"), key(issuer, "tls.crt")) {
        (Some(cert), _) if key(issuer, "key.pem").is_some() => (cert, IssuerMode::Managed),
        (_, Some(cert)) if key(issuer, "ca.crt").is_some() => (cert, IssuerMode::External),
        _ => {
            return Err(format!(
                "spec.adoption: Secret {ns}/{ISSUER_SECRET} holds neither crt.pem and key.pem (linkerd.io/tls) nor tls.crt and ca.crt (kubernetes.io/tls)"
            ));
        }
    };
    let mode = cp.spec.identity.issuer;
    match (mode_needed, mode) {
        (IssuerMode::Managed, IssuerMode::Managed) => {}
        (IssuerMode::External, IssuerMode::External | IssuerMode::OfflineRoot) => {}
        (IssuerMode::Managed, _) => {
            return Err(format!(
                "spec.identity.issuer: is {mode:?}, but the Linkerd running in {ns} keeps its issuer's key in Secret {ISSUER_SECRET} (linkerd.io/tls); set it to Managed to adopt it"
            ));
        }
        _ => {
            return Err(format!(
                "spec.identity.issuer: is Managed, but the Linkerd running in {ns} has an issuer maintained outside it (kubernetes.io/tls, as cert-manager writes); set it to External to adopt it"
            ));
        }
    }
    identity::verify_signed_by_bundle(&cert, &bundle).map_err(|e| {
        format!("spec.adoption: the issuer in Secret {ns}/{ISSUER_SECRET} does not chain to the bundle its proxies trust: {e}")
    })?;
    Ok((version.to_owned(), bundle))
}

/// Starts adopting the installation in `cp`'s namespace: judges it, then
/// stores its bundle in Keelson's anchor Secret. `Ok(Err(message))` when
/// it cannot be adopted as `cp` says; nothing was written then.
pub async fn start(
    client: &Client,
    cp: &ControlPlane,
    keelson_namespace: &str,
    version: Option<&str>,
    now: &Time,
) -> Result<Result<AdoptionStatus, String>, ReconcileError> {
    let ns = cp.spec.namespace.as_str();
    let read = |what: &str, e| ReconcileError::kube(format!("reading {what} in {ns}"), e);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm_data = |cm: Option<ConfigMap>, key: &str| cm.and_then(|c| c.data?.get(key).cloned());
    let values = cm_data(
        config_maps
            .get_opt("linkerd-config")
            .await
            .map_err(|e| read("linkerd-config", e))?,
        "values",
    );
    let roots = cm_data(
        config_maps
            .get_opt(TRUST_ROOTS)
            .await
            .map_err(|e| read(TRUST_ROOTS, e))?,
        TRUST_ROOTS_KEY,
    );
    let issuer = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(ISSUER_SECRET)
        .await
        .map_err(|e| read(ISSUER_SECRET, e))?;
    let found = Found {
        version,
        values: values.as_deref(),
        trust_roots: roots.as_deref(),
        issuer: issuer.as_ref(),
    };
    let (version, bundle) = match judge(cp, &found) {
        Ok(judged) => judged,
        Err(message) => return Ok(Err(message)),
    };
    // The bundle as installed, with no key: what the anchors' Secret holds
    // until a rotation to an anchor Keelson makes. One already there from
    // an earlier try is the same bundle; any other is refused, since using
    // it would replace the mesh's trust.
    let own: Api<Secret> = Api::namespaced(client.clone(), keelson_namespace);
    let name = material::anchor_secret(&cp.name_any());
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.clone());
    secret.metadata.labels = Some([(CONTROL_PLANE_LABEL.to_owned(), cp.name_any())].into());
    secret.data = Some(
        [(
            IMPORTED_CERT.to_owned(),
            ByteString(bundle.clone().into_bytes()),
        )]
        .into(),
    );
    let stored = match own.create(&PostParams::default(), &secret).await {
        Ok(created) => created,
        Err(kube::Error::Api(s)) if s.code == 409 => own
            .get(&name)
            .await
            .map_err(|e| ReconcileError::kube(format!("reading Secret {name}"), e))?,
        Err(e) => return Err(ReconcileError::kube(format!("creating Secret {name}"), e)),
    };
    if key(&stored, IMPORTED_CERT).as_deref() != Some(bundle.as_str()) {
        return Ok(Err(format!(
            "spec.adoption: Secret {keelson_namespace}/{name} already holds trust anchors other than the bundle of the Linkerd running in {ns}; adopting would replace that bundle. Delete the Secret if it is left over"
        )));
    }
    Ok(Ok(AdoptionStatus {
        phase: AdoptionPhase::TakeOwnership,
        started_at: now.clone(),
        version,
        trust_root_sha256: trust_root_sha256(&bundle),
        waiting_for: None,
    }))
}

/// Whether Linkerd's injector registration is gone and Keelson's is
/// registered: the webhook loop's hand-over is done.
pub async fn injector_handed_over(client: &Client) -> Result<bool, ReconcileError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let read = |e| ReconcileError::kube("reading the injector registrations", e);
    let linkerds = api.get_opt(LINKERD_INJECTOR_WEBHOOK).await.map_err(read)?;
    let ours = api
        .get_opt(crate::admission::configurations::INJECTOR)
        .await
        .map_err(read)?;
    Ok(linkerds.is_none() && ours.is_some_and(|m| m.webhooks.is_some_and(|w| !w.is_empty())))
}

/// Linkerd's injector objects in `namespace`, namespaced first and its
/// RBAC last, as stubs naming each.
pub fn linkerd_injector_objects(namespace: &str) -> Vec<Value> {
    let named = |api_version: &str, kind: &str, name: String, namespaced: bool| {
        let mut meta = json!({"name": name});
        if namespaced {
            meta["namespace"] = namespace.into();
        }
        json!({"apiVersion": api_version, "kind": kind, "metadata": meta})
    };
    let cluster_rbac = format!("linkerd-{namespace}-proxy-injector");
    vec![
        named("apps/v1", "Deployment", LINKERD_INJECTOR.into(), true),
        named("v1", "Service", LINKERD_INJECTOR.into(), true),
        named(
            "policy/v1",
            "PodDisruptionBudget",
            LINKERD_INJECTOR.into(),
            true,
        ),
        named("v1", "Secret", format!("{LINKERD_INJECTOR}-k8s-tls"), true),
        named("v1", "ServiceAccount", LINKERD_INJECTOR.into(), true),
        named(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            cluster_rbac.clone(),
            false,
        ),
        named(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            cluster_rbac,
            false,
        ),
    ]
}

/// Deletes Linkerd's injector objects; returns how many were there.
pub async fn remove_linkerd_injector(
    applier: &Applier,
    namespace: &str,
) -> Result<usize, ApplyError> {
    let mut removed = 0;
    for object in linkerd_injector_objects(namespace) {
        removed += usize::from(applier.delete_named(&object).await?);
    }
    Ok(removed)
}

/// Deletes the Helm release records of Linkerd's control-plane chart in
/// `namespace`; returns their names.
pub async fn forget_helm_release(
    client: &Client,
    namespace: &str,
) -> Result<Vec<String>, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let records = secrets
        .list_metadata(&ListParams::default().labels(&format!("owner=helm,name={HELM_RELEASE}")))
        .await
        .map_err(|e| ReconcileError::kube("listing Helm release records", e))?;
    let mut forgotten = Vec::new();
    for record in records.items {
        let name = record.name_any();
        match secrets.delete(&name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(ReconcileError::kube(
                    format!("deleting Helm release record {namespace}/{name}"),
                    e,
                ));
            }
        }
        forgotten.push(name);
    }
    Ok(forgotten)
}

/// The leader's webhook loop's part of `HandOverInjector`, given Keelson's
/// own injector registration `ours`: Linkerd's registration is pointed at
/// Keelson's injector (one write of its webhooks, only over the object as
/// read), then `ours` applied, then Linkerd's deleted. In between, both
/// registrations call Keelson, which leaves a pod it already injected as
/// it is. Each step is judged from what is there, so a crash anywhere
/// resumes cleanly.
pub async fn hand_over_injector(
    client: &Client,
    applier: &Applier,
    ours: &Value,
) -> Result<(), ApplyError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let err = ApplyError::api("MutatingWebhookConfiguration", LINKERD_INJECTOR_WEBHOOK);
    if let Some(linkerds) = api.get_opt(LINKERD_INJECTOR_WEBHOOK).await.map_err(err)? {
        let wanted = &ours["webhooks"];
        let current = serde_json::to_value(&linkerds.webhooks).unwrap_or_default();
        if !crate::apply::contains(&current, wanted) {
            let patch: json_patch::Patch = serde_json::from_value(json!([
                {"op": "test", "path": "/metadata/resourceVersion",
                 "value": linkerds.resource_version()},
                {"op": "replace", "path": "/webhooks", "value": wanted},
            ]))
            .expect("a JSON patch");
            api.patch(
                LINKERD_INJECTOR_WEBHOOK,
                &Default::default(),
                &kube::api::Patch::Json::<()>(patch),
            )
            .await
            .map_err(err)?;
            tracing::info!("pointed Linkerd's injector registration at Keelson's injector");
        }
    }
    applier.apply(ours).await?;
    match api
        .delete(LINKERD_INJECTOR_WEBHOOK, &Default::default())
        .await
    {
        Ok(_) => tracing::info!("removed Linkerd's injector registration"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(err(e)),
    }
    Ok(())
}

/// The next step's state after `phase` is done.
pub fn advanced(adoption: &AdoptionStatus, phase: AdoptionPhase) -> AdoptionStatus {
    AdoptionStatus {
        phase,
        waiting_for: None,
        ..adoption.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn control_plane(spec: Value) -> ControlPlane {
        let mut spec_json =
            json!({"version": "edge-25.4.4", "namespace": "linkerd", "adoption": {}});
        if let (Some(s), Some(extra)) = (spec_json.as_object_mut(), spec.as_object()) {
            s.extend(extra.clone());
        }
        serde_json::from_value(json!({
            "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
            "metadata": {"name": "linkerd"}, "spec": spec_json,
        }))
        .expect("a ControlPlane")
    }

    struct Mesh {
        bundle: String,
        issuer: Secret,
    }

    fn mesh(kubernetes_tls: bool) -> Mesh {
        let now = SystemTime::now();
        let anchor = identity::trust_anchor("cluster.local", Duration::from_secs(86400), now)
            .expect("an anchor");
        let issuer = identity::issuer(
            &anchor,
            "linkerd",
            "cluster.local",
            Duration::from_secs(3600),
            now,
        )
        .expect("an issuer");
        let data: Vec<(&str, &str)> = if kubernetes_tls {
            vec![
                ("tls.crt", &issuer.cert_pem),
                ("tls.key", &issuer.key_pem),
                ("ca.crt", &anchor.cert_pem),
            ]
        } else {
            vec![("crt.pem", &issuer.cert_pem), ("key.pem", &issuer.key_pem)]
        };
        let secret = Secret {
            data: Some(
                data.into_iter()
                    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        // As a user writes it from a file: with its final newline.
        let bundle = format!("{}\n", anchor.cert_pem.trim());
        Mesh {
            bundle,
            issuer: secret,
        }
    }

    fn values_of(bundle: &str) -> String {
        yaml_serde::to_string(&json!({
            "identityTrustAnchorsPEM": bundle, "identityTrustDomain": "cluster.local",
        }))
        .expect("YAML")
    }

    #[test]
    fn the_bundle_is_kept_as_linkerd_config_holds_it() {
        let m = mesh(false);
        let values = values_of(&m.bundle);
        let found = Found {
            version: Some("edge-25.4.4"),
            values: Some(&values),
            trust_roots: Some(m.bundle.trim()),
            issuer: Some(&m.issuer),
        };
        let (version, bundle) = judge(&control_plane(json!({})), &found).expect("adoptable");
        assert_eq!(version, "edge-25.4.4");
        // The text Linkerd's injector hashed, final newline included.
        assert_eq!(bundle, m.bundle);
        assert_ne!(trust_root_sha256(&bundle), trust_root_sha256(bundle.trim()));
    }

    #[test]
    fn what_cannot_be_adopted_as_asked_names_the_field() {
        let m = mesh(false);
        let values = values_of(&m.bundle);
        let found = |version, issuer| Found {
            version,
            values: Some(&values),
            trust_roots: Some(m.bundle.trim()),
            issuer,
        };
        let refused = |cp: &ControlPlane, f: &Found<'_>| judge(cp, f).expect_err("refused");
        let cp = control_plane(json!({}));
        assert!(refused(&cp, &found(Some("edge-20.1.1"), Some(&m.issuer))).contains("edge-20.1.1"));
        assert!(refused(&cp, &found(None, Some(&m.issuer))).starts_with("spec.adoption:"));
        assert!(refused(&cp, &found(Some("edge-25.4.4"), None)).starts_with("spec.adoption:"));
        let other_domain = control_plane(json!({"identity": {"trustDomain": "example.org"}}));
        assert!(
            refused(&other_domain, &found(Some("edge-25.4.4"), Some(&m.issuer)))
                .starts_with("spec.identity.trustDomain:")
        );
        let external = control_plane(json!({"identity": {"issuer": "External"}}));
        assert!(
            refused(&external, &found(Some("edge-25.4.4"), Some(&m.issuer)))
                .starts_with("spec.identity.issuer:")
        );
        let cert_manager = mesh(true);
        let cm_values = values_of(&cert_manager.bundle);
        let cm_found = Found {
            version: Some("edge-25.4.4"),
            values: Some(&cm_values),
            trust_roots: Some(&cert_manager.bundle),
            issuer: Some(&cert_manager.issuer),
        };
        assert!(refused(&cp, &cm_found).starts_with("spec.identity.issuer: is Managed"));
        assert!(judge(&external, &cm_found).is_ok());
        // An issuer from another anchor than the bundle's.
        let stranger = Found {
            issuer: Some(&cert_manager.issuer),
            ..found(Some("edge-25.4.4"), None)
        };
        assert!(refused(&external, &stranger).contains("does not chain"));
    }

    #[test]
    fn linkerds_injector_objects_are_named_as_its_chart_names_them() {
        let names: Vec<String> = linkerd_injector_objects("mesh")
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert!(names.contains(&"Secret/linkerd-proxy-injector-k8s-tls".to_owned()));
        assert!(names.contains(&"ClusterRole/linkerd-mesh-proxy-injector".to_owned()));
        assert!(
            linkerd_injector_objects("mesh")
                .iter()
                .filter(|o| o["kind"].as_str().unwrap().starts_with("Cluster"))
                .all(|o| o["metadata"].get("namespace").is_none())
        );
    }
}
