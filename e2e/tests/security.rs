//! Keelson's own footprint under hostile or broken input, on the real test
//! cluster: a stored object Keelson cannot act on is reported on itself and
//! never stops the operator.

mod common;

use anyhow::{Context, ensure};
use common::{WAIT, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod};
use keelson_crds::{ControlPlane, DataPlane};
use keelson_e2e::shared::{env, install_keelson_crds};
use keelson_operator::controlplane::namespace::CREATED_BY;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// The DataPlane's `(reason, message)` of condition `type_`.
fn condition(dp: &DataPlane, type_: &str) -> Option<(String, String)> {
    dp.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.reason.clone(), c.message.clone()))
}

async fn warning_events(client: &Client, ns: &str, name: &str) -> anyhow::Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=DataPlane,involvedObject.name={name}"
    ));
    Ok(events
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect())
}

/// A DataPlane whose duration overflows, stored while no validator was
/// registered (a GitOps sync at first install), used to panic the operator
/// on every start, webhooks included. Now the operator starts, injects, and
/// reports the object; fixing the object resumes it.
#[tokio::test]
async fn a_stored_data_plane_that_overflows_is_reported_and_the_operator_keeps_running() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("overflow", |client, ns| async move {
            install_keelson_crds(&client).await?;
            // No validator: a previous test's operator may have left one.
            common::without_validator(&client).await?;
            // The control plane gets `ns`; the app and its DataPlane their own
            // injected namespace.
            let app = format!("{ns}-app");
            common::injected_namespace(&client, &app).await?;
            common::with_dumps(&client, std::slice::from_ref(&app), async {
                let dps: Api<DataPlane> = Api::namespaced(client.clone(), &app);
                // What the schema can say, the API server itself refuses, naming
                // the field (sent untyped: the typed DataPlane cannot hold it).
                let untyped: Api<kube::core::DynamicObject> = Api::namespaced_with(
                    client.clone(),
                    &app,
                    &kube::discovery::ApiResource::erase::<DataPlane>(&()),
                );
                let big = json!({
                    "apiVersion": "keelson.dev/v1alpha1", "kind": "DataPlane",
                    "metadata": {"name": "big"}, "spec": {"rollout": {"batchSize": 2147483648u64}},
                });
                match untyped
                    .create(&PostParams::default(), &serde_json::from_value(big)?)
                    .await
                {
                    Err(kube::Error::Api(s))
                        if s.code == 422 && s.message.contains("spec.rollout.batchSize") => {}
                    other => {
                        anyhow::bail!(
                            "batchSize 2147483648 should be refused by the schema: {other:?}"
                        )
                    }
                }
                // What it cannot say (an overflow) is stored.
                dps.create(
                    &PostParams::default(),
                    &common::data_plane(
                        "overflow",
                        json!({"rollout": {"interval": "99999999999999999h"}}),
                    )?,
                )
                .await?;

                let (operator, cps) = common::installed(&client, &ns, "edge-25.4.4").await?;
                let dp = wait_until("the DataPlane reports its bad interval", WAIT, || async {
                    let dp = dps.get("overflow").await?;
                    let invalid = condition(&dp, "Ready").is_some_and(|(reason, message)| {
                        reason == "InvalidSpec" && message.contains("spec.rollout.interval")
                    });
                    anyhow::Ok(invalid.then_some(dp))
                })
                .await?;
                let (_, message) = condition(&dp, "Degraded").context("no Degraded condition")?;
                ensure!(message.contains("too long"), "Degraded says {message:?}");
                let events = warning_events(&client, &app, "overflow").await?;
                ensure!(
                    events
                        .iter()
                        .any(|e| e.reason.as_deref() == Some("InvalidSpec")),
                    "no InvalidSpec Event: {events:?}"
                );

                // Still running, and injecting.
                ensure!(operator.is_running(), "the operator stopped");
                common::injector_registered(&client, "Ignore").await?;
                Api::<Deployment>::namespaced(client.clone(), &app)
                    .create(
                        &PostParams::default(),
                        &common::deployment("web", "overflow", 1, "example.com/web:1", false)?,
                    )
                    .await?;
                let pods: Api<Pod> = Api::namespaced(client.clone(), &app);
                wait_until("the web pod is injected", WAIT, || async {
                    let meshed = pods
                        .list(&ListParams::default().labels("app=web"))
                        .await?
                        .items
                        .iter()
                        .any(|p| {
                            p.spec.as_ref().is_some_and(|s| {
                                s.containers.iter().any(|c| c.name == "linkerd-proxy")
                            })
                        });
                    anyhow::Ok(meshed.then_some(()))
                })
                .await?;

                // Fixed, it is a DataPlane like any other.
                dps.patch(
                    "overflow",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"rollout": {"interval": "10s"}}})),
                )
                .await?;
                wait_until("the fixed DataPlane is Ready", WAIT, || async {
                    let dp = dps.get("overflow").await?;
                    anyhow::Ok(condition(&dp, "Ready").filter(|(r, _)| r == "UpToDate"))
                })
                .await?;
                ensure!(operator.is_running(), "the operator stopped");
                common::delete_control_plane(&cps, &ns).await?;
                operator.stop().await
            })
            .await
        })
        .await;
}

