//! Golden files of proxy injection: for every catalog release and a set of
//! cases, the pod the API server stores after applying Keelson's patch
//! (`tests/golden/inject/<release>-<case>.yaml`), next to the input
//! (`<case>.input.yaml`: the namespace, the submitted pod, and the owner the
//! webhook resolved). Regenerate with `make golden` and review the diff.
//!
//! Checked against Linkerd's own injector test data (`cargo xtask
//! inject-parity` does it at every catalog tag)
//! (`controller/proxy-injector/fake/data/`: `pod.patch.json`,
//! `pod-with-ns-annotations.patch.json`, `pod-with-debug.patch.json`, and at
//! edge-25.4.4 and edge-25.10.7 `pod-log-level.json` and `pod-cpu-ratio.json`)
//! at edge-24.11.8, edge-25.4.4 and edge-25.10.7: for the same pods the
//! operations are identical, in the same order, except for these deliberate
//! differences:
//! - an extra `linkerd.io/created-by: keelson/<version>` annotation (Linkerd's
//!   webhook adds `linkerd/proxy-injector <version>`; its test bypasses that);
//! - the proxy's ports say `protocol: TCP`, which the API server defaults
//!   anyway (as in Keelson's control-plane manifests);
//! - no `resources: null` where Linkerd renders an empty resources block.
//!
//! (Linkerd's data names version `dev-undefined`; the comparison substituted
//! the tag.)

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_crds::ControlPlaneSpec;
use keelson_operator::catalog::{self, KubeVersion};
use keelson_operator::inject::{self, Context, Decision, Owner};
use serde_json::{Value, json};
use std::path::PathBuf;

/// A fake bundle of two anchors; only its bytes matter.
const TRUST_ANCHORS: &str = "-----BEGIN CERTIFICATE-----\nMIIBkeelsonGoldenAnchorOne\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nMIIBkeelsonGoldenAnchorTwo\n-----END CERTIFICATE-----\n";

/// One injection case: namespace annotations, the submitted pod, its owner,
/// and ControlPlane spec fields besides `version` (a YAML flow mapping's
/// entries; empty for the defaults).
struct Case {
    name: &'static str,
    namespace: Value,
    pod: Value,
    owner: Option<(&'static str, &'static str)>,
    spec: &'static str,
}

fn deployment_pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "web-5d9c7b6f4-", "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "5d9c7b6f4"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-5d9c7b6f4", "uid": "7c1f1c2e-0000-4000-8000-000000000001",
                "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "containers": [
                {"name": "web", "image": "example.com/shop/web:1.4",
                 "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9990}],
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
                 "livenessProbe": {"httpGet": {"path": "/live", "port": 9990}},
                 "volumeMounts": [{"name": "config", "mountPath": "/etc/web"}]},
                {"name": "cache", "image": "redis:7", "ports": [{"name": "redis", "containerPort": 6379}]},
            ],
            "serviceAccountName": "web",
            "volumes": [{"name": "config", "configMap": {"name": "web"}}],
        },
    })
}

