//! Unit and property tests of the injector. Each builds a pod, injects it,
//! applies the patch and looks at the pod the API server would store.

use super::*;
use crate::catalog;
use proptest::prelude::*;
use serde_json::Value;

/// The ControlPlane's `status.cni.redirectSha256` the fixture's injector sees.
const CNI_REDIRECT: &str = "cni-redirect-digest";
const ANCHORS: &str = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n";

struct Fixture {
    spec: ControlPlaneSpec,
    release: &'static Release,
    kubernetes: KubeVersion,
    namespace: ObjectMeta,
    owner: Option<Owner>,
}

impl Fixture {
    fn new(version: &str) -> Self {
        Self::with_spec(version, "")
    }

    /// A fixture whose ControlPlane spec has `extra` (YAML flow mapping
    /// entries such as `proxy: {await: false}`).
    fn with_spec(version: &str, extra: &str) -> Self {
        let yaml = format!("{{version: {version}, {extra}}}");
        Self {
            spec: yaml_serde::from_str(&yaml).unwrap(),
            release: catalog::find(version).unwrap(),
            kubernetes: KubeVersion {
                major: 1,
                minor: 28,
            },
            namespace: ns_meta(json!({"linkerd.io/inject": "enabled"})),
            owner: None,
        }
    }

    fn decide(&self, pod: &Pod) -> Decision {
        inject(
            &Context {
                control_plane: "linkerd",
                spec: &self.spec,
                release: self.release,
                kubernetes: self.kubernetes,
                trust_anchors_pem: ANCHORS,
                trust_root_sha256: None,
                cni_redirect_sha256: Some(CNI_REDIRECT),
                namespace: &self.namespace,
                owner: self.owner.clone(),
            },
            pod,
        )
    }

    /// The injected pod, as JSON; panics if the pod is skipped.
    fn injected(&self, pod: &Pod) -> Value {
        match self.decide(pod) {
            Decision::Inject(patch) => {
                let mut doc = serde_json::to_value(pod).unwrap();
                json_patch::patch(&mut doc, &patch.ops()).unwrap();
                doc
            }
            other => panic!("not injected: {other:?}"),
        }
    }

    fn skipped(&self, pod: &Pod) -> SkipReason {
        match self.decide(pod) {
            Decision::Skip(reason) => reason,
            other => panic!("not skipped: {other:?}"),
        }
    }

    fn refused(&self, pod: &Pod) -> Refusal {
        match self.decide(pod) {
            Decision::Refuse(refusal) => refusal,
            other => panic!("not refused: {other:?}"),
        }
    }
}

fn ns_meta(annotations: Value) -> ObjectMeta {
    serde_json::from_value(json!({"name": "apps", "annotations": annotations})).unwrap()
}

fn pod_with(annotations: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "apps", "labels": {"app": "web"},
            "annotations": annotations},
        "spec": {"containers": [{"name": "web", "image": "example.com/web:1",
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "db", "containerPort": 3306}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 9090}}}]},
    }))
    .unwrap()
}

fn pod() -> Pod {
    pod_with(json!({}))
}

/// The proxy container of an injected pod, wherever it went.
fn proxy_of(doc: &Value) -> &Value {
    let spec = &doc["spec"];
    spec["containers"]
        .as_array()
        .into_iter()
        .chain(spec["initContainers"].as_array())
        .flatten()
        .find(|c| c["name"] == "linkerd-proxy")
        .expect("a linkerd-proxy container")
}

fn env<'v>(container: &'v Value, name: &str) -> Option<&'v str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?
        .get("value")?
        .as_str()
}

