//! Items of a project whose names are unique within it: agents and tools.
//!
//! Responsible for: holding them by id with the id of each name, so that a put that renames
//! and a delete free the old name in one place. Not responsible for: refusing a name another
//! item holds (`apply` asks [`Named::is_taken`] first, and says what conflicts).

use std::collections::HashMap;

use crate::model::{Agent, Tool};

/// An item with an id and a name unique among its kind in one project.
pub trait NamedItem {
    /// The item's id.
    fn id(&self) -> &str;
    /// The item's name.
    fn name(&self) -> &str;
}

impl NamedItem for Agent {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl NamedItem for Tool {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// Items by id, and the id holding each name.
#[derive(Debug, Clone)]
pub struct Named<T> {
    by_id: HashMap<String, T>,
    ids: HashMap<String, String>,
}

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named {
            by_id: HashMap::new(),
            ids: HashMap::new(),
        }
    }
}

impl<T: NamedItem> Named<T> {
    /// The item with this id.
    pub fn get(&self, id: &str) -> Option<&T> {
        self.by_id.get(id)
    }

    /// The item with this name.
    pub fn by_name(&self, name: &str) -> Option<&T> {
        self.ids.get(name).and_then(|id| self.by_id.get(id))
    }

    /// Every item, in no order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.by_id.values()
    }

    /// Whether `name` is held by an item other than `id`.
    pub fn is_taken(&self, name: &str, id: &str) -> bool {
        self.ids.get(name).is_some_and(|holder| holder != id)
    }

    /// Puts `item` in place of the one with its id (returned), freeing that one's name.
    pub fn put(&mut self, item: T) -> Option<T> {
        let (id, name) = (item.id().to_owned(), item.name().to_owned());
        let prev = self.by_id.insert(id.clone(), item);
        if let Some(prev) = &prev {
            self.ids.remove(prev.name());
        }
        self.ids.insert(name, id);
        prev
    }

    /// Removes the item with this id, freeing its name.
    pub fn remove(&mut self, id: &str) -> Option<T> {
        let prev = self.by_id.remove(id)?;
        self.ids.remove(prev.name());
        Some(prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(id: &str, name: &str) -> Tool {
        Tool {
            id: id.into(),
            project_id: "p".into(),
            name: name.into(),
            description: None,
            tool_type: crate::model::ToolType::Http,
            parameters: "{}".into(),
            config: "{}".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_rename_frees_the_old_name_and_a_remove_frees_the_name() {
        let mut tools = Named::default();
        assert!(tools.put(tool("t1", "search")).is_none());
        assert!(tools.is_taken("search", "t2"));
        assert!(!tools.is_taken("search", "t1"));

        let prev = tools
            .put(tool("t1", "lookup"))
            .expect("the earlier version");
        assert_eq!(prev.name, "search");
        assert!(tools.by_name("search").is_none());
        assert_eq!(tools.by_name("lookup").map(|t| t.id.as_str()), Some("t1"));
        assert_eq!(tools.values().count(), 1);

        assert_eq!(tools.remove("t1").map(|t| t.name), Some("lookup".into()));
        assert!(tools.by_name("lookup").is_none());
        assert_eq!(tools.values().count(), 0);
        assert!(tools.remove("t1").is_none());
    }
}
