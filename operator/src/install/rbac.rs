//! Keelson's own RBAC: what its ServiceAccount may do, and nothing that
//! leads to more.
//!
//! Keelson installs Linkerd's roles. Kubernetes lets a subject create a role
//! only with permissions it holds itself (or with `escalate`), and bind one
//! only if it holds what the role grants (or with `bind`). `escalate` and
//! `bind` on every role are a straight path to cluster-admin, so Keelson
//! holds neither: it holds the permissions Linkerd's roles grant, read from
//! the renders of every catalog release, so the two cannot drift.
//!
//! The rest is split by scope:
//! - cluster-wide (`keelson`): reads, creates, Keelson's own API, Linkerd's
//!   cluster-wide grants, and writes to Keelson's own webhook configurations
//!   and to policy reports by name;
//! - per control-plane namespace granted at install: a RoleBinding there to
//!   `keelson-control-plane` (Secrets, Deployments, Services, ... and their
//!   deletes, in that namespace only), and a ClusterRole
//!   `keelson-control-plane-<namespace>` that patches and deletes that
//!   control plane's cluster-scoped objects by name;
//! - DataPlane restarts (a patch of a workload's pod template) only in the
//!   namespaces granted at install (`keelson-restart`), since patching any
//!   workload anywhere runs any pod as any ServiceAccount;
//! - Keelson's own namespace: its Lease and its Secrets.

use crate::catalog;
use crate::render::{self, object};
use keelson_crds::ControlPlane;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

pub(super) const RBAC_V1: &str = "rbac.authorization.k8s.io/v1";
/// The ClusterRole bound in each control-plane namespace.
pub const CONTROL_PLANE_ROLE: &str = "keelson-control-plane";
/// The ClusterRole that lets DataPlanes restart workloads.
pub const RESTART_ROLE: &str = "keelson-restart";

const READ: &[&str] = &["get", "list", "watch"];
const MANAGE: &[&str] = &[
    "get", "list", "watch", "create", "patch", "update", "delete",
];
/// Named objects: `create` cannot be limited by name, so it is granted
/// apart; these are the verbs `resourceNames` does limit.
const BY_NAME: &[&str] = &["get", "patch", "update", "delete"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn named(groups: &[&str], resources: &[&str], names: &[String], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "resourceNames": names, "verbs": verbs})
}

/// API group and resource of a kind Keelson renders for Linkerd
/// ([`render::resource_of`]). A kind missing there fails the footprint
/// tests, so a new one is never applied without a grant.
pub fn resource_of(kind: &str) -> Option<(&'static str, &'static str)> {
    render::resource_of(kind).map(|r| (r.group, r.plural))
}

/// What Keelson renders for a control plane in one namespace, over every
/// catalog release and the settings that add objects.
#[derive(Debug, Default)]
pub struct Footprint {
    /// Rules of Linkerd's ClusterRoles, which Keelson must hold cluster-wide.
    pub cluster_rules: Vec<Value>,
    /// Rules of Linkerd's Roles, which Keelson must hold in the namespace.
    pub namespaced_rules: Vec<Value>,
    /// Kinds of the namespaced objects, as (group, resource).
    pub namespaced: BTreeSet<(&'static str, &'static str)>,
    /// Names of the cluster-scoped objects, by (group, resource).
    pub cluster_objects: BTreeMap<(&'static str, &'static str), BTreeSet<String>>,
    /// Kinds no grant is known for (must stay empty).
    pub unknown: BTreeSet<String>,
}

