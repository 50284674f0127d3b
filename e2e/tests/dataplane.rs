//! End-to-end tests of DataPlane waves on the real test cluster: injected
//! pods on hollow nodes, restarted in paced batches after a ControlPlane
//! upgrade, within `maxUnavailable`; every pod following 2.19, 2.20 and the
//! newest edge in turn; and a restart whose pods cannot become ready stops
//! the wave. In its own test binary (own cluster): hollow-node faults are
//! cluster-wide.

mod common;

use anyhow::{Context, ensure};
use common::{
    WAVE_LABEL, data_plane, delete_control_plane, deployment, dp_status, injected_namespace,
    set_fault, set_version, wait_converged, wait_until, wait_up_to_date, with_dumps,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use keelson_crds::DataPlane;
use keelson_e2e::argocd;
use keelson_e2e::shared::env;
use keelson_operator::rollout::RESTARTED_AT;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OLD: &str = "edge-25.4.4";
const NEW: &str = "edge-25.10.7";
const PROXY_VERSION: &str = "linkerd.io/proxy-version";
/// A wave over dozens of workloads on a two-core machine.
const WAVE_WAIT: Duration = Duration::from_secs(600);

/// Proxy versions of the pods of `namespace` that are not being deleted.
async fn proxy_versions(client: &Client, namespace: &str) -> anyhow::Result<Vec<(String, String)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(pods
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let version = p
                .annotations()
                .get(PROXY_VERSION)
                .cloned()
                .unwrap_or_else(|| "none".into());
            (p.name_any(), version)
        })
        .collect())
}

/// The most pods each namespace had unavailable at once, as its
/// Deployments' status reported, from a watch kept while the wave runs.
#[derive(Clone, Default)]
struct Availability {
    peak: Arc<Mutex<BTreeMap<String, i32>>>,
}

impl Availability {
    fn watch(client: &Client, wave: &str) -> (Self, tokio::task::JoinHandle<()>) {
        let this = Self::default();
        let api: Api<Deployment> = Api::all(client.clone());
        let config = watcher::Config::default().labels(&format!("{WAVE_LABEL}={wave}"));
        let peak = this.peak.clone();
        let task = tokio::spawn(async move {
            let mut down: BTreeMap<(String, String), i32> = BTreeMap::new();
            let mut events =
                std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
            while let Some(Ok(d)) = events.next().await {
                let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let available = d
                    .status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0);
                let ns = d.namespace().unwrap_or_default();
                down.insert((ns.clone(), d.name_any()), (desired - available).max(0));
                let now: i32 = down
                    .iter()
                    .filter(|((n, _), _)| *n == ns)
                    .map(|(_, v)| v)
                    .sum();
                let mut peak = peak.lock().expect("not poisoned");
                let p = peak.entry(ns).or_default();
                *p = (*p).max(now);
            }
        });
        (this, task)
    }

    fn peaks(&self) -> BTreeMap<String, i32> {
        self.peak.lock().expect("not poisoned").clone()
    }
}

