//! The proxy injector's handler: gathers what one decision needs from the
//! operator's caches (never from the API server, so a pod's admission costs
//! no round trip), asks [`crate::inject`], and answers with the patch.

use super::events::Notice;
use super::memo::{Memo, Remembered};
use crate::catalog::{self, KubeVersion, Release};
use crate::inject::{self, Owner};
use crate::render::proxy::{TRUST_ROOTS, published_digest, trust_bundle};
use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keelson_crds::dataplane::VersionPolicy;
use keelson_crds::{ControlPlane, DataPlane};
use keelson_webhooks::admission::Answer;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The caches the injector reads, filled by the operator's watches.
#[derive(Clone)]
pub struct Caches {
    pub control_planes: Store<ControlPlane>,
    pub data_planes: Store<DataPlane>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub replica_sets: Store<PartialObjectMeta<ReplicaSet>>,
    /// Keelson-labelled ConfigMaps; the trust roots are among them.
    pub config_maps: Store<ConfigMap>,
}

pub struct Injector {
    pub caches: Caches,
    pub kubernetes: KubeVersion,
    /// Keelson's own namespace, never injected.
    pub keelson_namespace: String,
    /// Events go out through a queue so publishing never delays admission.
    pub notices: mpsc::Sender<Notice>,
    /// For the owner of a pod whose ReplicaSet is newer than the cache (the
    /// ReplicaSet controller creates pods right after their ReplicaSet).
    pub client: Option<Client>,
    /// Decisions already made, by their inputs.
    pub memo: Memo,
}

/// A pod as a review carries it: its JSON text, the memo's key, decoded in
/// full only for a pod the injector has not decided on before; and its
/// metadata, which finds its workload and DataPlane.
/// A pod's workload, and whether it was found as the pod names it.
struct Resolved {
    reference: OwnerReference,
    verified: bool,
}

pub struct SubmittedPod {
    pub text: Box<RawValue>,
    pub metadata: ObjectMeta,
    /// Where its spec is in `text`.
    spec: Option<std::ops::Range<usize>>,
}

impl<'de> Deserialize<'de> for SubmittedPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let super::raw::Parts {
            text,
            metadata,
            spec,
        } = super::raw::parts(deserializer)?;
        Ok(Self {
            text,
            metadata,
            spec,
        })
    }
}

impl SubmittedPod {
    /// What its injection is decided from, for the memo.
    fn shape(&self) -> super::memo::PodShape<'_> {
        super::memo::PodShape {
            text: self.text.get(),
            metadata: &self.metadata,
            spec: self.spec.clone().map_or("null", |at| &self.text.get()[at]),
        }
    }
}