/// The footprint of a control plane in `namespace`: every catalog release,
/// plain and with high availability and the Gateway API bundle, and in CNI
/// mode. The plugin's namespace is a grant of its own (an entry of the
/// install's `controlPlanes` for the same ControlPlane), so its objects are
/// counted here as if in `namespace`: the kinds and the cluster-scoped
/// names are what matter.
pub fn footprint(namespace: &str) -> Footprint {
    let mut out = Footprint::default();
    let mut cluster_rules = BTreeSet::new();
    let mut namespaced_rules = BTreeSet::new();
    for release in catalog::releases() {
        for extra in [
            json!({}),
            json!({"highAvailability": true, "installGatewayApi": true}),
            json!({"cni": {"namespace": namespace}}),
        ] {
            let mut spec = json!({"version": release.version.to_string(), "namespace": namespace});
            if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            let cp: ControlPlane = serde_json::from_value(json!({
                "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
                "metadata": {"name": "footprint"}, "spec": spec,
            }))
            .expect("a valid ControlPlane");
            let rendered = render::offline::render(&cp, None).expect("catalog releases render");
            for r in rendered {
                let o = r.object;
                let kind = o["kind"].as_str().unwrap_or_default();
                let Some(resource) = resource_of(kind) else {
                    out.unknown.insert(kind.to_owned());
                    continue;
                };
                let rules = o["rules"].as_array().cloned().unwrap_or_default();
                match kind {
                    "ClusterRole" => cluster_rules.extend(rules.iter().map(Value::to_string)),
                    "Role" => namespaced_rules.extend(rules.iter().map(Value::to_string)),
                    _ => {}
                }
                if o["metadata"]["namespace"].is_string() {
                    out.namespaced.insert(resource);
                } else {
                    let name = o["metadata"]["name"].as_str().unwrap_or_default();
                    out.cluster_objects
                        .entry(resource)
                        .or_default()
                        .insert(name.to_owned());
                }
            }
        }
    }
    let parse = |s: BTreeSet<String>| -> Vec<Value> {
        s.iter()
            .map(|r| serde_json::from_str(r).expect("rules are JSON"))
            .collect()
    };
    out.cluster_rules = parse(cluster_rules);
    out.namespaced_rules = parse(namespaced_rules);
    out
}

/// The cluster-wide rules of ClusterRole `keelson`.
pub fn cluster_rules() -> Vec<Value> {
    let own_webhooks = [
        crate::admission::configurations::INJECTOR.to_owned(),
        crate::admission::configurations::VALIDATOR.to_owned(),
    ];
    let mut rules = vec![
        rule(
            &["keelson.dev"],
            &["controlplanes", "dataplanes"],
            &["get", "list", "watch", "patch", "update"],
        ),
        rule(
            &["keelson.dev"],
            &["controlplanes/status", "dataplanes/status"],
            &["get", "patch", "update"],
        ),
        rule(&["keelson.dev"], &["controlplanes/finalizers"], &["update"]),
        // Creates cannot be limited by name; a created object is patched
        // and deleted only through the grants by name.
        rule(
            &["apiextensions.k8s.io"],
            &["customresourcedefinitions"],
            &["get", "list", "watch", "create"],
        ),
        rule(&[""], &["namespaces"], &["get", "list", "watch", "create"]),
        rule(
            &["rbac.authorization.k8s.io"],
            &["clusterroles", "clusterrolebindings"],
            &["get", "list", "watch", "create"],
        ),
        // No create: the install makes every webhook configuration Keelson
        // fills (`webhook_configurations`), and Keelson patches them by name.
        rule(
            &["admissionregistration.k8s.io"],
            &[
                "mutatingwebhookconfigurations",
                "validatingwebhookconfigurations",
            ],
            READ,
        ),
        named(
            &["admissionregistration.k8s.io"],
            &[
                "mutatingwebhookconfigurations",
                "validatingwebhookconfigurations",
            ],
            &own_webhooks,
            BY_NAME,
        ),
        // The injector and the DataPlane and policy controllers read these
        // everywhere; reading them escalates nothing.
        rule(&[""], &["pods", "configmaps", "services"], READ),
        rule(
            &["apps"],
            &["deployments", "replicasets", "statefulsets", "daemonsets"],
            READ,
        ),
        rule(&["batch"], &["jobs"], READ),
        rule(&["policy"], &["poddisruptionbudgets"], READ),
        // Policy reports: one ConfigMap of a fixed name per namespace.
        rule(&[""], &["configmaps"], &["create"]),
        named(
            &[""],
            &["configmaps"],
            &[crate::policy::report::NAME.to_owned()],
            BY_NAME,
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
                "httproutes",
            ],
            READ,
        ),
        rule(
            &["policy.linkerd.io"],
            &["servers"],
            &["get", "list", "watch", "patch"],
        ),
        rule(&["gateway.networking.k8s.io"], &["httproutes"], READ),
    ];
    // Held so that Keelson may create Linkerd's ClusterRoles without
    // `escalate`: exactly what they grant, nothing to do with Secrets or
    // workloads (a test checks).
    rules.extend(footprint("linkerd").cluster_rules);
    rules
}

/// The rules of `keelson-control-plane`, bound by a RoleBinding in each
/// control-plane namespace: the kinds Keelson renders there (and their
/// deletes, for pruning and uninstall), plus what Linkerd's Roles grant.
pub fn control_plane_rules() -> Vec<Value> {
    let print = footprint("linkerd");
    let mut by_group: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (group, resource) in &print.namespaced {
        by_group.entry(group).or_default().insert(resource);
    }
    let mut rules: Vec<Value> = by_group
        .into_iter()
        .map(|(group, resources)| {
            rule(&[group], &resources.into_iter().collect::<Vec<_>>(), MANAGE)
        })
        .collect();
    rules.extend(print.namespaced_rules);
    rules
}