/// 50 Deployments in 5 injected namespaces, one DataPlane each. Upgrading
/// the ControlPlane moves every pod to the new proxy, batch by batch, never
/// with more pods unavailable than `maxUnavailable` allows.
#[tokio::test]
async fn a_control_plane_upgrade_restarts_every_workload_within_the_budget() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("dpwave", |client, ns| async move {
            let (_operator, cps) = common::installed(&client, &ns, OLD).await?;

            let apps: Vec<String> = (0..5).map(|i| format!("{ns}-app{i}")).collect();
            with_dumps(&client, &apps, async {
                // 10 Deployments per namespace, 15 pods: 20% allows 3 down.
                const BUDGET: i32 = 3;
                for (a, app) in apps.iter().enumerate() {
                    injected_namespace(&client, app).await?;
                    let deployments: Api<Deployment> = Api::namespaced(client.clone(), app);
                    for i in 0..10 {
                        let d = deployment(
                            &format!("web-{i}"),
                            &ns,
                            1 + (i % 2),
                            &format!("example.com/app-{a}-{i}:1"),
                            i % 2 == 1,
                        )?;
                        deployments.create(&PostParams::default(), &d).await?;
                    }
                    let dps: Api<DataPlane> = Api::namespaced(client.clone(), app);
                    let dp = data_plane(
                        "apps",
                        json!({"controlPlane": ns, "rollout":
                            {"batchSize": 5, "maxUnavailable": "20%", "interval": "1s"}}),
                    )?;
                    dps.create(&PostParams::default(), &dp).await?;
                }
                for app in &apps {
                    let dps: Api<DataPlane> = Api::namespaced(client.clone(), app);
                    wait_up_to_date(&dps, "apps", 10, OLD, WAVE_WAIT)
                        .await
                        .context(
                            "injected pods at the installed release (is the injector done?)",
                        )?;
                }

                let (availability, watch) = Availability::watch(&client, &ns);
                set_version(&cps, &ns, NEW).await?;
                wait_converged(&cps, &ns, NEW).await?;
                let mut waves = Vec::new();
                for app in &apps {
                    let dps: Api<DataPlane> = Api::namespaced(client.clone(), app);
                    let dp = wait_up_to_date(&dps, "apps", 10, NEW, WAVE_WAIT).await?;
                    waves.push(dp_status(&dp));
                }
                watch.abort();

                let peaks = availability.peaks();
                for app in &apps {
                    let peak = peaks.get(app).copied().unwrap_or_default();
                    ensure!(
                        peak <= BUDGET,
                        "{app} had {peak} pods unavailable at once; maxUnavailable allows {BUDGET}"
                    );
                    let versions = proxy_versions(&client, app).await?;
                    ensure!(versions.len() == 15, "{app}: {versions:?}");
                    ensure!(
                        versions.iter().all(|(_, v)| v == NEW),
                        "{app}: pods not on {NEW}: {versions:?}"
                    );
                    // Every Deployment was named by a batch's Event.
                    let events: Api<Event> = Api::namespaced(client.clone(), app);
                    let notes: Vec<String> = events
                        .list(&ListParams::default())
                        .await?
                        .into_iter()
                        .filter(|e| e.reason.as_deref() == Some("BatchStarted"))
                        .filter_map(|e| e.message)
                        .collect();
                    // "wave 1: restarting Deployment web-0, ... for Linkerd proxy ..."
                    let named: Vec<&str> = notes
                        .iter()
                        .filter_map(|n| {
                            n.split_once("restarting ")?
                                .1
                                .rsplit_once(" for ")
                                .map(|(names, _)| names)
                        })
                        .flat_map(|names| names.split(", "))
                        .collect();
                    for i in 0..10 {
                        let name = format!("Deployment web-{i}");
                        ensure!(
                            named.contains(&name.as_str()),
                            "{app}: no BatchStarted Event names {name}: {notes:?}"
                        );
                    }
                }
                ensure!(
                    peaks.values().any(|p| *p > 0),
                    "the watch never saw a pod down: {peaks:?}"
                );
                for s in &waves {
                    let wave = s.wave.as_ref().context("no wave in status")?;
                    ensure!(
                        s.restarting == 0
                            && s.failed == 0
                            && s.pending == 0
                            && s.lagging.is_empty(),
                        "{s:#?}"
                    );
                    ensure!(
                        wave.restarting.is_empty() && wave.failed.is_empty(),
                        "{wave:?}"
                    );
                }
                eprintln!("peak unavailable pods per namespace (budget {BUDGET}): {peaks:?}");
                Ok(())
            })
            .await?;
            delete_control_plane(&cps, &ns).await?;
            Ok(())
        })
        .await;
}

