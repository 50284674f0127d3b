//! Maintainer tasks (`cargo xtask --help`); `inject-parity` is in
//! [`inject_parity`].
//!
//! `cargo xtask import-release --linkerd2 <checkout> <tag>`
//! reads a Linkerd release from a local linkerd2 checkout (bare or not) and
//! prints what adding it to the catalog takes:
//!
//! 1. the entry for `operator/src/catalog/releases.yaml`: the stable minor
//!    (a `version-2.N` tag's N; for an edge, one more than the newest
//!    `version-2.N` tagged before it), images and versions, the Kubernetes
//!    floor, the CRD set with served, storage and deprecated versions, the
//!    Gateway API bundle, the iptables mode, the native-sidecar default, and
//!    the `features` of the catalog entry before it (Keelson's own flags,
//!    cumulative: a new one is added by hand where the report shows a
//!    rendering change no `since` gate covers);
//! 2. the chart defaults that changed since the previous catalog entry (a
//!    flipped default is a rendering change);
//! 3. every change in install-relevant upstream files since that entry,
//!    each with the Keelson code that encodes it, for review.
//!
//! With `--check` it prints nothing of that and instead compares the entry
//! with the one the catalog has for the version, field by field (CRDs as
//! sets), failing on any difference: a committed entry is reproducible.
//!
//! Nothing of upstream's is written to the tree: the entry is printed, in
//! Keelson's own format, for a maintainer to review and paste; the Rust the
//! report points at is then changed by hand, and `make golden`,
//! `make strict`, `e2e/hack/crd-parity.sh` and `e2e/hack/config-parity.sh`
//! check the result.

mod inject_parity;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;
use std::process::Command;
use yaml_serde::Value;

#[derive(Parser)]
#[command(about = "Keelson's maintainer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Print the catalog entry for a Linkerd release and what changed
    /// upstream since the newest catalog entry (or --previous).
    ImportRelease {
        /// A linkerd2 clone with its tags (a bare mirror is fine).
        #[arg(long)]
        linkerd2: PathBuf,
        /// The tag to import: `edge-26.8.3`, or `version-2.20` (imported
        /// under the edge tag it was cut from, given as --as).
        tag: String,
        /// The catalog version to record (defaults to the tag).
        #[arg(long = "as")]
        version: Option<String>,
        /// The tag to compare with (defaults to the newest catalog entry).
        #[arg(long)]
        previous: Option<String>,
        /// Compare the entry with the catalog's for the version instead of
        /// printing it; fail on a difference.
        #[arg(long)]
        check: bool,
    },
    /// Compare Keelson's injector with Linkerd's injector test data at
    /// catalog tags (every catalog release by default).
    InjectParity {
        /// A linkerd2 clone with its tags (a bare mirror is fine).
        #[arg(long)]
        linkerd2: PathBuf,
        tags: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::ImportRelease {
            linkerd2,
            tag,
            version,
            previous,
            check,
        } => {
            let repo = Repo(linkerd2);
            let previous = previous.unwrap_or_else(|| {
                let releases = keelson_operator::catalog::releases();
                releases.last().expect("a catalog").version.to_string()
            });
            let version = version.unwrap_or_else(|| tag.clone());
            let release = read_release(&repo, &tag, &version)?;
            if check {
                return check_entry(&entry(&release));
            }
            print!("{}", entry(&release));
            print!("{}", flipped_defaults(&repo, &previous, &tag)?);
            print!("{}", changed_files(&repo, &previous, &tag)?);
            Ok(())
        }
        Task::InjectParity { linkerd2, tags } => inject_parity::run(&Repo(linkerd2), &tags),
    }
}

/// A linkerd2 checkout, read with git at any tag.
struct Repo(PathBuf);

