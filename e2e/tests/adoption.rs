//! A Linkerd that is already running, installed with Linkerd's Helm chart
//! or its CLI, in the namespace a ControlPlane names: without
//! `spec.adoption` Keelson reports what it found and writes nothing there;
//! with it, Keelson takes it over without a moment where a pod's
//! certificate does not chain to the published bundle or where no injector
//! (or two) is registered, though killed at every step, restarts no pod,
//! and then upgrades it and rotates away from its keyless anchor.

mod common;

use anyhow::{Context, ensure};
use common::{WAIT, wait_until};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use keelson_crds::ControlPlane;
use keelson_crds::DataPlane;
use keelson_crds::controlplane::AdoptionPhase;
use keelson_e2e::shared::env;
use keelson_operator::admission::configurations::INJECTOR;
use keelson_operator::controlplane::adoption::LINKERD_INJECTOR_WEBHOOK;
use keelson_operator::identity;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How the running Linkerd was installed.
#[derive(Clone, Copy, PartialEq)]
enum Installed {
    /// `helm install`: field manager `helm`, release records.
    Helm,
    /// `linkerd install | kubectl apply`: kubectl's client-side apply, no
    /// release records.
    Cli,
}

impl Installed {
    fn manager(self) -> &'static str {
        match self {
            Installed::Helm => "helm",
            Installed::Cli => "kubectl-client-side-apply",
        }
    }
}

/// Creates `object` in `ns` under field manager `manager`.
async fn created_by<K>(
    manager: &str,
    client: &Client,
    ns: &str,
    object: serde_json::Value,
) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let params = PostParams {
        field_manager: Some(manager.into()),
        ..Default::default()
    };
    Api::<K>::namespaced(client.clone(), ns)
        .create(&params, &serde_json::from_value(object)?)
        .await?;
    Ok(())
}

/// Every object's resourceVersion in `ns`, by `Kind/name`.
async fn versions(client: &Client, ns: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let lp = ListParams::default();
    let mut out = BTreeMap::new();
    for o in Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list_metadata(&lp)
        .await?
        .items
    {
        out.insert(
            format!("ConfigMap/{}", o.name_any()),
            o.resource_version().unwrap_or_default(),
        );
    }
    for o in Api::<Secret>::namespaced(client.clone(), ns)
        .list_metadata(&lp)
        .await?
        .items
    {
        out.insert(
            format!("Secret/{}", o.name_any()),
            o.resource_version().unwrap_or_default(),
        );
    }
    // A Deployment's status moves with its pods: the generation of its
    // spec says whether anyone wrote to it.
    for o in Api::<Deployment>::namespaced(client.clone(), ns)
        .list_metadata(&lp)
        .await?
        .items
    {
        let generation = o.metadata.generation.unwrap_or_default().to_string();
        out.insert(format!("Deployment/{}", o.name_any()), generation);
    }
    let namespace = Api::<Namespace>::all(client.clone()).get(ns).await?;
    out.insert(
        format!("Namespace/{ns}"),
        namespace.resource_version().unwrap_or_default(),
    );
    Ok(out)
}

#[tokio::test]
async fn a_running_linkerd_installed_with_helm_is_reported_and_left_untouched() {
    left_untouched(Installed::Helm, "helm").await;
}

#[tokio::test]
async fn a_running_linkerd_installed_with_the_cli_is_reported_and_left_untouched() {
    left_untouched(Installed::Cli, "cli").await;
}

