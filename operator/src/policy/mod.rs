//! Linkerd authorization policy, made safe to roll out: Keelson watches the
//! policy objects (Servers, AuthorizationPolicies, authentications and
//! HTTPRoutes of both APIs), reports references that point at nothing
//! (Events on the referrer and a report ConfigMap per namespace), and runs
//! audit-first rollouts of Servers' access policies.
//!
//! One loop, level-triggered: watch caches feed a snapshot, pure functions
//! (`index`, `report`, `audit`) decide, and the loop writes only what
//! changed. It runs again on every cache change and every `interval`, when
//! the proxies of Servers under audit are scraped.

pub mod audit;
mod cache;
pub mod index;
pub mod prom;
pub mod report;
pub mod scrape;
pub mod validate;

use crate::metrics::Metrics;
use index::{Broken, Snapshot};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_crds::policy::Server;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, Selector};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use scrape::{PodTarget, ProxyMetrics};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub const POLICY_GROUP: &str = "policy.linkerd.io";
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// Keelson's field manager.
const MANAGER: &str = "keelson";
/// Proxies scraped at once per Server.
const SCRAPE_CONCURRENCY: usize = 16;

/// Whether a reference's (group, kind) names `want_group`/`want_kind`, as
/// Linkerd compares them: an empty or absent group, or `core`, is the core
/// group (`""` here), and case does not matter.
pub fn targets(group: Option<&str>, kind: &str, want_group: &str, want_kind: &str) -> bool {
    let group = match group.unwrap_or_default() {
        "" | "core" => "",
        g => g,
    };
    group.eq_ignore_ascii_case(want_group) && kind.eq_ignore_ascii_case(want_kind)
}

/// How the policy controller reads proxies and how often.
#[derive(Clone)]
pub struct Config {
    pub proxy_metrics: Arc<dyn ProxyMetrics>,
    /// How often Servers under audit are scraped (and everything re-checked).
    pub interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            proxy_metrics: Arc::new(scrape::PodAdminPort),
            interval: Duration::from_secs(30),
        }
    }
}

/// Why a step of the loop failed; the next round retries.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{what} {namespace}/{name}: {source}")]
    Kube {
        what: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("printing the report: {0}")]
    Io(#[from] std::io::Error),
    #[error("Server {namespace}/{name}: spec.podSelector: {message}")]
    Selector {
        namespace: String,
        name: String,
        message: String,
    },
}

struct Context {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    config: Config,
}

/// What the loop remembers between rounds (a restarted operator starts
/// empty, and at worst repeats an Event once).
#[derive(Default)]
struct Memory {
    /// Broken references already announced by an Event.
    announced: BTreeSet<Broken>,
    /// Per Server (namespace/name), the resourceVersion it was last
    /// audited at: a change round audits only Servers changed since, so
    /// Keelson's own writes do not start scrape storms.
    audited: BTreeMap<String, String>,
}

/// Runs the policy controller until `shutdown` completes.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) {
    let changed = Arc::new(Notify::new());
    let caches = cache::Caches::start(&client, &changed);
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        metrics,
        config,
    };
    let mut memory = Memory::default();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_tick = tokio::time::Instant::now() + ctx.config.interval;
    loop {
        let tick = tokio::select! {
            () = &mut shutdown => return,
            () = changed.notified() => {
                // Let a burst of changes (an apply of many objects) settle.
                tokio::time::sleep(Duration::from_millis(300)).await;
                false
            }
            () = tokio::time::sleep_until(next_tick) => true,
        };
        if tick {
            next_tick = tokio::time::Instant::now() + ctx.config.interval;
        }
        if !caches.ready() {
            continue;
        }
        let start = Instant::now();
        let ok = round(&ctx, &caches, &mut memory, tick).await;
        ctx.metrics.reconciled("policy", start.elapsed(), ok);
    }
}

/// One round: Events for references that broke or healed, audit steps,
/// then the reports. Returns whether every write succeeded.
#[tracing::instrument(skip_all, fields(tick))]
async fn round(ctx: &Context, caches: &cache::Caches, memory: &mut Memory, tick: bool) -> bool {
    let mut ok = true;
    let snapshot = caches.snapshot();
    let broken = index::broken(&snapshot);
    let now: BTreeSet<Broken> = broken.iter().cloned().collect();
    for b in now.difference(&memory.announced) {
        tracing::info!(%b, "broken policy reference");
        let note = format!("{}: {} does not exist", b.field, b.missing);
        let related = Some(&b.missing);
        publish(
            ctx,
            &b.referrer,
            related,
            EventType::Warning,
            "BrokenReference",
            note,
        )
        .await;
    }
    for b in memory.announced.difference(&now) {
        let note = format!("{}: {} exists now", b.field, b.missing);
        let related = Some(&b.missing);
        publish(
            ctx,
            &b.referrer,
            related,
            EventType::Normal,
            "ReferenceResolved",
            note,
        )
        .await;
    }
    memory.announced = now;

    for server in snapshot.servers.iter().flatten() {
        let key = format!(
            "{}/{}",
            server.namespace().unwrap_or_default(),
            server.name_any()
        );
        let version = server.resource_version().unwrap_or_default();
        if !tick && memory.audited.get(&key) == Some(&version) {
            continue;
        }
        match rollout(ctx, server).await {
            Ok(written) => {
                memory.audited.insert(key, written.unwrap_or(version));
            }
            Err(e) => {
                ok = false;
                tracing::warn!(error = %e, "audit-first rollout step failed; retrying next round");
            }
        }
    }
    let servers: BTreeSet<String> = snapshot
        .servers
        .iter()
        .flatten()
        .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()))
        .collect();
    memory.audited.retain(|k, _| servers.contains(k));

    if let Err(e) = write_reports(ctx, caches, &snapshot, &broken).await {
        ok = false;
        tracing::warn!(error = %e, "writing policy reports failed; retrying next round");
    }
    ok
}

