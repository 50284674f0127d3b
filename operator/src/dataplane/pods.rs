//! Pods as the DataPlane controller caches them: the few facts a decision
//! reads, decoded straight from the watch.
//!
//! A decision reads of a pod its workload, its proxy's annotations, the
//! restart it came from, whether it is being deleted, and whether one of
//! its containers is stuck (a crash loop, an image that cannot be pulled).
//! Decoding the whole pod into these facts, and nothing else, lets the
//! crash-loop check read the cache instead of listing the pods of every
//! workload of a batch every few seconds; the spec and the rest of the
//! status are skipped unread. The facts are kept in a [`PodIndex`] by
//! namespace and name: a few hundred bytes a pod, where kube's reflector
//! store kept each pod's `ObjectMeta` (some 400 bytes of mostly empty fields
//! before any string) under an `ObjectRef` key, and a reconcile reads its
//! own namespace's pods instead of scanning the cluster's.

use super::observe::{CNI_REDIRECT_SHA256, POD_TEMPLATE_HASH, PROXY_VERSION, TRUST_ROOT_SHA256};
use crate::rollout::{Kind, PodProxy, RESTARTED_AT};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::watcher;
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::watch;

/// Waiting reasons a container does not leave on its own.
const STUCK: [&str; 4] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
];

/// A pod as the watch decodes it: its name, namespace and resource version
/// (which the watch resumes from), and its facts.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchedPod {
    metadata: ObjectMeta,
    pub facts: PodFacts,
}

/// What a decision reads of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// The workload it belongs to: its controller, or for a ReplicaSet's
    /// pod the Deployment the ReplicaSet is named after.
    pub owner: Option<(Kind, String)>,
    pub deleting: bool,
    pub proxy: PodProxy,
    /// [`RESTARTED_AT`]: the restart that made it.
    pub restarted_at: Option<String>,
    /// Its first container waiting in a state it does not leave on its own,
    /// and why: "container app is in CrashLoopBackOff: back-off ...".
    pub stuck: Option<String>,
}

impl PodFacts {
    /// Why the pod `name` cannot become ready, if it was made by the restart
    /// `token` and a container of it is stuck.
    pub fn stuck_in(&self, name: &str, token: &str) -> Option<String> {
        let stuck = self.stuck.as_deref()?;
        (self.restarted_at.as_deref() == Some(token)).then(|| format!("pod {name}: {stuck}"))
    }
}

/// One namespace's pods, by name.
pub type NamespacePods = HashMap<String, PodFacts>;

/// The watched pods' facts by namespace and name, filled from the watch's
/// events.
#[derive(Clone, Default)]
pub struct PodIndex {
    index: Arc<RwLock<Index>>,
    /// Whether the first list is in.
    ready: Arc<watch::Sender<bool>>,
}

#[derive(Default)]
struct Index {
    live: HashMap<String, NamespacePods>,
    /// The pods of a (re)list under way, which replace `live` once complete.
    listing: Option<HashMap<String, NamespacePods>>,
}

