//! Golden files: what `keelson render` prints for every catalog release and
//! option set. Regenerate with `make golden` and review the diff.

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keelson_crds::ControlPlane;
use keelson_operator::{catalog, render};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use std::path::PathBuf;

/// Option sets rendered for every release: name and spec fields, from the
/// file `make strict` and the parity scripts read too.
fn option_sets() -> Vec<(String, Value)> {
    let sets: yaml_serde::Mapping = yaml_serde::from_str(include_str!("option-sets.yaml")).unwrap();
    sets.into_iter()
        .map(|(name, fields)| {
            let name = name.as_str().expect("option sets are named").to_owned();
            (name, serde_json::to_value(fields).unwrap())
        })
        .collect()
}

/// A ControlPlane at `version` with an option set's spec fields.
fn control_plane_with(version: &str, fields: &Value) -> ControlPlane {
    let mut spec = fields.clone();
    spec["version"] = version.into();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
        "metadata": {"name": "linkerd"}, "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("{spec}: {e}"))
}

fn control_plane(version: &str, options: &str) -> ControlPlane {
    let yaml = format!(
        "apiVersion: keelson.dev/v1alpha1\nkind: ControlPlane\nmetadata: {{name: linkerd}}\nspec:\n  version: {version}\n  {options}\n"
    );
    yaml_serde::from_str(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

fn golden_path(version: &str, set: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{version}-{set}.yaml"))
}

#[test]
fn rendered_manifests_match_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for release in catalog::releases() {
        let version = release.version.to_string();
        for (set, options) in option_sets() {
            let cp = control_plane_with(&version, &options);
            let objects = render::offline::render(&cp, None).unwrap();
            let yaml = render::offline::to_yaml(&objects);
            let path = golden_path(&version, &set);
            if update {
                std::fs::write(&path, &yaml).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                stale.push(path.display().to_string());
            }
        }
        // Every CRD the release can install, Gateway API's too, as a cluster
        // that takes CEL rules gets them (the renders above are at the
        // release's Kubernetes floor, below 1.25, where they are left out).
        let cp = control_plane(&version, "installGatewayApi: true");
        let modern = catalog::KubeVersion {
            major: 1,
            minor: 31,
        };
        let crds: Vec<_> = render::offline::render(&cp, Some(modern))
            .unwrap()
            .into_iter()
            .filter(|r| r.stage == render::Stage::Crds)
            .collect();
        let yaml = render::offline::to_yaml(&crds);
        let path = golden_path(&version, "crds-k8s-1.31");
        if update {
            std::fs::write(&path, &yaml).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale golden files (run `make golden` and review the diff): {stale:?}"
    );
}

/// Every rendered object survives a round trip through its Kubernetes type
/// unchanged: a misspelled or misplaced field would be dropped and show here.
#[test]
fn rendered_objects_are_valid_kubernetes_objects() {
    fn round_trip<T: Serialize + DeserializeOwned>(obj: &Value) -> Value {
        let typed: T = serde_json::from_value(obj.clone()).unwrap_or_else(|e| panic!("{e}: {obj}"));
        serde_json::to_value(typed).unwrap()
    }
    for release in catalog::releases() {
        for (set, options) in option_sets() {
            let cp = control_plane_with(&release.version.to_string(), &options);
            for r in render::offline::render(&cp, None).unwrap() {
                let obj = &r.object;
                let back = match obj["kind"].as_str().unwrap() {
                    "Namespace" => round_trip::<Namespace>(obj),
                    "ConfigMap" => round_trip::<ConfigMap>(obj),
                    "Secret" => round_trip::<Secret>(obj),
                    "Service" => round_trip::<Service>(obj),
                    "ServiceAccount" => round_trip::<ServiceAccount>(obj),
                    "Deployment" => round_trip::<Deployment>(obj),
                    "DaemonSet" => round_trip::<DaemonSet>(obj),
                    "PodDisruptionBudget" => round_trip::<PodDisruptionBudget>(obj),
                    "ClusterRole" => round_trip::<ClusterRole>(obj),
                    "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(obj),
                    "Role" => round_trip::<Role>(obj),
                    "RoleBinding" => round_trip::<RoleBinding>(obj),
                    "ValidatingWebhookConfiguration" => round_trip::<
                        k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
                    >(obj),
                    "CustomResourceDefinition" => round_trip::<CustomResourceDefinition>(obj),
                    other => panic!("{set}: no round-trip check for kind {other}"),
                };
                assert_eq!(
                    &back, obj,
                    "{} {set}: {} changed in a round trip",
                    release.version, obj["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn every_object_is_labelled_with_its_control_plane_and_namespaced_in_it() {
    let cp = control_plane("edge-25.4.4", "namespace: mesh");
    for r in render::offline::render(&cp, None).unwrap() {
        let meta = &r.object["metadata"];
        assert_eq!(
            meta["labels"][render::CONTROL_PLANE_LABEL],
            "linkerd",
            "{meta}"
        );
        if let Some(ns) = meta["namespace"].as_str() {
            assert_eq!(ns, "mesh", "{meta}");
        }
    }
}

#[test]
fn stages_come_in_install_order() {
    let cp = control_plane("edge-25.4.4", "");
    let stages: Vec<_> = render::offline::render(&cp, None)
        .unwrap()
        .iter()
        .map(|r| r.stage)
        .collect();
    let mut sorted = stages.clone();
    sorted.sort();
    assert_eq!(stages, sorted);
    assert_eq!(stages.first(), Some(&render::Stage::Crds));
}