impl Repo {
    fn git(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.0)
            .args(args)
            .output()
            .context("running git")?;
        if !out.status.success() {
            bail!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    fn show(&self, tag: &str, path: &str) -> Result<String> {
        self.git(&["show", &format!("{tag}:{path}")])
    }

    fn files(&self, tag: &str, dir: &str) -> Result<Vec<String>> {
        Ok(self
            .git(&["ls-tree", "-r", "--name-only", tag, dir])?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    fn yaml(&self, tag: &str, path: &str) -> Result<Value> {
        yaml_serde::from_str(&self.show(tag, path)?).with_context(|| format!("{path} at {tag}"))
    }
}

/// What the catalog records of a release.
struct Release {
    version: String,
    stable_minor: u32,
    floor: String,
    images: BTreeMap<&'static str, String>,
    crds: Vec<Crd>,
    gateway: Vec<Crd>,
    bundle: BTreeMap<&'static str, String>,
    install_gateway_api: bool,
    iptables_mode: String,
    native_sidecar: bool,
    /// Carried from the catalog entry before, and which one that is.
    features: Option<(String, Vec<String>)>,
}

/// One CRD of the chart: its kind and versions.
struct Crd {
    group: String,
    kind: String,
    versions: Vec<String>,
    storage: String,
    deprecated: Vec<String>,
}

const CONTROL_PLANE: &str = "charts/linkerd-control-plane";
const CRDS: &str = "charts/linkerd-crds";

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn text(v: &Value, path: &str) -> String {
    at(v, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn read_release(repo: &Repo, tag: &str, version: &str) -> Result<Release> {
    let chart = repo.yaml(tag, &format!("{CONTROL_PLANE}/Chart.yaml"))?;
    let floor = text(&chart, "kubeVersion");
    let floor = floor
        .trim_start_matches(">=")
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    let values = repo.yaml(tag, &format!("{CONTROL_PLANE}/values.yaml"))?;
    // Images without a version run at the release's (`linkerdVersion`): the
    // edge tag, also for a stable tag cut from it.
    let image = |name: &str, pinned: &str| {
        let version = if pinned.is_empty() { version } else { pinned };
        format!("{name}:{version}")
    };
    let mut images = BTreeMap::new();
    images.insert("controller", image(&text(&values, "controllerImage"), ""));
    images.insert("proxy", image(&text(&values, "proxy.image.name"), ""));
    let cni = repo.yaml(tag, "charts/linkerd2-cni/values.yaml")?;
    images.insert(
        "cniPlugin",
        image(&text(&cni, "image.name"), &text(&cni, "image.version")),
    );
    // Keelson's CNI mode defaults the plugin's iptables variant to the
    // release's (`proxyInit.iptablesMode`); say so where the charts differ.
    let (init_mode, cni_mode) = (
        text(&values, "proxyInit.iptablesMode"),
        text(&cni, "iptablesMode"),
    );
    if init_mode != cni_mode {
        eprintln!(
            "warning: {tag}: linkerd2-cni iptablesMode {cni_mode:?} differs from proxyInit.iptablesMode {init_mode:?}; render/cni.rs assumes they agree"
        );
    }
    if at(&values, "proxyInit.image").is_some() {
        let init = image(
            &text(&values, "proxyInit.image.name"),
            &text(&values, "proxyInit.image.version"),
        );
        images.insert("proxyInit", init);
    }
    if at(&values, "policyController.image").is_some() {
        let policy = image(&text(&values, "policyController.image.name"), "");
        images.insert("policyController", policy);
    }
    let crd_values = repo.yaml(tag, &format!("{CRDS}/values.yaml"))?;
    // Before `installGatewayAPI` (edge-25.x), enable*Routes (all true).
    let install_gateway_api = at(&crd_values, "installGatewayAPI")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let (mut crds, mut gateway, mut bundle) = (Vec::new(), Vec::new(), BTreeMap::new());
    for path in repo.files(tag, &format!("{CRDS}/templates"))? {
        if !path.ends_with(".yaml") {
            continue;
        }
        for doc in template_documents(&repo.show(tag, &path)?) {
            if text(&doc, "kind") != "CustomResourceDefinition" {
                continue;
            }
            let crd = crd_of(&doc).with_context(|| path.clone())?;
            if crd.group == "gateway.networking.k8s.io" {
                let annotations = at(&doc, "metadata.annotations");
                for (key, annotation) in [
                    ("bundleVersion", "gateway.networking.k8s.io/bundle-version"),
                    ("channel", "gateway.networking.k8s.io/channel"),
                    ("apiApproval", "api-approved.kubernetes.io"),
                ] {
                    let value = annotations.and_then(|a| a.get(annotation));
                    let value = value.and_then(Value::as_str).unwrap_or_default();
                    bundle.insert(key, value.to_owned());
                }
                gateway.push(crd);
            } else {
                crds.push(crd);
            }
        }
    }
    Ok(Release {
        version: version.to_owned(),
        stable_minor: stable_minor(repo, tag)?,
        floor,
        images,
        crds,
        gateway,
        bundle,
        install_gateway_api,
        iptables_mode: text(&values, "proxyInit.iptablesMode"),
        native_sidecar: at(&values, "proxy.nativeSidecar")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        features: carried_features(version)?,
    })
}

/// The stable minor a tag is (`version-2.20`: 20) or leads up to (an edge:
/// one more than the newest `version-2.N` tagged before it).
fn stable_minor(repo: &Repo, tag: &str) -> Result<u32> {
    let minor = |name: &str| -> Option<u32> { name.strip_prefix("version-2.")?.parse().ok() };
    if let Some(n) = minor(tag) {
        return Ok(n);
    }
    let dated = |refs: &str| -> Result<Vec<(String, i64)>> {
        let out = repo.git(&[
            "for-each-ref",
            "--format=%(refname:short) %(creatordate:unix)",
            refs,
        ])?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (name, date) = l.split_once(' ')?;
                Some((name.to_owned(), date.parse().ok()?))
            })
            .collect())
    };
    let (_, at) = dated(&format!("refs/tags/{tag}"))?
        .into_iter()
        .next()
        .with_context(|| format!("no tag {tag}"))?;
    let newest = dated("refs/tags/version-2.*")?
        .into_iter()
        .filter(|(_, date)| *date < at)
        .filter_map(|(name, _)| minor(&name))
        .max()
        .with_context(|| format!("no stable release tagged before {tag}"))?;
    Ok(newest + 1)
}

/// The `features` of the newest catalog entry before `version`.
fn carried_features(version: &str) -> Result<Option<(String, Vec<String>)>> {
    let v: keelson_operator::catalog::Version = version.parse()?;
    let before = keelson_operator::catalog::releases()
        .iter()
        .rev()
        .find(|r| r.version < v);
    Ok(before.map(|r| {
        let names = r
            .features
            .iter()
            // As releases.yaml spells them.
            .map(|f| {
                serde_json::to_value(f)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .expect("features serialize as strings")
            })
            .collect();
        (r.version.to_string(), names)
    }))
}

/// Compares a printed entry with the catalog's entry of its version.
fn check_entry(printed: &str) -> Result<()> {
    use keelson_operator::catalog::{self, Release as Entry};
    let imported: Vec<Entry> = yaml_serde::from_str(printed).context("the printed entry")?;
    let imported = imported.first().context("no entry printed")?;
    let committed = catalog::find(&imported.version.to_string())?;
    let facts = |r: &Entry| -> BTreeMap<String, String> {
        let crds = |list: &[catalog::CrdVersions]| {
            let mut lines: Vec<String> = list
                .iter()
                .map(|c| {
                    format!(
                        "{}/{} {:?} storage {} deprecated {:?}",
                        c.group, c.kind, c.versions, c.storage, c.deprecated
                    )
                })
                .collect();
            lines.sort();
            lines.join("; ")
        };
        let g = &r.gateway_api;
        BTreeMap::from([
            ("stableMinor".into(), r.stable_minor.to_string()),
            ("kubernetesFloor".into(), r.kubernetes_floor.to_string()),
            ("images.controller".into(), r.images.controller.clone()),
            ("images.proxy".into(), r.images.proxy.clone()),
            ("images.cniPlugin".into(), r.images.cni_plugin.clone()),
            (
                "images.proxyInit".into(),
                format!("{:?}", r.images.proxy_init),
            ),
            (
                "images.policyController".into(),
                format!("{:?}", r.images.policy_controller),
            ),
            ("crds".into(), crds(&r.crds)),
            (
                "gatewayApi".into(),
                format!("{} {} {}", g.bundle_version, g.channel, g.api_approval),
            ),
            ("gatewayApi.crds".into(), crds(&g.crds)),
            (
                "installGatewayApiByDefault".into(),
                r.install_gateway_api_by_default.to_string(),
            ),
            ("iptablesMode".into(), r.iptables_mode.clone()),
            (
                "nativeSidecarByDefault".into(),
                r.native_sidecar_by_default.to_string(),
            ),
            ("features".into(), format!("{:?}", r.features)),
        ])
    };
    let (ours, theirs) = (facts(imported), facts(committed));
    let differing: Vec<&String> = ours.keys().filter(|k| ours[*k] != theirs[*k]).collect();
    for key in &differing {
        println!(
            "# {key}: imported {} / catalog {}",
            ours[*key], theirs[*key]
        );
    }
    if !differing.is_empty() {
        bail!(
            "{} of {} fields of {} differ from the catalog",
            differing.len(),
            ours.len(),
            imported.version
        );
    }
    println!(
        "# {}: the importer reproduces the catalog entry ({} fields)",
        imported.version,
        ours.len()
    );
    Ok(())
}

/// The YAML documents of a chart template, with its template actions made
/// inert: a line that is only an action goes, an inline action becomes a
/// placeholder. Enough for the CRD templates, whose structure is static.
fn template_documents(template: &str) -> Vec<Value> {
    let mut plain = String::new();
    for line in template.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("{{") && trimmed.ends_with("}}") {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            plain.push_str(&rest[..start]);
            plain.push_str("templated");
            rest = rest[start..]
                .find("}}")
                .map_or("", |end| &rest[start + end + 2..]);
        }
        plain.push_str(rest);
        plain.push('\n');
    }
    plain
        .split("\n---")
        .filter_map(|doc| yaml_serde::from_str(doc).ok())
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

fn crd_of(doc: &Value) -> Result<Crd> {
    let (mut versions, mut storage, mut deprecated) = (Vec::new(), String::new(), Vec::new());
    let listed = at(doc, "spec.versions").and_then(Value::as_sequence);
    for v in listed.context("a CRD without versions")? {
        let name = text(v, "name");
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage = name.clone();
        }
        if v.get("deprecated").and_then(Value::as_bool) == Some(true) {
            deprecated.push(name.clone());
        }
        versions.push(name);
    }
    Ok(Crd {
        group: text(doc, "spec.group"),
        kind: text(doc, "spec.names.kind"),
        versions,
        storage,
        deprecated,
    })
}

/// The entry in `releases.yaml`'s own format.
fn entry(r: &Release) -> String {
    let crd_line = |c: &Crd| {
        let mut line = format!(
            "    - {{group: {}, kind: {}, versions: [{}], storage: {}",
            c.group,
            c.kind,
            c.versions.join(", "),
            c.storage
        );
        if !c.deprecated.is_empty() {
            let _ = write!(line, ", deprecated: [{}]", c.deprecated.join(", "));
        }
        line + "}\n"
    };
    let mut out =
        String::from("# The entry for operator/src/catalog/releases.yaml (review it: `features`\n");
    out.push_str("# are Keelson's; read the report below for a rendering change they miss).\n");
    let _ = writeln!(out, "- version: {}", r.version);
    let _ = writeln!(out, "  stableMinor: {}", r.stable_minor);
    let _ = writeln!(out, "  kubernetesFloor: \"{}\"", r.floor);
    out.push_str("  images:\n");
    for key in [
        "controller",
        "proxy",
        "cniPlugin",
        "proxyInit",
        "policyController",
    ] {
        if let Some(image) = r.images.get(key) {
            let _ = writeln!(out, "    {key}: {image}");
        }
    }
    out.push_str("  crds:\n");
    r.crds.iter().for_each(|c| out.push_str(&crd_line(c)));
    out.push_str("  gatewayApi:\n");
    for key in ["bundleVersion", "channel", "apiApproval"] {
        let _ = writeln!(
            out,
            "    {key}: {}",
            r.bundle.get(key).cloned().unwrap_or_default()
        );
    }
    out.push_str("    crds:\n");
    r.gateway
        .iter()
        .for_each(|c| out.push_str(&format!("  {}", crd_line(c))));
    let _ = writeln!(
        out,
        "  installGatewayApiByDefault: {}",
        r.install_gateway_api
    );
    let _ = writeln!(out, "  iptablesMode: {}", r.iptables_mode);
    let _ = writeln!(out, "  nativeSidecarByDefault: {}", r.native_sidecar);
    match &r.features {
        Some((from, names)) => {
            let _ = writeln!(out, "  # carried from {from}");
            let _ = writeln!(out, "  features: [{}]", names.join(", "));
        }
        None => out.push_str("  features: []\n"),
    }
    out.push('\n');
    out
}

/// The scalar chart defaults (`values.yaml`) that differ between two tags.
fn flipped_defaults(repo: &Repo, previous: &str, tag: &str) -> Result<String> {
    fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, String>) {
        match v {
            Value::Mapping(map) if !map.is_empty() => {
                for (k, v) in map {
                    let key = k
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("{k:?}"));
                    leaves(v, &format!("{prefix}{key}."), out);
                }
            }
            other => {
                let text = serde_json::to_string(other).unwrap_or_default();
                out.insert(prefix.trim_end_matches('.').to_owned(), text);
            }
        }
    }
    let mut out = format!("# Chart defaults (values.yaml) from {previous} to {tag}\n");
    for chart in [CONTROL_PLANE, CRDS] {
        let path = format!("{chart}/values.yaml");
        let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
        leaves(&repo.yaml(previous, &path)?, "", &mut before);
        leaves(&repo.yaml(tag, &path)?, "", &mut after);
        for key in before
            .keys()
            .chain(after.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            match (before.get(key), after.get(key)) {
                (Some(a), Some(b)) if a != b => {
                    let _ = writeln!(out, "#   {chart}: {key}: {a} -> {b}");
                }
                (Some(a), None) => {
                    let _ = writeln!(out, "#   {chart}: {key}: {a} -> (gone)");
                }
                (None, Some(b)) => {
                    let _ = writeln!(out, "#   {chart}: {key}: (new) {b}");
                }
                _ => {}
            }
        }
    }
    out.push_str("#   (linkerd-config follows: render/config.rs `chart_defaults`)\n\n");
    Ok(out)
}

