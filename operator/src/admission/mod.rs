//! Keelson's admission webhooks, run by every operator replica (no leader:
//! the API server may call any of them): the proxy injector and the
//! validator for keelson.dev and Linkerd policy objects, served over TLS by
//! `keelson-webhooks`. Only the leader writes the webhook configurations.

pub mod certs;
pub mod configurations;
mod events;
pub mod injector;
pub mod memo;
mod raw;
pub mod validate;

use crate::apply::{Applier, ApplyError};
use crate::catalog::KubeVersion;
use crate::leader::Leadership;
use crate::metrics::{Metrics, WebhookDecisionLabels, WebhookLabels};
use crate::render::CONTROL_PLANE_LABEL;
use bytes::Bytes;
use configurations::{Endpoint, INJECT_PATH, INJECTOR, VALIDATE_PATH, Webhooks};
use futures::{Stream, StreamExt};
use http::{Request, Response, StatusCode};
use injector::{Caches, Injector};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_crds::controlplane::AdoptionPhase;
use keelson_crds::{ControlPlane, DataPlane};
use keelson_webhooks::admission::{Answer, review};
use keelson_webhooks::{CertResolver, Handler, Limits, Routes, WebhookCa};
use kube::api::Api;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use raw::RawObject;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// Why the admission server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "Secret {namespace}/{} does not hold a usable CA: {detail}",
        certs::CA_SECRET
    )]
    CaSecret { namespace: String, detail: String },
    #[error(transparent)]
    Tls(#[from] keelson_webhooks::TlsError),
}

/// Where the admission server listens and how the API server reaches it.
#[derive(Clone, Debug)]
pub struct Config {
    /// Keelson's namespace: the CA Secret's home, never injected.
    pub namespace: String,
    pub endpoint: Endpoint,
    /// The namespaces Keelson's install granted it for control planes
    /// (`controlplane::namespace::claim`); `None`: any.
    pub control_plane_namespaces: Option<Vec<String>>,
}

impl Config {
    /// Names the serving certificate must carry for the API server to
    /// accept it.
    fn serving_names(&self) -> Vec<String> {
        match &self.endpoint {
            Endpoint::Service {
                namespace, name, ..
            } => vec![
                format!("{name}.{namespace}.svc"),
                format!("{name}.{namespace}.svc.cluster.local"),
            ],
            Endpoint::Url(url) => {
                let host = url
                    .split_once("://")
                    .map_or(url.as_str(), |(_, rest)| rest)
                    .split(['/', '?'])
                    .next()
                    .unwrap_or_default();
                // Strip the port, minding bracketed IPv6 literals.
                let host = match host.strip_prefix('[') {
                    Some(v6) => v6.split(']').next().unwrap_or_default(),
                    None => host.rsplit_once(':').map_or(host, |(h, _)| h),
                };
                vec![host.to_owned()]
            }
        }
    }
}

/// Routes admission reviews to the injector and the validator.
pub struct Admission {
    injector: Injector,
    metrics: Arc<Metrics>,
    /// [`Config::control_plane_namespaces`].
    control_plane_namespaces: Option<Vec<String>>,
}

impl Handler for Admission {
    async fn handle(&self, request: Request<Bytes>) -> Response<Bytes> {
        let start = Instant::now();
        // `error` unless a handler answers: the review could not be read.
        let mut decided = "error";
        let outcome = &mut decided;
        let (webhook, response) = match request.uri().path() {
            INJECT_PATH => {
                let response = review(request, |req| async move {
                    let answer = self.injector.admit(req).await;
                    *outcome = decision(&answer);
                    answer
                })
                .await;
                ("inject", response)
            }
            VALIDATE_PATH => {
                let response = review::<RawObject, _, _, _>(request, |req| async move {
                    let answer = Answer::from(self.validate(&req).await);
                    *outcome = decision(&answer);
                    answer
                })
                .await;
                ("validate", response)
            }
            _ => {
                return Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Bytes::from_static(b"not found\n"))
                    .expect("a static response is valid");
            }
        };
        self.metrics
            .webhook_duration
            .get_or_create(&WebhookLabels { webhook })
            .observe(start.elapsed().as_secs_f64());
        self.metrics
            .webhook_requests
            .get_or_create(&WebhookDecisionLabels {
                webhook,
                decision: decided,
            })
            .inc();
        response
    }
}

