//! `manifests/` is generated from `keelson_operator::install`; this test fails
//! when a checked-in file is stale. `make manifests` (UPDATE_MANIFESTS=1)
//! rewrites them.

use keelson_operator::install;
use std::path::PathBuf;

fn check(relative: &str, expected: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    if std::env::var_os("UPDATE_MANIFESTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, expected).unwrap();
        return None;
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    (found != expected).then(|| format!("{relative} is stale; run `make manifests`"))
}

#[test]
fn manifests_are_current() {
    let stale: Vec<String> = [
        ("manifests/keelson.yaml", install::plain_yaml()),
        (
            "manifests/helm/keelson/templates/keelson.yaml",
            install::helm_template(),
        ),
        (
            "manifests/helm/keelson/crds/keelson.dev.yaml",
            install::helm_crds(),
        ),
        ("manifests/argocd/argocd-cm.yaml", install::argocd_cm()),
        (
            "manifests/helm/keelson/values.schema.json",
            install::values::schema_json(),
        ),
    ]
    .iter()
    .filter_map(|(path, text)| check(path, text))
    .collect();
    assert!(stale.is_empty(), "{}", stale.join("\n"));
}

#[test]
fn every_object_is_a_valid_kubernetes_object() {
    let objects = install::objects(&install::Install {
        namespace: "keelson",
        image: "example.com/keelson:test",
        replicas: 1.into(),
        control_planes: install::DEFAULT_CONTROL_PLANES,
        data_plane_namespaces: &["apps", "*"],
    });
    for o in &objects {
        let kind = o["kind"].as_str().unwrap();
        let ok = match kind {
            "Namespace" => serde_json::from_value::<k8s_openapi::api::core::v1::Namespace>(o.clone()).is_ok(),
            "CustomResourceDefinition" => serde_json::from_value::<
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
            >(o.clone())
            .is_ok(),
            "ServiceAccount" => serde_json::from_value::<k8s_openapi::api::core::v1::ServiceAccount>(o.clone()).is_ok(),
            "ClusterRole" => serde_json::from_value::<k8s_openapi::api::rbac::v1::ClusterRole>(o.clone()).is_ok(),
            "ClusterRoleBinding" => {
                serde_json::from_value::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(o.clone()).is_ok()
            }
            "Role" => serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(o.clone()).is_ok(),
            "RoleBinding" => serde_json::from_value::<k8s_openapi::api::rbac::v1::RoleBinding>(o.clone()).is_ok(),
            "PodDisruptionBudget" => {
                serde_json::from_value::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(o.clone()).is_ok()
            }
            "Deployment" => serde_json::from_value::<k8s_openapi::api::apps::v1::Deployment>(o.clone()).is_ok(),
            "Service" => serde_json::from_value::<k8s_openapi::api::core::v1::Service>(o.clone()).is_ok(),
            "ValidatingWebhookConfiguration" => serde_json::from_value::<
                k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
            >(o.clone())
            .is_ok(),
            "MutatingWebhookConfiguration" => serde_json::from_value::<
                k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
            >(o.clone())
            .is_ok(),
            other => panic!("unexpected kind {other}"),
        };
        assert!(ok, "{kind} {} does not round-trip", o["metadata"]["name"]);
    }
    // No wildcard anywhere in the operator's RBAC.
    let role = objects.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
    assert!(!role.to_string().contains("\"*\""), "{role}");
    // Non-root, read-only root filesystem, no privilege escalation.
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
}
