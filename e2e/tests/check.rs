//! `keelson check` against the real test cluster: it passes on a converged
//! control plane, counts proxies per version, and fails naming the problem
//! once the issuer has expired, a Deployment is scaled to 0 and the
//! operator (leader and webhooks) is down.

mod common;

use anyhow::ensure;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use keelson_e2e::shared::env;
use keelson_operator::check::{Outcome, Report, cluster};
use keelson_operator::identity;
use keelson_operator::render::TlsPair;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::time::{Duration, SystemTime};

async fn check(client: &Client) -> Report {
    let options = cluster::Options {
        namespace: common::KEELSON_NAMESPACE.into(),
        warn_within: Duration::from_secs(7 * 86_400),
        timeout: Duration::from_secs(10),
    };
    cluster::run(client, &options).await
}

fn has(report: &Report, outcome: Outcome, needles: &[&str]) -> anyhow::Result<()> {
    let messages = report.messages(outcome);
    ensure!(
        messages
            .iter()
            .any(|m| needles.iter().all(|n| m.contains(n))),
        "no {outcome:?} finding with {needles:?} in:\n{}",
        report.render()
    );
    Ok(())
}

#[tokio::test]
async fn check_passes_on_a_converged_mesh_and_names_what_breaks() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("check", |client, ns| async move {
            let (operator, _cps) = common::installed(&client, &ns, "edge-25.4.4").await?;

            // A pod meshed by an older proxy (labelled and annotated as the
            // injector would; its namespace is not injected).
            let apps = format!("{ns}-apps");
            let namespaces: Api<Namespace> = Api::all(client.clone());
            namespaces
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": apps,
                        "labels": {"config.linkerd.io/admission-webhooks": "disabled"}}}))?,
                )
                .await?;
            let pods: Api<Pod> = Api::namespaced(client.clone(), &apps);
            pods.create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "old-proxy",
                        "labels": {"linkerd.io/control-plane-ns": ns},
                        "annotations": {"linkerd.io/proxy-version": "edge-24.11.8"}},
                    "spec": {"automountServiceAccountToken": false,
                             "containers": [{"name": "app", "image": "example.com/app:1"}]},
                }))?,
            )
            .await?;

            let healthy = check(&client).await;
            ensure!(!healthy.failed(), "{}", healthy.render());
            has(
                &healthy,
                Outcome::Pass,
                &[&format!("ControlPlane {ns} is Ready")],
            )?;
            has(
                &healthy,
                Outcome::Pass,
                &[&format!("Deployment {ns}/linkerd-identity"), "1 of 1"],
            )?;
            has(&healthy, Outcome::Pass, &["trust anchor", "valid for"])?;
            has(&healthy, Outcome::Pass, &["issuer", "valid for"])?;
            has(
                &healthy,
                Outcome::Pass,
                &[&format!("Keelson replica {} leads", operator.identity)],
            )?;
            has(
                &healthy,
                Outcome::Pass,
                &["keelson-validator", "answers /readyz", "TLS verified"],
            )?;
            has(
                &healthy,
                Outcome::Pass,
                &["keelson-proxy-injector", "answers /readyz"],
            )?;
            has(
                &healthy,
                Outcome::Warn,
                &["edge-25.4.4", "1 at edge-24.11.8"],
            )?;

            // Break three things, with the operator stopped so that nothing
            // repairs them.
            operator.stop().await?;
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
            let anchor = common::anchors(&client, &ns).await?;
            let anchor = TlsPair {
                cert_pem: common::secret_text(&anchor, "ca.crt")?,
                key_pem: common::secret_text(&anchor, "ca.key")?,
            };
            let expired = identity::issuer(
                &anchor,
                &ns,
                "cluster.local",
                Duration::from_secs(86_400),
                SystemTime::now() - Duration::from_secs(400 * 86_400),
            )?;
            let b64 = |s: &str| k8s_openapi::ByteString(s.as_bytes().to_vec());
            secrets
                .patch(
                    "linkerd-identity-issuer",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {
                        "crt.pem": b64(&expired.cert_pem),
                        "key.pem": b64(&expired.key_pem),
                    }})),
                )
                .await?;
            let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
                Api::namespaced(client.clone(), &ns);
            deployments
                .patch(
                    "linkerd-destination",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": 0}})),
                )
                .await?;

            let broken = check(&client).await;
            ensure!(broken.failed(), "{}", broken.render());
            has(
                &broken,
                Outcome::Fail,
                &[
                    &format!("issuer in Secret {ns}/linkerd-identity-issuer"),
                    "expired 399 days ago",
                ],
            )?;
            has(
                &broken,
                Outcome::Fail,
                &[&format!(
                    "Deployment {ns}/linkerd-destination is scaled to 0"
                )],
            )?;
            has(
                &broken,
                Outcome::Fail,
                &["keelson-validator", "is not reachable"],
            )?;
            has(
                &broken,
                Outcome::Fail,
                &["no Keelson replica holds the Lease"],
            )?;

            namespaces
                .delete(&apps, &DeleteParams::background())
                .await?;
            Ok(())
        })
        .await;
}
