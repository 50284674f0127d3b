//! The DataPlane controller's caches and what triggers its reconciles.
//!
//! Every kind is watched once: one reflector fills the cache the reconcile
//! reads and the same stream maps changes to the DataPlanes they concern.
//! Cached objects are pruned to what a decision needs (pods to their facts
//! in a [`PodIndex`], workloads without their pod spec), so thousands of
//! pods cost little memory.

use super::observe::{INJECT, TRUST_ROOTS};
use super::pods::{PodIndex, WatchedPod};
use crate::catalog::KubeVersion;
use crate::render::CONTROL_PLANE_LABEL;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_crds::{ControlPlane, DataPlane};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind, PartialObjectMeta};
use kube::runtime::controller::{ReconcileRequest, trigger_self, trigger_with};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Page size of initial lists: smaller pages keep the peak of a relist low.
const PAGE: u32 = 50;

/// What the reconcile reads, filled by the watches.
#[derive(Clone)]
pub struct Caches {
    pub data_planes: Store<DataPlane>,
    pub control_planes: Store<ControlPlane>,
    /// The trust-roots ConfigMaps of control planes.
    pub trust_roots: Store<ConfigMap>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub deployments: Store<Deployment>,
    pub stateful_sets: Store<StatefulSet>,
    pub daemon_sets: Store<DaemonSet>,
    pub pods: PodIndex,
    /// PodDisruptionBudgets, policy/v1 or (before Kubernetes 1.21) v1beta1.
    pub budgets: Store<DynamicObject>,
}

impl Caches {
    /// Completes once every cache but the DataPlanes' holds its first full
    /// list. Call it from one task only: a store wakes just the last of its
    /// concurrent waiters. The controller's applier already waits on the
    /// DataPlane store before its first reconcile; waiting on it here too
    /// made the two race, and the loser (this wait, at times) never woke.
    pub async fn wait_ready(&self) {
        let _ = tokio::join!(
            self.control_planes.wait_until_ready(),
            self.trust_roots.wait_until_ready(),
            self.namespaces.wait_until_ready(),
            self.deployments.wait_until_ready(),
            self.stateful_sets.wait_until_ready(),
            self.daemon_sets.wait_until_ready(),
            self.pods.wait_ready(),
            self.budgets.wait_until_ready(),
        );
    }
}

type Queue = BoxStream<'static, Result<ReconcileRequest<DataPlane>, watcher::Error>>;

