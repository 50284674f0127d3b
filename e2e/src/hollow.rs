//! Hollow nodes: Nodes with no kubelet and no containers behind them.
//!
//! The agent plays kubelet for every pod the scheduler binds to a hollow node:
//! it reports the pod Running and Ready (so Deployments become available) and
//! finishes graceful deletions. A pod with an image listed in the ConfigMap
//! `kube-system/hollow-node-faults` (key `failImages`, one image substring per
//! line) is reported as crash-looping instead, which lets tests make a rollout
//! fail on purpose.

use crate::Error;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

pub const FAULTS_CONFIGMAP: &str = "hollow-node-faults";
pub const FAULTS_NAMESPACE: &str = "kube-system";
pub const FAULTS_KEY: &str = "failImages";

/// Label every hollow node carries.
pub const HOLLOW_LABEL: &str = "keelson.dev/hollow-node";

/// Pods a status update is in flight for at once.
const CONCURRENCY: usize = 32;

/// Creates the nodes, reports them Ready with room for many pods, and removes
/// the not-ready taint the API server puts on new nodes (no node lifecycle
/// controller runs to do it).
pub async fn register_nodes(client: &Client, names: &[String]) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    for (i, name) in names.iter().enumerate() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {
                HOLLOW_LABEL: "true",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            }},
        }))
        .expect("static node");
        if nodes
            .get_opt(name)
            .await
            .map_err(Error::kube("reading nodes"))?
            .is_none()
        {
            nodes
                .create(&PostParams::default(), &node)
                .await
                .map_err(Error::kube(format!("creating node {name}")))?;
        }
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let resources = json!({"cpu": "64", "memory": "256Gi", "pods": "1000"});
        let status = json!({"status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "HollowNodeReady",
                "message": "hollow node run by the keelson e2e harness",
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }],
            "addresses": [
                {"type": "InternalIP", "address": node_ip(i)},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kubeletVersion": format!("v{}-hollow", crate::cluster::KUBERNETES_VERSION),
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
                "containerRuntimeVersion": "hollow://0", "kernelVersion": "", "osImage": "hollow",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        }});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(Error::kube(format!("reporting node {name} ready")))?;
        let current = nodes
            .get(name)
            .await
            .map_err(Error::kube(format!("reading node {name}")))?;
        let taints = current.spec.and_then(|s| s.taints).unwrap_or_default();
        let kept: Vec<_> = taints
            .iter()
            .filter(|t| !t.key.starts_with("node.kubernetes.io/not-ready"))
            .collect();
        if kept.len() != taints.len() {
            nodes
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"taints": kept}})),
                )
                .await
                .map_err(Error::kube(format!("untainting node {name}")))?;
        }
    }
    Ok(())
}

/// Node addresses from a documentation-only range: nothing ever connects to them.
fn node_ip(i: usize) -> String {
    format!("10.250.{}.{}", i / 250, i % 250 + 1)
}

/// Plays kubelet for the named nodes until the task is dropped.
pub async fn run_agent(client: Client, nodes: Vec<String>) -> Result<(), Error> {
    let agent = Arc::new(Agent {
        pods: Api::all(client.clone()),
        nodes: nodes.into_iter().collect(),
        faults: RwLock::new(Vec::new()),
        next_ip: AtomicU32::new(0),
    });
    let (store, writer) = reflector::store();
    let pods = {
        let agent = agent.clone();
        reflector::reflector(
            writer,
            watcher(agent.pods.clone(), watcher::Config::default()),
        )
        .default_backoff()
        .applied_objects()
        // A watch error (the API server restarting) is retried after a
        // backoff; the relist that follows brings every pod back.
        .filter_map(|pod| async move {
            pod.inspect_err(
                |e| tracing::warn!(error = %e, "hollow nodes: pod watch failed; retrying"),
            )
            .ok()
        })
        .for_each_concurrent(CONCURRENCY, move |pod| {
            let agent = agent.clone();
            async move { agent.sync(&pod).await }
        })
    };
    let faults = watch_faults(client, agent, store);
    tokio::select! {
        () = pods => Err(Error::AgentStopped("pod watch ended".into())),
        stopped = faults => stopped,
    }
}

