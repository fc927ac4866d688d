//! The task and its value types.
//!
//! `NewTask` is what a create asks for and `TaskPatch` what an update changes; both hold only
//! parsed values. Applying a patch (`TaskPatch::apply`) is pure so every store applies it
//! inside its own transaction the same way.

use crate::category::{Category, CategoryName};
use crate::error::{Invalid, value_error};
use crate::ids::{CategoryId, TaskId, UserId};
use crate::line::line_type;
use crate::names::named;
use crate::series::SeriesLink;
use crate::time::{Timestamp, Zone};

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
}

line_type!(
    /// A task title: trimmed, 1–255 characters, no control characters.
    Title, "title", 255
);

impl Title {
    /// The key titles sort by: lower-case, so sorting ignores case the same on every store.
    pub fn sort_key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A task description: at most 4000 characters; tabs and newlines allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    #[error("description is {0} characters long (at most 4000)")]
    TooLong(usize),
    #[error("description must not contain control characters other than tab and newline")]
    ControlChars,
}

impl Invalid for DescriptionError {
    fn code(&self) -> &'static str {
        match self {
            DescriptionError::TooLong(_) => "too_long",
            DescriptionError::ControlChars => "invalid_characters",
        }
    }
}

impl Description {
    pub const MAX: usize = 4000;

