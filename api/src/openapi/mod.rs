//! The OpenAPI 3.1 document served at `GET /api/v1/openapi.json`, built from the route
//! table so that it cannot miss a route.
//!
//! Responsible for: paths, operations, security schemes, parameters (path captures,
//! pagination, the query fields some routes read), request bodies (their schemas are in
//! `bodies`) and the response envelopes. Not responsible for: the engine's operations
//! routes beyond listing them.

pub(crate) mod bodies;

use std::sync::OnceLock;

use halyard_engine::{Method, Response};
use serde_json::{json, Map, Value};

use crate::route::{Guard, RouteDef, RouteId, ROUTES};

/// The document, rendered once.
pub fn document() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_vec(&build()).unwrap_or_default())
}

/// The response of `GET /api/v1/openapi.json`.
pub fn response() -> Response {
    Response::static_json(200, document())
}

fn openapi_path(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn security(guard: Guard) -> Value {
    match guard {
        Guard::Public => json!([]),
        Guard::Root => json!([{"bearer": []}]),
        Guard::Scope(_) => json!([{"bearer": []}, {"apiKey": []}, {"sdkToken": []}]),
        Guard::PublicKey => json!([{"publicKey": []}, {"apiKey": []}]),
        Guard::SdkToken => json!([{"sdkToken": []}]),
    }
}

/// Routes that answer a page of a list (`limit`, `offset`, `pagination`).
pub(crate) fn is_list(id: RouteId) -> bool {
    use RouteId::*;
    matches!(
        id,
        AdminTenantList
            | UserList
            | KeyList
            | ProjectList
            | AgentList
            | AgentDirectory
            | SessionList
            | SessionMessages
            | SecretList
            | ToolList
            | AgentVersionList
            | DeploymentList
            | SessionTraces
    )
}

/// Routes whose success is a server-sent event stream (their errors are still JSON).
pub(crate) fn is_stream(id: RouteId) -> bool {
    matches!(
        id,
        RouteId::ChatAgentStream
            | RouteId::ChatStream
            | RouteId::ChatResume
            | RouteId::DeployedStream
    )
}

fn has_body(def: &RouteDef) -> bool {
    matches!(def.method, Method::Post | Method::Put | Method::Patch)
}

fn error_response(description: &str) -> Value {
    error_response_as(description, "Error")
}

fn error_response_as(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// Routes on which a turn may find its session's deployment retired (`410`).
fn may_be_gone(id: RouteId) -> bool {
    use RouteId::*;
    matches!(
        id,
        ChatAgent
            | ChatAgentStream
            | ChatSend
            | ChatStream
            | DeployedChat
            | DeployedStream
            | ChatSession
    )
}

/// The success of an OpenAI-compatible route, in OpenAI's shapes.
fn openai_success(def: &RouteDef) -> Value {
    let json_ref = |name: &str| json!({"schema": {"$ref": format!("#/components/schemas/{name}")}});
    let mut content = Map::new();
    if def.id == RouteId::OpenAiModels {
        content.insert("application/json".into(), json_ref("OpenAiModelList"));
    } else {
        content.insert("application/json".into(), json_ref("OpenAiCompletion"));
        content.insert(
            "text/event-stream".into(),
            json!({"schema": {"type": "string"}}),
        );
    }
    json!({"description": def.summary, "content": content})
}

fn operation(def: &RouteDef) -> Value {
    let mut params: Vec<Value> = def
        .pattern
        .split('/')
        .filter_map(|s| s.strip_prefix(':'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "maxLength": 64}}))
        .collect();
    if is_list(def.id) {
        // Up to 18 digits (`query::page`); a larger limit is the route's largest page.
        let count = json!({"type": "integer", "minimum": 0, "maximum": crate::query::MAX_NUMBER});
        params.push(json!({"name": "limit", "in": "query", "required": false, "schema": count}));
        params.push(json!({"name": "offset", "in": "query", "required": false, "schema": count}));
    }
    params.extend(bodies::query(def.id));
    if def.id == RouteId::Widget {
        return widget_operation(def);
    }
    let openai = crate::route::is_openai(def.id);
    let success = if openai {
        openai_success(def)
    } else if is_stream(def.id) {
        json!({
            "description": def.summary,
            "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/Event"}}},
        })
    } else {
        json!({
            "description": def.summary,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Success"}}},
        })
    };
    let mut responses = Map::new();
    responses.insert(def.success.to_string(), success);
    for (code, what) in [
        ("400", "Bad request or invalid fields"),
        ("401", "No valid credential"),
        ("403", "Not allowed"),
        ("404", "Not found"),
        ("409", "Conflict"),
        ("413", "Body too large"),
        ("415", "Body is not JSON"),
        ("429", "Rate limited"),
        ("503", "Backend unavailable"),
    ] {
        let schema = if openai { "OpenAiError" } else { "Error" };
        responses.insert(code.into(), error_response_as(what, schema));
    }
    if may_be_gone(def.id) {
        responses.insert(
            "410".into(),
            error_response("The session's deployment was retired"),
        );
    }
    let mut op = json!({
        "operationId": format!("{:?}", def.id),
        "summary": def.summary,
        "security": security(def.guard),
        "parameters": params,
        "responses": responses,
    });
    if has_body(def) {
        op["requestBody"] = json!({
            "required": bodies::is_required(def.id),
            "content": {"application/json": {"schema": bodies::request(def.id)}},
        });
    }
    op
}

