//! Reading a JSON object body through its declaration.
//!
//! Responsible for: [`Fields`], which reads the fields a handler asks for by name, checks
//! each against its [`Field`] (presence, kind, bounds, format), ignores undeclared keys, and
//! collects every problem into one `VALIDATION_ERROR` with `details[]`.
//! Not responsible for: the declarations (see `spec`) or what the handler does with values.

use serde_json::{Map, Value};

use super::patch::Patch;
use super::spec::{Field, Item, Presence, Rule, Text, Unit};
use crate::error::{ApiError, ApiResult, FieldError};

/// An RFC 3339 date-time's text: bounded before it is parsed.
const TIME_TEXT: Text = Text::new(0, 64);

/// Reads the fields of one JSON object against its declaration, collecting problems.
///
/// A handler may only read a field its table declares, as the kind declared: reading any
/// other is a bug, and panics, so that any test of the route finds it.
#[derive(Debug)]
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    spec: &'static [Field],
    prefix: String,
    errors: Vec<FieldError>,
}

/// A whole number, written `3` or `3.0`: JSON Schema's `integer` is any number without a
/// fraction, and a client may well send `3.0` for it (serde keeps that one as a float).
fn whole_number(v: &Value) -> Option<u64> {
    // Above 2^53 a float no longer holds every whole number: no field goes that high.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=EXACT).contains(f))
            .map(|f| f as u64)
    })
}

