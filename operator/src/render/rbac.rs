//! ServiceAccounts and RBAC of the identity and destination components, as
//! Linkerd's chart grants them (`config-rbac.yaml`, `destination-rbac.yaml`,
//! `identity-rbac.yaml`), without the heartbeat and the proxy injector, which
//! Keelson does not run.

use super::{Context, Scope, object};
use serde_json::{Value, json};

const RBAC_V1: &str = "rbac.authorization.k8s.io/v1";

/// Verbs of read-only access, in the order `destination-rbac.yaml` writes
/// them for the destination controller...
const LIST_GET_WATCH: &[&str] = &["list", "get", "watch"];
/// ...and for the policy controller.
const GET_LIST_WATCH: &[&str] = &["get", "list", "watch"];

/// One RBAC policy rule.
fn rule(api_groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": api_groups, "resources": resources, "verbs": verbs})
}

/// A component's ServiceAccount, `linkerd-<component>`. No token automount
/// setting: the pods opt out themselves and mount the API token by hand.
fn service_account(ctx: &Context<'_>, component: &str) -> Value {
    let name = format!("linkerd-{component}");
    object(
        "v1",
        "ServiceAccount",
        ctx.meta(
            &name,
            Scope::Namespaced { created_by: false },
            Some(component),
        ),
        json!({}),
    )
}

/// A role granted to a component's ServiceAccount (`linkerd-<component>`).
struct Grant<'a> {
    /// `Cluster` for a ClusterRole and ClusterRoleBinding, otherwise a Role
    /// and RoleBinding in the control-plane namespace.
    scope: Scope,
    component: &'a str,
    role: &'a str,
    binding: &'a str,
    /// The policy controller's RBAC also carries `app.kubernetes.io/part-of:
    /// Linkerd` in the chart; the older grants do not.
    part_of_linkerd: bool,
    rules: Vec<Value>,
}

impl Grant<'_> {
    /// The role and its binding, in that order.
    fn objects(self, ctx: &Context<'_>) -> [Value; 2] {
        let (role_kind, binding_kind) = match self.scope {
            Scope::Cluster => ("ClusterRole", "ClusterRoleBinding"),
            Scope::Namespaced { .. } => ("Role", "RoleBinding"),
        };
        let meta = |name: &str| {
            let mut meta = ctx.meta(name, self.scope, Some(self.component));
            if self.part_of_linkerd {
                meta["labels"]["app.kubernetes.io/part-of"] = "Linkerd".into();
            }
            meta
        };
        let role = object(
            RBAC_V1,
            role_kind,
            meta(self.role),
            json!({"rules": self.rules}),
        );
        let binding = object(
            RBAC_V1,
            binding_kind,
            meta(self.binding),
            json!({
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": role_kind,
                    "name": self.role,
                },
                "subjects": [{
                    "kind": "ServiceAccount",
                    "name": format!("linkerd-{}", self.component),
                    "namespace": ctx.ns(),
                }],
            }),
        );
        [role, binding]
    }
}

/// Lets extensions read `linkerd-config`; the chart binds it to nobody
/// itself (extensions, or 2.19's optional `configReaders`, do).
fn config_reader(ctx: &Context<'_>) -> Value {
    object(
        RBAC_V1,
        "Role",
        ctx.meta(
            "ext-namespace-metadata-linkerd-config",
            Scope::Namespaced { created_by: true },
            None,
        ),
        json!({"rules": [{
            "apiGroups": [""],
            "resources": ["configmaps"],
            "verbs": ["get"],
            "resourceNames": ["linkerd-config"],
        }]}),
    )
}

/// Discovery of endpoints, profiles and workloads cluster-wide, plus the
/// EndpointSlice writes the chart grants with `enableEndpointSlices` (always
/// on in Keelson) and the leases of leader election.
fn destination_discovery(ctx: &Context<'_>) -> [Value; 2] {
    let name = format!("linkerd-{}-destination", ctx.ns());
    Grant {
        scope: Scope::Cluster,
        component: "destination",
        role: &name,
        binding: &name,
        part_of_linkerd: false,
        rules: vec![
            rule(&["apps"], &["replicasets"], LIST_GET_WATCH),
            rule(&["batch"], &["jobs"], LIST_GET_WATCH),
            rule(
                &[""],
                &["pods", "endpoints", "services", "nodes"],
                LIST_GET_WATCH,
            ),
            rule(&["linkerd.io"], &["serviceprofiles"], LIST_GET_WATCH),
            rule(
                &["workload.linkerd.io"],
                &["externalworkloads"],
                LIST_GET_WATCH,
            ),
            rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["create", "get", "update", "patch"],
            ),
            rule(
                &["discovery.k8s.io"],
                &["endpointslices"],
                &[
                    "list", "get", "watch", "create", "update", "patch", "delete",
                ],
            ),
        ],
    }
    .objects(ctx)
}

