//! Keelson's own install on the real test cluster: the operator, running with
//! nothing but the RBAC of `manifests/` (its ServiceAccount impersonated),
//! installs and removes a control plane. A rule missing from the ClusterRole
//! makes a reconcile fail and this test time out.

mod common;

use common::{Operator, WAIT};
use keelson_e2e::shared::{env, install_keelson_crds};
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};

#[tokio::test]
async fn the_operator_works_with_only_its_install_rbac() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("rbac", |client, ns| async move {
            let operator_client = common::install_rbac(&client).await?;
            install_keelson_crds(&client).await?;
            // The client really is the ServiceAccount: what its role does
            // not grant is forbidden.
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(operator_client.clone());
            match nodes.list(&Default::default()).await {
                Err(kube::Error::Api(s)) if s.code == 403 => {}
                other => anyhow::bail!("listing nodes should be forbidden: {other:?}"),
            }
            let operator = Operator::start(operator_client);
            operator.webhooks_registered(&client).await?;

            let (cps, cp) =
                common::converged(&client, &ns, "edge-25.4.4", serde_json::json!({})).await?;
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
