//! End-to-end tests of the harness itself: the cluster is real, CRDs are
//! served, Deployments become available through hollow nodes, watches work.
//!
//! All tests of this binary share one cluster (see `keelson_e2e::shared`).

use anyhow::{Context, bail, ensure};
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use keelson_crds::{ControlPlane, DataPlane};
use keelson_e2e::hollow;
use keelson_e2e::shared::env;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn deployment(name: &str, image: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }))
    .expect("static deployment")
}

async fn wait_available(api: &Api<Deployment>, name: &str, replicas: i32) -> anyhow::Result<()> {
    let available = move |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref()).is_some_and(|s| {
            s.available_replicas == Some(replicas) && s.updated_replicas == Some(replicas)
        })
    };
    tokio::time::timeout(WAIT, await_condition(api.clone(), name, available))
        .await
        .with_context(|| {
            format!("deployment {name} did not get {replicas} available replicas")
        })??;
    Ok(())
}

#[tokio::test]
async fn keelson_crds_install_and_are_served() {
    env()
        .in_namespace("crds", |client, ns| async move {
            keelson_e2e::shared::install_keelson_crds(&client).await?;

            // A minimal ControlPlane is stored with its spec intact, and its
            // status subresource is writable separately from the spec.
            let cps: Api<ControlPlane> = Api::all(client.clone());
            let name = format!("{ns}-cp");
            let cp: ControlPlane = serde_json::from_value(json!({
                "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
                "metadata": {"name": name},
                "spec": {"version": "edge-25.4.4", "highAvailability": true,
                         "identity": {"trustDomain": "example.org"}},
            }))?;
            let created = cps.create(&PostParams::default(), &cp).await?;
            ensure!(created.spec.high_availability);
            ensure!(created.spec.trust_domain() == "example.org");
            let status = json!({"status": {"currentVersion": "edge-25.4.4", "phase": "Ready",
                "observedGeneration": created.metadata.generation}});
            cps.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
            let read = cps.get(&name).await?;
            let st = read.status.context("status was not stored")?;
            ensure!(
                st.current_version.as_deref() == Some("edge-25.4.4"),
                "{st:?}"
            );
            ensure!(
                read.metadata.generation == created.metadata.generation,
                "a status write must not bump the generation"
            );

            // The schema is enforced: a ControlPlane without a version is refused.
            let bad = json!({"apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
                "metadata": {"name": format!("{name}-bad")}, "spec": {"namespace": "x"}});
            // `spec.version` is required in Rust too, so send the raw object.
            let raw = client
                .request_text(
                    http::Request::post("/apis/keelson.dev/v1alpha1/controlplanes")
                        .header("content-type", "application/json")
                        .body(serde_json::to_vec(&bad)?)?,
                )
                .await;
            match raw {
                Err(kube::Error::Api(s)) if s.code == 422 => {
                    ensure!(s.message.contains("spec.version"), "message: {}", s.message)
                }
                other => bail!("a ControlPlane without spec.version was not refused: {other:?}"),
            }

            // DataPlanes are namespaced and served too.
            let dps: Api<DataPlane> = Api::namespaced(client.clone(), &ns);
            let dp: DataPlane = serde_json::from_value(json!({
                "apiVersion": "keelson.dev/v1alpha1", "kind": "DataPlane",
                "metadata": {"name": "web"},
                "spec": {"rollout": {"batchSize": 2, "maxUnavailable": 1}},
            }))?;
            let dp = dps.create(&PostParams::default(), &dp).await?;
            ensure!(dp.spec.rollout.batch_size == 2);
            ensure!(dps.list(&ListParams::default()).await?.items.len() == 1);

            cps.delete(&name, &Default::default()).await?;
            Ok(())
        })
        .await;
}

#[tokio::test]
async fn deployments_become_available_on_hollow_nodes_and_scale_down() {
    env()
        .in_namespace("deploy", |client, ns| async move {
            let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            api.create(&PostParams::default(), &deployment("web", "nginx:1.27", 4))
                .await?;
            wait_available(&api, "web", 4).await?;

            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let list = pods.list(&ListParams::default().labels("app=web")).await?;
            ensure!(
                list.items.len() == 4,
                "expected 4 pods, found {}",
                list.items.len()
            );
            for pod in &list {
                let node = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .unwrap_or("");
                ensure!(
                    node.starts_with("hollow-node-"),
                    "pod {} on {node:?}",
                    pod.name_any()
                );
                let status = pod.status.as_ref().context("no status")?;
                ensure!(status.phase.as_deref() == Some("Running"));
                ensure!(status.pod_ip.is_some());
            }

            // Scaling down needs the agent to finish graceful deletions.
            api.patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 0}})),
            )
            .await?;
            let gone = async {
                loop {
                    if pods
                        .list(&ListParams::default().labels("app=web"))
                        .await?
                        .items
                        .is_empty()
                    {
                        return anyhow::Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            };
            tokio::time::timeout(WAIT, gone)
                .await
                .context("pods were not deleted")??;
            Ok(())
        })
        .await;
}

