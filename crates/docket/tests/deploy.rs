//! The deployment artifacts in `deploy/` and the guide in `docs/` stay consistent with each
//! other and with the app: no Docker engine, Kubernetes cluster, helm binary or daprd exists
//! here, so this test checks what can be checked without them.
//!
//! * Every YAML file in `deploy/` parses (compose, Dapr resources, Minikube manifests).
//! * The Helm chart is rendered by [`tpl`], a small renderer of exactly the Go-template subset
//!   the chart uses (`.Values`, `.Release`, `.Chart`, `$`, `define`/`include`, `if`/`else`,
//!   `with`, `range`, `eq`, `not`, `toYaml`, `nindent`, `quote`, `default`, `{{-`/`-}}`
//!   trimming, comments). It is strict where Helm is lenient: a missing values key is an
//!   error, not an empty string, and anything outside the subset fails. Its output is parsed
//!   as YAML and checked object by object, for Kafka and Redis and the guide's own values.
//! * The names in `deploy/names.env` (app ids, components, topics, port, probes) are the ones
//!   every artifact uses and match the app's own constants and `docket serve --help`.
//! * The Dockerfile is linted structurally: a builder stage running
//!   `cargo build --release --locked -p docket` on the same sources and `.cargo/config.toml`,
//!   a non-root runtime stage whose CMD is a `serve` the binary accepts. It is also read by
//!   BuildKit's own parser (the PyPI `dockerfile` module, Go code compiled into the wheel):
//!   known instructions only, `FROM … AS …` stages and `COPY --from` references that agree,
//!   ARGs declared, the builder image on the workspace's `rust-version`, the binary the tests
//!   run copied onto PATH and run by ENTRYPOINT/CMD, the shared port exposed; and by
//!   `dockerfilelint` (npm). Both tools are optional locally and required when `CI` is set.
//! * Every `helm`, `kubectl` and `minikube image` command of `docs/deploy-kubernetes.md`
//!   names the chart path, release, namespace, values files, objects and containers that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `deploy/names.env`: the shared names.
fn names() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in read("deploy/names.env").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("names.env line {line:?}"));
        assert!(out.insert(k.to_string(), v.to_string()).is_none(), "{k} twice in names.env");
    }
    out
}

fn name(key: &str) -> String {
    names().get(key).cloned().unwrap_or_else(|| panic!("{key} missing from deploy/names.env"))
}

fn list(key: &str) -> Vec<String> {
    name(key).split(',').map(str::to_string).collect()
}

/// Every document of a YAML stream, as JSON values (empty documents left out).
fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_yaml_ng::Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("{what}: YAML does not parse: {e}\n{text}"));
        let value: Value = serde_json::to_value(&value)
            .unwrap_or_else(|e| panic!("{what}: not JSON-like YAML: {e}"));
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

fn yaml_one(rel: &str) -> Value {
    let mut docs = yaml_docs(&read(rel), rel);
    assert_eq!(docs.len(), 1, "{rel}: one document expected");
    docs.remove(0)
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_else(|| panic!("no string at {ptr} in {v}"))
}

fn files_in(rel: &str, ext: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(ext))
        .map(|f| format!("{rel}/{f}"))
        .collect();
    out.sort();
    out
}

/// `docket serve --help` of the binary the other tests use.
fn serve_help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_docket"))
        .args(["serve", "--help"])
        .output()
        .expect("run docket serve --help");
    assert!(out.status.success(), "docket serve --help failed");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// Environment names the deployment sets that `docket serve --help` does not list: the
/// sidecar port Dapr itself defines (read by the Dapr client, not a flag) and the Redis
/// password only the Dapr components read.
const PENDING_ENV: [&str; 2] = ["DAPR_HTTP_PORT", "DOCKET_REDIS_PASSWORD"];

fn assert_env_known(help: &str, var: &str, what: &str) {
    if PENDING_ENV.contains(&var) {
        return;
    }
    assert!(
        help.contains(&format!("[env: {var}=")) || help.contains(&format!("[env: {var}]")),
        "{what}: {var} is not an environment variable of `docket serve`"
    );
}

// ---------------------------------------------------------------------------------------
// names

#[test]
fn names_match_the_app() {
    assert_eq!(list("TOPICS"), docket_events::topics::ALL.map(String::from).to_vec());
    let groups = [
        docket_app::audit::CONSUMER,
        docket_app::notifier::CONSUMER,
        docket_app::next_instance::CONSUMER,
        docket_app::webhooks::CONSUMER,
    ];
    assert_eq!(list("CONSUMER_GROUPS"), groups.map(String::from).to_vec());
    assert_eq!(name("LIVENESS_PATH"), "/healthz");
    assert_eq!(name("READINESS_PATH"), "/readyz");
    assert_eq!(name("METRICS_PATH"), "/metrics");
    let help = serve_help();
    for role in list("ROLES_API").iter().chain(&list("ROLES_WORKER")) {
        assert!(help.contains(role.as_str()), "role {role} unknown to docket serve");
    }
    assert!(root().join(name("CHART_PATH")).join("Chart.yaml").is_file());
    let port: u16 = name("APP_PORT").parse().expect("APP_PORT is a port");
    assert!(port > 1024, "a non-root container cannot bind {port}");
}

// ---------------------------------------------------------------------------------------
// Dapr resources

/// The name a Dapr component of `ty` must have.
fn component_name(ty: &str) -> String {
    match ty.split('.').next().expect("type") {
        "pubsub" => name("PUBSUB"),
        "state" => name("STATE_STORE"),
        "secretstores" => name("SECRET_STORE"),
        "bindings" => name("CRON_BINDING"),
        other => panic!("unexpected component kind {other}"),
    }
}

fn metadata_names(component: &Value) -> BTreeSet<String> {
    component
        .pointer("/spec/metadata")
        .and_then(Value::as_array)
        .expect("spec.metadata list")
        .iter()
        .map(|m| s(m, "/name").to_string())
        .collect()
}

fn metadata_value<'a>(component: &'a Value, key: &str) -> &'a Value {
    component
        .pointer("/spec/metadata")
        .and_then(Value::as_array)
        .and_then(|items| items.iter().find(|m| m["name"] == key))
        .unwrap_or_else(|| panic!("metadata {key} missing in {component}"))
}

