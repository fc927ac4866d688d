//! Value conversions between PostgreSQL rows and `docket-core` types.
//!
//! sqlx is built without a date-time feature (the workspace uses jiff, which sqlx does not
//! support), so [`PgInstant`] encodes and decodes `timestamptz` itself in PostgreSQL's binary
//! form: microseconds since 2000-01-01 UTC, with `i64::MAX`/`i64::MIN` as ±infinity.
//! Row decoders turn stored text back into parsed domain values; a stored value that no
//! longer parses is reported as a store failure, never a panic. Nothing here runs a query.

use docket_core::{
    Category, CategoryId, CategoryName, Color, Description, DisplayName, Email, Priority, SeriesId,
    SeriesLink, Status, Tags, Task, TaskId, Timestamp, Title, User, UserId, Zone,
};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgRow, PgTypeInfo, PgValueFormat, PgValueRef, Postgres};
use sqlx::{Decode, Encode, Row, Type};

use super::BACKEND;
use docket_ports::{StoreError, TokenInfo};

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01T00:00:00Z).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// The OID of `timestamptz` in every PostgreSQL installation.
const TIMESTAMPTZ_OID: Oid = Oid(1184);

/// A `timestamptz` value in PostgreSQL's own binary representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PgInstant(i64);

impl PgInstant {
    pub(super) const INFINITY: PgInstant = PgInstant(i64::MAX);
    pub(super) const NEG_INFINITY: PgInstant = PgInstant(i64::MIN);

    pub(crate) fn new(ts: Timestamp) -> PgInstant {
        // Every jiff timestamp (years -9999..=9999) fits: at most ~3.2e17 µs from either epoch.
        PgInstant(ts.as_microsecond() - PG_EPOCH_OFFSET_MICROS)
    }

    /// From Unix microseconds, as carried in a cursor; `None` when out of jiff's range.
    pub(super) fn from_unix_micros(micros: i64) -> Option<PgInstant> {
        Timestamp::from_microsecond(micros).ok().map(PgInstant::new)
    }

    pub(super) fn timestamp(self) -> Result<Timestamp, BoxDynError> {
        if self == PgInstant::INFINITY || self == PgInstant::NEG_INFINITY {
            return Err("an infinite timestamptz has no instant".into());
        }
        let unix = self.0.checked_add(PG_EPOCH_OFFSET_MICROS).ok_or("timestamptz out of range")?;
        Ok(Timestamp::from_microsecond(unix)?)
    }
}

impl Type<Postgres> for PgInstant {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(TIMESTAMPTZ_OID)
    }
}

impl Encode<'_, Postgres> for PgInstant {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }

    fn size_hint(&self) -> usize {
        size_of::<i64>()
    }
}

impl Decode<'_, Postgres> for PgInstant {
    fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => Ok(PgInstant(<i64 as Decode<Postgres>>::decode(value)?)),
            // Only the simple-query protocol returns text, and this adapter never reads rows
            // through it.
            PgValueFormat::Text => Err("timestamptz in text format is not supported".into()),
        }
    }
}

/// A store failure for a stored value that does not decode, naming the column only (the
/// value may be user data).
pub(super) fn corrupt(column: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable(BACKEND, format!("stored column '{column}' is not valid: {err}"))
}

pub(super) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(column).map_err(|e| corrupt(column, e))
}

pub(super) fn instant(row: &PgRow, column: &str) -> Result<Timestamp, StoreError> {
    get::<PgInstant>(row, column)?.timestamp().map_err(|e| corrupt(column, e))
}

pub(super) fn opt_instant(row: &PgRow, column: &str) -> Result<Option<Timestamp>, StoreError> {
    get::<Option<PgInstant>>(row, column)?
        .map(|v| v.timestamp().map_err(|e| corrupt(column, e)))
        .transpose()
}

fn opt_zone(row: &PgRow, column: &str) -> Result<Option<Zone>, StoreError> {
    get::<Option<String>>(row, column)?
        .map(|z| Zone::parse(&z).map_err(|e| corrupt(column, e)))
        .transpose()
}

pub(super) fn user(row: &PgRow) -> Result<User, StoreError> {
    let email = get::<Option<String>>(row, "email")?
        .map(|e| Email::parse(&e).map_err(|_| corrupt("email", "not an email address")))
        .transpose()?;
    let name = get::<String>(row, "name")?;
    Ok(User {
        id: UserId(get(row, "id")?),
        email,
        name: DisplayName::parse(&name).map_err(|e| corrupt("name", e))?,
        timezone: opt_zone(row, "timezone")?,
        external_subject: get(row, "external_subject")?,
        created_at: instant(row, "created_at")?,
    })
}

