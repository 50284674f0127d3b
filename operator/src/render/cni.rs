//! Linkerd's CNI plugin, as the `linkerd2-cni` chart renders it
//! (`templates/cni-plugin.yaml`) for the values a ControlPlane's `spec.cni`
//! sets: its namespace, ServiceAccount, read-only RBAC, the ConfigMap with
//! the CNI network configuration every node gets, and the DaemonSet that
//! installs the plugin on every node. The repair controller and Pod
//! Security Policies (both off in the chart's defaults) are not rendered.

use super::{CONTROL_PLANE_LABEL, Context, object};
use crate::catalog::Release;
use keelson_crds::controlplane::{CniSpec, IptablesMode};
use serde_json::{Map, Value, json};

/// Name of the ServiceAccount, RBAC and DaemonSet.
pub const NAME: &str = "linkerd-cni";
/// The ConfigMap the DaemonSet's pods read.
const CONFIG: &str = "linkerd-cni-config";
/// Annotation on the DaemonSet: the Linkerd release it was rendered for.
pub const LINKERD_VERSION: &str = "keelson.dev/linkerd-version";
/// The label every object of the chart carries.
const RESOURCE_LABEL: &str = "linkerd.io/cni-resource";
/// Annotation on the DaemonSet's pod template, and on every pod the
/// injector meshes in CNI mode: the [`redirect_sha256`] of the settings the
/// plugin sets a pod up with.
pub const REDIRECT_SHA256: &str = "keelson.dev/cni-redirect-sha256";
/// Annotation on the DaemonSet's pod template: SHA-256 of the ConfigMap's
/// data. The plugin's pods read the configuration once, from environment
/// variables, so a changed ConfigMap reaches the nodes only through a
/// restart of the DaemonSet, which this starts (Linkerd's chart has no such
/// annotation: a `helm upgrade` that changes the settings changes no node).
pub const CONFIG_SHA256: &str = "keelson.dev/cni-config-sha256";
/// The first release whose CNI configuration has no `policy` block
/// (linkerd2#13407): the plugin stopped reading it.
const WITHOUT_POLICY_BLOCK_SINCE: &str = "edge-25.1.1";

/// The objects of CNI mode, in the chart's order after the namespace;
/// none when `spec.cni` is unset.
pub(super) fn objects(ctx: &Context<'_>) -> Vec<Value> {
    let Some(cni) = &ctx.spec.cni else {
        return Vec::new();
    };
    vec![
        namespace(ctx.name, cni),
        service_account(ctx, cni),
        cluster_role(ctx),
        cluster_role_binding(ctx, cni),
        config_map(ctx, cni),
        daemon_set(ctx, cni),
    ]
}

fn labels(ctx: &Context<'_>) -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert(RESOURCE_LABEL.into(), "true".into());
    labels.insert(CONTROL_PLANE_LABEL.into(), ctx.name.into());
    labels
}

fn meta(ctx: &Context<'_>, name: &str, namespace: Option<&str>) -> Value {
    let mut meta = json!({"name": name, "labels": labels(ctx)});
    if let Some(ns) = namespace {
        meta["namespace"] = ns.into();
    }
    meta
}

/// The plugin's namespace, labelled as `linkerd install-cni` labels it:
/// privileged (the DaemonSet writes to the node), no admission webhooks.
fn namespace(cp_name: &str, cni: &CniSpec) -> Value {
    object(
        "v1",
        "Namespace",
        json!({
            "name": cni.namespace,
            "labels": {
                RESOURCE_LABEL: "true",
                "config.linkerd.io/admission-webhooks": "disabled",
                "pod-security.kubernetes.io/enforce": "privileged",
                CONTROL_PLANE_LABEL: cp_name,
            },
        }),
        json!({}),
    )
}

fn service_account(ctx: &Context<'_>, cni: &CniSpec) -> Value {
    object(
        "v1",
        "ServiceAccount",
        meta(ctx, NAME, Some(&cni.namespace)),
        json!({}),
    )
}

/// Read-only access to what the plugin looks up for a pod it sets up.
fn cluster_role(ctx: &Context<'_>) -> Value {
    object(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        meta(ctx, NAME, None),
        json!({"rules": [{
            "apiGroups": [""],
            "resources": ["pods", "nodes", "namespaces", "services"],
            "verbs": ["list", "get", "watch"],
        }]}),
    )
}

fn cluster_role_binding(ctx: &Context<'_>, cni: &CniSpec) -> Value {
    object(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        meta(ctx, NAME, None),
        json!({
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": cni.namespace}],
        }),
    )
}

