//! Faults in the cluster itself: the API server, then etcd, restarted in
//! place while a ControlPlane is being installed (in its first reconcile,
//! and held at a health gate), and the API server restarted in the middle of
//! a DataPlane wave. The install converges and nothing the operator had
//! written is lost or replaced (the generated trust anchor above all: a new
//! one would break every meshed proxy); the wave finishes, restarting every
//! workload once.

mod common;

use anyhow::{Context, ensure};
use common::{
    Operator, WAIT, control_plane, data_plane, deployment, dp_status, injected_namespace,
    set_fault, set_version, wait_converged, wait_for, wait_until, wait_up_to_date, with_dumps,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use keelson_crds::controlplane::ControlPlanePhase;
use keelson_crds::{ControlPlane, DataPlane};
use keelson_e2e::Component;
use keelson_e2e::shared::{env, install_keelson_crds};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;

async fn anchor(client: &Client, ns: &str) -> anyhow::Result<Option<String>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), common::KEELSON_NAMESPACE);
    Ok(secrets
        .get_opt(&keelson_operator::controlplane::material::anchor_secret(ns))
        .await?
        .and_then(|s| s.data?.get("ca.crt").cloned())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned()))
}

/// When the restart comes.
#[derive(Clone, Copy)]
enum During {
    /// The first reconcile: right after it added its finalizer, while it
    /// applies the CRDs and the release.
    FirstApply,
    /// The install held at its first health gate (the hollow nodes
    /// crash-loop Linkerd's controller image), past its CRDs and with a
    /// generated trust anchor.
    HeldAtGate,
}

