//! End-to-end tests of Keelson's admission webhooks: the real API server
//! calls the operator's TLS server for keelson.dev objects and for pods.

mod common;

use anyhow::{Context, bail, ensure};
use common::{Operator, WAIT, control_plane};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use keelson_crds::{ControlPlane, DataPlane};
use keelson_e2e::shared::{env, install_keelson_crds};
use keelson_operator::inject::manifests::{Source, inject_manifests};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;

/// The message of an API error, or a failure if the call succeeded.
fn denial<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> anyhow::Result<String> {
    match result {
        Err(kube::Error::Api(status)) => Ok(status.message.clone()),
        other => bail!("expected the API server to refuse, got {other:?}"),
    }
}

/// The API server's refusal of a ControlPlane `name` naming a release no
/// catalog has.
async fn unknown_release(cps: &Api<ControlPlane>, name: &str) -> anyhow::Result<String> {
    denial(
        cps.create(
            &PostParams::default(),
            &control_plane(name, name, "edge-99.1.1", json!({})),
        )
        .await,
    )
}

#[tokio::test]
async fn keelson_objects_are_validated_by_the_webhook() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("validate", |client, ns| async move {
            install_keelson_crds(&client).await?;
            let operator = Operator::start(client.clone());
            operator.webhooks_registered(&client).await?;

            let cps: Api<ControlPlane> = Api::all(client.clone());
            let message = unknown_release(&cps, &ns).await?;
            ensure!(
                message.contains("validate.keelson.dev") && message.contains("spec.version"),
                "{message}"
            );
            let message = denial(
                cps.create(
                    &PostParams::default(),
                    &control_plane(
                        &ns,
                        &ns,
                        "edge-25.4.4",
                        json!({"clusterNetworks": ["10.0.0.0/8", "not-a-cidr"],
                               "identity": {"issuerLifetime": "24h", "issuanceLifetime": "48h"}}),
                    ),
                )
                .await,
            )?;
            ensure!(
                message.contains("spec.clusterNetworks[1]")
                    && message.contains("spec.identity.issuanceLifetime"),
                "every bad field is named: {message}"
            );
            ensure!(
                cps.get_opt(&ns).await?.is_none(),
                "nothing of a refused ControlPlane is stored"
            );

            let dps: Api<DataPlane> = Api::namespaced(client.clone(), &ns);
            let data_plane = |spec: Value| -> anyhow::Result<DataPlane> {
                Ok(serde_json::from_value(json!({
                    "apiVersion": "keelson.dev/v1alpha1", "kind": "DataPlane",
                    "metadata": {"name": "apps", "namespace": ns}, "spec": spec,
                }))?)
            };
            let message = denial(
                dps.create(
                    &PostParams::default(),
                    &data_plane(json!({"proxyVersion": {"policy": "Pinned"}}))?,
                )
                .await,
            )?;
            ensure!(message.contains("spec.proxyVersion.version"), "{message}");
            dps.create(
                &PostParams::default(),
                &data_plane(
                    json!({"proxyVersion": {"policy": "Pinned", "version": "edge-24.11.8"}}),
                )?,
            )
            .await
            .context("a valid DataPlane is accepted")?;
            // Updates are validated too.
            let message = denial(
                dps.patch(
                    "apps",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"rollout": {"maxUnavailable": "0%"}}})),
                )
                .await,
            )?;
            ensure!(message.contains("spec.rollout.maxUnavailable"), "{message}");
            Ok(())
        })
        .await;
}

/// Creates a namespace (deleted by `cleanup`) with `annotations`.
async fn namespace(client: &Client, name: &str, annotations: Value) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(
        json!({"metadata": {"name": name, "annotations": annotations,
        "labels": {keelson_e2e::shared::TEST_NAMESPACE_LABEL: "true"}}}),
    )?;
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

