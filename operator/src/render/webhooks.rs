//! Linkerd's two validating webhooks, served by the destination pod: the
//! sp-validator (ServiceProfiles) and the policy validator (policy and route
//! resources), with their serving certificates (`destination-rbac.yaml`).

use super::{Context, Scope, TlsPair, b64, object};
use serde_json::{Value, json};

/// A webhook server's certificate and key, mounted by its container. The
/// certificate is self-signed and also its webhook's CA bundle.
fn tls_secret(ctx: &Context<'_>, name: &str, tls: &TlsPair) -> Value {
    object(
        "v1",
        "Secret",
        ctx.meta(
            name,
            Scope::Namespaced { created_by: true },
            Some("destination"),
        ),
        json!({
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(&tls.cert_pem), "tls.key": b64(&tls.key_pem)},
        }),
    )
}

/// The serving Secrets, sp-validator's first, as the chart writes them.
pub(super) fn secrets(ctx: &Context<'_>) -> Vec<Value> {
    vec![
        tls_secret(
            ctx,
            "linkerd-sp-validator-k8s-tls",
            &ctx.webhooks.sp_validator,
        ),
        tls_secret(
            ctx,
            "linkerd-policy-validator-k8s-tls",
            &ctx.webhooks.policy_validator,
        ),
    ]
}

/// A rule matching creation and update of some resources of one API group.
fn on_write(api_group: &str, api_versions: &[&str], resources: &[&str]) -> Value {
    json!({
        "operations": ["CREATE", "UPDATE"],
        "apiGroups": [api_group],
        "apiVersions": api_versions,
        "resources": resources,
    })
}

/// A ValidatingWebhookConfiguration `<service>-webhook-config` with its one
/// webhook `<service>.linkerd.io`, called at `/` on Service `<service>`
/// (port 443) and trusting the server's self-signed certificate. Namespaces
/// labelled `config.linkerd.io/admission-webhooks: disabled`, the control
/// plane's own among them, are skipped.
fn configuration(ctx: &Context<'_>, service: &str, tls: &TlsPair, rules: Vec<Value>) -> Value {
    object(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        ctx.meta(
            &format!("{service}-webhook-config"),
            Scope::Cluster,
            Some("destination"),
        ),
        json!({"webhooks": [{
            "name": format!("{service}.linkerd.io"),
            "namespaceSelector": {"matchExpressions": [{
                "key": "config.linkerd.io/admission-webhooks",
                "operator": "NotIn",
                "values": ["disabled"],
            }]},
            "clientConfig": {
                "service": {"name": service, "namespace": ctx.ns(), "path": "/"},
                "caBundle": b64(&tls.cert_pem),
            },
            "failurePolicy": ctx.failure_policy(),
            "admissionReviewVersions": ["v1", "v1beta1"],
            "rules": rules,
            "sideEffects": "None",
            // Unset in the chart, so the API's default; stated to be visible.
            "timeoutSeconds": 10,
        }]}),
    )
}

