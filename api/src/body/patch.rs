//! The value of a field a PATCH may leave alone, clear or set.
//!
//! Responsible for: [`Patch`] and applying it to an optional text. Not responsible for:
//! reading it from a body (see `Fields::patch_str`).

/// A field that may be absent, `null`, or set (PATCH semantics: `null` clears).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patch<T> {
    /// Not in the body: leave unchanged.
    Absent,
    /// `null`: clear.
    Null,
    /// A value.
    Set(T),
}

impl<T> Patch<T> {
    /// Maps the value of `Set`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Patch::Absent => Patch::Absent,
            Patch::Null => Patch::Null,
            Patch::Set(v) => Patch::Set(f(v)),
        }
    }
}

impl<T: Into<String>> Patch<T> {
    /// Applies the patch to an optional text field.
    pub fn apply_to(self, field: &mut Option<String>) {
        match self {
            Patch::Absent => {}
            Patch::Null => *field = None,
            Patch::Set(v) => *field = Some(v.into()),
        }
    }
}