/// Installs a control plane, restarts `component` `during` the install, and
/// checks that the install converges on what was written before.
async fn install_across_a_restart(component: Component, during: During, prefix: &str) {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace(prefix, |client, ns| async move {
            install_keelson_crds(&client).await?;
            let operator = Operator::start(client.clone());
            let held = matches!(during, During::HeldAtGate);
            if held {
                set_fault(&client, Some("controller:edge-25.4.4")).await?;
            }
            common::hand_over(&client, &ns, &ns).await?;
            let cps: Api<ControlPlane> = Api::all(client.clone());
            let created = cps
                .create(
                    &PostParams::default(),
                    &control_plane(&ns, &ns, "edge-25.4.4", json!({})),
                )
                .await?;
            let before = match during {
                During::FirstApply => {
                    wait_for(&cps, &ns, "no finalizer", |cp| {
                        cp.metadata
                            .finalizers
                            .as_ref()
                            .is_some_and(|f| !f.is_empty())
                    })
                    .await?;
                    None
                }
                During::HeldAtGate => {
                    wait_for(&cps, &ns, "not installing", |cp| {
                        cp.status.as_ref().and_then(|s| s.phase)
                            == Some(ControlPlanePhase::Installing)
                    })
                    .await?;
                    // Workloads are applied once the CRDs are Established.
                    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
                    let anchor = tokio::time::timeout(WAIT, async {
                        loop {
                            if deployments.get_opt("linkerd-identity").await?.is_some()
                                && let Some(pem) = anchor(&client, &ns).await?
                            {
                                return anyhow::Ok(pem);
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    })
                    .await
                    .context("the install did not get past its CRDs")??;
                    Some(anchor)
                }
            };

            env().restart(component).await?;
            if held {
                set_fault(&client, None).await?;
            }
            let cp = wait_converged(&cps, &ns, "edge-25.4.4").await?;

            ensure!(
                cp.metadata.uid == created.metadata.uid,
                "the ControlPlane was replaced"
            );
            let after = anchor(&client, &ns).await?.context("no trust anchor")?;
            ensure!(
                before.is_none_or(|before| before == after),
                "the trust anchor changed across the restart"
            );
            let bundle = common::trust_bundle(&client, &ns).await?;
            ensure!(bundle == after.trim(), "the trust bundle is not the anchor");
            let (holder, _) = common::lease_holder(&client).await?;
            ensure!(
                holder.as_deref() == Some(operator.identity.as_str()),
                "the operator does not lead after the restart: {holder:?}"
            );

            common::delete_control_plane(&cps, &ns).await?;
            Ok(())
        })
        .await;
}

#[tokio::test]
async fn an_install_converges_across_an_apiserver_restart_in_its_first_reconcile() {
    install_across_a_restart(Component::ApiServer, During::FirstApply, "apiserver-first").await;
}

#[tokio::test]
async fn an_install_converges_across_an_apiserver_restart() {
    install_across_a_restart(Component::ApiServer, During::HeldAtGate, "apiserver").await;
}

#[tokio::test]
async fn an_install_converges_across_an_etcd_restart() {
    install_across_a_restart(Component::Etcd, During::HeldAtGate, "etcd").await;
}

/// A DataPlane wave restarting one workload at a time, with the API server
/// restarted once some workloads are done and others not: the wave resumes
/// from status and finishes, every workload restarted exactly once (one more
/// Deployment generation: a repeated restart would be a second one) and no
/// workload reported failed.
#[tokio::test]
async fn a_data_plane_wave_finishes_across_an_apiserver_restart() {
    const OLD: &str = "edge-25.4.4";
    const NEW: &str = "edge-25.10.7";
    const WORKLOADS: i32 = 6;
    const WAVE_WAIT: Duration = Duration::from_secs(600);
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("wavefault", |client, ns| async move {
            let (_operator, cps) = common::installed(&client, &ns, OLD).await?;
            let app = format!("{ns}-app");
            with_dumps(&client, std::slice::from_ref(&app), async {
                injected_namespace(&client, &app).await?;
                let deployments: Api<Deployment> = Api::namespaced(client.clone(), &app);
                for i in 0..WORKLOADS {
                    let d = deployment(&format!("web-{i}"), &ns, 1, "example.com/web:1", i % 2 == 0)?;
                    deployments.create(&PostParams::default(), &d).await?;
                }
                let dps: Api<DataPlane> = Api::namespaced(client.clone(), &app);
                let dp = data_plane(
                    "apps",
                    json!({"controlPlane": ns, "rollout":
                        {"batchSize": 1, "maxUnavailable": 1, "interval": "2s"}}),
                )?;
                dps.create(&PostParams::default(), &dp).await?;
                wait_up_to_date(&dps, "apps", WORKLOADS, OLD, WAVE_WAIT).await?;
                let generations = |list: Vec<Deployment>| {
                    list.into_iter()
                        .map(|d| (d.metadata.name.unwrap_or_default(), d.metadata.generation.unwrap_or_default()))
                        .collect::<std::collections::BTreeMap<_, _>>()
                };
                let before = generations(deployments.list(&ListParams::default()).await?.items);

                set_version(&cps, &ns, NEW).await?;
                let mid = wait_until("the wave to be half-way", WAVE_WAIT, || async {
                    let s = dp_status(&dps.get("apps").await?);
                    let half_way = s.target_proxy_version.as_deref() == Some(NEW)
                        && s.up_to_date >= 1
                        && s.up_to_date < WORKLOADS - 1;
                    anyhow::Ok(half_way.then_some(s))
                })
                .await?;
                eprintln!("restarting the API server with {} of {WORKLOADS} workloads up to date", mid.up_to_date);
                env().restart(Component::ApiServer).await?;

                let done = wait_up_to_date(&dps, "apps", WORKLOADS, NEW, WAVE_WAIT).await?;
                let s = dp_status(&done);
                ensure!(s.failed == 0 && s.restarting == 0 && s.lagging.is_empty(), "{s:#?}");
                let after = generations(deployments.list(&ListParams::default()).await?.items);
                for (name, generation) in &before {
                    ensure!(
                        after.get(name) == Some(&(generation + 1)),
                        "{name} went from generation {generation} to {:?}: not restarted exactly once",
                        after.get(name)
                    );
                }
                Ok(())
            })
            .await?;
            common::delete_control_plane(&cps, &ns).await?;
            Ok(())
        })
        .await;
}