impl PodIndex {
    /// Applies a watch event; returns the namespaces whose pods' facts it
    /// changed (a pod added, changed or gone), whose DataPlanes are to be
    /// reconciled.
    pub fn apply(&self, event: watcher::Event<WatchedPod>) -> Vec<String> {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let key = |pod: WatchedPod| {
            let ObjectMeta {
                name, namespace, ..
            } = pod.metadata;
            (
                namespace.unwrap_or_default(),
                name.unwrap_or_default(),
                pod.facts,
            )
        };
        match event {
            watcher::Event::Init => {
                index.listing = Some(HashMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(pod) => {
                let (namespace, name, facts) = key(pod);
                let listing = index.listing.get_or_insert_default();
                listing.entry(namespace).or_default().insert(name, facts);
                Vec::new()
            }
            watcher::Event::InitDone => {
                let listed = index.listing.take().unwrap_or_default();
                let before = std::mem::replace(&mut index.live, listed);
                let live = &index.live;
                let mut changed: Vec<String> = live
                    .iter()
                    .filter(|(ns, pods)| before.get(*ns) != Some(*pods))
                    .map(|(ns, _)| ns.clone())
                    .collect();
                changed.extend(before.into_keys().filter(|ns| !live.contains_key(ns)));
                changed.sort();
                drop(index);
                self.ready.send_replace(true);
                changed
            }
            watcher::Event::Apply(pod) => {
                let (namespace, name, facts) = key(pod);
                // Most events are a known pod's status, which changes no
                // fact: looked up without copying the namespace's name.
                if !index.live.contains_key(&namespace) {
                    index.live.insert(namespace.clone(), NamespacePods::new());
                }
                let pods = index.live.get_mut(&namespace).expect("inserted above");
                match pods.get_mut(&name) {
                    Some(known) if *known == facts => Vec::new(),
                    Some(known) => {
                        *known = facts;
                        vec![namespace]
                    }
                    None => {
                        pods.insert(name, facts);
                        vec![namespace]
                    }
                }
            }
            watcher::Event::Delete(pod) => {
                let (namespace, name, _) = key(pod);
                let Some(pods) = index.live.get_mut(&namespace) else {
                    return Vec::new();
                };
                let known = pods.remove(&name).is_some();
                if pods.is_empty() {
                    index.live.remove(&namespace);
                }
                if known { vec![namespace] } else { Vec::new() }
            }
        }
    }

    /// Reads the pods of `namespace` (none: an empty map).
    pub fn read<T>(&self, namespace: &str, read: impl FnOnce(&NamespacePods) -> T) -> T {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        match index.live.get(namespace) {
            Some(pods) => read(pods),
            None => read(&NamespacePods::new()),
        }
    }

    /// Completes once the first list is in.
    pub async fn wait_ready(&self) {
        // The sender lives as long as the index, so this cannot fail.
        let _ = self.ready.subscribe().wait_for(|ready| *ready).await;
    }
}

impl kube::Resource for WatchedPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The parts of a pod's JSON that are read; serde skips the rest unread.
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    metadata: WireMeta,
    #[serde(default)]
    status: Option<WireStatus>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    resource_version: Option<String>,
    deletion_timestamp: Option<Time>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<WireOwner>>,
}

#[derive(Deserialize)]
struct WireOwner {
    kind: String,
    name: String,
    controller: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStatus {
    init_container_statuses: Option<Vec<WireContainer>>,
    container_statuses: Option<Vec<WireContainer>>,
}

#[derive(Deserialize)]
struct WireContainer {
    name: String,
    state: Option<WireState>,
}

#[derive(Deserialize)]
struct WireState {
    waiting: Option<WireWaiting>,
}

#[derive(Deserialize)]
struct WireWaiting {
    reason: Option<String>,
    message: Option<String>,
}

impl<'de> Deserialize<'de> for WatchedPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Wire { metadata, status } = Wire::deserialize(deserializer)?;
        let mut annotations = metadata.annotations.unwrap_or_default();
        let mut take = |key: &str| annotations.remove(key);
        let proxy = PodProxy {
            version: take(PROXY_VERSION),
            trust_root_sha256: take(TRUST_ROOT_SHA256),
            cni_redirect_sha256: take(CNI_REDIRECT_SHA256),
        };
        let restarted_at = take(RESTARTED_AT);
        let owner = metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .and_then(|controller| {
                let labels = metadata.labels.as_ref();
                owner(
                    controller,
                    labels
                        .and_then(|l| l.get(POD_TEMPLATE_HASH))
                        .map(String::as_str),
                )
            });
        let stuck = status.and_then(|s| {
            s.init_container_statuses
                .into_iter()
                .flatten()
                .chain(s.container_statuses.into_iter().flatten())
                .find_map(|c| {
                    let waiting = c.state?.waiting?;
                    let reason = waiting.reason?;
                    STUCK.contains(&reason.as_str()).then(|| {
                        let detail = waiting.message.map_or(String::new(), |m| format!(": {m}"));
                        format!("container {} is in {reason}{detail}", c.name)
                    })
                })
        });
        Ok(Self {
            metadata: ObjectMeta {
                name: metadata.name,
                namespace: metadata.namespace,
                resource_version: metadata.resource_version,
                ..ObjectMeta::default()
            },
            facts: PodFacts {
                owner,
                deleting: metadata.deletion_timestamp.is_some(),
                proxy,
                restarted_at,
                stuck,
            },
        })
    }
}

