//! End-to-end tests of managed identity on the real test cluster: a full
//! trust-anchor rotation across the control plane and a meshed DataPlane,
//! with the operator killed and restarted in every phase, watched by a
//! monitor that fails the test if a published bundle ever lacks an anchor a
//! running pod needs; a rotation to an anchor the user declared, after a bad
//! declaration is refused; and an expired issuer replaced on its own. In its own
//! test binary: a rotation gates on every meshed pod of the cluster.

mod common;

use anyhow::{Context, ensure};
use common::{
    Operator, WAIT, WAVE_LABEL, condition, data_plane, delete_control_plane, deployment, dp_status,
    injected_namespace, wait_until, with_dumps,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use keelson_crds::controlplane::{
    DeclaredAnchor, DeclaredAnchorState, ROTATE_TRUST_ANCHOR, RotationPhase,
};
use keelson_crds::{ControlPlane, DataPlane};
use keelson_e2e::shared::env;
use keelson_operator::controlplane::material::declared_anchor_secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const VERSION: &str = "edge-25.10.7";
const TRUST_ROOT_SHA256: &str = "linkerd.io/trust-root-sha256";
const ROTATION_WAIT: Duration = Duration::from_secs(600);

/// Watches the published bundle, the issuer and the meshed pods by polling
/// them in that order, and records every violation of what a rotation must
/// never do:
/// - publish a bundle that lacks the anchor a running pod's certificate
///   chains to (the first anchor of the bundle the pod was started with);
/// - use an issuer that a running pod's bundle cannot verify.
///
/// Pods are listed after the bundle and issuer are read, so a pod seen was
/// running when they were in force (or started later, with a newer bundle,
/// whose signer the older one holds).
#[derive(Clone, Default)]
struct Monitor {
    /// Every bundle seen, by digest: its certificates in order.
    bundles: Arc<Mutex<BTreeMap<String, Vec<Vec<u8>>>>>,
    violations: Arc<Mutex<Vec<String>>>,
    /// Digests of the issuers seen.
    issuers: Arc<Mutex<BTreeSet<String>>>,
}

impl Monitor {
    fn start(client: Client, cp_ns: String, app_ns: String) -> (Self, tokio::task::JoinHandle<()>) {
        let this = Self::default();
        let me = this.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = me.check(&client, &cp_ns, &app_ns).await {
                    tracing::debug!(error = %e, "monitor poll failed");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        (this, task)
    }

    async fn check(&self, client: &Client, cp_ns: &str, app_ns: &str) -> anyhow::Result<()> {
        let bundle = common::trust_bundle(client, cp_ns).await?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), cp_ns);
        let issuer =
            common::secret_text(&secrets.get("linkerd-identity-issuer").await?, "crt.pem")?;
        let issuer = common::der_certificates(&issuer)?
            .into_iter()
            .next()
            .context("no issuer")?;
        let published = common::der_certificates(&bundle)?;
        self.bundles
            .lock()
            .unwrap()
            .insert(common::sha256_hex(bundle.as_bytes()), published.clone());
        self.issuers
            .lock()
            .unwrap()
            .insert(common::sha256_hex(&issuer));

        let mut pods = Vec::new();
        for ns in [cp_ns, app_ns] {
            pods.extend(
                Api::<Pod>::namespaced(client.clone(), ns)
                    .list(&ListParams::default())
                    .await?,
            );
        }
        let bundles = self.bundles.lock().unwrap().clone();
        let mut violations = self.violations.lock().unwrap();
        for pod in pods {
            let Some(carried) = pod.annotations().get(TRUST_ROOT_SHA256) else {
                continue;
            };
            let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
            let Some(carried) = bundles.get(carried) else {
                violations.push(format!(
                    "{name} carries a bundle never published: {carried}"
                ));
                continue;
            };
            if !published.contains(&carried[0]) {
                violations.push(format!(
                    "bundle {} published while {name} still needs an anchor it lacks",
                    common::sha256_hex(bundle.as_bytes())
                ));
            }
            if !carried.iter().any(|anchor| common::signs(anchor, &issuer)) {
                violations.push(format!(
                    "issuer {} in use while {name} cannot verify it",
                    common::sha256_hex(&issuer)
                ));
            }
        }
        Ok(())
    }
}

