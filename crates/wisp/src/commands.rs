//! The client commands: deploy, invoke, ls, describe, rm, logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::client::{encode, Client, DEFAULT_ENDPOINT};
use crate::manifest::{FunctionDef, Manifest};

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// The wisp server.
    #[arg(long, env = "WISP_ENDPOINT", default_value = DEFAULT_ENDPOINT, global = true)]
    endpoint: String,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    /// The function's name.
    name: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The function to deploy. Without it, every function in the manifest is deployed.
    name: Option<String>,
    /// The code folder (default: the current folder).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long)]
    runtime: Option<String>,
    #[arg(long)]
    handler: Option<String>,
    /// Memory in MB.
    #[arg(long)]
    memory: Option<u32>,
    /// Timeout in seconds.
    #[arg(long)]
    timeout: Option<u32>,
    /// An environment variable, KEY=VALUE; repeat for more.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    #[arg(long)]
    description: Option<String>,
    /// The manifest (default: ./wisp.toml when it exists).
    #[arg(long)]
    manifest: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct InvokeArgs {
    name: String,
    /// The event, as JSON.
    #[arg(long, default_value = "{}")]
    payload: String,
    /// Queue the event and return at once.
    #[arg(long)]
    r#async: bool,
    /// Print the invocation's log to stderr.
    #[arg(long)]
    log: bool,
    /// A version ($LATEST or a number).
    #[arg(long)]
    qualifier: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    name: String,
    /// Keep printing new invocations as they happen.
    #[arg(long, short)]
    follow: bool,
    /// How many recent invocations to show.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct TriggersArgs {
    #[command(subcommand)]
    command: TriggerCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Subcommand, Debug)]
enum TriggerCommand {
    /// List triggers (of one function, or all) with their state.
    Ls { name: Option<String> },
    /// The same as ls: each trigger's state, last and next fire.
    Status { name: Option<String> },
    /// Add a trigger to a function.
    Add {
        name: String,
        /// A schedule: rate(5 minutes) or cron(0 12 * * ? *).
        #[arg(long, conflicts_with = "http")]
        schedule: Option<String>,
        /// The schedule's time zone (IANA), UTC by default.
        #[arg(long)]
        timezone: Option<String>,
        /// skip (default) or fire_once: fires missed while the server was down.
        #[arg(long)]
        missed: Option<String>,
        /// A route: "POST /orders/{id}".
        #[arg(long)]
        http: Option<String>,
        /// A queue (name or ARN): an event source mapping from it.
        #[arg(long)]
        queue: Option<String>,
        /// For --queue: records per batch.
        #[arg(long)]
        batch_size: Option<u32>,
        /// A version or alias to invoke.
        #[arg(long)]
        qualifier: Option<String>,
    },
    /// Remove a trigger by its id.
    Rm { id: String },
}