impl k8s_openapi::Resource for SubmittedPod {
    const API_VERSION: &'static str = Pod::API_VERSION;
    const GROUP: &'static str = Pod::GROUP;
    const KIND: &'static str = Pod::KIND;
    const VERSION: &'static str = Pod::VERSION;
    const URL_PATH_SEGMENT: &'static str = Pod::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for SubmittedPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Injector {
    pub async fn admit(&self, req: AdmissionRequest<SubmittedPod>) -> Answer {
        let allow = AdmissionResponse::from(&req);
        if req.operation != Operation::Create
            || req.kind.kind != "Pod"
            || !req.kind.group.is_empty()
        {
            return allow.into();
        }
        let Some(pod) = &req.object else {
            return allow.deny("the request carries no pod").into();
        };
        // The API server always sends a name or generateName; a patch for a
        // pod without metadata could not be applied to what was sent.
        if pod.metadata == ObjectMeta::default() {
            return allow.deny("the pod has no metadata").into();
        }
        // Pods created through a controller have no namespace in the body
        // yet; the request names it.
        let namespace = req
            .namespace
            .clone()
            .or_else(|| pod.metadata.namespace.clone())
            .unwrap_or_default();

        let Some(cp) = self.control_plane(&namespace) else {
            return allow.into();
        };
        if namespace == "kube-system"
            || namespace == cp.spec.namespace
            || namespace == self.keelson_namespace
            || cp.metadata.deletion_timestamp.is_some()
        {
            return allow.into();
        }
        let owner = self.owner(&pod.metadata, &namespace).await;
        let release = match self.release(&cp, &namespace, &pod.metadata) {
            Ok(release) => release,
            Err(message) => {
                self.notify(
                    owner.as_ref(),
                    &namespace,
                    EventType::Warning,
                    "InjectionSkipped",
                    message,
                );
                return allow.into();
            }
        };
        let trust_roots = self.trust_roots(&cp);
        let Some(anchors) = trust_roots.as_deref().and_then(trust_bundle) else {
            // Injecting without the bundle would give the proxy no way to
            // verify anyone; the pod starts unmeshed and a DataPlane wave
            // meshes it once identity is up.
            self.notify(
                owner.as_ref(),
                &namespace,
                EventType::Warning,
                "InjectionSkipped",
                format!(
                    "Linkerd sidecar proxy injection skipped: the trust bundle ({}/{TRUST_ROOTS}) does not exist yet",
                    cp.spec.namespace
                ),
            );
            return allow.into();
        };
        let cached_ns = self.caches.namespaces.get(&ObjectRef::new(&namespace));
        let unknown_ns;
        let ns_meta = match &cached_ns {
            Some(ns) => &ns.metadata,
            None => {
                unknown_ns = ObjectMeta {
                    name: Some(namespace.clone()),
                    ..ObjectMeta::default()
                };
                &unknown_ns
            }
        };
        let context = inject::Context {
            control_plane: cp.metadata.name.as_deref().unwrap_or_default(),
            spec: &cp.spec,
            release,
            kubernetes: self.kubernetes,
            trust_anchors_pem: anchors,
            trust_root_sha256: trust_roots.as_deref().and_then(published_digest),
            cni_redirect_sha256: cp
                .status
                .as_ref()
                .and_then(|s| s.cni.as_ref()?.redirect_sha256.as_deref()),
            namespace: ns_meta,
            owner: owner.as_ref().map(|o| Owner {
                kind: o.reference.kind.clone(),
                name: o.reference.name.clone(),
            }),
        };
        // Only a pod not seen before is decoded in full.
        let decision = self.memo.decide(&cp, &context, &pod.shape(), || {
            let mut pod: Pod = serde_json::from_str(pod.text.get())?;
            pod.metadata.namespace = Some(namespace.clone());
            Ok::<_, serde_json::Error>(inject::inject(&context, &pod))
        });
        let decision = match decision {
            Ok(decision) => decision,
            Err(unreadable) => {
                return allow
                    .deny(format!("the Pod cannot be read: {unreadable}"))
                    .into();
            }
        };
        match decision {
            Remembered::Patch(patch) => {
                self.notify(
                    owner.as_ref(),
                    &namespace,
                    EventType::Normal,
                    "Injected",
                    format!("Linkerd sidecar proxy {} injected", release.version),
                );
                Answer::patched(allow, patch)
            }
            Remembered::Refuse(refusal) => {
                // As Linkerd's injector answers a chart that will not render:
                // the pod is denied, and the ReplicaSet's FailedCreate and
                // this Event on the workload say which annotation to change.
                let message = format!("Linkerd sidecar proxy injection refused: {refusal}");
                self.notify(
                    owner.as_ref(),
                    &namespace,
                    EventType::Warning,
                    "InjectionRefused",
                    message.clone(),
                );
                allow.deny(message).into()
            }
            Remembered::Skip(reason) => {
                if reason != inject::SkipReason::NotEnabled {
                    self.notify(
                        owner.as_ref(),
                        &namespace,
                        EventType::Normal,
                        "InjectionSkipped",
                        format!("Linkerd sidecar proxy injection skipped: {reason}"),
                    );
                }
                allow.into()
            }
        }
    }

    /// The ControlPlane the namespace's pods mesh with: the one its
    /// DataPlane names, or the cluster's only one.
    fn control_plane(&self, namespace: &str) -> Option<std::sync::Arc<ControlPlane>> {
        let named = self
            .caches
            .data_planes
            .find(|dp| {
                dp.metadata.namespace.as_deref() == Some(namespace)
                    && dp.spec.control_plane.is_some()
            })
            .and_then(|dp| dp.spec.control_plane.clone());
        match named {
            Some(name) => self.caches.control_planes.get(&ObjectRef::new(&name)),
            None => {
                let mut all = self.caches.control_planes.state();
                all.sort_by_key(|cp| cp.name_any());
                all.into_iter().next()
            }
        }
    }

