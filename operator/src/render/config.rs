//! `linkerd-config`: the chart's values as Linkerd's CLI and extensions read
//! them (`linkerd check`, `linkerd viz install`), private keys left out.
//!
//! The chart writes every value it has (`toYaml` of `.Values`), so the key
//! set is the chart's `values.yaml` at the release (with `values-ha.yaml` in
//! HA): [`chart_defaults`] states those defaults, and what the spec models is
//! laid over them. `e2e/hack/config-parity.sh` compares the key sets with the
//! chart's at each catalog tag.

use super::proxy::{OPAQUE_PORTS, PROXY_UID};
use super::{Context, Scope, object};
use keelson_crds::controlplane::IssuerMode;
use serde_json::{Value, json};

/// `linkerd-config`'s other key; the same literal in every supported release.
const CRDS_CHART_VERSION: &str = "linkerd-crds-1.0.0-edge";

pub(super) fn objects(ctx: &Context<'_>) -> Vec<Value> {
    let values = super::yaml11::to_string(&values(ctx));
    vec![object(
        "v1",
        "ConfigMap",
        ctx.meta(
            "linkerd-config",
            Scope::Namespaced { created_by: true },
            Some("controller"),
        ),
        json!({"data": {
            "linkerd-crds-chart-version": CRDS_CHART_VERSION,
            "values": values,
        }}),
    )]
}

/// An image reference split as the chart's values hold it.
fn image(reference: &str) -> Value {
    let (name, version) = reference.rsplit_once(':').unwrap_or((reference, ""));
    json!({"name": name, "version": version})
}

pub(super) fn values(ctx: &Context<'_>) -> Value {
    let spec = ctx.spec;
    let release = ctx.release;
    let identity = &spec.identity;
    let controller = image(&release.images.controller);
    let mut issuer = json!({
        "clockSkewAllowance": super::go_duration(identity.clock_skew_allowance.or_zero()),
        "issuanceLifetime": super::go_duration(identity.issuance_lifetime.or_zero()),
        "scheme": match identity.issuer {
            IssuerMode::Managed => "linkerd.io/tls",
            IssuerMode::External | IssuerMode::OfflineRoot => "kubernetes.io/tls",
        },
    });
    if let Some(tls) = &ctx.identity.issuer {
        issuer["tls"] = json!({"crtPEM": tls.cert_pem.trim()});
    }
    // What the spec and the release decide, laid over the chart's defaults
    // (`chart_defaults` also holds values-ha.yaml's, for HA).
    let mut v = json!({
        "clusterDomain": ctx.cluster_domain(),
        "clusterNetworks": spec.cluster_networks.join(","),
        "cniEnabled": spec.cni.is_some(),
        "controllerImage": controller["name"],
        "identity": {
            "issuer": issuer,
            "serviceAccountTokenProjection": identity.service_account_token_projection,
        },
        "identityTrustAnchorsPEM": ctx.identity.trust_anchors_pem,
        "identityTrustDomain": ctx.trust_domain(),
        "linkerdVersion": ctx.version(),
        "proxy": {
            "await": spec.proxy.r#await,
            "defaultInboundPolicy": spec.proxy.default_inbound_policy,
            "image": image(&release.images.proxy),
            "inbound": super::proxy::side_settings(&spec.proxy.inbound),
            "logFormat": spec.proxy.log_format,
            "logLevel": spec.proxy.log_level,
            "nativeSidecar": ctx.native_sidecar(),
            "outbound": super::proxy::side_settings(&spec.proxy.outbound),
            "resources": spec.proxy.resources,
        },
        "proxyInit": {"iptablesMode": release.iptables_mode},
        "webhookFailurePolicy": ctx.failure_policy(),
    });
    // Gone from the chart where linkerd-init runs from the proxy image.
    if let Some(init) = &release.images.proxy_init {
        v["proxyInit"]["image"] = image(init);
    }
    if let Some(policy) = &release.images.policy_controller {
        v["policyController"] = json!({"image": image(policy)});
    }
    let mut all = chart_defaults(release.stable_minor, ctx.ha());
    overlay(&mut all, v);
    all
}