/// The rules of `keelson-control-plane-<namespace>`: that control plane's
/// cluster-scoped objects, by name. CustomResourceDefinitions are never
/// deleted (that would delete every object of their kind).
pub fn control_plane_cluster_rules(namespace: &str) -> Vec<Value> {
    let mut objects = footprint(namespace).cluster_objects;
    // What a takeover of a Linkerd installed there removes: its injector's
    // RBAC and registration (`controlplane::adoption`).
    for o in crate::controlplane::adoption::linkerd_injector_objects(namespace)
        .into_iter()
        .filter(|o| o["metadata"]["namespace"].is_null())
        .chain([serde_json::json!({
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": crate::controlplane::adoption::LINKERD_INJECTOR_WEBHOOK},
        })])
    {
        if let Some(resource) = resource_of(o["kind"].as_str().unwrap_or_default()) {
            objects.entry(resource).or_default().insert(
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    objects
        .into_iter()
        .map(|((group, resource), names)| {
            let names: Vec<String> = names.into_iter().collect();
            let verbs: &[&str] = if resource == "customresourcedefinitions" {
                &["get", "patch", "update"]
            } else {
                BY_NAME
            };
            named(&[group], &[resource], &names, verbs)
        })
        .collect()
}

/// The webhook configurations Keelson fills: its own two, and Linkerd's
/// validators of every catalog release, as `(kind, name)`.
pub fn webhook_configurations() -> Vec<(&'static str, String)> {
    let mut out = vec![
        (
            "ValidatingWebhookConfiguration",
            crate::admission::configurations::VALIDATOR.to_owned(),
        ),
        (
            "MutatingWebhookConfiguration",
            crate::admission::configurations::INJECTOR.to_owned(),
        ),
    ];
    let print = footprint("linkerd");
    for (kind, resource) in [
        (
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
        (
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
    ] {
        if let Some(names) = print
            .cluster_objects
            .get(&("admissionregistration.k8s.io", resource))
        {
            out.extend(names.iter().map(|n| (kind, n.clone())));
        }
    }
    out
}

/// DataPlane restarts patch a workload's pod template.
pub fn restart_rules() -> Vec<Value> {
    vec![rule(
        &["apps"],
        &["deployments", "statefulsets", "daemonsets"],
        &["patch"],
    )]
}

/// Keelson's own namespace: its leader Lease (by name where Kubernetes
/// allows: a create cannot name its object) and its Secrets (the webhook
/// CA, the managed trust anchors).
pub fn own_namespace_rules() -> Vec<Value> {
    vec![
        rule(&["coordination.k8s.io"], &["leases"], &["create"]),
        named(
            &["coordination.k8s.io"],
            &["leases"],
            &[crate::leader::lease::LEASE_NAME.to_owned()],
            &["get", "update"],
        ),
        rule(&[""], &["secrets"], MANAGE),
    ]
}

/// A binding of Keelson's ServiceAccount to `role_kind` `role`, named
/// `name`, in `namespace` (a RoleBinding) or cluster-wide.
pub(super) fn binding(
    name: &str,
    namespace: Option<&str>,
    role_kind: &str,
    role: &str,
    subject_namespace: &str,
    labels: &Value,
) -> Value {
    let mut meta = json!({"name": name, "labels": labels});
    let kind = match namespace {
        Some(ns) => {
            meta["namespace"] = ns.into();
            "RoleBinding"
        }
        None => "ClusterRoleBinding",
    };
    object(
        RBAC_V1,
        kind,
        meta,
        json!({
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": super::NAME, "namespace": subject_namespace}],
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (group, resource, verb) a set of rules grants, with the names
    /// it is limited to (empty: any name).
    fn grants(rules: &[Value]) -> Vec<(String, String, String, Vec<String>)> {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for r in rules {
            let names = strings(&r["resourceNames"]);
            for g in strings(&r["apiGroups"]) {
                for res in strings(&r["resources"]) {
                    for v in strings(&r["verbs"]) {
                        out.push((g.clone(), res.clone(), v, names.clone()));
                    }
                }
            }
        }
        out
    }

    /// Grants that lead to cluster-admin when held cluster-wide: taking
    /// over roles, reading tokens, running pods as any ServiceAccount, or
    /// impersonating.
    fn escalating(g: &(String, String, String, Vec<String>)) -> bool {
        let (group, resource, verb, names) = (g.0.as_str(), g.1.as_str(), g.2.as_str(), &g.3);
        let wildcard = group == "*" || resource == "*" || verb == "*";
        let escalate = matches!(verb, "escalate" | "bind" | "impersonate");
        let secrets = resource == "secrets" || resource == "serviceaccounts/token";
        let workloads = matches!(
            resource,
            "pods"
                | "deployments"
                | "statefulsets"
                | "daemonsets"
                | "replicasets"
                | "jobs"
                | "cronjobs"
                | "replicationcontrollers"
        ) && !matches!(verb, "get" | "list" | "watch");
        // Creating a webhook configuration is an indirect path: a webhook
        // on RBAC objects could rewrite the next binding an admin creates.
        let webhook_create = verb == "create"
            && matches!(
                resource,
                "mutatingwebhookconfigurations" | "validatingwebhookconfigurations"
            );
        let unnamed_write = names.is_empty()
            && matches!(verb, "patch" | "update" | "delete" | "deletecollection")
            && matches!(
                resource,
                "clusterroles"
                    | "clusterrolebindings"
                    | "mutatingwebhookconfigurations"
                    | "validatingwebhookconfigurations"
                    | "customresourcedefinitions"
                    | "namespaces"
                    | "configmaps"
            );
        wildcard || escalate || secrets || workloads || webhook_create || unnamed_write
    }

    #[test]
    fn every_rendered_kind_has_a_grant() {
        for ns in ["linkerd", "mesh"] {
            let print = footprint(ns);
            assert!(print.unknown.is_empty(), "no grant for {:?}", print.unknown);
            assert!(print.namespaced.contains(&("", "secrets")));
            assert!(
                print.cluster_objects[&("rbac.authorization.k8s.io", "clusterroles")]
                    .contains(&format!("linkerd-{ns}-destination"))
            );
        }
    }

    #[test]
    fn nothing_held_cluster_wide_leads_to_cluster_admin() {
        let found: Vec<_> = grants(&cluster_rules())
            .into_iter()
            .filter(escalating)
            .collect();
        assert!(
            found.is_empty(),
            "escalating cluster-wide grants: {found:?}"
        );
        // The same check does catch what Keelson used to hold.
        let old = [rule(
            &["rbac.authorization.k8s.io"],
            &["clusterroles"],
            &["escalate", "bind"],
        )];
        assert_eq!(grants(&old).iter().filter(|g| escalating(g)).count(), 2);
        let webhooks = [rule(
            &["admissionregistration.k8s.io"],
            &["mutatingwebhookconfigurations"],
            &["create"],
        )];
        assert!(grants(&webhooks).iter().all(escalating));
        let secrets = [rule(&[""], &["secrets"], &["get"])];
        assert!(grants(&secrets).iter().all(escalating));
    }

    #[test]
    fn keelson_holds_what_linkerds_cluster_roles_grant() {
        let held = grants(&cluster_rules());
        for g in grants(&footprint("linkerd").cluster_rules) {
            assert!(
                held.contains(&g),
                "Linkerd grants {g:?}, which Keelson does not hold"
            );
        }
    }

    #[test]
    fn per_namespace_grants_name_their_objects() {
        let rules = control_plane_cluster_rules("mesh");
        let all = grants(&rules);
        assert!(
            all.iter().all(|g| !g.3.is_empty()),
            "a grant without names: {all:?}"
        );
        assert!(
            all.iter()
                .any(|g| g.1 == "namespaces" && g.2 == "delete" && g.3 == ["mesh"])
        );
        assert!(
            !all.iter()
                .any(|g| g.1 == "customresourcedefinitions" && g.2 == "delete"),
            "CRDs are never deleted"
        );
        assert!(all.iter().any(|g| g.1 == "clusterroles"
            && g.2 == "patch"
            && g.3.contains(&"linkerd-mesh-identity".to_owned())));
        // The namespaced role covers the Secrets and Deployments Keelson
        // renders, and Linkerd's remote-discovery grant.
        let local = grants(&control_plane_rules());
        for (res, verb) in [
            ("secrets", "delete"),
            ("deployments", "create"),
            ("roles", "create"),
        ] {
            assert!(
                local.iter().any(|g| g.1 == res && g.2 == verb),
                "{res} {verb}"
            );
        }
    }
}
