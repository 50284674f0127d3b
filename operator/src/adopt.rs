//! `keelson adopt`: the ControlPlane that reproduces a running Linkerd,
//! read from the chart values it was installed with (`linkerd-config`'s
//! `values` key, or a Helm values file), and each of those values Keelson
//! would render differently, named.
//!
//! Pure: the caller reads the values. The comparison covers the values
//! Keelson renders into `linkerd-config`; the others are counted, not
//! judged, so the report never claims more than it checked.

use crate::render::offline;
use keelson_crds::ControlPlane;
use serde_json::{Map, Value, json};

/// A running value Keelson would render otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Dotted path in the chart's values (`proxy.logLevel`).
    pub path: String,
    pub running: Value,
    /// What Keelson renders there; `None` where it renders nothing.
    pub keelson: Option<Value>,
}

/// What `keelson adopt` prints.
#[derive(Debug)]
pub struct Adopted {
    pub control_plane: ControlPlane,
    /// Compared values Keelson cannot reproduce.
    pub differences: Vec<Difference>,
    /// Values present that Keelson does not render, so were not compared.
    pub not_compared: Vec<String>,
}

/// Why values cannot be adopted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("the values are not a mapping")]
    NotAMapping,
    #[error("the values name no linkerdVersion, and --version was not given")]
    NoVersion,
    #[error(transparent)]
    Render(#[from] offline::OfflineError),
    #[error("the adopted spec is not a valid ControlPlane: {0}")]
    Spec(serde_json::Error),
}

/// Values that are identity material or bookkeeping, never settings:
/// adoption keeps the running anchors and issuer as they are.
const KEPT: &[&str] = &[
    "identityTrustAnchorsPEM",
    "identity.issuer.tls.crtPEM",
    "identity.issuer.crtExpiry",
    "cliVersion",
];

fn at<'a>(values: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(values, |v, key| v.get(key))
}

fn text(values: &Value, path: &str) -> Option<String> {
    at(values, path).and_then(Value::as_str).map(str::to_owned)
}

