//! JSON wire types of the API and their conversions to and from domain values.
//!
//! Request bodies are deserialised loosely (every field optional, unknown fields ignored) and
//! then converted with every rule checked at once, so a 422 lists all bad fields with the
//! domain's own codes and messages. PATCH bodies tell an absent field from `null` (`null`
//! clears a nullable field; it is a 422 on a field that cannot be empty). Instants go out as
//! RFC 3339 UTC strings.

use docket_app::{CreatedToken, InstantInput, Session, TaskChanges, TaskInput};
use docket_core::{
    Category, CategoryId, CategoryName, CategoryPatch, CategoryRef, Color, Description,
    DisplayName, Email, FieldError, NewCategory, Password, Priority, RecurrenceSpec, Status, Tags,
    Task, Timestamp, Title, User, ValidationErrors, Zone,
};
use docket_ports::{TagCount, TokenInfo};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// Deserialises a present field, `null` included, as `Some(_)`; with `#[serde(default)]` an
/// absent one stays `None`.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Deserialises a present JSON value, `null` included (as `Value::Null`); with
/// `#[serde(default)]` an absent one stays `None`.
fn present_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

fn instant(ts: Timestamp) -> String {
    ts.to_string()
}

/// A task's priority.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PriorityName {
    Low,
    Medium,
    High,
    Urgent,
}

/// A task's status.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum StatusName {
    Pending,
    Completed,
}

// --- users and tokens