/// Checks one Component against the shared names; returns its type.
fn check_component(c: &Value, what: &str) -> String {
    assert_eq!(s(c, "/apiVersion"), "dapr.io/v1alpha1", "{what}");
    assert_eq!(s(c, "/kind"), "Component", "{what}");
    let ty = s(c, "/spec/type").to_string();
    assert_eq!(s(c, "/spec/version"), "v1", "{what}");
    assert_eq!(s(c, "/metadata/name"), component_name(&ty), "{what}: name of a {ty}");
    let ids = [name("APP_ID_API"), name("APP_ID_WORKER")];
    let scopes: Vec<&str> = c["scopes"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: scopes"))
        .iter()
        .map(|v| v.as_str().expect("scope"))
        .collect();
    for scope in &scopes {
        assert!(ids.contains(&scope.to_string()), "{what}: scope {scope} is no app id");
    }
    if ty == "bindings.cron" {
        // Only the scheduler role sweeps; the route is the binding's name.
        assert_eq!(scopes, [name("APP_ID_WORKER").as_str()], "{what}");
        assert_eq!(s(metadata_value(c, "direction"), "/value"), "input", "{what}");
        let schedule = s(metadata_value(c, "schedule"), "/value");
        assert!(schedule.starts_with("@every ") || schedule.split(' ').count() >= 5, "{what}");
    } else {
        assert_eq!(scopes.len(), 2, "{what}: both app ids");
    }
    let mut uses_secrets = false;
    for m in c["spec"]["metadata"].as_array().expect("metadata") {
        if let Some(r) = m.get("secretKeyRef") {
            uses_secrets = true;
            assert_eq!(s(r, "/name"), name("SECRET_NAME"), "{what}: secret name");
            assert!(s(r, "/key").starts_with("DOCKET_"), "{what}: secret key");
        } else {
            assert!(m["value"].is_string(), "{what}: {m} (metadata values are strings)");
        }
    }
    if uses_secrets {
        assert_eq!(s(c, "/auth/secretStore"), name("SECRET_STORE"), "{what}: auth.secretStore");
    }
    ty
}

/// Checks a Resiliency: named targets exist, every policy they use is defined.
fn check_resiliency(r: &Value, what: &str) {
    assert_eq!(s(r, "/metadata/name"), name("RESILIENCY"), "{what}");
    let policies = &r["spec"]["policies"];
    let apps: BTreeSet<String> = [name("APP_ID_API"), name("APP_ID_WORKER")].into();
    let comps: BTreeSet<String> =
        ["PUBSUB", "STATE_STORE", "SECRET_STORE", "CRON_BINDING"].map(name).into();
    let check_target = |t: &Value, at: &str| {
        for (field, kind) in
            [("timeout", "timeouts"), ("retry", "retries"), ("circuitBreaker", "circuitBreakers")]
        {
            if let Some(p) = t.get(field) {
                let p = p.as_str().expect("policy name");
                assert!(policies[kind].get(p).is_some(), "{what}: {at} uses undefined {kind} {p}");
            }
        }
    };
    let targets = &r["spec"]["targets"];
    for (app, t) in targets["apps"].as_object().expect("apps targets") {
        assert!(apps.contains(app), "{what}: app target {app}");
        check_target(t, app);
    }
    for (comp, t) in targets["components"].as_object().expect("component targets") {
        assert!(comps.contains(comp), "{what}: component target {comp}");
        for dir in ["inbound", "outbound"] {
            if let Some(d) = t.get(dir) {
                check_target(d, &format!("{comp}.{dir}"));
            }
        }
    }
    let pubsub = &targets["components"][name("PUBSUB")];
    for dir in ["inbound", "outbound"] {
        for field in ["timeout", "retry", "circuitBreaker"] {
            assert!(pubsub[dir][field].is_string(), "{what}: pubsub {dir} {field}");
        }
    }
    for (n, retry) in policies["retries"].as_object().expect("retries") {
        assert!(retry["maxRetries"].as_u64().is_some_and(|m| m > 0), "{what}: retry {n} bounded");
        let p = s(retry, "/policy");
        assert!(p == "exponential" || p == "constant", "{what}: retry {n} policy {p}");
    }
    for (n, cb) in policies["circuitBreakers"].as_object().expect("circuitBreakers") {
        assert!(s(cb, "/trip").contains("consecutiveFailures"), "{what}: breaker {n}");
    }
}

#[test]
fn dapr_resources_parse_and_use_the_shared_names() {
    let mut types = BTreeSet::new();
    let mut seen = 0;
    for file in files_in("deploy/dapr", ".yaml") {
        let doc = yaml_one(&file);
        seen += 1;
        match s(&doc, "/kind") {
            "Component" => {
                types.insert(check_component(&doc, &file));
            }
            "Resiliency" => check_resiliency(&doc, &file),
            "Configuration" => assert_eq!(s(&doc, "/metadata/name"), name("DAPR_CONFIG")),
            other => panic!("{file}: unexpected kind {other} (subscriptions are programmatic)"),
        }
    }
    assert!(seen >= 9, "deploy/dapr holds {seen} resources");
    for ty in [
        "pubsub.kafka",
        "pubsub.redis",
        "state.postgresql",
        "state.redis",
        "bindings.cron",
        "secretstores.kubernetes",
        "secretstores.local.file",
    ] {
        assert!(types.contains(ty), "deploy/dapr has no {ty} component");
    }
    // The local secrets file holds the secret the components reference.
    let secrets: Value = serde_json::from_str(&read("deploy/dapr/secrets.json")).expect("json");
    let bundle = &secrets[name("SECRET_NAME")];
    for key in
        ["DOCKET_DATABASE_URL", "DOCKET_JWT_SECRET", "DOCKET_SECRET_KEY", "DOCKET_REDIS_PASSWORD"]
    {
        assert!(bundle[key].is_string(), "secrets.json: {key}");
    }
}

// ---------------------------------------------------------------------------------------
// compose

fn compose_env<'a>(svc: &'a Value, key: &str) -> Option<&'a str> {
    svc["environment"].get(key).and_then(Value::as_str)
}

fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let i = args.iter().position(|a| a == name).unwrap_or_else(|| panic!("{name} in {args:?}"));
    &args[i + 1]
}

#[test]
fn compose_wires_apps_sidecars_and_components() {
    let compose = yaml_one("deploy/compose.yaml");
    let services = compose["services"].as_object().expect("services");
    for svc in ["postgres", "kafka", "placement", "scheduler", "api", "worker"] {
        assert!(services.contains_key(svc), "compose: no {svc} service");
    }
    let help = serve_help();
    let port = name("APP_PORT");
    for (app, app_id, roles) in [
        ("api", name("APP_ID_API"), name("ROLES_API")),
        ("worker", name("APP_ID_WORKER"), name("ROLES_WORKER")),
    ] {
        let svc = &services[app];
        assert_eq!(s(svc, "/build/dockerfile"), "deploy/Dockerfile", "{app}");
        assert!(root().join("deploy").join(s(svc, "/build/context")).join("Cargo.lock").is_file());
        assert_eq!(compose_env(svc, "DOCKET_ROLES"), Some(roles.as_str()), "{app} roles");
        assert_eq!(compose_env(svc, "DOCKET_LISTEN"), Some(format!("0.0.0.0:{port}").as_str()));
        for mode in ["DOCKET_BUS", "DOCKET_STATE", "DOCKET_SECRETS", "DOCKET_SCHEDULER"] {
            assert_eq!(compose_env(svc, mode), Some("dapr"), "{app} {mode}");
        }
        for var in svc["environment"].as_object().expect("environment").keys() {
            assert_env_known(&help, var, &format!("compose {app}"));
        }
        // The sidecar shares the app's network namespace and loads the mounted resources.
        let sidecar = &services[&format!("{app}-dapr")];
        assert_eq!(s(sidecar, "/network_mode"), format!("service:{app}"));
        let args: Vec<String> = sidecar["command"]
            .as_array()
            .expect("daprd command list")
            .iter()
            .map(|a| a.as_str().expect("string arg").to_string())
            .collect();
        assert!(args[0].ends_with("daprd"), "{app}: {args:?}");
        assert_eq!(flag(&args, "--app-id"), app_id);
        assert_eq!(flag(&args, "--app-port"), port);
        assert!(flag(&args, "--placement-host-address").starts_with("placement:"));
        assert!(flag(&args, "--scheduler-host-address").starts_with("scheduler:"));
        let resources = flag(&args, "--resources-path").to_string();
        let config = flag(&args, "--config").to_string();
        let mut kinds = BTreeMap::<String, usize>::new();
        let mut mounted = BTreeMap::new();
        for v in sidecar["volumes"].as_array().expect("volumes") {
            let v = v.as_str().expect("short volume syntax");
            let mut parts = v.split(':');
            let (host, target) = (parts.next().expect("host"), parts.next().expect("target"));
            let host_file = format!("deploy/{}", host.trim_start_matches("./"));
            assert!(root().join(&host_file).is_file(), "{app}: mounts missing {host_file}");
            mounted.insert(target.to_string(), host_file.clone());
            if target.starts_with(&format!("{resources}/")) {
                let doc = yaml_one(&host_file);
                let key = match s(&doc, "/kind") {
                    "Component" => s(&doc, "/spec/type").split('.').next().unwrap().to_string(),
                    kind => kind.to_string(),
                };
                *kinds.entry(key).or_default() += 1;
            }
        }
        let config_file = mounted.get(&config).expect("--config is mounted");
        assert_eq!(s(&yaml_one(config_file), "/metadata/name"), name("DAPR_CONFIG"));
        for kind in ["pubsub", "state", "secretstores", "bindings", "Resiliency"] {
            assert_eq!(kinds.get(kind), Some(&1), "{app}: exactly one {kind} mounted: {kinds:?}");
        }
        // The local secret store reads the file where compose mounts it.
        let store = mounted
            .values()
            .map(|f| yaml_one(f))
            .find(|d| d["spec"]["type"] == "secretstores.local.file")
            .expect("local file secret store mounted");
        let secrets_file = s(metadata_value(&store, "secretsFile"), "/value");
        assert_eq!(mounted.get(secrets_file).map(String::as_str), Some("deploy/dapr/secrets.json"));
    }
    assert!(s(&services["api"], "/ports/0").ends_with(&format!(":{port}")), "api publishes {port}");
    let topics_cmd = services["kafka-topics"]["command"].to_string();
    for topic in list("TOPICS") {
        assert!(topics_cmd.contains(&format!("{topic} ")), "kafka-topics: {topic}");
        assert!(topics_cmd.contains(&format!("{topic}.dlq")), "kafka-topics: {topic}.dlq");
    }
}

