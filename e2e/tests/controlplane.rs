//! End-to-end tests of the ControlPlane reconciler on the real test cluster:
//! the operator runs in this process against a real kube-apiserver, and the
//! hollow nodes make its Deployments available.

mod common;

use anyhow::{Context, ensure};
use common::{
    Operator, WAIT, condition, control_plane, set_fault, set_version, wait_converged, wait_for,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keelson_crds::ControlPlane;
use keelson_crds::policy::Server;
use keelson_e2e::shared::{env, install_keelson_crds};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{Condition as _, conditions::is_crd_established};
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;

/// The CRDs Linkerd 2.18 installs by default: its own and Gateway API's.
const LINKERD_CRDS: &[&str] = &[
    "servers.policy.linkerd.io",
    "serverauthorizations.policy.linkerd.io",
    "authorizationpolicies.policy.linkerd.io",
    "meshtlsauthentications.policy.linkerd.io",
    "networkauthentications.policy.linkerd.io",
    "httproutes.policy.linkerd.io",
    "httplocalratelimitpolicies.policy.linkerd.io",
    "egressnetworks.policy.linkerd.io",
    "serviceprofiles.linkerd.io",
    "externalworkloads.workload.linkerd.io",
    "httproutes.gateway.networking.k8s.io",
    "grpcroutes.gateway.networking.k8s.io",
    "tlsroutes.gateway.networking.k8s.io",
    "tcproutes.gateway.networking.k8s.io",
];

/// Fails unless every CRD of [`LINKERD_CRDS`] exists, is Established and
/// is not being deleted.
async fn linkerd_crds_established(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in LINKERD_CRDS {
        let crd = crds
            .get_opt(name)
            .await?
            .with_context(|| format!("CRD {name} does not exist"))?;
        ensure!(
            crd.metadata.deletion_timestamp.is_none(),
            "CRD {name} is being deleted"
        );
        ensure!(
            is_crd_established().matches_object(Some(&crd)),
            "CRD {name} is not Established: {:?}",
            crd.status
        );
    }
    Ok(())
}

/// A user's namespace with a policy.linkerd.io Server in it. Linkerd's
/// policy validator is skipped there: no webhook server runs on the hollow
/// nodes.
async fn user_server(client: &Client, namespace: &str) -> anyhow::Result<Api<Server>> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": namespace,
        "labels": {"config.linkerd.io/admission-webhooks": "disabled"}}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let servers: Api<Server> = Api::namespaced(client.clone(), namespace);
    let server = serde_json::from_value(json!({
        "apiVersion": "policy.linkerd.io/v1beta3", "kind": "Server",
        "metadata": {"name": "web-http"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "port": 8080,
                 "proxyProtocol": "HTTP/1", "accessPolicy": "audit"},
    }))?;
    servers.create(&PostParams::default(), &server).await?;
    Ok(servers)
}

#[tokio::test]
async fn a_controlplane_installs_linkerd_and_converges_without_further_writes() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("cp", |client, ns| async move {
            install_keelson_crds(&client).await?;
            let (operator_client, writes) = env().recording_client();
            let _operator = Operator::start(operator_client);

            let (cps, cp) = common::converged(&client, &ns, "edge-25.4.4", json!({})).await?;
            let status = cp.status.clone().unwrap_or_default();
            ensure!(
                status.current_version.as_deref() == Some("edge-25.4.4"),
                "{status:?}"
            );
            ensure!(
                status.components.iter().all(|c| c.available) && status.components.len() == 2,
                "{status:?}"
            );
            ensure!(
                condition(&cp, "KubernetesVersionSupported").is_some_and(|(s, _)| s == "False"),
                "the 1.20 test cluster is below Linkerd's floor and status must say so"
            );
            // The 1.20 API server takes neither CEL rules nor empty defaults:
            // the release's CRDs (with the Gateway API v1.1.1 bundle, on by
            // default at 2.18) lose 212 rules and 16 defaults there (14 of
            // Gateway API's, 2 of Linkerd's HTTPRoute), and status says how
            // many.
            ensure!(status.omitted_crd_facts == Some(212 + 16), "{status:?}");

            // The components run the release's images and carry the hash of
            // the trust bundle the identity controller serves.
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let identity = deployments.get("linkerd-identity").await?;
            let pod = identity.spec.as_ref().context("spec")?.template.clone();
            let images = common::images(identity.clone());
            ensure!(
                images.contains(&"cr.l5d.io/linkerd/controller:edge-25.4.4".to_owned()),
                "{images:?}"
            );

            let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
            let anchor = common::secret_text(&common::anchors(&client, &ns).await?, "ca.crt")?;
            let roots: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            let bundle = common::trust_bundle(&client, &ns).await?;
            ensure!(
                bundle == anchor.trim(),
                "the trust roots are the managed anchor"
            );
            let annotations = pod.metadata.and_then(|m| m.annotations).unwrap_or_default();
            let digest = ring::digest::digest(&ring::digest::SHA256, anchor.trim().as_bytes());
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            ensure!(
                annotations.get("linkerd.io/trust-root-sha256") == Some(&hex),
                "{annotations:?}"
            );
            let issuer = secrets.get("linkerd-identity-issuer").await?;
            ensure!(
                common::secret_text(&issuer, "crt.pem")?.starts_with("-----BEGIN CERTIFICATE-----")
            );

            // Linkerd's CRDs were applied first and are served, so users can
            // create policy objects.
            linkerd_crds_established(&client).await?;
            let user_ns = format!("{ns}-app");
            let servers = user_server(&client, &user_ns).await?;

            // Steady state: a resync of the converged ControlPlane makes no
            // write request at all.
            tokio::time::sleep(Duration::from_secs(2)).await;
            writes.lock().unwrap().clear();
            cps.patch(
                &ns,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"e2e/resync": "1"}}})),
            )
            .await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            // Renewing the leader Lease is the operator's only write.
            let seen: Vec<String> = writes
                .lock()
                .unwrap()
                .iter()
                .filter(|w| !w.contains("/apis/coordination.k8s.io/"))
                .cloned()
                .collect();
            ensure!(
                seen.is_empty(),
                "a converged ControlPlane caused writes: {seen:?}"
            );

            // Deleting the ControlPlane removes what it installed, then the
            // finalizer lets the object go.
            cps.delete(&ns, &Default::default()).await?;
            tokio::time::timeout(
                WAIT,
                kube::runtime::wait::await_condition(
                    cps.clone(),
                    &ns,
                    kube::runtime::wait::conditions::is_deleted(
                        &cp.metadata.uid.clone().unwrap_or_default(),
                    ),
                ),
            )
            .await
            .context("the ControlPlane was not finalized")??;
            for name in ["linkerd-identity", "linkerd-destination"] {
                let left = deployments.get_opt(name).await?;
                ensure!(
                    left.is_none_or(|d| d.metadata.deletion_timestamp.is_some()),
                    "{name} was left behind"
                );
            }
            ensure!(
                roots
                    .get_opt("linkerd-identity-trust-roots")
                    .await?
                    .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
            );
            // The CRDs stay, and with them the users' objects.
            linkerd_crds_established(&client).await?;
            let server = servers.get_opt("web-http").await?;
            ensure!(
                server.is_some_and(|s| s.metadata.deletion_timestamp.is_none()
                    && s.spec.access_policy.as_deref() == Some("audit")),
                "the user's Server did not survive the ControlPlane's deletion"
            );
            Api::<Namespace>::all(client.clone())
                .delete(&user_ns, &DeleteParams::background())
                .await?;
            Ok(())
        })
        .await;
}