async fn left_untouched(installed: Installed, prefix: &str) {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace(prefix, |client, ns| async move {
            let manager = installed.manager();
            keelson_e2e::shared::install_keelson_crds(&client).await?;
            // Handed over to Keelson, as its install manifests do for
            // namespace `linkerd`.
            common::hand_over(&client, &ns, &ns).await?;
            let now = SystemTime::now();
            let anchor = identity::trust_anchor("cluster.local", Duration::from_secs(86400), now)?;
            let issuer = identity::issuer(&anchor, &ns, "cluster.local", Duration::from_secs(3600), now)?;
            let chart = match installed {
                Installed::Helm => json!({"app.kubernetes.io/managed-by": "Helm", "linkerd.io/control-plane-ns": ns}),
                Installed::Cli => json!({"linkerd.io/control-plane-ns": ns}),
            };
            created_by::<ConfigMap>(manager, &client, &ns, json!({
                "metadata": {"name": "linkerd-identity-trust-roots", "labels": chart},
                "data": {"ca-bundle.crt": anchor.cert_pem},
            })).await?;
            created_by::<ConfigMap>(manager, &client, &ns, json!({
                "metadata": {"name": "linkerd-config", "labels": chart},
                "data": {"values": "linkerdVersion: edge-25.4.4\nidentityTrustDomain: cluster.local\n"},
            })).await?;
            created_by::<Secret>(manager, &client, &ns, json!({
                "metadata": {"name": "linkerd-identity-issuer", "labels": chart},
                "type": "linkerd.io/tls",
                "stringData": {"crt.pem": issuer.cert_pem, "key.pem": issuer.key_pem},
            })).await?;
            created_by::<Deployment>(manager, &client, &ns, json!({
                "metadata": {"name": "linkerd-identity", "labels": chart},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "identity"}},
                    "template": {"metadata": {"labels": {"app": "identity"}},
                        "spec": {"containers": [{"name": "identity",
                            "image": "cr.l5d.io/linkerd/controller:edge-25.4.4"}]}}},
            })).await?;
            if installed == Installed::Helm {
                created_by::<Secret>(manager, &client, &ns, json!({
                    "metadata": {"name": "sh.helm.release.v1.linkerd-control-plane.v1",
                        "labels": {"owner": "helm", "name": "linkerd-control-plane", "status": "deployed", "version": "1"}},
                    "type": "helm.sh/release.v1",
                    "stringData": {"release": "not read"},
                })).await?;
            }
            // Linkerd's injector registration (never called here: it
            // selects no namespace).
            let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
            let theirs = LINKERD_INJECTOR_WEBHOOK.to_owned();
            let registration: MutatingWebhookConfiguration = serde_json::from_value(json!({
                "metadata": {"name": theirs},
                "webhooks": [{"name": "linkerd-proxy-injector.linkerd.io",
                    "clientConfig": {"url": "https://127.0.0.1:1/"},
                    "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                    "namespaceSelector": {"matchLabels": {"selects": "nothing"}},
                    "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore"}],
            }))?;
            let registered = mutating
                .create(&PostParams { field_manager: Some("helm".into()), ..Default::default() }, &registration)
                .await?
                .resource_version();
            let before = versions(&client, &ns).await?;

            let operator = common::Operator::start(client.clone());
            operator.webhooks_registered(&client).await?;
            let cps: Api<ControlPlane> = Api::all(client.clone());
            cps.create(
                &PostParams::default(),
                &common::control_plane(&ns, &ns, "edge-25.4.4", json!({})),
            )
            .await?;
            let found = wait_until("the running Linkerd to be reported", WAIT, || async {
                let cp = cps.get(&ns).await?;
                anyhow::Ok(cp.status.and_then(|s| s.existing_installation))
            })
            .await?;
            ensure!(found.version.as_deref() == Some("edge-25.4.4"), "{found:?}");
            for object in ["ConfigMap/linkerd-config", "ConfigMap/linkerd-identity-trust-roots", "Deployment/linkerd-identity", "Secret/linkerd-identity-issuer"] {
                ensure!(found.objects.iter().any(|o| o == object), "{object} not reported: {found:?}");
            }
            let releases: &[&str] = match installed {
                Installed::Helm => &["linkerd-control-plane"],
                Installed::Cli => &[],
            };
            ensure!(found.helm_releases == releases, "{found:?}");
            ensure!(found.managers.iter().any(|m| m == manager), "{found:?}");
            let sha = identity::fingerprint(&anchor.cert_pem, "anchor")?;
            ensure!(
                found.trust_anchors.iter().any(|a| a.sha256 == sha),
                "the user's anchor is not reported: {found:?}"
            );
            let cp = cps.get(&ns).await?;
            let ready = cp
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .context("no Ready condition")?;
            ensure!(
                ready.status == "False"
                    && ready.reason == "ExistingInstallation"
                    && ready.message.starts_with("spec.adoption: "),
                "{ready:?}"
            );
            let events = common::control_plane_events(&client, &ns).await?;
            ensure!(
                events.iter().any(|(r, _)| r == "ExistingInstallation"),
                "no ExistingInstallation Event: {events:?}"
            );
            // No second injector beside Linkerd's, whose registration is
            // untouched.
            ensure!(
                mutating
                    .get_opt(INJECTOR)
                    .await?
                    .and_then(|m| m.webhooks)
                    .is_none_or(|w| w.is_empty()),
                "Keelson registered its injector beside Linkerd's"
            );
            ensure!(
                mutating.get(&theirs).await?.resource_version() == registered,
                "Linkerd's injector registration was written to"
            );
            // Nothing in the namespace was written, nothing was added.
            ensure!(
                versions(&client, &ns).await? == before,
                "Keelson wrote into the running installation's namespace"
            );
            common::delete_control_plane(&cps, &ns).await?;
            ensure!(
                versions(&client, &ns).await? == before,
                "deleting the ControlPlane touched the running installation"
            );
            mutating.delete(&theirs, &Default::default()).await?;
            operator.stop().await
        })
        .await;
}

// Adoption -------------------------------------------------------------------

const ADOPTED: &str = "edge-25.4.4";
const NEXT_STABLE: &str = "edge-25.10.7";
const LONG_WAIT: Duration = Duration::from_secs(600);
const TRUST_ROOT_SHA256: &str = "linkerd.io/trust-root-sha256";
/// The Gateway API bundle someone else installed before Linkerd.
const OTHER_GATEWAY_BUNDLE: &str = "v1.2.1";

/// A running Linkerd, as its chart (or CLI) leaves it.
struct Mesh {
    /// `identityTrustAnchorsPEM` as the user gave it (from a file: with
    /// its final newline), which Linkerd's injector hashed.
    bundle: String,
    /// A CRD Linkerd's chart installed and a Gateway API CRD another
    /// install left, which Keelson must leave exactly as they are.
    crds: Vec<String>,
}