#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub email: Option<String>,
    pub name: String,
    /// IANA zone; local instants without an offset are read in it.
    pub timezone: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&User> for UserDto {
    fn from(u: &User) -> Self {
        UserDto {
            id: u.id.to_string(),
            email: u.email.as_ref().map(|e| e.as_str().to_owned()),
            name: u.name.as_str().to_owned(),
            timezone: u.timezone.as_ref().map(|z| z.name().to_owned()),
            created_at: instant(u.created_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignupBody {
    #[schema(value_type = String, required = true, format = Email)]
    pub email: Option<String>,
    /// 8–256 characters.
    #[schema(value_type = String, required = true)]
    pub password: Option<String>,
    pub name: Option<String>,
    /// IANA zone such as `Europe/Berlin`.
    pub timezone: Option<String>,
}

impl TryFrom<SignupBody> for docket_app::Signup {
    type Error = ValidationErrors;
    fn try_from(b: SignupBody) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let email = required(&mut errors, "email", b.email.as_deref(), Email::parse);
        let password = required(&mut errors, "password", b.password.as_deref(), Password::parse);
        let name = b.name.as_deref().and_then(|n| errors.check("name", DisplayName::parse(n)));
        let timezone = b.timezone.as_deref().and_then(|z| errors.check("timezone", Zone::parse(z)));
        errors.clone().into_result()?;
        match (email, password) {
            (Some(email), Some(password)) => {
                Ok(docket_app::Signup { email, password, name, timezone })
            }
            _ => Err(errors),
        }
    }
}

fn required<T, E: docket_core::Invalid>(
    errors: &mut ValidationErrors,
    field: &str,
    raw: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Option<T> {
    match raw {
        None => {
            errors.push(FieldError::custom(field, "required", format!("{field} is required")));
            None
        }
        Some(raw) => errors.check(field, parse(raw)),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthResponse {
    pub user: UserDto,
    /// A session JWT: send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

impl From<Session> for AuthResponse {
    fn from(s: Session) -> Self {
        AuthResponse {
            user: UserDto::from(&s.user),
            token: s.token,
            token_type: "Bearer",
            expires_at: instant(s.expires_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenBody {
    /// What the token is for, 1–100 characters (`laptop cli`).
    #[schema(value_type = String, required = true)]
    pub name: Option<String>,
    /// When the token stops working; omit for a token that lasts until revoked.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

impl TokenBody {
    pub fn into_new_token(self, user: &User) -> Result<docket_app::NewToken, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let name = required(&mut errors, "name", self.name.as_deref(), DisplayName::parse);
        let zone = user.timezone.clone().unwrap_or_else(Zone::utc);
        let expires_at = self
            .expires_at
            .as_deref()
            .and_then(|raw| errors.check("expires_at", docket_core::parse_instant(raw, &zone)));
        errors.clone().into_result()?;
        name.map(|name| docket_app::NewToken { name, expires_at }).ok_or(errors)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub name: String,
    /// The first characters of the token, to tell tokens apart.
    pub prefix: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

impl From<&TokenInfo> for TokenDto {
    fn from(t: &TokenInfo) -> Self {
        TokenDto {
            id: t.id.to_string(),
            name: t.name.clone(),
            prefix: t.prefix.clone(),
            created_at: instant(t.created_at),
            expires_at: t.expires_at.map(instant),
        }
    }
}

/// A new personal access token. `token` is shown this once only; store it now.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTokenDto {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenDto,
}

impl From<CreatedToken> for CreatedTokenDto {
    fn from(c: CreatedToken) -> Self {
        CreatedTokenDto { token: c.token, info: TokenDto::from(&c.info) }
    }
}

// --- categories

/// A task's category as embedded in the task.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryRefDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub name: String,
    /// `#rrggbb`
    pub color: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub name: String,
    /// `#rrggbb`
    pub color: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&Category> for CategoryDto {
    fn from(c: &Category) -> Self {
        CategoryDto {
            id: c.id.to_string(),
            name: c.name.as_str().to_owned(),
            color: c.color.as_str().to_owned(),
            created_at: instant(c.created_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CategoryBody {
    /// 1–100 characters, unique per user (case-insensitively).
    #[schema(value_type = String, required = true)]
    pub name: Option<String>,
    /// `#rrggbb`, default `#3b82f6`.
    pub color: Option<String>,
}

impl TryFrom<CategoryBody> for NewCategory {
    type Error = ValidationErrors;
    fn try_from(b: CategoryBody) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let name = required(&mut errors, "name", b.name.as_deref(), CategoryName::parse);
        let color = b.color.as_deref().and_then(|c| errors.check("color", Color::parse(c)));
        errors.clone().into_result()?;
        name.map(|name| NewCategory { name, color: color.unwrap_or_default() }).ok_or(errors)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CategoryPatchBody {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String)]
    pub color: Option<Option<String>>,
}

fn not_null<'a>(
    errors: &mut ValidationErrors,
    field: &str,
    v: &'a Option<Option<String>>,
) -> Option<&'a str> {
    match v {
        None => None,
        Some(None) => {
            errors.push(FieldError::custom(
                field,
                "not_nullable",
                format!("{field} cannot be null; leave it out to keep it"),
            ));
            None
        }
        Some(Some(s)) => Some(s.as_str()),
    }
}

impl TryFrom<CategoryPatchBody> for CategoryPatch {
    type Error = ValidationErrors;
    fn try_from(b: CategoryPatchBody) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let name = not_null(&mut errors, "name", &b.name)
            .and_then(|n| errors.check("name", CategoryName::parse(n)));
        let color = not_null(&mut errors, "color", &b.color)
            .and_then(|c| errors.check("color", Color::parse(c)));
        errors.into_result()?;
        Ok(CategoryPatch { name, color })
    }
}

// --- tags

#[derive(Debug, Serialize, ToSchema)]
pub struct TagDto {
    pub name: String,
    /// How many of the user's tasks carry it.
    pub count: i64,
}

impl From<TagCount> for TagDto {
    fn from(t: TagCount) -> Self {
        TagDto { name: t.name, count: t.count }
    }
}

// --- tasks

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    #[schema(value_type = StatusName)]
    pub status: &'static str,
    /// Mirrors `status == "completed"`.
    pub completed: bool,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    #[schema(value_type = PriorityName)]
    pub priority: &'static str,
    pub category: Option<CategoryRefDto>,
    pub tags: Vec<String>,
    #[schema(format = DateTime)]
    pub due_date: Option<String>,
    pub timezone: Option<String>,
    /// The recurrence of the task's series, in object form, as of the task's last write (an
    /// instance keeps the rule it was made under when a later one gets a new rule); `null`
    /// for a one-off task.
    pub recurrence: Option<RecurrenceDto>,
    /// The recurring series this task is an instance of.
    #[schema(format = Uuid)]
    pub series_id: Option<String>,
    /// Which occurrence of the series this is (`YYYY-MM-DD`); unique per series.
    #[schema(format = Date)]
    pub instance_date: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Bumped on every change; the `ETag` is `"<version>"`.
    pub version: i64,
}

/// A recurrence in object form (§2.3): exactly one of `preset` (with `interval`), `rule` or
/// `cron`, and the series it belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecurrenceDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    pub timezone: Option<String>,
    /// `after_completion` or `fixed`.
    pub mode: Option<String>,
    /// `schedule` or `completion`.
    pub anchor: Option<String>,
    #[schema(format = DateTime)]
    pub until: Option<String>,
    pub count: Option<i64>,
    #[schema(format = Uuid)]
    pub series_id: String,
}

impl RecurrenceDto {
    pub fn new(spec: &RecurrenceSpec, series_id: String) -> RecurrenceDto {
        RecurrenceDto {
            preset: spec.preset.clone(),
            interval: spec.interval,
            rule: spec.rule.clone(),
            cron: spec.cron.clone(),
            timezone: spec.timezone.clone(),
            mode: spec.mode.clone(),
            anchor: spec.anchor.clone(),
            until: spec.until.clone(),
            count: spec.count,
            series_id,
        }
    }
}

impl From<&Task> for TaskDto {
    fn from(t: &Task) -> Self {
        TaskDto {
            id: t.id.to_string(),
            title: t.title.as_str().to_owned(),
            description: t.description.as_ref().map(|d| d.as_str().to_owned()),
            status: t.status.as_str(),
            completed: t.status == Status::Completed,
            completed_at: t.completed_at.map(instant),
            priority: t.priority.as_str(),
            category: t.category.as_ref().map(|c| CategoryRefDto {
                id: c.id.to_string(),
                name: c.name.as_str().to_owned(),
                color: c.color.as_str().to_owned(),
            }),
            tags: t.tags.iter().map(|t| t.as_str().to_owned()).collect(),
            due_date: t.due_date.map(instant),
            timezone: t.timezone.as_ref().map(|z| z.name().to_owned()),
            recurrence: t
                .series
                .as_ref()
                .map(|l| RecurrenceDto::new(&l.recurrence, l.series_id.to_string())),
            series_id: t.series.as_ref().map(|l| l.series_id.to_string()),
            instance_date: t.series.as_ref().map(|l| l.instance_date.to_string()),
            created_at: instant(t.created_at),
            updated_at: instant(t.updated_at),
            version: t.version,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskDto>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The result of completing (or toggling) a task.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionDto {
    pub task: TaskDto,
    /// The next instance of a recurring task, created by this completion; `null` otherwise.
    pub next: Option<TaskDto>,
}

/// A task to create (POST) or the whole new state of one (PUT). Unknown fields are ignored.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TaskBody {
    /// 1–255 characters.
    #[schema(value_type = String, required = true)]
    pub title: Option<String>,
    /// At most 4000 characters.
    pub description: Option<String>,
    /// Default `medium`.
    #[schema(value_type = Option<PriorityName>)]
    pub priority: Option<String>,
    /// Default `pending`; `completed` (a bool) is accepted instead.
    #[schema(value_type = Option<StatusName>)]
    pub status: Option<String>,
    pub completed: Option<bool>,
    /// One of the user's categories; or give `category` (a name, created when new).
    #[schema(format = Uuid)]
    pub category_id: Option<String>,
    pub category: Option<String>,
    /// At most 10, each 1–50 characters; stored lower-case.
    pub tags: Option<Vec<String>>,
    /// RFC 3339; without an offset it is local time in `timezone`, else the user's zone.
    pub due_date: Option<String>,
    /// IANA zone; default the user's zone, else UTC.
    pub timezone: Option<String>,
    /// A preset name (`"weekly"`) or an object with exactly one of `preset` (+ `interval`),
    /// `rule` or `cron`, plus optional `timezone`, `mode`, `anchor`, `until`, `count`
    /// (§2.3). On POST it makes the task the first instance of a recurring series. On PUT it
    /// does what it does on PATCH (see there); left out, a PUT leaves the task's series as
    /// it is.
    #[serde(default, deserialize_with = "present_value")]
    #[schema(value_type = Option<Object>)]
    pub recurrence: Option<serde_json::Value>,
    /// Alias of `recurrence` (the seeds' clients): a preset name or RRULE text.
    pub recurring_rule: Option<String>,
    /// Alias of `recurrence.until`.
    pub recurring_end_date: Option<String>,
}

/// The recurrence of a body in object form, from `recurrence` (a preset name or an object)
/// or the flat `recurring_rule` / `recurring_end_date` aliases: `None` when neither is given
/// (or `recurrence` is `null`), else `Some(Some(spec))`, or `Some(None)` when `recurrence` is
/// `null` and no alias is given.
fn parse_recurrence(
    errors: &mut ValidationErrors,
    recurrence: Option<&serde_json::Value>,
    recurring_rule: Option<&String>,
    recurring_end_date: Option<&String>,
) -> Option<Option<RecurrenceSpec>> {
    if let (Some(serde_json::Value::Null), None) = (recurrence, recurring_rule) {
        return Some(None);
    }
    recurrence_spec(errors, recurrence, recurring_rule, recurring_end_date).map(Some)
}

fn recurrence_spec(
    errors: &mut ValidationErrors,
    recurrence: Option<&serde_json::Value>,
    recurring_rule: Option<&String>,
    recurring_end_date: Option<&String>,
) -> Option<RecurrenceSpec> {
    match (recurrence, recurring_rule) {
        (Some(serde_json::Value::Null) | None, None) => None,
        (Some(serde_json::Value::String(name)), _) => {
            Some(RecurrenceSpec { preset: Some(name.clone()), ..RecurrenceSpec::default() })
        }
        (Some(v @ serde_json::Value::Object(_)), _) => {
            match serde_json::from_value::<RecurrenceSpec>(v.clone()) {
                Ok(spec) => Some(spec),
                Err(e) => {
                    errors.push(FieldError::custom(
                        "recurrence",
                        "invalid_type",
                        format!("recurrence is not a recurrence object ({e})"),
                    ));
                    None
                }
            }
        }
        (Some(serde_json::Value::Null) | None, Some(rule)) => {
            let upper = rule.trim().to_ascii_uppercase();
            let mut spec =
                RecurrenceSpec { until: recurring_end_date.cloned(), ..RecurrenceSpec::default() };
            if upper.starts_with("RRULE:") || upper.contains("FREQ=") {
                spec.rule = Some(rule.clone());
            } else {
                spec.preset = Some(rule.clone());
            }
            Some(spec)
        }
        (Some(_), _) => {
            errors.push(FieldError::custom(
                "recurrence",
                "invalid_type",
                "recurrence must be a preset name (\"weekly\") or an object such as {\"preset\": \"daily\"}",
            ));
            None
        }
    }
}

/// Changes to a task: absent fields stay, `null` clears `description`, `category_id`,
/// `category`, `tags`, `due_date` and `timezone` (back to the user's zone).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TaskPatchBody {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String)]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = PriorityName)]
    pub priority: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = StatusName)]
    pub status: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = bool)]
    pub completed: Option<Option<bool>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub category_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub category: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    pub tags: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub due_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub timezone: Option<Option<String>>,
    /// A recurrence as on create (§2.3). On a one-off task it makes the task the first
    /// instance of a new series (its due date moves to the rule's first occurrence from it,
    /// as on create). On an instance of a series it replaces the series' rule for the
    /// instances after this one: the rule restarts at this instance's due date and the
    /// series' `next_occurrence` is recomputed (the same rule changes nothing); a completed
    /// task's next instance is made at once. `null` ends the task's series, as
    /// `DELETE /api/series/{id}` does: no more instances, and every instance (this one
    /// included) stays as a one-off task. An invalid rule is a 422 naming `recurrence`.
    #[serde(default, deserialize_with = "present_value")]
    #[schema(value_type = Option<Object>)]
    pub recurrence: Option<serde_json::Value>,
    /// Alias of `recurrence` (the seeds' clients): a preset name or RRULE text.
    pub recurring_rule: Option<String>,
    /// Alias of `recurrence.until`, with `recurring_rule`.
    pub recurring_end_date: Option<String>,
}

fn parse_status(
    errors: &mut ValidationErrors,
    status: Option<&str>,
    completed: Option<bool>,
) -> Option<Status> {
    let from_status = status.and_then(|s| errors.check("status", s.parse::<Status>()));
    let from_completed = completed.map(|c| if c { Status::Completed } else { Status::Pending });
    match (from_status, from_completed) {
        (Some(a), Some(b)) if a != b => {
            errors.push(FieldError::custom(
                "completed",
                "conflict",
                format!(
                    "completed is {} but status is '{}'; send one of them",
                    b == Status::Completed,
                    a
                ),
            ));
            None
        }
        (a, b) => a.or(b),
    }
}

fn parse_category(
    errors: &mut ValidationErrors,
    id: Option<&str>,
    name: Option<&str>,
) -> Option<CategoryRef> {
    match (id, name) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::custom(
                "category",
                "conflict",
                "give category_id or category (a name), not both",
            ));
            None
        }
        (Some(id), None) => match id.trim().parse::<CategoryId>() {
            Ok(id) => Some(CategoryRef::Id(id)),
            Err(_) => {
                errors.push(FieldError::custom(
                    "category_id",
                    "invalid_id",
                    format!("category_id '{id}' is not a category id (a UUID); give the name as 'category' instead"),
                ));
                None
            }
        },
        (None, Some(name)) => {
            errors.check("category", CategoryName::parse(name)).map(CategoryRef::Name)
        }
        (None, None) => None,
    }
}

fn parse_description(errors: &mut ValidationErrors, raw: &str) -> Option<Description> {
    errors.check("description", Description::parse(raw)).flatten()
}

impl TryFrom<TaskBody> for TaskInput {
    type Error = ValidationErrors;
    fn try_from(b: TaskBody) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let title = required(&mut errors, "title", b.title.as_deref(), Title::parse);
        let description = b.description.as_deref().and_then(|d| parse_description(&mut errors, d));
        let priority =
            b.priority.as_deref().and_then(|p| errors.check("priority", p.parse::<Priority>()));
        let status = parse_status(&mut errors, b.status.as_deref(), b.completed);
        let category = parse_category(&mut errors, b.category_id.as_deref(), b.category.as_deref());
        let tags = b.tags.as_deref().and_then(|t| errors.check("tags", Tags::parse(t)));
        let due_date =
            b.due_date.as_deref().and_then(|d| errors.check("due_date", InstantInput::parse(d)));
        let timezone = b.timezone.as_deref().and_then(|z| errors.check("timezone", Zone::parse(z)));
        let recurrence = parse_recurrence(
            &mut errors,
            b.recurrence.as_ref(),
            b.recurring_rule.as_ref(),
            b.recurring_end_date.as_ref(),
        );
        errors.clone().into_result()?;
        let title = title.ok_or(errors)?;
        Ok(TaskInput {
            title,
            description,
            priority: priority.unwrap_or_default(),
            category,
            tags: tags.unwrap_or_default(),
            due_date,
            timezone,
            status: status.unwrap_or_default(),
            recurrence,
        })
    }
}

impl TryFrom<TaskPatchBody> for TaskChanges {
    type Error = ValidationErrors;
    fn try_from(b: TaskPatchBody) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let title = not_null(&mut errors, "title", &b.title)
            .and_then(|t| errors.check("title", Title::parse(t)));
        let description = b.description.as_ref().map(|d| match d {
            None => None,
            Some(d) => parse_description(&mut errors, d),
        });
        let priority = not_null(&mut errors, "priority", &b.priority)
            .and_then(|p| errors.check("priority", p.parse::<Priority>()));
        let completed = match b.completed {
            Some(None) => {
                errors.push(FieldError::custom(
                    "completed",
                    "not_nullable",
                    "completed cannot be null; send true or false",
                ));
                None
            }
            Some(Some(c)) => Some(c),
            None => None,
        };
        let status_raw = not_null(&mut errors, "status", &b.status);
        let status = parse_status(&mut errors, status_raw, completed);
        let category = match (&b.category_id, &b.category) {
            (None, None) => None,
            // Either one set to null clears the category, as long as the other does not set one.
            (Some(None), None) | (None, Some(None)) | (Some(None), Some(None)) => Some(None),
            (id, name) => {
                let id = id.as_ref().and_then(Option::as_deref);
                let name = name.as_ref().and_then(Option::as_deref);
                parse_category(&mut errors, id, name).map(Some)
            }
        };
        let tags = b.tags.as_ref().map(|t| match t {
            None => Some(Tags::default()),
            Some(t) => errors.check("tags", Tags::parse(t)),
        });
        let due_date = b.due_date.as_ref().map(|d| match d {
            None => Some(None),
            Some(d) => errors.check("due_date", InstantInput::parse(d)).map(Some),
        });
        let timezone = b.timezone.as_ref().map(|z| match z {
            None => Some(None),
            Some(z) => errors.check("timezone", Zone::parse(z)).map(Some),
        });
        let recurrence = parse_recurrence(
            &mut errors,
            b.recurrence.as_ref(),
            b.recurring_rule.as_ref(),
            b.recurring_end_date.as_ref(),
        );
        errors.into_result()?;
        Ok(TaskChanges {
            title,
            description,
            priority,
            category,
            tags: tags.flatten(),
            due_date: due_date.flatten(),
            timezone: timezone.flatten(),
            status,
            recurrence,
        })
    }
}

#[cfg(test)]
mod tests;
