//! The policy controller's watch caches: every policy kind (read as JSON,
//! so one undecodable object is skipped instead of breaking a watch),
//! Services and Namespaces (metadata only) and Keelson's reports, each with
//! a flag for "listed once", and the snapshot the pure code works on.

use super::index::{Route, Snapshot};
use super::{GATEWAY_GROUP, POLICY_GROUP, report};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// A watch cache and whether it has synced once.
#[derive(Clone)]
pub(super) struct Cache<K: kube::Resource + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    pub(super) store: Store<K>,
    synced: Arc<AtomicBool>,
}

impl<K> Cache<K>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    fn start(
        api: Api<K>,
        config: watcher::Config,
        dyntype: K::DynamicType,
        what: String,
        changed: &Arc<Notify>,
    ) -> Self {
        let writer = reflector::store::Writer::new(dyntype);
        let store = writer.as_reader();
        let synced = Arc::new(AtomicBool::new(false));
        // managedFields are often most of an object and never read here.
        let events = watcher(api, config)
            .default_backoff()
            .modify(|o| o.managed_fields_mut().clear());
        let stream = reflector::reflector(writer, events);
        let (flag, changed) = (Arc::clone(&synced), Arc::clone(changed));
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        flag.store(true, Ordering::Release);
                        changed.notify_one();
                    }
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                        changed.notify_one()
                    }
                    Ok(_) => {}
                    // A CRD that is not installed (Gateway API is optional)
                    // fails here until it is; nothing is judged against it.
                    Err(e) => {
                        tracing::debug!(cache = %what, error = %e, "policy watch failed; retrying")
                    }
                }
            }
        });
        Self { store, synced }
    }

    fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The objects, if the cache has synced.
    fn objects(&self) -> Option<Vec<Arc<K>>> {
        self.synced().then(|| self.store.state())
    }
}

/// A cache of custom objects read as JSON: an object the typed code cannot
/// decode is skipped instead of breaking the watch.
type Dynamic = Cache<DynamicObject>;

impl Dynamic {
    fn custom(
        client: &Client,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        changed: &Arc<Notify>,
    ) -> Self {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
        Self::start(
            api,
            watcher::Config::default().page_size(50),
            ar,
            format!("{plural}.{group}"),
            changed,
        )
    }

    fn typed<K: DeserializeOwned>(&self) -> Option<Vec<K>> {
        Some(
            self.objects()?
                .iter()
                .filter_map(|o| {
                    let value = serde_json::to_value(o.as_ref()).ok()?;
                    serde_json::from_value(value)
                        .inspect_err(|e| {
                            let object = o.name_any();
                            tracing::debug!(%object, error = %e, "skipping an undecodable policy object");
                        })
                        .ok()
                })
                .collect(),
        )
    }

    fn routes(&self, group: &'static str) -> Option<Vec<Route>> {
        Some(
            self.objects()?
                .iter()
                .map(|o| {
                    Route::from_spec(
                        group,
                        &o.namespace().unwrap_or_default(),
                        &o.name_any(),
                        o.uid(),
                        &o.data["spec"],
                    )
                })
                .collect(),
        )
    }
}

pub(super) struct Caches {
    servers: Dynamic,
    authorization_policies: Dynamic,
    mesh_tls: Dynamic,
    network: Dynamic,
    policy_routes: Dynamic,
    gateway_routes: Dynamic,
    services: Cache<PartialObjectMeta<Service>>,
    pub(super) namespaces: Cache<PartialObjectMeta<Namespace>>,
    pub(super) reports: Cache<ConfigMap>,
}

impl Caches {
    pub(super) fn start(client: &Client, changed: &Arc<Notify>) -> Self {
        Self {
            servers: Dynamic::custom(
                client,
                POLICY_GROUP,
                "v1beta3",
                "Server",
                "servers",
                changed,
            ),
            authorization_policies: Dynamic::custom(
                client,
                POLICY_GROUP,
                "v1alpha1",
                "AuthorizationPolicy",
                "authorizationpolicies",
                changed,
            ),
            mesh_tls: Dynamic::custom(
                client,
                POLICY_GROUP,
                "v1alpha1",
                "MeshTLSAuthentication",
                "meshtlsauthentications",
                changed,
            ),
            network: Dynamic::custom(
                client,
                POLICY_GROUP,
                "v1alpha1",
                "NetworkAuthentication",
                "networkauthentications",
                changed,
            ),
            policy_routes: Dynamic::custom(
                client,
                POLICY_GROUP,
                "v1beta3",
                "HTTPRoute",
                "httproutes",
                changed,
            ),
            gateway_routes: Dynamic::custom(
                client,
                GATEWAY_GROUP,
                "v1",
                "HTTPRoute",
                "httproutes",
                changed,
            ),
            services: Cache::start(
                Api::all(client.clone()),
                watcher::Config::default().page_size(50),
                (),
                "services".into(),
                changed,
            ),
            namespaces: Cache::start(
                Api::all(client.clone()),
                watcher::Config::default().page_size(50),
                (),
                "namespaces".into(),
                changed,
            ),
            reports: Cache::start(
                Api::all(client.clone()),
                watcher::Config::default().labels(report::LABEL),
                (),
                "reports".into(),
                changed,
            ),
        }
    }

    /// Ready for a round: the kinds every report needs have synced.
    pub(super) fn ready(&self) -> bool {
        self.servers.synced() && self.authorization_policies.synced() && self.reports.synced()
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let names = |objects: Option<Vec<Arc<PartialObjectMeta<Service>>>>| {
            objects.map(|v| {
                v.iter()
                    .map(|o| (o.namespace().unwrap_or_default(), o.name_any()))
                    .collect()
            })
        };
        Snapshot {
            servers: self.servers.typed(),
            authorization_policies: self.authorization_policies.typed().unwrap_or_default(),
            mesh_tls: self.mesh_tls.typed(),
            network: self.network.typed(),
            policy_routes: self.policy_routes.routes(POLICY_GROUP),
            gateway_routes: self.gateway_routes.routes(GATEWAY_GROUP),
            services: names(self.services.objects()),
            namespaces: self
                .namespaces
                .objects()
                .map(|v| v.iter().map(|o| o.name_any()).collect()),
        }
    }
}
