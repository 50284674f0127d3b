//! The DataPlane controller: restarts the pods of meshed workloads, in paced
//! waves, until they run the target proxy version and trust bundle.
//!
//! The target comes from status, never from a side channel: the ControlPlane's
//! `status.currentVersion` once it is Ready (or the DataPlane's pin) and the
//! trust bundle its identity publishes. A ControlPlane upgrade or an identity
//! rotation therefore starts a wave by changing what they report. Decisions
//! are made by [`crate::rollout`] from the caches; this module reads the
//! caches, writes status (before acting, so a restarted operator resumes from
//! it), restarts workloads and records Events.

mod observe;
mod pods;
mod watch;

use crate::apply::{FIELD_MANAGER, merge_patch};
use crate::catalog::KubeVersion;
use crate::metrics::Metrics;
use crate::rollout::{self, Kind, RESTARTED_AT, Restart, Workload};
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use keelson_crds::{DataPlane, DataPlaneStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use observe::{Budget, Object, TRUST_ROOTS};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use watch::Caches;

/// Longest any single API call of a reconcile may take.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a reconcile failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{action} {object}: {source}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{action} {object}: no answer within {}s", API_TIMEOUT.as_secs())]
    Timeout {
        action: &'static str,
        object: String,
    },
    #[error("DataPlane {object} changed since it was read; reconciling it again")]
    Stale { object: String },
    #[error("reconciling DataPlane {object}: the task failed: {message}")]
    Panicked { object: String, message: String },
}

