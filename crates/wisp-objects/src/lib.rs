//! wisp's embedded S3-compatible object storage.
//!
//! [`ObjectService`] serves the S3 REST API (path-style: `http://host/bucket/key`) with
//! [s3s](https://docs.rs/s3s) doing the protocol — XML, headers, SigV4 verification,
//! aws-chunked bodies and their trailing checksums — and this crate doing the storage:
//! metadata in SQLite (`<data_dir>/objects.db`), bodies in files named by generated ids
//! (`<data_dir>/blobs/`), never by keys. When an object is created or removed, the
//! bucket's `LambdaFunctionConfigurations` that match are handed to a hook as
//! [`ObjectNotification`]s carrying AWS's S3 event document.
//!
//! It does not know functions, the engine or the Lambda API: it calls the hook, and the
//! lead routes the notifications.

mod auth;
mod blobs;
pub mod limits;
mod meta;
mod names;
mod notify;
mod s3;

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use s3s::service::{S3Service, S3ServiceBuilder};

pub use auth::{is_s3_request, NO_AUTH_ACCESS_KEY};
pub use names::bucket_name_problem;
pub use notify::{parse_external_notification, ExternalRecord, ObjectNotification};

/// Access key id → secret access key; `None` for a key the server does not know.
pub type SecretLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Receives one notification per matching bucket configuration, after the change is
/// committed. Called on the request's task: it must not block (queue the event).
pub type NotifyHook = Arc<dyn Fn(ObjectNotification) + Send + Sync>;

/// The owner id in ListBuckets, ListParts and event records (`ownerIdentity`).
pub const OWNER_ID: &str = "wisp";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not prepare the object store in {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not open the object store's database {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the region {0:?} is not a valid region name (letters, digits and '-')")]
    Region(String),
    #[error("not an S3 event notification: {0}")]
    InvalidNotification(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The object store, ready to be mounted in an axum router.
pub struct ObjectService {
    service: S3Service,
    internal_secret: Option<String>,
    lookup: SecretLookup,
    region: String,
}

impl ObjectService {
    /// Opens (or creates) the store under `data_dir`, and before returning collects what a
    /// crash may have left: half-written bodies, blobs no row refers to, multipart
    /// uploads older than [`limits::UPLOAD_MAX_AGE_MS`].
    ///
    /// `auth: true` verifies every request's SigV4 (or SigV2) signature against
    /// `secret_lookup`; unsigned requests are refused. `auth: false` accepts anyone,
    /// signed with any key or not at all.
    pub fn new(
        data_dir: &Path,
        region: &str,
        secret_lookup: SecretLookup,
        auth: bool,
        notify: NotifyHook,
    ) -> Result<Self> {
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Error::Region(region.to_string()));
        }
        let io = |source| Error::Io {
            path: data_dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let db_path = data_dir.join("objects.db");
        let db_err = |source| Error::Db {
            path: db_path.clone(),
            source,
        };
        let mut conn = meta::open(&db_path).map_err(db_err)?;
        let blobs = blobs::Blobs::open(data_dir).map_err(io)?;
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let expired =
            meta::expire_uploads(&mut conn, now_ms - limits::UPLOAD_MAX_AGE_MS).map_err(db_err)?;
        let referenced = meta::referenced_blobs(&conn).map_err(db_err)?;
        let swept = blobs.sweep(&referenced).map_err(io)?;
        if expired > 0 || swept > 0 {
            tracing::info!(
                expired_uploads = expired,
                removed_files = swept,
                "object store cleaned up"
            );
        }

        let internal_secret = (!auth).then(auth::internal_secret);
        let backend = s3::Backend::new(conn, blobs, region, notify);
        let mut builder = S3ServiceBuilder::new(backend);
        builder.set_auth(auth::Secrets {
            lookup: Arc::clone(&secret_lookup),
            internal: internal_secret.clone(),
        });
        builder.set_validation(AnyBucketName);
        let mut config = s3s::config::S3Config::default();
        config.xml_max_body_size = limits::XML_BODY_MAX_BYTES;
        builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
            config,
        ))));
        Ok(ObjectService {
            service: builder.build(),
            internal_secret,
            lookup: secret_lookup,
            region: region.to_string(),
        })
    }

    /// The S3 API as an axum router that answers every path (path-style addressing:
    /// `/bucket`, `/bucket/key`, `/` for ListBuckets). Mount it where S3 requests go, e.g.
    /// `Router::new().fallback_service(objects.http_service())` or behind a dispatch on
    /// [`is_s3_request`]. Paths must arrive unchanged (no prefix stripped, no
    /// normalisation). For event records to name the caller's address, serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn http_service(&self) -> axum::Router {
        axum::Router::new().fallback_service(HttpService {
            inner: self.service.clone(),
            no_auth: self.internal_secret.clone().map(|secret| NoAuth {
                secret,
                lookup: Arc::clone(&self.lookup),
                region: self.region.clone(),
            }),
        })
    }
}

