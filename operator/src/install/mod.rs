//! Keelson's own install: namespace, CRDs, RBAC, the operator Deployment and
//! the webhook Service. Rendered here, so `manifests/` (plain YAML and the
//! Helm chart's template) come from one source and a test keeps them current.

use crate::render::object;
use serde_json::{Value, json};

pub mod rbac;
pub mod values;

/// Parameters of an install. The Helm chart renders with placeholders.
pub struct Install<'a> {
    pub namespace: &'a str,
    pub image: &'a str,
    /// A number, or the Helm template's placeholder.
    pub replicas: Value,
    /// The ControlPlanes this install may run, each with the one namespace
    /// it is granted (and handed over: the install labels it).
    pub control_planes: &'a [ControlPlaneGrant<'a>],
    /// Namespaces whose workloads DataPlanes may restart; `*` for every
    /// namespace (a ClusterRoleBinding: Keelson may then patch any
    /// workload's pod template, which is as strong as running any pod).
    pub data_plane_namespaces: &'a [&'a str],
}

/// A ControlPlane `name` and the namespace it may install Linkerd in.
#[derive(Clone, Copy, Debug)]
pub struct ControlPlaneGrant<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
}

/// The install that `manifests/keelson.yaml` holds: ControlPlane `linkerd`
/// in namespace `linkerd`, and no DataPlane namespaces.
pub const DEFAULT_CONTROL_PLANES: &[ControlPlaneGrant<'static>] = &[ControlPlaneGrant {
    name: "linkerd",
    namespace: "linkerd",
}];

/// Environment variable with the granted control-plane namespaces,
/// comma-separated (the Helm template fills it from a list).
pub const CONTROL_PLANE_NAMESPACES_ENV: &str = "KEELSON_CONTROL_PLANE_NAMESPACES";

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
    out.extend(shared_rbac(i));
    out.extend(webhook_shells(i));
    for cp in i.control_planes {
        out.extend(control_plane_namespace(i, cp));
        out.extend(control_plane_grant(i, cp));
    }
    for ns in i.data_plane_namespaces {
        out.push(restart_grant(i, ns));
    }
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

/// The RBAC every install has: the cluster-wide role, the roles bound per
/// namespace below, and the Role in Keelson's namespace.
fn shared_rbac(i: &Install<'_>) -> Vec<Value> {
    let cluster_role = |name: &str, rules: Vec<Value>| {
        object(
            rbac::RBAC_V1,
            "ClusterRole",
            i.meta(name, false),
            json!({"rules": rules}),
        )
    };
    vec![
        cluster_role(NAME, rbac::cluster_rules()),
        rbac::binding(NAME, None, "ClusterRole", NAME, i.namespace, &i.labels()),
        // Bound only inside each control-plane namespace (a RoleBinding to
        // a ClusterRole grants nothing outside the binding's namespace).
        cluster_role(rbac::CONTROL_PLANE_ROLE, rbac::control_plane_rules()),
        cluster_role(rbac::RESTART_ROLE, rbac::restart_rules()),
        object(
            rbac::RBAC_V1,
            "Role",
            i.meta(NAME, true),
            json!({"rules": rbac::own_namespace_rules()}),
        ),
        rbac::binding(
            NAME,
            Some(i.namespace),
            "Role",
            NAME,
            i.namespace,
            &i.labels(),
        ),
    ]
}

/// Empty webhook configurations for Keelson to fill: Kubernetes cannot
/// limit a create by name, so Keelson creates none, and patches these by
/// name. An empty configuration calls nothing. Their names do not depend on
/// the control plane's namespace.
fn webhook_shells(i: &Install<'_>) -> Vec<Value> {
    rbac::webhook_configurations()
        .into_iter()
        .map(|(kind, name)| {
            object(
                "admissionregistration.k8s.io/v1",
                kind,
                i.meta(&name, false),
                json!({}),
            )
        })
        .collect()
}

/// The control plane's namespace, handed over to its ControlPlane by the
/// label Keelson looks for (`controlplane::namespace`): the install is the
/// cluster admin's word that Keelson may take it. Left out of the Helm
/// chart, which cannot own a namespace that exists already.
fn control_plane_namespace(i: &Install<'_>, cp: &ControlPlaneGrant<'_>) -> Vec<Value> {
    let mut labels = i.labels();
    labels[crate::render::CONTROL_PLANE_LABEL] = cp.name.into();
    vec![object(
        "v1",
        "Namespace",
        json!({"name": cp.namespace, "labels": labels}),
        json!({}),
    )]
}

