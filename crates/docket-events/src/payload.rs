//! Versioned event payloads (`data`), separate from the domain types.
//!
//! `V1` is a published contract: fields are only ever added (as optional) within a version;
//! anything else is a `V2` beside it. Every field of the task is in [`TaskV1`], nulls
//! included, so a consumer never needs to read the task back. Conversions go one way, domain
//! to wire (`From<&Task>`); consumers that need domain values parse them at their edge.

use std::collections::BTreeMap;

use docket_core::{Category, Task};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A task's category as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryV1 {
    pub id: Uuid,
    pub name: String,
    pub color: String,
}

/// The full after-image of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskV1 {
    pub id: Uuid,
    pub user_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    /// `pending` or `completed`.
    pub status: String,
    pub completed_at: Option<Timestamp>,
    /// `low`, `medium`, `high` or `urgent`.
    pub priority: String,
    pub category: Option<CategoryV1>,
    pub tags: Vec<String>,
    pub due_date: Option<Timestamp>,
    /// IANA time zone name.
    pub timezone: Option<String>,
    /// The recurring series this task is an instance of (added within v1: optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_id: Option<Uuid>,
    /// Which occurrence of the series (`YYYY-MM-DD`, local to the series' zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_date: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

impl From<&Category> for CategoryV1 {
    fn from(c: &Category) -> CategoryV1 {
        CategoryV1 {
            id: c.id.0,
            name: c.name.as_str().to_owned(),
            color: c.color.as_str().to_owned(),
        }
    }
}

impl From<&Task> for TaskV1 {
    fn from(t: &Task) -> TaskV1 {
        TaskV1 {
            id: t.id.0,
            user_id: t.user_id.0,
            title: t.title.as_str().to_owned(),
            description: t.description.as_ref().map(|d| d.as_str().to_owned()),
            status: t.status.as_str().to_owned(),
            completed_at: t.completed_at,
            priority: t.priority.as_str().to_owned(),
            category: t.category.as_ref().map(CategoryV1::from),
            tags: t.tags.iter().map(|tag| tag.as_str().to_owned()).collect(),
            due_date: t.due_date,
            timezone: t.timezone.as_ref().map(|z| z.name().to_owned()),
            series_id: t.series.as_ref().map(|s| s.series_id.0),
            instance_date: t.series.as_ref().map(|s| s.instance_date.to_string()),
            created_at: t.created_at,
            updated_at: t.updated_at,
            version: t.version,
        }
    }
}

/// One changed field of an update: its JSON value before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub old: Value,
    pub new: Value,
}

/// `data` of `com.todo.task.created|updated|completed|reopened`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEventDataV1 {
    pub task: TaskV1,
    /// For updates (completed and reopened included): field name → old and new value. The
    /// bookkeeping fields `version` and `updated_at` are left out (they change every time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<BTreeMap<String, FieldChange>>,
}

/// `data` of `com.todo.task.deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDeletedV1 {
    pub task_id: Uuid,
    pub user_id: Uuid,
    pub title: String,
}

/// The fields that differ between two images, by their JSON values.
pub(crate) fn changes(before: &TaskV1, after: &TaskV1) -> BTreeMap<String, FieldChange> {
    let to_map = |t: &TaskV1| match serde_json::to_value(t) {
        Ok(Value::Object(m)) => m,
        _ => unreachable!("TaskV1 serializes to a JSON object"),
    };
    let (mut old, mut new) = (to_map(before), to_map(after));
    // A field left out of one image (an optional one, such as `series_id` once a task is
    // detached from its series) is `null` there: the union of both images' fields.
    let fields: std::collections::BTreeSet<String> =
        old.keys().chain(new.keys()).cloned().collect();
    fields
        .into_iter()
        .filter(|field| field != "version" && field != "updated_at")
        .filter_map(|field| {
            let old = old.remove(&field).unwrap_or(Value::Null);
            let new = new.remove(&field).unwrap_or(Value::Null);
            (old != new).then_some((field, FieldChange { old, new }))
        })
        .collect()
}
