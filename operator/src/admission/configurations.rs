//! The webhook configurations that point the API server at Keelson's
//! admission server: the proxy injector (mutating, pods) and the validator
//! (keelson.dev and policy objects). Pure rendering; the runtime applies them.

use crate::render::object;
use keelson_crds::ControlPlane;
use kube::ResourceExt;
use serde_json::{Value, json};

/// Name of the MutatingWebhookConfiguration that injects proxies.
pub const INJECTOR: &str = "keelson-proxy-injector";
/// Name of the ValidatingWebhookConfiguration for keelson.dev and policy objects.
pub const VALIDATOR: &str = "keelson-validator";
/// Paths the admission server answers on.
pub const INJECT_PATH: &str = "/inject";
pub const VALIDATE_PATH: &str = "/validate";
/// Label on both configurations, so Keelson can tell them from others'.
pub const COMPONENT_LABEL: &str = "keelson.dev/component";

/// The API server gives up on a call after this long. Injection answers in
/// microseconds; a stalled call should fail fast into the failure policy
/// rather than hold pod creation for Linkerd's 10 s.
const TIMEOUT_SECONDS: i32 = 5;

/// How the API server reaches the admission server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Through a Service in front of the operator's pods (in-cluster).
    Service {
        namespace: String,
        name: String,
        port: u16,
    },
    /// At a URL, for an operator running outside the cluster (development,
    /// the end-to-end tests). The server's certificate names its host.
    Url(String),
}

impl Endpoint {
    fn client_config(&self, path: &str, ca_pem: &str) -> Value {
        let ca_bundle = crate::render::b64(ca_pem);
        match self {
            Self::Service {
                namespace,
                name,
                port,
            } => json!({
                "service": {"namespace": namespace, "name": name, "path": path, "port": port},
                "caBundle": ca_bundle,
            }),
            Self::Url(base) => json!({
                "url": format!("{}{path}", base.trim_end_matches('/')),
                "caBundle": ca_bundle,
            }),
        }
    }
}

/// Where Keelson's admission server is and which CA signs its certificate.
pub struct Webhooks<'a> {
    pub endpoint: &'a Endpoint,
    pub ca_pem: &'a str,
    /// Keelson's own namespace: never injected, so the operator can always
    /// restart even when the injector is down and the policy is `Fail`.
    pub keelson_namespace: &'a str,
}

fn meta(name: &str) -> Value {
    json!({"name": name, "labels": {COMPONENT_LABEL: "webhook"}})
}

/// The validating webhook for ControlPlanes, DataPlanes and Linkerd's
/// policy objects (policy.linkerd.io kinds and Gateway API HTTPRoutes).
///
/// It fails closed: a keelson.dev object nobody validated could be a
/// half-applicable upgrade, and a policy object Linkerd would refuse breaks
/// traffic. Deletes are not validated, so a broken webhook
/// never blocks removing objects, and the reconciler refuses bad specs on its
/// own as a second line.
pub fn validating(w: &Webhooks<'_>) -> Value {
    let webhook = |name: &str, failure_policy: &str, rules: Value| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1", "v1beta1"],
            "clientConfig": w.endpoint.client_config(VALIDATE_PATH, w.ca_pem),
            "failurePolicy": failure_policy,
            "matchPolicy": "Equivalent",
            "namespaceSelector": {},
            "objectSelector": {},
            "rules": rules,
            "sideEffects": "None",
            "timeoutSeconds": TIMEOUT_SECONDS,
        })
    };
    let rule = |group: &str, resources: &[&str], scope: &str| {
        json!({
            "apiGroups": [group],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": resources,
            "scope": scope,
        })
    };
    object(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        meta(VALIDATOR),
        json!({"webhooks": [
            // Keelson's own objects are only ever admitted checked.
            webhook(
                "validate.keelson.dev",
                "Fail",
                json!([rule("keelson.dev", &["controlplanes", "dataplanes"], "*")]),
            ),
            // Policy objects are Linkerd's and the Gateway API's: an
            // operator outage must not stop a GitOps sync of them (Linkerd's
            // own validator fails open too).
            webhook(
                "policy.validate.keelson.dev",
                "Ignore",
                json!([
                    rule(
                        "policy.linkerd.io",
                        &[
                            "servers", "authorizationpolicies", "meshtlsauthentications",
                            "networkauthentications", "httproutes", "serverauthorizations",
                            "egressnetworks", "httplocalratelimitpolicies",
                        ],
                        "Namespaced",
                    ),
                    rule(
                        "gateway.networking.k8s.io",
                        &["httproutes", "grpcroutes", "tlsroutes", "tcproutes"],
                        "Namespaced",
                    ),
                ]),
            ),
        ]}),
    )
}