// ---------------------------------------------------------------------------------------
// Dockerfile

#[test]
fn dockerfile_builds_the_tested_binary_and_runs_it_unprivileged() {
    let text = read("deploy/Dockerfile");
    // Logical instructions: comments dropped, continuation lines joined.
    let mut lines = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            lines.push(std::mem::take(&mut cur));
        }
    }
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    let mut args = BTreeMap::new();
    for l in &lines {
        let (instr, rest) = l.split_once(' ').unwrap_or((l, ""));
        let instr = instr.to_ascii_uppercase();
        if instr == "FROM" {
            let alias = rest.split_whitespace().collect::<Vec<_>>();
            assert!(alias.len() == 3 && alias[1].eq_ignore_ascii_case("AS"), "FROM {rest}");
            stages.push((alias[2].to_string(), Vec::new()));
        } else if let Some((_, body)) = stages.last_mut() {
            body.push(format!("{instr} {rest}"));
        } else {
            assert_eq!(instr, "ARG", "only ARG before the first FROM");
            let (k, v) = rest.split_once('=').expect("ARG with a default");
            args.insert(k.to_string(), v.to_string());
        }
    }
    assert!(stages.len() >= 2, "multi-stage");
    assert_eq!(stages[0].0, "builder");
    // The toolchain is the workspace's.
    let cargo = read("Cargo.toml");
    let rust_version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("workspace rust-version")
        .trim_matches('"');
    assert_eq!(args.get("RUST_VERSION").map(String::as_str), Some(rust_version));
    let builder = stages[0].1.join("\n");
    for needle in ["COPY Cargo.toml Cargo.lock", "COPY .cargo", "COPY crates"] {
        assert!(builder.contains(needle), "builder: {needle}");
    }
    let build = stages[0].1.iter().find(|l| l.contains("cargo build")).expect("cargo build");
    let words: Vec<&str> = build.split_whitespace().collect();
    for w in ["--release", "--locked"] {
        assert!(words.contains(&w), "cargo build {w}");
    }
    assert!(words.windows(2).any(|p| p == ["-p", "docket"]), "cargo build -p docket");
    let (_, runtime) = stages.last().expect("runtime stage");
    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the final stage")
        .trim();
    let uid = user.split(':').next().expect("uid");
    assert!(uid != "root" && uid != "0", "final stage runs as {user}");
    assert!(runtime.iter().any(|l| l.starts_with("COPY --from=builder")), "binary from builder");
    let exposed = runtime.iter().find_map(|l| l.strip_prefix("EXPOSE ")).expect("EXPOSE");
    assert_eq!(exposed.trim(), name("APP_PORT"));
    let json_of = |instr: &str| -> Vec<String> {
        let l = runtime.iter().find_map(|l| l.strip_prefix(instr)).expect(instr);
        serde_json::from_str(l.trim()).unwrap_or_else(|e| panic!("{instr} exec form: {e}"))
    };
    assert_eq!(json_of("ENTRYPOINT "), ["docket"]);
    let cmd = json_of("CMD ");
    assert_eq!(cmd[0], "serve");
    assert_eq!(flag(&cmd, "--listen"), format!("0.0.0.0:{}", name("APP_PORT")));
    let help = serve_help();
    for arg in cmd.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(&format!("{arg} ")), "docket serve has no {arg}");
    }
    for l in runtime.iter().filter_map(|l| l.strip_prefix("ENV ")) {
        for pair in l.split_whitespace() {
            let var = pair.split('=').next().expect("ENV name");
            assert_env_known(&help, var, "Dockerfile ENV");
        }
    }
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), ".dockerignore leaves out target/");
    assert!(
        !ignore.lines().any(|l| [".cargo", ".cargo/", "crates/", "Cargo.lock"].contains(&l.trim()))
    );
}

/// The script that runs BuildKit's Dockerfile parser (PyPI `dockerfile`, the Go parser
/// compiled into the wheel) and prints what it read as JSON: the instructions it knows and
/// each instruction of the file given as the first argument.
const PARSE_DOCKERFILE: &str = r#"
import json, sys
import dockerfile
commands = [
    dict(c._asdict(), heredocs=[h.name for h in c.heredocs])
    for c in dockerfile.parse_file(sys.argv[1])
]
print(json.dumps({"known": list(dockerfile.all_cmds()), "commands": commands}))
"#;

/// True when an optional checking tool is missing: panics when `CI` is set (CI must not
/// skip), otherwise prints what was skipped.
fn tool_missing(available: bool, test: &str, tool: &str, install: &str) -> bool {
    if available {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {tool} must be installed when CI is set ({install}; .ci/run does)"
    );
    eprintln!("skipped {test}: {tool} not found ({install})");
    true
}

/// `deploy/Dockerfile` as BuildKit's parser reads it: the instruction names it knows and the
/// instructions, or `None` when python3 with the `dockerfile` module is missing.
fn official_parse(test: &str, path: &Path) -> Option<(BTreeSet<String>, Vec<Value>)> {
    let importable = Command::new("python3")
        .args(["-c", "import dockerfile"])
        .status()
        .is_ok_and(|s| s.success());
    if tool_missing(
        importable,
        test,
        "python3 with the `dockerfile` module",
        "pip install 'dockerfile>=3.4,<4'",
    ) {
        return None;
    }
    let out = Command::new("python3")
        .args(["-c", PARSE_DOCKERFILE])
        .arg(path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "BuildKit's parser rejects {}:\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).expect("parser output is JSON");
    let known = parsed["known"]
        .as_array()
        .expect("known")
        .iter()
        .map(|k| k.as_str().expect("name").to_ascii_uppercase())
        .collect();
    Some((known, parsed["commands"].as_array().expect("commands").clone()))
}

/// One instruction as the official parser returned it.
struct Instr<'a>(&'a Value);

impl Instr<'_> {
    fn cmd(&self) -> String {
        s(self.0, "/cmd").to_ascii_uppercase()
    }
    fn strs(&self, field: &str) -> Vec<String> {
        self.0[field]
            .as_array()
            .unwrap_or_else(|| panic!("{field} of {}", self.0))
            .iter()
            .map(|v| v.as_str().expect("string").to_string())
            .collect()
    }
    fn value(&self) -> Vec<String> {
        self.strs("value")
    }
    fn flags(&self) -> Vec<String> {
        self.strs("flags")
    }
    fn json(&self) -> bool {
        self.0["json"] == true
    }
    fn at(&self) -> String {
        format!("deploy/Dockerfile:{}: {}", self.0["start_line"], s(self.0, "/original"))
    }
}

