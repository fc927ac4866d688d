//! Query strings, parsed from raw pairs: the `GET /api/tasks` one into a [`TaskQuery`], and
//! the small ones of other lists ([`Paging`], [`NotificationFilter`]) through the [`Parsed`]
//! extractor.
//!
//! Raw pairs (not a serde struct) so `tag` can repeat and each bad value becomes a 422 naming
//! its parameter. Empty values count as absent (HTML forms send them); unknown parameters are
//! ignored. Local instants (`due_before=2026-12-01T09:00`) are read in the user's zone.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use docket_core::{
    CategoryName, CategoryRef, Cursor, FieldError, Limit, Order, Priority, SearchText, SortField,
    StatusFilter, Tag, TaskQuery, User, ValidationErrors, Zone, parse_instant,
};
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterIn};

use crate::problem::ApiError;

/// The pairs of a raw query string worth reading, in order: values trimmed, empty ones left
/// out.
fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// The first value of parameter `name` in a raw query string, as sent.
pub fn param(raw: Option<&str>, name: &str) -> Option<String> {
    let pairs = form_urlencoded::parse(raw?.as_bytes());
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A `limit` value as a length (1–200); a bad one is recorded in `errors`.
fn limit(errors: &mut ValidationErrors, value: &str) -> Option<usize> {
    let limit = errors.check("limit", Limit::parse(value))?;
    Some(usize::try_from(limit.get()).unwrap_or(usize::MAX))
}

/// The length of the default page.
fn default_limit() -> usize {
    usize::try_from(Limit::default().get()).unwrap_or(usize::MAX)
}

/// A query string type read from its pairs, every bad value recorded in `errors`.
pub trait FromQuery: Default + IntoParams {
    fn read(&mut self, key: &str, value: &str, errors: &mut ValidationErrors);
}

/// A query string parsed into `T`: a 422 names each bad parameter; documented as `T` says.
pub struct Parsed<T>(pub T);

impl<S: Send + Sync, T: FromQuery> FromRequestParts<S> for Parsed<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut errors = ValidationErrors::new();
        let mut query = T::default();
        for (key, value) in pairs(parts.uri.query()) {
            query.read(&key, &value, &mut errors);
        }
        errors.into_result()?;
        Ok(Parsed(query))
    }
}

impl<T: FromQuery> IntoParams for Parsed<T> {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        T::into_params(parameter_in)
    }
}

/// A keyset page of the audit log: `?limit=&cursor=`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Page size, 1–200 (default 50).
    #[param(value_type = Option<u32>)]
    pub limit: usize,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub cursor: Option<i64>,
}

impl Default for Paging {
    fn default() -> Paging {
        Paging { limit: default_limit(), cursor: None }
    }
}

impl FromQuery for Paging {
    fn read(&mut self, key: &str, value: &str, errors: &mut ValidationErrors) {
        match key {
            "limit" => self.limit = limit(errors, value).unwrap_or(self.limit),
            "cursor" => match value.parse::<i64>() {
                Ok(c) if c >= 0 => self.cursor = Some(c),
                _ => errors.push(FieldError::custom(
                    "cursor",
                    "invalid",
                    "cursor is not a cursor this endpoint returned",
                )),
            },
            _ => {}
        }
    }
}

/// Which notifications to list: `?unread=&limit=`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationFilter {
    /// `true` for unread ones only.
    #[param(value_type = Option<bool>)]
    pub unread: bool,
    /// At most this many, 1–200 (default 50).
    #[param(value_type = Option<u32>)]
    pub limit: usize,
}

impl Default for NotificationFilter {
    fn default() -> NotificationFilter {
        NotificationFilter { unread: false, limit: default_limit() }
    }
}

impl FromQuery for NotificationFilter {
    fn read(&mut self, key: &str, value: &str, errors: &mut ValidationErrors) {
        match key {
            "unread" => match value {
                "true" => self.unread = true,
                "false" => self.unread = false,
                _ => {
                    errors.push(FieldError::custom("unread", "invalid", "unread is true or false"))
                }
            },
            "limit" => self.limit = limit(errors, value).unwrap_or(self.limit),
            _ => {}
        }
    }
}

