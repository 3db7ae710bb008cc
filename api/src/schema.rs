//! The JSON Schema subset of tool parameters: checking a schema when a tool is stored, and
//! checking a model's arguments against it when the tool is called.
//!
//! Responsible for: the keywords function-calling schemas use (`type`, `properties`,
//! `required`, `additionalProperties`, `items`, `enum`, `const`, `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `minItems`,
//! `maxItems`, `anyOf`), annotations ignored (`description`, `title`, `default`,
//! `examples`, `format`, `$schema`), and every other keyword refused when the schema is
//! stored, so that nothing a client wrote is silently not enforced. Sans-I/O and fuzzed
//! (`fuzz_targets/tool_schema.rs`). Not responsible for: `$ref`, `pattern` (no regex
//! engine here) or formats.

use serde_json::{Map, Value};

/// How deep a schema may nest (objects in arrays in objects...).
pub const MAX_DEPTH: usize = 32;

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "default",
    "examples",
    "format",
    "$schema",
    "$comment",
];

/// Keywords enforced by [`validate`].
const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "anyOf",
];

const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];

/// Checks that `schema` is a parameters schema: an object schema (`"type": "object"`)
/// built only from the supported keywords. The error names the path of the first problem.
pub fn check_parameters(schema: &Value) -> Result<(), String> {
    let Value::Object(map) = schema else {
        return Err("must be a JSON Schema object".into());
    };
    if map.get("type") != Some(&Value::String("object".into())) {
        return Err("must have \"type\": \"object\" (tool arguments are an object)".into());
    }
    check(schema, "#", 0)
}

fn check(schema: &Value, at: &str, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{at}: nested deeper than {MAX_DEPTH} levels"));
    }
    let map = match schema {
        Value::Object(map) => map,
        Value::Bool(_) => return Ok(()),
        _ => return Err(format!("{at}: a schema must be an object or a boolean")),
    };
    for (key, v) in map {
        let here = format!("{at}/{key}");
        match key.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "type" => check_type(v, &here)?,
            "properties" => {
                let Value::Object(props) = v else {
                    return Err(format!("{here}: must be an object"));
                };
                for (name, sub) in props {
                    check(sub, &format!("{here}/{name}"), depth + 1)?;
                }
            }
            "required" => {
                if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                    return Err(format!("{here}: must be an array of strings"));
                }
            }
            "additionalProperties" | "items" => check(v, &here, depth + 1)?,
            "anyOf" => match v.as_array() {
                Some(subs) if !subs.is_empty() => {
                    for (i, sub) in subs.iter().enumerate() {
                        check(sub, &format!("{here}/{i}"), depth + 1)?;
                    }
                }
                _ => return Err(format!("{here}: must be a non-empty array of schemas")),
            },
            "enum" => {
                if v.as_array().is_none_or(|a| a.is_empty()) {
                    return Err(format!("{here}: must be a non-empty array"));
                }
            }
            "const" => {}
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
                if !v.is_number() {
                    return Err(format!("{here}: must be a number"));
                }
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" => {
                if v.as_u64().is_none() {
                    return Err(format!("{here}: must be a non-negative integer"));
                }
            }
            other => {
                debug_assert!(!KEYWORDS.contains(&other));
                return Err(format!(
                    "{here}: keyword {other:?} is not supported (supported: {})",
                    KEYWORDS.join(", ")
                ));
            }
        }
    }
    Ok(())
}

fn check_type(v: &Value, at: &str) -> Result<(), String> {
    let ok = |t: &Value| t.as_str().is_some_and(|t| TYPES.contains(&t));
    let fine = match v {
        Value::String(_) => ok(v),
        Value::Array(ts) => !ts.is_empty() && ts.iter().all(ok),
        _ => false,
    };
    if fine {
        Ok(())
    } else {
        Err(format!(
            "{at}: must be one of {} or an array of them",
            TYPES.join(", ")
        ))
    }
}

/// Checks `value` against a schema that passed [`check_parameters`]; the errors name the
/// paths of the values that fail (at most a few, enough to tell the model what to fix).
pub fn validate(schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    walk(schema, value, "$", &mut errors, 0);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The most errors one validation reports.
const MAX_ERRORS: usize = 8;

fn walk(schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>, depth: usize) {
    if errors.len() >= MAX_ERRORS {
        return;
    }
    let map = match schema {
        Value::Object(map) => map,
        Value::Bool(true) => return,
        Value::Bool(false) => return errors.push(format!("{at}: no value is allowed here")),
        _ => return,
    };
    if depth > MAX_DEPTH {
        return errors.push(format!("{at}: nested too deep"));
    }
    if let Some(t) = map.get("type") {
        if !type_matches(t, value) {
            return errors.push(format!("{at}: must be of type {}", type_name(t)));
        }
    }
    if let Some(Value::Array(options)) = map.get("enum") {
        if !options.contains(value) {
            errors.push(format!(
                "{at}: must be one of {}",
                Value::Array(options.clone())
            ));
        }
    }
    if let Some(c) = map.get("const") {
        if c != value {
            errors.push(format!("{at}: must be {c}"));
        }
    }
    if let Some(Value::Array(subs)) = map.get("anyOf") {
        let mut scratch = Vec::new();
        let any = subs.iter().any(|s| {
            scratch.clear();
            walk(s, value, at, &mut scratch, depth + 1);
            scratch.is_empty()
        });
        if !any {
            errors.push(format!("{at}: matches none of the allowed forms"));
        }
    }
    match value {
        Value::Number(n) => numeric(map, n.as_f64().unwrap_or(f64::NAN), at, errors),
        Value::String(s) => bounds(map, "Length", s.chars().count(), "characters", at, errors),
        Value::Array(items) => {
            bounds(map, "Items", items.len(), "items", at, errors);
            if let Some(item) = map.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(item, v, &format!("{at}[{i}]"), errors, depth + 1);
                }
            }
        }
        Value::Object(fields) => object(map, fields, at, errors, depth),
        Value::Bool(_) | Value::Null => {}
    }
}