/// `$NAME` and `${NAME}` in `text` replaced by `args`; a name not declared is an error.
fn expand_args(text: &str, args: &BTreeMap<String, String>, at: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (var, tail) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').unwrap_or_else(|| panic!("{at}: unclosed ${{"));
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let value = args.get(var).unwrap_or_else(|| panic!("{at}: ${var} is no ARG before FROM"));
        out.push_str(value);
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Checks the Dockerfile at `path` with the output of BuildKit's own parser; `false` when
/// the parser is not installed (and `CI` is not set).
fn check_dockerfile_with_official_parser(path: &Path) -> bool {
    let test = "dockerfile_passes_buildkits_parser";
    let Some((known, commands)) = official_parse(test, path) else {
        return false;
    };
    let instrs: Vec<Instr> = commands.iter().map(Instr).collect();
    for i in &instrs {
        assert!(known.contains(&i.cmd()), "{}: unknown instruction {}", i.at(), i.cmd());
        assert!(
            i.0["heredocs"].as_array().is_some_and(Vec::is_empty),
            "{}: a heredoc (this test does not read their bodies)",
            i.at()
        );
    }

    // Global ARGs, then stages: FROM <image> AS <name>.
    let first_from = instrs.iter().position(|i| i.cmd() == "FROM").expect("a FROM");
    let mut args = BTreeMap::new();
    for i in &instrs[..first_from] {
        assert_eq!(i.cmd(), "ARG", "{}: only ARG before the first FROM", i.at());
        let value = i.value();
        let (k, v) = value[0].split_once('=').unwrap_or_else(|| panic!("{}: no default", i.at()));
        args.insert(k.to_string(), v.to_string());
    }
    struct Stage<'a> {
        name: String,
        image: String,
        body: Vec<&'a Instr<'a>>,
    }
    let mut stages: Vec<Stage> = Vec::new();
    for i in &instrs[first_from..] {
        if i.cmd() != "FROM" {
            stages.last_mut().expect("stage").body.push(i);
            continue;
        }
        let v = i.value();
        assert!(i.flags().is_empty(), "{}: FROM flags", i.at());
        assert!(
            v.len() == 3 && v[1].eq_ignore_ascii_case("AS"),
            "{}: FROM <image> AS <name>",
            i.at()
        );
        let name = v[2].clone();
        assert_eq!(name, name.to_ascii_lowercase(), "{}: stage names are lower case", i.at());
        assert!(stages.iter().all(|s| s.name != name), "{}: stage {name} twice", i.at());
        let image = expand_args(&v[0], &args, &i.at());
        let tag = image.rsplit('/').next().expect("image").split_once(':');
        assert!(
            tag.is_some_and(|(_, t)| !t.is_empty() && t != "latest"),
            "{}: {image} pinned",
            i.at()
        );
        stages.push(Stage { name, image, body: Vec::new() });
    }
    assert!(stages.len() >= 2, "multi-stage");

    // COPY --from names an earlier stage, and every earlier stage is copied from (a stage
    // nothing copies from is never built by BuildKit).
    let mut used = BTreeSet::new();
    for (n, stage) in stages.iter().enumerate() {
        for i in &stage.body {
            for f in i.flags() {
                let Some(from) = f.strip_prefix("--from=") else { continue };
                assert!(["COPY", "ADD"].contains(&i.cmd().as_str()), "{}", i.at());
                assert!(
                    stages[..n].iter().any(|s| s.name == from),
                    "{}: --from={from} is no earlier stage",
                    i.at()
                );
                used.insert(from.to_string());
            }
        }
    }
    for stage in &stages[..stages.len() - 1] {
        assert!(used.contains(&stage.name), "stage {} is never copied from", stage.name);
    }

    // The builder compiles the package and binary the tests run, with the workspace's
    // toolchain; the final stage copies that binary onto PATH and runs it.
    let bin_path = Path::new(env!("CARGO_BIN_EXE_docket"));
    let bin = bin_path.file_name().expect("bin name").to_str().expect("utf-8");
    let package = env!("CARGO_PKG_NAME");
    let runtime = stages.last().expect("runtime");
    let copies: Vec<(String, Vec<String>)> = runtime
        .body
        .iter()
        .filter_map(|i| {
            let from = i.flags().iter().find_map(|f| f.strip_prefix("--from=").map(str::to_string));
            from.map(|f| (f, i.value()))
        })
        .collect();
    let (builder_name, copied) = copies
        .iter()
        .find(|(_, v)| v.last().is_some_and(|dest| dest.ends_with(&format!("/bin/{bin}"))))
        .unwrap_or_else(|| panic!("the final stage copies no {bin} into a bin directory"));
    let builder = stages.iter().find(|s| &s.name == builder_name).expect("builder stage");
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("workspace rust-version")
        .trim_matches('"')
        .to_string();
    assert!(
        builder.image.starts_with(&format!("rust:{rust_version}-"))
            || builder.image == format!("rust:{rust_version}"),
        "builder image {} is not the workspace's Rust {rust_version}",
        builder.image
    );
    let run = builder
        .body
        .iter()
        .filter(|i| i.cmd() == "RUN")
        .map(|i| i.value().join(" "))
        .find(|r| r.contains("cargo build"))
        .expect("the builder runs cargo build");
    let words: Vec<&str> = run.split_whitespace().collect();
    let cargo_at = words.windows(2).position(|w| w == ["cargo", "build"]).expect("cargo build");
    let cargo_args: Vec<String> = words[cargo_at + 2..]
        .iter()
        .take_while(|w| !["&&", ";", "||"].contains(w))
        .map(|w| w.to_string())
        .collect();
    assert!(cargo_args.iter().any(|a| a == "--release"), "cargo build {cargo_args:?}");
    assert!(cargo_args.iter().any(|a| a == "--locked"), "cargo build {cargo_args:?}");
    assert_eq!(flag(&cargo_args, "-p"), package, "cargo build {cargo_args:?}: the tested package");
    for a in &cargo_args {
        assert!(
            ["--release", "--locked", "-p", package].contains(&a.as_str()),
            "cargo build {a}: the tests build without it"
        );
    }
    // `install … target/release/<bin> <out>` and the final stage copies <out>.
    let built = format!("target/release/{bin}");
    let at = words.iter().position(|w| *w == built).unwrap_or_else(|| panic!("{run}: no {built}"));
    let out = words.get(at + 1).expect("where the binary is put");
    assert_eq!(
        copied[..copied.len() - 1],
        [out.to_string()],
        "COPY --from={builder_name} {copied:?}"
    );
    let dest = copied.last().expect("dest");
    assert!(
        ["/usr/local/bin/", "/usr/bin/"].iter().any(|d| dest.strip_prefix(d) == Some(bin)),
        "{dest} is not on the image's PATH"
    );

    let last = |cmd: &str| runtime.body.iter().rev().find(|i| i.cmd() == cmd).copied();
    let entry = last("ENTRYPOINT").expect("ENTRYPOINT in the final stage");
    assert!(entry.json(), "{}: exec form", entry.at());
    assert!(
        entry.value() == [bin] || entry.value() == [dest.as_str()],
        "{}: runs {bin}",
        entry.at()
    );
    let cmd = last("CMD").expect("CMD in the final stage");
    assert!(cmd.json(), "{}: exec form", cmd.at());
    let cmd_args = cmd.value();
    assert_eq!(cmd_args[0], "serve", "{}", cmd.at());
    let port = name("APP_PORT");
    assert_eq!(flag(&cmd_args, "--listen"), format!("0.0.0.0:{port}"), "{}", cmd.at());
    let help = serve_help();
    for a in cmd_args.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(&format!("{a} ")), "{}: docket serve has no {a}", cmd.at());
    }
    let exposed: Vec<String> =
        runtime.body.iter().filter(|i| i.cmd() == "EXPOSE").flat_map(|i| i.value()).collect();
    assert_eq!(exposed, [port.as_str()], "EXPOSE is the port the chart and compose use");
    let user = last("USER").expect("USER in the final stage").value().concat();
    let uid = user.split(':').next().expect("uid");
    assert!(uid != "root" && uid != "0", "final stage runs as {user}");
    for i in runtime.body.iter().filter(|i| i.cmd() == "ENV") {
        // The parser gives name, value, name, value, …
        for var in i.value().iter().step_by(2) {
            assert_env_known(&help, var, &i.at());
        }
    }
    true
}

#[test]
fn dockerfile_passes_buildkits_parser() {
    let path = root().join("deploy/Dockerfile");
    if !check_dockerfile_with_official_parser(&path) {
        return;
    }
    // The checks above fail on a broken Dockerfile, not only on this one.
    let dir = tempfile::tempdir().expect("temp dir");
    let text = read("deploy/Dockerfile");
    let port = name("APP_PORT");
    let broken = [
        ("an unknown instruction", text.replacen("WORKDIR /src", "WORKDIRR /src", 1)),
        ("an unknown stage", text.replacen("--from=builder", "--from=build", 1)),
        ("another port", text.replacen(&format!("EXPOSE {port}"), "EXPOSE 9090", 1)),
        ("another package", text.replacen("-p docket", "-p docket-app", 1)),
        ("an undeclared ARG", text.replacen("${RUST_VERSION}", "${RUST_VER}", 1)),
        ("an unterminated heredoc", format!("{text}RUN <<EOF\necho\n")),
    ];
    for (what, bad) in broken {
        assert_ne!(bad, text, "{what}: the mutation applies");
        let file = dir.path().join("Dockerfile");
        std::fs::write(&file, &bad).expect("write");
        let caught = std::panic::catch_unwind(|| check_dockerfile_with_official_parser(&file));
        assert!(caught.is_err(), "a Dockerfile with {what} passes the checks");
    }
}