fn init_args(doc: &Value) -> Vec<String> {
    let init = doc["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "linkerd-init")
        .unwrap();
    serde_json::from_value(init["args"].clone()).unwrap()
}

#[test]
fn the_inject_annotation_decides_as_linkerds_truth_table() {
    let f = |ns: Option<&str>, pod: Option<&str>| {
        let mut fixture = Fixture::new("edge-25.4.4");
        fixture.namespace = ns_meta(ns.map_or(json!({}), |v| json!({"linkerd.io/inject": v})));
        let pod = pod_with(pod.map_or(json!({}), |v| json!({"linkerd.io/inject": v})));
        match fixture.decide(&pod) {
            Decision::Inject(_) => Ok(()),
            Decision::Skip(r) => Err(r),
            Decision::Refuse(r) => panic!("refused: {r}"),
        }
    };
    use SkipReason::*;
    for (ns, pod, want) in [
        (Some("enabled"), Some("enabled"), Ok(())),
        (Some("enabled"), None, Ok(())),
        (Some("ingress"), None, Ok(())),
        (Some("enabled"), Some("disabled"), Err(Disabled)),
        (Some("disabled"), Some("enabled"), Ok(())),
        (None, Some("enabled"), Ok(())),
        (None, Some("ingress"), Ok(())),
        (Some("disabled"), Some("disabled"), Err(NotEnabled)),
        (None, Some("disabled"), Err(NotEnabled)),
        (Some("disabled"), None, Err(NotEnabled)),
        (None, None, Err(NotEnabled)),
        (Some(""), Some(""), Err(NotEnabled)),
    ] {
        assert_eq!(f(ns, pod), want, "namespace {ns:?}, pod {pod:?}");
    }
}

#[test]
fn invalid_inject_values_name_where_they_are() {
    let mut fixture = Fixture::new("edge-25.4.4");
    let reason = fixture.skipped(&pod_with(json!({"linkerd.io/inject": "true"})));
    assert_eq!(
        reason,
        SkipReason::InvalidInjectValue {
            at: AnnotationSource::Pod,
            value: "true".into()
        }
    );
    let message = reason.to_string();
    assert!(
        message.contains("linkerd.io/inject") && message.contains("\"true\""),
        "{message}"
    );
    // As in Linkerd, a bad namespace value wins even over a pod that enables.
    fixture.namespace = ns_meta(json!({"linkerd.io/inject": "Enabled"}));
    assert_eq!(
        fixture.skipped(&pod_with(json!({"linkerd.io/inject": "enabled"}))),
        SkipReason::InvalidInjectValue {
            at: AnnotationSource::Namespace,
            value: "Enabled".into()
        }
    );
}

#[test]
fn host_network_and_existing_sidecars_are_skipped() {
    let fixture = Fixture::new("edge-25.10.7");
    let mut p = pod();
    p.spec.as_mut().unwrap().host_network = Some(true);
    assert_eq!(fixture.skipped(&p), SkipReason::HostNetwork);

    for (field, container) in [
        ("containers", json!({"name": "linkerd-proxy"})),
        (
            "containers",
            json!({"name": "envoy", "image": "gcr.io/istio-release/proxyv2:1.20"}),
        ),
        ("containers", json!({"name": "istio-proxy"})),
        ("initContainers", json!({"name": "linkerd-proxy"})),
        ("initContainers", json!({"name": "linkerd-init"})),
        (
            "initContainers",
            json!({"name": "x", "image": "cr.l5d.io/linkerd/proxy-init:v2.4.2"}),
        ),
        ("initContainers", json!({"name": "istio-init"})),
    ] {
        let mut doc = serde_json::to_value(pod()).unwrap();
        let list = doc["spec"][field].as_array().cloned().unwrap_or_default();
        doc["spec"][field] = [list, vec![container.clone()]].concat().into();
        let p: Pod = serde_json::from_value(doc).unwrap();
        match fixture.skipped(&p) {
            SkipReason::SidecarPresent { container: name } => {
                assert_eq!(name, container["name"], "{field}")
            }
            other => panic!("{field} {container}: {other}"),
        }
    }
    // An injected pod is never injected twice.
    let injected: Pod = serde_json::from_value(fixture.injected(&pod())).unwrap();
    assert!(matches!(
        fixture.skipped(&injected),
        SkipReason::SidecarPresent { .. }
    ));
}

#[test]
fn pods_without_spec_or_trust_bundle_are_skipped() {
    let fixture = Fixture::new("edge-25.4.4");
    let mut p = pod();
    p.spec = None;
    assert_eq!(fixture.skipped(&p), SkipReason::NoPodSpec);
    let mut empty = pod();
    empty.spec.as_mut().unwrap().containers.clear();
    assert_eq!(fixture.skipped(&empty), SkipReason::NoPodSpec);
    let decision = inject(
        &Context {
            control_plane: "linkerd",
            spec: &fixture.spec,
            release: fixture.release,
            kubernetes: fixture.kubernetes,
            trust_anchors_pem: " \n",
            trust_root_sha256: None,
            cni_redirect_sha256: None,
            namespace: &fixture.namespace,
            owner: None,
        },
        &pod(),
    );
    assert!(matches!(
        decision,
        Decision::Skip(SkipReason::NoTrustAnchors)
    ));
}

#[test]
fn what_linkerds_chart_refuses_is_refused_with_the_annotation_named() {
    let fixture = Fixture::new("edge-25.4.4");
    let reason = fixture.refused(&pod_with(json!({
        "config.alpha.linkerd.io/proxy-enable-native-sidecar": "true",
        "config.alpha.linkerd.io/proxy-wait-before-exit-seconds": "10",
    })));
    assert_eq!(reason, Refusal::NativeSidecarWithWaitBeforeExit);
    assert!(
        reason
            .to_string()
            .contains("proxy-wait-before-exit-seconds")
    );

    let reason = fixture.refused(&pod_with(
        json!({"config.linkerd.io/proxy-log-http-headers": "on"}),
    ));
    assert_eq!(reason, Refusal::InvalidLogHttpHeaders("on".into()));

    // close-wait-timeout needs a root proxy-init from edge-25.1.1 on.
    let close_wait = pod_with(json!({"config.linkerd.io/close-wait-timeout": "2m"}));
    assert!(matches!(
        fixture.refused(&close_wait),
        Refusal::CloseWaitNeedsRoot { .. }
    ));
    let doc = Fixture::new("edge-24.11.8").injected(&close_wait);
    let args = init_args(&doc);
    assert!(
        args.windows(2)
            .any(|w| w == ["--timeout-close-wait-secs", "120"]),
        "{args:?}"
    );
    let init = &doc["spec"]["initContainers"][0];
    assert_eq!(init["securityContext"]["privileged"], true);
}

#[test]
fn namespace_config_is_inherited_and_the_pods_own_wins() {
    let mut fixture = Fixture::new("edge-25.4.4");
    fixture.namespace = ns_meta(json!({
        "linkerd.io/inject": "enabled",
        "config.linkerd.io/proxy-log-level": "debug",
        "config.linkerd.io/proxy-cpu-request": "200m",
        "config.linkerd.io/close-wait-timeout": "1m",
        "config.linkerd.io/not-a-setting": "x",
    }));
    let doc = fixture.injected(&pod_with(
        json!({"config.linkerd.io/proxy-log-level": "trace"}),
    ));
    let proxy = proxy_of(&doc);
    assert_eq!(
        env(proxy, "LINKERD2_PROXY_LOG"),
        Some("trace,[{headers}]=off,[{request}]=off")
    );
    assert_eq!(proxy["resources"]["requests"]["cpu"], "200m");
    let annotations = &doc["metadata"]["annotations"];
    // Copied to the pod: what it inherits, including the inject annotation.
    assert_eq!(annotations["config.linkerd.io/proxy-cpu-request"], "200m");
    assert_eq!(annotations["linkerd.io/inject"], "enabled");
    assert_eq!(annotations["config.linkerd.io/proxy-log-level"], "trace");
    // Not copied: keys Linkerd does not pass down.
    assert!(
        annotations
            .get("config.linkerd.io/close-wait-timeout")
            .is_none()
    );
    assert!(annotations.get("config.linkerd.io/not-a-setting").is_none());
    assert!(!init_args(&doc).contains(&"--timeout-close-wait-secs".to_owned()));
}

#[test]
fn invalid_override_values_are_ignored_as_linkerd_ignores_them() {
    let fixture = Fixture::new("edge-25.4.4");
    let doc = fixture.injected(&pod_with(json!({
        "config.linkerd.io/proxy-cpu-request": "lots",
        "config.linkerd.io/proxy-memory-limit": "1 Gi",
        "config.linkerd.io/proxy-await": "yes",
        "config.linkerd.io/admin-port": "x",
        "config.linkerd.io/proxy-uid": "root",
        "config.linkerd.io/default-inbound-policy": "allow",
        "config.linkerd.io/proxy-outbound-connect-timeout": "5",
        "config.linkerd.io/proxy-admin-shutdown": "on",
        "config.linkerd.io/opaque-ports": "nope,99999",
    })));
    let proxy = proxy_of(&doc);
    assert!(proxy.get("resources").is_none(), "{proxy}");
    assert!(proxy.get("lifecycle").is_some(), "await stays on");
    assert_eq!(doc["spec"]["containers"][0]["name"], "linkerd-proxy");
    assert_eq!(
        env(proxy, "LINKERD2_PROXY_ADMIN_LISTEN_ADDR"),
        Some("0.0.0.0:4191")
    );
    assert_eq!(proxy["securityContext"]["runAsUser"], 2102);
    assert_eq!(
        env(proxy, "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY"),
        Some("all-unauthenticated")
    );
    assert_eq!(
        env(proxy, "LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT"),
        Some("1000ms")
    );
    assert_eq!(
        env(proxy, "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED"),
        Some("false")
    );
    assert_eq!(env(proxy, "LINKERD2_PROXY_CORES"), Some("1"));
    // Every entry invalid: the proxy gets no opaque ports at all.
    assert_eq!(
        env(
            proxy,
            "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION"
        ),
        None
    );
}

#[test]
fn valid_overrides_reach_the_proxy_and_init_container() {
    let fixture = Fixture::new("edge-25.10.7");
    let doc = fixture.injected(&pod_with(json!({
        "config.linkerd.io/proxy-cpu-request": "1500m",
        "config.linkerd.io/proxy-cpu-limit": "3",
        "config.linkerd.io/proxy-cpu-ratio-limit": "0.10",
        "config.linkerd.io/proxy-memory-limit": "1Gi",
        "config.linkerd.io/admin-port": "5191",
        "config.linkerd.io/proxy-uid": "1000",
        "config.linkerd.io/proxy-gid": "3000",
        "config.linkerd.io/default-inbound-policy": "audit",
        "config.linkerd.io/proxy-outbound-connect-timeout": "1.5s",
        "config.linkerd.io/proxy-inbound-discovery-cache-unused-timeout": "2m",
        "config.linkerd.io/opaque-ports": "db, 9000-9002",
        "config.linkerd.io/skip-inbound-ports": "8443",
        "config.linkerd.io/skip-outbound-ports": "25",
        "config.linkerd.io/skip-subnets": "10.1.0.0/16",
        "config.linkerd.io/proxy-image": "registry.example/proxy",
        "config.linkerd.io/proxy-version": "custom",
        "config.linkerd.io/enable-debug-sidecar": "true",
    })));
    let proxy = proxy_of(&doc);
    for (name, want) in [
        ("LINKERD2_PROXY_CORES", "2"),
        ("LINKERD2_PROXY_CORES_MIN", "2"),
        ("LINKERD2_PROXY_CORES_MAX", "3"),
        ("LINKERD2_PROXY_CORES_MAX_RATIO", "0.1"),
        ("LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "0.0.0.0:5191"),
        ("LINKERD2_PROXY_INBOUND_DEFAULT_POLICY", "audit"),
        ("LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT", "1500ms"),
        ("LINKERD2_PROXY_INBOUND_DISCOVERY_IDLE_TIMEOUT", "120s"),
        (
            "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
            "3306,9000-9002",
        ),
        ("LINKERD2_PROXY_INBOUND_PORTS", "3306,8080,9090"),
    ] {
        assert_eq!(env(proxy, name), Some(want), "{name}");
    }
    assert_eq!(proxy["image"], "registry.example/proxy:custom");
    assert_eq!(
        doc["metadata"]["annotations"]["linkerd.io/proxy-version"],
        "custom"
    );
    assert_eq!(proxy["securityContext"]["runAsUser"], 1000);
    assert_eq!(proxy["securityContext"]["runAsGroup"], 3000);
    assert_eq!(proxy["livenessProbe"]["httpGet"]["port"], 5191);
    assert_eq!(proxy["resources"]["limits"]["memory"], "1Gi");
    let args = init_args(&doc);
    for pair in [
        ["--proxy-uid", "1000"],
        ["--proxy-gid", "3000"],
        ["--inbound-ports-to-ignore", "4190,5191,8443"],
        ["--outbound-ports-to-ignore", "25"],
        ["--subnets-to-ignore", "10.1.0.0/16"],
    ] {
        assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
    }
    let containers = doc["spec"]["containers"].as_array().unwrap();
    assert_eq!(
        containers.last().unwrap()["image"],
        "cr.l5d.io/linkerd/debug:edge-25.10.7"
    );
}

#[test]
fn cpu_sizes_workers_from_2_18_and_cores_before() {
    let annotations = json!({
        "config.linkerd.io/proxy-cpu-request": "100m",
        "config.linkerd.io/proxy-cpu-limit": "2500m",
        "config.linkerd.io/proxy-cpu-ratio-limit": "0.5",
    });
    let old = Fixture::new("edge-24.11.8").injected(&pod_with(annotations.clone()));
    let proxy = proxy_of(&old);
    assert_eq!(env(proxy, "LINKERD2_PROXY_CORES"), Some("3"));
    assert_eq!(env(proxy, "LINKERD2_PROXY_CORES_MIN"), None);
    assert_eq!(env(proxy, "LINKERD2_PROXY_CORES_MAX_RATIO"), None);
    let new = Fixture::new("edge-25.4.4").injected(&pod_with(annotations));
    let proxy = proxy_of(&new);
    assert_eq!(env(proxy, "LINKERD2_PROXY_CORES"), Some("1"));
    assert_eq!(env(proxy, "LINKERD2_PROXY_CORES_MAX"), Some("3"));
    assert_eq!(env(proxy, "LINKERD2_PROXY_CORES_MAX_RATIO"), Some("0.5"));
}

#[test]
fn native_sidecars_follow_the_spec_the_kubernetes_version_and_annotations() {
    let native = |version: &str, setting: &str, minor: u32, annotations: Value| {
        let mut f = Fixture::with_spec(version, &format!("proxy: {{nativeSidecar: {setting}}}"));
        f.kubernetes = KubeVersion { major: 1, minor };
        let doc = f.injected(&pod_with(annotations));
        let inits = doc["spec"]["initContainers"].as_array().unwrap();
        let in_init = inits.iter().any(|c| c["name"] == "linkerd-proxy");
        let in_containers = doc["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "linkerd-proxy");
        assert_ne!(in_init, in_containers);
        if in_init {
            assert_eq!(inits[0]["name"], "linkerd-init");
            assert_eq!(inits[1]["name"], "linkerd-proxy");
            assert_eq!(inits[1]["restartPolicy"], "Always");
            assert!(inits[1].get("startupProbe").is_some());
            assert!(inits[1].get("lifecycle").is_none());
        }
        in_init
    };
    let none = json!({});
    assert!(!native("edge-25.4.4", "Auto", 28, none.clone()));
    assert!(native("edge-25.4.4", "Auto", 29, none.clone()));
    assert!(native("edge-25.4.4", "Enabled", 20, none.clone()));
    assert!(!native("edge-25.4.4", "Disabled", 33, none.clone()));
    let alpha = |v: &str| json!({"config.alpha.linkerd.io/proxy-enable-native-sidecar": v});
    let beta = |v: &str| json!({"config.beta.linkerd.io/proxy-enable-native-sidecar": v});
    assert!(native("edge-24.11.8", "Disabled", 28, alpha("true")));
    assert!(!native("edge-25.4.4", "Auto", 30, alpha("false")));
    // An unparsable value is ignored: the spec's setting stays.
    assert!(native("edge-25.4.4", "Enabled", 30, alpha("nonsense")));
    // The beta annotation exists from 2.19 on, and wins over the alpha one.
    assert!(!native("edge-25.4.4", "Disabled", 30, beta("true")));
    assert!(native("edge-25.10.7", "Disabled", 30, beta("true")));
    let both = json!({
        "config.alpha.linkerd.io/proxy-enable-native-sidecar": "true",
        "config.beta.linkerd.io/proxy-enable-native-sidecar": "false",
    });
    assert!(!native("edge-25.10.7", "Disabled", 30, both.clone()));
    assert!(native("edge-25.4.4", "Disabled", 30, both));
    // The release's default: off up to 2.19, on from 2.20, but never where
    // the API server would drop `restartPolicy` (below 1.29).
    assert!(!native("edge-25.10.7", "ReleaseDefault", 31, none.clone()));
    assert!(native("edge-26.6.3", "ReleaseDefault", 31, none.clone()));
    assert!(!native("edge-26.6.3", "ReleaseDefault", 28, none.clone()));
    assert!(!native("edge-26.6.3", "Disabled", 31, none.clone()));
    // From 2.20 the GA annotation wins over beta and alpha, even unparsable.
    let ga = |v: &str| json!({"config.linkerd.io/proxy-enable-native-sidecar": v});
    assert!(!native("edge-26.6.3", "Enabled", 31, ga("false")));
    assert!(native("edge-26.8.3", "Disabled", 31, ga("true")));
    let ga_and_beta = json!({
        "config.linkerd.io/proxy-enable-native-sidecar": "false",
        "config.beta.linkerd.io/proxy-enable-native-sidecar": "true",
    });
    assert!(!native("edge-26.6.3", "Disabled", 31, ga_and_beta.clone()));
    assert!(native("edge-25.10.7", "Disabled", 31, ga_and_beta));
    let ga_nonsense = json!({
        "config.linkerd.io/proxy-enable-native-sidecar": "nonsense",
        "config.beta.linkerd.io/proxy-enable-native-sidecar": "true",
    });
    assert!(!native("edge-26.6.3", "Disabled", 31, ga_nonsense));
    // Before 2.20 the GA annotation means nothing.
    assert!(!native("edge-25.10.7", "Disabled", 31, ga("true")));
}

#[test]
fn the_namespace_passes_down_the_native_sidecar_annotation_of_the_release() {
    let inherited = |version: &str, key: &str| {
        let mut f = Fixture::new(version);
        f.kubernetes = KubeVersion {
            major: 1,
            minor: 31,
        };
        f.namespace = ns_meta(json!({"linkerd.io/inject": "enabled", key: "true"}));
        let doc = f.injected(&pod());
        doc["metadata"]["annotations"].get(key).is_some()
    };
    let beta = "config.beta.linkerd.io/proxy-enable-native-sidecar";
    let ga = "config.linkerd.io/proxy-enable-native-sidecar";
    assert!(inherited("edge-25.10.7", beta));
    assert!(!inherited("edge-25.10.7", ga));
    // 2.20 replaced beta with GA in the inheritable list.
    assert!(!inherited("edge-26.6.3", beta));
    assert!(inherited("edge-26.6.3", ga));
}

#[test]
fn from_2_20_a_native_sidecar_may_wait_before_exit_without_a_prestop_hook() {
    let annotations = json!({
        "config.linkerd.io/proxy-enable-native-sidecar": "true",
        "config.alpha.linkerd.io/proxy-wait-before-exit-seconds": "10",
    });
    let doc = Fixture::new("edge-26.6.3").injected(&pod_with(annotations.clone()));
    let proxy = proxy_of(&doc);
    assert_eq!(proxy["restartPolicy"], "Always");
    assert!(proxy.get("lifecycle").is_none(), "{proxy}");
    // The same pair as 2.19 spells it is still refused there.
    let mut f = Fixture::new("edge-25.10.7");
    f.kubernetes = KubeVersion {
        major: 1,
        minor: 31,
    };
    let refused = f.refused(&pod_with(json!({
        "config.beta.linkerd.io/proxy-enable-native-sidecar": "true",
        "config.alpha.linkerd.io/proxy-wait-before-exit-seconds": "10",
    })));
    assert_eq!(refused, Refusal::NativeSidecarWithWaitBeforeExit);
}

#[test]
fn proxy_additional_env_merges_namespace_then_workload_by_name() {
    let mut f = Fixture::new("edge-26.8.3");
    f.namespace = ns_meta(json!({
        "linkerd.io/inject": "enabled",
        "config.linkerd.io/proxy-additional-env":
            r#"[{"name":"A","value":"ns"},{"name":"B","value":"ns"}]"#,
    }));
    let pod_env = r#"[{"name":"B","value":"pod"},{"name":"NODE","valueFrom":{"fieldRef":{"fieldPath":"spec.nodeName"}}}]"#;
    let doc = f.injected(&pod_with(
        json!({"config.linkerd.io/proxy-additional-env": pod_env}),
    ));
    let vars = proxy_of(&doc)["env"].as_array().unwrap().clone();
    let tail: Vec<&Value> = vars.iter().rev().take(3).rev().collect();
    assert_eq!(
        tail,
        [
            &json!({"name": "A", "value": "ns"}),
            &json!({"name": "B", "value": "pod"}),
            &json!({"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}),
        ]
    );
    // The pod keeps its own annotation; the namespace's is not copied over it.
    assert_eq!(
        doc["metadata"]["annotations"]["config.linkerd.io/proxy-additional-env"],
        pod_env
    );

    // Invalid JSON in one layer drops that layer only.
    let doc = f.injected(&pod_with(
        json!({"config.linkerd.io/proxy-additional-env": "[{\"name\": \"B\""}),
    ));
    let proxy = proxy_of(&doc);
    assert_eq!(env(proxy, "A"), Some("ns"));
    assert_eq!(env(proxy, "B"), Some("ns"));

    // Before edge-26.4.3 the annotation means nothing.
    let mut old = Fixture::new("edge-25.10.7");
    old.namespace = f.namespace.clone();
    let doc = old.injected(&pod());
    assert_eq!(env(proxy_of(&doc), "A"), None);
    assert!(
        doc["metadata"]["annotations"]
            .get("config.linkerd.io/proxy-additional-env")
            .is_none()
    );
}

#[test]
fn linkerd_init_runs_from_the_proxy_image_where_the_release_has_no_proxy_init_image() {
    let annotations = json!({
        "config.linkerd.io/proxy-image": "registry.example.com/proxy",
        "config.linkerd.io/proxy-version": "patched",
        "config.linkerd.io/image-pull-policy": "Always",
        "config.linkerd.io/init-image": "registry.example.com/proxy-init",
        "config.linkerd.io/init-image-version": "v9",
    });
    let init = |version: &str| {
        let doc = Fixture::new(version).injected(&pod_with(annotations.clone()));
        doc["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "linkerd-init")
            .unwrap()
            .clone()
    };
    let new = init("edge-26.6.3");
    assert_eq!(new["image"], "registry.example.com/proxy:patched");
    assert_eq!(new["imagePullPolicy"], "Always");
    assert_eq!(
        new["command"],
        json!(["/usr/lib/linkerd/linkerd2-proxy-init"])
    );
    let old = init("edge-25.10.7");
    assert_eq!(old["image"], "registry.example.com/proxy-init:v9");
    assert!(old.get("command").is_none());
}

#[test]
fn init_containers_ports_count_from_edge_25_12_2() {
    let mut pod = pod();
    pod.spec.as_mut().unwrap().init_containers = Some(vec![
        serde_json::from_value(
            json!({"name": "db-proxy", "image": "example.com/db-proxy:1",
            "restartPolicy": "Always",
            "ports": [{"name": "pg", "containerPort": 5432}]}),
        )
        .unwrap(),
    ]);
    let annotated = |version: &str, extra: Value| {
        let mut p = pod.clone();
        p.metadata.annotations = serde_json::from_value(extra).unwrap();
        let doc = Fixture::new(version).injected(&p);
        (
            doc["metadata"]["annotations"]["config.linkerd.io/opaque-ports"].clone(),
            env(proxy_of(&doc), "LINKERD2_PROXY_INBOUND_PORTS")
                .unwrap()
                .to_owned(),
        )
    };
    let (opaque, inbound) = annotated("edge-26.6.3", json!({}));
    assert_eq!(opaque, "5432,3306");
    assert_eq!(inbound, "3306,5432,8080,9090");
    let (opaque, inbound) = annotated("edge-25.10.7", json!({}));
    assert_eq!(opaque, "3306");
    assert_eq!(inbound, "3306,8080,9090");
    // A named port of an init container resolves in port lists.
    let opaque = |version: &str| {
        let mut p = pod.clone();
        p.metadata.annotations =
            serde_json::from_value(json!({"config.linkerd.io/opaque-ports": "pg"})).unwrap();
        let doc = Fixture::new(version).injected(&p);
        env(
            proxy_of(&doc),
            "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
        )
        .map(str::to_owned)
    };
    assert_eq!(opaque("edge-26.6.3").as_deref(), Some("5432"));
    assert_eq!(opaque("edge-25.10.7").as_deref(), None);
}

#[test]
fn await_places_the_proxy_first_and_its_absence_last() {
    let fixture = Fixture::new("edge-25.4.4");
    let doc = fixture.injected(&pod());
    assert_eq!(doc["spec"]["containers"][0]["name"], "linkerd-proxy");
    let doc = fixture.injected(&pod_with(json!({
        "config.linkerd.io/proxy-await": "disabled",
        "config.alpha.linkerd.io/proxy-wait-before-exit-seconds": "30",
    })));
    let containers = doc["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers[0]["name"], "web");
    let proxy = &containers[1];
    assert_eq!(proxy["name"], "linkerd-proxy");
    assert_eq!(
        proxy["lifecycle"],
        json!({"preStop": {"exec": {"command": ["/bin/sleep", "30"]}}})
    );
}

#[test]
fn ingress_mode_sets_the_proxy_env() {
    let fixture = Fixture::new("edge-25.4.4");
    let doc = fixture.injected(&pod_with(json!({"linkerd.io/inject": "ingress"})));
    assert_eq!(
        env(proxy_of(&doc), "LINKERD2_PROXY_INGRESS_MODE"),
        Some("true")
    );
    let mut fixture = Fixture::new("edge-25.4.4");
    fixture.namespace = ns_meta(json!({"linkerd.io/inject": "ingress"}));
    let doc = fixture.injected(&pod());
    assert_eq!(
        env(proxy_of(&doc), "LINKERD2_PROXY_INGRESS_MODE"),
        Some("true")
    );
    assert_eq!(
        doc["metadata"]["annotations"]["linkerd.io/inject"],
        "ingress"
    );
    let doc = fixture.injected(&pod_with(json!({"linkerd.io/inject": "enabled"})));
    assert_eq!(env(proxy_of(&doc), "LINKERD2_PROXY_INGRESS_MODE"), None);
}

#[test]
fn labels_annotations_and_identity_match_linkerds() {
    let mut fixture = Fixture::with_spec(
        "edge-25.4.4",
        "namespace: mesh, identity: {trustDomain: example.org}, proxy: {defaultInboundPolicy: deny}",
    );
    fixture.owner = Some(Owner {
        kind: "Deployment".into(),
        name: "web".into(),
    });
    let doc = fixture.injected(&pod());
    let labels = &doc["metadata"]["labels"];
    assert_eq!(labels["linkerd.io/control-plane-ns"], "mesh");
    assert_eq!(labels["linkerd.io/workload-ns"], "apps");
    assert_eq!(labels["linkerd.io/proxy-deployment"], "web");
    assert_eq!(labels["app"], "web");
    let annotations = &doc["metadata"]["annotations"];
    assert_eq!(annotations["linkerd.io/created-by"], proxy::created_by());
    assert_eq!(annotations["linkerd.io/proxy-version"], "edge-25.4.4");
    assert_eq!(
        annotations["linkerd.io/trust-root-sha256"],
        proxy::trust_root_sha256(ANCHORS)
    );
    // The pod exposes 3306, one of Linkerd's default opaque ports.
    assert_eq!(annotations["config.linkerd.io/opaque-ports"], "3306");
    let proxy = proxy_of(&doc);
    assert_eq!(
        env(
            proxy,
            "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION"
        ),
        Some("3306")
    );
    assert_eq!(
        env(proxy, "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY"),
        Some("deny")
    );
    assert_eq!(
        env(proxy, "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS"),
        Some(ANCHORS)
    );
    assert_eq!(
        env(proxy, "LINKERD2_PROXY_IDENTITY_LOCAL_NAME"),
        Some("$(_pod_sa).$(_pod_ns).serviceaccount.identity.mesh.example.org")
    );
    assert_eq!(
        env(proxy, "LINKERD2_PROXY_DESTINATION_SVC_ADDR"),
        Some("linkerd-dst-headless.mesh.svc.cluster.local.:8086")
    );

    // Owner kinds Linkerd has no label for get none; the others do.
    for (kind, label) in [
        ("CronJob", None),
        ("Pod", None),
        ("Rollout", None),
        ("StatefulSet", Some("linkerd.io/proxy-statefulset")),
        ("Job", Some("linkerd.io/proxy-job")),
        ("ReplicaSet", Some("linkerd.io/proxy-replicaset")),
    ] {
        fixture.owner = Some(Owner {
            kind: kind.into(),
            name: "owner".into(),
        });
        let doc = fixture.injected(&pod());
        let owner_labels: Vec<&String> = doc["metadata"]["labels"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("linkerd.io/proxy-"))
            .collect();
        assert_eq!(owner_labels.first().map(|s| s.as_str()), label, "{kind}");
    }
}

#[test]
fn the_first_containers_capabilities_and_token_mount_carry_over() {
    let fixture = Fixture::new("edge-25.4.4");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "app",
            "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL", "NET_RAW"]}},
            "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}]},
    }))
    .unwrap();
    let mut fixture_ns = fixture;
    fixture_ns.namespace = ns_meta(json!({"linkerd.io/inject": "enabled"}));
    let doc = fixture_ns.injected(&p);
    let proxy = proxy_of(&doc);
    assert_eq!(
        proxy["securityContext"]["capabilities"],
        json!({"add": ["NET_BIND_SERVICE"], "drop": ["ALL", "NET_RAW"]})
    );
    let init = &doc["spec"]["initContainers"][0];
    assert_eq!(
        init["securityContext"]["capabilities"],
        json!({"add": ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"], "drop": ["ALL"]})
    );
    let mount = json!({"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "token", "readOnly": true});
    assert!(proxy["volumeMounts"].as_array().unwrap().contains(&mount));
    assert!(init["volumeMounts"].as_array().unwrap().contains(&mount));
}

#[test]
fn inbound_ports_sort_as_strings_like_linkerds() {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "x", "annotations": {"linkerd.io/inject": "enabled"}},
        "spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 10000}, {"containerPort": 80}],
             "livenessProbe": {"httpGet": {"port": "http"}}},
            {"name": "b", "ports": [{"containerPort": 9}, {"containerPort": 80}],
             "readinessProbe": {"httpGet": {"port": 443}}},
        ]},
    }))
    .unwrap();
    let doc = Fixture::new("edge-25.4.4").injected(&p);
    assert_eq!(
        env(proxy_of(&doc), "LINKERD2_PROXY_INBOUND_PORTS"),
        Some("10000,443,80,9")
    );
}

