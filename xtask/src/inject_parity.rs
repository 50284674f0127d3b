//! `cargo xtask inject-parity`: Keelson's injector against Linkerd's own
//! injector test data at each catalog tag.
//!
//! Linkerd's `controller/proxy-injector/webhook_test.go` injects pods from
//! `fake/data/` with the chart's default values, trust anchors
//! `IdentityTrustAnchorsPEM`, an owner Deployment `owner-deployment`, and a
//! namespace of given annotations, and expects the JSON patches next to
//! them. The cases below are the ones that test states (facts of that file;
//! a case whose files a tag lacks is skipped). For each, both patches are
//! applied to the pod and the results compared leaf by leaf, with the
//! deliberate differences of `operator/tests/inject_golden.rs` left out:
//! Keelson's `linkerd.io/created-by` annotation, ports' `protocol: TCP` and
//! the `null` resources Linkerd writes for an empty block. Linkerd's data
//! names version `dev-undefined`; the tag's version stands in for it.

use super::Repo;
use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_crds::ControlPlaneSpec;
use keelson_operator::catalog::{self, KubeVersion};
use keelson_operator::inject::{self, Context, Decision, Owner};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const DATA: &str = "controller/proxy-injector/fake/data";

/// One case of `TestGetPodPatch`: the expected patch, the pod, and the
/// namespace's annotations.
struct Case {
    patch: &'static str,
    pod: &'static str,
    namespace: Value,
}

fn cases() -> Vec<Case> {
    let enabled = json!({"linkerd.io/inject": "enabled"});
    let case = |patch, pod, namespace: &Value| Case {
        patch,
        pod,
        namespace: namespace.clone(),
    };
    vec![
        case("pod.patch.json", "pod-inject-enabled.yaml", &enabled),
        case(
            "pod-with-debug.patch.json",
            "pod-with-debug-enabled.yaml",
            &enabled,
        ),
        case(
            "pod-with-custom-debug.patch.json",
            "pod-with-custom-debug-tag.yaml",
            &enabled,
        ),
        case(
            "pod-log-level.json",
            "pod-inject-enabled-log-level.yaml",
            &enabled,
        ),
        case(
            "pod-cpu-ratio.json",
            "pod-inject-enabled-cpu-ratio.yaml",
            &enabled,
        ),
        // A pod with a native sidecar of its own (2.20 on), in a namespace
        // that says nothing.
        case(
            "pod.nativesidecar.patch.json",
            "pod-nativesidecar-inject-enabled.yaml",
            &json!({}),
        ),
        case(
            "pod-with-ns-annotations.patch.json",
            "pod-inject-enabled.yaml",
            &json!({
                "linkerd.io/inject": "enabled",
                "config.linkerd.io/skip-outbound-ports": "34567",
                "config.alpha.linkerd.io/proxy-wait-before-exit-seconds": "300",
                "config.linkerd.io/invalid-key": "invalid-value",
            }),
        ),
    ]
}

/// Compares every case at every tag; prints a line per case and the
/// differing leaves. Fails when any differs.
pub fn run(repo: &Repo, tags: &[String]) -> Result<()> {
    let tags: Vec<String> = if tags.is_empty() {
        catalog::releases()
            .iter()
            .map(|r| r.version.to_string())
            .collect()
    } else {
        tags.to_vec()
    };
    let mut differing = 0;
    for tag in &tags {
        let release = catalog::find(tag).with_context(|| format!("{tag} is not in the catalog"))?;
        let files = repo.files(tag, DATA)?;
        for case in cases() {
            let has = |name: &str| files.iter().any(|f| f.ends_with(&format!("/{name}")));
            if !has(case.patch) || !has(case.pod) {
                continue;
            }
            let mut pod: Value =
                yaml_serde::from_str(&repo.show(tag, &format!("{DATA}/{}", case.pod))?)?;
            stringify_metadata(&mut pod);
            let patch_text = repo
                .show(tag, &format!("{DATA}/{}", case.patch))?
                .replace("dev-undefined", tag);
            let upstream_patch: json_patch::Patch = serde_json::from_str(&patch_text)?;
            let mut expected = pod.clone();
            json_patch::patch(&mut expected, &upstream_patch)
                .with_context(|| format!("{tag} {}: Linkerd's patch does not apply", case.patch))?;
            let actual = keelson(release, &pod, &case.namespace)
                .with_context(|| format!("{tag} {}", case.patch))?;
            let diffs = differences(&expected, &actual);
            println!(
                "# {tag} {} ({}): {}",
                case.patch,
                case.pod,
                if diffs.is_empty() {
                    "identical".to_owned()
                } else {
                    format!("{} leaves differ", diffs.len())
                }
            );
            for (path, linkerd, keelson) in &diffs {
                println!("    {path}: Linkerd {linkerd}, Keelson {keelson}");
            }
            differing += usize::from(!diffs.is_empty());
        }
    }
    if differing > 0 {
        bail!("{differing} cases differ");
    }
    Ok(())
}

