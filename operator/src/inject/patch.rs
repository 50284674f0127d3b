//! JSON Patch operations against the pod as submitted, in the order and
//! shape of Linkerd's `charts/patch/templates/patch.json`.

use serde::Serialize;

/// Appends one reference token of a JSON pointer (RFC 6901): `~` becomes
/// `~0` and `/` becomes `~1`, so an escaped `/` is not escaped again.
fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// A JSON Patch as the webhook sends it: the serialized operations.
#[derive(Clone, PartialEq, Eq)]
pub struct Patch(Vec<u8>);

impl Patch {
    /// The patch's JSON text.
    pub fn json(&self) -> &[u8] {
        &self.0
    }

    /// The operations, parsed: for tests that apply the patch.
    pub fn ops(&self) -> json_patch::Patch {
        serde_json::from_slice(&self.0).expect("Ops writes a JSON Patch")
    }
}

impl std::fmt::Debug for Patch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// `add` operations, written as JSON as they are added: the patch is built
/// without an intermediate tree (a pod's patch is ~8 KiB of JSON).
pub(super) struct Ops(Vec<u8>);

impl Default for Ops {
    fn default() -> Self {
        // Large enough for a whole patch, so writing never reallocates.
        Self(Vec::with_capacity(16 * 1024))
    }
}

impl Ops {
    /// Adds `value` at the location named by `tokens` (unescaped).
    pub(super) fn add(&mut self, tokens: &[&str], value: &impl Serialize) {
        #[derive(Serialize)]
        struct Add<'a, T> {
            op: &'static str,
            path: &'a str,
            value: &'a T,
        }
        let mut path = String::with_capacity(64);
        for token in tokens {
            push_token(&mut path, token);
        }
        self.0.push(if self.0.is_empty() { b'[' } else { b',' });
        serde_json::to_writer(
            &mut self.0,
            &Add {
                op: "add",
                path: &path,
                value,
            },
        )
        // Only maps with non-string keys or failing writers fail: the
        // values are Kubernetes types and strings, the writer memory.
        .expect("patch values serialize to JSON");
    }

    /// Adds `value`, JSON text already written, at the location named by
    /// `tokens`: the same bytes [`Ops::add`] writes for the value it came from.
    pub(super) fn add_json(&mut self, tokens: &[&str], value: &[u8]) {
        let mut path = String::with_capacity(64);
        for token in tokens {
            push_token(&mut path, token);
        }
        self.0.push(if self.0.is_empty() { b'[' } else { b',' });
        self.0.extend_from_slice(br#"{"op":"add","path":"#);
        serde_json::to_writer(&mut self.0, &path).expect("a string serializes");
        self.0.extend_from_slice(br#","value":"#);
        self.0.extend_from_slice(value);
        self.0.push(b'}');
    }

    pub(super) fn into_patch(mut self) -> Patch {
        if self.0.is_empty() {
            self.0.push(b'[');
        }
        self.0.push(b']');
        Patch(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_escape_tilde_before_slash() {
        let escape = |token: &str| {
            let mut pointer = String::new();
            push_token(&mut pointer, token);
            pointer
        };
        assert_eq!(escape("linkerd.io/inject"), "/linkerd.io~1inject");
        assert_eq!(escape("a~b"), "/a~0b");
        assert_eq!(escape("a~1/b"), "/a~01~1b");
        assert_eq!(escape("-"), "/-");
    }

    #[test]
    fn escaped_keys_land_on_the_literal_key() {
        let mut ops = Ops::default();
        for key in ["example.com/a~b", "x~1y", "plain"] {
            ops.add(&["metadata", "annotations", key], &key);
        }
        let patch = ops.into_patch().ops();
        assert_eq!(
            patch.0[0].to_string(),
            json!({"op": "add", "path": "/metadata/annotations/example.com~1a~0b", "value": "example.com/a~b"}).to_string()
        );
        let mut doc = json!({"metadata": {"annotations": {}}});
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(
            doc["metadata"]["annotations"],
            json!({"example.com/a~b": "example.com/a~b", "x~1y": "x~1y", "plain": "plain"})
        );
    }
}