#[test]
fn the_patch_creates_missing_maps_and_lists_first() {
    let fixture = Fixture::new("edge-25.4.4");
    let bare: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "web-"},
        "spec": {"containers": [{"name": "web"}]},
    }))
    .unwrap();
    let Decision::Inject(patch) = fixture.decide(&bare) else {
        panic!("skipped")
    };
    let paths: Vec<String> = patch
        .ops()
        .0
        .iter()
        .map(|op| {
            serde_json::to_value(op).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let position = |p: &str| {
        paths
            .iter()
            .position(|x| x == p)
            .unwrap_or_else(|| panic!("{p} in {paths:?}"))
    };
    assert_eq!(position("/metadata/annotations"), 0);
    assert!(position("/metadata/labels") < position("/metadata/labels/linkerd.io~1workload-ns"));
    assert!(position("/spec/volumes") < position("/spec/initContainers"));
    assert_eq!(paths.last().unwrap(), "/spec/containers/0");
    // The pod has no namespace in its body: the namespace's name is used.
    let doc = fixture.injected(&bare);
    assert_eq!(doc["metadata"]["labels"]["linkerd.io/workload-ns"], "apps");
}

// Property test: whatever the pod and its annotations, `inject` answers,
// and a patch it returns applies to the submitted pod and leaves a pod.

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,10}",
        prop::sample::select(vec![
            "",
            "enabled",
            "disabled",
            "ingress",
            "true",
            "false",
            "1",
            "0",
            "-1",
            "100m",
            "1.5Gi",
            "3e2",
            "8080",
            "db,9000-9002",
            "1s",
            "1.5h",
            "-3m",
            "0.5",
            "NaN",
            "insecure",
            "off",
            "deny",
            "audit",
            "~/",
            "65536",
            "2147483648",
        ])
        .prop_map(String::from),
    ]
}