/// The plugin's iptables variant: the spec's, or the release's.
fn iptables_mode(release: &Release, cni: &CniSpec) -> String {
    match cni.iptables_mode {
        Some(IptablesMode::Legacy) => "legacy".into(),
        Some(IptablesMode::Nft) => "nft".into(),
        None => release.iptables_mode.clone(),
    }
}

/// A comma-separated port list as the chart's `splitStringList` writes it:
/// each entry a JSON string.
fn port_list(ports: &str) -> Vec<Value> {
    ports
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(Value::from)
        .collect()
}

/// The network configuration's `linkerd` block: how the plugin redirects a
/// new pod's traffic. The proxy's ports and UID are Linkerd's defaults, as
/// Keelson's proxies use.
fn redirect(release: &Release, cni: &CniSpec) -> Map<String, Value> {
    let mut ignore_inbound = vec![Value::from("4191"), Value::from("4190")];
    ignore_inbound.extend(port_list(&cni.ignore_inbound_ports));
    let mut linkerd = Map::new();
    linkerd.insert("incoming-proxy-port".into(), 4143.into());
    linkerd.insert("outgoing-proxy-port".into(), 4140.into());
    linkerd.insert("proxy-uid".into(), super::proxy::PROXY_UID.into());
    linkerd.insert("ports-to-redirect".into(), json!([]));
    linkerd.insert("inbound-ports-to-ignore".into(), ignore_inbound.into());
    if !cni.ignore_outbound_ports.is_empty() {
        linkerd.insert(
            "outbound-ports-to-ignore".into(),
            port_list(&cni.ignore_outbound_ports).into(),
        );
    }
    linkerd.insert("simulate".into(), false.into());
    linkerd.insert("use-wait-flag".into(), false.into());
    linkerd.insert("iptables-mode".into(), iptables_mode(release, cni).into());
    linkerd.insert("ipv6".into(), false.into());
    linkerd
}

/// SHA-256 (hex) of the settings the plugin of `release` sets a new pod up
/// with in CNI mode `cni`: what a pod needs a restart for when it changes.
/// The log level and the node's directories are not among them.
pub fn redirect_sha256(release: &Release, cni: &CniSpec) -> String {
    let text = serde_json::to_string(&redirect(release, cni)).expect("JSON serializes");
    super::proxy::sha256_hex(text.as_bytes())
}

/// The CNI network configuration (`cni_network_config`), with the
/// placeholders the plugin's install script fills in on each node.
fn network_config(ctx: &Context<'_>, cni: &CniSpec) -> String {
    let mut config = Map::new();
    config.insert("name".into(), NAME.into());
    config.insert("type".into(), "linkerd-cni".into());
    config.insert("log_level".into(), cni.log_level.clone().into());
    if !ctx.release.since(WITHOUT_POLICY_BLOCK_SINCE) {
        config.insert(
            "policy".into(),
            json!({
                "type": "k8s",
                "k8s_api_root": "https://__KUBERNETES_SERVICE_HOST__:__KUBERNETES_SERVICE_PORT__",
                "k8s_auth_token": "__SERVICEACCOUNT_TOKEN__",
            }),
        );
    }
    config.insert(
        "kubernetes".into(),
        json!({"kubeconfig": "__KUBECONFIG_FILEPATH__"}),
    );
    config.insert("linkerd".into(), redirect(ctx.release, cni).into());
    serde_json::to_string_pretty(&Value::Object(config)).expect("JSON serializes")
}

fn config_data(ctx: &Context<'_>, cni: &CniSpec) -> Value {
    json!({
        "dest_cni_net_dir": cni.conf_dir,
        "dest_cni_bin_dir": cni.bin_dir,
        "cni_network_config": network_config(ctx, cni),
    })
}

fn config_map(ctx: &Context<'_>, cni: &CniSpec) -> Value {
    object(
        "v1",
        "ConfigMap",
        meta(ctx, CONFIG, Some(&cni.namespace)),
        json!({"data": config_data(ctx, cni)}),
    )
}

