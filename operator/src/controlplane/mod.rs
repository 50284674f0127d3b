//! The ControlPlane reconciler: render the declared release, apply it with
//! server-side apply under one field manager, then write status.

pub mod adoption;
mod existing;
mod identity;
pub mod material;
pub mod namespace;
pub mod status;
pub mod upgrade;

use crate::apply::{Applier, ApplyError};
use crate::catalog::{self, KubeVersion};
use crate::identity::IdentityError;
use crate::metrics::Metrics;
use crate::render::{self, CONTROL_PLANE_LABEL, Stage};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_crds::controlplane::AdoptionPhase;
use keelson_crds::{ControlPlane, ControlPlaneStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Why a reconcile failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("managing the finalizer: {0}")]
    Finalizer(String),
    #[error(
        "spec.identity.issuer is {mode}, but Secret {namespace}/linkerd-identity-issuer with tls.crt, tls.key and ca.crt does not exist yet"
    )]
    ExternalIssuerMissing {
        namespace: String,
        mode: &'static str,
    },
    #[error(
        "Secret {namespace}/linkerd-identity-issuer no longer holds an issuer (crt.pem, key.pem) signed by the adopted trust bundle, and Keelson has no key of that bundle to sign one: restore the issuer, or declare the anchor to rotate to in Secret keelson-identity-next-trust-anchor.<ControlPlane> in Keelson's namespace"
    )]
    AdoptedIssuerUnusable { namespace: String },
    #[error(
        "Secret {secret} has no readable ca.crt and ca.key; restore it from a backup or delete it to make a new trust anchor (which restarts every meshed pod)"
    )]
    AnchorUnreadable { secret: String },
}

impl ReconcileError {
    pub(crate) fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

struct Context {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    /// The control-plane namespaces Keelson's install granted it; `None`:
    /// any (`namespace::claim`).
    granted: Option<Vec<String>>,
    /// Keelson's own namespace: managed trust anchors live there.
    keelson_namespace: String,
}

/// Runs the ControlPlane controller until `shutdown` completes. `granted`
/// lists the control-plane namespaces the install granted (`None`: any);
/// `keelson_namespace` is Keelson's own.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    granted: Option<Vec<String>>,
    keelson_namespace: String,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let reporter = Reporter {
        controller: "keelson".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let owned = watcher::Config::default().labels(CONTROL_PLANE_LABEL);
    // Secrets are watched only where the install lets Keelson read them:
    // its namespace (the anchors) and the control planes'.
    let secrets: Vec<Api<Secret>> = match &granted {
        None => vec![Api::all(client.clone())],
        Some(namespaces) => namespaces
            .iter()
            .chain([&keelson_namespace])
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        metrics,
        granted,
        keelson_namespace,
    });
    let mut controller = Controller::new(
        Api::<ControlPlane>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<Deployment>::all(client.clone()),
        owned.clone(),
        labelled,
    )
    // CNI mode's plugin: its rollout gates installs and upgrades, and its
    // end moves `status.cni`, which DataPlanes wait on.
    .watches(Api::<DaemonSet>::all(client), owned.clone(), labelled);
    // An issuer or anchor changed (or lost) by hand is checked at once.
    for api in secrets {
        controller = controller.watches(api, owned.clone(), labelled);
    }
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::warn!(error = %e, "reconcile failed");
            }
        })
        .await;
}

/// The ControlPlane an object's label names.
fn labelled<K: ResourceExt>(object: K) -> Option<ObjectRef<ControlPlane>> {
    object
        .labels()
        .get(CONTROL_PLANE_LABEL)
        .map(|cp| ObjectRef::new(cp))
}