fn annotation_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "linkerd.io/inject",
            "config.linkerd.io/proxy-cpu-request",
            "config.linkerd.io/proxy-cpu-limit",
            "config.linkerd.io/proxy-cpu-ratio-limit",
            "config.linkerd.io/proxy-memory-request",
            "config.linkerd.io/proxy-ephemeral-storage-limit",
            "config.linkerd.io/proxy-log-level",
            "config.linkerd.io/proxy-log-http-headers",
            "config.linkerd.io/admin-port",
            "config.linkerd.io/inbound-port",
            "config.linkerd.io/proxy-uid",
            "config.linkerd.io/proxy-gid",
            "config.linkerd.io/proxy-await",
            "config.linkerd.io/opaque-ports",
            "config.linkerd.io/skip-inbound-ports",
            "config.linkerd.io/proxy-outbound-connect-timeout",
            "config.linkerd.io/shutdown-grace-period",
            "config.linkerd.io/close-wait-timeout",
            "config.linkerd.io/enable-debug-sidecar",
            "config.linkerd.io/default-inbound-policy",
            "config.linkerd.io/proxy-version",
            "config.alpha.linkerd.io/proxy-wait-before-exit-seconds",
            "config.alpha.linkerd.io/proxy-enable-native-sidecar",
            "config.beta.linkerd.io/proxy-enable-native-sidecar",
        ])
        .prop_map(String::from),
        "[a-z~/.]{1,12}",
    ]
}