/// The documented parameters (parsing is by hand, see [`parse_task_query`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TaskListParams {
    /// `pending`, `completed` or `all` (default).
    status: Option<String>,
    /// Comma-separated priorities, any of which matches: `high,urgent`.
    priority: Option<String>,
    /// A tag the task must carry; repeat for several (all must match).
    tag: Option<Vec<String>>,
    /// A category id or name.
    category: Option<String>,
    /// Only the instances of this recurring series.
    series_id: Option<String>,
    /// Full-text search over title, description and tags (word prefixes, all required).
    q: Option<String>,
    /// Due strictly before this instant (RFC 3339; without offset: the user's zone).
    due_before: Option<String>,
    /// Due at or after this instant.
    due_after: Option<String>,
    /// `true`: only pending tasks whose due date has passed.
    overdue: Option<bool>,
    /// `due_date`, `priority`, `title`, `created_at` (default) or `updated_at`.
    sort: Option<String>,
    /// `asc` or `desc` (default depends on `sort`).
    order: Option<String>,
    /// Page size, 1–200 (default 50).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Parses the raw query of a task list for `user`.
pub fn parse_task_query(raw: Option<&str>, user: &User) -> Result<TaskQuery, ValidationErrors> {
    let zone = user.timezone.clone().unwrap_or_else(Zone::utc);
    let mut errors = ValidationErrors::new();
    let mut q = TaskQuery::default();
    let mut sort = None;
    let mut order = None;
    for (key, value) in pairs(raw) {
        let value = value.as_str();
        match key.as_str() {
            "status" => {
                if let Some(s) = errors.check("status", value.parse::<StatusFilter>()) {
                    q.status = s;
                }
            }
            "priority" => {
                for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    if let Some(p) = errors.check("priority", p.parse::<Priority>())
                        && !q.priorities.contains(&p)
                    {
                        q.priorities.push(p);
                    }
                }
            }
            "tag" => {
                if let Some(t) = errors.check("tag", Tag::parse(value))
                    && !q.tags.contains(&t)
                {
                    q.tags.push(t);
                }
            }
            "category" => {
                q.category = match value.parse::<docket_core::CategoryId>() {
                    Ok(id) => Some(CategoryRef::Id(id)),
                    Err(_) => {
                        errors.check("category", CategoryName::parse(value)).map(CategoryRef::Name)
                    }
                };
            }
            "series_id" => match value.parse::<uuid::Uuid>() {
                Ok(id) => q.series_id = Some(id),
                Err(_) => errors.push(FieldError::custom(
                    "series_id",
                    "invalid",
                    format!("series_id '{value}' is not a series id"),
                )),
            },
            "q" => q.text = errors.check("q", SearchText::parse(value)),
            "due_before" => q.due_before = errors.check("due_before", parse_instant(value, &zone)),
            "due_after" => q.due_after = errors.check("due_after", parse_instant(value, &zone)),
            "overdue" => match value {
                "true" | "1" => q.overdue = true,
                "false" | "0" => q.overdue = false,
                _ => errors.push(FieldError::custom(
                    "overdue",
                    "invalid_choice",
                    format!("overdue '{value}' is not allowed here (expected true or false)"),
                )),
            },
            "sort" => sort = errors.check("sort", value.parse::<SortField>()),
            "order" => order = errors.check("order", value.parse::<Order>()),
            "limit" => {
                if let Some(l) = errors.check("limit", Limit::parse(value)) {
                    q.limit = l;
                }
            }
            "cursor" => q.cursor = errors.check("cursor", Cursor::decode(value)),
            _ => {}
        }
    }
    if q.tags.len() > docket_core::Tags::MAX {
        errors.push(FieldError::custom(
            "tag",
            "too_many",
            format!("at most {} tags can be required at once", docket_core::Tags::MAX),
        ));
    }
    errors.into_result()?;
    q.settle(sort, order).map_err(|e| ValidationErrors::single(FieldError::new("cursor", &e)))
}
