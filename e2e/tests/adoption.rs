//! A Linkerd that is already running, installed with Linkerd's Helm chart
//! or its CLI, in the namespace a ControlPlane names: Keelson reports what
//! it found and writes nothing there.

mod common;

use anyhow::{Context, ensure};
use common::{WAIT, wait_until};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use keelson_crds::ControlPlane;
use keelson_e2e::shared::env;
use keelson_operator::admission::configurations::INJECTOR;
use keelson_operator::identity;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
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
            let theirs = format!("{ns}-linkerd-proxy-injector-webhook-config");
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
                    && ready.message.starts_with("spec.namespace: "),
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