/// Annotations, with `linkerd.io/inject` set to something that enables
/// injection most of the time so that most cases reach the patch.
fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    let inject = prop_oneof![
        6 => Just(Some("enabled".to_owned())),
        1 => Just(Some("ingress".to_owned())),
        2 => Just(None),
        1 => text().prop_map(Some),
    ];
    (
        prop::collection::btree_map(annotation_key(), text(), 0..6),
        inject,
    )
        .prop_map(|(mut map, inject)| {
            if let Some(value) = inject {
                map.insert(INJECT.into(), value);
            }
            map
        })
}

fn container() -> impl Strategy<Value = Value> {
    let port = (any::<i32>(), prop::option::of("[a-z]{1,4}"))
        .prop_map(|(port, name)| json!({"containerPort": port, "name": name}));
    let probe = prop_oneof![
        Just(Value::Null),
        any::<i32>().prop_map(|p| json!({"httpGet": {"port": p}})),
        "[a-z]{1,4}".prop_map(|p| json!({"httpGet": {"port": p}})),
    ];
    (
        // Mostly plain containers; sometimes one that already is a proxy.
        prop_oneof![
            8 => prop::sample::select(vec!["app", "sidecar", ""]),
            1 => prop::sample::select(vec!["linkerd-proxy", "linkerd-init"]),
        ],
        prop_oneof![
            8 => Just(Some("example.com/app:1")),
            1 => Just(None),
            1 => Just(Some("cr.l5d.io/linkerd/proxy:edge-25.4.4")),
        ],
        prop::collection::vec(port, 0..3),
        probe,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(name, image, ports, probe, caps, sa)| {
            let mut c = json!({"name": name, "image": image, "ports": ports});
            if !probe.is_null() {
                c["readinessProbe"] = probe;
            }
            if caps {
                c["securityContext"] = json!({"capabilities": {"drop": ["ALL"]}});
            }
            if sa {
                c["volumeMounts"] = json!([{"name": "t", "mountPath": SERVICE_ACCOUNT_PATH}]);
            }
            c
        })
}