/// `dockerfilelint` (npm): PATH, or where .ci/run installs it.
fn dockerfilelint() -> Option<PathBuf> {
    let on_path =
        Command::new("dockerfilelint").arg("--version").output().is_ok_and(|o| o.status.success());
    if on_path {
        return Some(PathBuf::from("dockerfilelint"));
    }
    let home = std::env::var_os("HOME")?;
    let cached = Path::new(&home).join(".cache/docket-ci-tools/node_modules/.bin/dockerfilelint");
    cached.is_file().then_some(cached)
}

#[test]
fn dockerfile_passes_dockerfilelint() {
    let test = "dockerfile_passes_dockerfilelint";
    let lint = dockerfilelint();
    if tool_missing(lint.is_some(), test, "dockerfilelint", "npm install dockerfilelint@1.8.0") {
        return;
    }
    let out = Command::new(lint.expect("found"))
        .args(["--output", "json"])
        .arg(root().join("deploy/Dockerfile"))
        .output()
        .expect("run dockerfilelint");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("dockerfilelint output: {e}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    let issues = &report["files"][0]["issues"];
    assert_eq!(report["totalIssues"], 0, "dockerfilelint: {issues:#}");
    assert!(out.status.success(), "dockerfilelint exit status {}", out.status);
}

// ---------------------------------------------------------------------------------------
// Helm chart

/// A minimal Go-template renderer for the subset the chart uses; see the module docs.
mod tpl {
    use std::collections::BTreeMap;

    use serde_json::Value;

    #[derive(Debug, Clone)]
    pub enum Node {
        Text(String),
        Out(String),
        If(String, Vec<Node>, Vec<Node>),
        With(String, Vec<Node>, Vec<Node>),
        Range(String, Vec<Node>),
    }

    pub type Defines = BTreeMap<String, Vec<Node>>;

    /// Splits a template into text and actions, applying `{{-` / `-}}` trimming and
    /// dropping comments.
    fn lex(src: &str) -> Result<Vec<(bool, String)>, String> {
        let mut out: Vec<(bool, String)> = Vec::new();
        let mut rest = src;
        let mut trim_next = false;
        while let Some(i) = rest.find("{{") {
            let mut text = rest[..i].to_string();
            if trim_next {
                text = text.trim_start().to_string();
            }
            let after = &rest[i + 2..];
            let j = after.find("}}").ok_or("unclosed {{")?;
            let mut action = &after[..j];
            if let Some(a) = action.strip_prefix('-') {
                text = text.trim_end().to_string();
                action = a;
            }
            trim_next = false;
            if let Some(a) = action.strip_suffix('-') {
                trim_next = true;
                action = a;
            }
            out.push((false, text));
            let action = action.trim();
            if !(action.starts_with("/*") && action.ends_with("*/")) {
                out.push((true, action.to_string()));
            }
            rest = &after[j + 2..];
        }
        let text = if trim_next { rest.trim_start() } else { rest };
        out.push((false, text.to_string()));
        Ok(out)
    }

    /// Parses a template file; `define`d blocks go to `defines`.
    pub fn parse(src: &str, defines: &mut Defines) -> Result<Vec<Node>, String> {
        let tokens = lex(src)?;
        let mut pos = 0;
        let (nodes, end) = parse_block(&tokens, &mut pos, defines)?;
        if end.is_some() {
            return Err("unexpected end/else".into());
        }
        Ok(nodes)
    }

    fn parse_block(
        tokens: &[(bool, String)],
        pos: &mut usize,
        defines: &mut Defines,
    ) -> Result<(Vec<Node>, Option<String>), String> {
        let mut nodes = Vec::new();
        while *pos < tokens.len() {
            let (is_action, s) = &tokens[*pos];
            *pos += 1;
            if !is_action {
                if !s.is_empty() {
                    nodes.push(Node::Text(s.clone()));
                }
                continue;
            }
            let (word, arg) = s.split_once(' ').unwrap_or((s.as_str(), ""));
            let arg = arg.trim().to_string();
            match word {
                "end" | "else" => return Ok((nodes, Some(word.to_string()))),
                "if" | "with" => {
                    let (then, end) = parse_block(tokens, pos, defines)?;
                    let otherwise = match end.as_deref() {
                        Some("else") => match parse_block(tokens, pos, defines)? {
                            (b, Some(e)) if e == "end" => b,
                            _ => return Err(format!("{word} {arg}: else without end")),
                        },
                        Some("end") => Vec::new(),
                        _ => return Err(format!("{word} {arg}: no end")),
                    };
                    nodes.push(if word == "if" {
                        Node::If(arg, then, otherwise)
                    } else {
                        Node::With(arg, then, otherwise)
                    });
                }
                "range" => match parse_block(tokens, pos, defines)? {
                    (body, Some(e)) if e == "end" => nodes.push(Node::Range(arg, body)),
                    _ => return Err(format!("range {arg}: no end")),
                },
                "define" => {
                    let name = arg.trim_matches('"').to_string();
                    match parse_block(tokens, pos, defines)? {
                        (body, Some(e)) if e == "end" => {
                            defines.insert(name, body);
                        }
                        _ => return Err(format!("define {name}: no end")),
                    }
                }
                _ => nodes.push(Node::Out(s.clone())),
            }
        }
        Ok((nodes, None))
    }

    pub struct Ctx<'a> {
        pub root: &'a Value,
        pub defines: &'a Defines,
    }

    fn truthy(v: &Value) -> bool {
        match v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        }
    }

    /// Splits on `sep` outside double quotes.
    fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
        let (mut parts, mut cur, mut quoted) = (Vec::new(), String::new(), false);
        for c in s.chars() {
            if c == '"' {
                quoted = !quoted;
            }
            if c == sep && !quoted {
                parts.push(std::mem::take(&mut cur));
            } else {
                cur.push(c);
            }
        }
        parts.push(cur);
        parts.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
    }

    fn lookup(base: &Value, path: &str, whole: &str) -> Result<Value, String> {
        let mut v = base;
        for key in path.split('.').filter(|k| !k.is_empty()) {
            v = v
                .as_object()
                .and_then(|o| o.get(key))
                .ok_or_else(|| format!("{whole}: no key {key:?} (values must define it)"))?;
        }
        Ok(v.clone())
    }

    fn term(t: &str, dot: &Value, ctx: &Ctx) -> Result<Value, String> {
        if let Some(lit) = t.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
            return Ok(Value::String(lit.to_string()));
        }
        if let Ok(n) = t.parse::<i64>() {
            return Ok(n.into());
        }
        match t {
            "true" => return Ok(true.into()),
            "false" => return Ok(false.into()),
            "." => return Ok(dot.clone()),
            "$" => return Ok(ctx.root.clone()),
            _ => {}
        }
        if let Some(path) = t.strip_prefix("$.") {
            return lookup(ctx.root, path, t);
        }
        if let Some(path) = t.strip_prefix('.') {
            return lookup(dot, path, t);
        }
        Err(format!("unsupported term {t:?}"))
    }

    pub fn to_text(v: &Value) -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(format!("cannot print {other} (use toYaml)")),
        }
    }

    fn int(v: &Value) -> Result<usize, String> {
        v.as_u64().map(|n| n as usize).ok_or_else(|| format!("{v} is not a count"))
    }

    fn command(cmd: &str, piped: Option<Value>, dot: &Value, ctx: &Ctx) -> Result<Value, String> {
        let words = split_outside_quotes(cmd, ' ');
        let (head, rest) = words.split_first().ok_or("empty command")?;
        let is_func = head.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && !matches!(head.as_str(), "true" | "false");
        if !is_func {
            if piped.is_some() || !rest.is_empty() {
                return Err(format!("{cmd}: a value takes no arguments"));
            }
            return term(head, dot, ctx);
        }
        let mut args = rest.iter().map(|a| term(a, dot, ctx)).collect::<Result<Vec<_>, _>>()?;
        args.extend(piped);
        let arity = |n: usize| {
            if args.len() == n { Ok(()) } else { Err(format!("{head} takes {n} arguments")) }
        };
        match head.as_str() {
            "include" => {
                arity(2)?;
                let name = to_text(&args[0])?;
                let body = ctx.defines.get(&name).ok_or(format!("no template {name}"))?;
                Ok(Value::String(render(body, &args[1], ctx)?))
            }
            "toYaml" => {
                arity(1)?;
                let y = serde_yaml_ng::to_string(&args[0]).map_err(|e| e.to_string())?;
                Ok(Value::String(y.trim_end_matches('\n').to_string()))
            }
            "nindent" => {
                arity(2)?;
                let pad = " ".repeat(int(&args[0])?);
                let text = to_text(&args[1])?;
                let lines: Vec<String> = text.split('\n').map(|l| format!("{pad}{l}")).collect();
                Ok(Value::String(format!("\n{}", lines.join("\n"))))
            }
            "quote" => {
                arity(1)?;
                let text = to_text(&args[0])?;
                Ok(Value::String(serde_json::to_string(&text).map_err(|e| e.to_string())?))
            }
            "default" => {
                arity(2)?;
                Ok(if truthy(&args[1]) { args[1].clone() } else { args[0].clone() })
            }
            "eq" => {
                arity(2)?;
                Ok((args[0] == args[1]).into())
            }
            "not" => {
                arity(1)?;
                Ok((!truthy(&args[0])).into())
            }
            other => Err(format!("function {other} is outside the chart's template subset")),
        }
    }

    fn pipeline(p: &str, dot: &Value, ctx: &Ctx) -> Result<Value, String> {
        let mut value = None;
        for cmd in split_outside_quotes(p, '|') {
            value = Some(command(&cmd, value, dot, ctx)?);
        }
        value.ok_or_else(|| format!("empty pipeline {p:?}"))
    }

    pub fn render(nodes: &[Node], dot: &Value, ctx: &Ctx) -> Result<String, String> {
        let mut out = String::new();
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Out(p) => out.push_str(&to_text(&pipeline(p, dot, ctx)?)?),
                Node::If(p, then, otherwise) => {
                    let branch = if truthy(&pipeline(p, dot, ctx)?) { then } else { otherwise };
                    out.push_str(&render(branch, dot, ctx)?);
                }
                Node::With(p, then, otherwise) => {
                    let v = pipeline(p, dot, ctx)?;
                    if truthy(&v) {
                        out.push_str(&render(then, &v, ctx)?);
                    } else {
                        out.push_str(&render(otherwise, dot, ctx)?);
                    }
                }
                Node::Range(p, body) => match pipeline(p, dot, ctx)? {
                    Value::Array(items) => {
                        for item in &items {
                            out.push_str(&render(body, item, ctx)?);
                        }
                    }
                    Value::Object(map) => {
                        for item in map.values() {
                            out.push_str(&render(body, item, ctx)?);
                        }
                    }
                    Value::Null => {}
                    other => return Err(format!("range over {other}")),
                },
            }
        }
        Ok(out)
    }
}