/// What an answer decided, for the metrics.
fn decision(answer: &Answer) -> &'static str {
    match (answer.response.allowed, answer.patch.is_some()) {
        (false, _) => "denied",
        (true, true) => "patched",
        (true, false) => "allowed",
    }
}

impl Admission {
    pub fn new(injector: Injector, metrics: Arc<Metrics>) -> Self {
        Self {
            injector,
            metrics,
            control_plane_namespaces: None,
        }
    }

    /// Refuses ControlPlanes naming a namespace outside `namespaces` (the
    /// install's grant); `None`: any.
    pub fn granting(mut self, namespaces: Option<Vec<String>>) -> Self {
        self.control_plane_namespaces = namespaces;
        self
    }

    async fn validate(&self, req: &AdmissionRequest<RawObject>) -> AdmissionResponse {
        let response = AdmissionResponse::from(req);
        if !matches!(req.operation, Operation::Create | Operation::Update) {
            return response;
        }
        let problems = match (req.kind.group.as_str(), req.kind.kind.as_str()) {
            ("keelson.dev", "ControlPlane") => match decode::<ControlPlane>(req) {
                Ok((new, old)) => {
                    let others: Vec<String> = self
                        .injector
                        .caches
                        .control_planes
                        .state()
                        .iter()
                        .map(|cp| cp.name_any())
                        .collect();
                    let mut problems = validate::control_plane(&new, old.as_ref(), &others);
                    problems.extend(self.namespace_problem(&new, old.as_ref()).await);
                    Ok(problems)
                }
                Err(e) => Err(e),
            },
            ("keelson.dev", "DataPlane") => {
                decode::<DataPlane>(req).map(|(new, _)| validate::data_plane(&new))
            }
            (group, kind) => {
                let Some(object) = &req.object else {
                    return response.deny("the request carries no object");
                };
                let namespace = req.namespace.clone().unwrap_or_default();
                let value: serde_json::Value = match object.decode() {
                    Ok(value) => value,
                    Err(message) => return response.deny(message),
                };
                let rules = self.policy_rules();
                match crate::policy::validate::object(group, kind, &namespace, &value, rules) {
                    Some(problems) => Ok(problems),
                    None => return response,
                }
            }
        };
        match problems {
            Ok(problems) if problems.is_empty() => response,
            Ok(problems) => response.deny(validate::describe(&problems)),
            Err(message) => response.deny(message),
        }
    }
}

impl Admission {
    /// The policy validator's rules of the releases the cluster's
    /// ControlPlanes ask for (the strictest, so nothing passes that one of
    /// their Linkerd validators would refuse); with none, the newest
    /// catalog release's.
    fn policy_rules(&self) -> crate::policy::validate::Rules {
        use crate::policy::validate::Rules;
        let state = self.injector.caches.control_planes.state();
        let releases = state
            .iter()
            .filter_map(|cp| crate::catalog::find(&cp.spec.version).ok());
        Rules::strictest(releases)
            .unwrap_or_else(|| Rules::of(crate::catalog::releases().last().expect("a catalog")))
    }

