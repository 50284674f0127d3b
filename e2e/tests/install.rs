//! Keelson's own install on the real test cluster: the operator, running with
//! nothing but the RBAC of `manifests/` (its ServiceAccount impersonated),
//! installs and removes a control plane. A rule missing from the ClusterRole
//! makes a reconcile fail and this test time out; a rule too many lets one
//! of the escalations below through.

mod common;

use anyhow::ensure;
use common::{Operator, WAIT};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use keelson_crds::ControlPlane;
use keelson_e2e::shared::{env, install_keelson_crds};
use keelson_operator::install::ControlPlaneGrant;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// What the API server answered Keelson's ServiceAccount for `what`:
/// `Ok` if it was refused as forbidden.
fn forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) -> anyhow::Result<()> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
        other => anyhow::bail!("{what} should be forbidden: {other:?}"),
    }
}

/// Whether the API server would let the client do `verb` on `resource`.
async fn can_i(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> anyhow::Result<bool> {
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": {"resourceAttributes": {
            "verb": verb, "group": group, "resource": resource, "namespace": namespace,
        }},
    }))?;
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// The escalations an outside review found, and others like them, are
/// refused by the API server for Keelson's ServiceAccount.
async fn no_path_to_cluster_admin(
    admin: &Client,
    keelson: &Client,
    ns: &str,
) -> anyhow::Result<()> {
    let pp = PostParams::default();
    // Binding itself to cluster-admin (was allowed through `bind`).
    let grab: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{ns}-grab")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "keelson", "namespace": common::KEELSON_NAMESPACE}],
    }))?;
    forbidden(
        "binding cluster-admin",
        Api::<ClusterRoleBinding>::all(keelson.clone())
            .create(&pp, &grab)
            .await,
    )?;
    // Widening a role it may patch (was allowed through `escalate`).
    let widen = json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
    for role in [format!("linkerd-{ns}-identity"), "keelson".to_owned()] {
        forbidden(
            &format!("widening ClusterRole {role}"),
            Api::<ClusterRole>::all(keelson.clone())
                .patch(&role, &PatchParams::default(), &Patch::Merge(&widen))
                .await,
        )?;
    }
    // Tokens and workloads outside the control plane's namespace.
    forbidden(
        "reading Secrets in kube-system",
        Api::<Secret>::namespaced(keelson.clone(), "kube-system")
            .list(&Default::default())
            .await,
    )?;
    let deployment = common::deployment("grab", "grab", 1, "example.com/grab:1", false)?;
    forbidden(
        "creating a Deployment in default",
        Api::<Deployment>::namespaced(keelson.clone(), "default")
            .create(&pp, &deployment)
            .await,
    )?;
    forbidden(
        "deleting namespace default",
        Api::<Namespace>::all(keelson.clone())
            .delete("default", &DeleteParams::default())
            .await,
    )?;
    // A webhook of its own making (one on RBAC objects could rewrite the
    // next binding an admin creates): Keelson only fills the shells its
    // install made.
    let made: ValidatingWebhookConfiguration =
        serde_json::from_value(json!({"metadata": {"name": format!("{ns}-made")}}))?;
    forbidden(
        "creating a webhook configuration",
        Api::<ValidatingWebhookConfiguration>::all(keelson.clone())
            .create(&pp, &made)
            .await,
    )?;
    // Someone else's webhook.
    let other: ValidatingWebhookConfiguration =
        serde_json::from_value(json!({"metadata": {"name": format!("{ns}-other")}}))?;
    let webhooks = Api::<ValidatingWebhookConfiguration>::all(admin.clone());
    webhooks.create(&pp, &other).await?;
    forbidden(
        "deleting another webhook configuration",
        Api::<ValidatingWebhookConfiguration>::all(keelson.clone())
            .delete(&format!("{ns}-other"), &DeleteParams::default())
            .await,
    )?;
    webhooks
        .delete(&format!("{ns}-other"), &DeleteParams::default())
        .await?;
    for (verb, group, resource, namespace) in [
        ("*", "*", "*", None),
        ("impersonate", "", "users", None),
        (
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
        ),
        ("bind", "rbac.authorization.k8s.io", "clusterroles", None),
        ("get", "", "secrets", Some("default")),
        ("create", "", "pods", Some(ns)),
        ("patch", "apps", "deployments", Some("default")),
    ] {
        ensure!(
            !can_i(keelson, verb, group, resource, namespace).await?,
            "Keelson may {verb} {group}/{resource} in {namespace:?}"
        );
    }
    // What the control plane's namespace grants, it grants there alone.
    ensure!(can_i(keelson, "get", "", "secrets", Some(ns)).await?);
    ensure!(can_i(keelson, "create", "apps", "deployments", Some(ns)).await?);
    Ok(())
}

#[tokio::test]
async fn the_operator_works_with_only_its_install_rbac() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("rbac", |client, ns| async move {
            let grant = ControlPlaneGrant {
                name: &ns,
                namespace: &ns,
            };
            let operator_client = common::install_rbac(&client, &[grant]).await?;
            install_keelson_crds(&client).await?;
            // The client really is the ServiceAccount: what its role does
            // not grant is forbidden.
            forbidden(
                "reading Secrets in default",
                Api::<Secret>::namespaced(operator_client.clone(), "default")
                    .get_opt("anything")
                    .await,
            )?;
            let operator =
                Operator::start_scoped(operator_client.clone(), Default::default(), &[ns.as_str()]);
            operator.webhooks_registered(&client).await?;

            // A namespace the install did not grant is refused by name.
            let cps: Api<ControlPlane> = Api::all(client.clone());
            let elsewhere = format!("{ns}-elsewhere");
            match cps
                .create(
                    &PostParams::default(),
                    &common::control_plane(&elsewhere, &elsewhere, "edge-25.4.4", json!({})),
                )
                .await
            {
                Err(kube::Error::Api(s))
                    if s.code == 400
                        && s.message.contains("spec.namespace")
                        && s.message.contains(&format!("only namespaces {ns}")) => {}
                other => anyhow::bail!("an ungranted namespace should be refused: {other:?}"),
            }

            let (cps, cp) =
                common::converged(&client, &ns, "edge-25.4.4", serde_json::json!({})).await?;
            no_path_to_cluster_admin(&client, &operator_client, &ns).await?;
            cps.delete(&ns, &DeleteParams::default()).await?;
            tokio::time::timeout(
                WAIT,
                kube::runtime::wait::await_condition(
                    cps.clone(),
                    &ns,
                    kube::runtime::wait::conditions::is_deleted(&cp.uid().unwrap_or_default()),
                ),
            )
            .await??;
            Ok(())
        })
        .await;
}
