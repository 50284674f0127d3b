//! CNI mode on the real test cluster: the plugin's DaemonSet is installed
//! first and runs on every hollow node, meshed pods get the network
//! validator and no `linkerd-init`, a change of the plugin's redirect
//! settings restarts the pods they set up, an upgrade rolls the DaemonSet before
//! identity, and a DaemonSet that cannot roll out (the hollow nodes
//! crash-loop its image) stops the upgrade and rolls it back. In its own
//! test binary, so on its own cluster: hollow-node faults are cluster-wide.

mod common;

use anyhow::{Context, ensure};
use common::{
    data_plane, deployment, dp_status, injected_namespace, set_fault, set_version, wait_converged,
    wait_until, wait_up_to_date, with_dumps,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod};
use keelson_crds::controlplane::{UpgradeOutcome, UpgradeStage};
use keelson_crds::{ControlPlane, DataPlane};
use keelson_e2e::argocd;
use keelson_e2e::shared::env;
use keelson_operator::check::{Outcome, cluster};
use keelson_operator::render::cni::REDIRECT_SHA256;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::time::Duration;

const V2_19: &str = "edge-25.10.7";
const V2_20: &str = "edge-26.6.3";
const EDGE: &str = "edge-26.8.3";

/// The plugin's DaemonSet: nodes it is available on, of how many, its image.
async fn plugin(client: &Client, namespace: &str) -> anyhow::Result<(i32, i32, String)> {
    let d = Api::<DaemonSet>::namespaced(client.clone(), namespace)
        .get("linkerd-cni")
        .await?;
    let status = d.status.clone().unwrap_or_default();
    let image = d
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
        .unwrap_or_default();
    Ok((
        status.number_available.unwrap_or(0),
        status.desired_number_scheduled,
        image,
    ))
}

/// The ControlPlane's `status.cni.redirectSha256`.
async fn redirect(cps: &Api<ControlPlane>, name: &str) -> anyhow::Result<Option<String>> {
    let cp = cps.get(name).await?;
    Ok(cp
        .status
        .and_then(|s| s.cni)
        .and_then(|c| c.redirect_sha256))
}

/// The redirect settings each pod not being deleted was marked with.
async fn redirect_marks(pods: &Api<Pod>) -> anyhow::Result<Vec<String>> {
    Ok(pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            p.annotations()
                .get(REDIRECT_SHA256)
                .cloned()
                .unwrap_or_default()
        })
        .collect())
}

/// Names of a pod template's (or pod's) init containers.
fn init_names(spec: Option<&k8s_openapi::api::core::v1::PodSpec>) -> Vec<String> {
    spec.and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect()
}

