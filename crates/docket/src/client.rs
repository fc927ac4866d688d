//! Client commands (`add`, `ls`, `done`, `rm`) that talk to a running server over HTTP.
//!
//! Output is a readable table by default and the server's JSON with `--json`. Server errors
//! (problem+json) are shown as their title, detail and field errors; errors a Dapr sidecar
//! answers (`errorCode`, `message`) as those.
//!
//! The base URL (`--url`, `DOCKET_URL`) may carry a path prefix: API paths go under it, so
//! `http://127.0.0.1:3500/v1.0/invoke/docket-api/method` reaches the server through Dapr
//! service invocation (DESIGN §7).

use anyhow::{Context as _, anyhow, bail};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use reqwest::Url;
use serde_json::{Value, json};

use crate::cli::{AddArgs, ClientArgs, IdArgs, LsArgs};

struct Client {
    http: reqwest::Client,
    base: Url,
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
        Ok(Client { http, base: parse_base(&args.url)?, token })
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

    fn url(&self, path: &str) -> Url {
        join(&self.base, path)
    }
}

/// The server's base URL: http or https, with an optional path prefix and no query or fragment
/// (they would end up in the middle of every request URL).
fn parse_base(raw: &str) -> anyhow::Result<Url> {
    let raw = raw.trim();
    let url = Url::parse(raw).map_err(|e| {
        anyhow!("--url '{raw}' is not a URL ({e}); expected e.g. http://127.0.0.1:8080")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--url '{raw}': the scheme must be http or https");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("--url '{raw}': a base URL takes no query or fragment (give the path prefix only)");
    }
    Ok(url)
}

/// `path` (absolute, e.g. `/api/tasks`) under the base's path prefix, whether or not the base
/// ends with a slash. `Url::join` would replace the prefix instead, so the paths are glued.
fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}/{}", path.trim_start_matches('/')));
    url
}

/// One line (plus field errors) from a problem+json answer.
fn describe_problem(status: u16, body: &str) -> String {
    let Ok(p) = serde_json::from_str::<Value>(body) else {
        return format!("server answered {status}");
    };
    // Not the server's answer but the Dapr sidecar's, e.g. the app id in --url is unknown.
    if let Some(code) = p.get("errorCode").and_then(Value::as_str) {
        let message = p.get("message").and_then(Value::as_str).unwrap_or("request failed");
        return format!("dapr sidecar: {message} ({code}, {status})");
    }
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
    fn sidecar_errors_are_described() {
        let body = r#"{"errorCode":"ERR_DIRECT_INVOKE","message":"failed to invoke, id: nope"}"#;
        assert_eq!(
            describe_problem(500, body),
            "dapr sidecar: failed to invoke, id: nope (ERR_DIRECT_INVOKE, 500)"
        );
    }

    fn check_join(base: &str, path: &str, expect: &str) {
        let base = parse_base(base).expect("a valid base");
        assert_eq!(join(&base, path).as_str(), expect, "{base} + {path}");
    }

    #[test]
    fn paths_go_under_the_base_prefix() {
        let invoke = "http://127.0.0.1:3500/v1.0/invoke/docket-api/method";
        let under = "http://127.0.0.1:3500/v1.0/invoke/docket-api/method/api/tasks";
        check_join(invoke, "/api/tasks", under);
        check_join(&format!("{invoke}/"), "/api/tasks", under);
        check_join(&format!("  {invoke}// "), "/api/tasks", under);
        check_join("http://127.0.0.1:8080", "/api/tasks", "http://127.0.0.1:8080/api/tasks");
        check_join("http://127.0.0.1:8080/", "/api/tasks", "http://127.0.0.1:8080/api/tasks");
        check_join(
            "https://tasks.example.com/docket",
            "/api/tasks/1",
            "https://tasks.example.com/docket/api/tasks/1",
        );
        check_join("http://h/p", "api/tasks", "http://h/p/api/tasks");
    }

    #[test]
    fn bad_bases_are_refused() {
        for bad in ["127.0.0.1:8080", "ftp://h/", "http://h/?x=1", "http://h/#top", ""] {
            assert!(parse_base(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn ids_are_checked_before_sending() {
        assert!(task_path("nope").is_err());
        assert!(task_path("01890000-0000-7000-8000-000000000000").is_ok());
    }
}
