//! A JSON object kept as it is, for the deep parts of Linkerd's schemas that
//! Keelson never reads (route matches and filters, ServiceProfile conditions).
//! The API server stores such a part unvalidated; Linkerd's own controllers
//! and admission webhook validate it, as they do for objects made with
//! Linkerd's chart.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// An object whose fields the schema does not describe.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct Preserved(pub Map<String, Value>);

impl JsonSchema for Preserved {
    fn schema_name() -> Cow<'static, str> {
        "Preserved".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
    }
}
