//! Client commands (`add`, `ls`, `done`, `rm`) that talk to a running server over HTTP.
//!
//! Output is a readable table by default and the server's JSON with `--json`. Server errors
//! (problem+json) are shown as their title, detail and field errors.

use anyhow::{Context as _, anyhow, bail};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};

use crate::cli::{AddArgs, ClientArgs, IdArgs, LsArgs};

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let token = args
            .token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| anyhow!("no token: pass --token or set DOCKET_TOKEN (create one with `docket token create --email …`)"))?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { http, base: args.url.trim_end_matches('/').to_owned(), token })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the Docket server at {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.context("the server's answer was cut off")?;
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text)
                .context("the server answered something that is not JSON");
        }
        bail!("{}", describe_problem(status.as_u16(), &text))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// One line (plus field errors) from a problem+json answer.
fn describe_problem(status: u16, body: &str) -> String {
    let Ok(p) = serde_json::from_str::<Value>(body) else {
        return format!("server answered {status}");
    };
    let title = p.get("title").and_then(Value::as_str).unwrap_or("request failed");
    let mut msg = format!("{title} ({status})");
    if let Some(detail) = p.get("detail").and_then(Value::as_str) {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    if let Some(errors) = p.get("errors").and_then(Value::as_array) {
        for e in errors {
            let field = e.get("field").and_then(Value::as_str).unwrap_or("?");
            let m = e.get("message").and_then(Value::as_str).unwrap_or("");
            msg.push_str(&format!("\n  {field}: {m}"));
        }
    }
    msg
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn str_field<'a>(t: &'a Value, key: &str) -> &'a str {
    t.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A task table: id, status, priority, due, title, tags, category.
pub fn task_table(items: &[Value]) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["id", "", "priority", "due", "title", "tags", "category"]);
    for t in items {
        let done = if str_field(t, "status") == "completed" { "✓" } else { " " };
        let due = str_field(t, "due_date");
        let due = due.get(..16).map(|s| s.replace('T', " ")).unwrap_or_default();
        let tags = t
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| format!("#{s}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let category =
            t.get("category").and_then(|c| c.get("name")).and_then(Value::as_str).unwrap_or("");
        table.add_row([
            str_field(t, "id"),
            done,
            str_field(t, "priority"),
            &due,
            str_field(t, "title"),
            &tags,
            category,
        ]);
    }
    table
}

pub async fn add(args: AddArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    let mut body = json!({ "title": args.title });
    if let Some(d) = &args.description {
        body["description"] = json!(d);
    }
    if let Some(p) = &args.priority {
        body["priority"] = json!(p);
    }
    if let Some(d) = &args.due {
        body["due_date"] = json!(d);
    }
    if !args.tags.is_empty() {
        body["tags"] = json!(args.tags);
    }
    if let Some(c) = &args.category {
        body["category"] = json!(c);
    }
    let task = client.send(client.http.post(client.url("/api/tasks")).json(&body)).await?;
    if args.client.json {
        return print_json(&task);
    }
    println!("added {} {}", str_field(&task, "id"), str_field(&task, "title"));
    Ok(())
}

pub async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    let mut query: Vec<(&str, String)> =
        vec![("status", args.status.clone()), ("limit", args.limit.min(200).to_string())];
    if let Some(p) = &args.priority {
        query.push(("priority", p.clone()));
    }
    for t in &args.tags {
        query.push(("tag", t.clone()));
    }
    if let Some(c) = &args.category {
        query.push(("category", c.clone()));
    }
    if let Some(q) = &args.query {
        query.push(("q", q.clone()));
    }
    if args.overdue {
        query.push(("overdue", "true".into()));
    }
    if let Some(s) = &args.sort {
        query.push(("sort", s.clone()));
    }
    if let Some(o) = &args.order {
        query.push(("order", o.clone()));
    }
    let page = client.send(client.http.get(client.url("/api/tasks")).query(&query)).await?;
    if args.client.json {
        return print_json(&page);
    }
    let items = page.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    if items.is_empty() {
        println!("no tasks");
        return Ok(());
    }
    println!("{}", task_table(&items));
    if page.get("next_cursor").is_some_and(|c| !c.is_null()) {
        println!("(more tasks: raise --limit or narrow the filters)");
    }
    Ok(())
}

fn task_path(id: &str) -> anyhow::Result<String> {
    let id = id.trim();
    uuid::Uuid::parse_str(id)
        .map_err(|_| anyhow!("'{id}' is not a task id (copy it from `docket ls`)"))?;
    Ok(format!("/api/tasks/{id}"))
}

pub async fn done(args: IdArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    let path = format!("{}/complete", task_path(&args.id)?);
    let answer = client.send(client.http.post(client.url(&path))).await?;
    if args.client.json {
        return print_json(&answer);
    }
    let task = answer.get("task").unwrap_or(&answer);
    println!("completed {} {}", str_field(task, "id"), str_field(task, "title"));
    Ok(())
}

pub async fn rm(args: IdArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    let path = task_path(&args.id)?;
    client.send(client.http.delete(client.url(&path))).await?;
    if args.client.json {
        return print_json(&json!({ "deleted": args.id.trim() }));
    }
    println!("deleted {}", args.id.trim());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_described() {
        let body = r#"{"title":"validation failed","status":422,"detail":"1 field is invalid","errors":[{"field":"title","code":"required","message":"title must not be empty"}]}"#;
        assert_eq!(
            describe_problem(422, body),
            "validation failed (422): 1 field is invalid\n  title: title must not be empty"
        );
        assert_eq!(describe_problem(502, "<html>"), "server answered 502");
    }

    #[test]
    fn ids_are_checked_before_sending() {
        assert!(task_path("nope").is_err());
        assert!(task_path("01890000-0000-7000-8000-000000000000").is_ok());
    }
}
