//! Pure rendering: a ControlPlane spec, its catalog release and its identity
//! material in, the Kubernetes objects Linkerd's chart would produce for the
//! same values out (minus the proxy injector, which Keelson replaces).
//!
//! Nothing here does I/O or reads the clock, so every output is reproducible
//! and checked against golden files (`operator/tests/golden/`).

pub mod cni;
mod config;
pub mod crds;
mod destination;
mod identity;
pub mod offline;
mod yaml11;
pub use proxy::TRUST_ROOTS_SHA256;
pub(crate) mod proxy;
mod rbac;
mod services;
#[cfg(test)]
mod testutil;
mod webhooks;
mod workload;

use crate::catalog::{KubeVersion, Release};
use keelson_crds::ControlPlaneSpec;
use serde_json::{Map, Value, json};

pub(crate) use identity::go_duration;

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The mesh identity the control plane is rendered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityMaterial {
    /// Trust anchors, PEM, as `linkerd-config`'s `identityTrustAnchorsPEM`
    /// holds them: what `linkerd.io/trust-root-sha256` digests. Keelson's
    /// own bundles are trimmed; an adopted one keeps its text as installed.
    pub trust_anchors_pem: String,
    /// The issuer certificate and key (`linkerd.io/tls` scheme); `None` when an
    /// external issuer maintains the `linkerd-identity-issuer` Secret.
    pub issuer: Option<TlsPair>,
}

/// Serving certificates of Linkerd's validating webhooks. Each is
/// self-signed and doubles as its webhook's CA bundle, as in Linkerd's chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTls {
    pub sp_validator: TlsPair,
    pub policy_validator: TlsPair,
}

/// Where an object goes in an ordered install or upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Linkerd's CustomResourceDefinitions, established before anything
    /// else is applied: the components watch their kinds from the start.
    Crds,
    /// CNI mode's plugin (its namespace, RBAC, ConfigMap and DaemonSet):
    /// before the control plane, whose pods need it on their node.
    Cni,
    /// Namespace, RBAC, ConfigMaps, Secrets, Services: what the components need.
    Base,
    /// The identity Deployment, gated on availability before destination.
    Identity,
    /// The destination Deployment, gated on availability.
    Destination,
    /// Validating webhooks, registered once their server can answer.
    Webhooks,
}

/// One rendered object and its stage.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub stage: Stage,
    pub object: Value,
}

/// Everything a control plane is rendered from.
pub struct Context<'a> {
    /// Name of the ControlPlane object, recorded in a label on every object so
    /// Keelson can find (and prune) what it installed.
    pub name: &'a str,
    pub spec: &'a ControlPlaneSpec,
    pub release: &'a Release,
    /// Version of the target cluster, for API versions that changed.
    pub kubernetes: KubeVersion,
    pub identity: &'a IdentityMaterial,
    pub webhooks: &'a WebhookTls,
}

/// Label naming the ControlPlane an object belongs to.
pub const CONTROL_PLANE_LABEL: &str = "keelson.dev/control-plane";

/// The objects of a control plane, in apply order.
pub fn render(ctx: &Context<'_>) -> Vec<Rendered> {
    render_counting(ctx).0
}

/// The objects of a control plane, in apply order, and how many validation
/// facts of its CRDs the cluster's API server cannot take
/// ([`crds::omitted_facts`]), from the same rendering.
pub fn render_counting(ctx: &Context<'_>) -> (Vec<Rendered>, usize) {
    let mut out = Vec::new();
    let mut add = |stage, objects: Vec<Value>| {
        out.extend(objects.into_iter().map(|object| Rendered { stage, object }));
    };
    let (crds, omitted) = crds::objects_counting(ctx);
    add(Stage::Crds, crds);
    add(Stage::Cni, cni::objects(ctx));
    add(Stage::Base, vec![namespace(ctx.name, ctx.spec)]);
    add(Stage::Base, rbac::objects(ctx));
    add(Stage::Base, config::objects(ctx));
    add(Stage::Base, identity::base(ctx));
    add(Stage::Base, services::objects(ctx));
    add(Stage::Base, webhooks::secrets(ctx));
    add(Stage::Identity, identity::workload(ctx));
    add(Stage::Destination, destination::workload(ctx));
    add(Stage::Webhooks, webhooks::configurations(ctx));
    (out, omitted)
}