#[test]
fn template_renderer_follows_go_template_semantics() {
    let mut defines = tpl::Defines::new();
    let src = "a:\n  {{- if .Values.on }}\n  b: {{ .Values.n | quote }}\n  {{- else }}\n  b: no\n  \
               {{- end }}\n{{- /* gone */}}\nl:{{ toYaml .Values.l | nindent 2 }}\n\
               {{- range .Values.l }}\n- {{ . }}-{{ $.Values.n }}{{ end }}\n\
               d: {{ .Values.e | default \"x\" }}{{ with .Values.m }} {{ .k }}{{ end }}";
    let nodes = tpl::parse(src, &mut defines).expect("parse");
    let root = json!({"Values": {"on": true, "n": 3, "l": ["p", "q"], "e": "", "m": {"k": "v"}}});
    let ctx = tpl::Ctx { root: &root, defines: &defines };
    let out = tpl::render(&nodes, &root, &ctx).expect("render");
    assert_eq!(out, "a:\n  b: \"3\"\nl:\n  - p\n  - q\n- p-3\n- q-3\nd: x v");
    let mut scratch = tpl::Defines::new();
    let missing = tpl::parse("{{ .Values.nope }}", &mut scratch).expect("parse");
    assert!(tpl::render(&missing, &root, &ctx).unwrap_err().contains("nope"));
    let outside = tpl::parse("{{ .Values.n | upper }}", &mut scratch).expect("parse");
    assert!(tpl::render(&outside, &root, &ctx).unwrap_err().contains("subset"));
}

/// Deep-merges `over` into `base` (maps merge, everything else replaces), as Helm does.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// `--set a.b=c` as Helm reads it (integers and booleans typed); the key must exist.
fn set_value(values: &mut Value, assignment: &str) {
    let (path, raw) = assignment.split_once('=').expect("--set key=value");
    let typed = match raw {
        "true" => json!(true),
        "false" => json!(false),
        _ => raw.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(raw)),
    };
    let mut slot = &mut *values;
    for key in path.split('.') {
        slot = slot
            .get_mut(key)
            .unwrap_or_else(|| panic!("--set {path}: {key} is not a key of values.yaml"));
    }
    *slot = typed;
}

struct Rendered {
    values: Value,
    objects: Vec<Value>,
    notes: String,
}

impl Rendered {
    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }
    fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name).unwrap_or_else(|| panic!("chart renders no {kind} {name}"))
    }
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }
}

/// Renders the chart with values.yaml, then each override in order, as `helm template`.
fn render_chart(overrides: &[Value], sets: &[String]) -> Rendered {
    let chart_dir = name("CHART_PATH");
    let mut values = yaml_one(&format!("{chart_dir}/values.yaml"));
    for o in overrides {
        merge(&mut values, o);
    }
    for set in sets {
        set_value(&mut values, set);
    }
    let chart = yaml_one(&format!("{chart_dir}/Chart.yaml"));
    let root = json!({
        "Values": values,
        "Release": {"Name": name("RELEASE"), "Namespace": name("NAMESPACE"), "Service": "Helm"},
        "Chart": {"Name": chart["name"], "Version": chart["version"],
                  "AppVersion": chart["appVersion"]},
    });
    let mut defines = tpl::Defines::new();
    let mut templates = Vec::new();
    for file in files_in(&format!("{chart_dir}/templates"), "") {
        let nodes =
            tpl::parse(&read(&file), &mut defines).unwrap_or_else(|e| panic!("{file}: {e}"));
        templates.push((file, nodes));
    }
    let ctx = tpl::Ctx { root: &root, defines: &defines };
    let (mut objects, mut notes) = (Vec::new(), String::new());
    for (file, nodes) in &templates {
        let base = file.rsplit('/').next().expect("file name");
        if base.starts_with('_') {
            continue;
        }
        let out = tpl::render(nodes, &root, &ctx).unwrap_or_else(|e| panic!("{file}: {e}"));
        if base == "NOTES.txt" {
            notes = out;
            continue;
        }
        assert!(base.ends_with(".yaml"), "{file}: templates are .yaml");
        for doc in yaml_docs(&out, file) {
            assert!(doc["apiVersion"].is_string() && doc["kind"].is_string(), "{file}: {doc}");
            objects.push(doc);
        }
    }
    Rendered { values: root["Values"].clone(), objects, notes }
}

fn str_map(v: &Value, what: &str) {
    for (k, val) in v.as_object().unwrap_or_else(|| panic!("{what}: map")) {
        assert!(val.is_string(), "{what}: {k} must be a string, is {val}");
    }
}