/// The webhook configurations, sp-validator's first. Registered last, once
/// the destination pod can answer them.
pub(super) fn configurations(ctx: &Context<'_>) -> Vec<Value> {
    vec![
        configuration(
            ctx,
            "linkerd-sp-validator",
            &ctx.webhooks.sp_validator,
            vec![on_write(
                "linkerd.io",
                &["v1alpha1", "v1alpha2"],
                &["serviceprofiles"],
            )],
        ),
        configuration(
            ctx,
            "linkerd-policy-validator",
            &ctx.webhooks.policy_validator,
            vec![
                on_write(
                    "policy.linkerd.io",
                    &["*"],
                    &[
                        "authorizationpolicies",
                        "httplocalratelimitpolicies",
                        "httproutes",
                        "networkauthentications",
                        "meshtlsauthentications",
                        "serverauthorizations",
                        "servers",
                        "egressnetworks",
                    ],
                ),
                on_write(
                    "gateway.networking.k8s.io",
                    &["*"],
                    &["httproutes", "grpcroutes", "tlsroutes", "tcproutes"],
                ),
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::{configurations, secrets};
    use crate::render::testutil::{assert_owned, find, test_context};
    use serde_json::{Value, json};

    fn decode(v: &Value) -> String {
        let bytes: k8s_openapi::ByteString = serde_json::from_value(v.clone()).unwrap();
        String::from_utf8(bytes.0).unwrap()
    }

    fn failure_policies(spec: &str) -> Vec<String> {
        configurations(&test_context(spec))
            .iter()
            .map(|c| {
                c["webhooks"][0]["failurePolicy"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn failure_policy_follows_ha_unless_the_spec_says() {
        let v = "version: edge-25.4.4";
        assert_eq!(failure_policies(v), ["Ignore", "Ignore"]);
        assert_eq!(
            failure_policies(&format!("{v}\nhighAvailability: true")),
            ["Fail", "Fail"]
        );
        assert_eq!(
            failure_policies(&format!("{v}\nwebhook: {{failurePolicy: Fail}}")),
            ["Fail", "Fail"]
        );
        assert_eq!(
            failure_policies(&format!(
                "{v}\nhighAvailability: true\nwebhook: {{failurePolicy: Ignore}}"
            )),
            ["Ignore", "Ignore"]
        );
    }

    #[test]
    fn secrets_hold_each_webhooks_own_pair() {
        let ctx = test_context("version: edge-25.4.4\nnamespace: mesh");
        let objs = secrets(&ctx);
        assert_owned(&ctx, &objs);
        for (name, tls) in [
            ("linkerd-sp-validator-k8s-tls", &ctx.webhooks.sp_validator),
            (
                "linkerd-policy-validator-k8s-tls",
                &ctx.webhooks.policy_validator,
            ),
        ] {
            let s = find(&objs, "Secret", name).expect(name);
            assert_eq!(s["type"], "kubernetes.io/tls");
            assert_eq!(decode(&s["data"]["tls.crt"]), tls.cert_pem);
            assert_eq!(decode(&s["data"]["tls.key"]), tls.key_pem);
            assert_eq!(
                s["metadata"]["labels"]["linkerd.io/control-plane-component"],
                "destination"
            );
            assert_eq!(
                s["metadata"]["annotations"]["linkerd.io/created-by"],
                ctx.created_by()
            );
        }
        assert_eq!(objs.len(), 2);
    }

    #[test]
    fn webhooks_call_their_service_and_trust_its_certificate() {
        let ctx = test_context("version: edge-25.4.4\nnamespace: mesh");
        let objs = configurations(&ctx);
        assert_owned(&ctx, &objs);
        for (service, tls) in [
            ("linkerd-sp-validator", &ctx.webhooks.sp_validator),
            ("linkerd-policy-validator", &ctx.webhooks.policy_validator),
        ] {
            let name = format!("{service}-webhook-config");
            let c = find(&objs, "ValidatingWebhookConfiguration", &name).expect(service);
            assert!(c["metadata"].get("namespace").is_none());
            assert!(c["metadata"].get("annotations").is_none());
            let hooks = c["webhooks"].as_array().unwrap();
            assert_eq!(hooks.len(), 1);
            let w = &hooks[0];
            assert_eq!(w["name"], format!("{service}.linkerd.io"));
            assert_eq!(
                w["clientConfig"]["service"],
                json!({"name": service, "namespace": "mesh", "path": "/"})
            );
            assert_eq!(decode(&w["clientConfig"]["caBundle"]), tls.cert_pem);
            assert_eq!(
                w["namespaceSelector"]["matchExpressions"],
                json!([{"key": "config.linkerd.io/admission-webhooks", "operator": "NotIn", "values": ["disabled"]}])
            );
            assert_eq!(w["admissionReviewVersions"], json!(["v1", "v1beta1"]));
            assert_eq!(w["sideEffects"], "None");
            assert_eq!(w["timeoutSeconds"], 10);
            assert!(w.get("objectSelector").is_none());
        }
    }

    #[test]
    fn rules_cover_profiles_policies_and_gateway_routes_on_write() {
        let ctx = test_context("version: edge-25.4.4");
        let objs = configurations(&ctx);
        let rules = |name: &str| {
            find(&objs, "ValidatingWebhookConfiguration", name).unwrap()["webhooks"][0]["rules"]
                .as_array()
                .unwrap()
                .clone()
        };
        let sp = rules("linkerd-sp-validator-webhook-config");
        assert_eq!(sp.len(), 1);
        assert_eq!(sp[0]["apiGroups"], json!(["linkerd.io"]));
        assert_eq!(sp[0]["apiVersions"], json!(["v1alpha1", "v1alpha2"]));
        assert_eq!(sp[0]["resources"], json!(["serviceprofiles"]));
        let policy = rules("linkerd-policy-validator-webhook-config");
        assert_eq!(policy.len(), 2);
        assert_eq!(policy[0]["apiGroups"], json!(["policy.linkerd.io"]));
        assert!(
            policy[0]["resources"]
                .as_array()
                .unwrap()
                .contains(&json!("egressnetworks"))
        );
        assert_eq!(policy[1]["apiGroups"], json!(["gateway.networking.k8s.io"]));
        assert_eq!(
            policy[1]["resources"],
            json!(["httproutes", "grpcroutes", "tlsroutes", "tcproutes"])
        );
        for r in sp.iter().chain(&policy) {
            assert_eq!(r["operations"], json!(["CREATE", "UPDATE"]), "{r}");
            assert!(r.get("scope").is_none(), "{r}");
        }
    }
}
