//! The declaration of a request body: its fields, what each may hold, and when each must be
//! there.
//!
//! Responsible for: [`Field`] and the kinds it is made of, built in `const` tables such as
//! `const CREATE_BODY: &[Field] = &[Field::text("name", 1, 128).required(), ...]` next to
//! the handler that reads the body. Two readers use a table: `Fields`, which checks a body
//! against it, and `openapi::bodies`, which writes it as JSON Schema; a bound is therefore
//! stated once. Not responsible for: checking or rendering.

use super::formats::Format;

/// One field of a JSON object.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The key.
    pub name: &'static str,
    /// What the value must be.
    pub rule: Rule,
    /// When the field must be there (present and not `null`).
    pub presence: Presence,
    /// Whether `null` means "clear" (a PATCH) rather than "absent".
    pub clearable: bool,
}

/// What a field's value must be.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// A string.
    Text(Text),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// `true` or `false`.
    Bool,
    /// A whole number.
    Whole {
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A number.
    Number {
        /// The smallest allowed.
        min: f64,
        /// The largest allowed.
        max: f64,
    },
    /// An RFC 3339 date-time.
    Time,
    /// Any JSON object, kept as its text (metadata).
    Json {
        /// The longest text allowed, in bytes.
        max_bytes: usize,
    },
    /// An object of agent names to a version number (1 or more) or `"auto"`: a
    /// deployment's manifest.
    Manifest {
        /// The most entries.
        max_entries: usize,
    },
    /// An object with these fields.
    Object(&'static [Field]),
    /// An array.
    List {
        /// What each item must be.
        item: Item,
        /// The fewest items allowed.
        min_items: usize,
        /// The most items allowed.
        max_items: usize,
    },
}

/// What each item of a [`Rule::List`] must be.
#[derive(Debug, Clone, Copy)]
pub enum Item {
    /// A string.
    Text(Text),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// An object with these fields.
    Object(&'static [Field]),
}

/// The bounds of a string.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    /// The shortest allowed; 1 or more also refuses the empty string.
    pub min: usize,
    /// The longest allowed.
    pub max: usize,
    /// What `min` and `max` count.
    pub unit: Unit,
    /// A format the string must have, if any.
    pub format: Option<Format>,
}

/// What a [`Text`]'s bounds count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Unicode scalar values, as JSON Schema's `minLength` and `maxLength` do.
    Chars,
    /// UTF-8 bytes (a value stored as bytes, such as a secret).
    Bytes,
}

/// When a field must be in the body.
#[derive(Debug, Clone, Copy)]
pub enum Presence {
    /// It may be left out.
    Optional,
    /// It must be there.
    Required,
    /// It must be there when this other field is (JSON Schema `dependentRequired`).
    RequiredWith(&'static str),
    /// It must be there when another field holds a given string (JSON Schema `if`/`then`).
    RequiredIf {
        /// The other field.
        field: &'static str,
        /// The string that makes this one required.
        equals: &'static str,
    },
}

impl Text {
    /// `min..=max` characters, any format.
    pub const fn new(min: usize, max: usize) -> Text {
        Text {
            min,
            max,
            unit: Unit::Chars,
            format: None,
        }
    }

    /// The same bounds, and `format`.
    pub const fn format(self, format: Format) -> Text {
        Text {
            format: Some(format),
            ..self
        }
    }
}

impl Field {
    const fn new(name: &'static str, rule: Rule) -> Field {
        Field {
            name,
            rule,
            presence: Presence::Optional,
            clearable: false,
        }
    }

    /// A string of `min..=max` characters.
    pub const fn text(name: &'static str, min: usize, max: usize) -> Field {
        Field::new(name, Rule::Text(Text::new(min, max)))
    }

    /// One of `options`.
    pub const fn one_of(name: &'static str, options: &'static [&'static str]) -> Field {
        Field::new(name, Rule::OneOf(options))
    }

    /// A boolean.
    pub const fn bool(name: &'static str) -> Field {
        Field::new(name, Rule::Bool)
    }

    /// A whole number in `min..=max`.
    pub const fn whole(name: &'static str, min: u64, max: u64) -> Field {
        Field::new(name, Rule::Whole { min, max })
    }

    /// A number in `min..=max`.
    pub const fn number(name: &'static str, min: f64, max: f64) -> Field {
        Field::new(name, Rule::Number { min, max })
    }

    /// An RFC 3339 date-time.
    pub const fn time(name: &'static str) -> Field {
        Field::new(name, Rule::Time)
    }

    /// Any object, kept as text of at most `max_bytes`.
    pub const fn json(name: &'static str, max_bytes: usize) -> Field {
        Field::new(name, Rule::Json { max_bytes })
    }

    /// A manifest of 1 to `max_entries` agent names (see [`Rule::Manifest`]).
    pub const fn manifest(name: &'static str, max_entries: usize) -> Field {
        Field::new(name, Rule::Manifest { max_entries })
    }

    /// An object with `fields`.
    pub const fn object(name: &'static str, fields: &'static [Field]) -> Field {
        Field::new(name, Rule::Object(fields))
    }

    /// An array of `min_items..=max_items` items, each an `item`.
    pub const fn list(name: &'static str, item: Item, min_items: usize, max_items: usize) -> Field {
        Field::new(
            name,
            Rule::List {
                item,
                min_items,
                max_items,
            },
        )
    }

    /// The same field, required.
    pub const fn required(self) -> Field {
        self.presence(Presence::Required)
    }

    /// The same field, required when `other` is present.
    pub const fn required_with(self, other: &'static str) -> Field {
        self.presence(Presence::RequiredWith(other))
    }

    /// The same field, required when `field` holds `equals`.
    pub const fn required_if(self, field: &'static str, equals: &'static str) -> Field {
        self.presence(Presence::RequiredIf { field, equals })
    }

    const fn presence(self, presence: Presence) -> Field {
        Field { presence, ..self }
    }

    /// The same text field, whose `null` clears it.
    pub const fn clearable(self) -> Field {
        match self.rule {
            Rule::Text(_) => Field {
                clearable: true,
                ..self
            },
            _ => panic!("only a text field can be cleared"),
        }
    }

    /// The same text field, with `format`.
    pub const fn format(self, format: Format) -> Field {
        match self.rule {
            Rule::Text(text) => Field {
                rule: Rule::Text(text.format(format)),
                ..self
            },
            _ => panic!("only a text field has a format"),
        }
    }

    /// The same text field, its bounds counted in bytes.
    pub const fn bytes(self) -> Field {
        match self.rule {
            Rule::Text(text) => Field {
                rule: Rule::Text(Text {
                    unit: Unit::Bytes,
                    ..text
                }),
                ..self
            },
            _ => panic!("only a text field counts bytes"),
        }
    }
}
