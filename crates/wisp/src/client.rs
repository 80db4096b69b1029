//! A small client for wisp's API, used by every CLI command.

use std::io::Read;
use std::time::Duration;

use anyhow::{anyhow, Context};
use indicatif::ProgressBar;
use serde_json::Value;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8790";

pub struct Client {
    agent: ureq::Agent,
    endpoint: String,
    credentials: Option<(String, String)>,
}

/// Finds the key to sign with: `WISP_ACCESS_KEY_ID`/`WISP_SECRET_ACCESS_KEY`, then the
/// root key variables the server also reads, then `credentials.json` in `$WISP_DATA_DIR`
/// or in the nearest `.wisp` folder from here upwards (where `wisp serve` keeps it by
/// default).
fn find_credentials() -> Option<(String, String)> {
    for (id, secret) in [
        ("WISP_ACCESS_KEY_ID", "WISP_SECRET_ACCESS_KEY"),
        ("WISP_ROOT_ACCESS_KEY_ID", "WISP_ROOT_SECRET_ACCESS_KEY"),
    ] {
        if let (Ok(id), Ok(secret)) = (std::env::var(id), std::env::var(secret)) {
            return Some((id, secret));
        }
    }
    let mut files = Vec::new();
    if let Some(dir) = std::env::var_os("WISP_DATA_DIR") {
        files.push(std::path::PathBuf::from(dir).join("credentials.json"));
    }
    if let Ok(cwd) = std::env::current_dir() {
        files.extend(
            cwd.ancestors()
                .map(|d| d.join(".wisp").join("credentials.json")),
        );
    }
    files.into_iter().find_map(|f| {
        let doc: Value = serde_json::from_slice(&std::fs::read(f).ok()?).ok()?;
        let admin = doc["Keys"]
            .as_array()?
            .iter()
            .find(|k| k["Admin"] == true)?;
        Some((
            admin["AccessKeyId"].as_str()?.to_string(),
            admin["SecretAccessKey"].as_str()?.to_string(),
        ))
    })
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Turns an error reply into an error that names the AWS error type and message.
    pub fn error(&self) -> anyhow::Error {
        let kind = self
            .header("x-amzn-errortype")
            .unwrap_or("Error")
            .to_string();
        let message = serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("Message")
                    .or_else(|| v.get("message"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
        let hint = if kind == "MissingAuthenticationTokenException" {
            "\n  hint: no credentials found; set WISP_ACCESS_KEY_ID and WISP_SECRET_ACCESS_KEY, or WISP_DATA_DIR to the server's data dir"
        } else {
            ""
        };
        anyhow!("{kind} (HTTP {}): {message}{hint}", self.status)
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        if !self.ok() {
            return Err(self.error());
        }
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).context("the server sent a reply that is not JSON")
    }
}

/// Counts bytes read into a progress bar.
struct Progress<'a, R> {
    inner: R,
    bar: &'a ProgressBar,
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

impl Client {
    pub fn new(endpoint: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(960)))
            .build()
            .into();
        Client {
            agent,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            credentials: find_credentials(),
        }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        progress: Option<&ProgressBar>,
    ) -> anyhow::Result<Reply> {
        let url = format!("{}{}", self.endpoint, path);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        if let Some((id, secret)) = &self.credentials {
            let uri: ureq::http::Uri = url.parse().context("the endpoint is not a URL")?;
            let host = uri
                .authority()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default();
            let signed_headers = [("host", host.as_str())];
            let request = wisp_auth::SignedRequest {
                method,
                raw_path: uri.path(),
                raw_query: uri.query().unwrap_or(""),
                headers: &signed_headers,
                body: body.unwrap_or(b""),
            };
            let now = time::OffsetDateTime::now_utc();
            for (k, v) in wisp_auth::sign(&request, id, secret, "us-east-1", "lambda", now) {
                builder = builder.header(k, v);
            }
        }
        let result = match body {
            Some(bytes) => {
                let builder = builder.header("content-type", "application/json");
                match progress {
                    Some(bar) => {
                        bar.set_length(bytes.len() as u64);
                        let mut reader = Progress { inner: bytes, bar };
                        let request = builder.body(ureq::SendBody::from_reader(&mut reader))?;
                        self.agent.run(request)
                    }
                    None => self.agent.run(builder.body(bytes)?),
                }
            }
            None => self.agent.run(builder.body(())?),
        };
        let mut response =
            result.with_context(|| format!("could not reach wisp at {}", self.endpoint))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .context("could not read the reply")?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        self.call("GET", path, &[], None, None)?.json()
    }
}

/// Percent-encodes one path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
