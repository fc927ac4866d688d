//! Categories: user-owned, named uniquely per user (case-insensitively), with a colour.

use std::fmt;

use crate::error::value_error;
use crate::ids::{CategoryId, UserId};
use crate::line::line_type;
use crate::time::Timestamp;

line_type!(
    /// A category name: trimmed, 1–100 characters, no control characters.
    CategoryName, "category name", 100
);

impl CategoryName {
    /// The key that uniqueness is checked on: names differing only in case collide.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for CategoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A colour `#rrggbb`, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Color(String);

value_error!(
    #[error("colour '{0}' is not of the form #rrggbb (for example #3b82f6)")]
    ColorError(String) = "invalid_color"
);

impl Color {
    pub fn parse(raw: &str) -> Result<Color, ColorError> {
        let t = raw.trim();
        let ok =
            t.len() == 7 && t.starts_with('#') && t[1..].chars().all(|c| c.is_ascii_hexdigit());
        if ok { Ok(Color(t.to_ascii_lowercase())) } else { Err(ColorError(raw.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Color {
    fn default() -> Self {
        Color("#3b82f6".to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub id: CategoryId,
    pub user_id: UserId,
    pub name: CategoryName,
    pub color: Color,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCategory {
    pub name: CategoryName,
    pub color: Color,
}

impl NewCategory {
    /// The category a task write names that does not exist yet: created with the default
    /// colour.
    pub fn named(name: CategoryName) -> NewCategory {
        NewCategory { name, color: Color::default() }
    }

    /// The category `id` this creates for `user` at `now`.
    pub fn into_category(self, id: CategoryId, user: UserId, now: Timestamp) -> Category {
        Category { id, user_id: user, name: self.name, color: self.color, created_at: now }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CategoryPatch {
    pub name: Option<CategoryName>,
    pub color: Option<Color>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_colors() {
        assert_eq!(CategoryName::parse(" Work ").unwrap().as_str(), "Work");
        assert_eq!(CategoryName::parse("Work").unwrap().key(), "work");
        assert!(CategoryName::parse("").is_err());
        assert!(CategoryName::parse(&"x".repeat(101)).is_err());
        assert_eq!(Color::parse("#AABBCC").unwrap().as_str(), "#aabbcc");
        assert!(Color::parse("red").is_err());
        assert!(Color::parse("#abcdeg").is_err());
        assert!(Color::parse("#abc").is_err());
    }

    #[test]
    fn a_category_named_by_a_task_gets_the_default_colour() {
        let user: UserId = crate::ids::test_id();
        let now: Timestamp = "2026-03-10T12:00:00Z".parse().unwrap();
        let name = CategoryName::parse("Home").unwrap();
        let (first, second) = (crate::ids::test_id(), crate::ids::test_id());
        let c = NewCategory::named(name.clone()).into_category(first, user, now);
        assert_eq!(
            (c.user_id, &c.name, &c.color, c.created_at),
            (user, &name, &Color::default(), now)
        );
        let red = Color::parse("#ff0000").unwrap();
        let d = NewCategory { name, color: red.clone() }.into_category(second, user, now);
        assert_eq!(d.color, red);
        assert_eq!((c.id, d.id), (first, second), "each gets the id it is given");
    }
}