/// Whether the rotation reached `phase`: `Some(true)` in it, `Some(false)`
/// past it (or finished), `None` not yet.
async fn reached(
    cps: &Api<ControlPlane>,
    name: &str,
    phase: RotationPhase,
) -> anyhow::Result<Option<bool>> {
    let identity = cps
        .get(name)
        .await?
        .status
        .and_then(|s| s.identity)
        .unwrap_or_default();
    Ok(match identity.rotation {
        Some(r) if r.phase >= phase => Some(r.phase == phase),
        Some(_) => None,
        None => identity.last_rotation.map(|_| false),
    })
}

/// An on-demand rotation of the trust anchor completes across the control
/// plane and a DataPlane's workloads, although the operator is killed in
/// each of its phases; no bundle it publishes ever lacks an anchor some
/// running pod needs.
#[tokio::test]
async fn a_trust_anchor_rotation_survives_operator_kills_in_every_phase() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("rotate", |client, ns| async move {
            // The operator is killed in every phase while waves restart pods:
            // with `Fail`, a pod created while no replica serves the injector
            // is refused and recreated once one does, rather than admitted
            // without a proxy (which costs the wave another restart, and
            // after a second one leaves the workload `Unchanged`).
            let (first, cps) = common::installed_with(
                &client,
                &ns,
                VERSION,
                json!({"webhook": {"failurePolicy": "Fail"}}),
            )
            .await?;
            common::injector_registered(&client, "Fail").await?;
            let mut operator = Some(first);

            let app = format!("{ns}-app");
            with_dumps(&client, std::slice::from_ref(&app), async {
                injected_namespace(&client, &app).await?;
                let deployments = Api::namespaced(client.clone(), &app);
                for i in 0..3 {
                    let d = deployment(&format!("web-{i}"), &ns, 1 + i % 2, "example.com/web:1", false)?;
                    deployments.create(&PostParams::default(), &d).await?;
                }
                let dps: Api<DataPlane> = Api::namespaced(client.clone(), &app);
                let dp = data_plane(
                    "apps",
                    json!({"rollout": {"batchSize": 3, "maxUnavailable": "100%", "interval": "0s"}}),
                )?;
                dps.create(&PostParams::default(), &dp).await?;
                wait_until("the DataPlane to be up to date", ROTATION_WAIT, || async {
                    let s = dp_status(&dps.get("apps").await?);
                    anyhow::Ok((s.workloads == 3 && s.up_to_date == 3).then_some(()))
                })
                .await?;

                let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
                let old = common::secret_text(&common::anchors(&client, &ns).await?, "ca.crt")?;
                let (monitor, watch) = Monitor::start(client.clone(), ns.clone(), app.clone());
                // The monitor knows the bundle pods carry now before it changes.
                wait_until("the monitor's first look", WAIT, || async {
                    anyhow::Ok((!monitor.bundles.lock().unwrap().is_empty()).then_some(()))
                })
                .await?;

                cps.patch(
                    &ns,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {ROTATE_TRUST_ANCHOR: "e2e-1"}}})),
                )
                .await?;
                for phase in [
                    RotationPhase::AddAnchor,
                    RotationPhase::SwitchIssuer,
                    RotationPhase::RemoveAnchor,
                ] {
                    // A phase can pass between two looks; the kill then
                    // lands in a later one, which must be survived as well.
                    let reached = wait_until(&format!("rotation phase {phase:?}"), ROTATION_WAIT, || {
                        reached(&cps, &ns, phase)
                    })
                    .await?;
                    tracing::info!(?phase, reached, "killing the operator mid-rotation");
                    if let Some(killed) = operator.take() {
                        killed.kill().await;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    operator = Some(Operator::start(client.clone()));
                }
                let cp = wait_until("the rotation to finish", ROTATION_WAIT, || async {
                    let cp = cps.get(&ns).await?;
                    let identity = cp.status.clone().and_then(|s| s.identity).unwrap_or_default();
                    anyhow::Ok(
                        (identity.rotation.is_none() && identity.last_rotation.is_some())
                            .then_some(cp),
                    )
                })
                .await?;
                watch.abort();

                let violations = monitor.violations.lock().unwrap().clone();
                ensure!(violations.is_empty(), "{violations:#?}");
                let bundles = monitor.bundles.lock().unwrap().len();
                ensure!(bundles >= 4, "the monitor saw {bundles} bundles, not each phase's");
                ensure!(monitor.issuers.lock().unwrap().len() >= 2, "the issuer never changed");

                // The new anchor alone is trusted and signs the issuer; the
                // pods and the DataPlane carry its bundle.
                let anchor_secret = common::anchors(&client, &ns).await?;
                let new = common::secret_text(&anchor_secret, "ca.crt")?;
                ensure!(new != old, "the anchor did not change");
                let keys: BTreeSet<&String> = anchor_secret.data.iter().flat_map(|d| d.keys()).collect();
                ensure!(keys.len() == 2, "left-over anchors in the Secret: {keys:?}");
                let bundle = common::trust_bundle(&client, &ns).await?;
                ensure!(bundle == new.trim(), "the bundle is not the new anchor alone");
                let issuer = common::secret_text(&secrets.get("linkerd-identity-issuer").await?, "crt.pem")?;
                ensure!(common::signs(&common::der_certificates(&new)?[0], &common::der_certificates(&issuer)?[0]));
                let digest = common::sha256_hex(bundle.as_bytes());
                let identity = cp.status.and_then(|s| s.identity).context("no identity status")?;
                ensure!(identity.trust_root_sha256.as_deref() == Some(digest.as_str()));
                ensure!(identity.trust_anchors.len() == 1, "{:?}", identity.trust_anchors);
                ensure!(identity.rotation_request.as_deref() == Some("e2e-1"));
                wait_until("the DataPlane on the new bundle", ROTATION_WAIT, || async {
                    let s = dp_status(&dps.get("apps").await?);
                    anyhow::Ok(
                        (s.target_trust_root_sha256.as_deref() == Some(digest.as_str())
                            && s.up_to_date == 3)
                            .then_some(()),
                    )
                })
                .await?;
                let pods = Api::<Pod>::namespaced(client.clone(), &app)
                    .list(&ListParams::default().labels(&format!("{WAVE_LABEL}={ns}")))
                    .await?;
                for pod in pods.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                    ensure!(
                        pod.annotations().get(TRUST_ROOT_SHA256) == Some(&digest),
                        "pod {} carries {:?}",
                        pod.name_any(),
                        pod.annotations().get(TRUST_ROOT_SHA256)
                    );
                }
                // Every phase left an Event.
                let reasons: BTreeSet<String> = common::control_plane_events(&client, &ns)
                    .await?
                    .into_iter()
                    .map(|(reason, _)| reason)
                    .collect();
                for reason in ["RotationStarted", "IssuerSwitched", "AnchorRemoved", "RotationFinished"] {
                    ensure!(reasons.contains(reason), "no {reason} event: {reasons:?}");
                }
                Ok(())
            })
            .await?;
            delete_control_plane(&cps, &ns).await?;
            Ok(())
        })
        .await;
}