    /// A ControlPlane that would take a namespace that is not its own: the
    /// same rule the reconciler applies before its first write, judged
    /// from the namespace cache when the namespace is named (a create, or
    /// a change before anything was installed).
    ///
    /// A refusal is judged again from the namespace as the API server holds
    /// it: a GitOps sync labels the namespace (hands it over) and applies
    /// the ControlPlane in one go, and the cache may not have seen the
    /// label yet.
    async fn namespace_problem(
        &self,
        cp: &ControlPlane,
        old: Option<&ControlPlane>,
    ) -> Vec<validate::Invalid> {
        let mut problems = Vec::new();
        if old.is_none_or(|o| o.spec.namespace != cp.spec.namespace) {
            problems.extend(
                self.claim_problem(cp, "spec.namespace", &cp.spec.namespace)
                    .await,
            );
        }
        // CNI mode's namespace is taken by the same rule.
        let old_cni = old.and_then(|o| o.spec.cni.as_ref()).map(|c| &c.namespace);
        if let Some(cni) = &cp.spec.cni
            && old_cni != Some(&cni.namespace)
        {
            problems.extend(
                self.claim_problem(cp, "spec.cni.namespace", &cni.namespace)
                    .await,
            );
        }
        problems
    }

    /// Whether `cp` may take `namespace`, named by `field`.
    async fn claim_problem(
        &self,
        cp: &ControlPlane,
        field: &str,
        namespace: &str,
    ) -> Option<validate::Invalid> {
        let judge = |existing: Option<&kube::core::ObjectMeta>| {
            match crate::controlplane::namespace::claim(
                &cp.name_any(),
                cp.metadata.uid.as_deref(),
                namespace,
                existing,
                self.control_plane_namespaces.as_deref(),
            ) {
                crate::controlplane::namespace::Claim::Refused(message) => {
                    Some(validate::Invalid {
                        field: field.into(),
                        message,
                    })
                }
                _ => None,
            }
        };
        let cached = self
            .injector
            .caches
            .namespaces
            .get(&kube::runtime::reflector::ObjectRef::new(namespace));
        let problem = judge(cached.as_ref().map(|n| &n.metadata))?;
        let Some(client) = &self.injector.client else {
            return Some(problem);
        };
        match Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .get_metadata_opt(namespace)
            .await
        {
            Ok(live) => judge(live.as_ref().map(|n| &n.metadata)),
            // Unreadable now: the cache's judgement stands.
            Err(_) => Some(problem),
        }
    }
}

/// The object under review and its previous version, typed.
fn decode<K: DeserializeOwned>(
    req: &AdmissionRequest<RawObject>,
) -> Result<(K, Option<K>), String> {
    let new = req
        .object
        .as_ref()
        .ok_or("the request carries no object")?
        .decode()?;
    let old = req.old_object.as_ref().map(RawObject::decode).transpose()?;
    Ok((new, old))
}

