//! What the identity and destination Deployments have in common: the
//! Deployment around the pod, the controller containers, HA anti-affinity and
//! PodDisruptionBudgets.

use super::{Context, Scope, object, proxy};
use crate::catalog::{Feature, KubeVersion};
use serde_json::{Map, Value, json};

/// UID of Linkerd's controller containers (`controllerUID`).
const CONTROLLER_UID: u16 = 2103;

/// One control-plane Deployment.
pub(super) struct Workload<'a> {
    /// `identity` or `destination`: the component label value.
    pub component: &'a str,
    /// Containers in the chart's order, the proxy among them unless it is
    /// a native sidecar.
    pub containers: Vec<Value>,
    /// The proxy as a native sidecar, started after `linkerd-init`.
    pub native_proxy: Option<Value>,
    /// The component's own volumes; the proxy's follow them.
    pub volumes: Vec<Value>,
    /// Pod annotations that come before the common ones.
    pub leading_annotations: Vec<(&'a str, String)>,
}

impl Workload<'_> {
    fn name(&self) -> String {
        format!("linkerd-{}", self.component)
    }
}

/// The Deployment, and in HA its PodDisruptionBudget (named as the chart
/// names it).
pub(super) fn objects(ctx: &Context<'_>, w: Workload<'_>, pdb_name: &str) -> Vec<Value> {
    let mut out = Vec::new();
    if ctx.ha() {
        out.push(pdb(ctx, pdb_name, w.component));
    }
    out.push(deployment(ctx, w));
    out
}

fn deployment(ctx: &Context<'_>, w: Workload<'_>) -> Value {
    let name = w.name();
    let version = ctx.version();
    let mut meta = ctx.meta(
        &name,
        Scope::Namespaced { created_by: true },
        Some(w.component),
    );
    let labels = meta["labels"].as_object_mut().expect("labels object");
    labels.insert("app.kubernetes.io/name".into(), w.component.into());
    labels.insert("app.kubernetes.io/part-of".into(), "Linkerd".into());
    labels.insert("app.kubernetes.io/version".into(), version.clone().into());

    let selector = json!({
        "linkerd.io/control-plane-component": w.component,
        "linkerd.io/control-plane-ns": ctx.ns(),
        "linkerd.io/proxy-deployment": name,
    });
    let mut pod_labels = selector.clone();
    pod_labels["linkerd.io/workload-ns"] = ctx.ns().into();

    let mut annotations = Map::new();
    for (k, v) in w.leading_annotations {
        annotations.insert(k.into(), v.into());
    }
    for (k, v) in [
        ("linkerd.io/created-by", ctx.created_by()),
        ("linkerd.io/proxy-version", version),
        (
            "cluster-autoscaler.kubernetes.io/safe-to-evict",
            "true".into(),
        ),
        (
            proxy::TRUST_ROOT_SHA256,
            // Of the bundle as `linkerd-config` holds it, as the injector
            // hashes it for every other pod.
            proxy::trust_root_sha256(&ctx.identity.trust_anchors_pem),
        ),
        (
            "config.linkerd.io/default-inbound-policy",
            "all-unauthenticated".into(),
        ),
    ] {
        annotations.insert(k.into(), v.into());
    }

    let mut volumes = w.volumes;
    volumes.extend(proxy::pod_volumes(
        ctx.spec.cni.is_some(),
        ctx.spec.identity.service_account_token_projection,
    ));
    let mut init_containers = vec![proxy::init_container(ctx)];
    init_containers.extend(w.native_proxy);
    let mut pod_spec = json!({
        "automountServiceAccountToken": false,
        "containers": w.containers,
        "initContainers": init_containers,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "serviceAccountName": name,
        "volumes": volumes,
    });
    if ctx.ha() {
        pod_spec["affinity"] = anti_affinity(w.component);
    }
    let max_unavailable: Value = if ctx.ha() { 1.into() } else { "25%".into() };
    object(
        "apps/v1",
        "Deployment",
        meta,
        json!({"spec": {
            "replicas": if ctx.ha() { 3 } else { 1 },
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": selector},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": max_unavailable}},
            "template": {
                "metadata": {"annotations": annotations, "labels": pod_labels},
                "spec": pod_spec,
            },
        }}),
    )
}