#[tokio::test]
async fn an_unknown_version_is_refused_with_the_field_named() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("cpbad", |client, ns| async move {
            install_keelson_crds(&client).await?;
            let operator = Operator::start(client.clone());
            operator.webhooks_registered(&client).await?;
            // The validating webhook refuses the version at admission (see
            // tests/admission.rs). Without it (removed here, as if it had
            // been deleted by hand) the reconciler is the second line.
            common::without_validator(&client).await?;
            let cps: Api<ControlPlane> = Api::all(client.clone());
            cps.create(
                &PostParams::default(),
                &control_plane(&ns, &ns, "edge-19.1.1", json!({})),
            )
            .await?;
            let cp = wait_for(&cps, &ns, "not refused", |cp| {
                condition(cp, "Degraded").is_some_and(|(s, _)| s == "True")
            })
            .await?;
            let ready = cp
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .context("no Ready")?;
            ensure!(
                ready.status == "False" && ready.reason == "UnknownVersion",
                "{ready:?}"
            );
            ensure!(
                ready.message.starts_with("spec.version:"),
                "{}",
                ready.message
            );
            // Nothing was installed for it.
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            ensure!(deployments.get_opt("linkerd-identity").await?.is_none());
            common::delete_control_plane(&cps, &ns).await?;
            Ok(())
        })
        .await;
}

/// Upgrades 2.18 to 2.19 through the gates, with the operator killed while the
/// upgrade waits on its identity gate: a new operator resumes from status.
#[tokio::test]
async fn an_upgrade_survives_an_operator_restart_and_is_recorded() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("upg", |client, ns| async move {
            let (first, cps) = common::installed(&client, &ns, "edge-25.4.4").await?;

            // Hold the upgrade at its first gate: 2.19's controller pods crash.
            set_fault(&client, Some("controller:edge-25.10.7")).await?;
            set_version(&cps, &ns, "edge-25.10.7").await?;
            let held = wait_for(&cps, &ns, "upgrade not started", |cp| {
                cp.status
                    .as_ref()
                    .and_then(|s| s.upgrade.as_ref())
                    .is_some_and(|u| u.step == "edge-25.10.7")
            })
            .await?;
            let u = held
                .status
                .as_ref()
                .and_then(|s| s.upgrade.clone())
                .context("no upgrade")?;
            ensure!(
                u.stage == keelson_crds::controlplane::UpgradeStage::Identity,
                "{u:?}"
            );
            ensure!(
                held.status
                    .as_ref()
                    .and_then(|s| s.current_version.as_deref())
                    == Some("edge-25.4.4")
            );
            // Destination is not touched while identity's gate is closed.
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let dst = deployments.get("linkerd-destination").await?;
            let dst_images = common::images(dst);
            ensure!(
                dst_images.iter().all(|i| !i.contains("edge-25.10.7")),
                "destination moved early: {dst_images:?}"
            );

            first.kill().await;
            set_fault(&client, None).await?;
            let _second = Operator::start(client.clone());
            let done = wait_converged(&cps, &ns, "edge-25.10.7").await?;
            let history = done.status.map(|s| s.history).unwrap_or_default();
            ensure!(history.len() == 1, "one upgrade, one record: {history:?}");
            let record = &history[0];
            ensure!(
                record.from.as_deref() == Some("edge-25.4.4") && record.to == "edge-25.10.7",
                "{record:?}"
            );
            ensure!(
                record.outcome == keelson_crds::controlplane::UpgradeOutcome::Succeeded
                    && record.finished_at.is_some(),
                "{record:?}"
            );
            for name in ["linkerd-identity", "linkerd-destination"] {
                let d = deployments.get(name).await?;
                let images = common::images(d);
                ensure!(
                    images.iter().any(|i| i.ends_with(":edge-25.10.7")),
                    "{name}: {images:?}"
                );
            }
            common::delete_control_plane(&cps, &ns).await?;
            Ok(())
        })
        .await;
}