#[tokio::test]
async fn cni_mode_installs_the_plugin_first_upgrades_it_first_and_rolls_it_back() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("cni", |client, ns| async move {
            let cni_ns = format!("{ns}-plugin");
            let (_operator, cps) = common::installed_with(
                &client,
                &ns,
                V2_19,
                json!({"cni": {"namespace": cni_ns}, "upgrade": {"healthDeadline": "15s"}}),
            )
            .await?;

            // The plugin runs on every node, at 2.19's plugin version.
            let nodes = Api::<Node>::all(client.clone())
                .list(&ListParams::default())
                .await?
                .items
                .len();
            let (available, desired, image) = plugin(&client, &cni_ns).await?;
            ensure!(
                available == desired && desired as usize == nodes,
                "plugin available on {available} of {desired} nodes; the cluster has {nodes}"
            );
            ensure!(image == "cr.l5d.io/linkerd/cni-plugin:v1.6.4", "{image}");

            // The control plane's pods and meshed pods: the validator, no
            // linkerd-init.
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            for name in ["linkerd-identity", "linkerd-destination"] {
                let d = deployments.get(name).await?;
                let inits = init_names(d.spec.as_ref().and_then(|s| s.template.spec.as_ref()));
                ensure!(inits == ["linkerd-network-validator"], "{name}: {inits:?}");
            }
            let app = format!("{ns}-app");
            with_dumps(&client, std::slice::from_ref(&app), async {
                injected_namespace(&client, &app).await?;
                Api::<Deployment>::namespaced(client.clone(), &app)
                    .create(
                        &PostParams::default(),
                        &deployment("web", &ns, 2, "example.com/cni-web:1", false)?,
                    )
                    .await?;
                let pods: Api<Pod> = Api::namespaced(client.clone(), &app);
                let meshed = wait_until("two meshed pods", Duration::from_secs(120), || async {
                    let list = pods.list(&ListParams::default()).await?.items;
                    anyhow::Ok((list.len() == 2).then_some(list))
                })
                .await?;
                for pod in &meshed {
                    let spec = pod.spec.as_ref();
                    ensure!(
                        init_names(spec) == ["linkerd-network-validator"],
                        "{}: {:?}",
                        pod.name_any(),
                        init_names(spec)
                    );
                    let volumes: Vec<String> = spec
                        .and_then(|s| s.volumes.as_ref())
                        .into_iter()
                        .flatten()
                        .map(|v| v.name.clone())
                        .collect();
                    ensure!(
                        !volumes
                            .iter()
                            .any(|v| v == "linkerd-proxy-init-xtables-lock"),
                        "{volumes:?}"
                    );
                    ensure!(
                        spec.is_some_and(|s| s
                            .containers
                            .iter()
                            .any(|c| c.name == "linkerd-proxy")),
                        "{}: no proxy",
                        pod.name_any()
                    );
                }

                // A change of the plugin's redirect settings rolls its
                // DaemonSet, then a DataPlane wave restarts the pods set up
                // by the old ones.
                let before = redirect(&cps, &ns).await?.context("no status.cni")?;
                ensure!(
                    redirect_marks(&pods).await? == [before.clone(), before.clone()],
                    "pods not marked with {before}"
                );
                let dps: Api<DataPlane> = Api::namespaced(client.clone(), &app);
                let dp = data_plane(
                    "apps",
                    json!({"controlPlane": ns, "rollout": {"batchSize": 1, "interval": "1s"}}),
                )?;
                dps.create(&PostParams::default(), &dp).await?;
                wait_up_to_date(&dps, "apps", 1, V2_19, Duration::from_secs(60)).await?;
                cps.patch(
                    &ns,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"cni": {"ignoreInboundPorts": "25"}}})),
                )
                .await?;
                let after = wait_until(
                    "the plugin running the new settings everywhere",
                    Duration::from_secs(120),
                    || async {
                        let now = redirect(&cps, &ns).await?;
                        anyhow::Ok(now.filter(|d| *d != before))
                    },
                )
                .await?;
                wait_until(
                    "the wave to restart the pods",
                    Duration::from_secs(120),
                    || async {
                        let s = dp_status(&dps.get("apps").await?);
                        let marks = redirect_marks(&pods).await?;
                        let done = s.target_cni_redirect_sha256.as_deref() == Some(&after)
                            && s.up_to_date == 1
                            && common::ready(&s)
                            && marks == [after.clone(), after.clone()];
                        anyhow::Ok(done.then_some(()))
                    },
                )
                .await?;
                Ok(())
            })
            .await?;

            // `keelson check` sees the plugin everywhere, at the release.
            let report = cluster::run(
                &client,
                &cluster::Options {
                    namespace: common::KEELSON_NAMESPACE.into(),
                    warn_within: Duration::from_secs(7 * 86_400),
                    timeout: Duration::from_secs(10),
                },
            )
            .await;
            ensure!(
                report
                    .messages(Outcome::Pass)
                    .iter()
                    .any(|m| m.contains("linkerd-cni is available on all")),
                "{}",
                report.render()
            );

            // An upgrade: the plugin first, on every node, then identity.
            set_version(&cps, &ns, V2_20).await?;
            let stages = std::cell::RefCell::new(Vec::new());
            let healths = std::cell::RefCell::new(Vec::new());
            let upgraded = wait_until("the upgrade to 2.20", Duration::from_secs(180), || async {
                let cp = cps.get(&ns).await?;
                let status = cp.status.clone().unwrap_or_default();
                if let Some(u) = &status.upgrade {
                    healths.borrow_mut().push(argocd::health(&cp)?.0);
                    let mut seen = stages.borrow_mut();
                    if seen.last() != Some(&u.stage) {
                        seen.push(u.stage);
                    }
                }
                let done =
                    status.upgrade.is_none() && status.current_version.as_deref() == Some(V2_20);
                anyhow::Ok(done.then_some(cp))
            })
            .await?;
            let stages = stages.into_inner();
            // Argo CD sees the upgrade under way as Progressing, the whole way.
            let healths = healths.into_inner();
            ensure!(
                !healths.is_empty() && healths.iter().all(|h| h == "Progressing"),
                "{healths:?}"
            );
            ensure!(
                stages.first() == Some(&UpgradeStage::Cni),
                "stages seen: {stages:?}"
            );
            let record = upgraded
                .status
                .as_ref()
                .and_then(|s| s.history.first())
                .context("no record")?;
            ensure!(record.outcome == UpgradeOutcome::Succeeded, "{record:?}");
            let (available, desired, image) = plugin(&client, &cni_ns).await?;
            ensure!(
                available == desired && image == "cr.l5d.io/linkerd/cni-plugin:v1.6.8",
                "{available}/{desired} {image}"
            );

            // A plugin that cannot run stops the next upgrade before
            // identity and rolls it back.
            let rolled =
                common::upgrade_rolled_back(&client, &cps, &ns, "cni-plugin:v1.7.0-alpha.1", EDGE)
                    .await?;
            let status = rolled.status.clone().context("no status")?;
            ensure!(
                status.current_version.as_deref() == Some(V2_20),
                "{status:?}"
            );
            let record = status.history.first().context("no history")?;
            ensure!(
                record.outcome == UpgradeOutcome::RolledBack
                    && record
                        .message
                        .as_deref()
                        .is_some_and(|m| m.contains("cni did not become available")),
                "{record:?}"
            );
            let identity = deployments.get("linkerd-identity").await?;
            let images = common::images(identity);
            ensure!(
                images.iter().all(|i| !i.contains(EDGE)),
                "identity was touched: {images:?}"
            );
            set_fault(&client, None).await?;
            let (available, desired, image) = plugin(&client, &cni_ns).await?;
            ensure!(
                image == "cr.l5d.io/linkerd/cni-plugin:v1.6.8",
                "the plugin was not rolled back: {available}/{desired} {image}"
            );
            wait_converged(&cps, &ns, V2_20).await?;
            common::delete_control_plane(&cps, &ns).await?;
            // The plugin's namespace, which Keelson created, goes with it.
            wait_until(
                "the plugin's namespace gone",
                Duration::from_secs(60),
                || async {
                    let gone = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
                        .get_opt(&cni_ns)
                        .await?
                        .is_none_or(|n| n.metadata.deletion_timestamp.is_some());
                    anyhow::Ok(gone.then_some(()))
                },
            )
            .await?;
            Ok(())
        })
        .await;
}