/// Writes each namespace's report when it changed; removes the reports of
/// namespaces left without policy objects.
async fn write_reports(
    ctx: &Context,
    caches: &cache::Caches,
    snapshot: &Snapshot,
    broken: &[Broken],
) -> Result<(), PolicyError> {
    let mut desired = report::reports(snapshot, broken);
    // A namespace being deleted takes its report with it, and refuses writes.
    let terminating: BTreeSet<String> = caches
        .namespaces
        .store
        .state()
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_some())
        .map(|n| n.name_any())
        .collect();
    desired.retain(|ns, _| !terminating.contains(ns));
    let live: BTreeMap<String, Arc<ConfigMap>> = caches
        .reports
        .store
        .state()
        .into_iter()
        .filter(|cm| cm.name_any() == report::NAME)
        .map(|cm| (cm.namespace().unwrap_or_default(), cm))
        .collect();
    for (ns, r) in &desired {
        let object = report::config_map(ns, r);
        let current = live.get(ns).and_then(|cm| cm.data.as_ref());
        let wanted: BTreeMap<String, String> =
            serde_json::from_value(object["data"].clone()).expect("report data is strings");
        if current == Some(&wanted) {
            continue;
        }
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        api.patch(
            report::NAME,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|e| kube_error("writing policy report ConfigMap", ns, report::NAME, e))?;
    }
    for ns in live
        .keys()
        .filter(|ns| !desired.contains_key(*ns) && !terminating.contains(*ns))
    {
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        match api.delete(report::NAME, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(kube_error(
                    "removing policy report ConfigMap",
                    ns,
                    report::NAME,
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// One audit-first step for a Server. Returns the Server's new
/// resourceVersion if Keelson wrote it.
#[tracing::instrument(skip_all, fields(
    server = %server.name_any(),
    namespace = server.namespace().unwrap_or_default(),
))]
async fn rollout(ctx: &Context, server: &Server) -> Result<Option<String>, PolicyError> {
    let Ok(settings) = audit::settings(server.annotations()) else {
        // The report names the wrong annotations; the webhook refuses them.
        return Ok(None);
    };
    let state = report::state(server);
    if settings.is_none() && !server.annotations().contains_key(audit::STATE) {
        return Ok(None);
    }
    let observation = if audit::needs_observation(settings.as_ref(), state.as_ref()) {
        Some(observe(ctx, server).await?)
    } else {
        None
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let decision = audit::step(
        settings.as_ref(),
        server.spec.access_policy.as_deref(),
        state.as_ref(),
        observation.as_ref(),
        &now,
    );
    if let Some(o) = &observation {
        for (pod, why) in &o.unreachable {
            tracing::info!(%pod, %why, "proxy metrics unavailable; no promotion this round");
        }
    }
    let written = if decision.state != state || decision.access_policy.is_some() {
        Some(write_rollout(ctx, server, &decision).await?)
    } else {
        None
    };
    let reference = referrer_of(server);
    for (warning, reason, note) in decision.notes {
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, &reference, None, type_, reason, note).await;
    }
    Ok(written)
}

/// Writes the rollout state and access policy with a merge patch guarded
/// by the resourceVersion Keelson decided on: a concurrent edit makes it
/// fail, and the next round decides again.
async fn write_rollout(
    ctx: &Context,
    server: &Server,
    decision: &audit::Decision,
) -> Result<String, PolicyError> {
    let (ns, name) = (server.namespace().unwrap_or_default(), server.name_any());
    let state = decision
        .state
        .as_ref()
        .map(|s| serde_json::to_string(s).expect("rollout state serializes"));
    let mut patch = serde_json::json!({"metadata": {
        "resourceVersion": server.resource_version(),
        "annotations": {audit::STATE: state},
    }});
    if let Some(policy) = &decision.access_policy {
        patch["spec"] = serde_json::json!({"accessPolicy": policy});
        tracing::info!(access_policy = %policy, "setting the Server's access policy");
    }
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &server_resource());
    let written = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| kube_error("writing the rollout of Server", &ns, &name, e))?;
    Ok(written.resource_version().unwrap_or_default())
}