/// A trigger's identity for comparing the manifest with the server: kind, qualifier and
/// configuration without null fields.
/// Makes a function's triggers exactly `defs`: the server keeps the ones that match (so a
/// schedule keeps its fire history), removes the rest, adds what is missing.
fn sync_triggers(
    client: &Client,
    name: &str,
    defs: &[crate::manifest::TriggerDef],
) -> anyhow::Result<()> {
    let mut wanted = Vec::new();
    for def in defs {
        let (kind, config) = def.to_api()?;
        wanted.push(json!({ "Kind": kind, "Qualifier": def.qualifier, "Config": config }));
    }
    let body = serde_json::to_vec(&json!({ "Triggers": wanted }))?;
    let reply = client.call(
        "PUT",
        &format!("/wisp/v1/functions/{}/triggers", encode(name)),
        &[],
        Some(&body),
        None,
    )?;
    if !reply.ok() {
        return Err(reply.error());
    }
    let report = reply.json()?;
    for id in report["Removed"].as_array().into_iter().flatten() {
        println!("  removed trigger {}", id.as_str().unwrap_or("?"));
    }
    for t in report["Created"].as_array().into_iter().flatten() {
        println!(
            "  added {} trigger {}",
            t["Kind"].as_str().unwrap_or("?"),
            t["Id"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// Removes a trigger through the API.
fn delete_trigger(client: &Client, id: &str) -> anyhow::Result<()> {
    let reply = client.call(
        "DELETE",
        &format!("/wisp/v1/triggers/{}", encode(id)),
        &[],
        None,
        None,
    )?;
    if !reply.ok() {
        return Err(reply.error());
    }
    Ok(())
}

/// Creates a trigger through the API; returns its id.
fn create_trigger(
    client: &Client,
    function: &str,
    kind: &str,
    qualifier: Option<&str>,
    config: Value,
) -> anyhow::Result<String> {
    let body =
        json!({ "Kind": kind, "FunctionName": function, "Qualifier": qualifier, "Config": config });
    let created = client
        .call(
            "POST",
            "/wisp/v1/triggers",
            &[],
            Some(&serde_json::to_vec(&body)?),
            None,
        )?
        .json()?;
    Ok(created["Id"].as_str().unwrap_or("?").to_string())
}

fn print_triggers(doc: &Value) {
    println!(
        "{:<14} {:<9} {:<28} {:<34} {:<10} NEXT FIRE",
        "ID", "KIND", "FUNCTION", "WHAT", "STATE"
    );
    for t in doc["Triggers"].as_array().into_iter().flatten() {
        let what = match t["Kind"].as_str() {
            Some("schedule") => t["Config"]["ScheduleExpression"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            Some("sqs") => t["Config"]["EventSourceArn"]
                .as_str()
                .unwrap_or("")
                .rsplit(':')
                .next()
                .unwrap_or("")
                .to_string(),
            Some("http") => format!(
                "{} {}",
                t["Config"]["Method"].as_str().unwrap_or(""),
                t["Config"]["Path"].as_str().unwrap_or("")
            ),
            // Broker connectors: what they consume from.
            _ => {
                let c = &t["Config"];
                let list = |v: &Value| {
                    v.as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default()
                };
                match t["Kind"].as_str() {
                    Some("kafka") | Some("mqtt") => list(&c["Topics"]),
                    Some("nats") => format!(
                        "{} {}",
                        c["Stream"].as_str().unwrap_or(""),
                        c["Subject"].as_str().unwrap_or("")
                    ),
                    Some("rabbitmq") => c["Queue"].as_str().unwrap_or("").to_string(),
                    Some("redis") => c["Stream"].as_str().unwrap_or("").to_string(),
                    _ => String::new(),
                }
            }
        };
        let function = match t["Qualifier"].as_str() {
            Some(q) => format!("{}:{q}", t["FunctionName"].as_str().unwrap_or("")),
            None => t["FunctionName"].as_str().unwrap_or("").to_string(),
        };
        let next = t["Status"]["NextFireMs"]
            .as_i64()
            .map(wisp_core::time::lambda_timestamp)
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<14} {:<9} {:<28} {:<34} {:<10} {next}",
            t["Id"].as_str().unwrap_or(""),
            t["Kind"].as_str().unwrap_or(""),
            function,
            what,
            t["Status"]["State"].as_str().unwrap_or("")
        );
    }
}

/// What each trigger is doing: deliveries, retries, failures and, for a broker
/// connector, whether it is connected and how far behind it is.
fn print_trigger_status(doc: &Value) {
    for t in doc["Triggers"].as_array().into_iter().flatten() {
        let s = &t["Status"];
        let mut line = format!(
            "\n{}: fired {}, retried {}, dead-lettered {}, discarded {}",
            t["Id"].as_str().unwrap_or(""),
            s["Fired"].as_u64().unwrap_or(0),
            s["Retried"].as_u64().unwrap_or(0),
            s["DeadLettered"].as_u64().unwrap_or(0),
            s["Discarded"].as_u64().unwrap_or(0)
        );
        if let Some(c) = s["Connected"].as_bool() {
            line.push_str(if c { ", connected" } else { ", NOT connected" });
        }
        if let Some(lag) = s["Lag"].as_u64() {
            line.push_str(&format!(", lag {lag}"));
        }
        println!("{line}");
        if let Some(e) = s["LastError"].as_str() {
            println!("  last error: {e}");
        }
    }
}

pub fn triggers(args: TriggersArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client.endpoint);
    let status = matches!(args.command, TriggerCommand::Status { .. });
    match args.command {
        TriggerCommand::Ls { name } | TriggerCommand::Status { name } => {
            let path = match name {
                Some(n) => format!("/wisp/v1/triggers?FunctionName={}", encode(&n)),
                None => "/wisp/v1/triggers".to_string(),
            };
            let doc = client.get_json(&path)?;
            print_triggers(&doc);
            if status {
                print_trigger_status(&doc);
            }
        }
        TriggerCommand::Add {
            name,
            schedule,
            timezone,
            missed,
            http,
            queue,
            batch_size,
            qualifier,
        } => {
            let def = crate::manifest::TriggerDef {
                schedule,
                timezone,
                missed,
                http,
                queue,
                batch_size,
                batching_window_s: None,
                report_batch_item_failures: None,
                qualifier: qualifier.clone(),
                kind: None,
                config: None,
            };
            let (kind, config) = def.to_api()?;
            let id = create_trigger(&client, &name, &kind, qualifier.as_deref(), config)?;
            println!("added {kind} trigger {id}");
        }
        TriggerCommand::Rm { id } => {
            delete_trigger(&client, &id)?;
            println!("removed trigger {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One function to deploy, from flags or a manifest.
struct Plan {
    name: String,
    dir: PathBuf,
    runtime: Option<String>,
    handler: Option<String>,
    memory: Option<u32>,
    timeout: Option<u32>,
    env: Option<BTreeMap<String, String>>,
    description: Option<String>,
    /// From a manifest: the triggers the function must have.
    triggers: Option<Vec<crate::manifest::TriggerDef>>,
}

impl Plan {
    /// The configuration fields the plan sets, as CreateFunction and
    /// UpdateFunctionConfiguration name them.
    fn set_configuration(&self, body: &mut Value) {
        if let Some(m) = self.memory {
            body["MemorySize"] = m.into();
        }
        if let Some(t) = self.timeout {
            body["Timeout"] = t.into();
        }
        if let Some(d) = &self.description {
            body["Description"] = d.clone().into();
        }
        if let Some(env) = &self.env {
            body["Environment"] = json!({ "Variables": env });
        }
    }
}

fn from_def(name: &str, def: FunctionDef, base: &Path) -> Plan {
    Plan {
        name: name.to_string(),
        dir: base.join(def.path.unwrap_or_else(|| PathBuf::from("."))),
        runtime: Some(def.runtime),
        handler: def.handler,
        memory: def.memory_mb,
        timeout: def.timeout_s,
        env: Some(def.env),
        description: def.description,
        triggers: def.triggers,
    }
}

fn bar(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

fn deploy_one(client: &Client, plan: Plan) -> anyhow::Result<()> {
    let packing = bar("packing");
    let zip = crate::pack::pack(&plan.dir, &packing)?;
    packing.finish_and_clear();
    let zip_b64 = base64::engine::general_purpose::STANDARD.encode(&zip);
    let path = format!("/2015-03-31/functions/{}", encode(&plan.name));
    let existing = client.call("GET", &path, &[], None, None)?;
    let uploading = bar("uploading");
    let config = if existing.status == 404 {
        // A component (runtime `wasm`) has no handler: its export is the entry point.
        let wasm_handler = (plan.runtime.as_deref() == Some("wasm")).then(String::new);
        let (Some(runtime), Some(handler)) = (
            &plan.runtime,
            plan.handler.as_ref().or(wasm_handler.as_ref()),
        ) else {
            bail!(
                "{} does not exist yet: give --runtime and --handler to create it",
                plan.name
            );
        };
        let mut body = json!({
            "FunctionName": plan.name,
            "Runtime": runtime,
            "Handler": handler,
            "Code": { "ZipFile": zip_b64 },
        });
        plan.set_configuration(&mut body);
        let bytes = serde_json::to_vec(&body)?;
        client
            .call(
                "POST",
                "/2015-03-31/functions",
                &[],
                Some(&bytes),
                Some(&uploading),
            )?
            .json()?
    } else {
        existing.json()?;
        let bytes = serde_json::to_vec(&json!({ "ZipFile": zip_b64 }))?;
        client
            .call(
                "PUT",
                &format!("{path}/code"),
                &[],
                Some(&bytes),
                Some(&uploading),
            )?
            .json()?;
        let mut body = json!({});
        if let Some(r) = &plan.runtime {
            body["Runtime"] = r.clone().into();
        }
        if let Some(h) = &plan.handler {
            body["Handler"] = h.clone().into();
        }
        plan.set_configuration(&mut body);
        let bytes = serde_json::to_vec(&body)?;
        client
            .call(
                "PUT",
                &format!("{path}/configuration"),
                &[],
                Some(&bytes),
                None,
            )?
            .json()?
    };
    uploading.finish_and_clear();
    if let Some(defs) = &plan.triggers {
        sync_triggers(client, &plan.name, defs)?;
    }
    println!(
        "deployed {} ({}, {} bytes, sha256 {})",
        plan.name,
        config["Runtime"].as_str().unwrap_or("?"),
        config["CodeSize"],
        config["CodeSha256"].as_str().unwrap_or("?")
    );
    Ok(())
}

pub fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client.endpoint);
    let manifest_path = args.manifest.clone().or_else(|| {
        let default = PathBuf::from("wisp.toml");
        default.is_file().then_some(default)
    });
    let manifest = manifest_path.as_deref().map(Manifest::load).transpose()?;
    let base = manifest_path
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut env = BTreeMap::new();
    for pair in &args.env {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair}: expected KEY=VALUE"))?;
        env.insert(k.to_string(), v.to_string());
    }
    let plans: Vec<Plan> = match (&args.name, manifest) {
        (None, None) => {
            bail!("give a function name, or run where a wisp.toml is (or pass --manifest)")
        }
        (None, Some(m)) => m
            .functions
            .into_iter()
            .map(|(n, d)| from_def(&n, d, &base))
            .collect(),
        (Some(name), Some(m)) if m.functions.contains_key(name) => {
            let def = m.functions[name].clone();
            vec![from_def(name, def, &base)]
        }
        (Some(name), _) => vec![Plan {
            name: name.clone(),
            dir: args.dir.clone().unwrap_or_else(|| PathBuf::from(".")),
            runtime: args.runtime.clone(),
            handler: args.handler.clone(),
            memory: args.memory,
            timeout: args.timeout,
            env: (!env.is_empty()).then_some(env),
            description: args.description.clone(),
            triggers: None,
        }],
    };
    for plan in plans {
        let name = plan.name.clone();
        deploy_one(&client, plan).with_context(|| format!("deploying {name}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn invoke(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client.endpoint);
    let mut path = format!("/2015-03-31/functions/{}/invocations", encode(&args.name));
    if let Some(q) = &args.qualifier {
        path.push_str(&format!("?Qualifier={}", encode(q)));
    }
    let mut headers = vec![];
    if args.r#async {
        headers.push(("x-amz-invocation-type", "Event"));
    }
    if args.log {
        headers.push(("x-amz-log-type", "Tail"));
    }
    let reply = client.call("POST", &path, &headers, Some(args.payload.as_bytes()), None)?;
    if !reply.ok() {
        return Err(reply.error());
    }
    if args.r#async {
        println!("queued {}", reply.header("x-amzn-requestid").unwrap_or("?"));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(log) = reply.header("x-amz-log-result") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(log)
            .unwrap_or_default();
        eprint!("{}", String::from_utf8_lossy(&decoded));
    }
    println!("{}", String::from_utf8_lossy(&reply.body));
    if reply.header("x-amz-function-error").is_some() {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn ls(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.endpoint);
    let mut marker: Option<String> = None;
    println!(
        "{:<40} {:<16} {:>7} {:>8}  LAST MODIFIED",
        "NAME", "RUNTIME", "MEMORY", "TIMEOUT"
    );
    loop {
        let mut path = "/2015-03-31/functions/?MaxItems=50".to_string();
        if let Some(m) = &marker {
            path.push_str(&format!("&Marker={}", encode(m)));
        }
        let page = client.get_json(&path)?;
        for f in page["Functions"].as_array().into_iter().flatten() {
            println!(
                "{:<40} {:<16} {:>7} {:>8}  {}",
                f["FunctionName"].as_str().unwrap_or(""),
                f["Runtime"].as_str().unwrap_or(""),
                f["MemorySize"],
                f["Timeout"],
                f["LastModified"].as_str().unwrap_or("")
            );
        }
        match page["NextMarker"].as_str() {
            Some(m) => marker = Some(m.to_string()),
            None => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn describe(args: NameArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client.endpoint);
    let doc = client.get_json(&format!("/2015-03-31/functions/{}", encode(&args.name)))?;
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(ExitCode::SUCCESS)
}

pub fn dead_letters(args: NameArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client.endpoint);
    let doc = client.get_json(&format!(
        "/wisp/v1/functions/{}/dead-letters",
        encode(&args.name)
    ))?;
    for d in doc["DeadLetters"].as_array().into_iter().flatten() {
        println!(
            "{}  attempts={}  error={}  payload={}",
            d["RequestId"].as_str().unwrap_or(""),
            d["Attempts"],
            d["Error"].as_str().unwrap_or(""),
            d["Payload"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn redrive(args: NameArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client.endpoint);
    let doc = client
        .call(
            "POST",
            &format!("/wisp/v1/functions/{}/redrive", encode(&args.name)),
            &[],
            None,
            None,
        )?
        .json()?;
    println!("redrove {} dead letters of {}", doc["Redriven"], args.name);
    Ok(ExitCode::SUCCESS)
}

pub fn rm(args: NameArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client.endpoint);
    let reply = client.call(
        "DELETE",
        &format!("/2015-03-31/functions/{}", encode(&args.name)),
        &[],
        None,
        None,
    )?;
    if !reply.ok() {
        return Err(reply.error());
    }
    println!("deleted {}", args.name);
    Ok(ExitCode::SUCCESS)
}

fn print_records(records: &[Value]) -> i64 {
    let mut last = 0;
    for r in records {
        print!("{}", r["Logs"].as_str().unwrap_or(""));
        last = r["Seq"].as_i64().unwrap_or(last);
    }
    last
}

pub fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client.endpoint);
    let base = format!("/wisp/v1/functions/{}/records", encode(&args.name));
    let recent = client.get_json(&format!("{base}?tail={}", args.limit.clamp(1, 1000)))?;
    let mut last = print_records(
        recent["Records"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]),
    );
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let page = client.get_json(&format!("{base}?after={last}&limit=100"))?;
        let records = page["Records"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if !records.is_empty() {
            last = print_records(records);
        }
    }
}