async fn cleanup(client: &Client, cp: &str, namespaces: &[&str]) -> anyhow::Result<()> {
    let cps: Api<ControlPlane> = Api::all(client.clone());
    if let Some(found) = cps.get_opt(cp).await? {
        cps.delete(cp, &DeleteParams::default()).await?;
        tokio::time::timeout(
            WAIT,
            kube::runtime::wait::await_condition(
                cps.clone(),
                cp,
                kube::runtime::wait::conditions::is_deleted(&found.uid().unwrap_or_default()),
            ),
        )
        .await
        .context("the ControlPlane was not finalized")??;
    }
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces {
        api.delete(ns, &DeleteParams::default()).await?;
    }
    Ok(())
}

fn deployment(name: &str, replicas: i32, pod_annotations: Value) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": pod_annotations},
                "spec": {"containers": [{"name": "app", "image": "example.com/app:1",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]},
            },
        },
    }))?)
}

/// The pods of Deployment `app`, once it has `count` of them.
async fn pods_of(client: &Client, ns: &str, app: &str, count: usize) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("app={app}"));
    tokio::time::timeout(WAIT, async {
        loop {
            let list = pods.list(&lp).await?.items;
            if list.len() >= count {
                return anyhow::Ok(list);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
    .with_context(|| format!("Deployment {ns}/{app} did not get {count} pods"))?
}

/// Names of a pod's containers and init containers, and whether it has a proxy.
fn has_proxy(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let named = |c: &k8s_openapi::api::core::v1::Container| c.name == "linkerd-proxy";
    spec.is_some_and(|s| {
        s.containers.iter().any(named) || s.init_containers.iter().flatten().any(named)
    })
}

#[tokio::test]
async fn pods_in_injected_namespaces_get_the_proxy() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("inject", |client, ns| async move {
            let (_operator, _cps) = common::installed(&client, &ns, "edge-25.4.4").await?;
            common::injector_registered(&client, "Ignore").await?;

            let meshed = format!("{ns}-meshed");
            let plain = format!("{ns}-plain");
            namespace(&client, &meshed, json!({"linkerd.io/inject": "enabled"})).await?;
            namespace(&client, &plain, json!({})).await?;
            let result = async {
                let in_meshed: Api<Deployment> = Api::namespaced(client.clone(), &meshed);
                let in_plain: Api<Deployment> = Api::namespaced(client.clone(), &plain);
                let pp = PostParams::default();
                in_meshed
                    .create(&pp, &deployment("web", 2, json!({}))?)
                    .await?;
                in_meshed
                    .create(
                        &pp,
                        &deployment("opt-out", 1, json!({"linkerd.io/inject": "disabled"}))?,
                    )
                    .await?;
                in_plain
                    .create(&pp, &deployment("web", 1, json!({}))?)
                    .await?;
                in_plain
                    .create(
                        &pp,
                        &deployment("opt-in", 1, json!({"linkerd.io/inject": "enabled"}))?,
                    )
                    .await?;

                for pod in pods_of(&client, &meshed, "web", 2).await? {
                    ensure!(has_proxy(&pod), "{} has no proxy: {pod:?}", pod.name_any());
                    let annotations = pod.annotations();
                    ensure!(
                        annotations
                            .get("linkerd.io/proxy-version")
                            .map(String::as_str)
                            == Some("edge-25.4.4"),
                        "{annotations:?}"
                    );
                    ensure!(
                        pod.labels()
                            .get("linkerd.io/proxy-deployment")
                            .map(String::as_str)
                            == Some("web"),
                        "the owner label names the Deployment: {:?}",
                        pod.labels()
                    );
                }
                // `keelson inject -f` for the cluster's ControlPlane writes
                // into the Deployment's template what the webhook patched
                // into its pods: the template, defaulted by the API server
                // in a dry run (where the webhook finds the proxy there and
                // skips), is the pod.
                let webhook_pod = pods_of(&client, &meshed, "web", 2).await?.remove(0);
                let source = Source::from_cluster(&client, Some(&ns)).await?;
                let mut manifest = deployment("web", 2, json!({}))?;
                manifest.metadata.namespace = Some(meshed.clone());
                let (yaml, _) =
                    inject_manifests(&yaml_serde::to_string(&manifest)?, &source.offline())?;
                let injected: Deployment = yaml_serde::from_str(yaml.trim_start_matches("---\n"))?;
                let template = injected.spec.context("no spec")?.template;
                let as_pod = Pod {
                    metadata: kube::api::ObjectMeta {
                        generate_name: Some("web-cli-".into()),
                        ..template.metadata.context("no template metadata")?
                    },
                    spec: template.spec,
                    status: None,
                };
                let dry_run = PostParams {
                    dry_run: true,
                    ..PostParams::default()
                };
                let defaulted = Api::<Pod>::namespaced(client.clone(), &meshed)
                    .create(&dry_run, &as_pod)
                    .await?;
                let mut want = webhook_pod.spec.clone().context("no spec")?;
                want.node_name = None;
                // The ServiceAccount admission plugin adds the token volume
                // before webhooks run: after the proxy's volumes in the dry
                // run, before them in the pod.
                let by_name = |spec: &mut k8s_openapi::api::core::v1::PodSpec| {
                    if let Some(v) = spec.volumes.as_mut() {
                        v.sort_by(|a, b| a.name.cmp(&b.name));
                    }
                };
                by_name(&mut want);
                let mut defaulted = defaulted;
                if let Some(spec) = defaulted.spec.as_mut() {
                    by_name(spec);
                }
                ensure!(
                    defaulted.spec.as_ref() == Some(&want),
                    "keelson inject: {}\nwebhook: {}",
                    serde_json::to_string(&defaulted.spec)?,
                    serde_json::to_string(&want)?
                );
                let mut labels = webhook_pod.labels().clone();
                labels.remove("pod-template-hash");
                ensure!(
                    defaulted.labels() == &labels,
                    "{:?} != {labels:?}",
                    defaulted.labels()
                );
                ensure!(
                    defaulted.annotations() == webhook_pod.annotations(),
                    "{:?} != {:?}",
                    defaulted.annotations(),
                    webhook_pod.annotations()
                );
                for pod in pods_of(&client, &meshed, "opt-out", 1).await? {
                    ensure!(!has_proxy(&pod), "a disabled pod was injected");
                }
                for pod in pods_of(&client, &plain, "web", 1).await? {
                    ensure!(!has_proxy(&pod), "a pod of a plain namespace was injected");
                }
                for pod in pods_of(&client, &plain, "opt-in", 1).await? {
                    ensure!(has_proxy(&pod), "an annotated pod was not injected");
                }
                // What Linkerd's chart will not render is denied, as
                // Linkerd's injector denies it, naming the annotation.
                let mut refused = bare_pod("bad-log-headers")?;
                refused.metadata.annotations = Some(
                    [(
                        "config.linkerd.io/proxy-log-http-headers".to_owned(),
                        "on".to_owned(),
                    )]
                    .into(),
                );
                let denied = Api::<Pod>::namespaced(client.clone(), &meshed)
                    .create(&pp, &refused)
                    .await;
                match denied {
                    Err(kube::Error::Api(e)) => ensure!(
                        e.message
                            .contains("config.linkerd.io/proxy-log-http-headers"),
                        "the denial does not name the annotation: {}",
                        e.message
                    ),
                    other => {
                        anyhow::bail!("a pod Linkerd's chart refuses was not denied: {other:?}")
                    }
                }
                // A CronJob's pods are attributed to the CronJob, as
                // Linkerd's injector does (1.20 serves CronJobs as v1beta1).
                let cron_jobs: Api<DynamicObject> = Api::namespaced_with(
                    client.clone(),
                    &meshed,
                    &ApiResource::from_gvk(&GroupVersionKind::gvk("batch", "v1beta1", "CronJob")),
                );
                let job_spec = json!({"template": {
                    "metadata": {"labels": {"app": "nightly"}},
                    "spec": {"restartPolicy": "Never", "automountServiceAccountToken": false,
                        "containers": [{"name": "task", "image": "example.com/task:1"}]}}});
                let cron: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "batch/v1beta1", "kind": "CronJob",
                    "metadata": {"name": "nightly"},
                    "spec": {"schedule": "0 3 * * *", "suspend": true,
                        "jobTemplate": {"spec": job_spec}},
                }))?;
                let cron = cron_jobs.create(&pp, &cron).await?;
                let job: Job = serde_json::from_value(json!({
                    "metadata": {"name": "nightly-1", "ownerReferences": [{
                        "apiVersion": "batch/v1beta1", "kind": "CronJob", "name": "nightly",
                        "uid": cron.metadata.uid, "controller": true}]},
                    "spec": job_spec,
                }))?;
                Api::<Job>::namespaced(client.clone(), &meshed)
                    .create(&pp, &job)
                    .await?;
                for pod in pods_of(&client, &meshed, "nightly", 1).await? {
                    ensure!(has_proxy(&pod), "the CronJob's pod has no proxy");
                    ensure!(
                        !pod.labels().contains_key("linkerd.io/proxy-job"),
                        "a CronJob's pod is labelled with its Job: {:?}",
                        pod.labels()
                    );
                }

                // The Deployment gets an Event, as with Linkerd's injector.
                let events: Api<Event> = Api::namespaced(client.clone(), &meshed);
                tokio::time::timeout(WAIT, async {
                    loop {
                        let list = events.list(&ListParams::default()).await?.items;
                        if list.iter().any(|e| {
                            e.reason.as_deref() == Some("Injected")
                                && e.involved_object.name.as_deref() == Some("web")
                        }) {
                            return anyhow::Ok(());
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                })
                .await
                .context("no Injected event on Deployment web")??;
                tokio::time::timeout(WAIT, async {
                    loop {
                        let list = events.list(&ListParams::default()).await?.items;
                        if list.iter().any(|e| {
                            e.reason.as_deref() == Some("Injected")
                                && e.involved_object.kind.as_deref() == Some("CronJob")
                                && e.involved_object.name.as_deref() == Some("nightly")
                        }) {
                            return anyhow::Ok(());
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                })
                .await
                .context("no Injected event on CronJob nightly")??;
                Ok(())
            }
            .await;
            cleanup(&client, &ns, &[&meshed, &plain]).await?;
            result
        })
        .await;
}

fn bare_pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        // A new namespace's default ServiceAccount gets its token a moment
        // later on 1.20; pods that mount none need not wait for it.
        "spec": {"automountServiceAccountToken": false,
                 "containers": [{"name": "app", "image": "example.com/app:1"}]},
    }))?)
}