fn cases() -> Vec<Case> {
    let enabled_ns = json!({"linkerd.io/inject": "enabled"});
    vec![
        // The namespace enables injection; the pod says nothing.
        Case {
            name: "namespace-enabled",
            namespace: enabled_ns.clone(),
            pod: deployment_pod(
                json!({"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}),
            ),
            owner: Some(("Deployment", "web")),
            spec: "",
        },
        // A bare pod enables itself in a namespace that does not.
        Case {
            name: "pod-enabled",
            namespace: json!({}),
            pod: json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "debug-shell", "namespace": "tools",
                    "annotations": {"linkerd.io/inject": "enabled"}},
                "spec": {"containers": [{"name": "shell", "image": "busybox:1.36",
                    "command": ["sleep", "infinity"], "ports": [{"containerPort": 80}]}]},
            }),
            owner: None,
            spec: "",
        },
        Case {
            name: "ingress",
            namespace: enabled_ns.clone(),
            pod: deployment_pod(json!({"linkerd.io/inject": "ingress"})),
            owner: Some(("Deployment", "web")),
            spec: "",
        },
        // Native sidecar by annotation, with an init container of the pod's
        // own that then runs meshed.
        Case {
            name: "native-sidecar",
            namespace: enabled_ns.clone(),
            pod: {
                let mut pod = deployment_pod(
                    json!({"config.alpha.linkerd.io/proxy-enable-native-sidecar": "true"}),
                );
                pod["spec"]["initContainers"] = json!([{"name": "migrate",
                    "image": "example.com/shop/migrate:1.4", "args": ["up"]}]);
                pod
            },
            owner: Some(("Deployment", "web")),
            spec: "",
        },
        // Overrides on the namespace (inherited) and the pod (winning).
        Case {
            name: "overrides",
            namespace: json!({
                "linkerd.io/inject": "enabled",
                "config.linkerd.io/proxy-log-level": "debug",
                "config.linkerd.io/proxy-memory-request": "32Mi",
                "config.linkerd.io/skip-outbound-ports": "3306",
            }),
            pod: deployment_pod(json!({
                "config.linkerd.io/proxy-log-level": "warn,linkerd=debug",
                "config.linkerd.io/proxy-log-format": "json",
                "config.linkerd.io/proxy-cpu-request": "100m",
                "config.linkerd.io/proxy-cpu-limit": "1500m",
                "config.linkerd.io/proxy-memory-limit": "256Mi",
                "config.linkerd.io/proxy-ephemeral-storage-request": "50Mi",
                "config.linkerd.io/skip-inbound-ports": "9990",
                "config.linkerd.io/opaque-ports": "redis,7000-7002",
                "config.linkerd.io/proxy-image": "registry.example.com/linkerd/proxy",
                "config.linkerd.io/proxy-version": "edge-25.4.4-patched",
                "config.linkerd.io/admin-port": "5191",
                "config.linkerd.io/default-inbound-policy": "all-authenticated",
                "config.linkerd.io/access-log": "apache",
                "config.linkerd.io/shutdown-grace-period": "45s",
            })),
            owner: Some(("Deployment", "web")),
            spec: "",
        },
        Case {
            name: "await-disabled",
            namespace: enabled_ns.clone(),
            pod: deployment_pod(json!({
                "config.linkerd.io/proxy-await": "disabled",
                "config.alpha.linkerd.io/proxy-wait-before-exit-seconds": "20",
            })),
            owner: Some(("Deployment", "web")),
            spec: "",
        },
        // Native sidecars turned off by the GA annotation (2.20 on), which
        // wins over beta (2.19 on), which wins over alpha: a regular proxy
        // from 2.20, a native one at 2.19, a regular one before.
        Case {
            name: "native-sidecar-off",
            namespace: json!({"linkerd.io/inject": "enabled",
                "config.beta.linkerd.io/proxy-enable-native-sidecar": "true"}),
            pod: deployment_pod(json!({
                "config.linkerd.io/proxy-enable-native-sidecar": "false",
                "config.alpha.linkerd.io/proxy-enable-native-sidecar": "false",
            })),
            owner: Some(("Deployment", "web")),
            spec: "",
        },
        // A pod whose own native sidecar serves a port (counted from
        // edge-25.12.2), with proxy env from the namespace and the pod
        // (`proxy-additional-env`, edge-26.4.3 on, merged by name).
        Case {
            name: "sidecar-server-and-env",
            namespace: json!({"linkerd.io/inject": "enabled",
                "config.linkerd.io/proxy-additional-env":
                    r#"[{"name":"OTEL_SERVICE_NAME","value":"shop"},{"name":"RUST_BACKTRACE","value":"0"}]"#}),
            pod: {
                let mut pod = deployment_pod(json!({
                    "config.linkerd.io/proxy-additional-env":
                        r#"[{"name":"RUST_BACKTRACE","value":"1"},{"name":"NODE","valueFrom":{"fieldRef":{"fieldPath":"spec.nodeName"}}}]"#,
                }));
                pod["spec"]["initContainers"] = json!([{"name": "pg-bouncer",
                    "image": "example.com/shop/pgbouncer:1.22", "restartPolicy": "Always",
                    "ports": [{"name": "pg", "containerPort": 5432}]}]);
                pod
            },
            owner: Some(("Deployment", "web")),
            spec: "",
        },
        // CNI mode: the network validator instead of linkerd-init, no
        // iptables lock volume.
        Case {
            name: "cni",
            namespace: enabled_ns.clone(),
            pod: deployment_pod(json!({})),
            owner: Some(("Deployment", "web")),
            spec: "cni: {}",
        },
        // CNI mode with a native sidecar: the validator first, then the
        // proxy, then the pod's own init container.
        Case {
            name: "cni-native-sidecar",
            namespace: enabled_ns.clone(),
            pod: {
                let mut pod = deployment_pod(
                    json!({"config.alpha.linkerd.io/proxy-enable-native-sidecar": "true"}),
                );
                pod["spec"]["initContainers"] = json!([{"name": "migrate",
                    "image": "example.com/shop/migrate:1.4", "args": ["up"]}]);
                pod
            },
            owner: Some(("Deployment", "web")),
            spec: "cni: {}",
        },
        // A StatefulSet's pod with no labels or annotations of its own: the
        // patch creates both maps.
        Case {
            name: "owner-statefulset",
            namespace: enabled_ns,
            pod: json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "db-0", "namespace": "shop",
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                        "uid": "7c1f1c2e-0000-4000-8000-000000000002", "controller": true}]},
                "spec": {"containers": [{"name": "postgres", "image": "postgres:16",
                    "ports": [{"name": "pg", "containerPort": 5432}]}]},
            }),
            owner: Some(("StatefulSet", "db")),
            spec: "",
        },
    ]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/inject")
}