fn error_policy(cp: Arc<ControlPlane>, error: &ReconcileError, _: Arc<Context>) -> Action {
    tracing::warn!(controlplane = %cp.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// How often a trust-anchor rotation looks at the meshed pods again.
const ROTATION_POLL: Duration = Duration::from_secs(5);

/// Finalizer that lets Keelson remove what it installed before a deleted
/// ControlPlane goes away.
pub const FINALIZER: &str = "keelson.dev/cleanup";

#[tracing::instrument(skip_all, fields(controlplane = %cp.name_any()))]
async fn reconcile(cp: Arc<ControlPlane>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let start = std::time::Instant::now();
    let result = reconcile_inner(cp, &ctx).await;
    ctx.metrics
        .reconciled("controlplane", start.elapsed(), result.is_ok());
    result
}

async fn reconcile_inner(
    cp: Arc<ControlPlane>,
    ctx: &Arc<Context>,
) -> Result<Action, ReconcileError> {
    let api: Api<ControlPlane> = Api::all(ctx.client.clone());
    finalizer(&api, FINALIZER, cp, |event| async {
        match event {
            FinalizerEvent::Apply(cp) => apply(cp, ctx.clone()).await,
            FinalizerEvent::Cleanup(cp) => cleanup(cp, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => ReconcileError::Finalizer(other.to_string()),
    })
}

/// Removes an installed control plane: webhooks first, so the API server
/// stops calling into pods about to go, then the workloads, then the rest.
/// CustomResourceDefinitions (Keelson's and Linkerd's) and users' policy
/// objects stay.
async fn cleanup(cp: Arc<ControlPlane>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let kube = server_version(&ctx.client).await?;
    // Rendering offline is enough to know which kinds to look for.
    let Ok(objects) = render::offline::render(&cp, Some(kube)) else {
        return Ok(Action::await_change());
    };
    let mut kinds: Vec<&serde_json::Value> = Vec::new();
    let order = |kind: &str| match kind {
        "ValidatingWebhookConfiguration" => 0,
        "Deployment" => 1,
        _ => 2,
    };
    // Never the CRDs: deleting one deletes every object of its kind, users'
    // Servers and routes included. The next ControlPlane adopts them. The
    // namespace is decided last, on what Keelson knows of it.
    for r in objects
        .iter()
        .filter(|r| r.stage != Stage::Crds && r.object["kind"] != "Namespace")
    {
        // Per namespace: CNI mode's objects live in a namespace of their own.
        if !kinds.iter().any(|k| {
            k["kind"] == r.object["kind"]
                && k["metadata"]["namespace"] == r.object["metadata"]["namespace"]
        }) {
            kinds.push(&r.object);
        }
    }
    kinds.sort_by_key(|k| order(k["kind"].as_str().unwrap_or_default()));
    let kinds: Vec<serde_json::Value> = kinds.into_iter().cloned().collect();
    Applier::new(ctx.client.clone())
        .delete_owned(&cp.name_any(), &kinds)
        .await?;
    // The anchors' keys: a later ControlPlane of the same name starts a
    // new trust domain history, never from a deleted one's root.
    let anchors = material::anchor_secret(&cp.name_any());
    match Api::<Secret>::namespaced(ctx.client.clone(), &ctx.keelson_namespace)
        .delete(&anchors, &Default::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => {
            return Err(ReconcileError::kube(
                format!("deleting Secret {anchors}"),
                e,
            ));
        }
    }
    uninstall_namespace(&ctx, &cp, &cp.spec.namespace).await?;
    if let Some(cni) = &cp.spec.cni {
        uninstall_namespace(&ctx, &cp, &cni.namespace).await?;
    }
    let event = Event {
        type_: EventType::Normal,
        reason: "Uninstalled".into(),
        note: Some(format!(
            "removed Linkerd from namespace {}",
            cp.spec.namespace
        )),
        action: "Cleanup".into(),
        secondary: None,
    };
    publish(&ctx, &cp, &event).await;
    Ok(Action::await_change())
}

/// Judges whether `cp` may take `name` (named by spec field `field`) and
/// creates it when it does not exist yet. A refusal is written to status,
/// and the requeue returned as the error side.
async fn take_namespace(
    ctx: &Context,
    cp: &ControlPlane,
    previous: &keelson_crds::ControlPlaneStatus,
    now: &Time,
    field: &str,
    name: &str,
) -> Result<Result<namespace::Claim, Action>, ReconcileError> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let existing = namespaces
        .get_opt(name)
        .await
        .map_err(|e| ReconcileError::kube(format!("reading namespace {name}"), e))?;
    let claim = namespace::claim(
        &cp.name_any(),
        cp.metadata.uid.as_deref(),
        name,
        existing.as_ref().map(|n| &n.metadata),
        ctx.granted.as_deref(),
    );
    match &claim {
        namespace::Claim::Refused(message) => {
            let next = status::refused(
                previous,
                cp.metadata.generation,
                "NamespaceNotOwned",
                &format!("{field}: {message}"),
                now,
            );
            write_status(ctx, cp, previous, next).await?;
            // A hand-over (a label on the namespace) changes no object this
            // controller watches: look again now and then.
            return Ok(Err(Action::requeue(Duration::from_secs(10))));
        }
        namespace::Claim::Create => create_namespace(&namespaces, cp, name).await?,
        namespace::Claim::Created | namespace::Claim::HandedOver => {}
    }
    Ok(Ok(claim))
}

/// Creates namespace `name` for `cp` (its own, or CNI mode's plugin's),
/// recording that Keelson did.
async fn create_namespace(
    api: &Api<Namespace>,
    cp: &ControlPlane,
    name: &str,
) -> Result<(), ReconcileError> {
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "labels": {CONTROL_PLANE_LABEL: cp.name_any()},
            "annotations": {namespace::CREATED_BY: cp.metadata.uid},
        },
    }))
    .expect("a valid Namespace");
    match api.create(&Default::default(), &ns).await {
        // Created meanwhile: the next reconcile judges it.
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(ReconcileError::kube(
            format!("creating namespace {name}"),
            e,
        )),
    }
}

