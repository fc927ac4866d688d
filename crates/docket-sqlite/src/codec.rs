//! Conversions between SQLite values and `docket-core` values, and driver error mapping.
//!
//! Ids are 16-byte BLOBs, instants INTEGER microseconds, priorities their rank, statuses 0/1,
//! tags one comma-joined TEXT. Values read back are re-parsed through the domain parsers, so a
//! row that no longer parses (a hand-edited database) surfaces as `Unavailable`, never as a
//! panic or an invalid value. The column lists here are the single source of the `SELECT`s.

use std::cell::RefCell;
use std::collections::HashMap;

use docket_core::{
    Category, CategoryId, CategoryName, Color, Description, DisplayName, Email, Priority, SeriesId,
    SeriesLink, Status, Tags, Task, TaskId, Timestamp, Title, TokenId, User, UserId, Zone,
};
use rusqlite::types::ValueRef;
use rusqlite::{Row, ffi};

use docket_ports::StoreError;
use docket_ports::{TokenInfo, UserRecord};

pub const BACKEND: &str = "sqlite";

/// Maps driver errors onto `Unavailable`: whatever a caller could act on (conflicts, missing
/// rows) is detected explicitly where it can happen.
pub trait DbResult<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> DbResult<T> for Result<T, E> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::unavailable(BACKEND, e))
    }
}

/// The message of a UNIQUE (or primary key) violation, e.g. `UNIQUE constraint failed: users.email`.
pub fn unique_violation(e: &rusqlite::Error) -> Option<&str> {
    match e {
        rusqlite::Error::SqliteFailure(f, msg)
            if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Some(msg.as_deref().unwrap_or(""))
        }
        _ => None,
    }
}

/// Whether `e` is a FOREIGN KEY violation (a write naming a user that does not exist).
pub fn foreign_key_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::unavailable(
        BACKEND,
        format!("stored {what} does not parse; was the database edited by hand?"),
    )
}

pub fn micros(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

/// Drops sub-microsecond precision, as storing does, so a returned value equals a re-read one.
pub fn truncate(ts: Timestamp) -> Timestamp {
    docket_core::time::truncate_micros(ts)
}

pub(crate) fn instant(v: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_microsecond(v).map_err(|_| corrupt("instant"))
}

pub(crate) fn uuid_at(row: &Row<'_>, i: usize) -> Result<uuid::Uuid, StoreError> {
    let bytes = row.get_ref(i).db()?.as_blob().db()?;
    uuid::Uuid::from_slice(bytes).map_err(|_| corrupt("id"))
}

pub(crate) fn text_at<'r>(row: &'r Row<'_>, i: usize) -> Result<&'r str, StoreError> {
    row.get_ref(i).db()?.as_str().db()
}

pub(crate) fn opt_text_at<'r>(row: &'r Row<'_>, i: usize) -> Result<Option<&'r str>, StoreError> {
    row.get_ref(i).db()?.as_str_or_null().db()
}

pub(crate) fn i64_at(row: &Row<'_>, i: usize) -> Result<i64, StoreError> {
    row.get_ref(i).db()?.as_i64().db()
}

fn opt_i64_at(row: &Row<'_>, i: usize) -> Result<Option<i64>, StoreError> {
    row.get_ref(i).db()?.as_i64_or_null().db()
}

pub(crate) fn opt_instant_at(row: &Row<'_>, i: usize) -> Result<Option<Timestamp>, StoreError> {
    opt_i64_at(row, i)?.map(instant).transpose()
}

thread_local! {
    // Zone::parse looks the name up in the bundled tz database; a list page repeats the same
    // few names, so each thread keeps the parsed zones (a few hundred at most exist).
    static ZONES: RefCell<HashMap<String, Zone>> = RefCell::new(HashMap::new());
}

fn zone(name: &str) -> Result<Zone, StoreError> {
    ZONES.with(|cache| {
        if let Some(z) = cache.borrow().get(name) {
            return Ok(z.clone());
        }
        let z = Zone::parse(name).map_err(|_| corrupt("time zone"))?;
        cache.borrow_mut().insert(name.to_owned(), z.clone());
        Ok(z)
    })
}

fn opt_zone_at(row: &Row<'_>, i: usize) -> Result<Option<Zone>, StoreError> {
    opt_text_at(row, i)?.map(zone).transpose()
}

pub fn status_code(s: Status) -> i64 {
    match s {
        Status::Pending => 0,
        Status::Completed => 1,
    }
}

/// Tags as stored: comma-joined (a tag never contains a comma).
pub fn tags_text(tags: &Tags) -> String {
    tags.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",")
}

/// The columns of a task row with its category; [`task_from_row`] reads them in this order.
pub const TASK_COLUMNS: &str = "t.seq, t.id, t.user_id, t.title, t.description, t.status, t.completed_at, \
     t.priority, t.tags, t.due_date, t.timezone, t.created_at, t.updated_at, t.version, \
     c.id, c.name, c.color, c.created_at, t.series_id, t.instance_date, t.recurrence";

/// How many columns [`TASK_COLUMNS`] has; list queries append their sort key after them.
pub const TASK_COLUMN_COUNT: usize = 21;

