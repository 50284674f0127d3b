//! Helpers shared by the operator's end-to-end tests.
#![allow(dead_code)] // each test binary uses its own subset

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use keelson_crds::ControlPlane;
use keelson_e2e::hollow;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(120);

/// Operator tests run one at a time: each starts an operator that reconciles
/// every ControlPlane in the cluster, and Linkerd allows one control plane per
/// cluster (some of its cluster-scoped objects have fixed names).
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The operator's ControlPlane controller, running in this process against
/// the real API server. Dropping or killing it stops it at once, as a crash
/// would: nothing it knew survives except what it wrote to the cluster.
pub struct Operator {
    task: tokio::task::JoinHandle<()>,
}

impl Operator {
    pub fn start(client: Client) -> Self {
        Self {
            task: tokio::spawn(keelson_operator::controlplane::run(
                client,
                std::future::pending(),
            )),
        }
    }

    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Images of a Deployment's containers.
pub fn images(deployment: Deployment) -> Vec<String> {
    deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.image)
        .collect()
}

pub fn condition(cp: &ControlPlane, type_: &str) -> Option<(String, String)> {
    cp.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Waits until `test` holds for the ControlPlane.
pub async fn wait_for(
    api: &Api<ControlPlane>,
    name: &str,
    what: &str,
    test: impl Fn(&ControlPlane) -> bool,
) -> anyhow::Result<ControlPlane> {
    let cond = move |cp: Option<&ControlPlane>| cp.is_some_and(&test);
    tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond))
        .await
        .with_context(|| format!("ControlPlane {name}: {what}"))??
        .context("ControlPlane deleted")
}

/// Ready, at `version`, with no version change under way.
pub async fn wait_converged(
    api: &Api<ControlPlane>,
    name: &str,
    version: &str,
) -> anyhow::Result<ControlPlane> {
    wait_for(api, name, &format!("not converged on {version}"), |cp| {
        let s = cp.status.clone().unwrap_or_default();
        condition(cp, "Ready").is_some_and(|(st, _)| st == "True")
            && s.current_version.as_deref() == Some(version)
            && s.upgrade.is_none()
    })
    .await
}

pub fn control_plane(
    name: &str,
    namespace: &str,
    version: &str,
    extra: serde_json::Value,
) -> ControlPlane {
    let mut spec =
        json!({"version": version, "namespace": namespace, "allowUnsupportedKubernetes": true});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("valid ControlPlane")
}

/// Tells the hollow nodes to crash-loop pods whose image contains `image`
/// (`None` lifts all faults).
pub async fn set_fault(client: &Client, image: Option<&str>) -> anyhow::Result<()> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), hollow::FAULTS_NAMESPACE);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": hollow::FAULTS_CONFIGMAP},
        "data": {hollow::FAULTS_KEY: image.unwrap_or("")}});
    cms.patch(
        hollow::FAULTS_CONFIGMAP,
        &PatchParams::apply("keelson-e2e").force(),
        &Patch::Apply(&cm),
    )
    .await?;
    Ok(())
}

pub async fn set_version(api: &Api<ControlPlane>, name: &str, version: &str) -> anyhow::Result<()> {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"version": version}})),
    )
    .await?;
    Ok(())
}
