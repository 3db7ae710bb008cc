//! What each route's request body and query may hold, as JSON Schema, for the OpenAPI
//! document.
//!
//! Responsible for: writing the body declarations the handlers read through (`body::Field`
//! tables, named by `handlers::request_body`) as JSON Schema, so that a schema-driven client
//! such as schemathesis sends bodies that reach the handlers' logic rather than only their
//! validation; and the query parameters of the routes that read them. Not responsible for
//! the declarations or the checks: `tests/api_conventions.rs` posts each schema's smallest
//! valid body to the server.

use serde_json::{json, Map, Value};

use crate::body::{Field, Item, Presence, Rule, Text, AGENT_NAME};
use crate::handlers::{request_body, RequestBody};
use crate::route::RouteId;

/// The request body's schema for `id`.
pub(super) fn request(id: RouteId) -> Value {
    match request_body(id) {
        RequestBody::Any => json!({"type": "object"}),
        RequestBody::Object(fields) => object(fields),
        RequestBody::Either(a, b) => json!({"anyOf": [object(a), object(b)]}),
    }
}

/// Whether a request of `id` must have a body: its fields include one it cannot do without.
pub(super) fn is_required(id: RouteId) -> bool {
    let needs = |fields: &[Field]| {
        fields
            .iter()
            .any(|f| matches!(f.presence, Presence::Required))
    };
    match request_body(id) {
        RequestBody::Any => false,
        RequestBody::Object(fields) => needs(fields),
        RequestBody::Either(a, b) => needs(a) && needs(b),
    }
}

/// An object of `fields`, with its conditional requirements.
fn object(fields: &[Field]) -> Value {
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| matches!(f.presence, Presence::Required))
        .map(|f| f.name)
        .collect();
    let properties: Map<String, Value> = fields
        .iter()
        .map(|f| (f.name.to_string(), field(f)))
        .collect();
    let mut schema = json!({"type": "object", "required": required, "properties": properties});
    let dependent = dependent_required(fields);
    if !dependent.is_empty() {
        schema["dependentRequired"] = Value::Object(dependent);
    }
    let mut conditions: Vec<Value> = fields.iter().filter_map(condition).collect();
    if conditions.len() == 1 {
        let only = conditions.remove(0);
        schema["if"] = only["if"].clone();
        schema["then"] = only["then"].clone();
    } else if !conditions.is_empty() {
        schema["allOf"] = Value::Array(conditions);
    }
    schema
}

/// `{"other": ["field", ...]}` for the fields required with another.
fn dependent_required(fields: &[Field]) -> Map<String, Value> {
    let mut dependent = Map::new();
    for f in fields {
        if let Presence::RequiredWith(other) = f.presence {
            let names = dependent.entry(other).or_insert_with(|| json!([]));
            if let Value::Array(names) = names {
                names.push(f.name.into());
            }
        }
    }
    dependent
}

/// `{"if": ..., "then": ...}` for a field required when another holds a value.
fn condition(f: &Field) -> Option<Value> {
    let Presence::RequiredIf { field, equals } = f.presence else {
        return None;
    };
    Some(json!({
        "if": {"required": [field], "properties": {field: {"const": equals}}},
        "then": {"required": [f.name]},
    }))
}

/// One field's value; a clearable one may also be `null`.
fn field(f: &Field) -> Value {
    let mut schema = rule(&f.rule);
    if f.clearable {
        schema["type"] = json!([schema["type"].take(), "null"]);
    }
    schema
}