/// Every check on one rendering.
fn check_chart(r: &Rendered, help: &str, case: &str) {
    let v = &r.values;
    let release = name("RELEASE");
    let port: u64 = name("APP_PORT").parse().expect("port");
    for o in &r.objects {
        let what = format!("{case}: {} {}", o["kind"], o["metadata"]["name"]);
        str_map(&o["metadata"]["labels"], &what);
        if o["metadata"].get("annotations").is_some() {
            str_map(&o["metadata"]["annotations"], &what);
        }
    }
    let config = r.get("ConfigMap", &format!("{release}-env"));
    str_map(&config["data"], case);
    for var in config["data"].as_object().expect("data").keys() {
        assert_env_known(help, var, &format!("{case}: ConfigMap"));
    }
    assert_eq!(s(config, "/data/DOCKET_LISTEN"), format!("0.0.0.0:{port}"));
    for (mode, on) in [("BUS", "bus"), ("STATE", "state"), ("SECRETS", "secrets")] {
        let set = config["data"].get(format!("DOCKET_{mode}")).and_then(Value::as_str);
        assert_eq!(set, v["dapr"][on].as_bool().unwrap().then_some("dapr"), "{case}: {mode}");
    }
    // The delivery mode goes with the Dapr bus, and is one `--dapr-delivery` takes.
    let delivery = config["data"].get("DOCKET_DAPR_DELIVERY").and_then(Value::as_str);
    assert_eq!(delivery.is_some(), v["dapr"]["bus"] == true, "{case}: DOCKET_DAPR_DELIVERY");
    if let Some(mode) = delivery {
        assert_eq!(Some(mode), v["dapr"]["delivery"].as_str(), "{case}");
        let flag =
            help.split("--dapr-delivery <").nth(1).expect("serve --help has --dapr-delivery");
        let values = flag.split("[env:").next().unwrap_or_default();
        assert!(
            values.contains(&format!("- {mode}:")),
            "{case}: --dapr-delivery {mode} is not a mode `docket serve` takes"
        );
    }
    let secret_name = s(v, "/secret/name");
    assert_eq!(secret_name, name("SECRET_NAME"), "{case}");
    if v["secret"]["create"] == true {
        let secret = r.get("Secret", secret_name);
        str_map(&secret["stringData"], case);
        for key in [
            "DOCKET_DATABASE_URL",
            "DOCKET_JWT_SECRET",
            "DOCKET_SECRET_KEY",
            "DOCKET_SMTP_PASSWORD",
        ] {
            assert!(secret["stringData"][key].is_string(), "{case}: Secret {key}");
        }
    } else {
        assert!(r.all("Secret").is_empty(), "{case}: no Secret when secret.create is false");
    }

    for (part, app_id, roles) in [
        ("api", name("APP_ID_API"), name("ROLES_API")),
        ("worker", name("APP_ID_WORKER"), name("ROLES_WORKER")),
    ] {
        let what = format!("{case}: {part}");
        let d = r.get("Deployment", &format!("{release}-{part}"));
        assert_eq!(s(d, "/apiVersion"), "apps/v1");
        let pod = &d["spec"]["template"];
        let ann = &pod["metadata"]["annotations"];
        str_map(ann, &what);
        assert_eq!(ann["dapr.io/enabled"], "true", "{what}");
        assert_eq!(ann["dapr.io/app-id"], app_id.as_str(), "{what}");
        assert_eq!(ann["dapr.io/app-port"], port.to_string(), "{what}");
        assert_eq!(ann["dapr.io/config"], name("DAPR_CONFIG").as_str(), "{what}");
        assert!(ann["dapr.io/log-as-json"].is_string(), "{what}");
        for (k, sel) in d["spec"]["selector"]["matchLabels"].as_object().expect("selector") {
            assert_eq!(&pod["metadata"]["labels"][k], sel, "{what}: selector {k}");
        }
        let c = &pod["spec"]["containers"][0];
        let image = format!("{}:{}", s(v, "/image/repository"), s(v, "/image/tag"));
        assert_eq!(s(c, "/image"), image, "{what}");
        assert_eq!(s(c, "/name"), "docket", "{what}");
        assert_eq!(c["ports"][0]["containerPort"], port, "{what}");
        let port_name = s(c, "/ports/0/name");
        let env = c["env"].as_array().expect("env");
        let roles_env = env.iter().find(|e| e["name"] == "DOCKET_ROLES").expect("DOCKET_ROLES");
        assert_eq!(roles_env["value"], roles.as_str(), "{what}");
        for e in env {
            assert_env_known(help, s(e, "/name"), &what);
        }
        for (probe, path) in
            [("livenessProbe", name("LIVENESS_PATH")), ("readinessProbe", name("READINESS_PATH"))]
        {
            assert_eq!(s(c, &format!("/{probe}/httpGet/path")), path, "{what}");
            assert_eq!(s(c, &format!("/{probe}/httpGet/port")), port_name, "{what}");
        }
        assert!(c["resources"]["requests"]["cpu"].is_string(), "{what}: resources");
        assert!(c["resources"]["limits"]["memory"].is_string(), "{what}: limits");
        let from = c["envFrom"].as_array().expect("envFrom");
        assert_eq!(s(&from[0], "/configMapRef/name"), format!("{release}-env"));
        let has_secret = from.iter().any(|f| f["secretRef"]["name"] == secret_name);
        assert_eq!(has_secret, v["secret"]["asEnv"] == true, "{what}: secret as env");
        let hpa_on = v[part]["autoscaling"]["enabled"] == true;
        assert_eq!(d["spec"].get("replicas").is_none(), hpa_on, "{what}: replicas xor HPA");
        let hpa = r.find("HorizontalPodAutoscaler", &format!("{release}-{part}"));
        assert_eq!(hpa.is_some(), hpa_on, "{what}: HPA");
        if let Some(h) = hpa {
            assert_eq!(s(h, "/apiVersion"), "autoscaling/v2");
            assert_eq!(s(h, "/spec/scaleTargetRef/name"), s(d, "/metadata/name"));
            assert_eq!(h["spec"]["minReplicas"], v[part]["autoscaling"]["minReplicas"]);
            assert_eq!(h["spec"]["maxReplicas"], v[part]["autoscaling"]["maxReplicas"]);
            let target = &h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"];
            assert_eq!(target, &v[part]["autoscaling"]["targetCPUUtilizationPercentage"]);
        }
        if part == "api" {
            let svc = r.get("Service", &format!("{release}-api"));
            for (k, sel) in svc["spec"]["selector"].as_object().expect("selector") {
                assert_eq!(&pod["metadata"]["labels"][k], sel, "{case}: Service selector {k}");
            }
            assert_eq!(s(svc, "/spec/ports/0/targetPort"), port_name);
            assert_eq!(svc["spec"]["ports"][0]["port"], v["service"]["port"]);
        }
    }

    // Dapr resources: the same as deploy/dapr, with the broker and store the values pick.
    let components = r.all("Component");
    if v["dapr"]["components"] != true {
        assert!(components.is_empty() && r.all("Resiliency").is_empty(), "{case}");
        return;
    }
    let types: BTreeSet<String> =
        components.iter().map(|c| check_component(c, case)).collect::<BTreeSet<_>>();
    let expect: BTreeSet<String> = [
        format!("pubsub.{}", s(v, "/broker")),
        format!("state.{}", s(v, "/stateStore")),
        "secretstores.kubernetes".to_string(),
        "bindings.cron".to_string(),
    ]
    .into();
    assert_eq!(types, expect, "{case}");
    for c in &components {
        let ty = s(c, "/spec/type");
        let file = files_in("deploy/dapr", ".yaml")
            .into_iter()
            .find(|f| yaml_one(f)["spec"]["type"] == ty)
            .unwrap_or_else(|| panic!("deploy/dapr has no {ty}"));
        assert_eq!(metadata_names(c), metadata_names(&yaml_one(&file)), "{case}: {ty} vs {file}");
    }
    let resiliency = r.get("Resiliency", &name("RESILIENCY"));
    check_resiliency(resiliency, case);
    assert_eq!(resiliency["spec"], yaml_one("deploy/dapr/resiliency.yaml")["spec"], "{case}");
    let configuration = r.get("Configuration", &name("DAPR_CONFIG"));
    assert_eq!(configuration["spec"], yaml_one("deploy/dapr/config.yaml")["spec"], "{case}");

    let job = r.find("Job", &format!("{release}-kafka-topics"));
    assert_eq!(job.is_some(), v["broker"] == "kafka" && v["kafka"]["createTopics"] == true);
    if let Some(job) = job {
        let script = s(job, "/spec/template/spec/containers/0/command/2");
        for topic in list("TOPICS") {
            assert!(script.contains(&format!("for t in {topic} {topic}.dlq;")), "{case}: {topic}");
        }
        assert!(script.contains(s(v, "/kafka/brokers")));
    }
    assert!(r.notes.contains(&format!("{release}-api")), "{case}: NOTES");
}

#[test]
fn values_list_the_app_topics() {
    let values = yaml_one(&format!("{}/values.yaml", name("CHART_PATH")));
    let topics: Vec<String> =
        serde_json::from_value(values["topics"].clone()).expect("topics list");
    assert_eq!(topics, docket_events::topics::ALL.map(String::from).to_vec());
    let chart = yaml_one(&format!("{}/Chart.yaml", name("CHART_PATH")));
    assert_eq!(s(&chart, "/apiVersion"), "v2");
    assert_eq!(s(&chart, "/name"), name("RELEASE"));
    assert_eq!(s(&chart, "/appVersion"), env!("CARGO_PKG_VERSION"));
}

