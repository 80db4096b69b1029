//! The SQS API alone, without authentication, for trying it with boto3 or the AWS CLI:
//!
//! ```sh
//! cargo run -p wisp-queue --example serve -- --listen 127.0.0.1:9324 --data-dir /tmp/q
//! aws --endpoint-url http://127.0.0.1:9324 sqs create-queue --queue-name demo
//! ```
//!
//! It takes `wisp serve`'s `--listen` and `--data-dir` (and ignores its other flags) and
//! answers `GET /wisp/v1/health`, so the end-to-end harness can start it in place of the
//! real server (`WISP_BIN=.../examples/serve`) to run `tests/e2e/test_queues.py`.

use std::path::PathBuf;

use axum::routing::get;
use wisp_queue::{QueueConfig, QueueService};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "wisp_queue=info".into()),
        )
        .init();
    let mut listen = "127.0.0.1:9324".to_string();
    let mut data_dir = PathBuf::from(".wisp-queue");
    let mut args = std::env::args().skip(1).peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().expect("--listen needs ADDR:PORT"),
            "--data-dir" => data_dir = args.next().expect("--data-dir needs a folder").into(),
            "serve" => {}
            // Another flag of `wisp serve`: skip it and its value, if it has one.
            _ => {
                if args.peek().is_some_and(|next| !next.starts_with("--")) {
                    args.next();
                }
            }
        }
    }
    std::fs::create_dir_all(&data_dir).expect("create the data folder");
    let queues = QueueService::start(&data_dir.join("queues.db"), QueueConfig::default())
        .expect("open the queue database");
    let app = wisp_queue::router(queues).route("/wisp/v1/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("bind the listen address");
    tracing::info!("SQS API on http://{listen} (no authentication)");
    axum::serve(listener, app).await.expect("serve");
}
