//! `list_tasks` on PostgreSQL: one SELECT built from a `TaskQuery`, values bound as
//! parameters, keyset-paginated.
//!
//! Each sort reads one btree `(user_id, key, id)` forwards (ascending) or backwards
//! (descending); the cursor becomes the row-value bound `(key, id) > ($k, $id)`, so a page
//! costs the same at any depth and OFFSET is never used. Undated tasks sort last in both
//! orders through the two due-date keys of the schema (`due_asc` with +infinity,
//! `due_desc` with -infinity). Relevance (`SortField::Rank`) is `ts_rank` over the generated
//! `search` vector, best first, ties by id; it is computed per matching row, which is fine
//! because the full-text condition has already narrowed the rows down.
//! This file builds and runs the query; it does not validate the query (docket-core did).

use docket_core::CategoryRef;
use docket_core::{
    Cursor, CursorKey, Order, Page, SearchText, SortField, StatusFilter, Task, TaskQuery,
    Timestamp, UserId,
};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use super::codec::{self, PgInstant};
use super::{task_select, unavailable};
use docket_ports::StoreError;

/// The `to_tsquery` text for `text`: every word a quoted prefix term, all required.
///
/// Words are alphanumeric already (`SearchText`), but quoting keeps any character of
/// tsquery syntax inert should that ever change.
pub(super) fn ts_query(text: &SearchText) -> String {
    text.words()
        .iter()
        .map(|w| format!("'{}':*", w.replace('\\', "\\\\").replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(" & ")
}

fn bad_cursor(sort: SortField) -> StoreError {
    StoreError::InvalidReference {
        field: "cursor",
        message: format!(
            "cursor does not belong to sort '{}'; start again without it",
            sort.as_str()
        ),
    }
}

/// Pushes the relevance of a row: `ts_rank` as float8 (exact for the float4 it is), or a
/// constant when there is nothing to rank by.
fn push_rank(b: &mut QueryBuilder<Postgres>, tsquery: Option<&str>) {
    match tsquery {
        Some(q) => {
            b.push("ts_rank(t.search, to_tsquery('simple', ");
            b.push_bind(q.to_owned());
            b.push("))::float8");
        }
        None => {
            b.push("0::float8");
        }
    }
}

/// Builds the page query for `query`, preceded by `prefix` (`""`, or `"EXPLAIN "` in tests).
/// It selects one row more than the limit, to tell whether another page follows.
pub(super) fn build(
    prefix: &str,
    user: UserId,
    query: &TaskQuery,
    now: Timestamp,
) -> Result<QueryBuilder<Postgres>, StoreError> {
    let tsquery = query.text.as_ref().map(ts_query);
    let ranked = query.sort == SortField::Rank;

    let mut b = QueryBuilder::new(prefix);
    let select = task_select!();
    let (columns, from) = select.split_once(" FROM ").expect("task_select has a FROM clause");
    b.push(columns);
    if ranked {
        b.push(", ");
        push_rank(&mut b, tsquery.as_deref());
        b.push(" AS rank");
    }
    b.push(" FROM ").push(from);
    b.push(" WHERE t.user_id = ").push_bind(user.0);

    match query.status {
        StatusFilter::Pending => {
            b.push(" AND t.status = 'pending'");
        }
        StatusFilter::Completed => {
            b.push(" AND t.status = 'completed'");
        }
        StatusFilter::All => {}
    }
    if !query.priorities.is_empty() {
        let ranks: Vec<i16> = query.priorities.iter().map(|p| p.rank() as i16).collect();
        b.push(" AND t.priority = ANY(").push_bind(ranks).push(")");
    }
    if !query.tags.is_empty() {
        let tags: Vec<String> = query.tags.iter().map(|t| t.as_str().to_owned()).collect();
        b.push(" AND t.tags @> ").push_bind(tags);
    }
    match &query.category {
        Some(CategoryRef::Id(id)) => {
            b.push(" AND t.category_id = ").push_bind(id.0);
        }
        Some(CategoryRef::Name(name)) => {
            // No such category: the subquery is NULL and nothing matches, as it should.
            b.push(" AND t.category_id = (SELECT id FROM categories WHERE user_id = ")
                .push_bind(user.0)
                .push(" AND name_key = ")
                .push_bind(name.key())
                .push(")");
        }
        None => {}
    }
    if let Some(q) = &tsquery {
        b.push(" AND t.search @@ to_tsquery('simple', ").push_bind(q.clone()).push(")");
    }
    if let Some(ts) = query.due_before {
        b.push(" AND t.due_at < ").push_bind(PgInstant::new(ts));
    }
    if let Some(ts) = query.due_after {
        b.push(" AND t.due_at >= ").push_bind(PgInstant::new(ts));
    }
    if query.overdue {
        b.push(" AND t.status = 'pending' AND t.due_at < ").push_bind(PgInstant::new(now));
    }
    if let Some(series) = query.series_id {
        b.push(" AND t.series_id = ").push_bind(series);
    }

    if ranked {
        if let Some(c) = &query.cursor {
            check_cursor(c, query)?;
            let CursorKey::Float(k) = c.key else { return Err(bad_cursor(query.sort)) };
            b.push(" AND (");
            push_rank(&mut b, tsquery.as_deref());
            b.push(" < ").push_bind(k).push(" OR (");
            push_rank(&mut b, tsquery.as_deref());
            b.push(" = ").push_bind(k).push(" AND t.id > ").push_bind(c.id).push("))");
        }
        b.push(" ORDER BY rank DESC, t.id ASC");
    } else {
        let column = sort_column(query.sort, query.order);
        let (cmp, dir) = match query.order {
            Order::Asc => (">", "ASC"),
            Order::Desc => ("<", "DESC"),
        };
        if let Some(c) = &query.cursor {
            check_cursor(c, query)?;
            b.push(format!(" AND ({column}, t.id) {cmp} ("));
            push_key(&mut b, query.sort, &c.key)?;
            b.push(", ").push_bind(c.id).push(")");
        }
        b.push(format!(" ORDER BY {column} {dir}, t.id {dir}"));
    }
    b.push(" LIMIT ").push_bind(i64::from(query.limit.get()) + 1);
    Ok(b)
}

fn check_cursor(c: &Cursor, query: &TaskQuery) -> Result<(), StoreError> {
    if c.sort != query.sort || c.order != query.order {
        return Err(bad_cursor(query.sort));
    }
    Ok(())
}

/// The indexed column a sort reads (see the indexes in `0001_init.sql`).
fn sort_column(sort: SortField, order: Order) -> &'static str {
    match (sort, order) {
        (SortField::DueDate, Order::Asc) => "t.due_asc",
        (SortField::DueDate, Order::Desc) => "t.due_desc",
        (SortField::Priority, _) => "t.priority",
        (SortField::Title, _) => "t.title_key",
        (SortField::CreatedAt, _) => "t.created_at",
        (SortField::UpdatedAt, _) => "t.updated_at",
        (SortField::Rank, _) => unreachable!("rank is ordered by relevance, not by a column"),
    }
}

/// Binds a cursor key as the type of the sort's column.
fn push_key(
    b: &mut QueryBuilder<Postgres>,
    sort: SortField,
    key: &CursorKey,
) -> Result<(), StoreError> {
    match (sort, key) {
        (SortField::DueDate, CursorKey::Int(k)) => {
            let v = match *k {
                i64::MAX => PgInstant::INFINITY,
                i64::MIN => PgInstant::NEG_INFINITY,
                k => PgInstant::from_unix_micros(k).ok_or_else(|| bad_cursor(sort))?,
            };
            b.push_bind(v);
        }
        (SortField::CreatedAt | SortField::UpdatedAt, CursorKey::Int(k)) => {
            b.push_bind(PgInstant::from_unix_micros(*k).ok_or_else(|| bad_cursor(sort))?);
        }
        (SortField::Priority, CursorKey::Int(k)) => {
            b.push_bind(i16::try_from(*k).map_err(|_| bad_cursor(sort))?);
        }
        (SortField::Title, CursorKey::Text(k)) => {
            b.push_bind(k.clone());
        }
        _ => return Err(bad_cursor(sort)),
    }
    Ok(())
}

/// The cursor key of `task` under `sort`/`order` (`rank` is its relevance, for `Rank`).
fn key_of(task: &Task, sort: SortField, order: Order, rank: f64) -> CursorKey {
    let micros = |ts: Timestamp| ts.as_microsecond();
    match sort {
        SortField::DueDate => CursorKey::Int(match (task.due_date, order) {
            (Some(d), _) => micros(d),
            (None, Order::Asc) => i64::MAX,
            (None, Order::Desc) => i64::MIN,
        }),
        SortField::Priority => CursorKey::Int(task.priority.rank()),
        SortField::Title => CursorKey::Text(task.title.sort_key()),
        SortField::CreatedAt => CursorKey::Int(micros(task.created_at)),
        SortField::UpdatedAt => CursorKey::Int(micros(task.updated_at)),
        SortField::Rank => CursorKey::Float(rank),
    }
}

pub(super) async fn list_tasks(
    pool: &PgPool,
    user: UserId,
    query: &TaskQuery,
    now: Timestamp,
) -> Result<Page<Task>, StoreError> {
    let mut b = build("", user, query, now)?;
    let rows: Vec<PgRow> = b.build().fetch_all(pool).await.map_err(unavailable)?;
    let limit = query.limit.get() as usize;
    let more = rows.len() > limit;
    let mut items = Vec::with_capacity(rows.len().min(limit));
    let mut last_rank = 0.0;
    for row in rows.iter().take(limit) {
        items.push(codec::task(row)?);
        if query.sort == SortField::Rank {
            last_rank = row.try_get::<f64, _>("rank").map_err(unavailable)?;
        }
    }
    let next_cursor = match items.last() {
        Some(last) if more => Some(Cursor {
            sort: query.sort,
            order: query.order,
            key: key_of(last, query.sort, query.order, last_rank),
            id: last.id.0,
        }),
        _ => None,
    };
    Ok(Page { items, next_cursor })
}