/// `FROM` clause matching [`TASK_COLUMNS`].
pub const TASK_FROM: &str = "tasks t LEFT JOIN categories c ON c.id = t.category_id";

/// Reads a task row selected with [`TASK_COLUMNS`]; returns it with its `seq` (the FTS rowid).
pub fn task_from_row(row: &Row<'_>) -> Result<(i64, Task), StoreError> {
    let seq = i64_at(row, 0)?;
    let user_id = UserId(uuid_at(row, 2)?);
    let status = match i64_at(row, 5)? {
        0 => Status::Pending,
        1 => Status::Completed,
        _ => return Err(corrupt("status")),
    };
    let tags_raw = text_at(row, 8)?;
    let tags = if tags_raw.is_empty() {
        Tags::default()
    } else {
        Tags::parse(&tags_raw.split(',').collect::<Vec<_>>()).map_err(|_| corrupt("tags"))?
    };
    let category = match row.get_ref(14).db()? {
        ValueRef::Null => None,
        _ => Some(Category {
            id: CategoryId(uuid_at(row, 14)?),
            user_id,
            name: CategoryName::parse(text_at(row, 15)?).map_err(|_| corrupt("category name"))?,
            color: Color::parse(text_at(row, 16)?).map_err(|_| corrupt("category colour"))?,
            created_at: instant(i64_at(row, 17)?)?,
        }),
    };
    let task = Task {
        id: TaskId(uuid_at(row, 1)?),
        user_id,
        title: Title::parse(text_at(row, 3)?).map_err(|_| corrupt("title"))?,
        description: match opt_text_at(row, 4)? {
            None => None,
            Some(d) => Description::parse(d).map_err(|_| corrupt("description"))?,
        },
        status,
        completed_at: opt_instant_at(row, 6)?,
        priority: Priority::from_rank(i64_at(row, 7)?).ok_or_else(|| corrupt("priority"))?,
        category,
        tags,
        due_date: opt_instant_at(row, 9)?,
        timezone: opt_zone_at(row, 10)?,
        series: series_link_at(row, 18)?,
        created_at: instant(i64_at(row, 11)?)?,
        updated_at: instant(i64_at(row, 12)?)?,
        version: i64_at(row, 13)?,
    };
    Ok((seq, task))
}

/// A task's series link from its `series_id, instance_date, recurrence` columns at `i`.
fn series_link_at(row: &Row<'_>, i: usize) -> Result<Option<SeriesLink>, StoreError> {
    if let ValueRef::Null = row.get_ref(i).db()? {
        return Ok(None);
    }
    let date = text_at(row, i + 1)?.parse().map_err(|_| corrupt("instance_date"))?;
    let recurrence =
        serde_json::from_str(text_at(row, i + 2)?).map_err(|_| corrupt("task recurrence"))?;
    Ok(Some(SeriesLink { series_id: SeriesId(uuid_at(row, i)?), instance_date: date, recurrence }))
}

/// The columns of a user row; [`user_from_row`] reads them in this order.
pub const USER_COLUMNS: &str =
    "u.id, u.email, u.name, u.timezone, u.external_subject, u.created_at, u.password_hash";

pub fn user_from_row(row: &Row<'_>) -> Result<UserRecord, StoreError> {
    let user = User {
        id: UserId(uuid_at(row, 0)?),
        email: opt_text_at(row, 1)?
            .map(|e| Email::parse(e).map_err(|_| corrupt("email")))
            .transpose()?,
        name: DisplayName::parse(text_at(row, 2)?).map_err(|_| corrupt("user name"))?,
        timezone: opt_zone_at(row, 3)?,
        external_subject: opt_text_at(row, 4)?.map(str::to_owned),
        created_at: instant(i64_at(row, 5)?)?,
    };
    Ok(UserRecord { user, password_hash: opt_text_at(row, 6)?.map(str::to_owned) })
}

/// The columns of a category row; [`category_from_row`] reads them in this order.
pub const CATEGORY_COLUMNS: &str = "id, user_id, name, color, created_at";

pub fn category_from_row(row: &Row<'_>) -> Result<Category, StoreError> {
    Ok(Category {
        id: CategoryId(uuid_at(row, 0)?),
        user_id: UserId(uuid_at(row, 1)?),
        name: CategoryName::parse(text_at(row, 2)?).map_err(|_| corrupt("category name"))?,
        color: Color::parse(text_at(row, 3)?).map_err(|_| corrupt("category colour"))?,
        created_at: instant(i64_at(row, 4)?)?,
    })
}

/// The columns of a token row; [`token_from_row`] reads them in this order.
pub const TOKEN_COLUMNS: &str = "id, user_id, name, prefix, created_at, expires_at";

pub fn token_from_row(row: &Row<'_>) -> Result<TokenInfo, StoreError> {
    Ok(TokenInfo {
        id: TokenId(uuid_at(row, 0)?),
        user_id: UserId(uuid_at(row, 1)?),
        name: text_at(row, 2)?.to_owned(),
        prefix: text_at(row, 3)?.to_owned(),
        created_at: instant(i64_at(row, 4)?)?,
        expires_at: opt_instant_at(row, 5)?,
    })
}