/// `(reason, message)` of the ControlPlane's condition `type_`.
async fn cp_condition(
    cps: &Api<ControlPlane>,
    name: &str,
    type_: &str,
) -> anyhow::Result<Option<(String, String)>> {
    let cp = cps.get(name).await?;
    Ok(cp.status.and_then(|s| {
        s.conditions
            .into_iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.reason, c.message))
    }))
}

/// A ControlPlane naming a namespace someone else made (`payments`, with a
/// Deployment and a ConfigMap in it) is refused by the validator and, when
/// stored without it, by the reconciler, which writes nothing there; handed
/// over by a label it is used, and deleting the ControlPlane leaves the
/// namespace and its objects alone.
#[tokio::test]
async fn a_control_plane_never_takes_or_deletes_a_namespace_it_did_not_create() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("payments", |client, ns| async move {
            install_keelson_crds(&client).await?;
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            deployments
                .create(
                    &PostParams::default(),
                    &common::deployment("api", "payments", 1, "example.com/api:1", false)?,
                )
                .await?;
            let config: ConfigMap = serde_json::from_value(
                json!({"metadata": {"name": "settings"}, "data": {"k": "v"}}),
            )?;
            Api::<ConfigMap>::namespaced(client.clone(), &ns)
                .create(&PostParams::default(), &config)
                .await?;
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let version_before = namespaces.get(&ns).await?.resource_version();

            // Stored while no validator is registered: the reconciler refuses.
            common::without_validator(&client).await?;
            let cps: Api<ControlPlane> = Api::all(client.clone());
            cps.create(
                &PostParams::default(),
                &common::control_plane(&ns, &ns, "edge-25.4.4", json!({})),
            )
            .await?;
            let operator = common::Operator::start(client.clone());
            operator.webhooks_registered(&client).await?;
            wait_until("the reconciler refuses the namespace", WAIT, || async {
                let refused = cp_condition(&cps, &ns, "Ready")
                    .await?
                    .is_some_and(|(r, m)| {
                        r == "NamespaceNotOwned" && m.starts_with("spec.namespace: ")
                    });
                anyhow::Ok(refused.then_some(()))
            })
            .await?;
            ensure!(
                namespaces.get(&ns).await?.resource_version() == version_before,
                "the refused namespace was written to"
            );

            // The validator refuses a second one the same way.
            let other = format!("{ns}-other");
            match cps
                .create(
                    &PostParams::default(),
                    &common::control_plane(&other, &ns, "edge-25.4.4", json!({})),
                )
                .await
            {
                Err(kube::Error::Api(s))
                    if s.code == 400
                        && s.message.contains("spec.namespace")
                        && s.message
                            .contains("already exists and Keelson did not create it") => {}
                other => anyhow::bail!("the validator should refuse the namespace: {other:?}"),
            }

            // Handed over, it is used; uninstall keeps it and what is in it.
            common::hand_over(&client, &ns, &ns).await?;
            common::wait_converged(&cps, &ns, "edge-25.4.4").await?;
            common::delete_control_plane(&cps, &ns).await?;
            let kept = namespaces.get(&ns).await?;
            ensure!(
                kept.metadata.deletion_timestamp.is_none(),
                "namespace {ns} is being deleted"
            );
            ensure!(
                deployments.get_opt("api").await?.is_some(),
                "Deployment api is gone"
            );
            let events = common::control_plane_events(&client, &ns).await?;
            ensure!(
                events.iter().any(|(reason, _)| reason == "NamespaceKept"),
                "no NamespaceKept Event: {events:?}"
            );
            operator.stop().await
        })
        .await;
}

/// A namespace Keelson created is deleted on uninstall when it holds only
/// Keelson's objects, and kept, with an Event naming them, when it holds
/// someone else's.
#[tokio::test]
async fn uninstall_deletes_only_an_empty_namespace_keelson_created() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("created", |client, ns| async move {
            install_keelson_crds(&client).await?;
            let operator = common::Operator::start(client.clone());
            operator.webhooks_registered(&client).await?;
            let cps: Api<ControlPlane> = Api::all(client.clone());
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let (kept, emptied) = (format!("{ns}-kept"), format!("{ns}-gone"));
            common::with_dumps(&client, &[kept.clone(), emptied.clone()], async {
                for target in [&kept, &emptied] {
                    cps.create(
                        &PostParams::default(),
                        &common::control_plane(&ns, target, "edge-25.4.4", json!({})),
                    )
                    .await?;
                    let cp = common::wait_converged(&cps, &ns, "edge-25.4.4").await?;
                    let created = namespaces.get(target).await?;
                    ensure!(
                        created.annotations().get(CREATED_BY) == cp.metadata.uid.as_ref(),
                        "namespace {target} does not record its ControlPlane: {:?}",
                        created.annotations()
                    );
                    if target == &kept {
                        let config: ConfigMap = serde_json::from_value(
                            json!({"metadata": {"name": "mine"}, "data": {"k": "v"}}),
                        )?;
                        Api::<ConfigMap>::namespaced(client.clone(), target)
                            .create(&PostParams::default(), &config)
                            .await?;
                    }
                    common::delete_control_plane(&cps, &ns).await?;
                }
                let still = namespaces.get(&kept).await?;
                ensure!(
                    still.metadata.deletion_timestamp.is_none(),
                    "{kept} is being deleted"
                );
                let events = common::control_plane_events(&client, &ns).await?;
                ensure!(
                    events
                        .iter()
                        .any(|(reason, message)| reason == "NamespaceKept"
                            && message.contains("ConfigMap")
                            && message.contains("mine")),
                    "no NamespaceKept Event naming the ConfigMap: {events:?}"
                );
                let gone = namespaces.get_opt(&emptied).await?;
                ensure!(
                    gone.is_none_or(|n| n.metadata.deletion_timestamp.is_some()),
                    "{emptied} was not deleted"
                );
                anyhow::Ok(())
            })
            .await?;
            operator.stop().await
        })
        .await;
}