/// 2.19, then 2.20, then the newest edge: each upgrade converges, and the
/// DataPlane's wave moves every pod to the new proxy, injected as that
/// release's injector does (from 2.20 linkerd-init is proxy-init's binary
/// in the proxy image). 2.20's floor is 1.31; the 1.20 test cluster runs it
/// under `allowUnsupportedKubernetes`, where the release's default native
/// sidecars stay off (the API server would drop `restartPolicy`).
#[tokio::test]
async fn every_pod_follows_2_19_then_2_20_then_the_newest_edge() {
    const RELEASES: [&str; 3] = ["edge-25.10.7", "edge-26.6.3", "edge-26.8.3"];
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("dpedge", |client, ns| async move {
            let (_operator, cps) = common::installed(&client, &ns, RELEASES[0]).await?;
            let app = format!("{ns}-app");
            with_dumps(&client, std::slice::from_ref(&app), async {
                injected_namespace(&client, &app).await?;
                let deployments: Api<Deployment> = Api::namespaced(client.clone(), &app);
                for i in 0..4 {
                    let d = deployment(
                        &format!("web-{i}"),
                        &ns,
                        1 + (i % 2),
                        &format!("example.com/edge-{i}:1"),
                        i % 2 == 1,
                    )?;
                    deployments.create(&PostParams::default(), &d).await?;
                }
                let dps: Api<DataPlane> = Api::namespaced(client.clone(), &app);
                let dp = data_plane(
                    "apps",
                    json!({"controlPlane": ns, "rollout": {"batchSize": 2, "interval": "1s"}}),
                )?;
                dps.create(&PostParams::default(), &dp).await?;
                wait_up_to_date(&dps, "apps", 4, RELEASES[0], WAVE_WAIT).await?;

                for release in &RELEASES[1..] {
                    set_version(&cps, &ns, release).await?;
                    let cp = wait_converged(&cps, &ns, release).await?;
                    let record = cp
                        .status
                        .as_ref()
                        .and_then(|s| s.history.first())
                        .context("no upgrade record")?;
                    ensure!(record.to == *release, "{record:?}");
                    wait_up_to_date(&dps, "apps", 4, release, WAVE_WAIT).await?;
                    let versions = proxy_versions(&client, &app).await?;
                    ensure!(versions.len() == 6, "{versions:?}");
                    ensure!(
                        versions.iter().all(|(_, v)| v == release),
                        "pods not on {release}: {versions:?}"
                    );
                    let pods: Api<Pod> = Api::namespaced(client.clone(), &app);
                    for pod in pods.list(&ListParams::default()).await? {
                        if pod.metadata.deletion_timestamp.is_some() {
                            continue;
                        }
                        let spec = pod.spec.as_ref().context("no spec")?;
                        let init = spec
                            .init_containers
                            .iter()
                            .flatten()
                            .find(|c| c.name == "linkerd-init")
                            .context("no linkerd-init")?;
                        ensure!(
                            init.image.as_deref()
                                == Some(&format!("cr.l5d.io/linkerd/proxy:{release}")[..])
                                && init.command.as_deref()
                                    == Some(&["/usr/lib/linkerd/linkerd2-proxy-init".to_owned()][..]),
                            "{}: linkerd-init {init:?}",
                            pod.name_any()
                        );
                        ensure!(
                            spec.containers.iter().any(|c| c.name == "linkerd-proxy"),
                            "{}: the proxy is not a regular container on Kubernetes 1.20",
                            pod.name_any()
                        );
                    }
                }
                // Each Deployment was restarted by both waves: a ReplicaSet
                // at injection, one per wave.
                let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &app);
                let mut per_deployment: BTreeMap<String, usize> = BTreeMap::new();
                for rs in sets.list(&ListParams::default()).await? {
                    for owner in rs.owner_references() {
                        *per_deployment.entry(owner.name.clone()).or_default() += 1;
                    }
                }
                ensure!(
                    per_deployment.len() == 4 && per_deployment.values().all(|n| *n == 3),
                    "ReplicaSets per Deployment (3 expected: injection and two waves): {per_deployment:?}"
                );
                Ok(())
            })
            .await?;
            delete_control_plane(&cps, &ns).await?;
            Ok(())
        })
        .await;
}