impl Context<'_> {
    pub fn ns(&self) -> &str {
        &self.spec.namespace
    }

    pub fn version(&self) -> String {
        self.release.version.to_string()
    }

    pub fn trust_domain(&self) -> &str {
        self.spec.trust_domain()
    }

    pub fn cluster_domain(&self) -> &str {
        &self.spec.cluster_domain
    }

    pub fn ha(&self) -> bool {
        self.spec.high_availability
    }

    pub fn failure_policy(&self) -> &'static str {
        failure_policy(self.spec)
    }

    /// Value of the `linkerd.io/created-by` annotation.
    pub fn created_by(&self) -> String {
        proxy::created_by()
    }

    /// The labels Linkerd's chart puts on a component's objects, plus Keelson's
    /// ownership label.
    pub fn labels(&self, component: Option<&str>) -> Map<String, Value> {
        labels(self.name, self.ns(), component)
    }

    /// An object's `metadata`: namespaced or not, with the component labels
    /// and, where the chart has it, the created-by annotation.
    pub fn meta(&self, name: &str, scope: Scope, component: Option<&str>) -> Value {
        let mut meta = json!({"name": name, "labels": self.labels(component)});
        if let Scope::Namespaced { created_by } = scope {
            meta["namespace"] = self.ns().into();
            if created_by {
                meta["annotations"] = json!({"linkerd.io/created-by": self.created_by()});
            }
        }
        meta
    }
}

/// Where an object lives, and whether the chart annotates it with its creator.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    Cluster,
    Namespaced { created_by: bool },
}

/// Webhook failure policy: `Fail` in HA, `Ignore` otherwise, unless the spec
/// says. Linkerd's validators and Keelson's injector follow it alike.
pub fn failure_policy(spec: &ControlPlaneSpec) -> &'static str {
    use keelson_crds::controlplane::FailurePolicy;
    match spec.webhook.failure_policy {
        Some(FailurePolicy::Fail) => "Fail",
        Some(FailurePolicy::Ignore) => "Ignore",
        None if spec.high_availability => "Fail",
        None => "Ignore",
    }
}

/// Builds an object from its type, metadata and the rest of its fields.
pub fn object(api_version: &str, kind: &str, metadata: Value, body: Value) -> Value {
    let mut obj = json!({"apiVersion": api_version, "kind": kind, "metadata": metadata});
    if let Value::Object(fields) = body {
        obj.as_object_mut()
            .expect("built as an object")
            .extend(fields);
    }
    obj
}

/// Where the API serves a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

/// The API resource of every kind Keelson renders for Linkerd (or removes
/// on a takeover): one table for applying them (`apply`) and for the
/// install's grants (`install::rbac`).
pub fn resource_of(kind: &str) -> Option<Resource> {
    let (group, plural, namespaced) = match kind {
        "Namespace" => ("", "namespaces", false),
        "ConfigMap" => ("", "configmaps", true),
        "Secret" => ("", "secrets", true),
        "Service" => ("", "services", true),
        "ServiceAccount" => ("", "serviceaccounts", true),
        "Deployment" => ("apps", "deployments", true),
        "DaemonSet" => ("apps", "daemonsets", true),
        "CronJob" => ("batch", "cronjobs", true),
        "PodDisruptionBudget" => ("policy", "poddisruptionbudgets", true),
        "Role" => ("rbac.authorization.k8s.io", "roles", true),
        "RoleBinding" => ("rbac.authorization.k8s.io", "rolebindings", true),
        "ClusterRole" => ("rbac.authorization.k8s.io", "clusterroles", false),
        "ClusterRoleBinding" => ("rbac.authorization.k8s.io", "clusterrolebindings", false),
        "ValidatingWebhookConfiguration" => (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            false,
        ),
        "MutatingWebhookConfiguration" => (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            false,
        ),
        "CustomResourceDefinition" => ("apiextensions.k8s.io", "customresourcedefinitions", false),
        _ => return None,
    };
    Some(Resource {
        group,
        plural,
        namespaced,
    })
}

/// Base64 for Secret `data`, as the API expects.
pub fn b64(s: &str) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec())).expect("bytes serialize")
}

/// The control plane's namespace, labelled as `linkerd install` labels it.
/// Needs no identity material, so it can be applied before any is made.
pub fn namespace(cp_name: &str, spec: &ControlPlaneSpec) -> Value {
    let mut labels = labels(cp_name, &spec.namespace, None);
    labels.insert(
        "config.linkerd.io/admission-webhooks".into(),
        "disabled".into(),
    );
    labels.insert("linkerd.io/is-control-plane".into(), "true".into());
    // linkerd-init needs NET_ADMIN and NET_RAW; in CNI mode nothing in the
    // namespace does, and it is `restricted` as in Linkerd's chart.
    let level = if spec.cni.is_some() {
        "restricted"
    } else {
        "privileged"
    };
    labels.insert("pod-security.kubernetes.io/enforce".into(), level.into());
    object(
        "v1",
        "Namespace",
        json!({
            "name": spec.namespace,
            "labels": labels,
            "annotations": {"linkerd.io/inject": "disabled"},
        }),
        json!({}),
    )
}

