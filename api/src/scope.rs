//! Scopes and roles (CONVENTIONS section 2) as a small bitset.
//!
//! Responsible for: the scope names, what each role holds, and the default scopes of a
//! new key. Not responsible for: which route needs which scope (see `route`).

use halyard_storage::Role;

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Scope {
    /// Read projects.
    ProjectRead,
    /// Change projects.
    ProjectWrite,
    /// Read agents.
    AgentRead,
    /// Change agents.
    AgentWrite,
    /// Read sessions and messages.
    SessionRead,
    /// Create sessions and chat.
    SessionExecute,
    /// Manage secrets.
    SecretWrite,
    /// Manage users, API keys and public keys.
    KeyAdmin,
    /// Export projects.
    ProjectExport,
    /// Import projects.
    ProjectImport,
    /// Create, promote, roll back and retire deployments.
    DeploymentCreate,
}

/// Every scope with its name, in the order of the conventions.
pub const ALL: [(Scope, &str); 11] = [
    (Scope::ProjectRead, "project:read"),
    (Scope::ProjectWrite, "project:write"),
    (Scope::AgentRead, "agent:read"),
    (Scope::AgentWrite, "agent:write"),
    (Scope::SessionRead, "session:read"),
    (Scope::SessionExecute, "session:execute"),
    (Scope::SecretWrite, "secret:write"),
    (Scope::KeyAdmin, "key:admin"),
    (Scope::ProjectExport, "project:export"),
    (Scope::ProjectImport, "project:import"),
    (Scope::DeploymentCreate, "deployment:create"),
];

/// Every scope's name, in the order of [`ALL`] (what a key's `scopes` may list).
pub const NAMES: [&str; ALL.len()] = {
    let mut names = [""; ALL.len()];
    let mut i = 0;
    while i < ALL.len() {
        names[i] = ALL[i].1;
        i += 1;
    }
    names
};

impl Scope {
    /// The scope of a name.
    pub fn parse(name: &str) -> Option<Scope> {
        ALL.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
    }

    /// The scope's name.
    pub fn name(self) -> &'static str {
        ALL[self as usize].1
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u16);

impl Scopes {
    /// Every scope.
    pub const ALL: Scopes = Scopes((1 << NAMES.len()) - 1);

    /// The set holding `scopes`.
    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |m, s| m | (1 << *s as u16)))
    }

    /// Whether `s` is in the set.
    pub fn has(self, s: Scope) -> bool {
        self.0 & (1 << s as u16) != 0
    }

    /// The set without `s`.
    pub fn without(self, s: Scope) -> Scopes {
        Scopes(self.0 & !(1 << s as u16))
    }

    /// What a key created without scopes gets: all but `key:admin`.
    pub fn default_for_key() -> Scopes {
        Scopes::ALL.without(Scope::KeyAdmin)
    }

    /// What a role holds.
    pub fn of_role(role: Role) -> Scopes {
        match role {
            Role::Owner => Scopes::ALL,
            Role::Developer => Scopes::ALL.without(Scope::KeyAdmin),
            Role::Viewer => Scopes::of(&[Scope::ProjectRead, Scope::AgentRead, Scope::SessionRead]),
        }
    }

    /// The set of stored scope names (unknown names are ignored).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Scopes {
        Scopes::of(
            &names
                .into_iter()
                .filter_map(|n| Scope::parse(n))
                .collect::<Vec<_>>(),
        )
    }

    /// The names, in the conventions' order.
    pub fn names(self) -> Vec<&'static str> {
        ALL.iter()
            .filter(|(s, _)| self.has(*s))
            .map(|(_, n)| *n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_defaults() {
        assert!(Scopes::of_role(Role::Owner).has(Scope::KeyAdmin));
        assert!(!Scopes::of_role(Role::Developer).has(Scope::KeyAdmin));
        assert!(Scopes::of_role(Role::Developer).has(Scope::SecretWrite));
        assert_eq!(
            Scopes::of_role(Role::Viewer).names(),
            ["project:read", "agent:read", "session:read"]
        );
        assert_eq!(Scopes::default_for_key().names().len(), 10);
        for ((s, n), name) in ALL.into_iter().zip(NAMES) {
            assert_eq!(name, n);
            assert_eq!(Scope::parse(n), Some(s));
            assert_eq!(s.name(), n);
        }
    }
}