fn rule(r: &Rule) -> Value {
    match r {
        Rule::Text(t) => text(t),
        Rule::OneOf(options) => json!({"enum": options}),
        Rule::Bool => json!({"type": "boolean"}),
        Rule::Whole { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Rule::Number { min, max } => json!({"type": "number", "minimum": min, "maximum": max}),
        Rule::Time => time("date-time"),
        Rule::Json { .. } => json!({"type": "object"}),
        Rule::Manifest { max_entries } => json!({
            "type": "object",
            "minProperties": 1,
            "maxProperties": max_entries,
            "propertyNames": text(&Text::new(1, 64).format(AGENT_NAME)),
            "additionalProperties": {"oneOf": [
                {"type": "integer", "minimum": 1, "maximum": u32::MAX},
                {"const": "auto"},
            ]},
        }),
        Rule::Object(fields) => object(fields),
        Rule::List {
            item,
            min_items,
            max_items,
        } => {
            let mut schema = json!({"type": "array", "items": item_schema(item)});
            if *min_items > 0 {
                schema["minItems"] = (*min_items).into();
            }
            schema["maxItems"] = (*max_items).into();
            schema
        }
    }
}

fn item_schema(item: &Item) -> Value {
    match item {
        Item::Text(t) => text(t),
        Item::OneOf(options) => json!({"enum": options}),
        Item::Object(fields) => object(fields),
    }
}

/// A string. A byte bound is stated as the same number of characters, which it implies.
fn text(t: &Text) -> Value {
    let mut schema = json!({"type": "string"});
    if let Some(format) = t.format {
        schema["pattern"] = format.pattern.into();
    }
    if t.min > 0 {
        schema["minLength"] = t.min.into();
    }
    schema["maxLength"] = t.max.into();
    schema
}

/// A date (`format` `date`) or date-time (`date-time`): times are kept as milliseconds
/// since 1970, so earlier years are refused, and the pattern says so.
fn time(format: &str) -> Value {
    json!({"type": "string", "format": format, "pattern": "^(19[7-9][0-9]|[2-9][0-9]{3})-"})
}

/// Query parameters beyond pagination, for the routes that read them.
pub(crate) fn query(id: RouteId) -> Vec<Value> {
    let param = |name: &str, required: bool, schema: Value| json!({"name": name, "in": "query", "required": required, "schema": schema});
    // `from` and `to` of an analytics query.
    let window = || {
        ["from", "to"]
            .map(|name| param(name, false, time("date-time")))
            .to_vec()
    };
    match id {
        RouteId::SessionList => vec![
            param("status", false, json!({"enum": ["active", "ended"]})),
            param("channel", false, json!({"enum": ["api", "sdk"]})),
        ],
        RouteId::ChatUsage => vec![
            param("projectId", true, text(&Text::new(1, 64))),
            param("startDate", false, time("date")),
            param("endDate", false, time("date")),
            param("groupBy", false, json!({"enum": ["model"]})),
        ],
        RouteId::SessionTraces => vec![
            param(
                "eventType",
                false,
                json!({"enum": halyard_storage::TraceKind::ALL
                    .iter()
                    .map(|k| crate::handlers::trace_kind_name(*k))
                    .collect::<Vec<_>>()}),
            ),
            param("spanId", false, text(&Text::new(1, 64))),
        ],
        RouteId::ToolDelete => vec![param("force", false, json!({"enum": ["true", "false"]}))],
        RouteId::AnalyticsMetrics => {
            let mut params = window();
            params.push(param("groupBy", false, json!({"enum": crate::handlers::ANALYTICS_GROUPS})));
            // A comma-separated list of metric names.
            let one = format!(" *({}) *", crate::handlers::ANALYTICS_METRICS.join("|"));
            let list = format!("^{one}(,{one})*$");
            params.push(param("metrics", false, json!({"type": "string", "maxLength": 200, "pattern": list})));
            params
        }
        RouteId::AnalyticsEvents => [
            window(),
            vec![
            param(
                "agentName",
                false,
                text(&Text::new(1, 64).format(AGENT_NAME)),
            ),
            param("channel", false, json!({"enum": ["api", "sdk"]})),
            param(
                "environment",
                false,
                json!({"enum": crate::handlers::DEPLOYMENT_ENVIRONMENTS}),
            ),
            param("eventType", false, json!({"enum": ["response", "error"]})),
            param(
                "limit",
                false,
                json!({"type": "integer", "minimum": 1, "maximum": crate::handlers::ANALYTICS_MAX_EVENTS}),
            ),
            param(
                "offset",
                false,
                json!({"type": "integer", "minimum": 0, "maximum": crate::query::MAX_NUMBER}),
            ),
            ],
        ]
        .concat(),
        RouteId::DeploymentList => vec![
            param(
                "environment",
                false,
                json!({"enum": crate::handlers::DEPLOYMENT_ENVIRONMENTS}),
            ),
            param(
                "status",
                false,
                json!({"enum": crate::handlers::DEPLOYMENT_STATUSES}),
            ),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_requirements_are_stated() {
        let tenant = request(RouteId::AdminTenantCreate);
        assert_eq!(tenant["required"], json!(["name"]));
        assert_eq!(
            tenant["dependentRequired"],
            json!({"ownerEmail": ["ownerPassword"]})
        );
        let model = &request(RouteId::AgentCreate)["properties"]["model"];
        assert_eq!(model["if"]["properties"]["provider"]["const"], "openai");
        assert_eq!(model["then"]["required"], json!(["model"]));
    }

    #[test]
    fn a_body_is_required_where_a_field_is() {
        // Without `required: true` a schema-driven client sends no body at all, and meets
        // the handler's "is required" instead of its logic.
        assert!(is_required(RouteId::AgentCreate));
        assert!(!is_required(RouteId::SessionCreate));
        let dates = query(RouteId::ChatUsage);
        assert!(dates
            .iter()
            .any(|p| p["schema"]["pattern"] == "^(19[7-9][0-9]|[2-9][0-9]{3})-"));
    }

    #[test]
    fn clearable_fields_may_be_null() {
        let patch = request(RouteId::ProjectPatch);
        assert_eq!(
            patch["properties"]["description"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(patch["properties"]["name"]["type"], "string");
    }
}