impl ReconcileError {
    fn code(&self) -> Option<u16> {
        match self {
            ReconcileError::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => Some(s.code),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Runs `fut`, an API call about `object`, within [`API_TIMEOUT`].
async fn call<T>(
    action: &'static str,
    object: &str,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, ReconcileError> {
    match tokio::time::timeout(API_TIMEOUT, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(ReconcileError::Api {
            action,
            object: object.to_owned(),
            source: Box::new(source),
        }),
        Err(_) => Err(ReconcileError::Timeout {
            action,
            object: object.to_owned(),
        }),
    }
}

struct Context {
    client: Client,
    recorder: Recorder,
    reporter: Reporter,
    caches: Caches,
    /// Set once every cache holds its first list; before that a workload's
    /// pods may look absent, which must not read as "up to date".
    synced: AtomicBool,
    metrics: Arc<Metrics>,
}

/// Runs the DataPlane controller until `shutdown` completes; reconciles under
/// way finish first.
pub async fn run(
    client: Client,
    kubernetes: KubeVersion,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (caches, queue) = watch::watch(&client, kubernetes);
    let reporter = Reporter {
        controller: "keelson".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter.clone()),
        reporter,
        client,
        caches: caches.clone(),
        synced: AtomicBool::new(false),
        metrics,
    });
    // The one task that waits for the caches.
    let ready = tokio::spawn({
        let ctx = Arc::clone(&ctx);
        async move {
            ctx.caches.wait_ready().await;
            ctx.synced.store(true, Ordering::Release);
            tracing::info!("dataplane caches synced");
        }
    });
    controller::applier(
        |dp, ctx| -> BoxFuture<'static, Result<Action, ReconcileError>> {
            let object = format!("{}/{}", dp.namespace().unwrap_or_default(), dp.name_any());
            let started = Instant::now();
            let task = tokio::spawn(reconcile(dp, Arc::clone(&ctx)));
            Box::pin(async move {
                let result = task.await.unwrap_or_else(|e| {
                    Err(ReconcileError::Panicked {
                        object,
                        message: e.to_string(),
                    })
                });
                ctx.metrics
                    .reconciled("dataplane", started.elapsed(), result.is_ok());
                result
            })
        },
        error_policy,
        Arc::clone(&ctx),
        caches.data_planes.clone(),
        futures::StreamExt::take_until(queue, shutdown),
        controller::Config::default(),
    )
    .for_each(|result| async move {
        match result {
            Ok(_) => {}
            // Expected now and then: the cache lags the last status write.
            Err(controller::Error::ReconcilerFailed(e @ ReconcileError::Stale { .. }, _)) => {
                tracing::debug!(error = %e, "dataplane reconcile deferred");
            }
            Err(controller::Error::ReconcilerFailed(e, _)) => {
                tracing::warn!(error = %e, "dataplane reconcile failed");
            }
            // A watch that keeps failing (RBAC, an API the cluster lacks)
            // leaves its cache unsynced and the controller idle: say so.
            Err(controller::Error::QueueError(e)) => {
                tracing::warn!(error = %e, "dataplane watch failed; retrying with backoff");
            }
            Err(e) => tracing::debug!(error = %e, "dataplane controller"),
        }
    })
    .await;
    ready.abort();
}

fn error_policy(_: Arc<DataPlane>, error: &ReconcileError, _: Arc<Context>) -> Action {
    match error {
        // The cache catches up within moments.
        ReconcileError::Stale { .. } => Action::requeue(Duration::from_secs(1)),
        _ => Action::requeue(Duration::from_secs(10)),
    }
}

#[tracing::instrument(skip_all, fields(dataplane = %dp.name_any(), namespace = dp.namespace().unwrap_or_default()))]
async fn reconcile(dp: Arc<DataPlane>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if !ctx.synced.load(Ordering::Acquire) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if dp.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = dp.namespace().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let previous = dp.status.clone().unwrap_or_default();
    // The validator's checks: a DataPlane stored while the validator was not
    // registered is reported on itself and restarts nothing.
    let problems = crate::admission::validate::data_plane(&dp);
    if !problems.is_empty() {
        let message = crate::admission::validate::describe(&problems);
        let next = rollout::invalid(&previous, dp.metadata.generation, &message, &now);
        if next != previous {
            publish(
                &ctx,
                &dp.object_ref(&()),
                (None, Repeat::Counted),
                EventType::Warning,
                "InvalidSpec",
                message,
            )
            .await;
        }
        write_status(&ctx, &dp, &previous, &next).await?;
        return Ok(Action::await_change());
    }
    let c = &ctx.caches;

    let desired = observe::desired(&dp, &c.control_planes.state(), |ns| {
        c.trust_roots.get(&ObjectRef::new(TRUST_ROOTS).within(ns))
    });
    let here = |m: &ObjectMeta| m.namespace.as_deref() == Some(namespace.as_str());
    let objects: Vec<Object> = c
        .deployments
        .state_filter(|o| here(&o.metadata))
        .into_iter()
        .map(Object::Deployment)
        .chain(
            c.stateful_sets
                .state_filter(|o| here(&o.metadata))
                .into_iter()
                .map(Object::StatefulSet),
        )
        .chain(
            c.daemon_sets
                .state_filter(|o| here(&o.metadata))
                .into_iter()
                .map(Object::DaemonSet),
        )
        .collect();
    let ns_meta = c
        .namespaces
        .get(&ObjectRef::new(&namespace))
        .map(|n| n.metadata.clone());
    let budgets: Vec<Budget> = c
        .budgets
        .state_filter(|b| here(&b.metadata))
        .iter()
        .filter_map(|b| Budget::from_object(b))
        .collect();
    // One reading of the namespace's pods serves the selection, each
    // workload's proxies and the crash-loop check alike.
    let (selected, workloads) = c.pods.read(&namespace, |namespace_pods| {
        let pods = observe::pods_by_workload(namespace_pods);
        let selected = observe::selected(
            &dp,
            &c.data_planes.state_filter(|d| here(&d.metadata)),
            objects,
            ns_meta.as_ref(),
            &pods,
        );
        let mut workloads: Vec<Workload> = selected
            .iter()
            .map(|o| {
                let proxies = pods.get(&(o.kind(), o.name())).cloned().unwrap_or_default();
                o.workload(proxies, &budgets)
            })
            .collect();
        check_crash_loops(&previous, namespace_pods, &mut workloads);
        (selected, workloads)
    });

    let plan = rollout::plan(&rollout::Input {
        generation: dp.metadata.generation.unwrap_or_default(),
        desired,
        rollout: &dp.spec.rollout,
        workloads: &workloads,
        previous: &previous,
        now: &now,
    });
    // Status first: the restarts it lists are then re-issued by whichever
    // operator reconciles next, should this one stop in between.
    write_status(&ctx, &dp, &previous, &plan.status).await?;
    ctx.metrics
        .dataplane_progress(&namespace, &dp.name_any(), &plan.status);

    let wave = plan.status.wave.as_ref().map_or(0, |w| w.number);
    let find = |kind: Kind, name: &str| {
        selected
            .iter()
            .find(|o| o.kind() == kind && o.name() == name)
    };
    for r in &plan.restarts {
        if find(r.kind, &r.name).is_some() {
            restart(&ctx.client, &namespace, r).await?;
        }
    }
    // One Event per batch, on the DataPlane, names the workloads: one per
    // workload too would double the writes of a wave (thousands at scale),
    // and each restarted workload carries the restart's token in its
    // template anyway.
    if plan.new_batch {
        let version = plan
            .status
            .target_proxy_version
            .as_deref()
            .unwrap_or_default();
        let names: Vec<String> = plan
            .restarts
            .iter()
            .map(|r| format!("{} {}", r.kind, r.name))
            .collect();
        let note = format!(
            "wave {wave}: restarting {} for Linkerd proxy {version}",
            names.join(", ")
        );
        let first = plan.restarts.first().and_then(|r| find(r.kind, &r.name));
        publish(
            &ctx,
            &dp.object_ref(&()),
            (first.map(Object::reference), Repeat::Own),
            EventType::Normal,
            "BatchStarted",
            note,
        )
        .await;
    }
    for f in &plan.failed {
        let object = selected
            .iter()
            .find(|o| o.kind().as_str() == f.kind && o.name() == f.name);
        if let Some(object) = object {
            let note = format!("its restart failed: {}", f.message);
            publish(
                &ctx,
                &object.reference(),
                (None, Repeat::Counted),
                EventType::Warning,
                "RestartFailed",
                note,
            )
            .await;
        }
        let note = format!(
            "wave {wave} stopped: {} {} did not become available: {}",
            f.kind, f.name, f.message
        );
        publish(
            &ctx,
            &dp.object_ref(&()),
            (object.map(Object::reference), Repeat::Own),
            EventType::Warning,
            "WaveStopped",
            note,
        )
        .await;
    }
    tracing::debug!(
        workloads = plan.status.workloads,
        up_to_date = plan.status.up_to_date,
        restarting = plan.status.restarting,
        failed = plan.status.failed,
        restarts = plan.restarts.len(),
        "reconciled"
    );
    Ok(Action::requeue(plan.requeue))
}

/// Fills in `crashing` for the workloads of the batch under way that are
/// not yet available: crash loops do not show in a workload's status.
fn check_crash_loops(
    previous: &DataPlaneStatus,
    pods: &pods::NamespacePods,
    workloads: &mut [Workload],
) {
    let in_flight = previous.wave.iter().flat_map(|w| &w.restarting);
    for r in in_flight {
        let Some(w) = workloads
            .iter_mut()
            .find(|w| w.kind.as_str() == r.kind && w.name == r.name)
        else {
            continue;
        };
        if w.restarted_at.as_deref() == Some(&r.token) && !w.settled() {
            w.crashing = observe::crashing(pods, &(w.kind, w.name.clone()), &r.token);
        }
    }
}

/// Writes status when it changed, as a merge patch that nulls what `next`
/// dropped and that only applies to the DataPlane as it was read: a reconcile
/// working from a cache that has not seen the last write yet must not start
/// a second batch.
async fn write_status(
    ctx: &Context,
    dp: &DataPlane,
    previous: &DataPlaneStatus,
    next: &DataPlaneStatus,
) -> Result<(), ReconcileError> {
    let mut next = next.clone();
    crate::controlplane::status::with_kstatus(&mut next.conditions);
    let next = &next;
    if next == previous {
        return Ok(());
    }
    let namespace = dp.namespace().unwrap_or_default();
    let name = dp.name_any();
    let as_json = |s: &DataPlaneStatus| serde_json::to_value(s).expect("status serializes");
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": dp.resource_version()},
        "status": merge_patch(&as_json(previous), &as_json(next)),
    });
    let api: Api<DataPlane> = Api::namespaced(ctx.client.clone(), &namespace);
    let object = format!("DataPlane {namespace}/{name}");
    let written = call(
        "writing the status of",
        &object,
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await;
    match written {
        Err(e) if e.code() == Some(409) => Err(ReconcileError::Stale {
            object: format!("{namespace}/{name}"),
        }),
        other => other.map(drop),
    }
}