/// s3s would refuse a malformed bucket name in any path with a bare `InvalidBucketName`;
/// letting every name through to the storage means CreateBucket can say what is wrong
/// (see [`names`]), and other operations answer `NoSuchBucket`, since no such bucket can
/// exist. Names are only ever compared, never used as paths.
struct AnyBucketName;

impl s3s::validation::NameValidation for AnyBucketName {
    fn validate_bucket_name(&self, name: &str) -> bool {
        !name.is_empty() && name.len() <= 255
    }
}

#[derive(Clone)]
struct NoAuth {
    secret: String,
    lookup: SecretLookup,
    region: String,
}

/// s3s's service behind axum: bodies converted both ways, with auth off the request
/// re-signed first (see [`auth`]), and s3s's transport errors turned into a 500.
#[derive(Clone)]
struct HttpService {
    inner: S3Service,
    no_auth: Option<NoAuth>,
}

impl tower::Service<Request<Body>> for HttpService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let mut inner = self.inner.clone();
        let no_auth = self.no_auth.clone();
        Box::pin(async move {
            if let Some(na) = &no_auth {
                let knows = |k: &str| (na.lookup)(k).is_some();
                if let Err(auth::Refused(why)) = auth::resign(
                    &mut req,
                    &na.secret,
                    &na.region,
                    knows,
                    time::OffsetDateTime::now_utc(),
                ) {
                    return Ok(xml_error(StatusCode::FORBIDDEN, "AccessDenied", why));
                }
            }
            match tower::Service::call(&mut inner, req).await {
                Ok(resp) => Ok(resp.map(Body::new)),
                Err(e) => {
                    tracing::error!(error = ?e, "S3 request failed in transport");
                    Ok(xml_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalError",
                        "We encountered an internal error. Please try again.",
                    ))
                }
            }
        })
    }
}

fn xml_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{escaped}</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(Body::from(body))
        .expect("static response parts")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::to_bytes;
    use tower::ServiceExt;

    use super::*;

    type Seen = Arc<Mutex<Vec<ObjectNotification>>>;

    fn service(dir: &Path, auth: bool) -> (ObjectService, Seen) {
        let seen: Seen = Arc::default();
        let sink = Arc::clone(&seen);
        let lookup: SecretLookup =
            Arc::new(|id: &str| (id == "AKID").then(|| "secret".to_string()));
        let hook: NotifyHook = Arc::new(move |n| sink.lock().unwrap().push(n));
        (
            ObjectService::new(dir, "us-east-1", lookup, auth, hook).unwrap(),
            seen,
        )
    }

    async fn call(
        app: &axum::Router,
        method: &str,
        uri: &str,
        body: &'static [u8],
    ) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "127.0.0.1")
            .header("content-length", body.len())
            .body(Body::from(body))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    const NOTIFICATION: &[u8] = br#"<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <CloudFunctionConfiguration><Id>jpg</Id><CloudFunction>arn:aws:lambda:us-east-1:000000000000:function:thumbs</CloudFunction>
    <Event>s3:ObjectCreated:*</Event>
    <Filter><S3Key><FilterRule><Name>prefix</Name><Value>images/</Value></FilterRule>
      <FilterRule><Name>suffix</Name><Value>.jpg</Value></FilterRule></S3Key></Filter>
  </CloudFunctionConfiguration>
  <CloudFunctionConfiguration><Id>gone</Id><CloudFunction>arn:aws:lambda:us-east-1:000000000000:function:audit</CloudFunction>
    <Event>s3:ObjectRemoved:*</Event></CloudFunctionConfiguration>
