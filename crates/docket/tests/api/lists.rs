//! The task list over HTTP on a seeded set: every filter, full-text search, every sort in
//! both orders, and cursor pagination that neither skips nor repeats, also with inserts
//! between pages. Tags and categories endpoints too.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestServer;

fn titles(r: &Value) -> Vec<String> {
    r["items"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap().to_owned()).collect()
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
}

async fn seed(s: &TestServer, t: &str) {
    let tasks = [
        json!({"title": "Buy milk", "priority": "low", "tags": ["errand", "home"], "due_date": "2026-12-03T10:00:00Z", "category": "Home"}),
        json!({"title": "File taxes", "priority": "urgent", "tags": ["finance"], "due_date": "2026-11-01T10:00:00Z", "description": "receipts in the blue folder"}),
        json!({"title": "Call mom", "priority": "medium", "tags": ["home"]}),
        json!({"title": "ship release", "priority": "high", "tags": ["work"], "due_date": "2026-12-01T10:00:00Z", "category": "Work"}),
        json!({"title": "Archive mail", "priority": "medium", "tags": ["work", "errand"], "status": "completed", "category": "work"}),
        json!({"title": "Book dentist", "priority": "high", "tags": ["health"], "due_date": "2026-10-01T10:00:00Z", "description": "milkshake after"}),
    ];
    for body in tasks {
        let r = s.post("/api/tasks", t, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn filters_and_search() {
    let s = TestServer::start().await;
    let (t, _) = s.signup("filters@example.com").await;
    seed(&s, &t).await;
    let q = |query: &'static str| {
        let s = &s;
        let t = &t;
        async move {
            let r = s.get(&format!("/api/tasks?{query}"), t).await;
            assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
            sorted(titles(&r.body))
        }
    };
    assert_eq!(q("status=all").await.len(), 6);
    assert_eq!(q("status=completed").await, ["Archive mail"]);
    assert_eq!(q("status=pending").await.len(), 5);
    assert_eq!(q("priority=high,urgent").await, ["Book dentist", "File taxes", "ship release"]);
    assert_eq!(q("tag=home").await, ["Buy milk", "Call mom"]);
    assert_eq!(q("tag=errand&tag=home").await, ["Buy milk"]);
    assert_eq!(q("tag=ERRAND").await, ["Archive mail", "Buy milk"]);
    assert_eq!(
        q("category=work").await,
        ["Archive mail", "ship release"],
        "category names are case-insensitive"
    );
    assert_eq!(q("due_before=2026-12-01T10:00:00Z").await, ["Book dentist", "File taxes"]);
    assert_eq!(q("due_after=2026-12-01T10:00:00Z").await, ["Buy milk", "ship release"]);
    assert_eq!(
        q("due_after=2026-11-15T00:00:00Z&due_before=2026-12-02T00:00:00Z").await,
        ["ship release"]
    );
    // Every seeded due date is in the past of the real clock from 2026-12-04 on; the overdue
    // filter must at least never return completed or undated tasks.
    let overdue = q("overdue=true").await;
    assert!(
        !overdue.contains(&"Archive mail".to_owned()) && !overdue.contains(&"Call mom".to_owned())
    );
    // Full text: prefixes of words in title, description and tags.
    assert_eq!(
        q("q=milk").await,
        ["Book dentist", "Buy milk"],
        "milk matches 'milk' and 'milkshake'"
    );
    assert_eq!(q("q=receipts").await, ["File taxes"]);
    assert_eq!(q("q=financ").await, ["File taxes"], "tags are searchable");
    assert_eq!(q("q=buy%20mil").await, ["Buy milk"], "all words must match");
    assert_eq!(q("q=nothing-like-this").await, Vec::<String>::new());
    assert_eq!(q("q=milk&priority=low").await, ["Buy milk"]);
    let cat = s.get("/api/categories", &t).await;
    let work_id = cat.body.as_array().unwrap().iter().find(|c| c["name"] == "Work").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s.get(&format!("/api/tasks?category={work_id}"), &t).await;
    assert_eq!(sorted(titles(&r.body)), ["Archive mail", "ship release"]);
}

#[tokio::test]
async fn sorts_in_both_orders() {
    let s = TestServer::start().await;
    let (t, _) = s.signup("sorts@example.com").await;
    seed(&s, &t).await;
    let q = |query: String| {
        let s = &s;
        let t = &t;
        async move {
            let r = s.get(&format!("/api/tasks?status=all&{query}"), t).await;
            assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
            titles(&r.body)
        }
    };
    let by_due = ["Book dentist", "File taxes", "ship release", "Buy milk"];
    let asc = q("sort=due_date&order=asc".into()).await;
    assert_eq!(&asc[..4], by_due);
    let desc = q("sort=due_date&order=desc".into()).await;
    let mut rev = by_due.to_vec();
    rev.reverse();
    assert_eq!(&desc[..4], rev, "undated tasks come last in both orders");
    assert_eq!(sorted(asc[4..].to_vec()), ["Archive mail", "Call mom"]);
    assert_eq!(sorted(desc[4..].to_vec()), ["Archive mail", "Call mom"]);

    let title_asc = q("sort=title&order=asc".into()).await;
    assert_eq!(
        title_asc,
        ["Archive mail", "Book dentist", "Buy milk", "Call mom", "File taxes", "ship release"],
        "title order ignores case"
    );
    let mut title_desc = title_asc.clone();
    title_desc.reverse();
    assert_eq!(q("sort=title&order=desc".into()).await, title_desc);

    let pr = q("sort=priority".into()).await;
    assert_eq!(pr[0], "File taxes", "priority sorts most urgent first by default");
    assert_eq!(pr[5], "Buy milk");
    let pr_asc = q("sort=priority&order=asc".into()).await;
    assert_eq!(pr_asc[0], "Buy milk");

    let created_desc = q("sort=created_at&order=desc".into()).await;
    assert_eq!(created_desc[0], "Book dentist");
    assert_eq!(created_desc[5], "Buy milk");
    assert_eq!(q("".into()).await, created_desc, "newest first by default");
    let created_asc = q("sort=created_at&order=asc".into()).await;
    assert_eq!(created_asc[0], "Buy milk");

    // Touch one task: it moves to the front by updated_at desc and the end by asc.
    let all = s.get("/api/tasks?status=all&sort=title", &t).await;
    let call = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["title"] == "Call mom")
        .unwrap()
        .clone();
    let r = s
        .patch(
            &format!("/api/tasks/{}", call["id"].as_str().unwrap()),
            &t,
            json!({"priority": "urgent"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(q("sort=updated_at&order=desc".into()).await[0], "Call mom");
    assert_eq!(q("sort=updated_at&order=asc".into()).await[5], "Call mom");
}

async fn page_through(
    s: &TestServer,
    t: &str,
    query: &str,
    limit: usize,
    insert_between: bool,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/tasks?{query}&limit={limit}&cursor={c}"),
            None => format!("/api/tasks?{query}&limit={limit}"),
        };
        let r = s.get(&path, t).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        let items = r.body["items"].as_array().unwrap().clone();
        assert!(items.len() <= limit);
        out.extend(items);
        pages += 1;
        assert!(pages < 1000, "paging does not terminate");
        if insert_between {
            let n = out.len();
            let priority = ["low", "high"][n % 2];
            let due = format!("2026-11-{:02}T08:00:00Z", 1 + n % 28);
            let body = json!({"title": format!("inserted {n}"), "priority": priority, "due_date": due, "tags": ["page"]});
            assert_eq!(s.post("/api/tasks", t, body).await.status, StatusCode::CREATED);
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test]
async fn cursor_pagination_never_skips_or_repeats() {
    let s = TestServer::start().await;
    let (t, _) = s.signup("pages@example.com").await;
    let priorities = ["low", "medium", "high", "urgent"];
    for i in 0..75 {
        let mut body = json!({"title": format!("Task {:02} {}", i % 13, i), "priority": priorities[i % 4], "tags": ["page"]});
        if i % 3 != 0 {
            body["due_date"] = json!(format!("2026-12-{:02}T09:00:00Z", 1 + i % 20));
        }
        let r = s.post("/api/tasks", &t, body).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    for sort in ["due_date", "priority", "title", "created_at", "updated_at"] {
        for order in ["asc", "desc"] {
            let query = format!("sort={sort}&order={order}&tag=page");
            let whole = s.get(&format!("/api/tasks?{query}&limit=200"), &t).await;
            let whole = whole.body["items"].as_array().unwrap().clone();
            assert_eq!(whole.len(), 75);
            let paged = page_through(&s, &t, &query, 7, false).await;
            assert_eq!(ids(&paged), ids(&whole), "paging {query} differs from one big page");
        }
    }
    // With inserts between pages, every task that existed before appears exactly once.
    let before: HashSet<String> = ids(&s.all_tasks(&t).await).into_iter().collect();
    for sort in ["due_date", "priority", "title", "created_at"] {
        let paged = page_through(&s, &t, &format!("sort={sort}&tag=page"), 9, true).await;
        let seen = ids(&paged);
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{sort}: an item was repeated");
        for id in &before {
            assert!(seen.contains(id), "{sort}: an item was skipped");
        }
    }
    // Search results page too.
    let paged = page_through(&s, &t, "q=task", 10, false).await;
    assert_eq!(paged.len(), 75);
    // A cursor from one sort is refused for another.
    let first = s.get("/api/tasks?sort=title&limit=5", &t).await;
    let c = first.body["next_cursor"].as_str().unwrap();
    let r = s.get(&format!("/api/tasks?sort=due_date&limit=5&cursor={c}"), &t).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

#[tokio::test]
async fn tags_and_categories() {
    let s = TestServer::start().await;
    let (t, _) = s.signup("cats@example.com").await;
    seed(&s, &t).await;
    let tags = s.get("/api/tags", &t).await;
    assert_eq!(tags.status, StatusCode::OK);
    let counts: Vec<(String, i64)> = tags
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["name"].as_str().unwrap().to_owned(), x["count"].as_i64().unwrap()))
        .collect();
    assert!(
        counts.contains(&("home".into(), 2))
            && counts.contains(&("errand".into(), 2))
            && counts.contains(&("finance".into(), 1)),
        "{counts:?}"
    );

    let r = s.post("/api/categories", &t, json!({"name": "Garden", "color": "#22AA44"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["color"], "#22aa44");
    let id = r.body["id"].as_str().unwrap().to_owned();
    let dup = s.post("/api/categories", &t, json!({"name": "garden"})).await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.text);
    for (body, field) in
        [(json!({"name": ""}), "name"), (json!({"name": "x", "color": "green"}), "color")]
    {
        let r = s.post("/api/categories", &t, body).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.body["errors"][0]["field"], field);
    }
    assert_eq!(s.get(&format!("/api/categories/{id}"), &t).await.body["name"], "Garden");
    let r = s
        .patch(&format!("/api/categories/{id}"), &t, json!({"name": "Yard", "color": "#000000"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.body["name"].as_str(), r.body["color"].as_str()),
        (Some("Yard"), Some("#000000"))
    );
    let r = s.patch(&format!("/api/categories/{id}"), &t, json!({"name": "home"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "renaming onto another category's name");
    let names: Vec<String> = s
        .get("/api/categories", &t)
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["Home", "Work", "Yard"]);

    // Deleting a category keeps its tasks, without the category.
    let task = s.post("/api/tasks", &t, json!({"title": "mow", "category_id": id})).await;
    assert_eq!(task.body["category"]["name"], "Yard");
    assert_eq!(s.delete(&format!("/api/categories/{id}"), &t).await.status, StatusCode::NO_CONTENT);
    let after = s.get(&format!("/api/tasks/{}", task.body["id"].as_str().unwrap()), &t).await;
    assert_eq!(after.status, StatusCode::OK);
    assert!(after.body["category"].is_null());
    assert_eq!(s.get(&format!("/api/categories/{id}"), &t).await.status, StatusCode::NOT_FOUND);
}