/// The ControlPlane `name` in `namespace` that reproduces `values` (a whole
/// values tree, or only the overrides a Helm values file holds), at
/// `version` when given, else at the values' `linkerdVersion`.
pub fn from_values(
    values: &Value,
    name: &str,
    namespace: &str,
    version: Option<&str>,
) -> Result<Adopted, AdoptError> {
    if !values.is_object() {
        return Err(AdoptError::NotAMapping);
    }
    let version = version
        .map(str::to_owned)
        .or_else(|| text(values, "linkerdVersion"))
        .ok_or(AdoptError::NoVersion)?;
    let mut spec = Map::new();
    spec.insert("version".into(), version.into());
    spec.insert("namespace".into(), namespace.into());
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            spec.insert(key.into(), value);
        }
    };
    put(
        "clusterDomain",
        text(values, "clusterDomain").map(Value::from),
    );
    put(
        "clusterNetworks",
        text(values, "clusterNetworks").map(|n| {
            n.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Value::from)
                .collect::<Vec<_>>()
                .into()
        }),
    );
    let ha = ["highAvailability", "enablePodAntiAffinity"]
        .iter()
        .any(|k| at(values, k).and_then(Value::as_bool) == Some(true));
    put("highAvailability", ha.then_some(Value::Bool(true)));
    // A mesh on Linkerd's CNI plugin stays on it: linkerd-init would need
    // capabilities its namespaces may forbid. The plugin's namespace is
    // taken only once handed over (`spec.cni.namespace`).
    put(
        "cni",
        (at(values, "cniEnabled").and_then(Value::as_bool) == Some(true)).then(|| json!({})),
    );

    let mut identity = Map::new();
    if let Some(domain) = text(values, "identityTrustDomain").filter(|d| !d.is_empty()) {
        identity.insert("trustDomain".into(), domain.into());
    }
    // An issuer another tool maintains (scheme kubernetes.io/tls) stays
    // External; one Linkerd's chart was given (linkerd.io/tls) is kept as it
    // is until Keelson rotates to an anchor it manages. (`externalCA` says
    // who writes the trust-roots ConfigMap, which Keelson always does: a
    // difference, not a mode.)
    let external = text(values, "identity.issuer.scheme").as_deref() == Some("kubernetes.io/tls");
    identity.insert(
        "issuer".into(),
        if external { "External" } else { "Managed" }.into(),
    );
    for (key, path) in [
        ("issuanceLifetime", "identity.issuer.issuanceLifetime"),
        ("clockSkewAllowance", "identity.issuer.clockSkewAllowance"),
    ] {
        if let Some(d) = text(values, path) {
            identity.insert(key.into(), d.into());
        }
    }
    spec.insert("identity".into(), identity.into());

    let mut proxy = Map::new();
    for (key, path) in [
        ("logLevel", "proxy.logLevel"),
        ("logFormat", "proxy.logFormat"),
        ("defaultInboundPolicy", "proxy.defaultInboundPolicy"),
    ] {
        if let Some(v) = text(values, path) {
            proxy.insert(key.into(), v.into());
        }
    }
    if let Some(a) = at(values, "proxy.await").and_then(Value::as_bool) {
        proxy.insert("await".into(), a.into());
    }
    if let Some(native) = at(values, "proxy.nativeSidecar").and_then(Value::as_bool) {
        proxy.insert(
            "nativeSidecar".into(),
            if native { "Enabled" } else { "Disabled" }.into(),
        );
    }
    if let Some(resources) = at(values, "proxy.resources").and_then(Value::as_object) {
        let mut out = Map::new();
        for (resource, bounds) in resources {
            let bound = |k: &str| {
                bounds
                    .get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            let mut b = Map::new();
            for k in ["request", "limit"] {
                if let Some(q) = bound(k) {
                    b.insert(k.into(), q.into());
                }
            }
            if !b.is_empty() {
                out.insert(resource.clone(), b.into());
            }
        }
        if !out.is_empty() {
            proxy.insert("resources".into(), out.into());
        }
    }
    if !proxy.is_empty() {
        spec.insert("proxy".into(), proxy.into());
    }
    if let Some(policy) = text(values, "webhookFailurePolicy") {
        spec.insert("webhook".into(), json!({"failurePolicy": policy}));
    }
    // What makes Keelson take the installation over instead of standing
    // aside (`controlplane::adoption`).
    spec.insert("adoption".into(), json!({}));

    let control_plane: ControlPlane = serde_json::from_value(json!({
        "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
        "metadata": {"name": name}, "spec": spec,
    }))
    .map_err(AdoptError::Spec)?;
    let anchors = text(values, "identityTrustAnchorsPEM").unwrap_or_default();
    let keelson = offline::config_values(&control_plane, &anchors)?;
    let (mut differences, mut not_compared) = (Vec::new(), Vec::new());
    compare(values, &keelson, "", &mut differences, &mut not_compared);
    Ok(Adopted {
        control_plane,
        differences,
        not_compared,
    })
}

/// Walks the running values' leaves against Keelson's.
fn compare(
    running: &Value,
    keelson: &Value,
    path: &str,
    differences: &mut Vec<Difference>,
    not_compared: &mut Vec<String>,
) {
    if KEPT.contains(&path) {
        return;
    }
    match (running, keelson) {
        (Value::Object(r), Value::Object(k)) => {
            for (key, value) in r {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(theirs) => compare(value, theirs, &path, differences, not_compared),
                    None if KEPT.contains(&path.as_str()) => {}
                    None => not_compared.push(path),
                }
            }
        }
        (r, k) if same(r, k) => {}
        (r, k) => differences.push(Difference {
            path: path.to_owned(),
            running: r.clone(),
            keelson: Some(k.clone()),
        }),
    }
}

/// Equal, or equal as the chart writes them (numbers as strings, an empty
/// value for an unset one).
fn same(a: &Value, b: &Value) -> bool {
    let loose = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    a == b || loose(a) == loose(b)
}