#[tokio::test]
async fn with_the_webhook_down_pods_follow_the_failure_policy() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("outage", |client, ns| async move {
            let (operator, cps) = common::installed_with(
                &client,
                &ns,
                "edge-25.4.4",
                json!({"webhook": {"failurePolicy": "Fail"}}),
            )
            .await?;
            common::injector_registered(&client, "Fail").await?;
            let meshed = format!("{ns}-meshed");
            namespace(&client, &meshed, json!({"linkerd.io/inject": "enabled"})).await?;
            let pods: Api<Pod> = Api::namespaced(client.clone(), &meshed);

            let result = async {
                // Fail: with the injector down, no unmeshed pod slips in.
                operator.kill().await;
                let message = denial(
                    pods.create(&PostParams::default(), &bare_pod("during-fail")?)
                        .await,
                )?;
                ensure!(
                    message.contains("linkerd-proxy-injector.keelson.dev"),
                    "{message}"
                );

                // Ignore: pods are created, without a proxy.
                let operator = Operator::start(client.clone());
                cps.patch(
                    &ns,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"webhook": {"failurePolicy": "Ignore"}}})),
                )
                .await?;
                common::injector_registered(&client, "Ignore").await?;
                let injected = pods
                    .create(&PostParams::default(), &bare_pod("while-up")?)
                    .await?;
                ensure!(has_proxy(&injected), "the injector was up");
                operator.kill().await;
                let created = pods
                    .create(&PostParams::default(), &bare_pod("during-ignore")?)
                    .await?;
                ensure!(!has_proxy(&created), "nobody could have injected it");
                Ok(())
            }
            .await;
            let _operator = Operator::start(client.clone());
            cleanup(&client, &ns, &[&meshed]).await?;
            result
        })
        .await;
}

