//! Linkerd's CustomResourceDefinitions (`charts/linkerd-crds`) and the
//! Gateway API ones its chart bundles, with the versions the release's
//! catalog entry lists and schemas generated from Keelson's Rust types.
//!
//! The schemas state every validation fact of the chart's at the release
//! (`e2e/hack/crd-parity.sh` compares them), less what the cluster's API
//! server cannot take ([`omitted_facts`]). Per-version quirks of Linkerd's
//! schemas that no type expresses are applied here, each with its reason.
//! Deliberate differences from the chart: each CRD carries Keelson's
//! ownership label and no `helm.sh/chart` label.

use super::{Context, Scope};
use crate::catalog::{CrdVersions, GatewayApiBundle, KubeVersion};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use keelson_crds::{gateway, policy, serviceprofile, workload};
use kube::CustomResourceExt;
use serde_json::{Value, json};

/// The first Kubernetes version whose API server takes CEL rules
/// (`x-kubernetes-validations`, beta and on by default from 1.25). An
/// older one would drop them silently, so they are left out of what is
/// applied there, and counted in status ([`omitted_facts`]).
pub const CEL_FLOOR: KubeVersion = KubeVersion {
    major: 1,
    minor: 25,
};

/// The first Kubernetes version Keelson gives an empty-string `default`
/// (Gateway API's backend `group`): the 1.20 API server reads it as null and
/// refuses the whole CRD (seen on the test cluster). Linkerd's chart states
/// such defaults from its lowest floor, 1.22, on.
pub const EMPTY_DEFAULT_FLOOR: KubeVersion = KubeVersion {
    major: 1,
    minor: 22,
};

/// How many validation facts of the release's CRDs the cluster's API server
/// cannot take (CEL rules before 1.25, empty defaults before 1.22): none on
/// a cluster the release supports from 1.25. Objects those facts would
/// refuse or default are stored as they come.
pub fn omitted_facts(ctx: &Context<'_>) -> usize {
    objects_counting(ctx).1
}

/// Leaves out of a schema what the cluster's API server cannot take;
/// returns how many facts that was.
fn fit_to_cluster(kubernetes: KubeVersion, schema: &mut Value) -> usize {
    let mut omitted = 0;
    if kubernetes < CEL_FLOOR {
        omitted += keelson_crds::schema::strip_cel(schema);
    }
    if kubernetes < EMPTY_DEFAULT_FLOOR {
        omitted += strip_empty_defaults(schema);
    }
    omitted
}

fn strip_empty_defaults(schema: &mut Value) -> usize {
    let mut removed = 0;
    keelson_crds::schema::visit_mut(schema, &mut |node| {
        if node.get("default") == Some(&json!("")) {
            node.remove("default");
            removed += 1;
        }
    });
    removed
}

/// The CRDs of the release: Linkerd's, then Gateway API's if the spec asks
/// for them (`installGatewayApi`, else the release's default).
pub fn objects(ctx: &Context<'_>) -> Vec<Value> {
    objects_counting(ctx).0
}

/// The CRDs, and how many facts were left out of them for the cluster
/// ([`omitted_facts`]), counted as they are left out.
pub fn objects_counting(ctx: &Context<'_>) -> (Vec<Value>, usize) {
    let release = ctx.release;
    let gateway_api = ctx
        .spec
        .install_gateway_api
        .unwrap_or(release.install_gateway_api_by_default);
    let bundle = gateway_api.then_some(&release.gateway_api);
    let linkerd = release.crds.iter().map(|c| definition(ctx, c, None));
    let gateway = bundle
        .into_iter()
        .flat_map(|b| b.crds.iter().map(move |c| definition(ctx, c, Some(b))));
    linkerd
        .chain(gateway)
        .fold((Vec::new(), 0), |(mut out, total), (crd, omitted)| {
            out.push(crd);
            (out, total + omitted)
        })
}