    /// Parses a description; an all-blank one is `None`.
    pub fn parse(raw: &str) -> Result<Option<Description>, DescriptionError> {
        let n = raw.chars().count();
        if n > Self::MAX {
            return Err(DescriptionError::TooLong(n));
        }
        if has_control(raw) {
            return Err(DescriptionError::ControlChars);
        }
        if raw.trim().is_empty() { Ok(None) } else { Ok(Some(Description(raw.to_owned()))) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How urgent a task is. Ordered: `Low < Medium < High < Urgent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
    Urgent,
}

value_error!(
    #[error("priority '{0}' is unknown (expected low, medium, high or urgent)")]
    PriorityError(String) = "invalid_choice"
);

named!(
    Priority { Low => "low", Medium => "medium", High => "high", Urgent => "urgent" },
    else PriorityError
);

impl Priority {
    pub const ALL: [Priority; 4] =
        [Priority::Low, Priority::Medium, Priority::High, Priority::Urgent];

    /// The number stores sort by (0 = low … 3 = urgent).
    pub fn rank(self) -> i64 {
        self as i64
    }

    pub fn from_rank(rank: i64) -> Option<Priority> {
        Priority::ALL.get(usize::try_from(rank).ok()?).copied()
    }
}

/// Whether a task is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Status {
    #[default]
    Pending,
    Completed,
}

value_error!(
    #[error("status '{0}' is unknown (expected pending or completed)")]
    StatusError(String) = "invalid_choice"
);

named!(Status { Pending => "pending", Completed => "completed" }, else StatusError);

/// A tag: trimmed, 1–50 characters, stored lower-case, no control characters or commas.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag must not be empty")]
    Empty,
    #[error("tag '{0}' is longer than 50 characters")]
    TooLong(String),
    #[error("tag '{0}' contains a control character or a comma")]
    InvalidChars(String),
}

impl Invalid for TagError {
    fn code(&self) -> &'static str {
        match self {
            TagError::Empty => "required",
            TagError::TooLong(_) => "too_long",
            TagError::InvalidChars(_) => "invalid_characters",
        }
    }
}

impl Tag {
    pub const MAX: usize = 50;

    pub fn parse(raw: &str) -> Result<Tag, TagError> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(TagError::Empty);
        }
        if t.chars().count() > Self::MAX {
            return Err(TagError::TooLong(t.chars().take(50).collect::<String>() + "…"));
        }
        if t.chars().any(|c| c.is_control() || c == ',') {
            return Err(TagError::InvalidChars(t.to_owned()));
        }
        Ok(Tag(t.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The tags of a task: at most 10, unique (case-insensitively), kept in input order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags(Vec<Tag>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagsError {
    #[error("a task has at most 10 tags, got {0}")]
    TooMany(usize),
    #[error("{0}")]
    Tag(TagError),
}

impl Invalid for TagsError {
    fn code(&self) -> &'static str {
        match self {
            TagsError::TooMany(_) => "too_many",
            TagsError::Tag(e) => e.code(),
        }
    }
}

impl Tags {
    pub const MAX: usize = 10;

    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Tags, TagsError> {
        let mut out: Vec<Tag> = Vec::with_capacity(raw.len());
        for r in raw {
            let tag = Tag::parse(r.as_ref()).map_err(TagsError::Tag)?;
            if !out.contains(&tag) {
                out.push(tag);
            }
        }
        if out.len() > Self::MAX {
            return Err(TagsError::TooMany(out.len()));
        }
        Ok(Tags(out))
    }

    pub fn as_slice(&self) -> &[Tag] {
        &self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The tags as one space-separated string, for full-text indexing.
    pub fn joined(&self) -> String {
        self.0.iter().map(Tag::as_str).collect::<Vec<_>>().join(" ")
    }
}

/// How a write names a task's category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CategoryRef {
    /// An existing category of the user; an unknown id is a validation error.
    Id(CategoryId),
    /// A category by name, case-insensitively; created when the user has none by that name.
    Name(CategoryName),
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    pub user_id: UserId,
    pub title: Title,
    pub description: Option<Description>,
    pub status: Status,
    pub completed_at: Option<Timestamp>,
    pub priority: Priority,
    pub category: Option<Category>,
    pub tags: Tags,
    pub due_date: Option<Timestamp>,
    pub timezone: Option<Zone>,
    /// The series this task is an instance of (§2.3).
    pub series: Option<SeriesLink>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

impl Task {
    /// True when the task is pending and its due date has passed at `now`.
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        self.status == Status::Pending && self.due_date.is_some_and(|d| d < now)
    }
}

/// What creating a task asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub title: Title,
    pub description: Option<Description>,
    pub priority: Priority,
    pub category: Option<CategoryRef>,
    pub tags: Tags,
    pub due_date: Option<Timestamp>,
    pub timezone: Option<Zone>,
    pub status: Status,
}

impl NewTask {
    pub fn new(title: Title) -> NewTask {
        NewTask {
            title,
            description: None,
            priority: Priority::Medium,
            category: None,
            tags: Tags::default(),
            due_date: None,
            timezone: None,
            status: Status::Pending,
        }
    }

    /// The task this creates, once the store has resolved its category.
    pub fn into_task(
        self,
        id: TaskId,
        user_id: UserId,
        category: Option<Category>,
        now: Timestamp,
    ) -> Task {
        Task {
            id,
            user_id,
            title: self.title,
            description: self.description,
            status: self.status,
            completed_at: (self.status == Status::Completed).then_some(now),
            priority: self.priority,
            category,
            tags: self.tags,
            due_date: self.due_date,
            timezone: self.timezone,
            series: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }
}

/// What an update changes. `None` leaves a field as it is; for nullable fields
/// `Some(None)` clears it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskPatch {
    pub title: Option<Title>,
    pub description: Option<Option<Description>>,
    pub priority: Option<Priority>,
    pub category: Option<Option<CategoryRef>>,
    pub tags: Option<Tags>,
    pub due_date: Option<Option<Timestamp>>,
    pub timezone: Option<Option<Zone>>,
    pub status: Option<Status>,
    /// The task's series (§2.3): `Some(Some(r))` makes a one-off task the first instance of
    /// a new series with rule `r`, or replaces the rule of the task's series for its future
    /// instances; `Some(None)` ends the task's series (deleted, its instances detached).
    /// [`TaskPatch::apply`] does not read it: series rows are the store's, which applies it
    /// in the update's transaction as `plan::task::plan_task_update` decides.
    pub recurrence: Option<Option<crate::recurrence::Recurrence>>,
}

impl TaskPatch {
    pub fn is_empty(&self) -> bool {
        *self == TaskPatch::default()
    }

    /// A patch setting every field, for PUT: what `new` leaves out is reset to its default.
    pub fn replace_with(new: NewTask) -> TaskPatch {
        TaskPatch {
            title: Some(new.title),
            description: Some(new.description),
            priority: Some(new.priority),
            category: Some(new.category),
            tags: Some(new.tags),
            due_date: Some(new.due_date),
            timezone: Some(new.timezone),
            status: Some(new.status),
            recurrence: None,
        }
    }

    /// Applies the patch to `task`, the category already resolved by the store
    /// (`category` is only read when the patch changes the category).
    ///
    /// Returns whether anything changed; when it did, `version` is bumped and `updated_at`
    /// set to `now`. Status changes keep `completed_at` in step.
    pub fn apply(self, task: &mut Task, category: Option<Category>, now: Timestamp) -> bool {
        let before = task.clone();
        patch(&mut task.title, self.title);
        patch(&mut task.description, self.description);
        patch(&mut task.priority, self.priority);
        patch(&mut task.category, self.category.map(|_| category));
        patch(&mut task.tags, self.tags);
        patch(&mut task.due_date, self.due_date);
        patch(&mut task.timezone, self.timezone);
        if let Some(s) = self.status {
            set_status(task, s, now);
        }
        let changed = *task != before;
        if changed {
            task.version += 1;
            task.updated_at = now;
        }
        changed
    }
}

/// One field of a patch applied: `Some` replaces the value, `None` keeps it.
pub(crate) fn patch<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// Moves `task` to `status`, keeping `completed_at` in step; does not touch the version.
pub fn set_status(task: &mut Task, status: Status, now: Timestamp) {
    if task.status == status {
        return;
    }
    task.status = status;
    task.completed_at = match status {
        Status::Completed => Some(now),
        Status::Pending => None,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::LineError;

    #[test]
    fn titles() {
        assert_eq!(Title::parse("  Buy milk ").unwrap().as_str(), "Buy milk");
        assert_eq!(Title::parse("   ").unwrap_err(), LineError::Empty("title"));
        assert_eq!(Title::parse(&"x".repeat(255)).unwrap().as_str().len(), 255);
        assert_eq!(
            Title::parse(&"é".repeat(256)).unwrap_err(),
            LineError::TooLong("title", 256, 255)
        );
        assert_eq!(Title::parse("a\u{7}b").unwrap_err(), LineError::ControlChars("title"));
        assert_eq!(Title::parse("a\nb").unwrap_err(), LineError::ControlChars("title"));
    }

    #[test]
    fn descriptions() {
        assert_eq!(Description::parse("  ").unwrap(), None);
        assert!(Description::parse("line\nline\ttab").unwrap().is_some());
        assert!(Description::parse(&"x".repeat(4001)).is_err());
        assert!(Description::parse("bell\u{7}").is_err());
    }

    #[test]
    fn tags_are_normalised_and_deduplicated() {
        let tags = Tags::parse(&["Home", " home ", "WORK"]).unwrap();
        let names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        assert_eq!(names, ["home", "work"]);
        let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        assert_eq!(Tags::parse(&eleven).unwrap_err(), TagsError::TooMany(11));
        assert!(Tags::parse(&["a,b"]).is_err());
        assert!(Tags::parse(&[""]).is_err());
        assert!(Tags::parse(&["x".repeat(51)]).is_err());
    }

    #[test]
    fn priorities_order_and_parse() {
        assert!(Priority::Urgent > Priority::High && Priority::High > Priority::Medium);
        assert_eq!("HIGH".parse::<Priority>().unwrap(), Priority::High);
        assert!("critical".parse::<Priority>().is_err());
        for p in Priority::ALL {
            assert_eq!(Priority::from_rank(p.rank()), Some(p));
        }
    }

    #[test]
    fn patch_bumps_version_only_on_change() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let later = Timestamp::from_second(1_800_000_100).unwrap();
        let mut task = NewTask::new(Title::parse("a").unwrap()).into_task(
            crate::ids::test_id(),
            crate::ids::test_id(),
            None,
            now,
        );
        let same = TaskPatch { title: Some(Title::parse("a").unwrap()), ..Default::default() };
        assert!(!same.apply(&mut task, None, later));
        assert_eq!((task.version, task.updated_at), (1, now));

        let done = TaskPatch { status: Some(Status::Completed), ..Default::default() };
        assert!(done.apply(&mut task, None, later));
        assert_eq!((task.version, task.completed_at), (2, Some(later)));

        let reopen = TaskPatch { status: Some(Status::Pending), ..Default::default() };
        assert!(reopen.apply(&mut task, None, later));
        assert_eq!((task.version, task.completed_at), (3, None));
    }
}