/// Deletes namespace `name` of `cp` (its own, or CNI mode's plugin's) if
/// Keelson created it and nothing but Keelson's objects are in it (or the
/// ControlPlane asks to delete it anyway); otherwise keeps it and says why.
async fn uninstall_namespace(
    ctx: &Context,
    cp: &ControlPlane,
    name: &str,
) -> Result<(), ReconcileError> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let Some(ns) = api
        .get_opt(name)
        .await
        .map_err(|e| ReconcileError::kube(format!("reading namespace {name}"), e))?
    else {
        return Ok(());
    };
    let claim = namespace::claim(
        &cp.name_any(),
        cp.metadata.uid.as_deref(),
        name,
        Some(&ns.metadata),
        ctx.granted.as_deref(),
    );
    let force = cp
        .annotations()
        .get(namespace::DELETE_NAMESPACE)
        .map(String::as_str)
        == Some("true");
    let foreign = if claim == namespace::Claim::Created && !force {
        foreign_objects(&ctx.client, name).await?
    } else {
        Vec::new()
    };
    let (type_, reason, note) = match namespace::keep_on_uninstall(&claim, force, &foreign) {
        None => {
            match api.delete(name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    return Err(ReconcileError::kube(
                        format!("deleting namespace {name}"),
                        e,
                    ));
                }
            }
            (
                EventType::Normal,
                "NamespaceDeleted",
                format!("deleted namespace {name}, which Keelson created"),
            )
        }
        Some(why) => (
            EventType::Normal,
            "NamespaceKept",
            format!("kept namespace {name}: {why}"),
        ),
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Cleanup".into(),
        secondary: None,
    };
    publish(ctx, cp, &event).await;
    Ok(())
}

/// Objects in `namespace` that Keelson did not create (they lack its
/// label), of the kinds people put in a namespace, leaving out what
/// Kubernetes itself puts in every one.
async fn foreign_objects(client: &Client, namespace: &str) -> Result<Vec<String>, ReconcileError> {
    use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
    use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
    let mut out = Vec::new();
    out.extend(unlabelled::<Deployment>(client, namespace, |_| false).await?);
    out.extend(unlabelled::<StatefulSet>(client, namespace, |_| false).await?);
    out.extend(unlabelled::<DaemonSet>(client, namespace, |_| false).await?);
    out.extend(unlabelled::<Service>(client, namespace, |_| false).await?);
    // Pods of a workload go with it; a bare pod is someone's.
    out.extend(
        unlabelled::<Pod>(client, namespace, |m| {
            m.owner_references.as_ref().is_some_and(|o| !o.is_empty())
        })
        .await?,
    );
    out.extend(
        unlabelled::<ConfigMap>(client, namespace, |m| {
            m.name.as_deref() == Some("kube-root-ca.crt")
        })
        .await?,
    );
    out.extend(
        unlabelled::<Secret>(client, namespace, |m| {
            m.annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kubernetes.io/service-account.name"))
        })
        .await?,
    );
    out.extend(
        unlabelled::<ServiceAccount>(client, namespace, |m| m.name.as_deref() == Some("default"))
            .await?,
    );
    Ok(out)
}