/// An issuer that expired (replaced by hand, or left by a stopped operator)
/// is replaced by one the anchor signs, and status says so.
#[tokio::test]
async fn an_expired_issuer_is_replaced() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("issuer", |client, ns| async move {
            let (operator, cps) = common::installed(&client, &ns, VERSION).await?;

            // An issuer the anchor signed, valid ten days until an hour ago.
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
            let anchor = common::anchors(&client, &ns).await?;
            let anchor_key = rcgen::KeyPair::from_pem(&common::secret_text(&anchor, "ca.key")?)?;
            let signer = rcgen::Issuer::from_ca_cert_pem(
                &common::secret_text(&anchor, "ca.crt")?,
                anchor_key,
            )?;
            let key = rcgen::KeyPair::generate()?;
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name.push(
                rcgen::DnType::CommonName,
                format!("identity.{ns}.cluster.local"),
            );
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
            let now = SystemTime::now();
            params.not_before = (now - Duration::from_secs(10 * 86400)).into();
            params.not_after = (now - Duration::from_secs(3600)).into();
            let expired = params.signed_by(&key, &signer)?;
            let expired_pem = expired.pem();
            secrets
                .patch(
                    "linkerd-identity-issuer",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {
                        "crt.pem": ByteString(expired_pem.trim().as_bytes().to_vec()),
                        "key.pem": ByteString(key.serialize_pem().trim().as_bytes().to_vec()),
                    }})),
                )
                .await?;

            let replaced = wait_until("the expired issuer to be replaced", WAIT, || async {
                let pem =
                    common::secret_text(&secrets.get("linkerd-identity-issuer").await?, "crt.pem")?;
                anyhow::Ok((pem.trim() != expired_pem.trim()).then_some(pem))
            })
            .await?;
            let der = common::der_certificates(&replaced)?;
            let (_, cert) = x509_parser::parse_x509_certificate(&der[0])?;
            ensure!(
                cert.validity().is_valid(),
                "the new issuer is not valid now"
            );
            ensure!(common::signs(
                &common::der_certificates(&common::secret_text(&anchor, "ca.crt")?)?[0],
                &der[0]
            ));
            let cp = wait_until("status to show the new issuer", WAIT, || async {
                let cp = cps.get(&ns).await?;
                let shown = cp
                    .status
                    .as_ref()
                    .and_then(|s| s.identity.as_ref())
                    .and_then(|i| i.issuer.as_ref())
                    .map(|i| i.sha256.clone());
                anyhow::Ok(
                    (shown.as_deref() == Some(common::sha256_hex(&der[0]).as_str())).then_some(cp),
                )
            })
            .await?;
            let expiring = condition(&cp, "CertificatesExpiringSoon");
            ensure!(
                expiring.as_ref().is_some_and(|(s, _)| s == "False"),
                "{expiring:?}"
            );
            delete_control_plane(&cps, &ns).await?;
            operator.kill().await;
            Ok(())
        })
        .await;
}

