//! Keelson's own install: namespace, CRDs, RBAC, the operator Deployment and
//! the webhook Service. Rendered here, so `manifests/` (plain YAML and the
//! Helm chart's template) come from one source and a test keeps them current.

use crate::render::object;
use serde_json::{Value, json};

/// Parameters of an install. The Helm chart renders with placeholders.
pub struct Install<'a> {
    pub namespace: &'a str,
    pub image: &'a str,
    /// A number, or the Helm template's placeholder.
    pub replicas: Value,
}

pub const NAME: &str = "keelson";
const WEBHOOK_PORT: u16 = 9443;
const ADMIN_PORT: u16 = 9990;
/// A non-root user the distroless base image also uses.
const UID: i64 = 65532;

impl Install<'_> {
    fn labels(&self) -> Value {
        json!({"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": NAME})
    }

    fn meta(&self, name: &str, namespaced: bool) -> Value {
        let mut meta = json!({"name": name, "labels": self.labels()});
        if namespaced {
            meta["namespace"] = self.namespace.into();
        }
        meta
    }
}

/// The install, in apply order.
pub fn objects(i: &Install<'_>) -> Vec<Value> {
    let mut out = vec![object(
        "v1",
        "Namespace",
        json!({"name": i.namespace, "labels": {
            "app.kubernetes.io/part-of": NAME,
            // The injector never calls back into its own namespace, so the
            // operator can always restart, whatever the failure policy.
            "config.linkerd.io/admission-webhooks": "disabled",
        }, "annotations": {"linkerd.io/inject": "disabled"}}),
        json!({}),
    )];
    out.extend(
        keelson_crds::crds()
            .into_iter()
            .map(|crd| serde_json::to_value(crd).expect("CRDs serialize")),
    );
    out.push(object(
        "v1",
        "ServiceAccount",
        i.meta(NAME, true),
        json!({}),
    ));
    out.push(object(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        i.meta(NAME, false),
        json!({"rules": rules()}),
    ));
    out.push(binding(i, "ClusterRole"));
    // Leader election: a Role in Keelson's namespace, scoped to the one
    // Lease where Kubernetes allows it (a create cannot name its object).
    out.push(object(
        "rbac.authorization.k8s.io/v1",
        "Role",
        i.meta(NAME, true),
        json!({"rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": [crate::leader::lease::LEASE_NAME], "verbs": ["get", "update"]},
        ]}),
    ));
    out.push(binding(i, "Role"));
    out.push(deployment(i));
    // Voluntary disruptions (node drains) take one replica at a time, so
    // the webhooks keep answering; never blocks a drain, even at 1 replica.
    // policy/v1 needs Kubernetes 1.21.
    out.push(object(
        "policy/v1",
        "PodDisruptionBudget",
        i.meta(NAME, true),
        json!({"spec": {"maxUnavailable": 1, "selector": {"matchLabels": i.labels()}}}),
    ));
    out.push(object(
        "v1",
        "Service",
        i.meta("keelson-webhook", true),
        json!({"spec": {
            "selector": i.labels(),
            "ports": [{"name": "webhooks", "port": 443, "targetPort": "webhooks", "protocol": "TCP"}],
        }}),
    ));
    out
}

/// The least the operator needs, no wildcards. `escalate` and `bind` on
/// RBAC objects let it install Linkerd's roles without holding every
/// permission they grant.
fn rules() -> Value {
    const READ: [&str; 3] = ["get", "list", "watch"];
    const MANAGE: [&str; 6] = ["get", "list", "watch", "create", "patch", "delete"];
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| json!({"apiGroups": groups, "resources": resources, "verbs": verbs});
    json!([
        rule(
            &["keelson.dev"],
            &["controlplanes", "dataplanes"],
            &["get", "list", "watch", "patch", "update"]
        ),
        rule(
            &["keelson.dev"],
            &["controlplanes/status", "dataplanes/status"],
            &["get", "patch", "update"]
        ),
        rule(&["keelson.dev"], &["controlplanes/finalizers"], &["update"]),
        // Linkerd's CRDs are created and upgraded, never deleted (that would
        // delete users' policy objects).
        rule(
            &["apiextensions.k8s.io"],
            &["customresourcedefinitions"],
            &["get", "list", "watch", "create", "patch"]
        ),
        rule(
            &[""],
            &[
                "namespaces",
                "configmaps",
                "secrets",
                "services",
                "serviceaccounts"
            ],
            &MANAGE
        ),
        rule(&[""], &["pods"], &READ),
        rule(&["apps"], &["deployments"], &MANAGE),
        rule(&["apps"], &["replicasets"], &READ),
        // A Job's pods are labelled with its CronJob, as Linkerd does.
        rule(&["batch"], &["jobs"], &["get"]),
        rule(
            &["apps"],
            &["statefulsets", "daemonsets"],
            &["get", "list", "watch", "patch"]
        ),
        rule(&["policy"], &["poddisruptionbudgets"], &MANAGE),
        rule(
            &["rbac.authorization.k8s.io"],
            &[
                "clusterroles",
                "clusterrolebindings",
                "roles",
                "rolebindings"
            ],
            &[
                "get", "list", "watch", "create", "patch", "delete", "escalate", "bind"
            ],
        ),
        rule(
            &["admissionregistration.k8s.io"],
            &[
                "mutatingwebhookconfigurations",
                "validatingwebhookconfigurations"
            ],
            &MANAGE,
        ),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        // Policy checks read every policy kind; audit-first rollouts patch
        // Servers (annotations and spec.accessPolicy).
        rule(
            &["policy.linkerd.io"],
            &[
                "authorizationpolicies",
                "meshtlsauthentications",
                "networkauthentications",
                "httproutes"
            ],
            &READ
        ),
        rule(
            &["policy.linkerd.io"],
            &["servers"],
            &["get", "list", "watch", "patch"]
        ),
        rule(&["gateway.networking.k8s.io"], &["httproutes"], &READ),
    ])
}

