//! The operator's memory under hostile but ordinary input, through the real
//! API server: pod creates with annotations far over what the API server
//! stores (it calls the mutating webhook before it validates, and rejects
//! them after), in namespaces the injector skips and in injected ones, many
//! at once. The operator's peak RSS must stay under the memory limit its
//! install manifests give it, or it is OOM-killed and pods go unmeshed.
//!
//! The operator runs in this test's process (its own binary, with this one
//! test), so the process's high-water mark bounds the operator's from
//! above: the harness adds to it, never subtracts.

mod common;

use anyhow::{Context, ensure};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use keelson_e2e::shared::env;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

/// The operator Deployment's memory limit in `manifests/`, in bytes.
fn manifest_limit() -> anyhow::Result<u64> {
    let objects = keelson_operator::install::objects(&keelson_operator::install::Install {
        namespace: "keelson",
        image: "example.com/keelson:test",
        replicas: 1.into(),
        control_planes: &[],
        data_plane_namespaces: &[],
    });
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .context("no Deployment in the install")?;
    let limit =
        deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
            .as_str()
            .context("no memory limit")?;
    let mib: u64 = limit.strip_suffix("Mi").context("a limit in Mi")?.parse()?;
    Ok(mib * 1024 * 1024)
}

/// This process's peak resident set, in bytes.
fn peak_rss() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kib * 1024)
}

/// A pod whose annotation is `size` bytes: the API server refuses it
/// (annotations are capped at 256 KiB), but only after the webhooks saw it.
fn oversized(name: &str, size: usize) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "big"},
            "annotations": {"example.com/blob": "x".repeat(size)}},
        "spec": {"containers": [{"name": "app", "image": "example.com/app:1"}]},
    }))?)
}

#[tokio::test]
async fn hostile_pod_creates_keep_the_operator_under_its_memory_limit() {
    const SIZE: usize = 2_500_000;
    const PODS: usize = 60;
    const AT_ONCE: usize = 6;
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("memory", |client, ns| async move {
            let limit = manifest_limit()?;
            let (operator, cps) = common::installed(&client, &ns, "edge-25.4.4").await?;
            let injected = format!("{ns}-meshed");
            common::injected_namespace(&client, &injected).await?;
            let before = peak_rss()?;
            for target in [ns.clone(), injected.clone()] {
                let pods: Api<Pod> = Api::namespaced(client.clone(), &target);
                let refused = futures::stream::iter(0..PODS)
                    .map(|i| {
                        let pods = pods.clone();
                        async move {
                            let pod = oversized(&format!("big-{i}"), SIZE)?;
                            anyhow::Ok(pods.create(&PostParams::default(), &pod).await.is_err())
                        }
                    })
                    .buffer_unordered(AT_ONCE)
                    .collect::<Vec<_>>()
                    .await;
                let refused = refused.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
                ensure!(
                    refused.iter().all(|r| *r),
                    "the API server stored a pod with a {SIZE}-byte annotation"
                );
            }
            // Still serving: an ordinary pod in the injected namespace is meshed.
            let pods: Api<Pod> = Api::namespaced(client.clone(), &injected);
            let ordinary: Pod = serde_json::from_value(json!({
                "metadata": {"name": "ordinary"},
                "spec": {"containers": [{"name": "app", "image": "example.com/app:1"}]},
            }))?;
            let created = pods.create(&PostParams::default(), &ordinary).await?;
            ensure!(
                created
                    .spec
                    .is_some_and(|s| s.containers.iter().any(|c| c.name == "linkerd-proxy")),
                "an ordinary pod was not injected after the flood"
            );
            let peak = peak_rss()?;
            eprintln!(
                "peak RSS {:.1} MiB (before the flood {:.1} MiB); limit {:.0} MiB",
                peak as f64 / 1048576.0,
                before as f64 / 1048576.0,
                limit as f64 / 1048576.0
            );
            ensure!(
                peak < limit,
                "peak RSS {peak} bytes is over the manifest's memory limit {limit}"
            );
            common::delete_control_plane(&cps, &ns).await?;
            operator.stop().await
        })
        .await;
}