prop_compose! {
    fn pod_json()(
        annotations in prop::option::of(annotations()),
        labels in prop::option::of(prop::collection::btree_map("[a-z]{1,5}", "[a-z]{0,5}", 0..3)),
        namespace in prop::option::of(Just("apps")),
        has_spec in prop::bool::weighted(0.95),
        containers in prop::collection::vec(container(), 0..3),
        init_containers in prop::option::of(prop::collection::vec(container(), 0..2)),
        volumes in prop::option::of(prop::collection::vec(Just(json!({"name": "v", "emptyDir": {}})), 0..2)),
        host_network in prop::option::of(prop::bool::weighted(0.1)),
    ) -> Value {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "p", "annotations": annotations, "labels": labels, "namespace": namespace}});
        if has_spec {
            pod["spec"] = json!({"containers": containers, "initContainers": init_containers,
                "volumes": volumes, "hostNetwork": host_network});
        }
        pod
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_pod_gets_an_answer_and_every_patch_applies(
        pod in pod_json(),
        ns_annotations in annotations(),
        release in prop::sample::select(catalog::releases()),
        native in prop::sample::select(vec!["Auto", "Enabled", "Disabled"]),
        minor in 18u32..34,
        owner in prop::option::of(prop::sample::select(vec!["Deployment", "CronJob", "Job", "x/y~"])),
    ) {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        let mut fixture = Fixture::with_spec(
            &release.version.to_string(),
            &format!("proxy: {{nativeSidecar: {native}}}"),
        );
        fixture.kubernetes = KubeVersion { major: 1, minor };
        fixture.namespace = serde_json::from_value(json!({"name": "apps", "annotations": ns_annotations})).unwrap();
        fixture.owner = owner.map(|kind| Owner { kind: kind.into(), name: "o".into() });
        match fixture.decide(&pod) {
            Decision::Skip(reason) => {
                prop_assert!(!reason.to_string().is_empty());
            }
            Decision::Refuse(refusal) => {
                prop_assert!(refusal.to_string().contains("linkerd.io/"), "{}", refusal);
            }
            Decision::Inject(patch) => {
                let mut doc = serde_json::to_value(&pod).unwrap();
                let applied = json_patch::patch(&mut doc, &patch.ops());
                prop_assert!(applied.is_ok(), "{:?}: {:?}", applied, patch);
                let injected: Result<Pod, _> = serde_json::from_value(doc.clone());
                prop_assert!(injected.is_ok(), "{:?}: {doc}", injected.err());
                let spec = injected.unwrap().spec.unwrap();
                let proxies = spec.containers.iter().chain(spec.init_containers.iter().flatten())
                    .filter(|c| c.name == "linkerd-proxy").count();
                prop_assert_eq!(proxies, 1);
            }
        }
    }
}