/// The proxy injector, in place of Linkerd's `linkerd-proxy-injector-webhook-config`.
///
/// Like Linkerd's it skips namespaces labelled
/// `config.linkerd.io/admission-webhooks: disabled` and control-plane pods;
/// it also skips kube-system, the control plane's namespace and Keelson's own
/// by name (the `kubernetes.io/metadata.name` label exists from Kubernetes
/// 1.21; before that the handler skips them itself, but the API server still
/// calls it, so on 1.20 label those namespaces to keep them independent of
/// Keelson being up).
pub fn mutating(w: &Webhooks<'_>, cp: &ControlPlane) -> Value {
    let mut skipped = vec![
        "kube-system",
        cp.spec.namespace.as_str(),
        w.keelson_namespace,
    ];
    skipped.dedup();
    let mut meta = meta(INJECTOR);
    meta["labels"][crate::render::CONTROL_PLANE_LABEL] = cp.name_any().into();
    object(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        meta,
        json!({"webhooks": [{
            "name": "linkerd-proxy-injector.keelson.dev",
            "admissionReviewVersions": ["v1", "v1beta1"],
            "clientConfig": w.endpoint.client_config(INJECT_PATH, w.ca_pem),
            "failurePolicy": crate::render::failure_policy(&cp.spec),
            "matchPolicy": "Equivalent",
            "namespaceSelector": {"matchExpressions": [
                {"key": "config.linkerd.io/admission-webhooks", "operator": "NotIn", "values": ["disabled"]},
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": skipped},
            ]},
            "objectSelector": {"matchExpressions": [
                {"key": "linkerd.io/control-plane-component", "operator": "DoesNotExist"},
                {"key": "linkerd.io/cni-resource", "operator": "DoesNotExist"},
            ]},
            "reinvocationPolicy": "Never",
            "rules": [{
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }],
            "sideEffects": "None",
            "timeoutSeconds": TIMEOUT_SECONDS,
        }]}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };

    fn cp(extra: Value) -> ControlPlane {
        let mut spec = json!({"version": "edge-25.4.4", "namespace": "linkerd"});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
            "metadata": {"name": "mesh"}, "spec": spec,
        }))
        .unwrap()
    }

    fn service() -> Endpoint {
        Endpoint::Service {
            namespace: "keelson".into(),
            name: "keelson-webhook".into(),
            port: 443,
        }
    }

    #[test]
    fn the_injector_follows_the_control_plane_and_skips_system_namespaces() {
        let endpoint = service();
        let w = Webhooks {
            endpoint: &endpoint,
            ca_pem: "CA",
            keelson_namespace: "keelson",
        };
        let typed: MutatingWebhookConfiguration =
            serde_json::from_value(mutating(&w, &cp(json!({})))).unwrap();
        let hook = &typed.webhooks.unwrap()[0];
        assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(hook.timeout_seconds, Some(5));
        let client = &hook.client_config;
        assert_eq!(client.ca_bundle.as_ref().unwrap().0, b"CA");
        let svc = client.service.as_ref().unwrap();
        assert_eq!(
            (
                svc.namespace.as_str(),
                svc.name.as_str(),
                svc.path.as_deref()
            ),
            ("keelson", "keelson-webhook", Some("/inject"))
        );
        let names = hook
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap()[1]
            .values
            .clone()
            .unwrap();
        assert_eq!(names, ["kube-system", "linkerd", "keelson"]);

        let ha = mutating(&w, &cp(json!({"highAvailability": true})));
        assert_eq!(ha["webhooks"][0]["failurePolicy"], "Fail");
        let explicit = mutating(
            &w,
            &cp(json!({"highAvailability": true, "webhook": {"failurePolicy": "Ignore"}})),
        );
        assert_eq!(explicit["webhooks"][0]["failurePolicy"], "Ignore");
    }

    #[test]
    fn a_url_endpoint_gets_the_path_appended() {
        let endpoint = Endpoint::Url("https://127.0.0.1:9443/".into());
        let w = Webhooks {
            endpoint: &endpoint,
            ca_pem: "CA",
            keelson_namespace: "keelson",
        };
        let typed: ValidatingWebhookConfiguration = serde_json::from_value(validating(&w)).unwrap();
        let hooks = typed.webhooks.unwrap();
        for hook in &hooks {
            assert_eq!(
                hook.client_config.url.as_deref(),
                Some("https://127.0.0.1:9443/validate")
            );
        }
        let resources = |hook: &k8s_openapi::api::admissionregistration::v1::ValidatingWebhook| {
            hook.rules
                .iter()
                .flatten()
                .flat_map(|r| {
                    let group = r.api_groups.clone().unwrap_or_default().join(",");
                    r.resources
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |res| (group.clone(), res))
                })
                .collect::<Vec<(String, String)>>()
        };
        // Keelson's objects fail closed; policy objects fail open.
        assert_eq!(hooks[0].failure_policy.as_deref(), Some("Fail"));
        assert_eq!(
            resources(&hooks[0]),
            [
                ("keelson.dev".to_owned(), "controlplanes".to_owned()),
                ("keelson.dev".to_owned(), "dataplanes".to_owned())
            ]
        );
        assert_eq!(hooks[1].failure_policy.as_deref(), Some("Ignore"));
        let policy = resources(&hooks[1]);
        for (group, resource) in [
            ("policy.linkerd.io", "servers"),
            ("policy.linkerd.io", "authorizationpolicies"),
            ("policy.linkerd.io", "meshtlsauthentications"),
            ("policy.linkerd.io", "networkauthentications"),
            ("policy.linkerd.io", "httproutes"),
            ("policy.linkerd.io", "serverauthorizations"),
            ("policy.linkerd.io", "egressnetworks"),
            ("gateway.networking.k8s.io", "httproutes"),
        ] {
            assert!(
                policy.contains(&(group.to_owned(), resource.to_owned())),
                "{group}/{resource} missing from {policy:?}"
            );
        }
        assert!(
            hooks
                .iter()
                .flat_map(|h| h.rules.iter().flatten())
                .all(|r| r.operations.as_deref()
                    == Some(&["CREATE".to_owned(), "UPDATE".to_owned()][..]))
        );
    }
}