fn object(
    map: &Map<String, Value>,
    fields: &Map<String, Value>,
    at: &str,
    errors: &mut Vec<String>,
    depth: usize,
) {
    if let Some(Value::Array(required)) = map.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(name) {
                errors.push(format!("{at}.{name}: is required"));
            }
        }
    }
    let props = map.get("properties").and_then(Value::as_object);
    for (name, v) in fields {
        let here = format!("{at}.{name}");
        match (
            props.and_then(|p| p.get(name)),
            map.get("additionalProperties"),
        ) {
            (Some(sub), _) => walk(sub, v, &here, errors, depth + 1),
            (None, Some(extra)) => walk(extra, v, &here, errors, depth + 1),
            (None, None) => {}
        }
    }
}

/// A numeric keyword, the test a value must pass, and the words of its message.
type Bound = (&'static str, fn(f64, f64) -> bool, &'static str);

fn numeric(map: &Map<String, Value>, n: f64, at: &str, errors: &mut Vec<String>) {
    let limit = |k: &str| map.get(k).and_then(Value::as_f64);
    let checks: [Bound; 4] = [
        ("minimum", |n, l| n >= l, "at least"),
        ("maximum", |n, l| n <= l, "at most"),
        ("exclusiveMinimum", |n, l| n > l, "more than"),
        ("exclusiveMaximum", |n, l| n < l, "less than"),
    ];
    for (key, ok, words) in checks {
        if let Some(l) = limit(key) {
            if !ok(n, l) {
                errors.push(format!("{at}: must be {words} {l}"));
            }
        }
    }
}

fn bounds(
    map: &Map<String, Value>,
    suffix: &str,
    len: usize,
    unit: &str,
    at: &str,
    errors: &mut Vec<String>,
) {
    let get = |k: String| map.get(&k).and_then(Value::as_u64);
    if let Some(min) = get(format!("min{suffix}")) {
        if (len as u64) < min {
            errors.push(format!("{at}: must have at least {min} {unit}"));
        }
    }
    if let Some(max) = get(format!("max{suffix}")) {
        if len as u64 > max {
            errors.push(format!("{at}: must have at most {max} {unit}"));
        }
    }
}

fn type_matches(t: &Value, value: &Value) -> bool {
    match t {
        Value::String(t) => is_type(t, value),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .any(|t| is_type(t, value)),
        _ => true,
    }
}

fn is_type(t: &str, value: &Value) -> bool {
    match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value
            .as_f64()
            .is_some_and(|n| n.fract() == 0.0 && n.is_finite()),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

fn type_name(t: &Value) -> String {
    match t {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn weather() -> Value {
        json!({
            "type": "object",
            "description": "a city's weather",
            "properties": {
                "city": {"type": "string", "minLength": 1, "maxLength": 5},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "units": {"enum": ["c", "f"]},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "when": {"anyOf": [{"type": "string"}, {"type": "null"}]}
            },
            "required": ["city"],
            "additionalProperties": false
        })
    }

    #[test]
    fn a_function_calling_schema_is_accepted() {
        assert_eq!(check_parameters(&weather()), Ok(()));
    }

    #[test]
    fn schemas_that_are_not_object_schemas_or_use_unknown_keywords_are_refused() {
        assert!(check_parameters(&json!({"type": "string"})).is_err());
        assert!(check_parameters(&json!([1])).is_err());
        let e = check_parameters(&json!({"type": "object", "properties": {"a": {"pattern": "x"}}}));
        assert!(e.unwrap_err().contains("#/properties/a/pattern"));
        assert!(check_parameters(&json!({"type": "object", "required": [1]})).is_err());
        assert!(check_parameters(
            &json!({"type": "object", "properties": {"a": {"type": "date"}}})
        )
        .is_err());
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"type": "array", "items": deep});
        }
        let root = json!({"type": "object", "properties": {"d": deep}});
        assert!(check_parameters(&root).unwrap_err().contains("deeper"));
    }

    #[test]
    fn valid_arguments_pass() {
        let ok = json!({"city": "Oslo", "days": 3, "units": "c", "tags": ["a"], "when": null});
        assert_eq!(validate(&weather(), &ok), Ok(()));
        assert_eq!(
            validate(&weather(), &json!({"city": "Rome", "days": 2.0})),
            Ok(())
        );
    }

    #[test]
    fn invalid_arguments_name_each_problem() {
        let bad = json!({"days": 9.5, "units": "k", "tags": ["a", "b", 3], "extra": 1, "when": 5});
        let errors = validate(&weather(), &bad).unwrap_err();
        let all = errors.join("\n");
        for want in [
            "$.city: is required",
            "$.days: must be of type integer",
            "$.units: must be one of",
            "$.tags: must have at most 2 items",
            "$.tags[2]: must be of type string",
            "$.extra: no value is allowed here",
            "$.when: matches none",
        ] {
            assert!(all.contains(want), "{want} not in:\n{all}");
        }
        let short = validate(&weather(), &json!({"city": "Amsterdam"})).unwrap_err();
        assert_eq!(short, ["$.city: must have at most 5 characters"]);
        assert!(validate(&weather(), &json!("x")).is_err());
    }
}