/// The manifest `keelson adopt` prints: the differences as comments above
/// the ControlPlane.
pub fn manifest(adopted: &Adopted) -> String {
    let mut out =
        String::from("# Generated by `keelson adopt`. Commit it, review it, then apply it.\n");
    if adopted.differences.is_empty() {
        out.push_str("# Every compared value is reproduced.\n");
    } else {
        out.push_str(
            "# Values the running installation has that this ControlPlane does not reproduce:\n",
        );
        for d in &adopted.differences {
            let keelson = d
                .keelson
                .as_ref()
                .map_or("nothing".to_owned(), Value::to_string);
            out.push_str(&format!(
                "#   {}: running {}, Keelson renders {keelson}\n",
                d.path, d.running
            ));
        }
    }
    if !adopted.not_compared.is_empty() {
        out.push_str(&format!(
            "# {} other values were not compared (Keelson does not render them): {}\n",
            adopted.not_compared.len(),
            adopted.not_compared.join(", ")
        ));
    }
    out.push_str(
        &yaml_serde::to_string(&adopted.control_plane).expect("a ControlPlane serializes"),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values as a Keelson-rendered linkerd-config holds them.
    fn rendered(version: &str, extra: Value) -> Value {
        let mut spec = json!({"version": version, "namespace": "linkerd"});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let cp: ControlPlane = serde_json::from_value(json!({
            "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
            "metadata": {"name": "linkerd"}, "spec": spec,
        }))
        .unwrap();
        offline::config_values(
            &cp,
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        )
        .unwrap()
    }

    #[test]
    fn values_keelson_rendered_are_reproduced_exactly() {
        for extra in [
            json!({}),
            json!({"highAvailability": true, "clusterDomain": "example.org",
                   "identity": {"trustDomain": "mesh.example.org", "issuanceLifetime": "48h0m0s"},
                   "proxy": {"logLevel": "debug", "resources": {"cpu": {"request": "100m"}},
                             "defaultInboundPolicy": "all-authenticated"},
                   "webhook": {"failurePolicy": "Fail"}}),
        ] {
            let values = rendered("edge-25.4.4", extra.clone());
            let adopted = from_values(&values, "linkerd", "linkerd", None).unwrap();
            assert_eq!(adopted.differences, [], "{extra}");
            assert_eq!(adopted.not_compared, Vec::<String>::new(), "{extra}");
            assert_eq!(adopted.control_plane.spec.version, "edge-25.4.4");
        }
    }

    #[test]
    fn what_keelson_cannot_reproduce_is_named() {
        let mut values = rendered("edge-25.4.4", json!({}));
        values["proxyInit"]["ignoreOutboundPorts"] = "4567,4568,25".into();
        values["controllerLogLevel"] = "debug".into();
        values["podAnnotations"] = json!({"team": "mesh"});
        let adopted = from_values(&values, "linkerd", "linkerd", None).unwrap();
        let paths: Vec<&str> = adopted
            .differences
            .iter()
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(
            paths,
            ["controllerLogLevel", "proxyInit.ignoreOutboundPorts"]
        );
        // Keelson renders the chart's `podAnnotations: {}`, not its entries.
        assert_eq!(adopted.not_compared, ["podAnnotations.team"]);
        let text = manifest(&adopted);
        assert!(text.contains("#   proxyInit.ignoreOutboundPorts: running \"4567,4568,25\", Keelson renders \"4567,4568\""), "{text}");
        assert!(text.contains("kind: ControlPlane"), "{text}");
    }

    #[test]
    fn a_helm_values_file_of_overrides_maps_onto_the_spec() {
        // What a user passes to `helm install linkerd-control-plane -f`.
        let file: Value = yaml_serde::from_str(
            "identityTrustDomain: prod.example.org\n\
             identity:\n  externalCA: true\n  issuer:\n    scheme: kubernetes.io/tls\n\
             proxy:\n  nativeSidecar: true\n  await: false\n\
             enablePodAntiAffinity: true\n",
        )
        .unwrap();
        let adopted = from_values(&file, "mesh", "linkerd", Some("edge-25.10.7")).unwrap();
        let spec = &adopted.control_plane.spec;
        assert!(spec.cni.is_none());
        let mut on_cni = file.clone();
        on_cni["cniEnabled"] = true.into();
        let cni = from_values(&on_cni, "mesh", "linkerd", Some("edge-25.10.7")).unwrap();
        assert_eq!(
            cni.control_plane.spec.cni,
            Some(keelson_crds::controlplane::CniSpec::default())
        );
        assert_eq!(spec.trust_domain(), "prod.example.org");
        assert_eq!(
            spec.identity.issuer,
            keelson_crds::controlplane::IssuerMode::External
        );
        assert!(spec.high_availability && !spec.proxy.r#await);
        assert_eq!(
            spec.proxy.native_sidecar,
            keelson_crds::controlplane::NativeSidecar::Enabled
        );
        // trust-manager, say, writes the trust roots: Keelson cannot leave
        // them to it.
        let paths: Vec<&str> = adopted
            .differences
            .iter()
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(paths, ["identity.externalCA"]);
        assert!(matches!(
            from_values(&json!({}), "mesh", "linkerd", None),
            Err(AdoptError::NoVersion)
        ));
    }
}