/// The object in the form `installed` leaves it: created by its field
/// manager with Helm's ownership marks, or with kubectl's last-applied
/// annotation.
async fn create_as(
    client: &Client,
    installed: Installed,
    release_ns: &str,
    mut object: serde_json::Value,
) -> anyhow::Result<()> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
    let meta = &mut object["metadata"];
    if let Some(labels) = meta["labels"].as_object_mut() {
        labels.remove(keelson_operator::render::CONTROL_PLANE_LABEL);
    }
    if let Some(annotations) = meta["annotations"].as_object_mut() {
        annotations.retain(|k, _| !k.starts_with("keelson.dev/"));
    }
    match installed {
        Installed::Helm => {
            meta["labels"]["app.kubernetes.io/managed-by"] = "Helm".into();
            meta["annotations"]["meta.helm.sh/release-name"] = "linkerd-control-plane".into();
            meta["annotations"]["meta.helm.sh/release-namespace"] = release_ns.into();
        }
        Installed::Cli => {
            let applied = object.to_string();
            object["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
                applied.into();
        }
    }
    let keelson_operator::render::Resource { group, plural, .. } =
        keelson_operator::render::resource_of(&kind)
            .with_context(|| format!("no resource for {kind}"))?;
    let version = api_version.rsplit('/').next().unwrap_or_default();
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, &kind), plural);
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let params = PostParams {
        field_manager: Some(installed.manager().into()),
        ..Default::default()
    };
    let object: DynamicObject = serde_json::from_value(object)?;
    match api.create(&params, &object).await {
        Ok(_) => {}
        // A cluster-wide object an earlier test's control plane left (its
        // uninstall empties Linkerd's webhook registrations, the install's
        // shells): replaced by the chart's.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let name = object.name_any();
            api.delete(&name, &Default::default()).await?;
            api.create(&params, &object)
                .await
                .with_context(|| format!("creating {kind} {name}"))?;
        }
        Err(e) => return Err(e).with_context(|| format!("creating {kind}")),
    }
    Ok(())
}

/// Installs Linkerd `ADOPTED` in `ns` the way its chart (or CLI) does, with
/// the user's own anchor and an issuer of `issuer_lifetime` in
/// `linkerd.io/tls` form, Linkerd's injector and its registration, the Helm
/// release records, and one of Linkerd's CRDs as its chart left it. The
/// control plane's objects are Keelson's render of the same release
/// (compared with the chart by `e2e/hack/render-parity.sh` and the golden files),
/// stripped of Keelson's marks.
async fn linkerd_installed(
    client: &Client,
    ns: &str,
    installed: Installed,
    issuer_lifetime: Duration,
    cert_manager: bool,
) -> anyhow::Result<Mesh> {
    use keelson_operator::render::{self, IdentityMaterial, Stage, WebhookTls};
    let now = SystemTime::now();
    let anchor = identity::trust_anchor("cluster.local", Duration::from_secs(86400), now)?;
    let issuer = identity::issuer(&anchor, ns, "cluster.local", issuer_lifetime, now)?;
    let bundle = format!("{}\n", anchor.cert_pem.trim());
    let release = keelson_operator::catalog::find(ADOPTED)?;
    let extra = if cert_manager {
        json!({"identity": {"issuer": "External"}})
    } else {
        json!({})
    };
    let spec = common::control_plane(ns, ns, ADOPTED, extra).spec;
    let year = Duration::from_secs(365 * 86400);
    let webhooks = WebhookTls {
        sp_validator: identity::webhook_serving("linkerd-sp-validator", ns, year, now)?,
        policy_validator: identity::webhook_serving("linkerd-policy-validator", ns, year, now)?,
    };
    if cert_manager {
        // Written by cert-manager from a Certificate, as Linkerd's docs
        // set it up (`identity.issuer.scheme: kubernetes.io/tls`).
        created_by::<Secret>("cert-manager-certificates-issuing", client, ns, json!({
            "metadata": {"name": "linkerd-identity-issuer"},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": issuer.cert_pem, "tls.key": issuer.key_pem, "ca.crt": anchor.cert_pem},
        }))
        .await?;
    }
    let material = IdentityMaterial {
        trust_anchors_pem: bundle.clone(),
        issuer: (!cert_manager).then_some(issuer),
    };
    let objects = render::render(&render::Context {
        name: ns,
        spec: &spec,
        release,
        kubernetes: keelson_operator::catalog::KubeVersion::try_from("1.20".to_owned())
            .map_err(anyhow::Error::msg)?,
        identity: &material,
        webhooks: &webhooks,
    });
    let mut crds = Vec::new();
    let mut gateway = None;
    for r in objects {
        let kind = r.object["kind"].as_str().unwrap_or_default();
        if kind == "Namespace" {
            continue;
        }
        if r.stage == Stage::Crds {
            // One of Linkerd's CRDs as its chart left it, and one of the
            // Gateway API's as another install of a newer bundle left it;
            // the others were made by earlier tests' ControlPlanes and are
            // Keelson's.
            let linkerds = r.object["spec"]["group"] != "gateway.networking.k8s.io";
            if (linkerds && crds.is_empty()) || (!linkerds && gateway.is_none()) {
                let name = r.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
                    Api::all(client.clone());
                let mut unmarked = json!({"metadata": {"labels": {
                    keelson_operator::render::CONTROL_PLANE_LABEL: null}}});
                if linkerds {
                    unmarked["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "Helm".into();
                } else {
                    unmarked["metadata"]["annotations"] = json!({
                        keelson_operator::apply::GATEWAY_BUNDLE_VERSION: OTHER_GATEWAY_BUNDLE});
                }
                if api.get_opt(&name).await?.is_none() {
                    create_as(client, installed, ns, r.object.clone()).await?;
                }
                api.patch(
                    &name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(unmarked),
                )
                .await?;
                if linkerds {
                    crds.push(name);
                } else {
                    gateway = Some(name);
                }
            }
            continue;
        }
        create_as(client, installed, ns, r.object).await?;
    }
    // Linkerd's injector, which Keelson's replaces. Its registration calls
    // nothing here (it selects no namespace).
    let rbac = format!("linkerd-{ns}-proxy-injector");
    let labels = json!({"linkerd.io/control-plane-component": "proxy-injector", "linkerd.io/control-plane-ns": ns});
    for object in [
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "linkerd-proxy-injector", "namespace": ns, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "proxy-injector", "image": release.images.controller}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "linkerd-proxy-injector", "namespace": ns, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "proxy-injector", "port": 443, "targetPort": 8443}]}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "linkerd-proxy-injector", "namespace": ns, "labels": labels}}),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "linkerd-proxy-injector-k8s-tls", "namespace": ns, "labels": labels},
            "stringData": {"tls.crt": webhooks.sp_validator.cert_pem, "tls.key": webhooks.sp_validator.key_pem}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": rbac, "labels": labels},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": rbac, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": rbac},
            "subjects": [{"kind": "ServiceAccount", "name": "linkerd-proxy-injector", "namespace": ns}]}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": LINKERD_INJECTOR_WEBHOOK, "labels": labels},
            "webhooks": [{"name": "linkerd-proxy-injector.linkerd.io",
                "clientConfig": {"service": {"name": "linkerd-proxy-injector", "namespace": ns, "path": "/"},
                    "caBundle": k8s_openapi::ByteString(webhooks.sp_validator.cert_pem.clone().into_bytes())},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "namespaceSelector": {"matchLabels": {"selects": "nothing"}},
                "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore"}]}),
    ] {
        create_as(client, installed, ns, object).await?;
    }
    if installed == Installed::Helm {
        for (release_name, version) in [
            ("linkerd-control-plane", "1"),
            ("linkerd-control-plane", "2"),
            ("linkerd-crds", "1"),
        ] {
            created_by::<Secret>("helm", client, ns, json!({
                "metadata": {"name": format!("sh.helm.release.v1.{release_name}.v{version}"),
                    "labels": {"owner": "helm", "name": release_name, "status": "deployed", "version": version}},
                "type": "helm.sh/release.v1",
                "stringData": {"release": "not read"},
            }))
            .await?;
        }
    }
    Ok(Mesh {
        bundle,
        crds: crds.into_iter().chain(gateway).collect(),
    })
}

