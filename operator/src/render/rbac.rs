use super::Context;
use serde_json::Value;
pub(super) fn objects(_ctx: &Context<'_>) -> Vec<Value> { Vec::new() }
