//! An upgrade whose health gate cannot pass rolls back automatically: here
//! the upgrade from 2.19 to 2.20 (whose floor, 1.31, the 1.20 test cluster
//! is under: `allowUnsupportedKubernetes`). In its own test binary, so on
//! its own cluster: hollow-node faults are cluster-wide.

mod common;

use anyhow::{Context, ensure};
use common::{condition, set_fault};
use k8s_openapi::api::apps::v1::Deployment;
use keelson_crds::controlplane::UpgradeOutcome;
use keelson_e2e::argocd;
use keelson_e2e::shared::env;
use kube::Api;
use serde_json::json;

#[tokio::test]
async fn a_failed_gate_rolls_back_to_the_previous_release() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("rb", |client, ns| async move {
            let (_operator, cps) = common::installed_with(
                &client,
                &ns,
                "edge-25.10.7",
                json!({"upgrade": {"healthDeadline": "10s"}}),
            )
            .await?;

            // Argo CD sees a converged control plane as Healthy.
            let (health, message) = argocd::health(&cps.get(&ns).await?)?;
            ensure!(health == "Healthy", "{health}: {message}");

            let rolled = common::upgrade_rolled_back(
                &client,
                &cps,
                &ns,
                "controller:edge-26.6.3",
                "edge-26.6.3",
            )
            .await?;
            let status = rolled.status.clone().context("no status")?;
            ensure!(
                status.current_version.as_deref() == Some("edge-25.10.7"),
                "{status:?}"
            );
            ensure!(status.upgrade.is_none(), "{status:?}");
            // Serving on the old release, but not what the spec asks for:
            // Degraded until the spec changes.
            let (health, message) = argocd::health(&rolled)?;
            ensure!(
                health == "Degraded" && message.starts_with("UpgradeRolledBack"),
                "{health}: {message}"
            );
            ensure!(
                condition(&rolled, "Ready").is_some_and(|(s, _)| s == "True"),
                "serving on the old release"
            );
            let record = status.history.first().context("no history")?;
            ensure!(record.outcome == UpgradeOutcome::RolledBack, "{record:?}");
            ensure!(
                record
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains("identity did not become available")),
                "{record:?}"
            );
            ensure!(
                status
                    .failed_upgrade
                    .as_ref()
                    .is_some_and(|f| f.version == "edge-26.6.3")
            );

            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let identity = deployments.get("linkerd-identity").await?;
            // 2.19's linkerd-init again: its own image, no command.
            let init = identity
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.init_containers.as_ref())
                .and_then(|c| c.iter().find(|c| c.name == "linkerd-init"))
                .context("no linkerd-init")?
                .clone();
            ensure!(
                init.image.as_deref() == Some("cr.l5d.io/linkerd/proxy-init:v2.4.3")
                    && init.command.is_none(),
                "{init:?}"
            );
            let images = common::images(identity);
            ensure!(
                images.iter().all(|i| !i.contains("edge-26.6.3")),
                "{images:?}"
            );
            set_fault(&client, None).await?;
            Ok(())
        })
        .await;
}