/// Runs the admission server on `listener` until `shutdown`: loads the CA,
/// fills the caches, keeps the webhook configurations pointed at this
/// server while `leadership` says so, and serves. Readiness turns true once
/// the caches are filled.
///
/// The caller binds the listener, so the API server's calls queue in its
/// backlog from that moment on, even while the CA is still being loaded.
pub async fn run(
    client: Client,
    config: Config,
    listener: TcpListener,
    kubernetes: KubeVersion,
    metrics: Arc<Metrics>,
    leadership: Leadership,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdmissionError> {
    let ca = certs::ca(&client, &config.namespace).await?;
    metrics.certificate_expires("webhook-ca", ca.not_after());
    let names = config.serving_names();
    let (key, not_after) = certs::issue(&ca, &names)?;
    // The CA in use: the Secret's, as `certs::follow` keeps it.
    let (ca_source, ca) = watch::channel(ca);
    metrics.certificate_expires("webhook-serving", not_after);
    let resolver = Arc::new(CertResolver::new(key));
    let tls = keelson_webhooks::server_config(Arc::clone(&resolver))?;

    let changed = Arc::new(Notify::new());
    let caches = Caches {
        control_planes: cache(
            Api::all(client.clone()),
            watcher::Config::default(),
            Some(&changed),
        ),
        data_planes: cache(Api::all(client.clone()), watcher::Config::default(), None),
        namespaces: metadata_cache::<Namespace>(&client, |_| {}),
        // Only a ReplicaSet's UID and controller are read (a pod's
        // Deployment); there are ten per Deployment by default.
        replica_sets: metadata_cache::<ReplicaSet>(&client, |meta| {
            let ObjectMeta {
                name,
                namespace,
                uid,
                owner_references,
                ..
            } = std::mem::take(meta);
            *meta = ObjectMeta {
                name,
                namespace,
                uid,
                owner_references: owner_references.map(|o| {
                    o.into_iter()
                        .filter(|o| o.controller == Some(true))
                        .collect()
                }),
                ..ObjectMeta::default()
            };
        }),
        config_maps: cache(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default().labels(CONTROL_PLANE_LABEL),
            None,
        ),
    };
    let (notices, queued) = events::queue();
    let reporter = Reporter {
        controller: "keelson".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    tokio::spawn(events::publish(
        Recorder::new(client.clone(), reporter),
        queued,
    ));
    let injector = Injector {
        caches: caches.clone(),
        kubernetes,
        keelson_namespace: config.namespace.clone(),
        notices,
        client: Some(client.clone()),
        memo: Default::default(),
    };

    let ready = Arc::new(AtomicBool::new(false));
    let routes = Routes::new(
        Admission::new(injector, Arc::clone(&metrics))
            .granting(config.control_plane_namespaces.clone()),
        Arc::clone(&ready),
    );
    let follow = tokio::spawn(certs::follow(
        client.clone(),
        config.namespace.clone(),
        ca_source,
        Arc::clone(&metrics),
    ));
    let renewal = tokio::spawn(certs::renew(
        ca.clone(),
        names,
        resolver,
        not_after,
        Arc::clone(&metrics),
    ));
    let background = tokio::spawn({
        let ready = Arc::clone(&ready);
        async move {
            // One task waits for the caches: kube's Store readiness wakes
            // only the last of several concurrent waiters.
            caches.wait_ready().await;
            ready.store(true, Ordering::Release);
            tracing::info!("admission caches synced; webhooks ready");
            configure(client, config, ca, caches, changed, leadership).await;
        }
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "serving admission webhooks");
    }
    let stop = async move {
        shutdown.await;
        // Fail readiness first so endpoints drop this replica while it drains.
        ready.store(false, Ordering::Release);
    };
    keelson_webhooks::serve(listener, tls, routes, Limits::default(), stop).await;
    follow.abort();
    renewal.abort();
    background.abort();
    Ok(())
}

/// A reflector-backed cache of `api`, kept by a background task. `changed`
/// is notified on every change.
fn cache<K>(api: Api<K>, config: watcher::Config, changed: Option<&Arc<Notify>>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    pruned_cache(api, config, changed, |_| {})
}

/// [`cache`], whose objects' metadata `prune` cuts to what is read.
fn pruned_cache<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: Option<&Arc<Notify>>,
    prune: fn(&mut ObjectMeta),
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    // managedFields are often most of an object and never read here; a
    // decision would otherwise clone them with the metadata it reads.
    let events = watcher(api, config).modify(move |o| {
        o.managed_fields_mut().clear();
        prune(o.meta_mut());
    });
    spawn_reflector(reflector::reflector(writer, events), changed.cloned());
    store
}

/// A metadata-only cache: namespaces and ReplicaSets are many, and only
/// their labels, annotations and owners matter here; `prune` drops what of
/// it is not read.
fn metadata_cache<K>(
    client: &Client,
    prune: fn(&mut ObjectMeta),
) -> Store<kube::core::PartialObjectMeta<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    pruned_cache(
        Api::<kube::core::PartialObjectMeta<K>>::all(client.clone()),
        watcher::Config::default(),
        None,
        prune,
    )
}

fn spawn_reflector<K, S>(stream: S, changed: Option<Arc<Notify>>)
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    K: Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream.default_backoff());
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    if let Some(changed) = &changed {
                        changed.notify_one();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "admission cache watch failed; retrying"),
            }
        }
    });
}