    /// The release whose proxy the pod gets: its DataPlane's pin, else the
    /// control plane's running version (its target before the first install).
    fn release(
        &self,
        cp: &ControlPlane,
        namespace: &str,
        pod: &ObjectMeta,
    ) -> Result<&'static Release, String> {
        let pinned = self
            .caches
            .data_planes
            .find(|dp| {
                dp.metadata.namespace.as_deref() == Some(namespace)
                    && dp.spec.proxy_version.policy == VersionPolicy::Pinned
                    && Self::selects(dp, pod)
            })
            .and_then(|dp| dp.spec.proxy_version.version.clone());
        let version = pinned.unwrap_or_else(|| {
            cp.status
                .as_ref()
                .and_then(|s| s.current_version.clone())
                .unwrap_or_else(|| cp.spec.version.clone())
        });
        catalog::find(&version).map_err(|e| {
            format!("Linkerd sidecar proxy injection skipped: proxy version {version}: {e}")
        })
    }

    /// Whether a DataPlane selects the pod. At admission only the pod is
    /// known; its labels are its workload's template labels.
    fn selects(dp: &DataPlane, pod: &ObjectMeta) -> bool {
        let labels = pod.labels.as_ref();
        Selector::try_from(dp.spec.selector.clone())
            .is_ok_and(|selector| selector.matches(labels.unwrap_or(&BTreeMap::new())))
    }

    /// The ConfigMap holding the control plane's trust bundle.
    fn trust_roots(&self, cp: &ControlPlane) -> Option<Arc<ConfigMap>> {
        self.caches
            .config_maps
            .get(&ObjectRef::new(TRUST_ROOTS).within(&cp.spec.namespace))
    }

    /// The workload that owns the pod, as Linkerd's injector resolves it: a
    /// ReplicaSet's Deployment, a Job's CronJob, else the pod's controller.
    /// It is `verified` when the controller the pod names was found with
    /// the UID the pod gives it: only then does Keelson write Events about
    /// it, so a review forged with made-up owners (sent straight to the
    /// webhook port) cannot make Keelson write Events about any name.
    async fn owner(&self, pod: &ObjectMeta, namespace: &str) -> Option<Resolved> {
        let controller = controller_of(pod.owner_references.as_deref().unwrap_or_default())?;
        let named = |meta: Option<&ObjectMeta>| {
            meta.is_some_and(|m| m.uid.as_deref() == Some(controller.uid.as_str()))
        };
        if controller.kind == "Job" {
            // Jobs are few and short-lived: asked for, not cached.
            let job = self.metadata_of::<Job>(namespace, &controller.name).await;
            let cron_job = job
                .as_ref()
                .and_then(|j| j.owner_references.as_deref())
                .and_then(controller_of)
                .filter(|o| o.kind == "CronJob");
            return Some(Resolved {
                reference: cron_job.unwrap_or(controller).clone(),
                verified: named(job.as_ref()),
            });
        }
        if controller.kind != "ReplicaSet" {
            // StatefulSets and DaemonSets are asked for, as Jobs are; other
            // controllers name themselves for the proxy on the pod's word,
            // and get no Event.
            let meta = match (controller.api_version.as_str(), controller.kind.as_str()) {
                ("apps/v1", "StatefulSet") => {
                    self.metadata_of::<StatefulSet>(namespace, &controller.name)
                        .await
                }
                ("apps/v1", "DaemonSet") => {
                    self.metadata_of::<DaemonSet>(namespace, &controller.name)
                        .await
                }
                _ => None,
            };
            return Some(Resolved {
                reference: controller.clone(),
                verified: named(meta.as_ref()),
            });
        }
        let cached = self
            .caches
            .replica_sets
            .get(&ObjectRef::new(&controller.name).within(namespace));
        let fetched;
        let metadata = match &cached {
            Some(rs) => Some(&rs.metadata),
            None => {
                fetched = self
                    .metadata_of::<ReplicaSet>(namespace, &controller.name)
                    .await;
                fetched.as_ref()
            }
        };
        let deployment = metadata
            .and_then(|m| m.owner_references.as_deref())
            .and_then(controller_of)
            .filter(|o| o.kind == "Deployment");
        Some(Resolved {
            reference: deployment.unwrap_or(controller).clone(),
            verified: named(metadata),
        })
    }

    /// The metadata of `K` `name` in `namespace`, asked of the API server;
    /// `None` when it is not there, cannot be read, or there is no client
    /// (unit tests).
    async fn metadata_of<K>(&self, namespace: &str, name: &str) -> Option<ObjectMeta>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let client = self.client.as_ref()?;
        Api::<K>::namespaced(client.clone(), namespace)
            .get_metadata_opt(name)
            .await
            .ok()
            .flatten()
            .map(|o| o.metadata)
    }

    /// Queues an Event on the pod's workload (the pod has no UID yet, so an
    /// Event cannot point at it). Pods without a workload get none.
    fn notify(
        &self,
        owner: Option<&Resolved>,
        namespace: &str,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let Some(owner) = owner.filter(|o| o.verified).map(|o| &o.reference) else {
            return;
        };
        let reference = ObjectReference {
            api_version: Some(owner.api_version.clone()),
            kind: Some(owner.kind.clone()),
            name: Some(owner.name.clone()),
            namespace: Some(namespace.to_owned()),
            uid: Some(owner.uid.clone()),
            ..ObjectReference::default()
        };
        // A full queue means the API server is slow to take Events; dropping
        // one is better than slowing pod creation.
        let _ = self.notices.try_send(Notice {
            reference,
            type_,
            reason: reason.to_owned(),
            note,
        });
    }
}