/// Restarts a workload's pods by setting its pod-template annotation, as
/// `kubectl rollout restart` does. A workload deleted meanwhile is left to
/// the next reconcile, which drops it from the batch.
async fn restart(client: &Client, namespace: &str, r: &Restart) -> Result<(), ReconcileError> {
    let patch = Patch::Merge(serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: r.token}}}}
    }));
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let object = format!("{} {namespace}/{}", r.kind, r.name);
    let done = match r.kind {
        Kind::Deployment => {
            patch_template::<Deployment>(client, namespace, r, &params, &patch, &object).await
        }
        Kind::StatefulSet => {
            patch_template::<StatefulSet>(client, namespace, r, &params, &patch, &object).await
        }
        Kind::DaemonSet => {
            patch_template::<DaemonSet>(client, namespace, r, &params, &patch, &object).await
        }
    };
    match done {
        Err(e) if e.code() == Some(404) => Ok(()),
        other => other,
    }
}

async fn patch_template<K>(
    client: &Client,
    namespace: &str,
    r: &Restart,
    params: &PatchParams,
    patch: &Patch<serde_json::Value>,
    object: &str,
) -> Result<(), ReconcileError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    call("restarting", object, api.patch(&r.name, params, patch))
        .await
        .map(drop)
}

/// How an Event relates to earlier ones with its reason on its object.
#[derive(Clone, Copy)]
enum Repeat {
    /// The same news again: kube's recorder counts it in the first one's
    /// series (it keys Events by object, type, reason and action).
    Counted,
    /// News of its own (a batch's workloads): an Event of its own, which a
    /// series would hide behind the first one's note.
    Own,
}

/// Records an Event on `reference`; `related` names the workload it is
/// about, when it is about one of several.
async fn publish(
    ctx: &Context,
    reference: &ObjectReference,
    (related, repeat): (Option<ObjectReference>, Repeat),
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Restart".into(),
        secondary: related,
    };
    // A recorder with nothing recorded yet creates the Event afresh.
    let own;
    let recorder = match repeat {
        Repeat::Counted => &ctx.recorder,
        Repeat::Own => {
            own = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
            &own
        }
    };
    // An Event is a courtesy; failing to record one must not fail the reconcile.
    match tokio::time::timeout(API_TIMEOUT, recorder.publish(&event, reference)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, reason, "recording an event"),
        Err(_) => tracing::warn!(reason, "recording an event timed out"),
    }
}