/// A self-signed certificate and its key (PEM): a CA or a leaf.
fn self_signed(cn: &str, ca: bool) -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
    }
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + Duration::from_secs(365 * 86400)).into();
    Ok((params.self_signed(&key)?.pem(), key.serialize_pem()))
}

/// The anchor declared in Secret `keelson-identity-next-trust-anchor.<cp>`
/// (in Keelson's namespace) is checked: one that is not a CA is refused
/// with the reason and changes nothing; a valid one is rotated to, through
/// every phase, and then stays.
#[tokio::test]
async fn a_declared_trust_anchor_is_checked_then_rotated_to() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("declare", |client, ns| async move {
            let (operator, cps) = common::installed(&client, &ns, VERSION).await?;
            let anchor_secret = common::anchors(&client, &ns).await?;
            let old = common::secret_text(&anchor_secret, "ca.crt")?;
            // Declared where no Linkerd workload can read it.
            let own: Api<Secret> = Api::namespaced(client.clone(), common::KEELSON_NAMESPACE);
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
            let name = declared_anchor_secret(&ns);
            let declare = |(cert, key): (String, String)| {
                let mut secret = Secret {
                    type_: Some("kubernetes.io/tls".into()),
                    string_data: Some([("tls.crt".into(), cert), ("tls.key".into(), key)].into()),
                    ..Secret::default()
                };
                secret.metadata.name = Some(name.clone());
                secret.metadata.labels =
                    Some([("keelson.dev/control-plane".to_owned(), ns.clone())].into());
                let (own, name) = (own.clone(), name.clone());
                async move {
                    own.patch(
                        &name,
                        &PatchParams::apply("e2e").force(),
                        &Patch::Apply(&secret),
                    )
                    .await
                }
            };
            let declared = |state: DeclaredAnchorState| {
                let cps = cps.clone();
                let ns = ns.clone();
                async move {
                    let identity = cps.get(&ns).await?.status.and_then(|s| s.identity);
                    anyhow::Ok(
                        identity
                            .and_then(|i| i.declared_anchor)
                            .filter(|d: &DeclaredAnchor| d.state == state),
                    )
                }
            };

            declare(self_signed("not-a-ca.example.com", false)?).await?;
            let rejected = wait_until("the leaf certificate to be rejected", WAIT, || {
                declared(DeclaredAnchorState::Rejected)
            })
            .await?;
            let message = rejected.message.unwrap_or_default();
            ensure!(message.contains("not a CA"), "{message}");
            let unchanged = common::anchors(&client, &ns).await?;
            ensure!(
                unchanged.data == anchor_secret.data,
                "a rejected anchor changed the stored ones"
            );
            let status = cps
                .get(&ns)
                .await?
                .status
                .and_then(|s| s.identity)
                .unwrap_or_default();
            ensure!(
                status.rotation.is_none(),
                "a rotation started: {:?}",
                status.rotation
            );

            let (cert, key) = self_signed("root.linkerd.cluster.local", true)?;
            declare((cert.clone(), key.clone())).await?;
            wait_until(
                "the rotation to the declared anchor to finish",
                ROTATION_WAIT,
                || async {
                    let identity = cps
                        .get(&ns)
                        .await?
                        .status
                        .and_then(|s| s.identity)
                        .unwrap_or_default();
                    anyhow::Ok(
                        (identity.rotation.is_none() && identity.last_rotation.is_some())
                            .then_some(()),
                    )
                },
            )
            .await?;
            let stored = common::anchors(&client, &ns).await?;
            ensure!(
                common::secret_text(&stored, "ca.crt")?.trim() == cert.trim(),
                "the declared anchor is not the active one"
            );
            ensure!(
                common::secret_text(&stored, "ca.key")?.trim() == key.trim(),
                "the declared key is not stored"
            );
            let bundle = common::trust_bundle(&client, &ns).await?;
            ensure!(
                bundle == cert.trim() && bundle != old.trim(),
                "the bundle is not the declared anchor alone"
            );
            let issuer =
                common::secret_text(&secrets.get("linkerd-identity-issuer").await?, "crt.pem")?;
            ensure!(common::signs(
                &common::der_certificates(&cert)?[0],
                &common::der_certificates(&issuer)?[0]
            ));
            let adopted = declared(DeclaredAnchorState::Adopted).await?;
            ensure!(
                adopted.is_some(),
                "the declared anchor is not shown as adopted"
            );

            let notes = common::control_plane_events(&client, &ns).await?;
            ensure!(
                notes
                    .iter()
                    .any(|(r, m)| r == "DeclaredAnchorRejected" && m.contains("not a CA")),
                "no rejection event: {notes:?}"
            );
            ensure!(
                notes
                    .iter()
                    .any(|(r, m)| r == "RotationStarted" && m.contains("(Declared)")),
                "no declared rotation event: {notes:?}"
            );
            delete_control_plane(&cps, &ns).await?;
            operator.kill().await;
            Ok(())
        })
        .await;
}