/// Spread replicas over nodes (required) and zones (preferred).
fn anti_affinity(component: &str) -> Value {
    let selector = json!({"matchExpressions": [{
        "key": "linkerd.io/control-plane-component", "operator": "In", "values": [component],
    }]});
    json!({"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"podAffinityTerm": {
            "labelSelector": selector, "topologyKey": "topology.kubernetes.io/zone",
        }, "weight": 100}],
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": selector, "topologyKey": "kubernetes.io/hostname",
        }],
    }})
}

fn pdb(ctx: &Context<'_>, name: &str, component: &str) -> Value {
    // policy/v1 arrived in Kubernetes 1.21; older (test) clusters get v1beta1.
    let api_version = if ctx.kubernetes
        < (KubeVersion {
            major: 1,
            minor: 21,
        }) {
        "policy/v1beta1"
    } else {
        "policy/v1"
    };
    object(
        api_version,
        "PodDisruptionBudget",
        ctx.meta(
            name,
            Scope::Namespaced { created_by: true },
            Some(component),
        ),
        json!({"spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"linkerd.io/control-plane-component": component}},
        }}),
    )
}

/// A controller container (identity, destination, sp-validator, policy).
pub(super) struct Controller<'a> {
    pub name: &'a str,
    pub image: &'a str,
    /// Set where the image's entrypoint is not the controller (policy in 2.19+).
    pub command: Option<&'a str>,
    pub args: Vec<String>,
    pub env: Vec<Value>,
    pub ports: Vec<(String, u16)>,
    pub liveness: Value,
    pub readiness: Value,
    pub resources: Option<Value>,
    pub mounts: Vec<Value>,
}

pub(super) fn controller_container(c: Controller<'_>) -> Value {
    let ports: Vec<Value> = c
        .ports
        .iter()
        // Explicit protocol, as for Service ports (see `services::service`).
        .map(|(name, port)| json!({"containerPort": port, "name": name, "protocol": "TCP"}))
        .collect();
    let mut out = json!({
        "args": c.args,
        "image": c.image,
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": c.liveness,
        "name": c.name,
        "ports": ports,
        "readinessProbe": c.readiness,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": CONTROLLER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": c.mounts,
    });
    if let Some(cmd) = c.command {
        out["command"] = json!([cmd]);
    }
    if !c.env.is_empty() {
        out["env"] = c.env.into();
    }
    if let Some(r) = c.resources {
        out["resources"] = r;
    }
    out
}

/// Liveness `/ping` and readiness `/ready` on an admin port, as the Go
/// controllers serve them.
pub(super) fn admin_probes(port: impl Into<Value>, liveness_path: &str) -> (Value, Value) {
    let port = port.into();
    (
        json!({"httpGet": {"path": liveness_path, "port": port}, "initialDelaySeconds": 10, "timeoutSeconds": 1}),
        json!({"failureThreshold": 7, "httpGet": {"path": "/ready", "port": port}, "timeoutSeconds": 1}),
    )
}

impl Context<'_> {
    /// A container port name: 2.19 made them unique per pod (`ident-grpc`),
    /// earlier releases share `grpc` and `admin-http`.
    pub(super) fn port_name(&self, shared: &str, unique: &str) -> String {
        if self.release.has(Feature::UniquePortNames) {
            unique.into()
        } else {
            shared.into()
        }
    }

    /// Controller resources in HA (`controllerResources`); none otherwise.
    pub(super) fn controller_resources(&self, memory_request: &str) -> Option<Value> {
        self.ha().then(|| {
            json!({"limits": {"memory": "250Mi"}, "requests": {"cpu": "100m", "memory": memory_request}})
        })
    }
}