fn to_yaml(v: &Value) -> String {
    yaml_serde::to_string(v).expect("JSON serializes as YAML")
}

/// The input file: the namespace, the owner, and the pod, as YAML documents.
fn input_yaml(case: &Case) -> String {
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": case.pod["metadata"]["namespace"], "annotations": case.namespace}});
    let mut owner = match case.owner {
        Some((kind, name)) => format!("# The webhook resolved the pod's owner to {kind} {name}.\n"),
        None => "# The pod has no owner.\n".to_owned(),
    };
    if !case.spec.is_empty() {
        owner.push_str(&format!(
            "# The ControlPlane's spec has {{{}}}.\n",
            case.spec
        ));
    }
    format!("{}---\n{owner}{}", to_yaml(&namespace), to_yaml(&case.pod))
}

/// The cluster a release's pods are injected on: 1.28 (no native sidecars
/// by default there), or the release's floor where that is newer (2.20's
/// 1.31, where its default native sidecars apply).
fn kubernetes(release: &catalog::Release) -> KubeVersion {
    release.kubernetes_floor.max(KubeVersion {
        major: 1,
        minor: 28,
    })
}

/// The submitted pod after Keelson's patch, for one release.
fn injected(case: &Case, version: &str) -> Value {
    let spec: ControlPlaneSpec =
        yaml_serde::from_str(&format!("{{version: {version}, {}}}", case.spec)).unwrap();
    let release = catalog::find(version).unwrap();
    let namespace: ObjectMeta = serde_json::from_value(json!({
        "name": case.pod["metadata"]["namespace"], "annotations": case.namespace}))
    .unwrap();
    let pod: Pod = serde_json::from_value(case.pod.clone()).unwrap();
    // What the ControlPlane's status reports once the plugin is rolled out.
    let cni_redirect = spec
        .cni
        .as_ref()
        .map(|cni| keelson_operator::render::cni::redirect_sha256(release, cni));
    let context = Context {
        control_plane: "linkerd",
        spec: &spec,
        release,
        kubernetes: kubernetes(release),
        trust_anchors_pem: TRUST_ANCHORS,
        trust_root_sha256: None,
        cni_redirect_sha256: cni_redirect.as_deref(),
        namespace: &namespace,
        owner: case.owner.map(|(kind, name)| Owner {
            kind: kind.into(),
            name: name.into(),
        }),
    };
    let decision = inject::inject(&context, &pod);
    let Decision::Inject(patch) = decision else {
        panic!("{version} {}: {decision:?}", case.name)
    };
    let mut doc = serde_json::to_value(&pod).unwrap();
    json_patch::patch(&mut doc, &patch.ops())
        .unwrap_or_else(|e| panic!("{version} {}: {e}", case.name));
    doc
}

#[test]
fn injected_pods_match_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = golden_dir();
    if update {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut stale = Vec::new();
    let mut check = |path: PathBuf, content: String| {
        if update {
            std::fs::write(&path, &content).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            stale.push(path.display().to_string());
        }
    };
    for case in cases() {
        check(
            dir.join(format!("{}.input.yaml", case.name)),
            input_yaml(&case),
        );
        for release in catalog::releases() {
            let version = release.version.to_string();
            check(
                dir.join(format!("{version}-{}.yaml", case.name)),
                to_yaml(&injected(&case, &version)),
            );
        }
    }
    // Nothing left over from a case or release that no longer exists.
    let mut expected: Vec<String> = Vec::new();
    for case in cases() {
        expected.push(format!("{}.input.yaml", case.name));
        for release in catalog::releases() {
            expected.push(format!("{}-{}.yaml", release.version, case.name));
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !expected.contains(&name) {
            stale.push(format!(
                "{} (no longer generated)",
                dir.join(name).display()
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "stale golden files (run `make golden` and review the diff): {stale:?}"
    );
}

/// The injected pods are pods: a misplaced field would be dropped by the
/// round trip through the Kubernetes type and show here.
#[test]
fn injected_pods_are_valid_pods() {
    for case in cases() {
        for release in catalog::releases() {
            let doc = injected(&case, &release.version.to_string());
            let pod: Pod = serde_json::from_value(doc.clone()).unwrap();
            assert_eq!(
                serde_json::to_value(&pod).unwrap(),
                doc,
                "{} {}",
                release.version,
                case.name
            );
        }
    }
}