fn server_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(POLICY_GROUP, "v1beta3", "Server"),
        "servers",
    )
}

/// Scrapes the proxies of the Server's running pods, all at once.
async fn observe(ctx: &Context, server: &Server) -> Result<audit::Observation, PolicyError> {
    let (ns, name) = (server.namespace().unwrap_or_default(), server.name_any());
    let mut observation = audit::Observation::default();
    // ExternalWorkloads have no pods Keelson can read: nothing observed,
    // so such a Server never leaves audit on its own.
    let Some(selector) = &server.spec.pod_selector else {
        return Ok(observation);
    };
    let selector = Selector::try_from(selector.clone()).map_err(|e| PolicyError::Selector {
        namespace: ns.clone(),
        name: name.clone(),
        message: e.to_string(),
    })?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods
        .list(&ListParams::default().labels_from(&selector))
        .await
        .map_err(|e| kube_error("listing the pods of Server", &ns, &name, e))?;
    let targets: Vec<PodTarget> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
            Some(PodTarget {
                namespace: ns.clone(),
                name: p.name_any(),
                ip,
            })
        })
        .collect();
    // A few at a time: a Server may select hundreds of pods.
    let mut results = Vec::with_capacity(targets.len());
    for chunk in targets.chunks(SCRAPE_CONCURRENCY) {
        let scrapes = chunk.iter().map(|t| ctx.config.proxy_metrics.scrape(t));
        results.extend(futures::future::join_all(scrapes).await);
    }
    for (target, result) in targets.iter().zip(results) {
        let outcome = match result.map(|text| prom::parse(&text)) {
            Ok(Ok(samples)) => {
                observation.add(&target.name, &name, &samples);
                "ok"
            }
            Ok(Err(e)) => {
                observation.unreachable(&target.name, format!("unreadable metrics: {e}"));
                "unreadable"
            }
            Err(e) => {
                observation.unreachable(&target.name, e.to_string());
                match e {
                    scrape::ScrapeError::Timeout { .. } => "timeout",
                    scrape::ScrapeError::Failed { .. } => "error",
                }
            }
        };
        ctx.metrics
            .proxy_scrapes
            .get_or_create(&crate::metrics::ScrapeLabels { outcome })
            .inc();
    }
    Ok(observation)
}

fn referrer_of(server: &Server) -> index::Referrer {
    index::Referrer {
        api_version: Server::api_version(&()).into_owned(),
        kind: Server::kind(&()).into_owned(),
        namespace: server.namespace().unwrap_or_default(),
        name: server.name_any(),
        uid: server.uid(),
    }
}

/// Records an Event on `r`. `related` names the missing object of a
/// reference: Kubernetes folds Events with the same object, reason and
/// related object into one series, so without it the second broken
/// reference of an object would only bump the first one's count.
async fn publish(
    ctx: &Context,
    r: &index::Referrer,
    related: Option<&index::Missing>,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let reference = ObjectReference {
        api_version: Some(r.api_version.clone()),
        kind: Some(r.kind.clone()),
        name: Some(r.name.clone()),
        namespace: Some(r.namespace.clone()),
        uid: r.uid.clone(),
        ..ObjectReference::default()
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "CheckPolicy".into(),
        secondary: related.map(|m| ObjectReference {
            api_version: Some(match m.group.as_str() {
                "" | "core" => "v1".to_owned(),
                g => g.to_owned(),
            }),
            kind: Some(m.kind.clone()),
            name: Some(m.name.clone()),
            namespace: m.namespace.clone(),
            ..ObjectReference::default()
        }),
    };
    // An Event is a courtesy; the report holds the same facts.
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(error = %e, "recording a policy event");
    }
}

fn kube_error(what: &'static str, namespace: &str, name: &str, source: kube::Error) -> PolicyError {
    PolicyError::Kube {
        what,
        namespace: namespace.into(),
        name: name.into(),
        source: Box::new(source),
    }
}

/// Prints the policy reports of `namespace` (every namespace if `None`),
/// as `keelson policy report` does.
pub async fn print_reports(
    client: Client,
    namespace: Option<&str>,
    out: &mut impl std::io::Write,
) -> Result<(), PolicyError> {
    let api: Api<ConfigMap> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut found = api
        .list(&ListParams::default().labels(report::LABEL))
        .await
        .map_err(|e| {
            kube_error(
                "listing policy reports in",
                namespace.unwrap_or("all namespaces"),
                report::NAME,
                e,
            )
        })?
        .items;
    found.sort_by_key(|cm| cm.namespace());
    if found.is_empty() {
        writeln!(
            out,
            "no policy reports: no policy objects, or the Keelson operator is not running"
        )?;
    }
    for cm in found.iter().filter(|cm| cm.name_any() == report::NAME) {
        let ns = cm.namespace().unwrap_or_default();
        match cm.data.as_ref().and_then(report::read) {
            Some(r) => out.write_all(report::text(&ns, &r).as_bytes())?,
            None => writeln!(out, "namespace {ns}: the report is unreadable")?,
        }
    }
    Ok(())
}