/// With the trust anchor off the cluster (`OfflineRoot`), an issuer past
/// its renewal point makes Keelson ask for the next one: a key and a
/// signing request in Keelson's namespace. A certificate signed by another
/// root is refused with the reason; the right one is installed, with the
/// request's key, and the bundle never changes.
#[tokio::test]
async fn an_offline_root_is_asked_to_sign_the_next_issuer() {
    use keelson_operator::controlplane::material::issuer_request_secret;
    use keelson_operator::identity;
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("offline", |client, ns| async move {
            // The root stays with the test; the cluster gets an issuer it
            // signed, already past 70% of its life.
            let now = SystemTime::now();
            let root = identity::trust_anchor("cluster.local", Duration::from_secs(86400), now)?;
            let past = now - Duration::from_secs(600);
            let first =
                identity::issuer(&root, &ns, "cluster.local", Duration::from_secs(720), past)?;
            let mut issuer = Secret {
                type_: Some("kubernetes.io/tls".into()),
                string_data: Some(
                    [
                        ("tls.crt".to_owned(), first.cert_pem.clone()),
                        ("tls.key".to_owned(), first.key_pem.clone()),
                        ("ca.crt".to_owned(), root.cert_pem.clone()),
                    ]
                    .into(),
                ),
                ..Secret::default()
            };
            issuer.metadata.name = Some("linkerd-identity-issuer".into());
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
            secrets.create(&PostParams::default(), &issuer).await?;

            let (operator, cps) = common::installed_with(
                &client,
                &ns,
                VERSION,
                json!({"identity": {"issuer": "OfflineRoot"}}),
            )
            .await?;
            let bundle = common::trust_bundle(&client, &ns).await?;
            let request = |cps: Api<ControlPlane>, ns: String| async move {
                let identity = cps.get(&ns).await?.status.and_then(|s| s.identity);
                anyhow::Ok(identity.and_then(|i| i.issuer_request))
            };
            let asked = wait_until("Keelson to ask for the next issuer", WAIT, || {
                request(cps.clone(), ns.clone())
            })
            .await?;
            let name = issuer_request_secret(&ns);
            ensure!(
                asked.secret == format!("{}/{name}", common::KEELSON_NAMESPACE),
                "{asked:?}"
            );
            let own: Api<Secret> = Api::namespaced(client.clone(), common::KEELSON_NAMESPACE);
            let stored = own.get(&name).await?;
            let csr = common::secret_text(&stored, "tls.csr")?;
            ensure!(
                common::sha256_hex(csr.as_bytes()) == asked.sha256,
                "status names another request"
            );
            let key_pem = common::secret_text(&stored, "tls.key")?;
            let events = common::control_plane_events(&client, &ns).await?;
            ensure!(
                events
                    .iter()
                    .any(|(r, m)| r == "IssuerSigningRequested" && m.contains(&name)),
                "no IssuerSigningRequested Event: {events:?}"
            );

            // Signing offline needs only the request's public key.
            let sign = |by: &keelson_operator::render::TlsPair| -> anyhow::Result<String> {
                let signer = rcgen::Issuer::from_ca_cert_pem(
                    &by.cert_pem,
                    rcgen::KeyPair::from_pem(&by.key_pem)?,
                )?;
                let mut params = rcgen::CertificateParams::default();
                params.distinguished_name.push(
                    rcgen::DnType::CommonName,
                    format!("identity.{ns}.cluster.local"),
                );
                params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
                params.not_before = (SystemTime::now() - Duration::from_secs(60)).into();
                params.not_after = (SystemTime::now() + Duration::from_secs(86400)).into();
                let public = rcgen::KeyPair::from_pem(&key_pem)?;
                Ok(params.signed_by(&public, &signer)?.pem())
            };
            let answer = |cert: String| {
                let own = own.clone();
                let name = name.clone();
                async move {
                    let patch = json!({"stringData": {"tls.crt": cert}});
                    own.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                }
            };
            let stranger =
                identity::trust_anchor("cluster.local", Duration::from_secs(86400), now)?;
            answer(sign(&stranger)?).await?;
            let rejected = wait_until("the stranger's certificate to be refused", WAIT, || async {
                let r = request(cps.clone(), ns.clone()).await?;
                anyhow::Ok(r.and_then(|r| r.rejected))
            })
            .await?;
            ensure!(rejected.contains("not signed by an anchor"), "{rejected}");
            ensure!(
                common::secret_text(&secrets.get("linkerd-identity-issuer").await?, "tls.crt")?
                    == first.cert_pem,
                "a refused certificate was installed"
            );

            let signed = sign(&root)?;
            answer(signed.clone()).await?;
            wait_until("the signed issuer to be installed", WAIT, || async {
                let installed = secrets.get("linkerd-identity-issuer").await?;
                let done = common::secret_text(&installed, "tls.crt")? == signed
                    && common::secret_text(&installed, "tls.key")? == key_pem
                    && request(cps.clone(), ns.clone()).await?.is_none();
                anyhow::Ok(done.then_some(()))
            })
            .await?;
            ensure!(
                own.get_opt(&name).await?.is_none(),
                "the request outlived its answer"
            );
            ensure!(
                common::trust_bundle(&client, &ns).await? == bundle,
                "the trust bundle changed"
            );
            let events = common::control_plane_events(&client, &ns).await?;
            ensure!(
                events.iter().any(|(r, _)| r == "SignedIssuerRejected")
                    && events.iter().any(|(r, _)| r == "IssuerInstalled"),
                "Events: {events:?}"
            );
            delete_control_plane(&cps, &ns).await?;
            operator.stop().await
        })
        .await;
}