#[tokio::test]
async fn hollow_nodes_fail_images_they_are_told_to() {
    env()
        .in_namespace("faults", |client, ns| async move {
            // Unique to this test, so other tests sharing the cluster are unaffected.
            let broken = format!("registry.invalid/{ns}/broken");
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), hollow::FAULTS_NAMESPACE);
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": hollow::FAULTS_CONFIGMAP},
                "data": {hollow::FAULTS_KEY: broken},
            }))?;
            cms.patch(
                hollow::FAULTS_CONFIGMAP,
                &PatchParams::apply(&ns).force(),
                &Patch::Apply(&cm),
            )
            .await?;

            let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            api.create(&PostParams::default(), &deployment("good", "nginx:1.27", 2))
                .await?;
            api.create(
                &PostParams::default(),
                &deployment("bad", &format!("{broken}:v1"), 2),
            )
            .await?;
            wait_available(&api, "good", 2).await?;

            // The broken pods run but never become ready.
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let reported = async {
                loop {
                    let bad = pods.list(&ListParams::default().labels("app=bad")).await?;
                    let crashing = bad.iter().filter(|p| {
                        p.status
                            .as_ref()
                            .and_then(|s| s.container_statuses.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| {
                                    c.state
                                        .as_ref()
                                        .and_then(|s| s.waiting.as_ref())
                                        .is_some_and(|w| {
                                            w.reason.as_deref() == Some("CrashLoopBackOff")
                                        })
                                })
                            })
                    });
                    if crashing.count() == 2 {
                        return anyhow::Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            };
            tokio::time::timeout(WAIT, reported)
                .await
                .context("bad pods not reported crashing")??;
            let bad = api.get("bad").await?;
            ensure!(bad.status.and_then(|s| s.available_replicas).unwrap_or(0) == 0);

            // Lifting the fault makes the same pods ready.
            cms.delete(hollow::FAULTS_CONFIGMAP, &Default::default())
                .await?;
            wait_available(&api, "bad", 2).await?;
            Ok(())
        })
        .await;
}

#[tokio::test]
async fn a_watch_sees_creates_updates_and_deletes() {
    env()
        .in_namespace("watch", |client, ns| async move {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            let stream = watcher(api.clone(), watcher::Config::default()).default_backoff();
            let seen = tokio::spawn(async move {
                let mut values = Vec::new();
                let mut events = std::pin::pin!(stream);
                while let Some(ev) = events.try_next().await? {
                    match ev {
                        watcher::Event::Apply(cm) | watcher::Event::InitApply(cm) => {
                            let v = cm
                                .data
                                .unwrap_or_default()
                                .get("k")
                                .cloned()
                                .unwrap_or_default();
                            values.push(v);
                        }
                        watcher::Event::Delete(_) => return anyhow::Ok(values),
                        _ => {}
                    }
                }
                bail!("watch ended")
            });
            // Give the watch time to establish before writing.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let cm: ConfigMap =
                serde_json::from_value(json!({"metadata": {"name": "w"}, "data": {"k": "1"}}))?;
            api.create(&PostParams::default(), &cm).await?;
            for v in ["2", "3"] {
                api.patch(
                    "w",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"k": v}})),
                )
                .await?;
            }
            api.delete("w", &Default::default()).await?;
            let values = tokio::time::timeout(WAIT, seen)
                .await
                .context("watch saw no delete")???;
            ensure!(
                values.last().map(String::as_str) == Some("3"),
                "saw {values:?}"
            );
            ensure!(
                values.contains(&"1".to_owned()) || values.first().map(String::as_str) == Some("2"),
                "saw {values:?}"
            );
            Ok(())
        })
        .await;
}

#[tokio::test]
async fn each_test_gets_its_own_namespace() {
    let mut names = Vec::new();
    for _ in 0..3 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        env()
            .in_namespace("iso", |client, ns| async move {
                let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
                let labels = ns_api.get(&ns).await?.labels().clone();
                ensure!(
                    labels
                        .get(keelson_e2e::shared::TEST_NAMESPACE_LABEL)
                        .map(String::as_str)
                        == Some("true")
                );
                let _ = tx.send(ns);
                Ok(())
            })
            .await;
        names.push(rx.await.expect("name sent"));
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "{names:?}");
}