/// A restart whose pods cannot become ready (the hollow nodes crash-loop the
/// pinned proxy's image) stops the wave: status names the workload, it is
/// not restarted again, and the workloads after it keep their pods.
#[tokio::test]
async fn a_restart_that_cannot_become_ready_stops_the_wave() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("dpfail", |client, ns| async move {
            let (_operator, cps) = common::installed(&client, &ns, OLD).await?;

            let app = format!("{ns}-app");
            with_dumps(&client, std::slice::from_ref(&app), async {
                injected_namespace(&client, &app).await?;
                let deployments: Api<Deployment> = Api::namespaced(client.clone(), &app);
                for i in 0..6 {
                    let d = deployment(
                        &format!("web-{i}"),
                        &ns,
                        1,
                        &format!("example.com/web-{i}:1"),
                        false,
                    )?;
                    deployments.create(&PostParams::default(), &d).await?;
                }
                let dps: Api<DataPlane> = Api::namespaced(client.clone(), &app);
                let dp = data_plane(
                    "apps",
                    json!({"rollout": {"batchSize": 1, "maxUnavailable": "100%", "interval": "0s"}}),
                )?;
                dps.create(&PostParams::default(), &dp).await?;
                let up_to_date = wait_up_to_date(&dps, "apps", 6, OLD, WAVE_WAIT)
                    .await
                    .context("injected pods at the installed release (is the injector done?)")?;
                let (health, message) = argocd::health(&up_to_date)?;
                ensure!(health == "Healthy", "{health}: {message}");

                // Pods of the 2.17 proxy crash-loop; the ones running now do not.
                const PINNED: &str = "edge-24.11.8";
                set_fault(&client, Some(&format!("proxy:{PINNED}"))).await?;
                dps.patch(
                    "apps",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"proxyVersion":
                        {"policy": "Pinned", "version": PINNED}}})),
                )
                .await?;
                let stopped = wait_until("the wave to stop", Duration::from_secs(180), || async {
                    let s = dp_status(&dps.get("apps").await?);
                    anyhow::Ok((s.failed == 1).then_some(s))
                })
                .await?;

                let (health, message) = argocd::health(&dps.get("apps").await?)?;
                ensure!(
                    health == "Degraded" && message.starts_with("RestartFailed"),
                    "{health}: {message}"
                );
                let failed = stopped
                    .lagging
                    .iter()
                    .find(|l| l.reason == "Failed")
                    .context("no Failed workload listed")?;
                ensure!(failed.kind == "Deployment" && failed.name == "web-0", "{failed:?}");
                let message = failed.message.clone().unwrap_or_default();
                ensure!(message.contains("CrashLoopBackOff"), "{message}");
                let degraded = stopped
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Degraded")
                    .context("no Degraded condition")?;
                ensure!(
                    degraded.status == "True"
                        && degraded.reason == "RestartFailed"
                        && degraded.message.contains("web-0"),
                    "{degraded:?}"
                );

                // Nothing else moves, and web-0 is not restarted again.
                let token = |d: &Deployment| {
                    d.spec
                        .as_ref()
                        .and_then(|s| s.template.metadata.as_ref())
                        .and_then(|m| m.annotations.as_ref())
                        .and_then(|a| a.get(RESTARTED_AT).cloned())
                };
                let first = token(&deployments.get("web-0").await?);
                ensure!(first.is_some(), "web-0 was never restarted");
                tokio::time::sleep(Duration::from_secs(15)).await;
                ensure!(token(&deployments.get("web-0").await?) == first, "web-0 restarted again");
                for i in 1..6 {
                    let d = deployments.get(&format!("web-{i}")).await?;
                    ensure!(token(&d).is_none(), "web-{i} was restarted");
                }
                let versions = proxy_versions(&client, &app).await?;
                let others: Vec<_> = versions
                    .iter()
                    .filter(|(pod, _)| !pod.starts_with("web-0-"))
                    .collect();
                ensure!(
                    others.len() == 5 && others.iter().all(|(_, v)| v == OLD),
                    "the workloads after web-0 were touched: {versions:?}"
                );
                // web-0 keeps serving from its old pod (its rollout surges).
                ensure!(
                    versions.iter().any(|(pod, v)| pod.starts_with("web-0-") && v == OLD),
                    "{versions:?}"
                );
                let s = dp_status(&dps.get("apps").await?);
                ensure!(s.failed == 1 && s.restarting == 0 && s.up_to_date == 0, "{s:#?}");
                let events: Api<Event> = Api::namespaced(client.clone(), &app);
                let warned = events
                    .list(&ListParams::default())
                    .await?
                    .into_iter()
                    .any(|e| {
                        e.reason.as_deref() == Some("RestartFailed")
                            && e.involved_object.name.as_deref() == Some("web-0")
                    });
                ensure!(warned, "no RestartFailed event on web-0");

                // Fixed (the image works again), web-0 finishes its rollout
                // and the wave goes on without anyone retrying it.
                set_fault(&client, None).await?;
                wait_up_to_date(&dps, "apps", 6, PINNED, WAVE_WAIT).await?;
                Ok(())
            })
            .await?;
            delete_control_plane(&cps, &ns).await?;
            Ok(())
        })
        .await;
}