/// A Deployment of pods Linkerd's injector meshed: the proxy, the labels
/// and the annotations it adds, with the digest of the bundle as it hashed
/// it. (Its template carries them, as `linkerd inject --manual` leaves it.)
fn meshed_by_linkerd(name: &str, cp_ns: &str, bundle: &str) -> anyhow::Result<Deployment> {
    let release = keelson_operator::catalog::find(ADOPTED)?;
    let proxy_version = release
        .images
        .proxy
        .rsplit_once(':')
        .map(|(_, t)| t)
        .unwrap_or_default();
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name, "linkerd.io/control-plane-ns": cp_ns,
                        "linkerd.io/workload-ns": "apps", "linkerd.io/proxy-deployment": name},
                    "annotations": {"linkerd.io/inject": "enabled",
                        "linkerd.io/created-by": format!("linkerd/proxy-injector {ADOPTED}"),
                        "linkerd.io/proxy-version": proxy_version,
                        TRUST_ROOT_SHA256: common::sha256_hex(bundle.as_bytes())}},
                "spec": {"containers": [
                    {"name": "linkerd-proxy", "image": release.images.proxy},
                    {"name": "app", "image": "example.com/app:1"}]}}},
    }))?)
}

/// The backend of each registered injector (`namespace/service` or URL),
/// by the registration naming it.
async fn injectors(client: &Client) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for m in Api::<MutatingWebhookConfiguration>::all(client.clone())
        .list(&ListParams::default())
        .await?
    {
        for w in m.webhooks.iter().flatten() {
            let pods = w
                .rules
                .iter()
                .flatten()
                .any(|r| r.resources.iter().flatten().any(|x| x == "pods"));
            if !pods {
                continue;
            }
            let backend = match (&w.client_config.service, &w.client_config.url) {
                (Some(s), _) => format!("{}/{}", s.namespace, s.name),
                (None, Some(url)) => url.clone(),
                _ => "?".into(),
            };
            out.push((m.name_any(), backend));
        }
    }
    Ok(out)
}

/// Polls the published bundle, the issuer, the meshed pods and the injector
/// registrations, and records every moment that breaks the mesh: a bundle
/// lacking the anchor a running pod's certificate chains to, an issuer a
/// running pod cannot verify, no injector registered, or two.
#[derive(Clone, Default)]
struct Monitor {
    /// Every bundle seen, by the digest pods carry: its certificates.
    bundles: Arc<Mutex<BTreeMap<String, Vec<Vec<u8>>>>>,
    violations: Arc<Mutex<Vec<String>>>,
    /// Each distinct set of injector backends seen.
    injectors: Arc<Mutex<BTreeSet<Vec<String>>>>,
    polls: Arc<Mutex<usize>>,
}