/// The policy controller (a container of the destination pod): it reads
/// policy and route resources and writes their status. The chart names this
/// ClusterRole and its binding without the namespace, so they are singletons
/// in the cluster: a second control plane would claim the same two objects.
fn policy_controller(ctx: &Context<'_>) -> [Value; 2] {
    const ROUTES: &[&str] = &["httproutes", "grpcroutes", "tlsroutes", "tcproutes"];
    const ROUTE_STATUSES: &[&str] = &[
        "httproutes/status",
        "grpcroutes/status",
        "tlsroutes/status",
        "tcproutes/status",
    ];
    Grant {
        scope: Scope::Cluster,
        component: "destination",
        role: "linkerd-policy",
        binding: "linkerd-destination-policy",
        part_of_linkerd: true,
        rules: vec![
            rule(&[""], &["pods"], GET_LIST_WATCH),
            rule(&["apps"], &["deployments"], &["get"]),
            rule(
                &["policy.linkerd.io"],
                &[
                    "authorizationpolicies",
                    "httplocalratelimitpolicies",
                    "httproutes",
                    "meshtlsauthentications",
                    "networkauthentications",
                    "servers",
                    "serverauthorizations",
                    "egressnetworks",
                ],
                GET_LIST_WATCH,
            ),
            rule(&["gateway.networking.k8s.io"], ROUTES, GET_LIST_WATCH),
            rule(
                &["policy.linkerd.io"],
                &[
                    "httproutes/status",
                    "httplocalratelimitpolicies/status",
                    "egressnetworks/status",
                ],
                &["patch"],
            ),
            rule(&["gateway.networking.k8s.io"], ROUTE_STATUSES, &["patch"]),
            rule(
                &["workload.linkerd.io"],
                &["externalworkloads"],
                GET_LIST_WATCH,
            ),
            rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["create", "get", "patch"],
            ),
        ],
    }
    .objects(ctx)
}

/// Read access to Secrets in the control-plane namespace, where multicluster
/// links keep the kubeconfigs of remote clusters.
fn remote_discovery(ctx: &Context<'_>) -> [Value; 2] {
    Grant {
        scope: Scope::Namespaced { created_by: false },
        component: "destination",
        role: "remote-discovery",
        binding: "linkerd-destination-remote-discovery",
        part_of_linkerd: true,
        rules: vec![rule(&[""], &["secrets"], GET_LIST_WATCH)],
    }
    .objects(ctx)
}

/// Identity validates the ServiceAccount tokens proxies present and records
/// events about its issuer.
fn identity(ctx: &Context<'_>) -> [Value; 2] {
    let name = format!("linkerd-{}-identity", ctx.ns());
    Grant {
        scope: Scope::Cluster,
        component: "identity",
        role: &name,
        binding: &name,
        part_of_linkerd: false,
        rules: vec![
            rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            rule(&[""], &["events"], &["create", "patch"]),
        ],
    }
    .objects(ctx)
}

/// The RBAC objects and ServiceAccounts, in the chart's template order.
pub(super) fn objects(ctx: &Context<'_>) -> Vec<Value> {
    let mut out = vec![config_reader(ctx)];
    out.extend(destination_discovery(ctx));
    out.push(service_account(ctx, "destination"));
    out.extend(policy_controller(ctx));
    out.extend(remote_discovery(ctx));
    out.extend(identity(ctx));
    out.push(service_account(ctx, "identity"));
    out
}

#[cfg(test)]
mod tests {
    use super::objects;
    use crate::render::testutil::{assert_owned, find, test_context};
    use serde_json::json;

