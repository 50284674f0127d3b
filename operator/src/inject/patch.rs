//! JSON Patch operations against the pod as submitted, in the order and
//! shape of Linkerd's `charts/patch/templates/patch.json`.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::Value;

/// One reference token of a JSON pointer (RFC 6901): `~` becomes `~0` and
/// `/` becomes `~1`, in that order so an escaped `/` is not escaped again.
pub(super) fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// `add` operations, collected in order.
#[derive(Default)]
pub(super) struct Ops(Vec<PatchOperation>);

impl Ops {
    /// Adds `value` at the location named by `tokens` (unescaped).
    pub(super) fn add(&mut self, tokens: &[&str], value: Value) {
        let pointer: String = tokens.iter().map(|t| format!("/{}", escape(t))).collect();
        let path = PointerBuf::parse(pointer).expect("escaped tokens form a valid pointer");
        self.0
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    pub(super) fn into_patch(self) -> Patch {
        Patch(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_escape_tilde_before_slash() {
        assert_eq!(escape("linkerd.io/inject"), "linkerd.io~1inject");
        assert_eq!(escape("a~b"), "a~0b");
        assert_eq!(escape("a~1/b"), "a~01~1b");
        assert_eq!(escape("-"), "-");
    }

    #[test]
    fn escaped_keys_land_on_the_literal_key() {
        let mut ops = Ops::default();
        for key in ["example.com/a~b", "x~1y", "plain"] {
            ops.add(&["metadata", "annotations", key], json!(key));
        }
        let patch = ops.into_patch();
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