pub(super) fn token(row: &PgRow) -> Result<TokenInfo, StoreError> {
    Ok(TokenInfo {
        id: docket_core::TokenId(get(row, "id")?),
        user_id: UserId(get(row, "user_id")?),
        name: get(row, "name")?,
        prefix: get(row, "prefix")?,
        created_at: instant(row, "created_at")?,
        expires_at: opt_instant(row, "expires_at")?,
    })
}

/// A category from columns named with `prefix` (`""` for a plain categories row,
/// `"cat_"` for the columns a task row joins in).
fn category_with(row: &PgRow, prefix: &str) -> Result<Option<Category>, StoreError> {
    let col = |c: &str| format!("{prefix}{c}");
    let Some(id) = get::<Option<uuid::Uuid>>(row, &col("id"))? else {
        return Ok(None);
    };
    let name = get::<String>(row, &col("name"))?;
    let color = get::<String>(row, &col("color"))?;
    Ok(Some(Category {
        id: CategoryId(id),
        user_id: UserId(get(row, &col("user_id"))?),
        name: CategoryName::parse(&name).map_err(|e| corrupt("categories.name", e))?,
        color: Color::parse(&color).map_err(|e| corrupt("categories.color", e))?,
        created_at: instant(row, &col("created_at"))?,
    }))
}

pub(super) fn category(row: &PgRow) -> Result<Category, StoreError> {
    category_with(row, "")?.ok_or_else(|| corrupt("id", "null category id"))
}

/// A task's series link from its `series_id, instance_date, recurrence` columns.
fn series_link(row: &PgRow) -> Result<Option<SeriesLink>, StoreError> {
    let Some(id) = get::<Option<uuid::Uuid>>(row, "series_id")? else {
        return Ok(None);
    };
    let date = get::<Option<String>>(row, "instance_date")?.unwrap_or_default();
    let spec = get::<Option<String>>(row, "recurrence")?.unwrap_or_default();
    Ok(Some(SeriesLink {
        series_id: SeriesId(id),
        instance_date: date.parse().map_err(|e| corrupt("tasks.instance_date", e))?,
        recurrence: serde_json::from_str(&spec).map_err(|e| corrupt("tasks.recurrence", e))?,
    }))
}

pub(super) fn task(row: &PgRow) -> Result<Task, StoreError> {
    let title = get::<String>(row, "title")?;
    let description = get::<Option<String>>(row, "description")?;
    let status = get::<String>(row, "status")?;
    let priority = get::<i16>(row, "priority")?;
    let tags = get::<Vec<String>>(row, "tags")?;
    Ok(Task {
        id: TaskId(get(row, "id")?),
        user_id: UserId(get(row, "user_id")?),
        title: Title::parse(&title).map_err(|e| corrupt("title", e))?,
        description: match description {
            Some(d) => Description::parse(&d).map_err(|e| corrupt("description", e))?,
            None => None,
        },
        status: status.parse::<Status>().map_err(|e| corrupt("status", e))?,
        completed_at: opt_instant(row, "completed_at")?,
        priority: Priority::from_rank(i64::from(priority))
            .ok_or_else(|| corrupt("priority", format!("rank {priority} is unknown")))?,
        category: category_with(row, "cat_")?,
        tags: Tags::parse(&tags).map_err(|e| corrupt("tags", e))?,
        due_date: opt_instant(row, "due_at")?,
        timezone: opt_zone(row, "timezone")?,
        series: series_link(row)?,
        created_at: instant(row, "created_at")?,
        updated_at: instant(row, "updated_at")?,
        version: get(row, "version")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_map_to_the_postgres_epoch() {
        let pg_epoch = Timestamp::from_second(946_684_800).unwrap();
        assert_eq!(PgInstant::new(pg_epoch), PgInstant(0));
        let ts = Timestamp::from_microsecond(1_800_000_000_123_456).unwrap();
        assert_eq!(PgInstant::new(ts).timestamp().unwrap(), ts);
        assert!(PgInstant::INFINITY.timestamp().is_err());
        assert!(PgInstant::NEG_INFINITY.timestamp().is_err());
        assert_eq!(PgInstant::from_unix_micros(i64::MAX), None);
    }
}