/// Keeps the list of failing images current, and re-reports every known pod
/// when it changes so that a fault declared after a pod started applies to it.
async fn watch_faults(client: Client, agent: Arc<Agent>, store: Store<Pod>) -> Result<(), Error> {
    let cms: Api<ConfigMap> = Api::namespaced(client, FAULTS_NAMESPACE);
    let config = watcher::Config::default().fields(&format!("metadata.name={FAULTS_CONFIGMAP}"));
    let mut events = std::pin::pin!(watcher(cms, config).default_backoff());
    // What a relist found; it replaces the current faults once the relist is
    // complete, so a ConfigMap deleted while the watch was down is noticed.
    let mut relisted = Vec::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "hollow nodes: fault watch failed; retrying");
                continue;
            }
        };
        let images = match event {
            watcher::Event::Init => {
                relisted.clear();
                continue;
            }
            watcher::Event::InitApply(cm) => {
                relisted = fault_images(&cm);
                continue;
            }
            watcher::Event::InitDone => std::mem::take(&mut relisted),
            watcher::Event::Apply(cm) => fault_images(&cm),
            watcher::Event::Delete(_) => Vec::new(),
        };
        *agent.faults.write().expect("not poisoned") = images;
        futures::stream::iter(store.state())
            .for_each_concurrent(CONCURRENCY, |pod| {
                let agent = agent.clone();
                async move { agent.sync(&pod).await }
            })
            .await;
    }
    Err(Error::AgentStopped("fault watch ended".into()))
}

fn fault_images(cm: &ConfigMap) -> Vec<String> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(FAULTS_KEY))
        .map(|v| {
            v.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

struct Agent {
    pods: Api<Pod>,
    nodes: HashSet<String>,
    faults: RwLock<Vec<String>>,
    next_ip: AtomicU32,
}

impl Agent {
    /// Brings one pod's reported state in line with what a kubelet would show.
    /// Errors are logged and left to the next event: the watch redelivers.
    async fn sync(&self, pod: &Pod) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) else {
            return;
        };
        if !self.nodes.contains(node) {
            return;
        }
        let (name, ns) = (pod.name_any(), pod.namespace().unwrap_or_default());
        let api: Api<Pod> = Api::namespaced(self.pods.clone().into_client(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = api.delete(&name, &params).await
                && !is_gone(&e)
            {
                tracing::warn!(pod = %name, namespace = %ns, error = %e, "finishing deletion");
            }
            return;
        }
        let failing = self.is_faulty(pod);
        if reported(pod) == Some(!failing) {
            return;
        }
        let status = self.status_for(pod, failing);
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            && !is_gone(&e)
        {
            tracing::warn!(pod = %name, namespace = %ns, error = %e, "reporting pod status");
        }
    }

    fn is_faulty(&self, pod: &Pod) -> bool {
        let faults = self.faults.read().expect("not poisoned");
        containers(pod).any(|c| {
            let image = c.image.as_deref().unwrap_or_default();
            faults.iter().any(|f| image.contains(f.as_str()))
        })
    }

    fn status_for(&self, pod: &Pod, failing: bool) -> serde_json::Value {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let status = pod.status.as_ref();
        let pod_ip = status.and_then(|s| s.pod_ip.clone()).unwrap_or_else(|| {
            let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
            format!("10.244.{}.{}", (n / 250) % 256, n % 250 + 1)
        });
        let started = status
            .and_then(|s| s.start_time.clone())
            .unwrap_or(now.clone());
        let ready = if failing { "False" } else { "True" };
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let container_status = |c: &k8s_openapi::api::core::v1::Container, init: bool| {
            let image = c.image.clone().unwrap_or_default();
            let state = if init {
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": started}})
            } else if failing {
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": "hollow node told to fail this image"}})
            } else {
                json!({"running": {"startedAt": started}})
            };
            json!({
                "name": c.name, "image": image, "imageID": format!("hollow://{image}"),
                "containerID": format!("hollow://{uid}/{}", c.name),
                "ready": init || !failing, "started": init || !failing,
                "restartCount": if failing && !init { 1 } else { 0 },
                "state": state,
            })
        };
        let init: Vec<_> = spec
            .and_then(|s| s.init_containers.as_ref())
            .into_iter()
            .flatten()
            .map(|c| container_status(c, true))
            .collect();
        let main: Vec<_> = spec
            .into_iter()
            .flat_map(|s| &s.containers)
            .map(|c| container_status(c, false))
            .collect();
        let condition = |kind: &str, status: &str| json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
        json!({"status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": started,
            "conditions": [
                condition("PodScheduled", "True"),
                condition("Initialized", "True"),
                condition("ContainersReady", ready),
                condition("Ready", ready),
            ],
            "initContainerStatuses": init,
            "containerStatuses": main,
        }})
    }
}

fn containers(pod: &Pod) -> impl Iterator<Item = &k8s_openapi::api::core::v1::Container> {
    pod.spec.iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .chain(s.containers.iter())
    })
}

/// `Some(ready)` when the pod already shows what the agent reports, `None`
/// when the agent has not reported it yet.
fn reported(pod: &Pod) -> Option<bool> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") || status.pod_ip.is_none() {
        return None;
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")?;
    Some(ready.status == "True")
}

fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}