#[test]
fn without_token_projection_the_proxy_uses_the_pods_api_token() {
    let f = Fixture::with_spec(
        "edge-26.6.3",
        "identity: {serviceAccountTokenProjection: false}",
    );
    let with_token = |automount: Option<bool>, mounted: bool| {
        let mut pod = pod();
        let spec = pod.spec.as_mut().unwrap();
        spec.automount_service_account_token = automount;
        if mounted {
            spec.volumes = Some(vec![
                serde_json::from_value(
                    json!({"name": "kube-api-access-x", "projected": {"sources": []}}),
                )
                .unwrap(),
            ]);
            spec.containers[0].volume_mounts = Some(vec![
                serde_json::from_value(json!({"name": "kube-api-access-x",
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}))
                .unwrap(),
            ]);
        }
        pod
    };
    let doc = f.injected(&with_token(None, true));
    let proxy = proxy_of(&doc);
    assert_eq!(
        env(proxy, "LINKERD2_PROXY_IDENTITY_TOKEN_FILE"),
        Some("/var/run/secrets/kubernetes.io/serviceaccount/token")
    );
    let mounts: Vec<&str> = proxy["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(
        mounts,
        [
            "/var/run/linkerd/identity/end-entity",
            "/var/run/secrets/kubernetes.io/serviceaccount"
        ]
    );
    let volumes = serde_json::to_string(&doc["spec"]["volumes"]).unwrap();
    assert!(!volumes.contains("linkerd-identity-token"), "{volumes}");
    // A pod without its API token cannot prove its identity: not injected.
    assert_eq!(
        f.skipped(&with_token(Some(false), false)),
        SkipReason::NoServiceAccountToken
    );
    assert_eq!(
        f.skipped(&with_token(None, false)),
        SkipReason::NoServiceAccountToken
    );
    // With projection (the default) such a pod is injected.
    Fixture::new("edge-26.6.3").injected(&with_token(Some(false), false));
}