/// Keeps the webhook configurations current (once the caches are filled):
/// the validator always, the injector while a ControlPlane installs or has
/// installed a control plane (following its failure policy and namespace),
/// with `ca` in their `caBundle`s. Only
/// the leader writes them: replicas of different versions (a rolling update)
/// or endpoints (operators outside the cluster) would otherwise overwrite
/// each other, and deleting the injector must not race another replica's
/// apply.
async fn configure(
    client: Client,
    config: Config,
    mut ca: watch::Receiver<WebhookCa>,
    caches: Caches,
    changed: Arc<Notify>,
    mut leadership: Leadership,
) {
    let applier = Applier::new(client.clone());
    loop {
        leadership.acquired().await;
        let ca_pem = ca.borrow_and_update().cert_pem().to_owned();
        let webhooks = Webhooks {
            endpoint: &config.endpoint,
            ca_pem: &ca_pem,
            keelson_namespace: &config.namespace,
        };
        if let Err(e) = configure_once(&client, &applier, &webhooks, &caches.control_planes).await {
            tracing::warn!(error = %e, "updating the webhook configurations; retrying");
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                () = leadership.lost() => {}
            }
            continue;
        }
        tokio::select! {
            () = changed.notified() => {}
            Ok(()) = ca.changed() => {}
            () = leadership.lost() => {}
        }
    }
}

async fn configure_once(
    client: &Client,
    applier: &Applier,
    webhooks: &Webhooks<'_>,
    control_planes: &Store<ControlPlane>,
) -> Result<(), ApplyError> {
    applier.apply(&configurations::validating(webhooks)).await?;
    let mut cps = control_planes.state();
    cps.sort_by_key(|cp| cp.name_any());
    // Only for a control plane Keelson installs or has installed (it
    // records a target or current version only past its checks of the
    // namespace): a ControlPlane standing aside for a Linkerd it did not
    // install must not register a second injector beside that Linkerd's
    // own. Registered from the start of the install, so pods created as it
    // converges are injected once its trust bundle is there. A takeover of
    // such a Linkerd registers it only at its hand-over step, in place of
    // Linkerd's (`controlplane::adoption`).
    match cps.iter().find(|cp| {
        cp.metadata.deletion_timestamp.is_none()
            && cp.status.as_ref().is_some_and(|s| {
                (s.current_version.is_some() || s.target_version.is_some())
                    && match &s.adoption {
                        Some(a) => a.phase >= AdoptionPhase::HandOverInjector,
                        None => s.existing_installation.is_none(),
                    }
            })
    }) {
        Some(cp) => {
            let ours = configurations::mutating(webhooks, cp);
            let handing_over = cp
                .status
                .as_ref()
                .and_then(|s| s.adoption.as_ref())
                .is_some_and(|a| a.phase == AdoptionPhase::HandOverInjector);
            if handing_over {
                crate::controlplane::adoption::hand_over_injector(client, applier, &ours).await?;
            } else {
                applier.apply(&ours).await?;
            }
        }
        None => {
            // Without a control plane nothing can be meshed; leaving the
            // injector registered would only add a call to every pod
            // creation. Emptied, not deleted: the install made it, and
            // Keelson may not create webhook configurations.
            let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
            let registered = api
                .get_opt(INJECTOR)
                .await
                .map_err(ApplyError::api("MutatingWebhookConfiguration", INJECTOR))?
                .is_some_and(|m| m.webhooks.is_some_and(|w| !w.is_empty()));
            if registered {
                applier
                    .retire(&serde_json::json!({
                        "apiVersion": "admissionregistration.k8s.io/v1",
                        "kind": "MutatingWebhookConfiguration",
                        "metadata": {"name": INJECTOR},
                    }))
                    .await?;
                tracing::info!("no installed ControlPlane; emptied the proxy injector webhook");
            }
        }
    }
    Ok(())
}