/// What a ControlPlane's namespace grants: the namespaced role there, and
/// its cluster-scoped objects by name.
fn control_plane_grant(i: &Install<'_>, cp: &ControlPlaneGrant<'_>) -> Vec<Value> {
    let name = format!("{}-{}", rbac::CONTROL_PLANE_ROLE, cp.namespace);
    vec![
        rbac::binding(
            NAME,
            Some(cp.namespace),
            "ClusterRole",
            rbac::CONTROL_PLANE_ROLE,
            i.namespace,
            &i.labels(),
        ),
        object(
            rbac::RBAC_V1,
            "ClusterRole",
            i.meta(&name, false),
            json!({"rules": rbac::control_plane_cluster_rules(cp.namespace)}),
        ),
        rbac::binding(&name, None, "ClusterRole", &name, i.namespace, &i.labels()),
    ]
}

/// Lets DataPlanes restart workloads in `namespace` (`*`: everywhere).
fn restart_grant(i: &Install<'_>, namespace: &str) -> Value {
    let scope = (namespace != "*").then_some(namespace);
    rbac::binding(
        rbac::RESTART_ROLE,
        scope,
        "ClusterRole",
        rbac::RESTART_ROLE,
        i.namespace,
        &i.labels(),
    )
}

/// Where the webhook port and the admin port may be reached from, in the
/// Helm chart's values (the API server's addresses are the cluster's: no
/// default can name them, so the chart renders this only when asked).
const WEBHOOK_FROM: &str = "__WEBHOOK_FROM__";
const METRICS_FROM: &str = "__METRICS_FROM__";

/// Ingress to Keelson's pods: webhook calls from the API server only, so
/// no workload in the cluster can send the webhooks reviews of its own
/// making; metrics from where the user says.
fn network_policy(i: &Install<'_>) -> Value {
    let port = |name: &str| json!([{"port": name, "protocol": "TCP"}]);
    object(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        i.meta(NAME, true),
        json!({"spec": {
            "podSelector": {"matchLabels": i.labels()},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": port("webhooks"), "from": WEBHOOK_FROM},
                {"ports": port("admin"), "from": METRICS_FROM},
            ],
        }}),
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
                        "imagePullPolicy": "IfNotPresent",
                        "env": [field("POD_NAMESPACE", "metadata.namespace"), field("POD_NAME", "metadata.name"),
                            {"name": CONTROL_PLANE_NAMESPACES_ENV, "value": control_plane_namespaces(i)},
                            {"name": "RUST_LOG", "value": crate::DEFAULT_LOG_FILTER}],
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

/// The granted control-plane namespaces, comma-separated.
fn control_plane_namespaces(i: &Install<'_>) -> String {
    i.control_planes
        .iter()
        .map(|cp| cp.namespace)
        .collect::<Vec<_>>()
        .join(",")
}

/// The objects as one multi-document YAML stream.
pub fn to_yaml(header: &str, objects: &[Value]) -> String {
    let mut out = String::from(header);
    for o in objects {
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(o).expect("JSON values serialize as YAML"));
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
        control_planes: DEFAULT_CONTROL_PLANES,
        data_plane_namespaces: &[],
    });
    to_yaml(
        "# Generated by `make manifests` (keelson manifests); do not edit.\n\
         # Grants ControlPlane `linkerd` the namespace `linkerd` (created and\n\
         # labelled here) and lets DataPlanes restart no workloads: add a\n\
         # RoleBinding to ClusterRole keelson-restart in each namespace they may.\n",
        &objects,
    )
}

/// Helm's range over `controlPlanes` in the chart's template.
const CP_NAME: &str = "{{ $cp.name }}";
const CP_NAMESPACE: &str = "{{ $cp.namespace }}";
const RELEASE_NAMESPACE: &str = "{{ .Release.Namespace }}";

