//! `list_tasks` for SQLite: turns a `TaskQuery` into one keyset-paginated `SELECT`.
//!
//! Every sort is served by an index `(user_id, <sort key>, id)` (see the migration), walked
//! forwards or backwards, and a page starts strictly after the cursor's `(key, id)` with a
//! row-value comparison, so a page costs the rows it returns plus those filtered out on the
//! way, never an OFFSET scan or a sort of the user's whole list. A search is the exception:
//! it starts from the full-text matches (usually few) and sorts them in a temporary B-tree,
//! since neither relevance nor the matches are known before the match.
//!
//! The SQL text depends only on the shape of the query (which filters are present), never on
//! its values, so `prepare_cached` reuses statements across requests.

use std::fmt::Write as _;

use docket_core::{
    CategoryRef, Cursor, CursorKey, Order, Page, SortField, StatusFilter, Task, TaskQuery,
    Timestamp, UserId,
};
use rusqlite::Connection;
use rusqlite::types::{Value, ValueRef};

use super::codec::{DbResult as _, TASK_COLUMN_COUNT, TASK_COLUMNS, micros, task_from_row};
use docket_ports::StoreError;

/// bm25 weights of the FTS columns (title, description, tags): a word in the title says more
/// about a task than one in its description.
const BM25: &str = "bm25(tasks_fts, 4.0, 1.0, 2.0)";

/// A statement and its positional parameters, in order of appearance.
pub struct ListSql {
    pub sql: String,
    pub params: Vec<Value>,
}

/// The FTS5 query for `words`: each a quoted prefix term, all required. The words are
/// alphanumeric runs (`SearchText`), so nothing in them can be FTS syntax.
fn match_expr(words: &[String]) -> String {
    let mut out = String::new();
    for w in words {
        if !out.is_empty() {
            out.push_str(" AND ");
        }
        let _ = write!(out, "\"{}\"*", w.replace('"', ""));
    }
    out
}

fn bad_cursor(message: &str) -> StoreError {
    StoreError::InvalidReference { field: "cursor", message: message.to_owned() }
}

