//! Shared fixtures for the render modules' unit tests.

use super::{Context, IdentityMaterial, TlsPair, WebhookTls};
use keelson_crds::ControlPlaneSpec;
use serde_json::Value;

/// Name of the ControlPlane in test contexts; differs from every namespace
/// the tests use, so a label carrying the wrong one shows.
pub(crate) const TEST_NAME: &str = "test-cp";

fn pem(kind: &str, what: &str) -> String {
    format!("-----BEGIN {kind}-----\n{what}\n-----END {kind}-----\n")
}

fn pair(what: &str) -> TlsPair {
    TlsPair {
        cert_pem: pem("CERTIFICATE", &format!("{what} certificate")),
        key_pem: pem("PRIVATE KEY", &format!("{what} key")),
    }
}

/// A render context for a spec given as YAML (`version: edge-25.4.4`, plus
/// any fields under test), its catalog release, the release's Kubernetes
/// floor, and placeholder material whose PEMs all differ, so a test can tell
/// which one ended up where.
///
/// The spec and material are leaked so the context can be `'static`; a test
/// process builds a handful of them.
pub(crate) fn test_context(spec_yaml: &str) -> Context<'static> {
    let spec: &'static ControlPlaneSpec = Box::leak(Box::new(
        yaml_serde::from_str(spec_yaml).unwrap_or_else(|e| panic!("{spec_yaml}: {e}")),
    ));
    let release = crate::catalog::find(&spec.version).expect("a catalog release");
    Context {
        name: TEST_NAME,
        spec,
        release,
        kubernetes: release.kubernetes_floor,
        identity: Box::leak(Box::new(IdentityMaterial {
            trust_anchors_pem: pem("CERTIFICATE", "trust anchor"),
            issuer: Some(pair("issuer")),
        })),
        webhooks: Box::leak(Box::new(WebhookTls {
            sp_validator: pair("sp-validator"),
            policy_validator: pair("policy-validator"),
        })),
    }
}

/// The object of a kind and name, if rendered.
pub(crate) fn find<'o>(objects: &'o [Value], kind: &str, name: &str) -> Option<&'o Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

/// Checks what every rendered object must have: the ownership label naming
/// the ControlPlane, and, if namespaced, the control-plane namespace.
pub(crate) fn assert_owned(ctx: &Context<'_>, objects: &[Value]) {
    assert!(!objects.is_empty());
    for o in objects {
        let meta = &o["metadata"];
        assert_eq!(meta["labels"][super::CONTROL_PLANE_LABEL], ctx.name, "{o}");
        assert_eq!(
            meta["labels"]["linkerd.io/control-plane-ns"],
            ctx.ns(),
            "{o}"
        );
        if let Some(ns) = meta.get("namespace") {
            assert_eq!(ns, ctx.ns(), "{o}");
        }
    }
}