/// `GET /sdk/widget.js` answers JavaScript, not the JSON envelope.
fn widget_operation(def: &RouteDef) -> Value {
    json!({
        "operationId": format!("{:?}", def.id),
        "summary": def.summary,
        "security": security(def.guard),
        "parameters": [{"name": "If-None-Match", "in": "header", "required": false, "schema": {"type": "string"}}],
        "responses": {
            "200": {
                "description": def.summary,
                "headers": {
                    "ETag": {"schema": {"type": "string"}},
                    "Cache-Control": {"schema": {"type": "string"}},
                },
                "content": {"text/javascript": {"schema": {"type": "string"}}},
            },
            "304": {"description": "Not modified (the If-None-Match tag is current)"},
        },
    })
}

fn build() -> Value {
    let mut paths = Map::new();
    for def in ROUTES {
        let entry = paths
            .entry(openapi_path(def.pattern))
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(ops) = entry {
            ops.insert(def.method.as_str().to_ascii_lowercase(), operation(def));
        }
    }
    for (path, summary) in [("/health/live", "Liveness"), ("/health/ready", "Readiness")] {
        paths.insert(path.into(), json!({"get": {
            "operationId": summary, "summary": summary, "security": [],
            "responses": {
                "200": {"description": summary, "content": {"application/json": {"schema": {"type": "object"}}}},
                "503": error_response("Not ready"),
            }
        }}));
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Halyard Agent Platform API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "sdkToken": {"type": "apiKey", "in": "header", "name": "X-SDK-Token"},
                "publicKey": {"type": "apiKey", "in": "header", "name": "X-Public-Key"},
            },
            "schemas": {
                "Success": {"type": "object", "required": ["success"], "properties": {"success": {"const": true}}},
                // The OpenAI-compatible routes answer in OpenAI's shapes.
                "OpenAiError": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["message", "type"],
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "param": {"type": ["string", "null"]},
                            "code": {"type": ["string", "null"]},
                        },
                    }},
                },
                "OpenAiCompletion": {
                    "type": "object",
                    "required": ["id", "object", "created", "model", "choices", "usage"],
                    "properties": {
                        "id": {"type": "string"},
                        "object": {"const": "chat.completion"},
                        "created": {"type": "integer"},
                        "model": {"type": "string"},
                        "choices": {"type": "array"},
                        "usage": {"type": "object"},
                    },
                },
                "OpenAiModelList": {
                    "type": "object",
                    "required": ["object", "data"],
                    "properties": {"object": {"const": "list"}, "data": {"type": "array"}},
                },
                // One server-sent event of a chat stream (CONVENTIONS section 7): the agent
                // turn's `session`, `token`, `done`; a direct model call's `metadata`,
                // `text_delta`, `usage`, `complete`; `error` for either.
                "Event": {
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                        "id": {"type": "string", "pattern": "^[0-9]+$"},
                        "event": {"enum": crate::chat::sse::EVENTS.iter().map(|e| e.name).collect::<Vec<_>>()},
                        "data": {"type": "string", "contentMediaType": "application/json"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["success", "error"],
                    "properties": {
                        "success": {"const": false},
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "details": {"type": "array", "items": {"type": "object"}},
                            },
                        },
                        "retryAfterMs": {"type": "integer"},
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_routed_path_and_method_is_documented() {
        let doc: Value = serde_json::from_slice(document()).unwrap();
        for def in ROUTES {
            let path = openapi_path(def.pattern);
            let method = def.method.as_str().to_ascii_lowercase();
            assert!(
                doc["paths"][&path][&method].is_object(),
                "{} {} missing from the OpenAPI document",
                def.method.as_str(),
                def.pattern
            );
        }
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