/// The caches, and the stream of DataPlanes to reconcile that fills them
/// as it is polled.
pub fn watch(client: &Client, kubernetes: KubeVersion) -> (Caches, Queue) {
    let (data_planes, dp_writer) = reflector::store();
    let dp_stream = reflector::reflector(
        dp_writer,
        watcher(
            Api::<DataPlane>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .applied_objects()
    // Its own status writes need no reconcile.
    .predicate_filter(predicates::generation, Default::default());
    let mut queue: Vec<Queue> = vec![trigger_self(dp_stream, ()).boxed()];

    // Namespaced kinds wake the DataPlanes of their namespace; cluster-wide
    // inputs of the target wake them all.
    let in_namespace = {
        let dps = data_planes.clone();
        move |ns: Option<String>| -> Vec<ObjectRef<DataPlane>> {
            dps.state()
                .iter()
                .filter(|dp| dp.namespace() == ns)
                .map(|dp| ObjectRef::from_obj(dp.as_ref()))
                .collect()
        }
    };
    let everywhere = {
        let dps = data_planes.clone();
        move || -> Vec<ObjectRef<DataPlane>> {
            dps.state()
                .iter()
                .map(|dp| ObjectRef::from_obj(dp.as_ref()))
                .collect()
        }
    };
    let mut namespaced = |stream: BoxStream<'static, Result<Option<String>, watcher::Error>>| {
        let map = in_namespace.clone();
        queue.push(trigger_with(stream, map).boxed());
    };

    let (deployments, s) = cache(
        Api::all(client.clone()),
        watcher::Config::default().page_size(PAGE),
        prune_workload::<Deployment>,
    );
    namespaced(s.map(|r| r.map(|d: Deployment| d.namespace())).boxed());
    let (stateful_sets, s) = cache(
        Api::all(client.clone()),
        watcher::Config::default().page_size(PAGE),
        prune_workload::<StatefulSet>,
    );
    namespaced(s.map(|r| r.map(|d: StatefulSet| d.namespace())).boxed());
    let (daemon_sets, s) = cache(
        Api::all(client.clone()),
        watcher::Config::default().page_size(PAGE),
        prune_workload::<DaemonSet>,
    );
    namespaced(s.map(|r| r.map(|d: DaemonSet| d.namespace())).boxed());
    // Whole pods, not their metadata: a stuck container shows only in the
    // status, and decoding reads just that of it. Pods change status all
    // the time; only a change of their facts wakes their namespace.
    let pods = PodIndex::default();
    let s = watcher(
        Api::<WatchedPod>::all(client.clone()),
        watcher::Config::default().page_size(PAGE),
    )
    .default_backoff()
    .flat_map({
        let pods = pods.clone();
        move |event| {
            let woken: Vec<Result<Option<String>, watcher::Error>> = match event {
                Ok(event) => pods
                    .apply(event)
                    .into_iter()
                    .map(|ns| Ok(Some(ns)))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(woken)
        }
    });
    namespaced(s.boxed());
    let (namespaces, s) = cache(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default().page_size(PAGE),
        prune_namespace,
    );
    namespaced(s.map(|r| r.map(|n| Some(n.name_any()))).boxed());

    let budget_resource = {
        // policy/v1 arrived in Kubernetes 1.21.
        let version = if kubernetes
            < (KubeVersion {
                major: 1,
                minor: 21,
            }) {
            "v1beta1"
        } else {
            "v1"
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("policy", version, "PodDisruptionBudget"),
            "poddisruptionbudgets",
        )
    };
    let budget_writer = Writer::new(budget_resource.clone());
    let budgets = budget_writer.as_reader();
    let s = watcher(
        Api::<DynamicObject>::all_with(client.clone(), &budget_resource),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|o: &mut DynamicObject| o.metadata.managed_fields = None)
    .reflect(budget_writer)
    .touched_objects();
    namespaced(s.map(|r| r.map(|b| b.namespace())).boxed());

    let (control_planes, s) = cache(
        Api::<ControlPlane>::all(client.clone()),
        watcher::Config::default(),
        |cp: &mut ControlPlane| cp.metadata.managed_fields = None,
    );
    let all = everywhere.clone();
    queue.push(trigger_with(s, move |_| all()).boxed());
    let (trust_roots, s) = cache(
        Api::<ConfigMap>::all(client.clone()),
        watcher::Config::default()
            .labels(CONTROL_PLANE_LABEL)
            .fields(&format!("metadata.name={TRUST_ROOTS}")),
        |cm: &mut ConfigMap| cm.metadata.managed_fields = None,
    );
    queue.push(trigger_with(s, move |_| everywhere()).boxed());

    let caches = Caches {
        data_planes,
        control_planes,
        trust_roots,
        namespaces,
        deployments,
        stateful_sets,
        daemon_sets,
        pods,
        budgets,
    };
    (caches, futures::stream::select_all(queue).boxed())
}

/// A cache of `api`, pruned by `prune`, and the stream of changed objects
/// that fills it as it is polled.
fn cache<K>(
    api: Api<K>,
    config: watcher::Config,
    prune: impl FnMut(&mut K) + Send + 'static,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(prune)
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// Keeps the annotations in `keep` and drops the rest of what no decision
/// reads: managed fields and `kubectl apply`'s copy of the object.
fn prune_meta(meta: &mut ObjectMeta, keep: &[&str]) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| keep.contains(&k.as_str()));
    }
}

/// Workloads keep their metadata, selector, strategy, status and template
/// metadata; the pod spec (containers, volumes) is never read.
fn prune_workload<K: Pruned>(w: &mut K) {
    prune_meta(w.meta_mut(), &[]);
    w.drop_pod_spec();
}

/// The parts of a workload's spec the DataPlane controller never reads.
trait Pruned {
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    fn drop_pod_spec(&mut self);
}

impl Pruned for Deployment {
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn drop_pod_spec(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            spec.template.spec = None;
        }
    }
}

impl Pruned for StatefulSet {
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn drop_pod_spec(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            spec.template.spec = None;
            spec.volume_claim_templates = None;
        }
    }
}

impl Pruned for DaemonSet {
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn drop_pod_spec(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            spec.template.spec = None;
        }
    }
}

fn prune_namespace(ns: &mut PartialObjectMeta<Namespace>) {
    prune_meta(&mut ns.metadata, &[INJECT]);
    ns.metadata.labels = None::<BTreeMap<String, String>>;
}
