//! The task list query: filters, full-text search, sort, keyset cursor and page size.
//!
//! Pagination is keyset-only: a cursor carries the sort key and id of the last item of a
//! page, and the next page starts strictly after it. Items are totally ordered by
//! `(sort key, id)`, so paging never skips or repeats an item, even with writes in between
//! (an item whose sort key changes while paging may of course move past the cursor).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Invalid, invalid_code, value_error};
use crate::names::named;
use crate::task::{CategoryRef, Priority, Tag};
use crate::time::Timestamp;

/// Which tasks by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusFilter {
    Pending,
    Completed,
    #[default]
    All,
}

named!(StatusFilter { Pending => "pending", Completed => "completed", All => "all" });

impl FromStr for StatusFilter {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StatusFilter::from_name(s).ok_or_else(|| ChoiceError {
            value: s.to_owned(),
            expected: "pending, completed or all",
        })
    }
}

/// A value that is not one of a fixed set of choices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not allowed here (expected {expected})")]
pub struct ChoiceError {
    pub value: String,
    pub expected: &'static str,
}

invalid_code!(ChoiceError, "invalid_choice");

/// What a list is ordered by. `Rank` is the full-text relevance, only used for a search
/// without an explicit sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    DueDate,
    Priority,
    Title,
    CreatedAt,
    UpdatedAt,
    Rank,
}

named!(SortField {
    DueDate => "due_date",
    Priority => "priority",
    Title => "title",
    CreatedAt => "created_at",
    UpdatedAt => "updated_at",
    Rank => "rank",
});

impl SortField {
    /// The order used when the query names none: soonest due, most urgent, A–Z, newest.
    pub fn default_order(self) -> Order {
        match self {
            SortField::DueDate | SortField::Title => Order::Asc,
            SortField::Priority | SortField::CreatedAt | SortField::UpdatedAt => Order::Desc,
            SortField::Rank => Order::Asc,
        }
    }
}

/// A query names any sort field but `rank`, which only a search without a sort gets.
impl FromStr for SortField {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SortField::from_name(s).filter(|f| *f != SortField::Rank).ok_or_else(|| ChoiceError {
            value: s.to_owned(),
            expected: "due_date, priority, title, created_at or updated_at",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

named!(Order { Asc => "asc", Desc => "desc" });

impl FromStr for Order {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Order::from_name(s)
            .ok_or_else(|| ChoiceError { value: s.to_owned(), expected: "asc or desc" })
    }
}

/// A page size, 1–200 (default 50).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u32);

value_error!(
    #[error("limit '{0}' must be a whole number from 1 to 200")]
    LimitError(String) = "out_of_range"
);

impl Limit {
    pub const MAX: u32 = 200;

    pub fn parse(raw: &str) -> Result<Limit, LimitError> {
        match raw.trim().parse::<u32>() {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Limit(n)),
            _ => Err(LimitError(raw.to_owned())),
        }
    }

    pub fn new(n: u32) -> Limit {
        Limit(n.clamp(1, Self::MAX))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Limit(50)
    }
}

/// Full-text search words: alphanumeric runs of the input, lower-cased, each matched as a
/// word prefix, all required. Punctuation never reaches a store's query syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText(Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchTextError {
    #[error("search text has no words to look for")]
    NoWords,
    #[error("search text is too long (at most 200 characters)")]
    TooLong,
}

impl Invalid for SearchTextError {
    fn code(&self) -> &'static str {
        match self {
            SearchTextError::NoWords => "no_words",
            SearchTextError::TooLong => "too_long",
        }
    }
}

impl SearchText {
    pub fn parse(raw: &str) -> Result<SearchText, SearchTextError> {
        if raw.chars().count() > 200 {
            return Err(SearchTextError::TooLong);
        }
        let words: Vec<String> = raw
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(16)
            .map(str::to_lowercase)
            .collect();
        if words.is_empty() { Err(SearchTextError::NoWords) } else { Ok(SearchText(words)) }
    }

    pub fn words(&self) -> &[String] {
        &self.0
    }
}

/// The sort key value a cursor resumes after.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorKey {
    Int(i64),
    Text(String),
    Float(f64),
}

/// A keyset position: strictly after `(key, id)` in the order of `sort`/`order`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub sort: SortField,
    pub order: Order,
    pub key: CursorKey,
    pub id: uuid::Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("cursor is not one this server issued")]
    Malformed,
    #[error("cursor was issued for sort '{0}', not for this query's sort; start again without it")]
    OtherSort(String),
}