/// Upstream paths that decide what Keelson renders, injects or admits, and
/// the Keelson code that encodes each.
const RELEVANT: &[(&str, &str)] = &[
    (
        "charts/linkerd-crds/",
        "crds/src/ (policy, workload, serviceprofile, gateway); e2e/hack/crd-parity.sh",
    ),
    (
        "charts/partials/templates/_proxy.tpl",
        "operator/src/render/proxy.rs, operator/src/inject/",
    ),
    (
        "charts/partials/templates/_proxy-init.tpl",
        "operator/src/render/proxy.rs (init container)",
    ),
    (
        "charts/partials/templates/_network-validator.tpl",
        "operator/src/render/proxy.rs (CNI mode)",
    ),
    ("charts/partials/", "operator/src/render/ (shared partials)"),
    (
        "charts/linkerd-control-plane/values",
        "operator/src/render/config.rs (chart_defaults); e2e/hack/config-parity.sh",
    ),
    (
        "charts/linkerd-control-plane/templates/",
        "operator/src/render/ (the template's counterpart)",
    ),
    (
        "charts/linkerd-control-plane/Chart.yaml",
        "releases.yaml kubernetesFloor",
    ),
    ("charts/linkerd2-cni/", "CNI mode (issue 19)"),
    ("pkg/inject/", "operator/src/inject/"),
    ("controller/webhook/", "operator/src/admission/"),
    (
        "controller/proxy-injector/",
        "operator/src/inject/, operator/tests/inject_golden.rs",
    ),
    (
        "policy-controller/runtime/src/admission.rs",
        "operator/src/policy/validate.rs",
    ),
    ("policy-controller/k8s/api/", "crds/src/policy/"),
];