#[test]
fn helm_chart_renders_for_kafka_and_redis() {
    let help = serve_help();
    let cases = [
        ("defaults", json!({})),
        ("redis", json!({"broker": "redis", "stateStore": "redis", "dapr": {"delivery": "inbox"}})),
        ("kafka, redis state", json!({"broker": "kafka", "stateStore": "redis"})),
        (
            "no hpa, own secret, smtp",
            json!({"api": {"autoscaling": {"enabled": false}},
                   "worker": {"autoscaling": {"enabled": true}},
                   "secret": {"create": false, "asEnv": false},
                   "smtp": {"host": "smtp.example.com", "username": "docket"}}),
        ),
        (
            "embedded mode",
            json!({"dapr": {"components": false, "bus": false, "state": false,
                            "secrets": false, "scheduler": false},
                   "kafka": {"createTopics": false},
                   "app": {"extraEnv": [{"name": "DOCKET_TOKEN_TTL_SECS", "value": "3600"}]}}),
        ),
    ];
    for (case, over) in cases {
        let r = render_chart(&[over], &[]);
        check_chart(&r, &help, case);
    }
}

// ---------------------------------------------------------------------------------------
// the guide

/// The shell commands of the guide's ```sh blocks, continuation lines joined.
fn guide_commands() -> Vec<String> {
    let guide = read("docs/deploy-kubernetes.md");
    let (mut out, mut in_sh, mut cur) = (Vec::new(), false, String::new());
    for line in guide.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(head) = line.trim_end().strip_suffix('\\') {
            cur.push_str(head);
        } else {
            cur.push_str(line);
            out.push(std::mem::take(&mut cur).trim().to_string());
        }
    }
    out.retain(|c| !c.is_empty());
    out
}

fn opt<'a>(words: &'a [&str], flags: &[&str]) -> Vec<&'a str> {
    words.windows(2).filter(|w| flags.contains(&w[0])).map(|w| w[1]).collect()
}

#[test]
fn guide_commands_match_the_chart_and_manifests() {
    let (release, namespace, chart) = (name("RELEASE"), name("NAMESPACE"), name("CHART_PATH"));
    let commands = guide_commands();
    let guide = read("docs/deploy-kubernetes.md");
    for needle in ["minikube start", "dapr init -k", "kubectl create namespace", "helm install"] {
        assert!(commands.iter().any(|c| c.starts_with(needle)), "guide lacks `{needle}`");
    }
    for topic in list("TOPICS") {
        assert!(guide.contains(&format!("`{topic}`")), "guide: topic {topic}");
        assert!(guide.contains(&format!("`{topic}.dlq`")), "guide: {topic}.dlq");
    }
    for key in ["APP_ID_API", "APP_ID_WORKER", "PUBSUB", "STATE_STORE", "SECRET_STORE"] {
        assert!(guide.contains(&format!("`{}`", name(key))), "guide: {key}");
    }
    for group in list("CONSUMER_GROUPS") {
        assert!(guide.contains(&format!("`{group}`")), "guide: consumer group {group}");
    }

    // Objects a command may name: what the chart renders with the guide's values, plus the
    // Minikube manifests the guide applies.
    let mut objects: BTreeSet<String> = BTreeSet::new();
    let mut built_tags = BTreeSet::new();
    let mut rendered = 0;
    let help = serve_help();
    let image_repo = name("IMAGE").split(':').next().expect("repo").to_string();
    for cmd in &commands {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let ns = opt(&words, &["-n", "--namespace"]);
        match words.as_slice() {
            ["minikube", "image", "build", ..] => {
                let tag = opt(&words, &["-t"])[0];
                assert_eq!(opt(&words, &["-f"]), ["deploy/Dockerfile"], "{cmd}");
                assert_eq!(words.last(), Some(&"."), "{cmd}: build context is the repo root");
                let (repo, t) = tag.split_once(':').expect("repo:tag");
                assert_eq!(repo, image_repo, "{cmd}");
                built_tags.insert(t.to_string());
            }
            ["helm", verb @ ("install" | "upgrade"), rel, path, ..] => {
                assert_eq!(*rel, release, "{cmd}");
                assert_eq!(*path, chart, "{cmd}");
                assert_eq!(ns, [namespace.as_str()], "{cmd}");
                let overrides: Vec<Value> = opt(&words, &["-f", "--values"])
                    .into_iter()
                    .map(|f| {
                        assert!(f.starts_with("deploy/"), "{cmd}: {f}");
                        yaml_one(f)
                    })
                    .collect();
                let sets: Vec<String> = opt(&words, &["--set"])
                    .into_iter()
                    .map(|s| s.replace("$DOCKET_JWT_SECRET", "0123456789abcdef"))
                    .collect();
                let r = render_chart(&overrides, &sets);
                check_chart(&r, &help, cmd);
                rendered += 1;
                let tag = s(&r.values, "/image/tag").to_string();
                assert!(built_tags.contains(&tag), "{cmd}: image tag {tag} built earlier");
                assert!(!s(&r.values, "/database/url").is_empty(), "{cmd}: database.url");
                assert!(!s(&r.values, "/secret/jwtSecret").is_empty(), "{cmd}: jwtSecret");
                if *verb == "install" {
                    assert!(overrides.len() == 1, "{cmd}: one values file");
                }
                for o in &r.objects {
                    let kind = s(o, "/kind").to_ascii_lowercase();
                    objects.insert(format!("{kind}/{}", s(o, "/metadata/name")));
                    if kind == "service" {
                        let port = &o["spec"]["ports"][0]["port"];
                        objects.insert(format!("svc/{}:{port}", s(o, "/metadata/name")));
                    }
                }
            }
            ["helm", "uninstall" | "history", rel, ..] | ["helm", "rollback", rel, _, ..] => {
                assert_eq!(*rel, release, "{cmd}");
                assert_eq!(ns, [namespace.as_str()], "{cmd}");
            }
            ["helm", ..] => assert_eq!(words, ["helm", "version"], "unchecked helm command"),
            ["kubectl", ..] => {
                for f in opt(&words, &["-f"]) {
                    for doc in yaml_docs(&read(f), f) {
                        let kind = s(&doc, "/kind").to_ascii_lowercase();
                        objects.insert(format!("{kind}/{}", s(&doc, "/metadata/name")));
                    }
                }
                if words.contains(&"namespace") {
                    assert_eq!(words.last(), Some(&namespace.as_str()), "{cmd}");
                } else if !matches!(words[1..], ["version", ..] | ["get", "nodes"]) {
                    assert_eq!(ns, [namespace.as_str()], "{cmd}: namespace");
                }
            }
            _ => {}
        }
    }
    assert!(rendered >= 3, "the guide installs/upgrades the chart {rendered} times");

    // Second pass, now that every object is known: what kubectl names exists.
    let release_labels = [
        format!("app.kubernetes.io/instance={release}"),
        "app.kubernetes.io/component=api".to_string(),
    ];
    for cmd in commands.iter().filter(|c| c.starts_with("kubectl")) {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        for w in &words {
            if let Some((kind, obj)) = w.split_once('/').filter(|(_, o)| !o.contains('/')) {
                let kind = match kind {
                    "deploy" => "deployment",
                    k => k,
                };
                if ["deployment", "statefulset", "svc"].contains(&kind) {
                    let key = if kind == "svc" {
                        let port = words.last().and_then(|p| p.split_once(':')).expect("ports");
                        format!("svc/{obj}:{}", port.1)
                    } else {
                        format!("{kind}/{obj}")
                    };
                    assert!(objects.contains(&key), "{cmd}: {key} is not deployed");
                }
            }
        }
        for sel in opt(&words, &["-l"]) {
            assert!(release_labels.contains(&sel.to_string()), "{cmd}: selector {sel}");
        }
        for c in opt(&words, &["-c"]) {
            assert!(c == "daprd" || c == "docket", "{cmd}: container {c}");
        }
    }
    for cmd in commands.iter().filter(|c| c.starts_with("dapr ")) {
        let ns = opt(&cmd.split_whitespace().collect::<Vec<_>>(), &["-n"]).concat();
        assert!(ns.is_empty() || ns == namespace, "{cmd}");
    }
    for path in [name("LIVENESS_PATH"), name("READINESS_PATH"), name("METRICS_PATH")] {
        assert!(
            commands.iter().any(|c| c.contains(&format!("localhost:{}{path}", name("APP_PORT")))),
            "guide curls {path}"
        );
    }
}