/// The workload of a pod whose controller is `controller`: a ReplicaSet's
/// pod belongs to the Deployment the ReplicaSet is named after
/// (`<deployment>-<pod-template-hash>`).
fn owner(controller: &WireOwner, template_hash: Option<&str>) -> Option<(Kind, String)> {
    match controller.kind.as_str() {
        "ReplicaSet" => {
            let deployment = controller
                .name
                .strip_suffix(template_hash?)?
                .strip_suffix('-')?;
            Some((Kind::Deployment, deployment.to_owned()))
        }
        kind => Some((Kind::parse(kind)?, controller.name.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(metadata: Value, status: Value) -> WatchedPod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": metadata,
            "spec": {"containers": [{"name": "app", "image": "x"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn owned_by(kind: &str, name: &str, labels: Value) -> WatchedPod {
        pod(
            json!({"name": "p", "namespace": "shop", "labels": labels,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "n"},
                {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": true},
            ]}),
            json!({}),
        )
    }

    #[test]
    fn a_pod_belongs_to_its_controller_or_its_replica_sets_deployment() {
        let hash = json!({POD_TEMPLATE_HASH: "5d9f"});
        let cases = [
            (
                owned_by("ReplicaSet", "web-api-5d9f", hash.clone()),
                Some((Kind::Deployment, "web-api")),
            ),
            (
                owned_by("StatefulSet", "db", json!({})),
                Some((Kind::StatefulSet, "db")),
            ),
            (
                owned_by("DaemonSet", "agent", json!({})),
                Some((Kind::DaemonSet, "agent")),
            ),
            // A ReplicaSet not named after the hash: no Deployment made it.
            (owned_by("ReplicaSet", "custom", hash), None),
            (owned_by("ReplicaSet", "web-5d9f", json!({})), None),
            (owned_by("Job", "report", json!({})), None),
        ];
        for (pod, expected) in cases {
            let expected = expected.map(|(k, n)| (k, n.to_owned()));
            assert_eq!(pod.facts.owner, expected, "{pod:?}");
        }
        // Owners that are not its controller do not count.
        let pod = pod(
            json!({"name": "p", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u"}]}),
            json!({}),
        );
        assert_eq!(pod.facts.owner, None);
    }

    #[test]
    fn only_name_namespace_and_the_read_annotations_are_kept() {
        let p = pod(
            json!({"name": "p", "namespace": "shop", "resourceVersion": "42", "uid": "u",
                "deletionTimestamp": "2025-01-01T00:00:00Z",
                "labels": {"app": "web"},
                "annotations": {PROXY_VERSION: "edge-25.10.7", TRUST_ROOT_SHA256: "abc",
                    CNI_REDIRECT_SHA256: "def", RESTARTED_AT: "w1", "other": "x"},
                "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]}),
            json!({"phase": "Running"}),
        );
        assert_eq!(
            p.facts,
            PodFacts {
                owner: None,
                deleting: true,
                proxy: PodProxy {
                    version: Some("edge-25.10.7".into()),
                    trust_root_sha256: Some("abc".into()),
                    cni_redirect_sha256: Some("def".into()),
                },
                restarted_at: Some("w1".into()),
                stuck: None,
            }
        );
        // The watch resumes from the resource version.
        assert_eq!(
            p.metadata,
            ObjectMeta {
                name: Some("p".into()),
                namespace: Some("shop".into()),
                resource_version: Some("42".into()),
                ..ObjectMeta::default()
            }
        );
    }

    #[test]
    fn a_container_stuck_waiting_is_told_only_for_pods_of_the_restart() {
        let waiting = |container: &str, reason: &str| {
            json!({"name": container, "image": "x", "imageID": "", "ready": false,
                "restartCount": 1, "state": {"waiting": {"reason": reason, "message": "back-off"}}})
        };
        let restarted = |token: &str, status: Value| {
            pod(
                json!({"name": "p-1", "annotations": {RESTARTED_AT: token}}),
                status,
            )
        };
        let crashing = restarted(
            "w2",
            json!({"containerStatuses": [
                waiting("linkerd-proxy", "ContainerCreating"),
                waiting("app", "CrashLoopBackOff"),
            ]}),
        );
        assert_eq!(
            crashing.facts.stuck_in("p-1", "w2").as_deref(),
            Some("pod p-1: container app is in CrashLoopBackOff: back-off")
        );
        // A pod of an earlier restart is not this restart's business.
        assert_eq!(crashing.facts.stuck_in("p-1", "w3"), None);
        // Init containers come first.
        let init = restarted(
            "w2",
            json!({"initContainerStatuses": [waiting("linkerd-init", "ImagePullBackOff")],
                "containerStatuses": [waiting("app", "CrashLoopBackOff")]}),
        );
        assert_eq!(
            init.facts.stuck.as_deref(),
            Some("container linkerd-init is in ImagePullBackOff: back-off")
        );
        // Waiting on the way up is not stuck; nor is a pod without status.
        let starting = restarted(
            "w2",
            json!({"containerStatuses": [waiting("app", "ContainerCreating")]}),
        );
        assert_eq!(starting.facts.stuck, None);
        assert_eq!(restarted("w2", Value::Null).facts.stuck, None);
    }

    fn in_ns(namespace: &str, name: &str, version: &str) -> WatchedPod {
        pod(
            json!({"name": name, "namespace": namespace, "annotations": {PROXY_VERSION: version}}),
            json!({}),
        )
    }

    fn names(index: &PodIndex, namespace: &str) -> Vec<(String, Option<String>)> {
        let mut pods: Vec<_> = index.read(namespace, |pods| {
            pods.iter()
                .map(|(name, f)| (name.clone(), f.proxy.version.clone()))
                .collect()
        });
        pods.sort();
        pods
    }

    #[tokio::test]
    async fn the_index_follows_the_watch_and_says_which_namespaces_changed() {
        use watcher::Event;
        let index = PodIndex::default();
        let ready = tokio::spawn({
            let index = index.clone();
            async move { index.wait_ready().await }
        });
        assert!(index.apply(Event::Init).is_empty());
        assert!(
            index
                .apply(Event::InitApply(in_ns("shop", "a", "v1")))
                .is_empty()
        );
        assert!(
            index
                .apply(Event::InitApply(in_ns("bank", "b", "v1")))
                .is_empty()
        );
        // Nothing is read before the list is complete.
        assert!(names(&index, "shop").is_empty());
        assert!(!ready.is_finished());
        assert_eq!(index.apply(Event::InitDone), ["bank", "shop"]);
        ready.await.unwrap();
        assert_eq!(names(&index, "shop"), [("a".into(), Some("v1".into()))]);

        // A change of what is read wakes the namespace; a repeat does not.
        assert_eq!(
            index.apply(Event::Apply(in_ns("shop", "a", "v2"))),
            ["shop"]
        );
        assert!(
            index
                .apply(Event::Apply(in_ns("shop", "a", "v2")))
                .is_empty()
        );
        assert_eq!(
            index.apply(Event::Apply(in_ns("shop", "c", "v2"))),
            ["shop"]
        );
        assert_eq!(
            index.apply(Event::Delete(in_ns("shop", "c", "v2"))),
            ["shop"]
        );
        assert!(
            index
                .apply(Event::Delete(in_ns("shop", "c", "v2")))
                .is_empty()
        );
        assert_eq!(
            index.apply(Event::Delete(in_ns("bank", "b", "v1"))),
            ["bank"]
        );
        assert!(names(&index, "bank").is_empty());

        // A relist replaces everything at its end, and wakes the namespaces
        // it changed: `shop` lost `a`, `media` is new; pods in the listing
        // are not read meanwhile.
        index.apply(Event::Init);
        index.apply(Event::InitApply(in_ns("media", "m", "v2")));
        assert_eq!(names(&index, "shop"), [("a".into(), Some("v2".into()))]);
        assert_eq!(index.apply(Event::InitDone), ["media", "shop"]);
        assert!(names(&index, "shop").is_empty());
        assert_eq!(names(&index, "media"), [("m".into(), Some("v2".into()))]);
    }
}
