//! Argo CD's view of Keelson's kinds: runs the health check Keelson ships
//! (`manifests/argocd/health.lua`) on a real object with a real Lua 5.1
//! interpreter (Debian's `lua5.1`; Argo CD's gopher-lua speaks 5.1), the
//! object given as a Lua table as Argo CD gives it.

use anyhow::{Context as _, bail};
use serde_json::Value;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The interpreter; `make lua` installs it (`make unit` and `make e2e` do).
pub const LUA: &str = "lua5.1";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/argocd/health.lua")
}

/// Argo CD's health of `object`: its status (`Healthy`, `Progressing`,
/// `Degraded`) and message.
pub fn health(object: &impl serde::Serialize) -> anyhow::Result<(String, String)> {
    let object = serde_json::to_value(object)?;
    let program = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua(&object),
        lua_string(&script().display().to_string()),
    );
    let mut child = Command::new(LUA)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {LUA} (`make lua` installs Debian's lua5.1)"))?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(program.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "the health check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    Ok((status.to_owned(), message.to_owned()))
}

/// A JSON value as a Lua table constructor (null fields are absent, as in
/// the table Argo CD builds).
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// A Lua string literal: every byte outside printable ASCII, and the quote
/// and backslash, as a decimal escape.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\{b:03}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn condition(type_: &str, status: &str, reason: &str) -> Value {
        json!({"type": type_, "status": status, "reason": reason, "message": format!("{reason} \"quoted\"\n\u{e9}"),
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 2})
    }

    fn object(observed: i64, conditions: Value) -> Value {
        json!({"apiVersion": "keelson.dev/v1alpha1", "kind": "DataPlane",
            "metadata": {"name": "apps", "generation": 2, "annotations": null},
            "status": {"observedGeneration": observed, "conditions": conditions}})
    }

    #[test]
    fn each_state_reads_as_argo_cd_should() {
        let ready = condition("Ready", "True", "UpToDate");
        let cases = [
            (object(1, json!([ready])), "Progressing"),
            (
                object(
                    2,
                    json!([ready, condition("Reconciling", "True", "Rolling")]),
                ),
                "Progressing",
            ),
            (
                object(
                    2,
                    json!([ready, condition("Stalled", "True", "RestartFailed")]),
                ),
                "Degraded",
            ),
            (
                object(
                    2,
                    json!([ready, condition("Stalled", "False", "AsExpected")]),
                ),
                "Healthy",
            ),
            (
                object(2, json!([condition("Ready", "False", "Lagging")])),
                "Progressing",
            ),
            (json!({"metadata": {"name": "new"}}), "Progressing"),
        ];
        for (object, want) in cases {
            let (status, message) = health(&object).unwrap();
            assert_eq!(status, want, "{object}: {message}");
        }
        let (_, message) = health(&object(2, json!([ready]))).unwrap();
        assert_eq!(message, "UpToDate: UpToDate \"quoted\"\n\u{e9}");
    }
}