/// The managed trust anchor's key lives in Keelson's namespace, where no
/// ServiceAccount but Keelson's may read it (Kubernetes' own controllers in
/// kube-system aside, which may read every Secret by design). One an older
/// Keelson left in the control plane's namespace, where Linkerd's
/// destination controller reads Secrets, is moved, with the bundle
/// unchanged.
#[tokio::test]
async fn the_trust_anchor_key_is_out_of_the_meshs_reach() {
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    use keelson_operator::controlplane::material::{ANCHOR_SECRET, anchor_secret};
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("anchor", |client, ns| async move {
            let (operator, cps) = common::installed(&client, &ns, "edge-25.4.4").await?;
            let moved = common::anchors(&client, &ns).await?;
            let bundle = common::trust_bundle(&client, &ns).await?;

            // Who may read it.
            let name = anchor_secret(&ns);
            let accounts = Api::<ServiceAccount>::all(client.clone())
                .list(&ListParams::default())
                .await?;
            let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
            let mut readers = Vec::new();
            let mut checked = 0;
            for sa in &accounts.items {
                let sa_ns = sa.namespace().unwrap_or_default();
                let user = format!("system:serviceaccount:{sa_ns}:{}", sa.name_any());
                let review: SubjectAccessReview = serde_json::from_value(json!({"spec": {
                    "user": user,
                    "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{sa_ns}"), "system:authenticated"],
                    "resourceAttributes": {"verb": "get", "resource": "secrets",
                        "namespace": common::KEELSON_NAMESPACE, "name": name},
                }}))?;
                let allowed = reviews
                    .create(&PostParams::default(), &review)
                    .await?
                    .status
                    .is_some_and(|s| s.allowed);
                if allowed && sa_ns != "kube-system" {
                    readers.push(user);
                }
                checked += 1;
            }
            ensure!(checked > 3, "only {checked} ServiceAccounts were checked");
            ensure!(readers.is_empty(), "may read the anchor key: {readers:?}");
            // Linkerd's destination controller, which reads every Secret in
            // the control plane's namespace, is among those refused.
            ensure!(
                accounts.items.iter().any(|sa| sa.name_any() == "linkerd-destination"
                    && sa.namespace().as_deref() == Some(ns.as_str())),
                "no linkerd-destination ServiceAccount was checked"
            );

            // An older Keelson's layout: the anchors in the control plane's
            // namespace, none in Keelson's.
            operator.stop().await?;
            let own: Api<Secret> = Api::namespaced(client.clone(), common::KEELSON_NAMESPACE);
            own.delete(&name, &Default::default()).await?;
            let mut legacy = Secret {
                data: moved.data.clone(),
                ..Default::default()
            };
            legacy.metadata.name = Some(ANCHOR_SECRET.into());
            legacy.metadata.labels =
                Some([("keelson.dev/control-plane".to_owned(), ns.clone())].into());
            let theirs: Api<Secret> = Api::namespaced(client.clone(), &ns);
            theirs.create(&PostParams::default(), &legacy).await?;

            let operator = common::Operator::start(client.clone());
            wait_until("the anchors move into Keelson's namespace", WAIT, || async {
                let here = own.get_opt(&name).await?;
                let there = theirs.get_opt(ANCHOR_SECRET).await?;
                anyhow::Ok((here.is_some() && there.is_none()).then_some(here))
            })
            .await?
            .filter(|s| s.data == moved.data)
            .context("the moved Secret holds other anchors")?;
            common::wait_converged(&cps, &ns, "edge-25.4.4").await?;
            ensure!(
                common::trust_bundle(&client, &ns).await? == bundle,
                "the trust bundle changed"
            );

            // Uninstall removes the keys with the ControlPlane.
            common::delete_control_plane(&cps, &ns).await?;
            ensure!(
                own.get_opt(&name).await?.is_none(),
                "the anchor Secret outlived its ControlPlane"
            );
            operator.stop().await
        })
        .await;
}