fn changed_files(repo: &Repo, previous: &str, tag: &str) -> Result<String> {
    let paths: Vec<&str> = RELEVANT.iter().map(|(p, _)| *p).collect();
    let range = format!("{previous}..{tag}");
    let mut args = vec!["diff", "--numstat", &range, "--"];
    args.extend(paths.iter().copied());
    let stat = repo.git(&args)?;
    let mut out = format!("# Install-relevant upstream changes from {previous} to {tag}\n");
    if stat.trim().is_empty() {
        out.push_str("#   none\n");
    }
    for line in stat.lines() {
        let mut parts = line.split('\t');
        let (added, removed, path) = (parts.next(), parts.next(), parts.next());
        let (Some(added), Some(removed), Some(path)) = (added, removed, path) else {
            continue;
        };
        let keelson = RELEVANT
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map_or("", |(_, keelson)| *keelson);
        let _ = writeln!(out, "#   +{added} -{removed} {path}\n#       -> {keelson}");
    }
    let _ = writeln!(
        out,
        "#   (git -C <checkout> diff {range} -- <path> shows each)"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_actions_are_made_inert() {
        let template = "{{- if .Values.enableHttpRoutes }}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  annotations:\n    {{ include \"partials.annotations.created-by\" . }}\n    gateway.networking.k8s.io/bundle-version: v1.1.1\n  labels:\n    helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}\nspec:\n  group: gateway.networking.k8s.io\n  names: {kind: HTTPRoute}\n  versions:\n  - {name: v1, storage: true}\n  - {name: v1beta1, deprecated: true}\n{{- end }}\n";
        let docs = template_documents(template);
        assert_eq!(docs.len(), 1);
        let crd = crd_of(&docs[0]).unwrap();
        assert_eq!(crd.kind, "HTTPRoute");
        assert_eq!(crd.versions, ["v1", "v1beta1"]);
        assert_eq!(crd.storage, "v1");
        assert_eq!(crd.deprecated, ["v1beta1"]);
        let labels = at(&docs[0], "metadata.labels").unwrap();
        assert_eq!(
            labels.get("helm.sh/chart").and_then(Value::as_str),
            Some("templated-templated")
        );
    }
}