/// `Kind namespace/name` of each object of kind `K` in `namespace` without
/// Keelson's label, but those `expected` says Kubernetes made.
async fn unlabelled<K>(
    client: &Client,
    namespace: &str,
    expected: impl Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool,
) -> Result<Vec<String>, ReconcileError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list_metadata(&kube::api::ListParams::default())
        .await
        .map_err(|e| ReconcileError::kube(format!("listing {} in {namespace}", K::kind(&())), e))?;
    Ok(list
        .items
        .into_iter()
        .filter(|o| !o.labels().contains_key(CONTROL_PLANE_LABEL) && !expected(&o.metadata))
        .map(|o| format!("{} {namespace}/{}", K::kind(&()), o.name_any()))
        .collect())
}

async fn apply(cp: Arc<ControlPlane>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = cp.metadata.generation;
    let previous = cp.status.clone().unwrap_or_default();

    // The validator's own field checks: an object stored while the
    // validator was not registered (a GitOps sync at first install) is
    // reported on itself, and nothing is acted on.
    let problems = crate::admission::validate::control_plane_spec(&cp.spec);
    if !problems.is_empty() {
        let message = crate::admission::validate::describe(&problems);
        let next = status::refused(&previous, generation, "InvalidSpec", &message, &now);
        write_status(&ctx, &cp, &previous, next).await?;
        return Ok(Action::await_change());
    }

    let release = match catalog::find(&cp.spec.version) {
        Ok(release) => release,
        Err(e) => {
            let next = status::refused(
                &previous,
                generation,
                "UnknownVersion",
                &format!("spec.version: {e}"),
                &now,
            );
            write_status(&ctx, &cp, &previous, next).await?;
            return Ok(Action::await_change());
        }
    };
    let kubernetes = server_version(&ctx.client).await?;
    let supported = kubernetes >= release.kubernetes_floor;
    let support_message = format!(
        "Linkerd {} needs Kubernetes {} or newer; the cluster runs {kubernetes}",
        release.version, release.kubernetes_floor
    );
    if !supported && !cp.spec.allow_unsupported_kubernetes {
        let mut next = status::refused(
            &previous,
            generation,
            "KubernetesTooOld",
            &support_message,
            &now,
        );
        status::set_condition(
            &mut next.conditions,
            status::KUBERNETES_SUPPORTED,
            false,
            "BelowFloor",
            &support_message,
            generation,
            &now,
        );
        write_status(&ctx, &cp, &previous, next).await?;
        return Ok(Action::await_change());
    }

    // Before any write: is the namespace this ControlPlane's to take?
    let claimed = match take_namespace(
        &ctx,
        &cp,
        &previous,
        &now,
        "spec.namespace",
        &cp.spec.namespace,
    )
    .await?
    {
        Ok(claimed) => claimed,
        Err(refused) => return Ok(refused),
    };
    match claimed {
        namespace::Claim::Created | namespace::Claim::HandedOver => {
            // Nothing installed by this ControlPlane yet: a Linkerd that is
            // already there is someone else's, and left alone.
            if previous.current_version.is_none()
                && let Some(found) = existing::observe(&ctx.client, &cp.spec.namespace).await?
            {
                if cp.spec.adoption.is_some() {
                    return start_adoption(&ctx, &cp, &previous, found, &now).await;
                }
                let message = existing::message(&cp.spec.namespace, &found);
                let mut next = status::refused(
                    &previous,
                    generation,
                    "ExistingInstallation",
                    &message,
                    &now,
                );
                if previous.existing_installation.as_ref() != Some(&found) {
                    let event = Event {
                        type_: EventType::Warning,
                        reason: "ExistingInstallation".into(),
                        note: Some(message.clone()),
                        action: "Install".into(),
                        secondary: None,
                    };
                    publish(&ctx, &cp, &event).await;
                }
                next.existing_installation = Some(found);
                write_status(&ctx, &cp, &previous, next).await?;
                // Its objects are not labelled for the watches: look again
                // now and then, in case it was removed.
                return Ok(Action::requeue(Duration::from_secs(60)));
            }
        }
        // Created just now (Keelson made it) or refused (returned above).
        namespace::Claim::Create | namespace::Claim::Refused(_) => {}
    }

    // CNI mode's namespace, by the same rule: the plugin is privileged, and
    // a namespace named there is labelled so.
    if let Some(cni) = &cp.spec.cni
        && let Err(refused) = take_namespace(
            &ctx,
            &cp,
            &previous,
            &now,
            "spec.cni.namespace",
            &cni.namespace,
        )
        .await?
    {
        return Ok(refused);
    }

    // A takeover under way runs at the release it found, and an upgrade to
    // `spec.version` waits for it.
    let adopting = previous
        .adoption
        .as_ref()
        .filter(|a| a.phase < AdoptionPhase::Adopted);
    let adopted_spec;
    let spec = match adopting {
        Some(a) => {
            adopted_spec = keelson_crds::ControlPlaneSpec {
                version: a.version.clone(),
                ..cp.spec.clone()
            };
            &adopted_spec
        }
        None => &cp.spec,
    };
    let mut adoption = previous.adoption.clone();

    // Observe first: the plan gates on what the last apply achieved.
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &cp.spec.namespace);
    let mut components = Vec::new();
    let mut observed = Vec::new();
    for name in ["identity", "destination"] {
        let d = deployments
            .get_opt(&format!("linkerd-{name}"))
            .await
            .map_err(|e| ReconcileError::kube(format!("reading Deployment linkerd-{name}"), e))?;
        components.push(status::component(name, d.as_ref()));
        observed.push(d);
    }
    let control_plane_bundle = status::rolled_out_bundle(&observed);
    let mut cni_status = None;
    if let Some(cni) = &cp.spec.cni {
        let daemon_sets: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &cni.namespace);
        let d = daemon_sets
            .get_opt(render::cni::NAME)
            .await
            .map_err(|e| ReconcileError::kube("reading the CNI plugin's DaemonSet", e))?;
        components.insert(0, status::cni_component(d.as_ref()));
        cni_status = Some(status::cni_status(previous.cni.as_ref(), d.as_ref()));
    }
    let plan = upgrade::plan(spec, generation, &previous, components, &now);
    let Ok(applying) = catalog::find(&plan.version) else {
        let message = format!(
            "the running release {} is no longer in Keelson's catalog",
            plan.version
        );
        let next = status::refused(
            &previous,
            generation,
            "UnknownRunningVersion",
            &message,
            &now,
        );
        write_status(&ctx, &cp, &previous, next).await?;
        return Ok(Action::await_change());
    };

    let applier = Applier::new(ctx.client.clone());
    let mut writes = usize::from(
        applier
            .apply(&render::namespace(&cp.name_any(), &cp.spec))
            .await?,
    );
    let identity_status = previous.identity.as_ref();
    let material = material::load(
        &ctx.client,
        &cp,
        &ctx.keelson_namespace,
        &material::Observed {
            status: identity_status,
            control_plane_bundle: control_plane_bundle.as_deref(),
        },
        SystemTime::now(),
    )
    .await?;
    let (objects, omitted_crd_facts) = render::render_counting(&render::Context {
        name: &cp.name_any(),
        spec: &cp.spec,
        release: applying,
        kubernetes,
        identity: &material.identity,
        webhooks: &material.webhooks,
    });
    // CRDs first, at every step of an upgrade too, and nothing else until
    // the API server serves them: Linkerd's controllers watch their kinds
    // from the start.
    let mut establishing = Vec::new();
    let mut foreign_crds = Vec::new();
    let taking_over = adopting.is_some_and(|a| a.phase == AdoptionPhase::TakeOwnership);
    for r in objects.iter().filter(|r| r.stage == Stage::Crds) {
        let applied = applier.apply_crd(&r.object).await?;
        foreign_crds.extend(applied.foreign);
        writes += usize::from(applied.wrote);
        if !applied.established {
            establishing.push(
                r.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    if establishing.is_empty() {
        for r in objects
            .iter()
            .filter(|r| r.stage != Stage::Crds && r.stage <= plan.through)
        {
            if taking_over {
                applier.take_over(&r.object).await?;
                writes += 1;
            } else {
                writes += usize::from(applier.apply(&r.object).await?);
            }
        }
        if plan.prune {
            let desired: Vec<_> = objects.into_iter().map(|r| r.object).collect();
            writes += applier.prune(&cp.name_any(), &desired).await?;
        }
    }
    tracing::debug!(writes, version = %plan.version, through = ?plan.through, ?establishing, "applied");

    // Ownership is taken once every stage was applied.
    let applied_all = establishing.is_empty() && plan.through == Stage::Webhooks;
    let mut next = plan.status;
    next.cni = cni_status;
    if foreign_crds != previous.foreign_crds {
        report_foreign_crds(&ctx, &cp, &foreign_crds, applying).await;
    }
    next.foreign_crds = foreign_crds;
    next.omitted_crd_facts = u32::try_from(omitted_crd_facts).ok().filter(|n| *n > 0);
    if let Some(a) = adoption.as_mut()
        && a.phase < AdoptionPhase::Adopted
        && (applied_all || a.phase > AdoptionPhase::TakeOwnership)
    {
        adoption_step(&ctx, &cp, a, &applier).await?;
    }
    // Past the check for someone else's installation: whatever stood in
    // the namespace before is gone, or being taken over.
    next.existing_installation = match &adoption {
        Some(a) if a.phase < AdoptionPhase::Adopted => previous.existing_installation.clone(),
        _ => None,
    };
    let still_adopting = adoption
        .as_ref()
        .filter(|a| a.phase < AdoptionPhase::Adopted)
        .map(|a| a.phase);
    next.adoption = adoption;
    let rotating =
        identity::record(&ctx, &cp, &mut next, &material, control_plane_bundle, &now).await;
    let (ok, reason, message) = if supported {
        (
            true,
            "AtOrAboveFloor",
            format!(
                "Kubernetes {kubernetes} is supported by Linkerd {}",
                release.version
            ),
        )
    } else {
        (
            false,
            "BelowFloorAllowed",
            format!(
                "{support_message}; installing anyway because spec.allowUnsupportedKubernetes is true"
            ),
        )
    };
    status::set_condition(
        &mut next.conditions,
        status::KUBERNETES_SUPPORTED,
        ok,
        reason,
        message,
        generation,
        &now,
    );
    let requeue = if establishing.is_empty() {
        plan.requeue
    } else {
        status::set_condition(
            &mut next.conditions,
            status::PROGRESSING,
            true,
            "EstablishingCRDs",
            format!(
                "waiting for the API server to establish {}",
                establishing.join(", ")
            ),
            generation,
            &now,
        );
        // The API server establishes a new CRD within a second or two.
        Duration::from_secs(2)
    };
    // A takeover's steps are judged from objects no watch here follows.
    let requeue = match still_adopting {
        Some(phase) => {
            let waiting = next
                .adoption
                .as_ref()
                .and_then(|a| a.waiting_for.clone())
                .map(|w| format!(": waiting for {w}"))
                .unwrap_or_default();
            status::set_condition(
                &mut next.conditions,
                status::PROGRESSING,
                true,
                "Adopting",
                format!(
                    "taking over the Linkerd running in {}, step {phase:?}{waiting}",
                    cp.spec.namespace
                ),
                generation,
                &now,
            );
            requeue.min(ADOPTION_POLL)
        }
        None => requeue,
    };
    // A rotation gates on pods that no watch here follows.
    let requeue = if rotating {
        requeue.min(ROTATION_POLL)
    } else {
        requeue
    };
    // Back in time to renew the issuer, however long the plan would wait.
    let requeue = match material.issuer_renewal {
        Some(at) => requeue.min(at.duration_since(SystemTime::now()).unwrap_or_default()),
        None => requeue,
    };
    write_status(&ctx, &cp, &previous, next).await?;
    Ok(Action::requeue(requeue))
}

/// An Event naming the CRDs someone else installed that Keelson leaves as
/// they are; a Warning where a Gateway API CRD is of another bundle than
/// the release's.
async fn report_foreign_crds(
    ctx: &Context,
    cp: &ControlPlane,
    found: &[keelson_crds::controlplane::ForeignCrd],
    release: &catalog::Release,
) {
    if found.is_empty() {
        return;
    }
    let wanted = &release.gateway_api.bundle_version;
    let other_bundle = found
        .iter()
        .any(|c| c.bundle_version.as_ref().is_some_and(|v| v != wanted));
    let names: Vec<String> = found
        .iter()
        .map(|c| match &c.bundle_version {
            Some(v) => format!("{} (Gateway API {v})", c.name),
            None => c.name.clone(),
        })
        .collect();
    let mut note = format!(
        "CustomResourceDefinitions installed by someone else are left as they are: {}; label one {CONTROL_PLANE_LABEL}={} to hand it to Keelson",
        names.join(", "),
        cp.name_any()
    );
    if other_bundle {
        note.push_str(&format!(
            "; Linkerd {} was tested with Gateway API {wanted}",
            release.version
        ));
    }
    let event = Event {
        type_: if other_bundle {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: "ForeignCRDs".into(),
        note: Some(note),
        action: "Install".into(),
        secondary: None,
    };
    publish(ctx, cp, &event).await;
}

/// How often a takeover under way looks again.
const ADOPTION_POLL: Duration = Duration::from_secs(2);

/// Starts taking over the installation `found` (`spec.adoption`): its
/// bundle kept, its release the current version. Nothing else is written
/// in this round; the next one takes ownership.
async fn start_adoption(
    ctx: &Context,
    cp: &ControlPlane,
    previous: &ControlPlaneStatus,
    found: keelson_crds::controlplane::ExistingInstallation,
    now: &Time,
) -> Result<Action, ReconcileError> {
    let generation = cp.metadata.generation;
    let started = adoption::start(
        &ctx.client,
        cp,
        &ctx.keelson_namespace,
        found.version.as_deref(),
        now,
    )
    .await?;
    let adoption = match started {
        Ok(adoption) => adoption,
        Err(message) => {
            let mut next = status::refused(previous, generation, "AdoptionRefused", &message, now);
            if previous.existing_installation.as_ref() != Some(&found) {
                let event = Event {
                    type_: EventType::Warning,
                    reason: "AdoptionRefused".into(),
                    note: Some(message.clone()),
                    action: "Adopt".into(),
                    secondary: None,
                };
                publish(ctx, cp, &event).await;
            }
            next.existing_installation = Some(found);
            write_status(ctx, cp, previous, next).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
    };
    let note = format!(
        "adopting Linkerd {} running in {} ({}): its trust bundle (sha256 {}, {} anchors) and issuer are kept",
        adoption.version,
        cp.spec.namespace,
        found.objects.join(", "),
        crate::identity::rotation::short(&adoption.trust_root_sha256),
        found.trust_anchors.len(),
    );
    publish(
        ctx,
        cp,
        &Event {
            type_: EventType::Normal,
            reason: "AdoptionStarted".into(),
            note: Some(note.clone()),
            action: "Adopt".into(),
            secondary: None,
        },
    )
    .await;
    let mut next = previous.clone();
    next.current_version = Some(adoption.version.clone());
    next.adoption = Some(adoption);
    next.existing_installation = Some(found);
    status::set_condition(
        &mut next.conditions,
        status::PROGRESSING,
        true,
        "Adopting",
        note,
        generation,
        now,
    );
    write_status(ctx, cp, previous, next).await?;
    Ok(Action::requeue(Duration::from_millis(200)))
}

/// One step of a takeover under way, past an apply that succeeded;
/// `adoption` is updated in place.
async fn adoption_step(
    ctx: &Context,
    cp: &ControlPlane,
    adoption: &mut keelson_crds::controlplane::AdoptionStatus,
    applier: &Applier,
) -> Result<(), ReconcileError> {
    let ns = cp.spec.namespace.as_str();
    let event = |reason: &str, note: String| Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note),
        action: "Adopt".into(),
        secondary: None,
    };
    match adoption.phase {
        // Every object was just taken over and applied.
        AdoptionPhase::TakeOwnership => {
            let note = format!(
                "Keelson owns every object of the control plane in {ns}; handing injection over to Keelson's injector"
            );
            publish(ctx, cp, &event("OwnershipTaken", note)).await;
            *adoption = adoption::advanced(adoption, AdoptionPhase::HandOverInjector);
        }
        AdoptionPhase::HandOverInjector => {
            if adoption::injector_handed_over(&ctx.client).await? {
                publish(
                    ctx,
                    cp,
                    &event(
                        "InjectorHandedOver",
                        format!(
                            "Keelson's injector serves; Linkerd's registration {} is gone",
                            adoption::LINKERD_INJECTOR_WEBHOOK
                        ),
                    ),
                )
                .await;
                *adoption = adoption::advanced(adoption, AdoptionPhase::RemoveLinkerdInjector);
            } else {
                adoption.waiting_for = Some(
                    "the webhook loop to register Keelson's injector and remove Linkerd's".into(),
                );
            }
        }
        AdoptionPhase::RemoveLinkerdInjector => {
            let removed = adoption::remove_linkerd_injector(applier, ns).await?;
            tracing::info!(namespace = ns, removed, "removed Linkerd's injector");
            *adoption = adoption::advanced(adoption, AdoptionPhase::ForgetHelmRelease);
        }
        AdoptionPhase::ForgetHelmRelease => {
            let keep = cp
                .spec
                .adoption
                .as_ref()
                .is_some_and(|a| a.keep_helm_release);
            if !keep {
                let forgotten = adoption::forget_helm_release(&ctx.client, ns).await?;
                if !forgotten.is_empty() {
                    let note = format!(
                        "forgot Helm release {} in {ns} ({}): Keelson manages the control plane now, and a helm upgrade would fail rather than undo it",
                        adoption::HELM_RELEASE,
                        forgotten.join(", ")
                    );
                    publish(ctx, cp, &event("HelmReleaseForgotten", note)).await;
                }
            }
            publish(
                ctx,
                cp,
                &event(
                    "Adopted",
                    format!(
                        "Keelson runs the Linkerd {} control plane in {ns}",
                        adoption.version
                    ),
                ),
            )
            .await;
            *adoption = adoption::advanced(adoption, AdoptionPhase::Adopted);
        }
        AdoptionPhase::Adopted => {}
    }
    Ok(())
}

/// Writes status only when it changed, with an Event when the phase does.
async fn write_status(
    ctx: &Context,
    cp: &ControlPlane,
    previous: &ControlPlaneStatus,
    mut next: ControlPlaneStatus,
) -> Result<(), ReconcileError> {
    status::with_kstatus(&mut next.conditions);
    if &next == previous {
        return Ok(());
    }
    if next.phase != previous.phase
        && let Some(phase) = next.phase
    {
        let warning = matches!(phase, keelson_crds::controlplane::ControlPlanePhase::Failed);
        let note = next
            .conditions
            .iter()
            .find(|c| c.type_ == status::READY)
            .map(|c| c.message.clone());
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: format!("{phase:?}"),
            note,
            action: "Reconcile".into(),
            secondary: None,
        };
        publish(ctx, cp, &event).await;
    }
    // A merge patch that nulls what `next` dropped (a finished upgrade, a
    // cleared target version), so stale fields do not linger.
    let api: Api<ControlPlane> = Api::all(ctx.client.clone());
    let as_json = |s: &ControlPlaneStatus| serde_json::to_value(s).expect("status serializes");
    let patch = serde_json::json!({
        "status": crate::apply::merge_patch(&as_json(previous), &as_json(&next))
    });
    api.patch_status(
        &cp.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| ReconcileError::kube("writing status", e))?;
    Ok(())
}

async fn publish(ctx: &Context, cp: &ControlPlane, event: &Event) {
    // ControlPlanes are cluster-scoped; their Events live in `default`, and
    // Kubernetes before 1.22 wants the reference in the same namespace.
    let mut reference = cp.object_ref(&());
    reference.namespace = Some("default".into());
    // An Event is a courtesy; failing to record one must not fail the reconcile.
    if let Err(e) = ctx.recorder.publish(event, &reference).await {
        tracing::warn!(error = %e, "recording an event");
    }
}

async fn server_version(client: &Client) -> Result<KubeVersion, ReconcileError> {
    let info = client
        .apiserver_version()
        .await
        .map_err(|e| ReconcileError::kube("reading the API server version", e))?;
    KubeVersion::of_server(&info).map_err(|e| {
        ReconcileError::kube(
            "reading the API server version",
            kube::Error::Service(e.into()),
        )
    })
}