fn controller_of(refs: &[OwnerReference]) -> Option<&OwnerReference> {
    refs.iter().find(|r| r.controller == Some(true))
}

/// A cache holding `objects`, as a synced watch would: for tests and
/// benchmarks that run the injector without an API server.
pub fn store_of<K>(objects: impl IntoIterator<Item = K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let mut writer = kube::runtime::reflector::store::Writer::<K>::default();
    for object in objects {
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(object));
    }
    writer.as_reader()
}

impl Caches {
    /// Completes once every cache has its first full list.
    pub async fn wait_ready(&self) {
        let _ = tokio::join!(
            self.control_planes.wait_until_ready(),
            self.data_planes.wait_until_ready(),
            self.namespaces.wait_until_ready(),
            self.replica_sets.wait_until_ready(),
            self.config_maps.wait_until_ready(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    const ANCHORS: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn control_plane(installed: Option<&str>) -> ControlPlane {
        from(json!({
            "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
            "metadata": {"name": "mesh"},
            "spec": {"version": "edge-25.10.7", "namespace": "linkerd"},
            "status": {"currentVersion": installed},
        }))
    }

    struct Fixture {
        control_planes: Vec<ControlPlane>,
        data_planes: Vec<DataPlane>,
        trust_roots: bool,
    }

    impl Default for Fixture {
        fn default() -> Self {
            Self {
                control_planes: vec![control_plane(Some("edge-25.4.4"))],
                data_planes: vec![],
                trust_roots: true,
            }
        }
    }

    impl Fixture {
        fn injector(self) -> (Injector, mpsc::Receiver<Notice>) {
            let (notices, queued) = mpsc::channel(16);
            let namespaces = ["apps", "plain", "linkerd", "keelson", "kube-system"].map(|name| {
                let annotations = if name == "plain" {
                    json!({})
                } else {
                    json!({"linkerd.io/inject": "enabled"})
                };
                from::<PartialObjectMeta<Namespace>>(json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "annotations": annotations},
                }))
            });
            let roots = self.trust_roots.then(|| {
                from::<ConfigMap>(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": TRUST_ROOTS, "namespace": "linkerd"},
                    "data": {crate::render::proxy::TRUST_ROOTS_KEY: ANCHORS},
                }))
            });
            let replica_set = from::<PartialObjectMeta<ReplicaSet>>(json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": "web-abc", "namespace": "apps", "uid": "rs-1", "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                    "uid": "d-1", "controller": true}]},
            }));
            let injector = Injector {
                caches: Caches {
                    control_planes: store_of(self.control_planes),
                    data_planes: store_of(self.data_planes),
                    namespaces: store_of(namespaces),
                    replica_sets: store_of([replica_set]),
                    config_maps: store_of(roots),
                },
                kubernetes: KubeVersion::try_from("1.28".to_owned()).unwrap(),
                keelson_namespace: "keelson".into(),
                notices,
                client: None,
                memo: Default::default(),
            };
            (injector, queued)
        }
    }

    fn pod(replica_set: &str, labels: Value) -> Pod {
        from(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "labels": labels, "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replica_set,
                "uid": "rs-1", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "example.com/app:1"}]},
        }))
    }

    fn request(namespace: &str, pod: &Pod) -> AdmissionRequest<SubmittedPod> {
        request_of(namespace, serde_json::to_value(pod).unwrap())
    }

    /// The review of `object`, which need not be a valid pod.
    fn request_of(namespace: &str, object: Value) -> AdmissionRequest<SubmittedPod> {
        let review: kube::core::admission::AdmissionReview<SubmittedPod> = from(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE", "namespace": namespace,
                "userInfo": {}, "object": object,
            },
        }));
        review.try_into().unwrap()
    }

    #[tokio::test]
    async fn a_pod_of_a_deployment_is_injected_and_its_deployment_told() {
        let (injector, mut queued) = Fixture::default().injector();
        let response = injector
            .admit(request("apps", &pod("web-abc", json!({}))))
            .await;
        assert!(response.response.allowed);
        let patch: Value = serde_json::from_slice(&response.patch.unwrap().decode()).unwrap();
        let added = patch.to_string();
        assert!(added.contains("linkerd-proxy"), "{added}");
        assert!(
            added.contains("edge-25.4.4"),
            "the running version, not the spec's: {added}"
        );
        let notice = queued.try_recv().unwrap();
        assert_eq!(notice.reason, "Injected");
        assert_eq!(
            (
                notice.reference.kind.as_deref(),
                notice.reference.name.as_deref()
            ),
            (Some("Deployment"), Some("web"))
        );
        assert_eq!(notice.reference.uid.as_deref(), Some("d-1"));
    }

    #[tokio::test]
    async fn keelson_inject_writes_into_a_template_what_the_webhook_patches_into_its_pods() {
        let labels = json!({"app": "web"});
        let submitted = pod("web-abc", labels.clone());
        let (injector, _queued) = Fixture::default().injector();
        let answer = injector.admit(request("apps", &submitted)).await;
        let mut admitted = serde_json::to_value(&submitted).unwrap();
        let ops: json_patch::Patch =
            serde_json::from_slice(&answer.patch.unwrap().decode()).unwrap();
        json_patch::patch(&mut admitted, &ops).unwrap();

        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {"selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": serde_json::to_value(submitted.spec.as_ref().unwrap()).unwrap()}},
        });
        let cp = control_plane(Some("edge-25.4.4"));
        let offline = inject::manifests::Offline {
            control_plane: "mesh",
            spec: &cp.spec,
            // The release the cluster's control plane runs, as the webhook
            // injects it.
            release: catalog::find("edge-25.4.4").unwrap(),
            kubernetes: injector.kubernetes,
            trust_anchors_pem: ANCHORS,
            trust_root_sha256: None,
            cni_redirect_sha256: None,
        };
        let (yaml, _) = inject::manifests::inject_manifests(
            &yaml_serde::to_string(&deployment).unwrap(),
            &offline,
        )
        .unwrap();
        let injected: Value = yaml_serde::from_str(yaml.trim_start_matches("---\n")).unwrap();
        let template = &injected["spec"]["template"];
        assert_eq!(template["spec"], admitted["spec"]);
        assert_eq!(
            template["metadata"]["labels"],
            admitted["metadata"]["labels"]
        );
        assert_eq!(
            template["metadata"]["annotations"],
            admitted["metadata"]["annotations"]
        );
        assert!(template["spec"].to_string().contains("linkerd-proxy"));
    }

    /// A pod of `web-abc` whose API token volume is named as Kubernetes
    /// 1.21 on names it, with a random suffix.
    fn pod_with_token(random: &str) -> Pod {
        let volume = format!("kube-api-access-{random}");
        let mut pod = pod("web-abc", json!({"app": "web"}));
        let spec = pod.spec.as_mut().unwrap();
        spec.containers[0].volume_mounts = Some(vec![from(json!({
            "name": volume, "readOnly": true,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}))]);
        spec.volumes = Some(vec![from(json!({"name": volume, "projected": {
            "sources": [{"serviceAccountToken": {"path": "token"}}]}}))]);
        pod
    }

    #[tokio::test]
    async fn pods_differing_in_their_token_volume_name_share_a_decision_each_with_its_own_name() {
        let patch_of = |r: Answer| String::from_utf8(r.patch.unwrap().decode()).unwrap();
        let (remembering, _queued) = Fixture::default().injector();
        let first = patch_of(
            remembering
                .admit(request("apps", &pod_with_token("x7k2p")))
                .await,
        );
        assert!(first.contains("\"kube-api-access-x7k2p\""), "{first}");
        for random in ["q9z4m", "x7k2p", "bb2c4"] {
            let pod = pod_with_token(random);
            let remembered = patch_of(remembering.admit(request("apps", &pod)).await);
            // What an injector that never saw another pod answers.
            let (fresh, _queued) = Fixture::default().injector();
            let rendered = patch_of(fresh.admit(request("apps", &pod)).await);
            assert_eq!(remembered, rendered, "{random}");
            assert_eq!(
                remembered
                    .matches(&format!("\"kube-api-access-{random}\""))
                    .count(),
                2,
                "the proxy's and linkerd-init's mounts: {remembered}"
            );
        }
        // Only the volume's name is left out of the key: a pod that differs
        // otherwise is decided afresh.
        let mut tuned = pod_with_token("q9z4m");
        tuned.metadata.annotations = Some(
            [(
                "config.linkerd.io/proxy-cpu-request".to_owned(),
                "250m".to_owned(),
            )]
            .into(),
        );
        let tuned = patch_of(remembering.admit(request("apps", &tuned)).await);
        assert!(tuned.contains("250m") && tuned.contains("kube-api-access-q9z4m"));
    }

    #[tokio::test]
    async fn pods_of_one_spec_share_a_decision_whatever_their_names_and_labels() {
        let patch_of = |r: Answer| String::from_utf8(r.patch.unwrap().decode()).unwrap();
        let (remembering, _queued) = Fixture::default().injector();
        let variants = [
            pod("web-abc", json!({"app": "web", "pod-template-hash": "abc"})),
            pod("web-abc", json!({"app": "web", "pod-template-hash": "def"})),
            {
                let mut named = pod("web-abc", json!({"app": "web"}));
                named.metadata.generate_name = None;
                named.metadata.name = Some("web-standalone".into());
                named
            },
        ];
        for variant in &variants {
            let remembered = patch_of(remembering.admit(request("apps", variant)).await);
            let (fresh, _queued) = Fixture::default().injector();
            let rendered = patch_of(fresh.admit(request("apps", variant)).await);
            assert_eq!(remembered, rendered);
        }
        assert_eq!(remembering.memo.held().0, 1, "one decision for the three");
        // Whether there are labels at all is read (the patch adds the map),
        // and so are the annotations and the spec.
        let unlabelled = pod("web-abc", json!({}));
        let mut annotated = pod("web-abc", json!({"app": "web"}));
        annotated.metadata.annotations =
            Some([("example.com/team".to_owned(), "a".to_owned())].into());
        let mut other_image = pod("web-abc", json!({"app": "web"}));
        other_image.spec.as_mut().unwrap().containers[0].image = Some("example.com/app:2".into());
        for (i, variant) in [unlabelled, annotated, other_image].iter().enumerate() {
            let remembered = patch_of(remembering.admit(request("apps", variant)).await);
            let (fresh, _queued) = Fixture::default().injector();
            assert_eq!(
                remembered,
                patch_of(fresh.admit(request("apps", variant)).await)
            );
            assert_eq!(remembering.memo.held().0, 2 + i);
        }
    }

    #[tokio::test]
    async fn a_changed_control_plane_is_decided_afresh() {
        let (mut injector, _queued) = Fixture::default().injector();
        let mut writer = kube::runtime::reflector::store::Writer::<ControlPlane>::default();
        injector.caches.control_planes = writer.as_reader();
        let mut apply = |log_level: &str| {
            let mut cp = control_plane(Some("edge-25.4.4"));
            cp.spec.proxy.log_level = log_level.to_owned();
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(cp));
        };
        apply("warn,linkerd=info");
        let web = pod("web-abc", json!({}));
        let patch_of = |r: Answer| String::from_utf8(r.patch.unwrap().decode()).unwrap();
        let before = patch_of(injector.admit(request("apps", &web)).await);
        assert!(before.contains("warn,linkerd=info"), "{before}");
        apply("debug");
        let after = patch_of(injector.admit(request("apps", &web)).await);
        assert!(
            after.contains("\"debug,") && !after.contains("warn,linkerd=info"),
            "{after}"
        );
    }

    #[tokio::test]
    async fn a_pod_that_cannot_be_read_is_denied() {
        let (injector, _queued) = Fixture::default().injector();
        // Its metadata reads, so it is decoded in full, which fails.
        let broken = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-"},
            "spec": {"containers": "not a list"}});
        let answer = injector.admit(request_of("apps", broken)).await;
        assert!(!answer.response.allowed);
        let message = &answer.response.result.message;
        assert!(message.starts_with("the Pod cannot be read"), "{message}");
    }

    #[tokio::test]
    async fn identical_pods_share_a_decision_and_any_difference_makes_a_new_one() {
        let (injector, mut queued) = Fixture::default().injector();
        let patch_of = |r: Answer| r.patch.map(|p| String::from_utf8(p.decode()).unwrap());
        let web = pod("web-abc", json!({}));
        let first = patch_of(injector.admit(request("apps", &web)).await);
        let second = patch_of(injector.admit(request("apps", &web)).await);
        assert!(first.is_some());
        assert_eq!(first, second);
        // Each pod is still told about, remembered or not.
        assert_eq!(queued.try_recv().unwrap().reason, "Injected");
        assert_eq!(queued.try_recv().unwrap().reason, "Injected");

        let mut tuned = web.clone();
        tuned.metadata.annotations = Some(
            [(
                "config.linkerd.io/proxy-cpu-request".to_owned(),
                "250m".to_owned(),
            )]
            .into(),
        );
        let third = patch_of(injector.admit(request("apps", &tuned)).await).unwrap();
        assert!(third.contains("250m"), "{third}");
        let mut disabled = web;
        disabled.metadata.annotations =
            Some([("linkerd.io/inject".to_owned(), "disabled".to_owned())].into());
        let response = injector.admit(request("apps", &disabled)).await;
        assert!(response.response.allowed && response.patch.is_none());
    }

    #[tokio::test]
    async fn a_forged_owner_gets_no_event() {
        let (injector, mut queued) = Fixture::default().injector();
        // A ReplicaSet nobody has, and a known one under another UID.
        let mut forged = pod("payments-api-xyz", json!({}));
        injector.admit(request("apps", &forged)).await;
        forged = pod("web-abc", json!({}));
        forged.metadata.owner_references.as_mut().unwrap()[0].uid = "not-rs-1".into();
        let answer = injector.admit(request("apps", &forged)).await;
        assert!(answer.patch.is_some(), "the pod is still injected");
        // A StatefulSet Keelson cannot look up (no client here).
        let mut stateful = pod("web-abc", json!({}));
        let owner = &mut stateful.metadata.owner_references.as_mut().unwrap()[0];
        (owner.kind, owner.name) = ("StatefulSet".into(), "db".into());
        injector.admit(request("apps", &stateful)).await;
        assert!(
            queued.try_recv().is_err(),
            "an Event about an unverified owner"
        );
        // The real one is told.
        injector
            .admit(request("apps", &pod("web-abc", json!({}))))
            .await;
        assert_eq!(queued.try_recv().unwrap().reason, "Injected");
    }

    #[tokio::test]
    async fn the_memo_keeps_only_injections_of_ordinary_pods_within_its_budget() {
        let (injector, _queued) = Fixture::default().injector();
        let mut skipped = pod("web-abc", json!({}));
        skipped.metadata.annotations =
            Some([("linkerd.io/inject".to_owned(), "disabled".to_owned())].into());
        injector.admit(request("apps", &skipped)).await;
        assert_eq!(injector.memo.held(), (0, 0), "a skip was remembered");
        // Megabytes of annotations (the API server refuses the pod later):
        // injected, not remembered.
        let mut huge = pod("web-abc", json!({}));
        huge.metadata.annotations =
            Some([("example.com/blob".to_owned(), "x".repeat(2_500_000))].into());
        let answer = injector.admit(request("apps", &huge)).await;
        assert!(answer.patch.is_some(), "the huge pod was not injected");
        assert_eq!(injector.memo.held(), (0, 0), "a huge pod was remembered");
        // Distinct pods fill the budget, never more.
        let mut most = 0;
        for i in 0..1500 {
            let mut web = pod("web-abc", json!({"app": "web"}));
            web.metadata.annotations =
                Some([("example.com/n".to_owned(), format!("{i}{}", "p".repeat(60)))].into());
            injector.admit(request("apps", &web)).await;
            let (entries, bytes) = injector.memo.held();
            assert!(bytes <= super::super::memo::BUDGET, "{bytes} bytes held");
            most = most.max(entries);
        }
        assert!(most > 100, "the memo held at most {most} decisions");
    }

    #[tokio::test]
    async fn a_pod_linkerds_chart_refuses_is_denied_naming_the_annotation() {
        let (injector, mut queued) = Fixture::default().injector();
        let mut refused = pod("web-abc", json!({}));
        refused.metadata.annotations = Some(
            [(
                "config.linkerd.io/proxy-log-http-headers".to_owned(),
                "on".to_owned(),
            )]
            .into(),
        );
        let answer = injector.admit(request("apps", &refused)).await;
        assert!(!answer.response.allowed && answer.patch.is_none());
        let message = &answer.response.result.message;
        assert!(
            message.contains("config.linkerd.io/proxy-log-http-headers"),
            "{message}"
        );
        let notice = queued.try_recv().unwrap();
        assert_eq!(
            (notice.reason.as_str(), notice.type_),
            ("InjectionRefused", EventType::Warning)
        );
        assert_eq!(&notice.note, message);
    }

    #[tokio::test]
    async fn system_and_control_plane_namespaces_are_never_injected() {
        let (injector, _queued) = Fixture::default().injector();
        for ns in ["kube-system", "linkerd", "keelson"] {
            let response = injector
                .admit(request(
                    ns,
                    &pod("x", json!({"linkerd.io/inject": "enabled"})),
                ))
                .await;
            assert!(
                response.response.allowed && response.patch.is_none(),
                "{ns}"
            );
        }
    }

    #[tokio::test]
    async fn without_a_control_plane_or_trust_bundle_pods_pass_untouched() {
        let (injector, _) = Fixture {
            control_planes: vec![],
            ..Fixture::default()
        }
        .injector();
        let response = injector
            .admit(request("apps", &pod("web-abc", json!({}))))
            .await;
        assert!(response.response.allowed && response.patch.is_none());

        let (injector, mut queued) = Fixture {
            trust_roots: false,
            ..Fixture::default()
        }
        .injector();
        let response = injector
            .admit(request("apps", &pod("web-abc", json!({}))))
            .await;
        assert!(response.response.allowed && response.patch.is_none());
        let notice = queued.try_recv().unwrap();
        assert_eq!(notice.reason, "InjectionSkipped");
        assert!(notice.note.contains(TRUST_ROOTS), "{}", notice.note);
    }

    #[tokio::test]
    async fn the_owner_is_the_deployment_when_the_replica_set_is_known() {
        let (injector, _) = Fixture::default().injector();
        let known = injector
            .owner(&pod("web-abc", json!({})).metadata, "apps")
            .await
            .unwrap();
        assert!(known.verified);
        let known = known.reference;
        assert_eq!(
            (known.kind.as_str(), known.name.as_str()),
            ("Deployment", "web")
        );
        // Not yet in the cache and no client to ask: the ReplicaSet itself.
        let unknown = injector
            .owner(&pod("web-new", json!({})).metadata, "apps")
            .await
            .unwrap();
        assert!(
            !unknown.verified,
            "an unknown ReplicaSet was taken at the pod's word"
        );
        let unknown = unknown.reference;
        assert_eq!(
            (unknown.kind.as_str(), unknown.name.as_str()),
            ("ReplicaSet", "web-new")
        );
    }

    #[test]
    fn the_release_follows_a_pinning_data_plane_then_the_control_plane() {
        let pinned: DataPlane = from(json!({
            "apiVersion": "keelson.dev/v1alpha1", "kind": "DataPlane",
            "metadata": {"name": "legacy", "namespace": "apps"},
            "spec": {"selector": {"matchLabels": {"tier": "legacy"}},
                     "proxyVersion": {"policy": "Pinned", "version": "edge-24.11.8"}},
        }));
        let (injector, _) = Fixture {
            data_planes: vec![pinned],
            ..Fixture::default()
        }
        .injector();
        let cp = control_plane(Some("edge-25.4.4"));
        let version = |ns: &str, labels: Value| {
            injector
                .release(&cp, ns, &pod("web-abc", labels).metadata)
                .unwrap()
                .version
                .to_string()
        };
        assert_eq!(version("apps", json!({"tier": "legacy"})), "edge-24.11.8");
        assert_eq!(version("apps", json!({"tier": "web"})), "edge-25.4.4");
        // The DataPlane only speaks for its own namespace.
        assert_eq!(version("plain", json!({"tier": "legacy"})), "edge-25.4.4");
        // Before the first install completes, the version being installed.
        let installing = control_plane(None);
        let release = injector
            .release(&installing, "plain", &pod("x", json!({})).metadata)
            .unwrap();
        assert_eq!(release.version.to_string(), "edge-25.10.7");
    }
}