/// Component and control-plane labels, and Keelson's ownership label.
fn labels(cp_name: &str, namespace: &str, component: Option<&str>) -> Map<String, Value> {
    let mut labels = Map::new();
    if let Some(c) = component {
        labels.insert("linkerd.io/control-plane-component".into(), c.into());
    }
    labels.insert(proxy::CONTROL_PLANE_NS.into(), namespace.into());
    labels.insert(CONTROL_PLANE_LABEL.into(), cp_name.into());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testutil::test_context;

    /// 2.20's chart makes destination's proxy a native sidecar (identity's
    /// never); Keelson does so where the API server keeps the sidecar's
    /// `restartPolicy` (1.29 on), and `linkerd-config` says what it did.
    #[test]
    fn native_sidecars_by_default_from_2_20_where_kubernetes_has_them() {
        for (version, minor, native) in [
            ("edge-25.10.7", 37, false),
            ("edge-26.6.3", 20, false),
            ("edge-26.6.3", 28, false),
            ("edge-26.6.3", 29, true),
            ("edge-26.8.3", 31, true),
        ] {
            let ctx = Context {
                kubernetes: KubeVersion { major: 1, minor },
                ..test_context(&format!("version: {version}"))
            };
            let objects: Vec<Value> = render(&ctx).into_iter().map(|r| r.object).collect();
            let pod = |name: &str| {
                objects
                    .iter()
                    .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == name)
                    .map(|d| d["spec"]["template"]["spec"].clone())
                    .unwrap()
            };
            let proxy_in = |spec: &Value, list: &str| {
                spec[list]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["name"] == "linkerd-proxy")
            };
            let at = format!("{version} at 1.{minor}");
            let destination = pod("linkerd-destination");
            assert_eq!(proxy_in(&destination, "initContainers"), native, "{at}");
            assert_eq!(proxy_in(&destination, "containers"), !native, "{at}");
            let identity = pod("linkerd-identity");
            assert!(proxy_in(&identity, "containers"), "{at}");
            let config = objects
                .iter()
                .find(|o| o["metadata"]["name"] == "linkerd-config")
                .unwrap();
            let values: Value =
                yaml_serde::from_str(config["data"]["values"].as_str().unwrap()).unwrap();
            assert_eq!(values["proxy"]["nativeSidecar"], native, "{at}");
        }
    }

    /// Linkerd's chart renders the same objects whatever the cluster's
    /// version (it asks nothing of `.Capabilities`); Keelson's renders
    /// differ between minors only where the API server does: PDBs are
    /// policy/v1beta1 before 1.21, CRDs drop empty defaults before 1.22 and
    /// CEL rules before 1.25.
    #[test]
    fn a_render_changes_between_kubernetes_minors_only_where_the_api_server_does() {
        let spec = "version: edge-25.10.7\nhighAvailability: true\ninstallGatewayApi: true";
        let at = |minor| {
            let ctx = Context {
                kubernetes: KubeVersion { major: 1, minor },
                ..test_context(spec)
            };
            render(&ctx)
                .into_iter()
                .map(|r| r.object)
                .collect::<Vec<_>>()
        };
        let newest = at(37);
        let rest = |objects: &[Value]| -> Vec<Value> {
            objects
                .iter()
                .filter(|o| {
                    o["kind"] != "PodDisruptionBudget" && o["kind"] != "CustomResourceDefinition"
                })
                .cloned()
                .collect()
        };
        for minor in 20..=37 {
            let objects = at(minor);
            assert_eq!(rest(&objects), rest(&newest), "1.{minor}");
            let pdbs: Vec<_> = objects
                .iter()
                .filter(|o| o["kind"] == "PodDisruptionBudget")
                .map(|o| o["apiVersion"].as_str().unwrap())
                .collect();
            let want = if minor < 21 {
                "policy/v1beta1"
            } else {
                "policy/v1"
            };
            assert!(
                !pdbs.is_empty() && pdbs.iter().all(|v| *v == want),
                "1.{minor}: {pdbs:?}"
            );
            let crds = serde_json::to_string(
                &objects
                    .iter()
                    .filter(|o| o["kind"] == "CustomResourceDefinition")
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            assert_eq!(
                crds.contains("x-kubernetes-validations"),
                minor >= 25,
                "1.{minor}"
            );
            assert_eq!(crds.contains(r#""default":"""#), minor >= 22, "1.{minor}");
            if minor >= 25 {
                let newest_crds: Vec<_> = newest
                    .iter()
                    .filter(|o| o["kind"] == "CustomResourceDefinition")
                    .collect();
                let these: Vec<_> = objects
                    .iter()
                    .filter(|o| o["kind"] == "CustomResourceDefinition")
                    .collect();
                assert_eq!(these, newest_crds, "1.{minor}");
            }
        }
    }
}
