//! Serves the object store alone, for trying it with boto3 or the AWS CLI:
//!
//! ```sh
//! cargo run -p wisp-objects --example serve -- 9100 /tmp/objects [--no-auth] [--events events.jsonl]
//! ```
//!
//! Auth on: sign with access key `AKIDWISPTEST`, secret `wisp-test-secret` (the e2e
//! suite's). `--events FILE` appends every notification (one JSON line:
//! `{"function_arn": ..., "event": ...}`) to FILE.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wisp_objects::{NotifyHook, ObjectNotification, ObjectService, SecretLookup};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,s3s=off".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args
        .first()
        .and_then(|p| p.parse().ok())
        .expect("usage: serve PORT DATA_DIR [--no-auth] [--events FILE]");
    let data_dir = PathBuf::from(
        args.get(1)
            .expect("usage: serve PORT DATA_DIR [--no-auth] [--events FILE]"),
    );
    let no_auth = args.iter().any(|a| a == "--no-auth");
    let events = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);

    let lookup: SecretLookup =
        Arc::new(|id: &str| (id == "AKIDWISPTEST").then(|| "wisp-test-secret".to_string()));
    let sink = events.map(|p| {
        Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .expect("open the events file"),
        )
    });
    let notify: NotifyHook = Arc::new(move |n: ObjectNotification| {
        let line = serde_json::json!({ "function_arn": n.function_arn, "event": n.event });
        match &sink {
            Some(f) => {
                let mut f = f.lock().unwrap();
                let _ = writeln!(f, "{line}");
            }
            None => println!("{line}"),
        }
    });
    let service = ObjectService::new(&data_dir, "us-east-1", lookup, !no_auth, notify)
        .expect("open the store");
    let app = service.http_service();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    eprintln!(
        "serving S3 on http://127.0.0.1:{port} (auth {})",
        if no_auth { "off" } else { "on" }
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .expect("serve");
}