#[tokio::test]
async fn the_webhook_ca_follows_its_secret() {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    use k8s_openapi::api::core::v1::Secret;
    use keelson_operator::admission::certs::CA_SECRET;
    use keelson_operator::admission::configurations::VALIDATOR;

    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("webhook-ca", |client, ns| async move {
            install_keelson_crds(&client).await?;
            let operator = Operator::start(client.clone());
            operator.webhooks_registered(&client).await?;
            let secrets: Api<Secret> = Api::namespaced(client.clone(), common::KEELSON_NAMESPACE);
            let ca_of = |secret: &Secret| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get("ca.crt"))
                    .map(|pem| pem.0.clone())
            };
            let in_use = ca_of(&secrets.get(CA_SECRET).await?).context("the Secret has ca.crt")?;

            // Deleted: put back with the CA the replicas serve from, so the
            // next replica to start does not make another.
            secrets.delete(CA_SECRET, &DeleteParams::default()).await?;
            let stored = common::wait_until("the CA Secret is stored again", WAIT, || async {
                Ok(secrets.get_opt(CA_SECRET).await?.and_then(|s| ca_of(&s)))
            })
            .await?;
            ensure!(stored == in_use, "the Secret came back with another CA");

            // Replaced: the configurations trust the new CA, and the server
            // presents a certificate of it, so the API server's calls pass.
            let next = keelson_webhooks::WebhookCa::generate(
                "e2e-replaced-webhook-ca",
                Duration::from_secs(86_400),
                std::time::SystemTime::now(),
            )?;
            let mut secret = secrets.get(CA_SECRET).await?;
            secret.data = Some(
                [("ca.crt", next.cert_pem()), ("ca.key", next.key_pem())]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), k8s_openapi::ByteString(v.as_bytes().to_vec())))
                    .collect(),
            );
            secrets
                .replace(CA_SECRET, &PostParams::default(), &secret)
                .await?;
            let validators: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
            common::wait_until(
                "the webhook configuration trusts the new CA",
                WAIT,
                || async {
                    let bundle = validators
                        .get(VALIDATOR)
                        .await?
                        .webhooks
                        .and_then(|w| w.into_iter().next())
                        .and_then(|w| w.client_config.ca_bundle);
                    Ok(bundle
                        .is_some_and(|b| b.0 == next.cert_pem().as_bytes())
                        .then_some(()))
                },
            )
            .await?;
            let cps: Api<ControlPlane> = Api::all(client.clone());
            let refused =
                common::wait_until("the API server reaches the webhook", WAIT, || async {
                    let message = unknown_release(&cps, &ns).await?;
                    // Until the server's certificate chains to the bundle, the
                    // API server reports a failed call instead of the denial.
                    Ok(message.contains("spec.version").then_some(message))
                })
                .await?;
            ensure!(refused.contains("validate.keelson.dev"), "{refused}");
            ensure!(
                !refused.contains("failed calling webhook"),
                "the webhook answered: {refused}"
            );
            operator.stop().await
        })
        .await;
}