/// The Helm chart's generated template: the same objects with Helm
/// placeholders, and the per-namespace grants in ranges over
/// `controlPlanes` and `dataPlaneNamespaces`. The namespace objects and
/// the CRDs stay out of it: Helm creates the release namespace, cannot own
/// a control-plane namespace that exists already, and CRDs go in the
/// chart's `crds/`. So do the Deployment and PodDisruptionBudget, which
/// take most of the chart's values: `templates/deployment.yaml` is written
/// by hand, and `make chart` checks that its defaults render what
/// [`plain_yaml`] has.
pub fn helm_template() -> String {
    // The Deployment, the only object with an image and replicas, is left out.
    let objects = objects(&Install {
        namespace: RELEASE_NAMESPACE,
        image: "",
        replicas: Value::Null,
        control_planes: &[],
        data_plane_namespaces: &[],
    });
    // Linkerd's validators' shells go in a block of their own: a cluster
    // where Linkerd's Helm release already made them cannot take them into
    // another release (`linkerdWebhookShells: false` there).
    let own = [
        crate::admission::configurations::VALIDATOR,
        crate::admission::configurations::INJECTOR,
    ];
    let linkerds = |o: &Value| {
        o["kind"]
            .as_str()
            .is_some_and(|k| k.ends_with("WebhookConfiguration"))
            && !own.contains(&o["metadata"]["name"].as_str().unwrap_or_default())
    };
    let (shells, kept): (Vec<Value>, Vec<Value>) = objects
        .into_iter()
        .filter(|o| {
            ![
                "Namespace",
                "CustomResourceDefinition",
                "Deployment",
                "PodDisruptionBudget",
            ]
            .contains(&o["kind"].as_str().unwrap_or_default())
        })
        .partition(linkerds);
    // Inside a range, `.` is the item: the release is reached through `$`.
    let ranged = Install {
        namespace: "{{ $.Release.Namespace }}",
        image: "",
        replicas: Value::Null,
        control_planes: &[],
        data_plane_namespaces: &[],
    };
    let grant = ControlPlaneGrant {
        name: CP_NAME,
        namespace: CP_NAMESPACE,
    };
    let mut out = to_yaml("# Generated by `make manifests`; do not edit.\n", &kept);
    out.push_str("{{- if .Values.linkerdWebhookShells }}\n");
    out.push_str(&to_yaml("", &shells));
    out.push_str("{{- end }}\n");
    out.push_str("{{- if .Values.networkPolicy.enabled }}\n");
    out.push_str(&to_yaml(
        "",
        &[network_policy(&Install {
            namespace: RELEASE_NAMESPACE,
            image: "",
            replicas: Value::Null,
            control_planes: &[],
            data_plane_namespaces: &[],
        })],
    ));
    out.push_str("{{- end }}\n");
    out.push_str("{{- range $cp := .Values.controlPlanes }}\n");
    out.push_str(&to_yaml("", &control_plane_grant(&ranged, &grant)));
    out.push_str(
        "{{- end }}\n{{- range $ns := .Values.dataPlaneNamespaces }}\n{{- if eq $ns \"*\" }}\n",
    );
    out.push_str(&to_yaml("", &[restart_grant(&ranged, "*")]));
    out.push_str("{{- else }}\n");
    out.push_str(&to_yaml("", &[restart_grant(&ranged, "{{ $ns }}")]));
    out.push_str("{{- end }}\n{{- end }}\n");
    out.replace(
        &format!("from: {WEBHOOK_FROM}"),
        "from:\n    {{- toYaml .Values.networkPolicy.webhookFrom | nindent 6 }}",
    )
    .replace(
        &format!("from: {METRICS_FROM}"),
        "from:\n    {{- toYaml .Values.networkPolicy.metricsFrom | nindent 6 }}",
    )
}

/// The CRDs for the chart's `crds/` folder.
pub fn helm_crds() -> String {
    keelson_crds::crds_yaml()
}

/// Argo CD's health check for ControlPlanes and DataPlanes
/// (`manifests/argocd/health.lua`).
pub const ARGOCD_HEALTH_LUA: &str = include_str!("../../../manifests/argocd/health.lua");

/// `manifests/argocd/argocd-cm.yaml`: the health check for both kinds, as
/// keys of Argo CD's `argocd-cm` ConfigMap (a merge patch for it).
pub fn argocd_cm() -> String {
    let mut data = serde_json::Map::new();
    for kind in ["ControlPlane", "DataPlane"] {
        data.insert(
            format!("resource.customizations.health.keelson.dev_{kind}"),
            ARGOCD_HEALTH_LUA.into(),
        );
    }
    let patch = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm", "namespace": "argocd",
            "labels": {"app.kubernetes.io/part-of": "argocd"}},
        "data": data,
    });
    to_yaml(
        "# Generated by `make manifests` from manifests/argocd/health.lua; do not edit.\n\
         # Argo CD health checks for Keelson's kinds. Merge into argocd-cm:\n\
         #   kubectl -n argocd patch configmap argocd-cm --patch-file argocd-cm.yaml\n",
        &[patch],
    )
}