impl<'a> Fields<'a> {
    /// The fields of `v`, which must be an object, declared by `spec`.
    pub fn of(v: &'a Value, spec: &'static [Field]) -> ApiResult<Fields<'a>> {
        match v {
            Value::Object(obj) => Ok(Fields {
                obj,
                spec,
                prefix: String::new(),
                errors: Vec::new(),
            }),
            _ => Err(ApiError::invalid("body", "must be a JSON object")),
        }
    }

    /// Records a problem with `field` (a rule of the handler's own).
    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: format!("{}{field}", self.prefix),
            message: message.into(),
        });
    }

    /// Whether the body holds `name` with a value other than `null`, whatever its kind (for
    /// rules across fields, such as fields that belong to another type).
    pub fn has(&self, name: &str) -> bool {
        self.obj.get(name).is_some_and(|v| !v.is_null())
    }

    /// A text or one-of field.
    pub fn str(&mut self, name: &str) -> Option<&'a str> {
        let (field, v) = self.value(name)?;
        match &field.rule {
            Rule::Text(text) => self.text(name, text, v),
            Rule::OneOf(options) => self.one_of(name, options, v),
            _ => wrong_kind(field),
        }
    }

    /// A clearable text field: absent, `null`, or a valid string (absent when invalid).
    pub fn patch_str(&mut self, name: &str) -> Patch<&'a str> {
        let field = self.field(name);
        if !field.clearable {
            wrong_kind(field);
        }
        match self.obj.get(name) {
            None => Patch::Absent,
            Some(Value::Null) => Patch::Null,
            Some(_) => self.str(name).map_or(Patch::Absent, Patch::Set),
        }
    }

    /// A boolean field.
    pub fn bool(&mut self, name: &str) -> Option<bool> {
        let (field, v) = self.value(name)?;
        let Rule::Bool = field.rule else {
            wrong_kind(field)
        };
        let b = v.as_bool();
        if b.is_none() {
            self.fail(name, "must be a boolean");
        }
        b
    }

    /// A whole-number field.
    pub fn whole(&mut self, name: &str) -> Option<u64> {
        let (field, v) = self.value(name)?;
        let Rule::Whole { min, max } = field.rule else {
            wrong_kind(field)
        };
        let n = whole_number(v).filter(|n| (min..=max).contains(n));
        if n.is_none() {
            self.fail(name, format!("must be a whole number from {min} to {max}"));
        }
        n
    }

    /// A number field.
    pub fn number(&mut self, name: &str) -> Option<f64> {
        let (field, v) = self.value(name)?;
        let Rule::Number { min, max } = field.rule else {
            wrong_kind(field)
        };
        let n = v.as_f64().filter(|n| *n >= min && *n <= max);
        if n.is_none() {
            self.fail(name, format!("must be a number from {min} to {max}"));
        }
        n
    }

    /// A date-time field, in milliseconds since the epoch.
    pub fn time(&mut self, name: &str) -> Option<u64> {
        let (field, v) = self.value(name)?;
        let Rule::Time = field.rule else {
            wrong_kind(field)
        };
        let parsed = crate::time::parse(self.text(name, &TIME_TEXT, v)?);
        if parsed.is_none() {
            self.fail(name, "must be an RFC 3339 date-time, from 1970 on");
        }
        parsed
    }

    /// A manifest field: its entries in key order, each a version or `None` for `"auto"`.
    pub fn manifest(&mut self, name: &str) -> Option<Vec<(String, Option<u32>)>> {
        let (field, v) = self.value(name)?;
        let Rule::Manifest { max_entries } = field.rule else {
            wrong_kind(field)
        };
        let Some(map) = v
            .as_object()
            .filter(|m| (1..=max_entries).contains(&m.len()))
        else {
            self.fail(
                name,
                format!("must be an object of 1 to {max_entries} agent names"),
            );
            return None;
        };
        let mut out = Vec::new();
        for (agent, pin) in map {
            let version = match pin {
                Value::String(s) if s == "auto" => Some(None),
                Value::Number(_) => whole_number(pin)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n >= 1)
                    .map(Some),
                _ => None,
            };
            match version {
                Some(v) if super::formats::is_agent_name(agent) => out.push((agent.clone(), v)),
                Some(_) => self.fail(name, format!("{agent:?} is not an agent name")),
                None => self.fail(
                    name,
                    format!("{agent}: a version number from 1, or \"auto\""),
                ),
            }
        }
        (out.len() == map.len()).then_some(out)
    }

    /// A free-form object field, as its JSON text.
    pub fn json_text(&mut self, name: &str) -> Option<String> {
        let (field, v) = self.value(name)?;
        let Rule::Json { max_bytes } = field.rule else {
            wrong_kind(field)
        };
        if !v.is_object() {
            self.fail(name, "must be an object");
            return None;
        }
        let text = v.to_string();
        if text.len() > max_bytes {
            self.fail(name, format!("must be at most {max_bytes} bytes"));
            return None;
        }
        Some(text)
    }

    /// A list of strings; `None` when absent or when any item is refused.
    pub fn strings(&mut self, name: &str) -> Option<Vec<&'a str>> {
        let (field, items, item) = self.list(name)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            let path = format!("{name}[{i}]");
            let s = match &item {
                Item::Text(text) => self.text(&path, text, v),
                Item::OneOf(options) => self.one_of(&path, options, v),
                Item::Object(_) => wrong_kind(field),
            };
            out.extend(s);
        }
        (out.len() == items.len()).then_some(out)
    }

    /// Reads each object of a list of objects with `read`, into the same error list.
    pub fn each(&mut self, name: &str, mut read: impl FnMut(&mut Fields<'a>)) {
        let Some((field, items, item)) = self.list(name) else {
            return;
        };
        let Item::Object(spec) = item else {
            wrong_kind(field)
        };
        for (i, v) in items.iter().enumerate() {
            self.within(&format!("{name}[{i}]"), spec, v, &mut read);
        }
    }

    /// Reads an object field with `read`, into the same error list.
    pub fn nested(&mut self, name: &str, read: impl FnOnce(&mut Fields<'a>)) {
        let Some((field, v)) = self.value(name) else {
            return;
        };
        let Rule::Object(spec) = field.rule else {
            wrong_kind(field)
        };
        self.within(name, spec, v, read);
    }

    /// `Ok` if every field read was valid, else one `VALIDATION_ERROR` with all problems.
    pub fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }

    /// The declaration of `name`.
    fn field(&self, name: &str) -> &'static Field {
        let found = self.spec.iter().find(|f| f.name == name);
        found.unwrap_or_else(|| panic!("field {}{name} is not declared", self.prefix))
    }

    /// The declaration and value of `name` when present and not `null`; when not, a
    /// required field's absence is recorded.
    fn value(&mut self, name: &str) -> Option<(&'static Field, &'a Value)> {
        let field = self.field(name);
        match self.obj.get(name).filter(|v| !v.is_null()) {
            Some(v) => Some((field, v)),
            None => {
                if let Some(why) = self.missing(field) {
                    self.fail(name, why);
                }
                None
            }
        }
    }

    /// Why an absent `field` should have been there, if it should.
    fn missing(&self, field: &Field) -> Option<String> {
        let holds =
            |other: &str, equals: &str| self.obj.get(other).and_then(Value::as_str) == Some(equals);
        match field.presence {
            Presence::Optional => None,
            Presence::Required => Some("is required".into()),
            Presence::RequiredWith(other) if self.obj.get(other).is_some_and(|v| !v.is_null()) => {
                Some(format!("is required with {other}{}", at_least(&field.rule)))
            }
            Presence::RequiredIf {
                field: other,
                equals,
            } if holds(other, equals) => Some(format!("is required for the {equals} {other}")),
            Presence::RequiredWith(_) | Presence::RequiredIf { .. } => None,
        }
    }

    /// The items of list `name` when present, an array, and of an allowed count.
    fn list(&mut self, name: &str) -> Option<(&'static Field, &'a [Value], Item)> {
        let (field, v) = self.value(name)?;
        let Rule::List {
            item,
            min_items,
            max_items,
        } = field.rule
        else {
            wrong_kind(field)
        };
        let Value::Array(items) = v else {
            self.fail(name, format!("must be an array of {}", item_noun(&item)));
            return None;
        };
        if items.len() > max_items {
            self.fail(name, format!("must have at most {max_items} items"));
            return None;
        }
        if items.len() < min_items {
            let plural = if min_items == 1 { "" } else { "s" };
            self.fail(name, format!("must have at least {min_items} item{plural}"));
            return None;
        }
        Some((field, items, item))
    }

    /// Reads object `v` at `path` with `read`, declared by `spec`.
    fn within(
        &mut self,
        path: &str,
        spec: &'static [Field],
        v: &'a Value,
        read: impl FnOnce(&mut Fields<'a>),
    ) {
        let Value::Object(obj) = v else {
            self.fail(path, "must be an object");
            return;
        };
        let mut inner = Fields {
            obj,
            spec,
            prefix: format!("{}{path}.", self.prefix),
            errors: std::mem::take(&mut self.errors),
        };
        read(&mut inner);
        self.errors = inner.errors;
    }

    /// `v` at `path` as a string within `text`'s bounds and format.
    fn text(&mut self, path: &str, text: &Text, v: &'a Value) -> Option<&'a str> {
        let Some(s) = v.as_str() else {
            self.fail(path, "must be a string");
            return None;
        };
        match text_problem(text, s) {
            None => Some(s),
            Some(why) => {
                self.fail(path, why);
                None
            }
        }
    }

    /// `v` at `path` as one of `options`.
    fn one_of(&mut self, path: &str, options: &[&str], v: &'a Value) -> Option<&'a str> {
        let Some(s) = v.as_str() else {
            self.fail(path, "must be a string");
            return None;
        };
        if options.contains(&s) {
            return Some(s);
        }
        self.fail(path, format!("must be {}", alternatives(options)));
        None
    }
}

/// What is wrong with `s` under `text`, checked in the order a client fixes them.
fn text_problem(text: &Text, s: &str) -> Option<String> {
    let (len, unit) = match text.unit {
        Unit::Chars => (s.chars().count(), "characters"),
        Unit::Bytes => (s.len(), "bytes"),
    };
    if len > text.max {
        return Some(format!("must be at most {} {unit}", text.max));
    }
    if s.is_empty() && text.min > 0 {
        return Some("must not be empty".into());
    }
    if len < text.min {
        return Some(format!("must be at least {} {unit}", text.min));
    }
    let format = text.format.filter(|f| !(f.check)(s))?;
    Some(format.message.into())
}

/// The lower bound to name with a missing field's requirement (", at least 12 characters").
fn at_least(rule: &Rule) -> String {
    match rule {
        Rule::Text(text) if text.min > 1 => {
            let unit = match text.unit {
                Unit::Chars => "characters",
                Unit::Bytes => "bytes",
            };
            format!(", at least {} {unit}", text.min)
        }
        _ => String::new(),
    }
}

/// `a`, `a or b`, `a, b or c`.
fn alternatives(options: &[&str]) -> String {
    match options.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn item_noun(item: &Item) -> &'static str {
    match item {
        Item::Text(_) | Item::OneOf(_) => "strings",
        Item::Object(_) => "objects",
    }
}

/// A handler read `field` as another kind than its declaration: a bug.
fn wrong_kind(field: &Field) -> ! {
    panic!("field {} is read as another kind than declared", field.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::formats::AGENT_NAME;
    use serde_json::json;

    const INNER: &[Field] = &[Field::text("x", 0, 5)];
    const ROLES: &[&str] = &["owner", "developer", "viewer"];
    const SPEC: &[Field] = &[
        Field::text("name", 1, 10).required(),
        Field::text("missing", 1, 10).required(),
        Field::text("n", 0, 10),
        Field::object("m", INNER),
        Field::text("agent", 0, 64).format(AGENT_NAME),
        Field::one_of("role", ROLES),
        Field::text("email", 0, 10),
        Field::text("password", 12, 100).required_with("email"),
        Field::text("model", 1, 10).required_if("provider", "openai"),
        Field::text("provider", 0, 10),
        Field::list("ids", Item::Text(Text::new(1, 3)), 1, 2),
    ];

    fn details(v: serde_json::Value, read: impl FnOnce(&mut Fields<'_>)) -> Vec<(String, String)> {
        let mut f = Fields::of(&v, SPEC).unwrap();
        read(&mut f);
        match f.finish() {
            Ok(()) => Vec::new(),
            Err(ApiError::Validation(d)) => d.into_iter().map(|e| (e.field, e.message)).collect(),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn problems_are_collected_with_their_paths() {
        let v = json!({"name": "", "n": 5, "m": {"x": 1}, "extra": true, "agent": "Bad", "role": "king"});
        let got = details(v, |f| {
            assert_eq!(f.str("name"), None);
            assert_eq!(f.str("missing"), None);
            assert_eq!(f.str("n"), None);
            f.nested("m", |m| {
                m.str("x");
            });
            f.str("agent");
            f.str("role");
        });
        let want = [
            ("name", "must not be empty"),
            ("missing", "is required"),
            ("n", "must be a string"),
            ("m.x", "must be a string"),
            ("agent", "must match [a-z0-9-]{1,64}"),
            ("role", "must be owner, developer or viewer"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn conditional_presence() {
        let read = |f: &mut Fields<'_>| {
            f.str("email");
            f.str("password");
            f.str("provider");
            f.str("model");
        };
        assert!(details(json!({}), read).is_empty());
        assert_eq!(
            details(json!({"email": "a@b", "provider": "openai"}), read),
            [
                (
                    "password".to_string(),
                    "is required with email, at least 12 characters".to_string()
                ),
                (
                    "model".to_string(),
                    "is required for the openai provider".to_string()
                ),
            ]
        );
        assert_eq!(
            details(json!({"password": "short"}), read),
            [(
                "password".to_string(),
                "must be at least 12 characters".to_string()
            )]
        );
    }

    #[test]
    fn lists() {
        let read = |f: &mut Fields<'_>| {
            f.strings("ids");
        };
        assert!(details(json!({"ids": ["a", "b"]}), read).is_empty());
        let cases = [
            (json!({"ids": []}), "ids", "must have at least 1 item"),
            (
                json!({"ids": ["a", "b", "c"]}),
                "ids",
                "must have at most 2 items",
            ),
            (json!({"ids": "a"}), "ids", "must be an array of strings"),
            (
                json!({"ids": ["abcd"]}),
                "ids[0]",
                "must be at most 3 characters",
            ),
        ];
        for (v, field, message) in cases {
            assert_eq!(details(v, read), [(field.to_string(), message.to_string())]);
        }
    }

    #[test]
    fn a_whole_number_may_be_written_with_a_zero_fraction() {
        const WHOLE: &[Field] = &[Field::whole("n", 1, 64)];
        let read = |v: serde_json::Value| {
            let mut f = Fields::of(&v, WHOLE).unwrap();
            let n = f.whole("n");
            (n, f.finish().is_ok())
        };
        assert_eq!(read(json!({"n": 3})), (Some(3), true));
        assert_eq!(read(json!({"n": 3.0})), (Some(3), true));
        assert_eq!(read(json!({"n": 64.0})), (Some(64), true));
        for bad in [
            json!(3.5),
            json!(0.0),
            json!(65.0),
            json!(-1.0),
            json!(1e300),
            json!("3"),
        ] {
            assert_eq!(read(json!({ "n": bad })), (None, false), "{bad}");
        }
    }

    #[test]
    #[should_panic(expected = "not declared")]
    fn an_undeclared_field_is_a_bug() {
        let v = json!({});
        let mut f = Fields::of(&v, SPEC).unwrap();
        f.str("nope");
    }
}