</NotificationConfiguration>"#;

    #[tokio::test]
    async fn unsigned_requests_are_refused_with_auth_on() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, _) = service(dir.path(), true);
        let app = svc.http_service();
        let (status, body) = call(&app, "PUT", "/bucket", b"").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("AccessDenied"), "{body}");
        // The internal key that re-signs requests with auth off does not exist with it on.
        let mut req = Request::builder()
            .method("PUT")
            .uri("/bucket")
            .header("host", "127.0.0.1")
            .body(Body::empty())
            .unwrap();
        auth::resign(
            &mut req,
            "guess",
            "us-east-1",
            |_| false,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("InvalidAccessKeyId"));
    }

    #[tokio::test]
    async fn objects_and_notifications_without_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, seen) = service(dir.path(), false);
        let app = svc.http_service();
        assert_eq!(call(&app, "PUT", "/photos", b"").await.0, StatusCode::OK);
        let (status, body) = call(&app, "PUT", "/photos?notification", NOTIFICATION).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, body) = call(&app, "GET", "/photos?notification", b"").await;
        assert!(
            body.contains("function:thumbs") && body.contains("<Name>Prefix</Name>"),
            "{body}"
        );

        assert_eq!(
            call(&app, "PUT", "/photos/images/a%20b.jpg", b"jpeg")
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "PUT", "/photos/images/a.png", b"png").await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "PUT", "/photos/..%2F..%2Fescape", b"x").await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "GET", "/photos/images/a%20b.jpg", b"").await,
            (StatusCode::OK, "jpeg".into())
        );
        assert_eq!(
            call(&app, "GET", "/photos/..%2F..%2Fescape", b"").await.1,
            "x"
        );
        assert!(
            !dir.path().join("escape").exists()
                && !dir.path().parent().unwrap().join("escape").exists()
        );
        let (_, listing) = call(&app, "GET", "/photos?list-type=2&delimiter=/", b"").await;
        assert!(
            listing.contains("<Prefix>images/</Prefix>")
                && listing.contains("<Prefix>../</Prefix>"),
            "{listing}"
        );
        assert_eq!(
            call(&app, "DELETE", "/photos/images/a.png", b"").await.0,
            StatusCode::NO_CONTENT
        );

        let seen = seen.lock().unwrap().clone();
        let fired: Vec<(&str, &str, &str)> = seen
            .iter()
            .map(|n| {
                let r = &n.event["Records"][0];
                (
                    n.function_arn.rsplit(':').next().unwrap(),
                    r["eventName"].as_str().unwrap(),
                    r["s3"]["object"]["key"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            fired,
            vec![
                ("thumbs", "ObjectCreated:Put", "images/a+b.jpg"),
                ("audit", "ObjectRemoved:Delete", "images/a.png"),
            ]
        );
        assert_eq!(seen[0].event["Records"][0]["s3"]["configurationId"], "jpg");
        assert_eq!(
            seen[0].event["Records"][0]["userIdentity"]["principalId"],
            "anonymous"
        );

        // A non-empty bucket stays; an emptied one goes.
        assert_eq!(
            call(&app, "DELETE", "/photos", b"").await.0,
            StatusCode::CONFLICT
        );
    }

    #[tokio::test]
    async fn a_restart_collects_what_a_crash_left() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (svc, _) = service(dir.path(), false);
            let app = svc.http_service();
            assert_eq!(call(&app, "PUT", "/bkt", b"").await.0, StatusCode::OK);
            assert_eq!(call(&app, "PUT", "/bkt/k", b"kept").await.0, StatusCode::OK);
        }
        // A body renamed into place whose commit never happened, and a half-written one.
        let orphan = dir
            .path()
            .join("blobs")
            .join("ab")
            .join(format!("ab{}", "0".repeat(30)));
        std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
        std::fs::write(&orphan, b"orphan").unwrap();
        let partial = dir.path().join("tmp").join("0".repeat(32));
        std::fs::write(&partial, b"partial").unwrap();

        let (svc, _) = service(dir.path(), false);
        assert!(!orphan.exists() && !partial.exists());
        let app = svc.http_service();
        assert_eq!(
            call(&app, "GET", "/bkt/k", b"").await,
            (StatusCode::OK, "kept".into())
        );
    }

    #[test]
    fn bad_regions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let lookup: SecretLookup = Arc::new(|_: &str| None);
        let hook: NotifyHook = Arc::new(|_| {});
        assert!(matches!(
            ObjectService::new(dir.path(), "us east", lookup, true, hook),
            Err(Error::Region(_))
        ));
    }
}