/// Lays `over` onto `base`: objects merge key by key, anything else replaces.
fn overlay(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (k, v) in over {
                match base.get_mut(&k) {
                    Some(slot) => overlay(slot, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (slot, over) => *slot = over,
    }
}

/// A resource's requests and limits as the chart's values hold them, unset
/// ones empty.
fn resources(cpu_request: &str, memory_limit: &str, memory_request: &str) -> Value {
    json!({
        "cpu": {"limit": "", "request": cpu_request},
        "memory": {"limit": memory_limit, "request": memory_request},
    })
}

/// The chart's values at a stable minor (17 for edge-24.11.8, 18 for
/// edge-25.4.4, 19 for edge-25.10.7, 20 for edge-26.6.3; edge-26.8.3,
/// leading up to 21, has 2.20's), with `values-ha.yaml` laid over them
/// in HA. Written from `charts/linkerd-control-plane/values.yaml` at those
/// tags; images and versions come from the catalog, the rest of what the
/// spec models is laid over by the caller.
pub(super) fn chart_defaults(minor: u32, ha: bool) -> Value {
    let empty_resources = json!({
        "cpu": {"limit": "", "request": ""},
        "ephemeral-storage": {"limit": "", "request": ""},
        "memory": {"limit": "", "request": ""},
    });
    let timeout = json!({"timeoutSeconds": 1});
    let webhook_namespaces = json!({"matchExpressions": [{
        "key": "config.linkerd.io/admission-webhooks", "operator": "NotIn", "values": ["disabled"],
    }]});
    let validator = json!({
        "caBundle": "", "crtPEM": "", "externalSecret": false, "injectCaFrom": "",
        "injectCaFromSecret": "", "namespaceSelector": webhook_namespaces,
    });
    let mut injector = validator.clone();
    injector["namespaceSelector"]["matchExpressions"]
        .as_array_mut()
        .expect("a list")
        .push(
            json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                     "values": ["kube-system", "cert-manager"]}),
        );
    injector["objectSelector"] = json!({"matchExpressions": [
        {"key": "linkerd.io/control-plane-component", "operator": "DoesNotExist"},
        {"key": "linkerd.io/cni-resource", "operator": "DoesNotExist"},
    ]});
    injector["livenessProbe"] = timeout.clone();
    injector["readinessProbe"] = timeout.clone();
    injector["timeoutSeconds"] = 10.into();
    let http2 =
        json!({"server": {"http2": {"keepAliveInterval": "10s", "keepAliveTimeout": "3s"}}});
    let mut namespaces = "matchNames:\n  - {{ .Release.Namespace }}\n  - linkerd-viz\n".to_owned();
    if minor < 19 {
        namespaces.push_str("  - linkerd-jaeger\n");
    }
    let proxy = json!({
        "await": true,
        "control": {"streams": {"idleTimeout": "5m", "initialTimeout": "3s", "lifetime": "1h"}},
        "cores": null,
        "defaultInboundPolicy": "all-unauthenticated",
        "disableInboundProtocolDetectTimeout": false,
        "disableOutboundProtocolDetectTimeout": false,
        "enableExternalProfiles": false,
        "enableShutdownEndpoint": false,
        "gid": -1,
        "image": {"name": "cr.l5d.io/linkerd/proxy", "pullPolicy": "", "version": ""},
        "inbound": http2,
        "inboundConnectTimeout": "100ms",
        "inboundDiscoveryCacheUnusedTimeout": "90s",
        "livenessProbe": {"initialDelaySeconds": 10, "timeoutSeconds": 1},
        "logFormat": "plain",
        "logHTTPHeaders": "off",
        "logLevel": "warn,linkerd=info,hickory=error",
        "metrics": {"hostnameLabels": false},
        "nativeSidecar": false,
        "opaquePorts": OPAQUE_PORTS,
        "outbound": http2,
        "outboundConnectTimeout": "1000ms",
        "outboundDiscoveryCacheUnusedTimeout": "5s",
        "outboundTransportMode": "transport-header",
        "ports": {"admin": 4191, "control": 4190, "inbound": 4143, "outbound": 4140},
        "readinessProbe": {"initialDelaySeconds": 2, "timeoutSeconds": 1},
        "requireIdentityOnInboundPorts": "",
        "resources": empty_resources,
        "runtime": {"workers": {"maximumCPURatio": null, "minimum": 1}},
        "shutdownGracePeriod": "",
        "startupProbe": {"failureThreshold": 120, "initialDelaySeconds": 0, "periodSeconds": 1},
        "uid": PROXY_UID,
        "waitBeforeExitSeconds": 0,
    });
    let proxy_init = json!({
        "closeWaitTimeoutSecs": 0,
        "ignoreInboundPorts": "4567,4568",
        "ignoreOutboundPorts": "4567,4568",
        "image": {"name": "cr.l5d.io/linkerd/proxy-init", "pullPolicy": "", "version": ""},
        "iptablesMode": "legacy",
        "kubeAPIServerPorts": "443,6443",
        "logFormat": "",
        "logLevel": "",
        "privileged": false,
        "runAsGroup": 65534,
        "runAsRoot": false,
        "runAsUser": 65534,
        "skipSubnets": "",
        "xtMountPath": {"mountPath": "/run", "name": "linkerd-proxy-init-xtables-lock"},
    });
    let mut v = json!({
        "clusterDomain": "cluster.local",
        "clusterNetworks": "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fd00::/8",
        "cniEnabled": false,
        "commonLabels": {},
        "controller": {"podDisruptionBudget": {"maxUnavailable": 1}},
        "controllerGID": -1,
        "controllerImage": "cr.l5d.io/linkerd/controller",
        "controllerImageVersion": "",
        "controllerLogFormat": "plain",
        "controllerLogLevel": "info",
        "controllerReplicas": 1,
        "controllerUID": 2103,
        "debugContainer": {"image": {"name": "cr.l5d.io/linkerd/debug", "pullPolicy": "", "version": ""}},
        "deploymentStrategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "destinationController": {
            "livenessProbe": timeout,
            "meshedHttp2ClientProtobuf": {"keep_alive": {
                "interval": {"seconds": 10}, "timeout": {"seconds": 3}, "while_idle": true,
            }},
            "readinessProbe": timeout,
        },
        "disableHeartBeat": false,
        "disableIPv6": true,
        "egress": {"globalEgressNetworkNamespace": "linkerd-egress"},
        "enableEndpointSlices": true,
        "enableH2Upgrade": true,
        "enablePSP": false,
        "enablePodAntiAffinity": false,
        "enablePodDisruptionBudget": false,
        "enablePprof": false,
        "identity": {
            "externalCA": false,
            "issuer": {
                "clockSkewAllowance": "20s",
                "issuanceLifetime": "24h0m0s",
                "scheme": "linkerd.io/tls",
                "tls": {"crtPEM": ""},
            },
            "kubeAPI": {"clientBurst": 200, "clientQPS": 100},
            "livenessProbe": timeout,
            "readinessProbe": timeout,
            "serviceAccountTokenProjection": true,
        },
        "identityTrustAnchorsPEM": "",
        "identityTrustDomain": "",
        "imagePullPolicy": "IfNotPresent",
        "imagePullSecrets": [],
        "kubeAPI": {"clientBurst": 200, "clientQPS": 100},
        "linkerdVersion": "linkerdVersionValue",
        "networkValidator": {
            "connectAddr": "", "listenAddr": "", "logFormat": "plain", "logLevel": "debug",
            "timeout": "10s",
        },
    });
    // Two literals: one would exceed the json! macro's recursion limit.
    overlay(
        &mut v,
        json!({
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "podAnnotations": {},
            "podLabels": {},
            "podMonitor": {
                "controller": {"enabled": true, "namespaceSelector": namespaces},
                "enabled": false,
                "labels": {},
                "proxy": {"enabled": true},
                "scrapeInterval": "10s",
                "scrapeTimeout": "10s",
                "serviceMirror": {"enabled": true},
            },
            "policyController": {
                "livenessProbe": timeout,
                "logLevel": "info",
                "probeNetworks": ["0.0.0.0/0", "::/0"],
                "readinessProbe": timeout,
                "resources": empty_resources,
            },
            "policyValidator": validator,
            "priorityClassName": "",
            "profileValidator": validator,
            "prometheusUrl": "",
            "proxy": proxy,
            "proxyInit": proxy_init,
            "proxyInjector": injector,
            "revisionHistoryLimit": 10,
            "runtimeClassName": "",
            "spValidator": {"livenessProbe": timeout, "readinessProbe": timeout},
            "webhookFailurePolicy": "Ignore",
        }),
    );
    // 2.18: pod annotations per component; proxy cores, hostname labels,
    // transport mode and runtime workers.
    if minor >= 18 {
        for component in ["destinationController", "identity", "proxyInjector"] {
            v[component]["podAnnotations"] = json!({});
        }
    } else {
        let proxy = v["proxy"].as_object_mut().expect("an object");
        for key in ["metrics", "outboundTransportMode", "runtime"] {
            proxy.remove(key);
        }
        proxy.insert("cores".into(), 0.into());
    }
    // 2.19: tracing per component instead of `controlPlaneTracing`, the
    // network validator's security context spelled out, config readers, and
    // the policy controller's image gone (it runs from the controller's).
    if minor >= 19 {
        v["configReaders"] = Value::Null;
        v["controller"]["tracing"] = json!({"collector": {"endpoint": ""}, "enabled": false});
        v["networkValidator"]["securityContext"] = json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true,
            "runAsGroup": 65534,
            "runAsNonRoot": true,
            "runAsUser": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        });
        v["proxy"]["securityContext"] = json!({});
        v["proxy"]["tracing"] = json!({
            "collector": {"endpoint": "", "meshIdentity": {"namespace": "", "serviceAccountName": ""}},
            "enabled": false,
            "labels": {
                "k8s.container.name": "$(_pod_containerName)",
                "k8s.pod.ip": "$(_pod_ip)",
                "k8s.pod.uid": "$(_pod_uid)",
            },
            "traceServiceName": "linkerd-proxy",
        });
    } else {
        v["controlPlaneTracing"] = false.into();
        v["controlPlaneTracingNamespace"] = "linkerd-jaeger".into();
        v["networkValidator"]["enableSecurityContext"] = true.into();
        v["policyController"]["image"] = json!({
            "name": "cr.l5d.io/linkerd/policy-controller", "pullPolicy": "", "version": "",
        });
    }
    // 2.20: proxy-init runs from the proxy image, proxies are native
    // sidecars, and the PodMonitors state honorTimestamps.
    if minor >= 20 {
        v["proxyInit"]
            .as_object_mut()
            .expect("an object")
            .remove("image");
        v["proxy"]["nativeSidecar"] = true.into();
        for monitor in ["controller", "proxy", "serviceMirror"] {
            v["podMonitor"][monitor]["honorTimestamps"] = false.into();
        }
    }
    if ha {
        // values-ha.yaml.
        v["controllerReplicas"] = 3.into();
        v["deploymentStrategy"]["rollingUpdate"]["maxUnavailable"] = 1.into();
        v["enablePodAntiAffinity"] = true.into();
        v["enablePodDisruptionBudget"] = true.into();
        v["highAvailability"] = true.into();
        v["webhookFailurePolicy"] = "Fail".into();
        v["proxy"]["resources"]["cpu"]["request"] = "100m".into();
        v["proxy"]["resources"]["memory"] = json!({"limit": "250Mi", "request": "20Mi"});
        for component in [
            "controllerResources",
            "destinationResources",
            "heartbeatResources",
            "proxyInjectorResources",
            "spValidatorResources",
        ] {
            v[component] = resources("100m", "250Mi", "50Mi");
        }
        v["identityResources"] = resources("100m", "250Mi", "10Mi");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testutil::test_context;

    fn keys(node: &Value, prefix: &str, out: &mut Vec<String>) {
        if let Value::Object(map) = node {
            for (k, v) in map {
                let path = format!("{prefix}{k}");
                keys(v, &format!("{path}."), out);
                out.push(path);
            }
        }
    }

    fn key_set(spec: &str) -> Vec<String> {
        let mut out = Vec::new();
        keys(&values(&test_context(spec)), "", &mut out);
        out.sort();
        out
    }

    /// The key counts `e2e/hack/config-parity.sh` measured in the chart's
    /// `linkerd-config` at each catalog tag (where the key sets are equal);
    /// a key lost or added here shows.
    #[test]
    fn every_key_the_chart_writes_is_written() {
        for (version, default, ha) in [
            ("edge-24.11.8", 242, 285),
            ("edge-25.4.4", 252, 295),
            ("edge-25.10.7", 273, 316),
            ("edge-26.6.3", 272, 315),
            ("edge-26.8.3", 272, 315),
        ] {
            let plain = key_set(&format!("version: {version}"));
            assert_eq!(plain.len(), default, "{version}");
            let custom = key_set(&format!(
                "version: {version}\nidentity: {{issuer: External}}\nproxy: {{resources: {{cpu: {{request: 50m}}}}}}"
            ));
            assert_eq!(custom, plain, "{version}");
            let ha_keys = key_set(&format!("version: {version}\nhighAvailability: true"));
            assert_eq!(ha_keys.len(), ha, "{version}");
            assert!(plain.iter().all(|k| ha_keys.contains(k)), "{version}");
        }
        let newest = key_set("version: edge-25.10.7");
        for key in [
            "proxy.inboundConnectTimeout",
            "proxy.outbound.server.http2.keepAliveTimeout",
            "proxy.resources.ephemeral-storage.limit",
            "debugContainer.image.name",
            "nodeSelector.kubernetes.io/os",
            "tolerations",
            "proxyInit.xtMountPath.mountPath",
            "policyController.probeNetworks",
            "identity.kubeAPI.clientQPS",
            "imagePullPolicy",
            "controllerGID",
            "proxy.tracing.traceServiceName",
        ] {
            // `tolerations` is commented out in the chart: not a key.
            assert_eq!(
                newest.iter().any(|k| k == key),
                key != "tolerations",
                "{key}"
            );
        }
        assert!(
            !key_set("version: edge-24.11.8")
                .iter()
                .any(|k| k == "proxy.runtime")
        );
    }

    #[test]
    fn the_spec_is_laid_over_the_charts_defaults() {
        let ctx = test_context(
            "version: edge-25.10.7\nproxy: {resources: {cpu: {request: 50m}}, logLevel: debug}",
        );
        let v = values(&ctx);
        assert_eq!(
            v["proxy"]["resources"]["cpu"],
            json!({"limit": "", "request": "50m"})
        );
        assert_eq!(
            v["proxy"]["resources"]["memory"],
            json!({"limit": "", "request": ""})
        );
        assert_eq!(v["proxy"]["logLevel"], "debug");
        assert_eq!(v["proxy"]["image"]["version"], "edge-25.10.7");
        assert_eq!(v["proxy"]["logHTTPHeaders"], "off");
        // Written so that a YAML 1.1 reader (Linkerd's Go) keeps it a string.
        let text = objects(&ctx)[0]["data"]["values"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.contains("logHTTPHeaders: 'off'\n"), "{text}");
        let back: Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
