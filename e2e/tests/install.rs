//! Keelson's own install on the real test cluster: the operator, running with
//! nothing but the RBAC of `manifests/` (its ServiceAccount impersonated),
//! installs and removes a control plane. A rule missing from the ClusterRole
//! makes a reconcile fail and this test time out.

mod common;

use common::{Operator, WAIT, control_plane, wait_converged};
use keelson_crds::ControlPlane;
use keelson_e2e::shared::{env, install_keelson_crds};
use keelson_operator::apply::Applier;
use keelson_operator::install;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

#[tokio::test]
async fn the_operator_works_with_only_its_install_rbac() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("rbac", |client, ns| async move {
            let objects = install::objects(&install::Install {
                namespace: common::KEELSON_NAMESPACE,
                image: "example.com/keelson:test",
                replicas: 1.into(),
            });
            let applier = Applier::new(client.clone());
            // Everything but the operator's own Deployment and Service (the
            // operator runs in this process, as the ServiceAccount), the
            // CRDs (applied and awaited below) and the PodDisruptionBudget
            // (policy/v1 needs Kubernetes 1.21).
            for o in objects.iter().filter(|o| {
                ![
                    "Deployment",
                    "Service",
                    "CustomResourceDefinition",
                    "PodDisruptionBudget",
                ]
                .contains(&o["kind"].as_str().unwrap_or_default())
            }) {
                applier.apply(o).await?;
            }
            install_keelson_crds(&client).await?;
            let operator_client = env().impersonating(&format!(
                "system:serviceaccount:{}:{}",
                common::KEELSON_NAMESPACE,
                install::NAME
            ));
            // The client really is the ServiceAccount: what its role does
            // not grant is forbidden.
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(operator_client.clone());
            match nodes.list(&Default::default()).await {
                Err(kube::Error::Api(s)) if s.code == 403 => {}
                other => anyhow::bail!("listing nodes should be forbidden: {other:?}"),
            }
            let operator = Operator::start(operator_client);
            operator.webhooks_registered(&client).await?;

            let cps: Api<ControlPlane> = Api::all(client.clone());
            cps.create(
                &PostParams::default(),
                &control_plane(&ns, &ns, "edge-25.4.4", json!({})),
            )
            .await?;
            let cp = wait_converged(&cps, &ns, "edge-25.4.4").await?;
            cps.delete(&ns, &DeleteParams::default()).await?;
            tokio::time::timeout(
                WAIT,
                kube::runtime::wait::await_condition(
                    cps.clone(),
                    &ns,
                    kube::runtime::wait::conditions::is_deleted(&cp.uid().unwrap_or_default()),
                ),
            )
            .await??;
            Ok(())
        })
        .await;
}