/// Builds the page query (fetching `limit + 1` rows to learn whether more follow), or `None`
/// when the query cannot match anything here.
pub fn build(user: UserId, q: &TaskQuery, now: Timestamp) -> Result<Option<ListSql>, StoreError> {
    let mut params: Vec<Value> = Vec::new();
    let ranked = q.sort == SortField::Rank && q.text.is_some();
    let key = match (q.sort, q.order) {
        (SortField::DueDate, Order::Asc) => "t.due_asc",
        (SortField::DueDate, Order::Desc) => "t.due_desc",
        (SortField::Priority, _) => "t.priority",
        (SortField::Title, _) => "t.title_key",
        (SortField::CreatedAt, _) => "t.created_at",
        (SortField::UpdatedAt, _) => "t.updated_at",
        (SortField::Rank, _) if ranked => "f.score",
        // Rank without search text: every task is equally relevant, the id decides.
        (SortField::Rank, _) => "0.0",
    };

    let mut sql = format!("SELECT {TASK_COLUMNS}, {key} FROM ");
    if let Some(text) = &q.text {
        // A search starts from the words' matches and looks each task up by rowid. CROSS JOIN
        // pins that loop order: left to itself the planner may walk the user's tasks and
        // probe the full-text index once per task, which costs the whole list.
        let score = if ranked {
            // The score is cut to 12 significant digits so it survives the cursor's JSON
            // round trip bit for bit (a full-precision double may come back one ulp off, and
            // the keyset would then skip or repeat an item). Significant digits, not
            // decimals: bm25 of a word found in most tasks is about 1e-6 and keeps its order.
            format!("CAST(printf('%.11e', {BM25}) AS REAL)")
        } else {
            "NULL".to_owned()
        };
        let _ = write!(
            sql,
            "(SELECT rowid AS seq, {score} AS score FROM tasks_fts WHERE tasks_fts MATCH ?) f \
             CROSS JOIN tasks t ON t.seq = f.seq "
        );
        params.push(Value::Text(match_expr(text.words())));
    } else {
        sql.push_str("tasks t ");
    }
    sql.push_str("LEFT JOIN categories c ON c.id = t.category_id WHERE t.user_id = ?");
    params.push(Value::Blob(user.0.as_bytes().to_vec()));

    match q.status {
        StatusFilter::All => {}
        StatusFilter::Pending => sql.push_str(" AND t.status = 0"),
        StatusFilter::Completed => sql.push_str(" AND t.status = 1"),
    }
    if !q.priorities.is_empty() {
        let mut ranks: Vec<i64> = q.priorities.iter().map(|p| p.rank()).collect();
        ranks.sort_unstable();
        ranks.dedup();
        sql.push_str(" AND t.priority IN (");
        for (i, r) in ranks.into_iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
            params.push(Value::Integer(r));
        }
        sql.push(')');
    }
    for tag in &q.tags {
        // A correlated probe rather than `t.id IN (…)`: it keeps the planner on the sort
        // index (no sort of every tagged task), each probe one lookup in task_tags_by_tag.
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM task_tags g WHERE g.user_id = t.user_id AND g.tag = ? AND g.task_id = t.id)",
        );
        params.push(Value::Text(tag.as_str().to_owned()));
    }
    if let Some(series) = q.series_id {
        sql.push_str(" AND t.series_id = ?");
        params.push(Value::Blob(series.as_bytes().to_vec()));
    }
    match &q.category {
        None => {}
        Some(CategoryRef::Id(id)) => {
            sql.push_str(" AND t.category_id = ?");
            params.push(Value::Blob(id.0.as_bytes().to_vec()));
        }
        Some(CategoryRef::Name(name)) => {
            // No such category: the subquery is NULL and nothing matches (a filter never
            // creates a category).
            sql.push_str(" AND t.category_id = (SELECT id FROM categories WHERE user_id = ? AND name_key = ?)");
            params.push(Value::Blob(user.0.as_bytes().to_vec()));
            params.push(Value::Text(name.key()));
        }
    }
    if let Some(before) = q.due_before {
        sql.push_str(" AND t.due_date < ?");
        params.push(Value::Integer(micros(before)));
    }
    if let Some(after) = q.due_after {
        sql.push_str(" AND t.due_date >= ?");
        params.push(Value::Integer(micros(after)));
    }
    if q.overdue {
        sql.push_str(" AND t.status = 0 AND t.due_date < ?");
        params.push(Value::Integer(micros(now)));
    }

    let (cmp, dir) = match q.order {
        Order::Asc => (">", "ASC"),
        Order::Desc => ("<", "DESC"),
    };
    if let Some(c) = &q.cursor {
        if c.sort != q.sort || c.order != q.order {
            return Err(bad_cursor(
                "cursor was issued for another sort or order; start again without it",
            ));
        }
        let key_value = match (&c.key, q.sort) {
            (
                CursorKey::Int(v),
                SortField::DueDate
                | SortField::Priority
                | SortField::CreatedAt
                | SortField::UpdatedAt,
            ) => Value::Integer(*v),
            (CursorKey::Text(v), SortField::Title) => Value::Text(v.clone()),
            (CursorKey::Float(v), SortField::Rank) => Value::Real(*v),
            _ => {
                return Err(bad_cursor(
                    "cursor key does not fit this sort; start again without it",
                ));
            }
        };
        let _ = write!(sql, " AND ({key}, t.id) {cmp} (?, ?)");
        params.push(key_value);
        params.push(Value::Blob(c.id.as_bytes().to_vec()));
    }
    let _ = write!(sql, " ORDER BY {key} {dir}, t.id {dir} LIMIT ?");
    params.push(Value::Integer(i64::from(q.limit.get()) + 1));
    Ok(Some(ListSql { sql, params }))
}

/// Runs the page query on a reader connection.
pub fn run(
    conn: &Connection,
    user: UserId,
    q: &TaskQuery,
    now: Timestamp,
) -> Result<Page<Task>, StoreError> {
    let Some(ListSql { sql, params }) = build(user, q, now)? else {
        return Ok(Page { items: Vec::new(), next_cursor: None });
    };
    let limit = q.limit.get() as usize;
    let mut stmt = conn.prepare_cached(&sql).db()?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params)).db()?;
    let mut items = Vec::with_capacity(limit.min(64));
    let mut last_key: Option<CursorKey> = None;
    let mut more = false;
    while let Some(row) = rows.next().db()? {
        if items.len() == limit {
            more = true;
            break;
        }
        let (_, task) = task_from_row(row)?;
        last_key = Some(match row.get_ref(TASK_COLUMN_COUNT).db()? {
            ValueRef::Integer(v) => CursorKey::Int(v),
            ValueRef::Real(v) => CursorKey::Float(v),
            ValueRef::Text(t) => CursorKey::Text(String::from_utf8_lossy(t).into_owned()),
            _ => {
                return Err(StoreError::unavailable(
                    super::codec::BACKEND,
                    "sort key of unexpected type",
                ));
            }
        });
        items.push(task);
    }
    let next_cursor = match (more, items.last(), last_key) {
        (true, Some(last), Some(key)) => {
            Some(Cursor { sort: q.sort, order: q.order, key, id: last.id.0 })
        }
        _ => None,
    };
    Ok(Page { items, next_cursor })
}
