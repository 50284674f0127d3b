//! Fuzzes the admission server's handler with proptest: random bodies and
//! valid pod reviews with random parts replaced. Whatever arrives, the
//! handler answers (200 with a review for the same uid, or 400 for a body
//! that is no review at all) and never panics; a patch it returns applies
//! cleanly to the pod it was given and leaves a valid pod.
//! The handler is called directly, so a panic fails the test.

use bytes::Bytes;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use keelson_crds::ControlPlane;
use keelson_operator::admission::Admission;
use keelson_operator::admission::injector::{Caches, Injector, store_of};
use keelson_operator::catalog::KubeVersion;
use keelson_webhooks::Handler;
use kube::core::PartialObjectMeta;
use proptest::prelude::*;
use serde_json::{Value, json};

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn admission() -> Admission {
    let (notices, _) = tokio::sync::mpsc::channel(1);
    let caches = Caches {
        control_planes: store_of([from::<ControlPlane>(json!({
            "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
            "metadata": {"name": "linkerd"},
            "spec": {"version": "edge-25.10.7", "namespace": "linkerd"},
            "status": {"currentVersion": "edge-25.10.7"},
        }))]),
        data_planes: store_of([]),
        namespaces: store_of([from::<PartialObjectMeta<Namespace>>(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "apps", "annotations": {"linkerd.io/inject": "enabled"}},
        }))]),
        replica_sets: store_of([]),
        config_maps: store_of([from::<ConfigMap>(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "linkerd-identity-trust-roots", "namespace": "linkerd"},
            "data": {"ca-bundle.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
        }))]),
    };
    let injector = Injector {
        caches,
        kubernetes: KubeVersion::try_from("1.30".to_owned()).unwrap(),
        keelson_namespace: "keelson".into(),
        notices,
        client: None,
        memo: Default::default(),
    };
    Admission::new(injector, Default::default())
}

fn pod_review(pod: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "fuzz-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE", "namespace": "apps", "userInfo": {},
            "object": pod,
        },
    })
}

fn base_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"},
            "annotations": {"config.linkerd.io/proxy-cpu-request": "100m"}},
        "spec": {"containers": [{"name": "web", "image": "example.com/web:1",
            "ports": [{"containerPort": 8080}]}]},
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "enabled",
            "disabled",
            "ingress",
            "8080",
            "-1",
            "linkerd-proxy",
            "true"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z./-]{1,24}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON pointers into a pod worth breaking.
const PLACES: &[&str] = &[
    "/metadata/annotations/linkerd.io~1inject",
    "/metadata/annotations/config.linkerd.io~1proxy-cpu-request",
    "/metadata/annotations/config.linkerd.io~1skip-inbound-ports",
    "/metadata/annotations/config.linkerd.io~1opaque-ports",
    "/metadata/annotations/config.alpha.linkerd.io~1proxy-enable-native-sidecar",
    "/metadata/labels",
    "/metadata/ownerReferences",
    "/spec/containers",
    "/spec/containers/0/ports",
    "/spec/initContainers",
    "/spec/hostNetwork",
    "/spec/volumes",
    "/metadata",
    "/spec",
];

async fn answer(admission: &Admission, body: Vec<u8>) -> (u16, Option<Value>) {
    answer_at(admission, "/inject", body).await
}