/// One CRD: every served version's schema, merged, storage version marked;
/// and how many facts were left out of it for the cluster.
fn definition(
    ctx: &Context<'_>,
    entry: &CrdVersions,
    bundle: Option<&GatewayApiBundle>,
) -> (Value, usize) {
    let (group, kind) = (entry.group.as_str(), entry.kind.as_str());
    let versions = entry
        .versions
        .iter()
        .map(|v| {
            at_version(group, kind, v).unwrap_or_else(|| {
                panic!("no Rust type for {group}/{v} {kind} (the catalog tests check every entry)")
            })
        })
        .collect();
    let mut crd = kube::core::crd::merge_crds(versions, &entry.storage).unwrap_or_else(|e| {
        panic!("merging the versions of {group} {kind} (the catalog tests check every entry): {e}")
    });
    // merge_crds lists the storage version first; list them as the chart does.
    crd.spec
        .versions
        .sort_by_key(|v| entry.versions.iter().position(|name| *name == v.name));
    for v in &mut crd.spec.versions {
        if entry.deprecated.contains(&v.name) {
            v.deprecated = Some(true);
            v.deprecation_warning = Some(format!(
                "{group}/{} {kind} is deprecated; use {group}/{}",
                v.name, entry.storage
            ));
        }
    }
    let mut annotations = json!({"linkerd.io/created-by": ctx.created_by()});
    if let Some(bundle) = bundle {
        crd.spec.names.categories = Some(vec!["gateway-api".into()]);
        annotations["api-approved.kubernetes.io"] = bundle.api_approval.clone().into();
        annotations["gateway.networking.k8s.io/bundle-version"] =
            bundle.bundle_version.clone().into();
        annotations["gateway.networking.k8s.io/channel"] = bundle.channel.clone().into();
    }
    let name = crd.metadata.name.clone().expect("kube names every CRD");
    let mut object = serde_json::to_value(&crd).expect("a CRD serializes");
    object["metadata"] = ctx.meta(&name, Scope::Cluster, None);
    object["metadata"]["annotations"] = annotations;
    let bundle = bundle.map(|b| {
        gateway::Bundle::from_version(&b.bundle_version)
            .expect("a Gateway API bundle Keelson models (the catalog tests check every entry)")
    });
    let mut omitted = 0;
    for v in object["spec"]["versions"]
        .as_array_mut()
        .expect("a CRD has versions")
    {
        let schema = &mut v["schema"]["openAPIV3Schema"];
        sanitize(schema);
        if let Some(bundle) = bundle {
            bundle.adapt(kind, schema);
        }
        omitted += fit_to_cluster(ctx.kubernetes, schema);
    }
    (object, omitted)
}

/// The single-version CRD of `kind` at `version`, from the Rust type that
/// models that version's schema; versions Linkerd (or Gateway API) define
/// with the same schema share a type.
fn at_version(group: &str, kind: &str, version: &str) -> Option<CustomResourceDefinition> {
    let mut crd = match (group, kind, version) {
        ("policy.linkerd.io", "Server", "v1beta3") => policy::Server::crd(),
        ("policy.linkerd.io", "Server", "v1beta2") => policy::v1beta2::Server::crd(),
        ("policy.linkerd.io", "Server", "v1beta1") => policy::v1beta1::Server::crd(),
        ("policy.linkerd.io", "Server", "v1alpha1") => policy::v1alpha1::Server::crd(),
        ("policy.linkerd.io", "ServerAuthorization", "v1beta1") => {
            policy::ServerAuthorization::crd()
        }
        // The same schema as v1beta1, without its printer column.
        ("policy.linkerd.io", "ServerAuthorization", "v1alpha1") => {
            let mut crd = policy::ServerAuthorization::crd();
            crd.spec.versions[0].additional_printer_columns = None;
            crd
        }
        ("policy.linkerd.io", "AuthorizationPolicy", "v1alpha1") => {
            policy::AuthorizationPolicy::crd()
        }
        ("policy.linkerd.io", "MeshTLSAuthentication", "v1alpha1") => {
            policy::MeshTLSAuthentication::crd()
        }
        ("policy.linkerd.io", "NetworkAuthentication", "v1alpha1") => {
            policy::NetworkAuthentication::crd()
        }
        ("policy.linkerd.io", "HTTPRoute", "v1beta3") => linkerd_route(policy::HttpRoute::crd()),
        // v1beta3 without timeouts.
        ("policy.linkerd.io", "HTTPRoute", "v1beta2") => {
            let mut crd = linkerd_route(policy::HttpRoute::crd());
            edit_schema(&mut crd, |schema| {
                let rule = schema.pointer_mut("/properties/spec/properties/rules/items/properties");
                rule.and_then(Value::as_object_mut)
                    .expect("policy.linkerd.io HTTPRoute has rules")
                    .remove("timeouts");
            });
            crd
        }
        ("policy.linkerd.io", "HTTPRoute", "v1alpha1" | "v1beta1") => {
            linkerd_route(policy::httproute_v1beta1::HttpRoute::crd())
        }
        ("policy.linkerd.io", "HTTPLocalRateLimitPolicy", "v1alpha1") => {
            policy::HttpLocalRateLimitPolicy::crd()
        }
        ("policy.linkerd.io", "EgressNetwork", "v1alpha1") => policy::EgressNetwork::crd(),
        ("linkerd.io", "ServiceProfile", "v1alpha1" | "v1alpha2") => {
            let mut crd = serviceprofile::ServiceProfile::crd();
            let schema = schema_of(&mut crd);
            // Linkerd's schema does not require `spec` of a ServiceProfile;
            // its v1alpha1 requires `spec.routes`.
            schema.required = None;
            if version == "v1alpha1" {
                let spec = schema.properties.as_mut().and_then(|p| p.get_mut("spec"));
                spec.expect("a ServiceProfile has a spec").required = Some(vec!["routes".into()]);
            }
            crd
        }
        ("workload.linkerd.io", "ExternalWorkload", "v1beta1") => workload::ExternalWorkload::crd(),
        // v1alpha1 has a status, without the status subresource.
        ("workload.linkerd.io", "ExternalWorkload", "v1alpha1") => {
            let mut crd = workload::v1alpha1::ExternalWorkload::crd();
            crd.spec.versions[0].subresources = None;
            crd
        }
        ("gateway.networking.k8s.io", "HTTPRoute", "v1" | "v1beta1" | "v1alpha2") => {
            gateway::HttpRoute::crd()
        }
        ("gateway.networking.k8s.io", "GRPCRoute", "v1" | "v1alpha2") => {
            let mut crd = gateway::GrpcRoute::crd();
            // Gateway API's GRPCRoute schema does not require `spec`.
            schema_of(&mut crd).required = None;
            crd
        }
        ("gateway.networking.k8s.io", "TLSRoute", "v1alpha2") => gateway::TlsRoute::crd(),
        ("gateway.networking.k8s.io", "TCPRoute", "v1alpha2") => gateway::TcpRoute::crd(),
        _ => return None,
    };
    crd.spec.versions[0].name = version.into();
    Some(crd)
}