impl Invalid for CursorError {
    fn code(&self) -> &'static str {
        match self {
            CursorError::Malformed => "invalid_cursor",
            CursorError::OtherSort(_) => "cursor_mismatch",
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CursorWire {
    s: String,
    o: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    i64: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    txt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    f64: Option<f64>,
    id: uuid::Uuid,
}

impl Cursor {
    /// The opaque text form handed to clients.
    pub fn encode(&self) -> String {
        let (i, t, f) = match &self.key {
            CursorKey::Int(v) => (Some(*v), None, None),
            CursorKey::Text(v) => (None, Some(v.clone()), None),
            CursorKey::Float(v) => (None, None, Some(*v)),
        };
        let wire = CursorWire {
            s: self.sort.as_str().to_owned(),
            o: self.order.as_str().to_owned(),
            i64: i,
            txt: t,
            f64: f,
            id: self.id,
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).expect("cursor serialises"))
    }

    pub fn decode(raw: &str) -> Result<Cursor, CursorError> {
        if raw.len() > 2048 {
            return Err(CursorError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| CursorError::Malformed)?;
        let wire: CursorWire =
            serde_json::from_slice(&bytes).map_err(|_| CursorError::Malformed)?;
        let sort = match wire.s.as_str() {
            "rank" => SortField::Rank,
            s => s.parse().map_err(|_| CursorError::Malformed)?,
        };
        let order = wire.o.parse().map_err(|_| CursorError::Malformed)?;
        let key = match (wire.i64, wire.txt, wire.f64) {
            (Some(v), None, None) => CursorKey::Int(v),
            (None, Some(v), None) => CursorKey::Text(v),
            (None, None, Some(v)) if v.is_finite() => CursorKey::Float(v),
            _ => return Err(CursorError::Malformed),
        };
        Ok(Cursor { sort, order, key, id: wire.id })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// A parsed `GET /api/tasks` query. Build it with [`TaskQuery::build`] so sort, order and
/// cursor are consistent.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskQuery {
    pub status: StatusFilter,
    /// Any of these priorities; empty means any priority.
    pub priorities: Vec<Priority>,
    /// All of these tags must be on the task.
    pub tags: Vec<Tag>,
    pub category: Option<CategoryRef>,
    pub text: Option<SearchText>,
    /// Due strictly before this instant.
    pub due_before: Option<Timestamp>,
    /// Due at or after this instant.
    pub due_after: Option<Timestamp>,
    /// Pending and due before the query's `now`.
    pub overdue: bool,
    pub series_id: Option<uuid::Uuid>,
    pub sort: SortField,
    pub order: Order,
    pub limit: Limit,
    pub cursor: Option<Cursor>,
}

impl Default for TaskQuery {
    fn default() -> Self {
        TaskQuery {
            status: StatusFilter::All,
            priorities: Vec::new(),
            tags: Vec::new(),
            category: None,
            text: None,
            due_before: None,
            due_after: None,
            overdue: false,
            series_id: None,
            sort: SortField::CreatedAt,
            order: Order::Desc,
            limit: Limit::default(),
            cursor: None,
        }
    }
}

impl TaskQuery {
    /// Settles sort and order: an explicit sort wins; else a search ranks by relevance; else
    /// newest first. A cursor must belong to the settled sort and order.
    pub fn settle(
        mut self,
        sort: Option<SortField>,
        order: Option<Order>,
    ) -> Result<TaskQuery, CursorError> {
        self.sort = match sort {
            Some(s) => s,
            None if self.text.is_some() => SortField::Rank,
            None => SortField::CreatedAt,
        };
        self.order = if self.sort == SortField::Rank {
            Order::Asc
        } else {
            order.unwrap_or(self.sort.default_order())
        };
        if let Some(c) = &self.cursor
            && (c.sort != self.sort || c.order != self.order)
        {
            return Err(CursorError::OtherSort(format!(
                "{} {}",
                c.sort.as_str(),
                c.order.as_str()
            )));
        }
        Ok(self)
    }
}

/// One page of a keyset-paginated list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        for key in [CursorKey::Int(-5), CursorKey::Text("a\"b".into()), CursorKey::Float(-1.25)] {
            let c = Cursor {
                sort: SortField::Title,
                order: Order::Desc,
                key,
                id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            };
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
        assert_eq!(Cursor::decode("garbage!").unwrap_err(), CursorError::Malformed);
        assert_eq!(Cursor::decode("e30").unwrap_err(), CursorError::Malformed);
    }

    #[test]
    fn settle_picks_sort_and_checks_cursor() {
        let q = TaskQuery::default().settle(None, None).unwrap();
        assert_eq!((q.sort, q.order), (SortField::CreatedAt, Order::Desc));
        let q = TaskQuery { text: Some(SearchText::parse("milk").unwrap()), ..Default::default() }
            .settle(None, Some(Order::Desc))
            .unwrap();
        assert_eq!(q.sort, SortField::Rank);
        let q = TaskQuery::default().settle(Some(SortField::DueDate), None).unwrap();
        assert_eq!(q.order, Order::Asc);
        let cursor = Cursor {
            sort: SortField::Title,
            order: Order::Asc,
            key: CursorKey::Text("x".into()),
            id: uuid::Uuid::nil(),
        };
        let q = TaskQuery { cursor: Some(cursor), ..Default::default() };
        assert!(q.settle(Some(SortField::DueDate), None).is_err());
    }

    #[test]
    fn search_words() {
        assert_eq!(SearchText::parse("Buy  MILK, now!").unwrap().words(), ["buy", "milk", "now"]);
        assert!(SearchText::parse(" -- ").is_err());
        assert!(SearchText::parse(&"a".repeat(201)).is_err());
    }

    #[test]
    fn limits() {
        assert_eq!(Limit::parse("200").unwrap().get(), 200);
        assert!(Limit::parse("0").is_err());
        assert!(Limit::parse("201").is_err());
        assert!(Limit::parse("ten").is_err());
    }
}
