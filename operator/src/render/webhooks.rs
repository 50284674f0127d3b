use super::Context;
use serde_json::Value;
pub(super) fn secrets(_ctx: &Context<'_>) -> Vec<Value> { Vec::new() }
pub(super) fn configurations(_ctx: &Context<'_>) -> Vec<Value> { Vec::new() }