/// Annotation and label values as the API server would hand them over:
/// Linkerd's data writes some unquoted (`enable-debug-sidecar: true`).
fn stringify_metadata(pod: &mut Value) {
    for field in ["annotations", "labels"] {
        if let Some(map) = pod["metadata"][field].as_object_mut() {
            for value in map.values_mut() {
                if !value.is_string() {
                    *value = Value::String(value.to_string());
                }
            }
        }
    }
}

/// The pod as Keelson's injector leaves it, with webhook_test.go's setup.
fn keelson(release: &'static catalog::Release, pod: &Value, annotations: &Value) -> Result<Value> {
    let spec: ControlPlaneSpec = yaml_serde::from_str(&format!("version: {}", release.version))?;
    let namespace: ObjectMeta = serde_json::from_value(json!({
        "name": pod["metadata"]["namespace"], "annotations": annotations}))?;
    // Linkerd's data says `apiVersion: apps/v1` of its pods, which Go
    // ignores and k8s-openapi's Pod refuses.
    let mut as_pod = pod.clone();
    as_pod["apiVersion"] = "v1".into();
    let typed: Pod = serde_json::from_value(as_pod)?;
    let context = Context {
        control_plane: "linkerd",
        spec: &spec,
        release,
        kubernetes: KubeVersion {
            major: 1,
            minor: 31,
        },
        trust_anchors_pem: "IdentityTrustAnchorsPEM",
        trust_root_sha256: None,
        cni_redirect_sha256: None,
        namespace: &namespace,
        owner: Some(Owner {
            kind: "Deployment".into(),
            name: "owner-deployment".into(),
        }),
    };
    let Decision::Inject(patch) = inject::inject(&context, &typed) else {
        bail!("Keelson did not inject the pod");
    };
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, &patch.ops())?;
    Ok(doc)
}

/// Leaves that differ, deliberate differences left out.
fn differences(linkerd: &Value, keelson: &Value) -> Vec<(String, String, String)> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    leaves(linkerd, "", &mut a);
    leaves(keelson, "", &mut b);
    let none = Value::String("<none>".into());
    a.keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|path| {
            let (x, y) = (a.get(path).unwrap_or(&none), b.get(path).unwrap_or(&none));
            let deliberate = path.contains("linkerd.io/created-by")
                || (path.ends_with(".protocol") && *x == none && y == "TCP")
                || (path.ends_with(".resources") && x.is_null() && *y == none);
            (x != y && !deliberate).then(|| (path.clone(), x.to_string(), y.to_string()))
        })
        .collect()
}

/// Leaves by path; list items by their `name` where they have one.
fn leaves(node: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match node {
        Value::Object(map) => {
            for (k, v) in map {
                leaves(v, &format!("{prefix}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let key = item["name"].as_str().map_or(i.to_string(), str::to_owned);
                leaves(item, &format!("{prefix}[{key}]"), out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_leaves_but_not_the_deliberate_ones() {
        let linkerd = json!({"metadata": {"annotations": {"a": "1"}}, "spec": {"containers": [
            {"name": "linkerd-proxy", "resources": null, "ports": [{"name": "admin", "containerPort": 4191}],
             "env": [{"name": "X", "value": "1"}]}]}});
        let keelson = json!({"metadata": {"annotations": {"a": "1", "linkerd.io/created-by": "keelson"}},
            "spec": {"containers": [{"name": "linkerd-proxy",
                "ports": [{"name": "admin", "containerPort": 4191, "protocol": "TCP"}],
                "env": [{"name": "X", "value": "2"}]}]}});
        let diffs = differences(&linkerd, &keelson);
        assert_eq!(
            diffs,
            [(
                ".spec.containers[linkerd-proxy].env[X].value".to_owned(),
                "\"1\"".to_owned(),
                "\"2\"".to_owned()
            )]
        );
    }
}