/// Binds Keelson's ServiceAccount to its `ClusterRole` or its `Role` (in
/// Keelson's namespace), both named after it.
fn binding(i: &Install<'_>, role_kind: &str) -> Value {
    object(
        "rbac.authorization.k8s.io/v1",
        &format!("{role_kind}Binding"),
        i.meta(NAME, role_kind == "Role"),
        json!({
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": i.namespace}],
        }),
    )
}

fn deployment(i: &Install<'_>) -> Value {
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    object(
        "apps/v1",
        "Deployment",
        i.meta(NAME, true),
        json!({"spec": {
            // Every replica serves the webhooks; the Lease holder reconciles.
            "replicas": i.replicas.clone(),
            "selector": {"matchLabels": i.labels()},
            "template": {
                "metadata": {"labels": i.labels()},
                "spec": {
                    "serviceAccountName": NAME,
                    // Replicas on different nodes, so one node's loss leaves
                    // a webhook server and a standby leader.
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {"labelSelector": {"matchLabels": i.labels()},
                            "topologyKey": "kubernetes.io/hostname"},
                    }]}},
                    // Within it: the reconcilers drain (20 s), then the lease
                    // is handed back.
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": UID, "runAsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": NAME,
                        "image": i.image,
                        "args": ["run", "--log-format", "json",
                            "--webhook-listen", format!("0.0.0.0:{WEBHOOK_PORT}"),
                            "--admin-listen", format!("0.0.0.0:{ADMIN_PORT}")],
                        "env": [field("POD_NAMESPACE", "metadata.namespace"), field("POD_NAME", "metadata.name")],
                        "ports": [
                            {"name": "webhooks", "containerPort": WEBHOOK_PORT, "protocol": "TCP"},
                            {"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
                        ],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "webhooks", "scheme": "HTTPS"}},
                        "livenessProbe": {"httpGet": {"path": "/live", "port": "admin"}},
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            },
        }}),
    )
}

/// The objects as one multi-document YAML stream.
pub fn to_yaml(header: &str, objects: &[Value]) -> String {
    let mut out = String::from(header);
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(o).expect("JSON values serialize as YAML"));
    }
    out
}

/// `manifests/keelson.yaml`: the plain install, namespace `keelson`.
pub fn plain_yaml() -> String {
    let image = format!("ghcr.io/keelson-dev/keelson:{}", env!("CARGO_PKG_VERSION"));
    let objects = objects(&Install {
        namespace: NAME,
        image: &image,
        replicas: 2.into(),
    });
    to_yaml(
        "# Generated by `make manifests` (keelson manifests); do not edit.\n",
        &objects,
    )
}

/// The Helm chart's template: the same objects with Helm placeholders.
/// The namespace object and the CRDs stay out of it: Helm creates the
/// release namespace, and CRDs go in the chart's `crds/` folder.
pub fn helm_template() -> String {
    let objects = objects(&Install {
        namespace: "{{ .Release.Namespace }}",
        image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}",
        replicas: "{{ .Values.replicas }}".into(),
    });
    let kept: Vec<Value> = objects
        .into_iter()
        .filter(|o| o["kind"] != "Namespace" && o["kind"] != "CustomResourceDefinition")
        .collect();
    // YAML quotes the placeholder; Helm must see a bare number.
    to_yaml("# Generated by `make manifests`; do not edit.\n", &kept).replace(
        "replicas: '{{ .Values.replicas }}'",
        "replicas: {{ .Values.replicas }}",
    )
}

/// The CRDs for the chart's `crds/` folder.
pub fn helm_crds() -> String {
    keelson_crds::crds_yaml()
}