async fn answer_at(admission: &Admission, path: &str, body: Vec<u8>) -> (u16, Option<Value>) {
    let request = http::Request::post(path).body(Bytes::from(body)).unwrap();
    let response = admission.handle(request).await;
    let status = response.status().as_u16();
    (status, serde_json::from_slice(response.body()).ok())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_body_gets_a_clean_answer(body in prop::collection::vec(any::<u8>(), 0..512), value in json_value()) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let admission = admission();
        for body in [body, serde_json::to_vec(&value).unwrap()] {
            let (status, _) = rt.block_on(answer(&admission, body));
            prop_assert!(status == 200 || status == 400, "status {status}");
        }
    }

    #[test]
    fn a_broken_pod_is_answered_under_its_uid(
        place in prop::sample::select(PLACES),
        value in json_value(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut pod = base_pod();
        // Set the value, creating the parent object where it is missing.
        let (parent, key) = place.rsplit_once('/').unwrap();
        if pod.pointer(parent).is_some_and(|p| !p.is_object())
            && let Some(slot) = pod.pointer_mut(parent)
        {
            *slot = json!({});
        }
        if let Some(Value::Object(map)) = pod.pointer_mut(parent) {
            map.insert(key.replace("~1", "/"), value);
        }
        let (status, review) = rt.block_on(answer(&admission(), serde_json::to_vec(&pod_review(pod.clone())).unwrap()));
        // Only a pod whose metadata is not object metadata at all (which the
        // API server never sends) leaves no uid to answer under.
        let readable = serde_json::from_value::<Pod>(pod.clone()).is_ok()
            || serde_json::from_value::<kube::core::DynamicObject>(pod.clone()).is_ok();
        prop_assert_eq!(status, if readable { 200 } else { 400 });
        if !readable {
            return Ok(());
        }
        let review = review.unwrap();
        prop_assert_eq!(&review["response"]["uid"], "fuzz-1");
        if let Some(patch) = review["response"]["patch"].as_str() {
            prop_assert_eq!(review["response"]["allowed"].as_bool(), Some(true));
            let bytes = k8s_openapi::ByteString(Vec::new());
            let decoded: k8s_openapi::ByteString = serde_json::from_value(json!(patch)).unwrap_or(bytes);
            let ops: json_patch::Patch = serde_json::from_slice(&decoded.0).unwrap();
            let mut patched = pod.clone();
            json_patch::patch(&mut patched, &ops).unwrap();
            let typed: Result<Pod, _> = serde_json::from_value(patched);
            prop_assert!(typed.is_ok(), "the patched pod is no longer a pod: {:?}", typed.err());
        }
    }

    /// Keelson's own objects through the validator, with durations and
    /// numbers that overflow, go negative or are not numbers at all: always
    /// an answer, and a denial names the field.
    #[test]
    fn keelson_objects_with_hostile_numbers_are_answered(
        place in prop::sample::select(KEELSON_PLACES),
        value in hostile_number(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (kind, path, field) = place;
        let mut object = match kind {
            "ControlPlane" => json!({
                "apiVersion": "keelson.dev/v1alpha1", "kind": kind,
                "metadata": {"name": "linkerd"},
                "spec": {"version": "edge-25.10.7"},
            }),
            _ => json!({
                "apiVersion": "keelson.dev/v1alpha1", "kind": kind,
                "metadata": {"name": "apps", "namespace": "apps"}, "spec": {},
            }),
        };
        let mut at = &mut object;
        for key in path {
            at = at.as_object_mut().unwrap().entry(*key).or_insert_with(|| json!({}));
        }
        *at = value.clone();
        let review = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "fuzz-2",
                "kind": {"group": "keelson.dev", "version": "v1alpha1", "kind": kind},
                "resource": {"group": "keelson.dev", "version": "v1alpha1", "resource": "x"},
                "operation": "CREATE", "userInfo": {}, "object": object,
            },
        });
        let (status, review) = rt.block_on(answer_at(&admission(), "/validate", serde_json::to_vec(&review).unwrap()));
        prop_assert_eq!(status, 200);
        let response = &review.unwrap()["response"];
        prop_assert_eq!(&response["uid"], "fuzz-2");
        if response["allowed"] == false {
            let message = response["status"]["message"].as_str().unwrap_or_default();
            prop_assert!(message.contains(field), "{value}: {message}");
            prop_assert!(message.len() < 1024, "{} bytes", message.len());
        }
    }
}

/// Where Keelson's kinds hold durations and numbers, with the field a
/// denial must name.
const KEELSON_PLACES: &[(&str, &[&str], &str)] = &[
    (
        "DataPlane",
        &["spec", "rollout", "interval"],
        "spec.rollout.interval",
    ),
    (
        "DataPlane",
        &["spec", "rollout", "progressDeadline"],
        "spec.rollout.progressDeadline",
    ),
    (
        "DataPlane",
        &["spec", "rollout", "batchSize"],
        "spec.rollout.batchSize",
    ),
    (
        "DataPlane",
        &["spec", "rollout", "maxUnavailable"],
        "spec.rollout.maxUnavailable",
    ),
    (
        "ControlPlane",
        &["spec", "upgrade", "healthDeadline"],
        "spec.upgrade.healthDeadline",
    ),
    (
        "ControlPlane",
        &["spec", "identity", "issuerLifetime"],
        "spec.identity.issuerLifetime",
    ),
    (
        "ControlPlane",
        &["spec", "identity", "issuanceLifetime"],
        "spec.identity.issuanceLifetime",
    ),
    (
        "ControlPlane",
        &["spec", "identity", "rotation", "renewAtPercent"],
        "spec.identity.rotation.renewAtPercent",
    ),
];

/// Numbers and durations past every bound, as JSON numbers and as text.
fn hostile_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        (
            any::<u64>(),
            prop::sample::select(vec!["ns", "us", "ms", "s", "m", "h", "d", ""]),
            any::<bool>()
        )
            .prop_map(|(n, unit, negative)| json!(format!(
                "{}{n}{unit}",
                if negative { "-" } else { "" }
            ))),
        "[0-9]{15,40}(\\.[0-9]{0,30})?(h|m|s|ms)".prop_map(Value::String),
        "[-+.0-9a-z]{0,24}".prop_map(Value::String),
    ]
}
