//! The Services in front of the identity and destination pods, as
//! `identity.yaml` and `destination.yaml` define them.

use super::{Context, Scope, object};
use serde_json::{Value, json};

/// How a Service is addressed.
#[derive(Clone, Copy)]
enum Addressing {
    /// A virtual IP load-balancing over the pods (`type: ClusterIP`).
    ClusterIp,
    /// No virtual IP (`clusterIP: None`): DNS returns each pod, for clients
    /// that balance themselves. The chart writes no `type` for these.
    Headless,
}

/// A Service's single port: its name, number, and the pod port it forwards
/// to, by number or by container port name.
struct Port {
    name: &'static str,
    port: u16,
    target: Value,
}

impl Port {
    /// A gRPC port forwarded to the same number on the pod.
    fn grpc(port: u16) -> Self {
        Self {
            name: "grpc",
            port,
            target: port.into(),
        }
    }

    /// An HTTPS webhook port (443) forwarded to the container port of the same
    /// name, so the Service follows the container wherever it listens.
    fn webhook(name: &'static str) -> Self {
        Self {
            name,
            port: 443,
            target: name.into(),
        }
    }
}

/// A Service selecting a component's pods by the component label alone (not
/// the namespace). The chart leaves the protocol to the API server's TCP
/// default; Keelson states it, because server-side apply keys ports by
/// (port, protocol) and Kubernetes before 1.21 rejects a port without it.
fn service(
    ctx: &Context<'_>,
    name: &str,
    component: &str,
    addressing: Addressing,
    port: Port,
) -> Value {
    let mut spec = json!({
        "selector": {"linkerd.io/control-plane-component": component},
        "ports": [{"name": port.name, "port": port.port, "protocol": "TCP", "targetPort": port.target}],
    });
    match addressing {
        Addressing::ClusterIp => spec["type"] = "ClusterIP".into(),
        Addressing::Headless => spec["clusterIP"] = "None".into(),
    }
    object(
        "v1",
        "Service",
        ctx.meta(
            name,
            Scope::Namespaced { created_by: true },
            Some(component),
        ),
        json!({"spec": spec}),
    )
}

/// Identity's Services, then destination's, in the chart's template order.
pub(super) fn objects(ctx: &Context<'_>) -> Vec<Value> {
    use Addressing::{ClusterIp, Headless};
    let identity = |name, addressing| service(ctx, name, "identity", addressing, Port::grpc(8080));
    let destination = |name, addressing, port| service(ctx, name, "destination", addressing, port);
    vec![
        identity("linkerd-identity", ClusterIp),
        identity("linkerd-identity-headless", Headless),
        destination("linkerd-dst", ClusterIp, Port::grpc(8086)),
        destination("linkerd-dst-headless", Headless, Port::grpc(8086)),
        destination(
            "linkerd-sp-validator",
            ClusterIp,
            Port::webhook("sp-validator"),
        ),
        // Headless: proxies resolve and balance over the policy controllers.
        destination("linkerd-policy", Headless, Port::grpc(8090)),
        destination(
            "linkerd-policy-validator",
            ClusterIp,
            Port::webhook("policy-https"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::objects;
    use crate::render::testutil::{assert_owned, find, test_context};
    use serde_json::json;

    #[test]
    fn services_come_in_template_order_with_their_ports() {
        let ctx = test_context("version: edge-25.4.4");
        let objs = objects(&ctx);
        let summary: Vec<_> = objs
            .iter()
            .map(|o| {
                let p = &o["spec"]["ports"];
                assert_eq!(p.as_array().unwrap().len(), 1, "{o}");
                (
                    o["metadata"]["name"].as_str().unwrap(),
                    p[0]["name"].as_str().unwrap(),
                    p[0]["port"].as_u64().unwrap(),
                    p[0]["targetPort"].clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("linkerd-identity", "grpc", 8080, json!(8080)),
                ("linkerd-identity-headless", "grpc", 8080, json!(8080)),
                ("linkerd-dst", "grpc", 8086, json!(8086)),
                ("linkerd-dst-headless", "grpc", 8086, json!(8086)),
                (
                    "linkerd-sp-validator",
                    "sp-validator",
                    443,
                    json!("sp-validator")
                ),
                ("linkerd-policy", "grpc", 8090, json!(8090)),
                (
                    "linkerd-policy-validator",
                    "policy-https",
                    443,
                    json!("policy-https")
                ),
            ]
        );
    }

    #[test]
    fn headless_services_have_no_cluster_ip_and_no_type() {
        let ctx = test_context("version: edge-25.4.4");
        let objs = objects(&ctx);
        for name in [
            "linkerd-identity-headless",
            "linkerd-dst-headless",
            "linkerd-policy",
        ] {
            let spec = &find(&objs, "Service", name).unwrap()["spec"];
            assert_eq!(spec["clusterIP"], "None", "{name}");
            assert!(spec.get("type").is_none(), "{name}: {spec}");
        }
        for name in [
            "linkerd-identity",
            "linkerd-dst",
            "linkerd-sp-validator",
            "linkerd-policy-validator",
        ] {
            let spec = &find(&objs, "Service", name).unwrap()["spec"];
            assert_eq!(spec["type"], "ClusterIP", "{name}");
            assert!(spec.get("clusterIP").is_none(), "{name}: {spec}");
        }
    }

    #[test]
    fn services_select_their_component_only_and_carry_created_by() {
        let ctx = test_context("version: edge-25.4.4\nnamespace: mesh");
        let objs = objects(&ctx);
        assert_owned(&ctx, &objs);
        for o in &objs {
            let component = if o["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("linkerd-identity")
            {
                "identity"
            } else {
                "destination"
            };
            assert_eq!(
                o["spec"]["selector"],
                json!({"linkerd.io/control-plane-component": component}),
                "{o}"
            );
            assert_eq!(
                o["metadata"]["labels"]["linkerd.io/control-plane-component"],
                component
            );
            assert_eq!(
                o["metadata"]["annotations"]["linkerd.io/created-by"],
                ctx.created_by()
            );
            assert_eq!(o["metadata"]["namespace"], "mesh");
            assert_eq!(o["spec"]["ports"][0]["protocol"], "TCP", "{o}");
        }
    }

    #[test]
    fn services_are_the_same_in_every_release() {
        let render = |v: &str| objects(&test_context(&format!("version: {v}")));
        let reference = render("edge-25.4.4");
        for release in crate::catalog::releases() {
            assert_eq!(
                render(&release.version.to_string()),
                reference,
                "{}",
                release.version
            );
        }
    }
}