impl Monitor {
    fn start(
        client: Client,
        cp_ns: String,
        app_ns: String,
        bundle: &str,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<()>)> {
        let this = Self::default();
        // The bundle Linkerd's pods were started with.
        this.bundles.lock().unwrap().insert(
            common::sha256_hex(bundle.as_bytes()),
            common::der_certificates(bundle)?,
        );
        let me = this.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = me.check(&client, &cp_ns, &app_ns).await {
                    tracing::debug!(error = %e, "monitor poll failed");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok((this, task))
    }

    async fn check(&self, client: &Client, cp_ns: &str, app_ns: &str) -> anyhow::Result<()> {
        let mut backends: Vec<String> = injectors(client)
            .await?
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        backends.sort();
        backends.dedup();
        let roots = Api::<ConfigMap>::namespaced(client.clone(), cp_ns)
            .get("linkerd-identity-trust-roots")
            .await?;
        let text = roots
            .data
            .as_ref()
            .and_then(|d| d.get("ca-bundle.crt"))
            .cloned()
            .context("no bundle")?;
        let digest = roots
            .annotations()
            .get(keelson_operator::render::TRUST_ROOTS_SHA256)
            .cloned()
            .unwrap_or_else(|| common::sha256_hex(text.as_bytes()));
        let published = common::der_certificates(&text)?;
        let issuer = Api::<Secret>::namespaced(client.clone(), cp_ns)
            .get("linkerd-identity-issuer")
            .await?;
        let issuer = common::secret_text(&issuer, "crt.pem")
            .or_else(|_| common::secret_text(&issuer, "tls.crt"))?;
        let issuer = common::der_certificates(&issuer)?
            .into_iter()
            .next()
            .context("no issuer")?;
        self.bundles
            .lock()
            .unwrap()
            .insert(digest, published.clone());
        let mut pods = Vec::new();
        for ns in [cp_ns, app_ns] {
            pods.extend(
                Api::<Pod>::namespaced(client.clone(), ns)
                    .list(&ListParams::default())
                    .await?,
            );
        }
        let bundles = self.bundles.lock().unwrap().clone();
        let mut violations = self.violations.lock().unwrap();
        if backends.len() != 1 {
            violations.push(format!(
                "{} injectors registered: {backends:?}",
                backends.len()
            ));
        }
        self.injectors.lock().unwrap().insert(backends);
        if !published
            .iter()
            .any(|anchor| common::signs(anchor, &issuer))
        {
            violations.push("an issuer the published bundle does not verify".into());
        }
        for pod in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let Some(carried) = pod.annotations().get(TRUST_ROOT_SHA256) else {
                continue;
            };
            let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
            let Some(carried) = bundles.get(carried) else {
                violations.push(format!(
                    "{name} carries a bundle never published: {carried}"
                ));
                continue;
            };
            if !carried.iter().any(|a| published.contains(a)) {
                violations.push(format!(
                    "a bundle was published that {name} shares no anchor with"
                ));
            }
            if !carried.iter().any(|anchor| common::signs(anchor, &issuer)) {
                violations.push(format!("an issuer {name} cannot verify"));
            }
        }
        *self.polls.lock().unwrap() += 1;
        Ok(())
    }
}

#[tokio::test]
async fn a_running_linkerd_installed_with_helm_is_adopted_upgraded_and_rotated() {
    adopted(Installed::Helm, "adopt-helm", false).await;
}

#[tokio::test]
async fn a_running_linkerd_with_an_issuer_from_cert_manager_is_adopted_as_external() {
    adopted(Installed::Helm, "adopt-cm", true).await;
}

#[tokio::test]
async fn a_running_linkerd_installed_with_the_cli_is_adopted_and_its_issuer_renewed_by_a_rotation()
{
    adopted(Installed::Cli, "adopt-cli", false).await;
}

/// The phase of the takeover under way, `None` before it starts.
async fn adoption_phase(
    cps: &Api<ControlPlane>,
    name: &str,
) -> anyhow::Result<Option<AdoptionPhase>> {
    Ok(cps
        .get(name)
        .await?
        .status
        .and_then(|s| s.adoption)
        .map(|a| a.phase))
}