/// Linkerd's HTTPRoute shares Gateway API's route types, without their CEL
/// rules: Linkerd's schema states none.
fn linkerd_route(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    edit_schema(&mut crd, |schema| {
        keelson_crds::schema::strip_cel(schema);
    });
    crd
}

/// Edits the schema of a single-version CRD as JSON.
fn edit_schema(crd: &mut CustomResourceDefinition, edit: impl FnOnce(&mut Value)) {
    let mut schema = serde_json::to_value(&*schema_of(crd)).expect("a schema serializes");
    edit(&mut schema);
    *schema_of(crd) = serde_json::from_value(schema).expect("an edited schema deserializes");
}

/// The schema of a single-version CRD.
fn schema_of(crd: &mut CustomResourceDefinition) -> &mut JSONSchemaProps {
    let validation = crd.spec.versions[0].schema.as_mut();
    validation
        .and_then(|v| v.open_api_v3_schema.as_mut())
        .expect("kube generates a schema for every CRD")
}

/// Brings a generated schema to the form of Linkerd's chart:
/// - no `nullable`: schemars marks every `Option` field nullable, the chart
///   marks none. A non-nullable field's `null` is pruned by the API server;
///   a nullable one's is stored, and Linkerd's own controllers, whose Rust
///   types have no null, then fail to read the object;
/// - no `null` among an enum's values (schemars lists it for an optional
///   Rust enum), which the API server refuses;
/// - an int-or-string's `anyOf` keeps its alternatives' types (`integer`,
///   `string`), as Kubernetes' own quantity schema and Linkerd's state them;
///   kube's generator empties them.
fn sanitize(schema: &mut Value) {
    keelson_crds::schema::visit_mut(schema, &mut |node| {
        node.remove("nullable");
        if node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            && node.get("anyOf") == Some(&json!([{}, {}]))
        {
            node["anyOf"] = json!([{"type": "integer"}, {"type": "string"}]);
        }
        if let Some(Value::Array(values)) = node.get_mut("enum") {
            values.retain(|v| !v.is_null());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testutil::test_context;

    fn names(objects: &[Value]) -> Vec<&str> {
        objects
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn gateway_api_follows_the_spec_else_the_release_default() {
        let gateway = |spec: &str| {
            objects(&test_context(spec))
                .iter()
                .filter(|o| o["spec"]["group"] == "gateway.networking.k8s.io")
                .count()
        };
        assert_eq!(gateway("version: edge-24.11.8"), 4);
        assert_eq!(gateway("version: edge-25.4.4"), 4);
        assert_eq!(gateway("version: edge-25.10.7"), 0);
        assert_eq!(gateway("version: edge-25.10.7\ninstallGatewayApi: true"), 4);
        assert_eq!(gateway("version: edge-25.4.4\ninstallGatewayApi: false"), 0);
        let linkerd = objects(&test_context("version: edge-25.10.7"));
        assert!(names(&linkerd).contains(&"servers.policy.linkerd.io"));
        assert_eq!(linkerd.len(), 10);
    }

    fn at(spec: &str, minor: u32) -> Context<'static> {
        Context {
            kubernetes: KubeVersion { major: 1, minor },
            ..test_context(spec)
        }
    }

    fn rules_in(objects: &mut [Value]) -> usize {
        objects
            .iter_mut()
            .flat_map(|crd| crd["spec"]["versions"].as_array_mut().into_iter().flatten())
            .map(|v| keelson_crds::schema::strip_cel(&mut v["schema"]["openAPIV3Schema"]))
            .sum()
    }

    #[test]
    fn cel_rules_are_applied_from_kubernetes_1_25_and_counted_before() {
        let spec = "version: edge-25.10.7\ninstallGatewayApi: true";
        let rules = rules_in(&mut objects(&at(spec, 25)));
        // HTTPRoute 73 per served version (two), GRPCRoute 29 (two), TCPRoute
        // and TLSRoute 3: the v1.1.1 bundle's, as `crd-parity.sh` counts them
        // against Linkerd's chart (plus one duplicate HTTPRoute rule).
        assert_eq!(rules, 2 * 74 + 2 * 29 + 3 + 3);
        assert_eq!(omitted_facts(&at(spec, 25)), 0);
        assert_eq!(rules_in(&mut objects(&at(spec, 24))), 0);
        assert_eq!(omitted_facts(&at(spec, 24)), rules);
        // Before 1.22, empty `group` defaults go too: Gateway API's in
        // backendRefs and in request mirrors of rule and backend filters
        // (HTTPRoute and GRPCRoute, both served versions) and in TLSRoute's
        // and TCPRoute's backendRefs; Linkerd's HTTPRoute's in backendRefs
        // (v1beta2 and v1beta3).
        let linkerds = 2;
        let empty_defaults = 2 * 3 + 2 * 3 + 1 + 1 + linkerds;
        assert_eq!(omitted_facts(&at(spec, 20)), rules + empty_defaults);
        let at_1_20 = serde_json::to_string(&objects(&at(spec, 20))).unwrap();
        assert!(!at_1_20.contains(r#""default":"""#));
        // Linkerd's own CRDs state no CEL rules.
        assert_eq!(omitted_facts(&at("version: edge-25.10.7", 24)), 0);
        assert_eq!(omitted_facts(&at("version: edge-25.10.7", 20)), linkerds);
    }

    #[test]
    fn each_gateway_bundle_has_its_own_facts() {
        let rule = |version: &str, kind: &str| {
            let spec = format!("version: {version}\ninstallGatewayApi: true");
            let crd = objects(&at(&spec, 31))
                .into_iter()
                .find(|o| {
                    o["spec"]["names"]["kind"] == kind && o["spec"]["group"] != "policy.linkerd.io"
                })
                .unwrap();
            let storage = crd["spec"]["versions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["storage"] == true)
                .unwrap()
                .clone();
            storage["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["rules"]
                .clone()
        };
        // v1.1.1 keeps users' session persistence and timeouts; v0.7.1 has
        // neither, nor CEL rules, and gives GRPCRoute a default rule.
        let http = rule("edge-25.4.4", "HTTPRoute");
        let persistence = &http["items"]["properties"]["sessionPersistence"];
        assert_eq!(
            persistence["properties"]["type"]["enum"],
            json!(["Cookie", "Header"])
        );
        assert!(http["items"]["properties"]["timeouts"]["x-kubernetes-validations"].is_array());
        let old = rule("edge-24.11.8", "HTTPRoute");
        assert!(old["items"]["properties"]["sessionPersistence"].is_null());
        assert!(old["items"]["properties"]["timeouts"].is_null());
        assert!(old["items"]["x-kubernetes-validations"].is_null());
        assert!(rule("edge-25.4.4", "GRPCRoute")["default"].is_null());
        assert_eq!(
            rule("edge-24.11.8", "GRPCRoute")["default"],
            json!([{"matches": [{"method": {"type": "Exact"}}]}])
        );
    }

    #[test]
    fn linkerds_httproute_is_typed_per_version_without_cel() {
        let crd = objects(&at("version: edge-25.10.7", 31))
            .into_iter()
            .find(|o| o["metadata"]["name"] == "httproutes.policy.linkerd.io")
            .unwrap();
        let spec_of = |version: &str| {
            let v = crd["spec"]["versions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == version)
                .unwrap();
            v["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
        };
        for version in ["v1alpha1", "v1beta1", "v1beta2", "v1beta3"] {
            let spec = spec_of(version);
            let text = spec.to_string();
            // Rules were stored unvalidated and without defaults.
            assert!(
                !text.contains("x-kubernetes-preserve-unknown-fields"),
                "{version}"
            );
            assert!(!text.contains("x-kubernetes-validations"), "{version}");
            let rule = &spec["properties"]["rules"]["items"]["properties"];
            assert_eq!(
                rule["matches"]["items"]["properties"]["path"]["properties"]["type"]["enum"],
                json!(["Exact", "PathPrefix", "RegularExpression"]),
                "{version}"
            );
            assert_eq!(
                rule["filters"]["items"]["properties"]["type"]["enum"],
                json!(["RequestHeaderModifier", "RequestRedirect"]),
                "{version}"
            );
            assert_eq!(
                spec["properties"]["parentRefs"]["items"]["properties"]["group"]["default"],
                "policy.linkerd.io",
                "{version}"
            );
            let timeouts = &rule["timeouts"];
            assert_eq!(timeouts.is_null(), version != "v1beta3", "{version}");
            let backend = &rule["backendRefs"]["items"]["properties"];
            let legacy = matches!(version, "v1alpha1" | "v1beta1");
            assert_eq!(
                backend["namespace"]["default"] == "default",
                legacy,
                "{version}"
            );
            assert_eq!(backend["weight"].is_null(), legacy, "{version}");
        }
        let timeouts =
            &spec_of("v1beta3")["properties"]["rules"]["items"]["properties"]["timeouts"];
        assert_eq!(timeouts["properties"]["request"]["format"], "duration");
    }

    #[test]
    fn versions_follow_the_catalog_with_one_storage_version() {
        for release in crate::catalog::releases() {
            let spec = format!("version: {}\ninstallGatewayApi: true", release.version);
            let objects = objects(&test_context(&spec));
            let entries = release.crds.iter().chain(&release.gateway_api.crds);
            assert_eq!(objects.len(), entries.clone().count());
            for (object, entry) in objects.iter().zip(entries) {
                let at = format!("{} {}", release.version, object["metadata"]["name"]);
                assert_eq!(object["spec"]["names"]["kind"], entry.kind.as_str(), "{at}");
                assert_eq!(object["spec"]["group"], entry.group.as_str(), "{at}");
                let versions = object["spec"]["versions"].as_array().unwrap();
                let served: Vec<_> = versions
                    .iter()
                    .map(|v| v["name"].as_str().unwrap())
                    .collect();
                assert_eq!(served, entry.versions, "{at}");
                let storage: Vec<_> = versions
                    .iter()
                    .filter(|v| v["storage"] == true)
                    .map(|v| v["name"].as_str().unwrap())
                    .collect();
                assert_eq!(storage, [entry.storage.as_str()], "{at}");
                for v in versions {
                    assert_eq!(v["served"], true, "{at}");
                    let deprecated = entry.deprecated.iter().any(|d| *d == v["name"]);
                    assert_eq!(v["deprecated"] == true, deprecated, "{at} {}", v["name"]);
                }
            }
        }
    }

    #[test]
    fn crds_carry_linkerd_labels_and_keelson_ownership() {
        let objects = objects(&test_context("version: edge-25.4.4\nnamespace: mesh"));
        for o in &objects {
            let meta = &o["metadata"];
            assert_eq!(
                meta["labels"]["linkerd.io/control-plane-ns"], "mesh",
                "{meta}"
            );
            assert_eq!(
                meta["labels"][crate::render::CONTROL_PLANE_LABEL],
                crate::render::testutil::TEST_NAME
            );
            assert!(meta["annotations"]["linkerd.io/created-by"].is_string());
            let gateway = o["spec"]["group"] == "gateway.networking.k8s.io";
            // The API server refuses CRDs of *.k8s.io groups without it.
            assert_eq!(
                meta["annotations"]["api-approved.kubernetes.io"].is_string(),
                gateway,
                "{meta}"
            );
            if gateway {
                assert_eq!(
                    meta["annotations"]["gateway.networking.k8s.io/bundle-version"],
                    "v1.1.1"
                );
                assert_eq!(o["spec"]["names"]["categories"], json!(["gateway-api"]));
            }
        }
    }

    #[test]
    fn the_sanitizer_drops_null_and_nullable_at_any_depth() {
        let mut schema = json!({"type": "object", "properties": {
            "scheme": {"type": "string", "nullable": true, "enum": ["http", "https", null]},
            "list": {"type": "array", "items": {"type": "object", "properties": {
                "method": {"type": "string", "enum": [null, "GET"]}}}},
            "map": {"type": "object", "additionalProperties": {"type": "string", "enum": ["a", null]}},
            "either": {"type": "object", "oneOf": [{"required": ["x"]}], "anyOf": [{"enum": [null, 1]}]},
            "weight": {"x-kubernetes-int-or-string": true, "anyOf": [{}, {}]},
            // A property named like a keyword is a schema, not a keyword.
            "enum": {"type": "string", "enum": ["x", null]},
        }});
        sanitize(&mut schema);
        assert_eq!(
            schema,
            json!({"type": "object", "properties": {
                "scheme": {"type": "string", "enum": ["http", "https"]},
                "list": {"type": "array", "items": {"type": "object", "properties": {
                    "method": {"type": "string", "enum": ["GET"]}}}},
                "map": {"type": "object", "additionalProperties": {"type": "string", "enum": ["a"]}},
                "either": {"type": "object", "oneOf": [{"required": ["x"]}], "anyOf": [{"enum": [1]}]},
                "weight": {"x-kubernetes-int-or-string": true,
                    "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "enum": {"type": "string", "enum": ["x"]},
            }})
        );
    }

    /// What a 1.20 API server requires of a CRD schema: structural (every
    /// node typed, or int-or-string, or preserving unknown fields; one-of and
    /// any-of only as value checks, with no types or properties of their own,
    /// but for the one form int-or-string allows: `anyOf: [{type: integer},
    /// {type: string}]`), no `null` among enum values, no references.
    fn assert_accepted_by_1_20(node: &Value, at: &str) {
        let Some(obj) = node.as_object() else {
            panic!("schema at {at} is not an object: {node}")
        };
        let flag = |k: &str| obj.get(k) == Some(&Value::Bool(true));
        assert!(
            obj.contains_key("type")
                || flag("x-kubernetes-int-or-string")
                || flag("x-kubernetes-preserve-unknown-fields"),
            "untyped schema at {at}"
        );
        assert!(!obj.contains_key("$ref"), "reference at {at}");
        if let Some(values) = obj.get("enum").and_then(Value::as_array) {
            assert!(!values.contains(&Value::Null), "null in the enum at {at}");
        }
        let int_or_string_alternatives = flag("x-kubernetes-int-or-string")
            && obj.get("anyOf") == Some(&json!([{"type": "integer"}, {"type": "string"}]));
        for key in ["oneOf", "anyOf", "allOf"] {
            if key == "anyOf" && int_or_string_alternatives {
                continue;
            }
            for alt in obj.get(key).and_then(Value::as_array).into_iter().flatten() {
                for forbidden in ["type", "properties", "items", "additionalProperties"] {
                    assert!(
                        alt.get(forbidden).is_none(),
                        "{key} with {forbidden} at {at}"
                    );
                }
            }
        }
        for (name, child) in obj
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            assert_accepted_by_1_20(child, &format!("{at}.{name}"));
        }
        if let Some(items) = obj.get("items") {
            assert_accepted_by_1_20(items, &format!("{at}[]"));
        }
        if let Some(extra) = obj.get("additionalProperties").filter(|e| e.is_object()) {
            assert_accepted_by_1_20(extra, &format!("{at}{{}}"));
        }
    }

    #[test]
    fn every_rendered_schema_is_accepted_by_kubernetes_1_20() {
        for release in crate::catalog::releases() {
            let spec = format!("version: {}\ninstallGatewayApi: true", release.version);
            for crd in objects(&test_context(&spec)) {
                for v in crd["spec"]["versions"].as_array().unwrap() {
                    let at = format!("{} {}", crd["metadata"]["name"], v["name"]);
                    assert_accepted_by_1_20(&v["schema"]["openAPIV3Schema"], &at);
                }
            }
        }
    }
}