/// The DaemonSet: `install-cni` copies the plugin and its configuration
/// onto the node, then sleeps.
fn daemon_set(ctx: &Context<'_>, cni: &CniSpec) -> Value {
    let from_config = |name: &str, key: &str| json!({"name": name, "valueFrom": {"configMapKeyRef": {"name": CONFIG, "key": key}}});
    // One volume when both directories are the same, as in the chart.
    let (mounts, mut volumes) = if cni.bin_dir == cni.conf_dir {
        (
            vec![json!({"mountPath": format!("/host{}", cni.conf_dir), "name": "cni-net-dir"})],
            vec![json!({"name": "cni-net-dir", "hostPath": {"path": cni.conf_dir}})],
        )
    } else {
        (
            vec![
                json!({"mountPath": format!("/host{}", cni.bin_dir), "name": "cni-bin-dir"}),
                json!({"mountPath": format!("/host{}", cni.conf_dir), "name": "cni-net-dir"}),
            ],
            vec![
                json!({"name": "cni-bin-dir", "hostPath": {"path": cni.bin_dir}}),
                json!({"name": "cni-net-dir", "hostPath": {"path": cni.conf_dir}}),
            ],
        )
    };
    let mut mounts = mounts;
    mounts.push(json!({"mountPath": "/tmp", "name": "linkerd-tmp-dir"}));
    volumes.push(json!({"name": "linkerd-tmp-dir", "emptyDir": {}}));
    let tolerations = match &cni.tolerations {
        Some(t) => serde_json::to_value(t).expect("tolerations serialize"),
        None => json!([{"operator": "Exists"}]),
    };
    let pod_labels = json!({"k8s-app": NAME, RESOURCE_LABEL: "true"});
    let mut pod_spec = json!({
        "containers": [{
            "name": "install-cni",
            "image": ctx.release.images.cni_plugin,
            "imagePullPolicy": "IfNotPresent",
            "env": [
                from_config("DEST_CNI_NET_DIR", "dest_cni_net_dir"),
                from_config("DEST_CNI_BIN_DIR", "dest_cni_bin_dir"),
                from_config("CNI_NETWORK_CONFIG", "cni_network_config"),
                {"name": "SLEEP", "value": "true"},
            ],
            // Gives the install script time to remove the plugin from the
            // node (linkerd2#2355).
            "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "kill -15 1; sleep 15s"]}}},
            "volumeMounts": mounts,
            "securityContext": {"readOnlyRootFilesystem": true, "privileged": false},
        }],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "serviceAccountName": NAME,
        "tolerations": tolerations,
        "volumes": volumes,
    });
    if let Some(class) = &cni.priority_class_name {
        pod_spec["priorityClassName"] = class.clone().into();
    }
    let mut metadata = meta(ctx, NAME, Some(&cni.namespace));
    metadata["labels"]["k8s-app"] = NAME.into();
    // The release the DaemonSet belongs to, for the upgrade's gate; on the
    // object, not its pods, so it restarts nothing by itself.
    metadata["annotations"] = json!({
        "linkerd.io/created-by": ctx.created_by(),
        LINKERD_VERSION: ctx.version(),
    });
    object(
        "apps/v1",
        "DaemonSet",
        metadata,
        json!({"spec": {
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"k8s-app": NAME}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "linkerd.io/created-by": ctx.created_by(),
                        "linkerd.io/inject": "disabled",
                        CONFIG_SHA256: super::proxy::sha256_hex(config_data(ctx, cni).to_string().as_bytes()),
                        REDIRECT_SHA256: redirect_sha256(ctx.release, cni),
                    },
                },
                "spec": pod_spec,
            },
        }}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testutil::{find, test_context};

    /// The DaemonSet's template annotations for a `spec.cni` in YAML.
    fn marks(cni: &str) -> (String, String) {
        let ctx = test_context(&format!("{{version: edge-26.6.3, cni: {cni}}}"));
        let objects = objects(&ctx);
        let template = &find(&objects, "DaemonSet", NAME).unwrap()["spec"]["template"];
        let annotation = |key: &str| {
            template["metadata"]["annotations"][key]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let redirect = annotation(REDIRECT_SHA256);
        assert_eq!(
            redirect,
            redirect_sha256(ctx.release, ctx.spec.cni.as_ref().unwrap())
        );
        (annotation(CONFIG_SHA256), redirect)
    }

    #[test]
    fn a_settings_change_restarts_the_plugin_and_only_redirect_changes_mark_pods() {
        let (config, redirect) = marks("{}");
        // Every setting the plugin reads restarts its pods, since they read
        // the ConfigMap once; only those a new pod is set up by mark pods.
        for (changed, redirects) in [
            ("{ignoreInboundPorts: '25'}", true),
            ("{ignoreOutboundPorts: '3306'}", true),
            ("{iptablesMode: legacy}", true),
            ("{logLevel: debug}", false),
            ("{confDir: /etc/cni/other}", false),
        ] {
            let (c, r) = marks(changed);
            assert_ne!(c, config, "{changed}");
            assert_eq!(r != redirect, redirects, "{changed}");
        }
        assert_eq!(marks("{}"), (config, redirect), "stable");
    }
}