/// Adopts a mesh installed as `installed` (with an issuer cert-manager
/// writes, when `cert_manager`), then upgrades it and rotates away from its
/// anchor; a cert-manager issuer stays External, and Keelson writes it never.
async fn adopted(installed: Installed, prefix: &str, cert_manager: bool) {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace(prefix, |client, ns| async move {
            keelson_e2e::shared::install_keelson_crds(&client).await?;
            common::hand_over(&client, &ns, &ns).await?;
            // The CLI-style mesh's issuer falls due (half its five minutes)
            // after the takeover: Keelson has no key to renew it with, so
            // it must rotate to an anchor of its own in time.
            let issuer_lifetime = match installed {
                Installed::Helm => Duration::from_secs(86400),
                Installed::Cli => Duration::from_secs(300),
            };
            let mesh = linkerd_installed(&client, &ns, installed, issuer_lifetime, cert_manager).await?;
            let issuer_version = Api::<Secret>::namespaced(client.clone(), &ns)
                .get("linkerd-identity-issuer")
                .await?
                .resource_version();
            let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
                Api::all(client.clone());
            let mut crd_versions = Vec::new();
            for name in &mesh.crds {
                crd_versions.push(crds.get(name).await?.resource_version());
            }

            let apps = format!("{ns}-apps");
            let outcome = common::with_dumps(&client, std::slice::from_ref(&apps), async {
                let namespaces: Api<Namespace> = Api::all(client.clone());
                namespaces
                    .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": apps}}))?)
                    .await?;
                let deployments: Api<Deployment> = Api::namespaced(client.clone(), &apps);
                deployments
                    .create(&PostParams::default(), &meshed_by_linkerd("legacy", &ns, &mesh.bundle)?)
                    .await?;
                let pods: Api<Pod> = Api::namespaced(client.clone(), &apps);
                let running = || async {
                    let mut uids: Vec<String> = pods
                        .list(&ListParams::default().labels("app=legacy"))
                        .await?
                        .items
                        .into_iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .filter_map(|p| p.metadata.uid)
                        .collect();
                    uids.sort();
                    anyhow::Ok(uids)
                };
                let before = wait_until("Linkerd's meshed pods", WAIT, || async {
                    let uids = running().await?;
                    anyhow::Ok((uids.len() == 2).then_some(uids))
                })
                .await?;

                let (monitor, watch) = Monitor::start(client.clone(), ns.clone(), apps.clone(), &mesh.bundle)?;
                // The operator runs as its install's ServiceAccount: a takeover
                // needs no right the install does not grant.
                let grant = keelson_operator::install::ControlPlaneGrant { name: &ns, namespace: &ns };
                let as_operator = common::install_rbac_with(&client, &[grant], &[apps.as_str()]).await?;
                let start = || common::Operator::start_scoped(as_operator.clone(), Default::default(), &[ns.as_str()]);
                let mut operator = Some(start());
                operator.as_ref().unwrap().webhooks_registered(&client).await?;
                let cps: Api<ControlPlane> = Api::all(client.clone());
                let extra = match (installed, cert_manager) {
                    (_, true) => json!({"adoption": {}, "identity": {"issuer": "External"}}),
                    (Installed::Helm, false) => json!({"adoption": {}}),
                    (Installed::Cli, false) => json!({"adoption": {}, "identity": {"rotation": {"renewAtPercent": 50}}}),
                };
                cps.create(&PostParams::default(), &common::control_plane(&ns, &ns, ADOPTED, extra))
                    .await?;

                // Killed as soon as each step is recorded: the next operator
                // resumes it from status and what it observes.
                let mut seen = BTreeSet::new();
                loop {
                    let phase = wait_until("the next step of the takeover", LONG_WAIT, || async {
                        let phase = adoption_phase(&cps, &ns).await?;
                        anyhow::Ok(phase.filter(|p| !seen.contains(p)))
                    })
                    .await?;
                    seen.insert(phase);
                    if phase == AdoptionPhase::Adopted {
                        break;
                    }
                    tracing::info!(?phase, "killing the operator during the takeover");
                    if let Some(killed) = operator.take() {
                        killed.kill().await;
                    }
                    operator = Some(start());
                }
                ensure!(
                    seen.contains(&AdoptionPhase::TakeOwnership) && seen.len() >= 3,
                    "the steps seen: {seen:?}"
                );
                let cp = common::wait_converged(&cps, &ns, ADOPTED).await?;

                // Identity: the user's bundle and issuer, as they were.
                let status = cp.status.clone().context("no status")?;
                let digest = common::sha256_hex(mesh.bundle.as_bytes());
                let adoption = status.adoption.clone().context("no adoption status")?;
                ensure!(adoption.version == ADOPTED && adoption.trust_root_sha256 == digest, "{adoption:?}");
                // The CRDs someone else installed: untouched, reported, the
                // other Gateway API bundle with a Warning.
                ensure!(mesh.crds.len() == 2, "{:?}", mesh.crds);
                for (name, version) in mesh.crds.iter().zip(&crd_versions) {
                    ensure!(&crds.get(name).await?.resource_version() == version, "CRD {name} was written");
                    ensure!(status.foreign_crds.iter().any(|c| &c.name == name), "{:?}", status.foreign_crds);
                }
                ensure!(
                    status.foreign_crds.iter().any(|c| c.bundle_version.as_deref() == Some(OTHER_GATEWAY_BUNDLE)),
                    "{:?}", status.foreign_crds
                );
                let warned = common::control_plane_events(&client, &ns)
                    .await?
                    .into_iter()
                    .any(|(reason, note)| reason == "ForeignCRDs" && note.contains(OTHER_GATEWAY_BUNDLE));
                ensure!(warned, "no ForeignCRDs event naming Gateway API {OTHER_GATEWAY_BUNDLE}");
                // Handed over by a label, they are Keelson's to apply.
                for name in &mesh.crds {
                    let label = json!({"metadata": {"labels": {keelson_operator::render::CONTROL_PLANE_LABEL: ns}}});
                    crds.patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(label)).await?;
                }
                let poke = json!({"metadata": {"annotations": {"e2e.keelson.dev/poke": "crds-handed-over"}}});
                cps.patch(&ns, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(poke)).await?;
                let wanted_bundle = &keelson_operator::catalog::find(ADOPTED)?.gateway_api.bundle_version;
                wait_until("the handed-over CRDs to be Keelson's", WAIT, || async {
                    let status = cps.get(&ns).await?.status.unwrap_or_default();
                    let gateway = crds.get(&mesh.crds[1]).await?;
                    let bundle = gateway.annotations().get(keelson_operator::apply::GATEWAY_BUNDLE_VERSION).cloned();
                    anyhow::Ok((status.foreign_crds.is_empty() && bundle.as_ref() == Some(wanted_bundle)).then_some(()))
                })
                .await?;
                let identity_status = status.identity.clone().context("no identity status")?;
                ensure!(identity_status.trust_root_sha256.as_deref() == Some(digest.as_str()), "{identity_status:?}");
                ensure!(common::trust_bundle(&client, &ns).await? == mesh.bundle.trim());
                ensure!(status.existing_installation.is_none(), "{status:?}");

                // Objects: Keelson's alone, with nothing of Helm's or kubectl's left.
                for (kind, name) in [("ConfigMap", "linkerd-config"), ("Deployment", "linkerd-identity")] {
                    let meta = match kind {
                        "ConfigMap" => Api::<ConfigMap>::namespaced(client.clone(), &ns).get(name).await?.metadata,
                        _ => Api::<Deployment>::namespaced(client.clone(), &ns).get(name).await?.metadata,
                    };
                    let managers: Vec<String> = meta.managed_fields.iter().flatten().filter_map(|m| m.manager.clone()).collect();
                    ensure!(!managers.iter().any(|m| m == installed.manager()), "{kind}/{name} still managed by {managers:?}");
                    let labels = meta.labels.unwrap_or_default();
                    let annotations = meta.annotations.unwrap_or_default();
                    ensure!(
                        !labels.contains_key("app.kubernetes.io/managed-by")
                            && !annotations.keys().any(|k| k.starts_with("meta.helm.sh/") || k.starts_with("kubectl.kubernetes.io/last-applied")),
                        "{kind}/{name} keeps the installing tool's marks: {labels:?} {annotations:?}"
                    );
                }
                let config: ConfigMap = Api::namespaced(client.clone(), &ns).get("linkerd-config").await?;
                let values = config.data.and_then(|d| d.get("values").cloned()).unwrap_or_default();
                let values: yaml_serde::Value = yaml_serde::from_str(&values)?;
                ensure!(
                    values.get("identityTrustAnchorsPEM").and_then(|v| v.as_str()) == Some(mesh.bundle.as_str()),
                    "linkerd-config does not hold the bundle as installed"
                );

                // Injection: Linkerd's injector gone, Keelson's serving.
                let registered = injectors(&client).await?;
                ensure!(
                    registered.len() == 1 && registered[0].0 == INJECTOR,
                    "registered injectors: {registered:?}"
                );
                let gone = |kind: &'static str, found: bool| if found { Err(anyhow::anyhow!("Linkerd's injector {kind} is still there")) } else { Ok(()) };
                gone("Deployment", deployments_in(&client, &ns).await?.contains(&"linkerd-proxy-injector".to_owned()))?;
                gone("Service", Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), &ns).get_opt("linkerd-proxy-injector").await?.is_some())?;
                gone("Secret", Api::<Secret>::namespaced(client.clone(), &ns).get_opt("linkerd-proxy-injector-k8s-tls").await?.is_some())?;
                gone("ServiceAccount", Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &ns).get_opt("linkerd-proxy-injector").await?.is_some())?;
                let rbac = format!("linkerd-{ns}-proxy-injector");
                gone("ClusterRole", Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(client.clone()).get_opt(&rbac).await?.is_some())?;
                gone("ClusterRoleBinding", Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone()).get_opt(&rbac).await?.is_some())?;
                let records: Vec<String> = Api::<Secret>::namespaced(client.clone(), &ns)
                    .list_metadata(&ListParams::default().labels("owner=helm"))
                    .await?
                    .items
                    .into_iter()
                    .map(|s| s.name_any())
                    .collect();
                let expected: &[&str] = match installed {
                    // The CRDs' release stays with the CRDs it installed.
                    Installed::Helm => &["sh.helm.release.v1.linkerd-crds.v1"],
                    Installed::Cli => &[],
                };
                ensure!(records == expected, "Helm records left: {records:?}");
                let reasons: BTreeSet<String> = common::control_plane_events(&client, &ns)
                    .await?
                    .into_iter()
                    .map(|(reason, _)| reason)
                    .collect();
                let mut wanted = vec!["AdoptionStarted", "OwnershipTaken", "InjectorHandedOver", "Adopted"];
                if installed == Installed::Helm {
                    wanted.push("HelmReleaseForgotten");
                }
                for reason in wanted {
                    ensure!(reasons.contains(reason), "no {reason} event: {reasons:?}");
                }

                // The data plane: Linkerd's pods are up to date as they are;
                // a DataPlane restarts none of them.
                let dps: Api<DataPlane> = Api::namespaced(client.clone(), &apps);
                dps.create(&PostParams::default(), &common::data_plane("apps", json!({}))?).await?;
                wait_until("the DataPlane to count Linkerd's pods up to date", WAIT, || async {
                    let s = common::dp_status(&dps.get("apps").await?);
                    anyhow::Ok((s.workloads == 1 && s.up_to_date == 1 && common::ready(&s)).then_some(()))
                })
                .await?;
                ensure!(running().await? == before, "Linkerd's meshed pods were restarted");
                // A new pod is meshed by Keelson with the same bundle.
                let fresh = common::deployment("fresh", &ns, 1, "example.com/web:1", false)?;
                let mut fresh = serde_json::to_value(fresh)?;
                fresh["spec"]["template"]["metadata"]["annotations"] = json!({"linkerd.io/inject": "enabled"});
                deployments.create(&PostParams::default(), &serde_json::from_value(fresh)?).await?;
                let carried = wait_until("Keelson to mesh a new pod", WAIT, || async {
                    let pod = pods.list(&ListParams::default().labels("app=fresh")).await?.items.into_iter().next();
                    anyhow::Ok(pod.and_then(|p| p.annotations().get(TRUST_ROOT_SHA256).cloned()))
                })
                .await?;
                ensure!(carried == digest, "Keelson meshed a pod with bundle {carried}, not {digest}");

                let report = keelson_operator::check::cluster::run(
                    &client,
                    &keelson_operator::check::cluster::Options {
                        namespace: common::KEELSON_NAMESPACE.into(),
                        warn_within: Duration::from_secs(60),
                        timeout: Duration::from_secs(10),
                    },
                )
                .await;
                ensure!(!report.failed(), "keelson check fails after the takeover:\n{}", report.render());

                // Pods from manually injected templates keep that bundle's
                // digest across restarts; they go before the anchor does.
                deployments.delete("legacy", &Default::default()).await?;
                let anchor_key = |s: &Secret| s.data.as_ref().is_some_and(|d| d.contains_key("ca.key"));
                ensure!(!anchor_key(&common::anchors(&client, &ns).await?), "an imported anchor with a key");
                if cert_manager {
                    // cert-manager's issuer is never written by Keelson.
                    let now = Api::<Secret>::namespaced(client.clone(), &ns).get("linkerd-identity-issuer").await?;
                    ensure!(now.resource_version() == issuer_version, "Keelson wrote cert-manager's issuer");
                    return finish(&cps, &ns, operator.take(), &monitor, watch).await;
                }
                match installed {
                    Installed::Helm => {
                        // An ordinary gated upgrade, then a rotation asked for.
                        common::set_version(&cps, &ns, NEXT_STABLE).await?;
                        common::wait_converged(&cps, &ns, NEXT_STABLE).await?;
                        cps.patch(
                            &ns,
                            &kube::api::PatchParams::default(),
                            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {
                                keelson_crds::controlplane::ROTATE_TRUST_ANCHOR: "after-adoption"}}})),
                        )
                        .await?;
                    }
                    // The issuer falls due by itself.
                    Installed::Cli => {}
                }
                let cp = wait_until("a rotation away from the adopted anchor", LONG_WAIT, || async {
                    let cp = cps.get(&ns).await?;
                    let identity = cp.status.clone().and_then(|s| s.identity).unwrap_or_default();
                    anyhow::Ok((identity.rotation.is_none() && identity.last_rotation.is_some()).then_some(cp))
                })
                .await?;
                ensure!(cp.status.and_then(|s| s.identity).and_then(|i| i.last_rotation).is_some());
                let trigger = match installed {
                    Installed::Helm => "(Requested)",
                    Installed::Cli => "(Scheduled)",
                };
                let started: Vec<String> = common::control_plane_events(&client, &ns)
                    .await?
                    .into_iter()
                    .filter(|(reason, _)| reason == "RotationStarted")
                    .map(|(_, note)| note)
                    .collect();
                ensure!(started.iter().any(|n| n.contains(trigger)), "rotations started: {started:?}");
                let anchors = common::anchors(&client, &ns).await?;
                ensure!(anchor_key(&anchors), "the new anchor has no key");
                let new = common::secret_text(&anchors, "ca.crt")?;
                ensure!(common::trust_bundle(&client, &ns).await? == new.trim(), "the bundle is not the new anchor alone");
                let issuer = common::secret_text(&Api::<Secret>::namespaced(client.clone(), &ns).get("linkerd-identity-issuer").await?, "crt.pem")?;
                ensure!(common::signs(&common::der_certificates(&new)?[0], &common::der_certificates(&issuer)?[0]), "the new anchor does not sign the issuer");
                wait_until("the meshed pod on the new bundle", LONG_WAIT, || async {
                    let s = common::dp_status(&dps.get("apps").await?);
                    anyhow::Ok((s.up_to_date == 1 && s.target_trust_root_sha256.as_deref() != Some(digest.as_str())).then_some(()))
                })
                .await?;
                finish(&cps, &ns, operator.take(), &monitor, watch).await
            })
            .await;
            // Keelson's uninstall leaves the CRDs; the test's kept one too.
            outcome
        })
        .await;
}

/// What the monitor saw over the whole test, then the ControlPlane's
/// uninstall and the operator's stop.
async fn finish(
    cps: &Api<ControlPlane>,
    ns: &str,
    operator: Option<common::Operator>,
    monitor: &Monitor,
    watch: tokio::task::JoinHandle<()>,
) -> anyhow::Result<()> {
    watch.abort();
    let violations = monitor.violations.lock().unwrap().clone();
    ensure!(violations.is_empty(), "{violations:#?}");
    let polls = *monitor.polls.lock().unwrap();
    ensure!(polls > 20, "the monitor looked only {polls} times");
    let sets = monitor.injectors.lock().unwrap().clone();
    ensure!(
        sets.len() >= 2,
        "the monitor never saw the injector change hands: {sets:?}"
    );
    common::delete_control_plane(cps, ns).await?;
    if let Some(operator) = operator {
        operator.stop().await?;
    }
    Ok(())
}

async fn deployments_in(client: &Client, ns: &str) -> anyhow::Result<Vec<String>> {
    Ok(Api::<Deployment>::namespaced(client.clone(), ns)
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|d| d.name_any())
        .collect())
}