    #[test]
    fn objects_come_in_template_order() {
        let ctx = test_context("version: edge-25.4.4");
        let kinds_and_names: Vec<_> = objects(&ctx)
            .iter()
            .map(|o| {
                format!(
                    "{} {}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            kinds_and_names,
            [
                "Role ext-namespace-metadata-linkerd-config",
                "ClusterRole linkerd-linkerd-destination",
                "ClusterRoleBinding linkerd-linkerd-destination",
                "ServiceAccount linkerd-destination",
                "ClusterRole linkerd-policy",
                "ClusterRoleBinding linkerd-destination-policy",
                "Role remote-discovery",
                "RoleBinding linkerd-destination-remote-discovery",
                "ClusterRole linkerd-linkerd-identity",
                "ClusterRoleBinding linkerd-linkerd-identity",
                "ServiceAccount linkerd-identity",
            ]
        );
    }

    #[test]
    fn every_object_is_labelled_and_namespaced_in_the_control_plane() {
        let ctx = test_context("version: edge-25.4.4\nnamespace: mesh");
        let objs = objects(&ctx);
        assert_owned(&ctx, &objs);
        for o in &objs {
            let api_version = if o["kind"] == "ServiceAccount" {
                "v1"
            } else {
                "rbac.authorization.k8s.io/v1"
            };
            assert_eq!(o["apiVersion"], api_version, "{o}");
            let cluster_scoped = o["kind"].as_str().unwrap().starts_with("Cluster");
            assert_eq!(
                o["metadata"].get("namespace").is_none(),
                cluster_scoped,
                "{o}"
            );
        }
        // Namespaced by name where the chart does it, and only there.
        assert!(find(&objs, "ClusterRole", "linkerd-mesh-destination").is_some());
        assert!(find(&objs, "ClusterRole", "linkerd-mesh-identity").is_some());
    }

    #[test]
    fn policy_cluster_role_is_shared_and_patches_gateway_route_status() {
        let ctx = test_context("version: edge-25.4.4\nnamespace: mesh");
        let objs = objects(&ctx);
        let role = find(&objs, "ClusterRole", "linkerd-policy").expect("linkerd-policy");
        assert_eq!(
            role["metadata"]["labels"]["app.kubernetes.io/part-of"],
            "Linkerd"
        );
        assert!(
            role["rules"].as_array().unwrap().contains(&json!({
                "apiGroups": ["gateway.networking.k8s.io"],
                "resources": ["httproutes/status", "grpcroutes/status", "tlsroutes/status", "tcproutes/status"],
                "verbs": ["patch"],
            })),
            "{role}"
        );
        let binding = find(&objs, "ClusterRoleBinding", "linkerd-destination-policy").unwrap();
        assert_eq!(binding["roleRef"]["name"], "linkerd-policy");
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "linkerd-destination", "namespace": "mesh"}])
        );
    }

    #[test]
    fn bindings_name_their_role_and_component_service_account() {
        let ctx = test_context("version: edge-25.4.4");
        let objs = objects(&ctx);
        for (binding_kind, binding, role_kind, role, sa) in [
            (
                "ClusterRoleBinding",
                "linkerd-linkerd-destination",
                "ClusterRole",
                "linkerd-linkerd-destination",
                "linkerd-destination",
            ),
            (
                "RoleBinding",
                "linkerd-destination-remote-discovery",
                "Role",
                "remote-discovery",
                "linkerd-destination",
            ),
            (
                "ClusterRoleBinding",
                "linkerd-linkerd-identity",
                "ClusterRole",
                "linkerd-linkerd-identity",
                "linkerd-identity",
            ),
        ] {
            let b = find(&objs, binding_kind, binding).expect(binding);
            assert_eq!(
                b["roleRef"],
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role})
            );
            assert_eq!(b["subjects"][0]["name"], sa, "{b}");
            assert!(find(&objs, role_kind, role).is_some(), "{role}");
            assert!(find(&objs, "ServiceAccount", sa).is_some(), "{sa}");
        }
    }

    #[test]
    fn only_the_policy_grants_are_part_of_linkerd() {
        let ctx = test_context("version: edge-25.4.4");
        for o in objects(&ctx) {
            let name = o["metadata"]["name"].as_str().unwrap();
            let part_of = o["metadata"]["labels"].get("app.kubernetes.io/part-of");
            let expected = [
                "linkerd-policy",
                "linkerd-destination-policy",
                "remote-discovery",
                "linkerd-destination-remote-discovery",
            ]
            .contains(&name);
            assert_eq!(part_of.is_some(), expected, "{name}");
        }
    }

    #[test]
    fn config_reader_is_annotated_and_limited_to_linkerd_config() {
        let ctx = test_context("version: edge-25.4.4");
        let objs = objects(&ctx);
        let role = find(&objs, "Role", "ext-namespace-metadata-linkerd-config").unwrap();
        assert_eq!(
            role["metadata"]["annotations"]["linkerd.io/created-by"],
            ctx.created_by()
        );
        assert!(
            role["metadata"]["labels"]
                .get("linkerd.io/control-plane-component")
                .is_none()
        );
        assert_eq!(role["rules"][0]["resourceNames"], json!(["linkerd-config"]));
        assert_eq!(role["rules"][0]["verbs"], json!(["get"]));
        // Nothing else the chart renders here carries created-by.
        let annotated = objects(&ctx)
            .iter()
            .filter(|o| o["metadata"].get("annotations").is_some())
            .count();
        assert_eq!(annotated, 1);
    }
}