#[test]
fn proxy_side_settings_become_env_vars_over_linkerds_defaults() {
    let f = Fixture::with_spec(
        "edge-26.8.3",
        "proxy: {inbound: {server: {http2: {keepAliveInterval: 30s, maxConcurrentStreams: '100'}}}, outbound: {client: {http1: {idleTimeout: 1m}}}}",
    );
    let doc = f.injected(&pod());
    let proxy = proxy_of(&doc);
    for (name, value) in [
        (
            "LINKERD2_PROXY_INBOUND_SERVER_HTTP2_KEEP_ALIVE_INTERVAL",
            "30s",
        ),
        (
            "LINKERD2_PROXY_INBOUND_SERVER_HTTP2_KEEP_ALIVE_TIMEOUT",
            "3s",
        ),
        (
            "LINKERD2_PROXY_INBOUND_SERVER_HTTP2_MAX_CONCURRENT_STREAMS",
            "100",
        ),
        ("LINKERD2_PROXY_OUTBOUND_CLIENT_HTTP1_IDLE_TIMEOUT", "1m"),
        (
            "LINKERD2_PROXY_OUTBOUND_SERVER_HTTP2_KEEP_ALIVE_TIMEOUT",
            "3s",
        ),
    ] {
        assert_eq!(env(proxy, name), Some(value), "{name}");
    }
    assert_eq!(
        crate::render::proxy::snake_case("keepAliveInterval"),
        "keep_alive_interval"
    );
    assert_eq!(crate::render::proxy::snake_case("http2"), "http2");
    assert_eq!(crate::render::proxy::snake_case("h2Window"), "h2_window");
}

#[test]
fn cni_mode_marks_pods_with_the_plugins_redirect_settings() {
    let annotation = |extra: &str| {
        let doc = Fixture::with_spec("edge-26.6.3", extra).injected(&pod());
        let inits: Vec<&str> = doc["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        (
            inits.join(","),
            doc["metadata"]["annotations"][crate::render::cni::REDIRECT_SHA256]
                .as_str()
                .map(str::to_owned),
        )
    };
    assert_eq!(
        annotation("cni: {}, proxy: {nativeSidecar: Disabled}"),
        (
            "linkerd-network-validator".to_owned(),
            Some(CNI_REDIRECT.to_owned())
        )
    );
    // Without CNI mode linkerd-init redirects, and nothing is marked.
    assert_eq!(
        annotation("proxy: {nativeSidecar: Disabled}"),
        ("linkerd-init".to_owned(), None)
    );
}

#[test]
fn containers_rendered_for_the_pod_before_are_the_ones_rendering_gives() {
    let fixture = Fixture::new("edge-26.6.3");
    let patch = |f: &Fixture, p: &Pod| match f.decide(p) {
        Decision::Inject(patch) => patch.json().to_vec(),
        other => panic!("not injected: {other:?}"),
    };
    let mut next = pod();
    next.spec.as_mut().unwrap().containers[0].image = Some("example.com/web:2".into());
    let mut tuned = pod();
    tuned.metadata.annotations = Some(
        [(
            "config.linkerd.io/proxy-cpu-request".to_owned(),
            "250m".to_owned(),
        )]
        .into(),
    );
    // Pods with their own API token volume (Kubernetes 1.21 on), which the
    // proxy mounts.
    let with_token = |random: &str| {
        let mut p = next.clone();
        let volume = format!("kube-api-access-{random}");
        let spec = p.spec.as_mut().unwrap();
        spec.containers[0].volume_mounts = Some(vec![
            serde_json::from_value(json!({"name": volume, "readOnly": true,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}))
            .unwrap(),
        ]);
        spec.volumes = Some(vec![
            serde_json::from_value(json!({"name": volume, "projected": {
                "sources": [{"serviceAccountToken": {"path": "token"}}]}}))
            .unwrap(),
        ]);
        p
    };
    let pods = [
        next.clone(),
        tuned,
        next.clone(),
        with_token("x7k2p"),
        with_token("q9z4m"),
    ];
    // On this thread each pod follows another; on a new thread, whose
    // containers were never rendered, each is rendered from nothing.
    let _ = patch(&fixture, &pod());
    let hits = super::RENDER_HITS.get();
    let followed: Vec<Vec<u8>> = pods.iter().map(|p| patch(&fixture, p)).collect();
    // `next` after `pod()` (only the image differs), and the second token
    // pod after the first (only the token's name differs) reuse them.
    assert_eq!(super::RENDER_HITS.get() - hits, 2);
    let alone: Vec<Vec<u8>> = std::thread::scope(|s| {
        pods.iter()
            .map(|p| {
                s.spawn(|| patch(&Fixture::new("edge-26.6.3"), p))
                    .join()
                    .unwrap()
            })
            .collect()
    });
    assert_eq!(followed, alone);
    let text = |i: usize| String::from_utf8_lossy(&followed[i]).into_owned();
    assert!(text(1).contains("250m") && !text(2).contains("250m"));
    assert!(text(3).contains("kube-api-access-x7k2p") && !text(3).contains("q9z4m"));
    assert!(text(4).contains("kube-api-access-q9z4m") && !text(4).contains("x7k2p"));
}
