//! End-to-end tests of the ControlPlane reconciler on the real test cluster:
//! the operator runs in this process against a real kube-apiserver, and the
//! hollow nodes make its Deployments available.

use anyhow::{Context, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use keelson_crds::ControlPlane;
use keelson_e2e::shared::{env, install_keelson_crds};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// Runs the operator on `client` until the returned guard is dropped.
fn start_operator(client: Client) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(keelson_operator::controlplane::run(client, async move {
        let _ = stopped.await;
    }));
    stop
}

fn condition(cp: &ControlPlane, type_: &str) -> Option<String> {
    cp.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

async fn wait_ready(api: &Api<ControlPlane>, name: &str) -> anyhow::Result<ControlPlane> {
    let ready = |cp: Option<&ControlPlane>| {
        cp.is_some_and(|cp| condition(cp, "Ready").as_deref() == Some("True"))
    };
    tokio::time::timeout(WAIT, await_condition(api.clone(), name, ready))
        .await
        .with_context(|| format!("ControlPlane {name} did not become Ready"))??
        .context("ControlPlane deleted")
}

fn data(secret: &Secret, key: &str) -> anyhow::Result<String> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .with_context(|| format!("no {key}"))?;
    Ok(String::from_utf8(bytes.0.clone())?)
}

#[tokio::test]
async fn a_controlplane_installs_linkerd_and_converges_without_further_writes() {
    env()
        .in_namespace("cp", |client, ns| async move {
            install_keelson_crds(&client).await?;
            let (operator_client, writes) = env().recording_client();
            let _operator = start_operator(operator_client);

            let cps: Api<ControlPlane> = Api::all(client.clone());
            let cp: ControlPlane = serde_json::from_value(json!({
                "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
                "metadata": {"name": ns},
                "spec": {"version": "edge-25.4.4", "namespace": ns, "allowUnsupportedKubernetes": true},
            }))?;
            cps.create(&PostParams::default(), &cp).await?;
            let cp = wait_ready(&cps, &ns).await?;
            let status = cp.status.clone().unwrap_or_default();
            ensure!(status.current_version.as_deref() == Some("edge-25.4.4"), "{status:?}");
            ensure!(status.components.iter().all(|c| c.available) && status.components.len() == 2, "{status:?}");
            ensure!(condition(&cp, "KubernetesVersionSupported").as_deref() == Some("False"),
                "the 1.20 test cluster is below Linkerd's floor and status must say so");

            // The components run the release's images and carry the hash of
            // the trust bundle the identity controller serves.
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let identity = deployments.get("linkerd-identity").await?;
            let pod = identity.spec.as_ref().context("spec")?.template.clone();
            let images: Vec<_> = pod.spec.as_ref().context("pod spec")?.containers.iter()
                .filter_map(|c| c.image.clone()).collect();
            ensure!(images.contains(&"cr.l5d.io/linkerd/controller:edge-25.4.4".to_owned()), "{images:?}");

            let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
            let anchor = data(&secrets.get("keelson-identity-trust-anchor").await?, "ca.crt")?;
            let roots: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            let bundle = roots.get("linkerd-identity-trust-roots").await?
                .data.and_then(|d| d.get("ca-bundle.crt").cloned()).context("no bundle")?;
            ensure!(bundle == anchor.trim(), "the trust roots are the managed anchor");
            let annotations = pod.metadata.and_then(|m| m.annotations).unwrap_or_default();
            let digest = ring::digest::digest(&ring::digest::SHA256, anchor.as_bytes());
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            ensure!(annotations.get("linkerd.io/trust-root-sha256") == Some(&hex), "{annotations:?}");
            let issuer = secrets.get("linkerd-identity-issuer").await?;
            ensure!(data(&issuer, "crt.pem")?.starts_with("-----BEGIN CERTIFICATE-----"));

            // Steady state: a resync of the converged ControlPlane makes no
            // write request at all.
            tokio::time::sleep(Duration::from_secs(2)).await;
            writes.lock().unwrap().clear();
            cps.patch(&ns, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"e2e/resync": "1"}}})))
                .await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let seen = writes.lock().unwrap().clone();
            ensure!(seen.is_empty(), "a converged ControlPlane caused writes: {seen:?}");

            // Deleting the ControlPlane removes what it installed, then the
            // finalizer lets the object go.
            cps.delete(&ns, &Default::default()).await?;
            tokio::time::timeout(WAIT, kube::runtime::wait::await_condition(cps.clone(), &ns, kube::runtime::wait::conditions::is_deleted(&cp.metadata.uid.clone().unwrap_or_default())))
                .await
                .context("the ControlPlane was not finalized")??;
            for name in ["linkerd-identity", "linkerd-destination"] {
                let left = deployments.get_opt(name).await?;
                ensure!(left.is_none_or(|d| d.metadata.deletion_timestamp.is_some()), "{name} was left behind");
            }
            ensure!(roots.get_opt("linkerd-identity-trust-roots").await?.is_none_or(|c| c.metadata.deletion_timestamp.is_some()));
            Ok(())
        })
        .await;
}

#[tokio::test]
async fn an_unknown_version_is_refused_with_the_field_named() {
    env()
        .in_namespace("cpbad", |client, ns| async move {
            install_keelson_crds(&client).await?;
            let _operator = start_operator(client.clone());
            let cps: Api<ControlPlane> = Api::all(client.clone());
            let cp: ControlPlane = serde_json::from_value(json!({
                "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
                "metadata": {"name": ns},
                "spec": {"version": "edge-19.1.1", "namespace": ns, "allowUnsupportedKubernetes": true},
            }))?;
            cps.create(&PostParams::default(), &cp).await?;
            let refused = |cp: Option<&ControlPlane>| cp.is_some_and(|cp| condition(cp, "Degraded").as_deref() == Some("True"));
            let cp = tokio::time::timeout(WAIT, await_condition(cps.clone(), &ns, refused)).await??.context("gone")?;
            let ready = cp.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready")).context("no Ready")?;
            ensure!(ready.status == "False" && ready.reason == "UnknownVersion", "{ready:?}");
            ensure!(ready.message.starts_with("spec.version:"), "{}", ready.message);
            // Nothing was installed for it.
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            ensure!(deployments.get_opt("linkerd-identity").await?.is_none());
            cps.delete(&ns, &Default::default()).await?;
            Ok(())
        })
        .await;
}
