//! Request authentication (SigV4) as a layer in front of every route but the health
//! check, and the key management routes. With auth off, every request is the admin.

use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use wisp_auth::{AuthError, KeyFile, SignedRequest};
use wisp_core::limits::CODE_REQUEST_MAX_BYTES;
use wisp_core::{Error, ErrorKind};

use crate::error::{read_body, ApiError, ApiResult};

/// The keys in force; `None` when auth is off.
#[derive(Clone)]
pub struct Auth {
    pub keys: Option<Arc<RwLock<KeyFile>>>,
    /// Serve `/metrics` without a signature (Prometheus cannot sign requests).
    pub public_metrics: bool,
}

/// Who sent a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub access_key: String,
    pub admin: bool,
}

/// A request's headers as the verifier reads them. A value that is not visible ASCII
/// cannot take part in a valid signature; it is read as empty.
pub fn header_pairs(headers: &axum::http::HeaderMap) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or("")))
        .collect()
}

fn auth_error(e: AuthError) -> ApiError {
    let kind = match e {
        AuthError::Missing => ErrorKind::MissingAuthenticationToken,
        AuthError::Malformed(_) => ErrorKind::IncompleteSignature,
        AuthError::UnknownKey => ErrorKind::UnrecognizedClient,
        AuthError::Expired(..) | AuthError::Mismatch => ErrorKind::InvalidSignature,
    };
    ApiError(Error::new(kind, e.to_string()))
}

/// Verifies the signature of every request (but the health check) before it reaches a
/// handler. A refused request has no side effect: nothing past this layer runs.
pub async fn layer(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let Some(keys) = auth.keys.clone() else {
        let mut request = request;
        request.extensions_mut().insert(Caller {
            access_key: String::new(),
            admin: true,
        });
        return next.run(request).await;
    };
    let path = request.uri().path();
    if path == "/wisp/v1/health" || (auth.public_metrics && path == "/metrics") {
        return next.run(request).await;
    }
    // Object stores' webhooks (MinIO, Garage, Ceph) cannot sign requests; they send a
    // bearer token, which must be the secret of a key in force.
    if path.starts_with("/wisp/v1/notifications/") {
        let token = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = token.is_some_and(|t| {
            keys.read()
                .unwrap_or_else(|p| p.into_inner())
                .accepts_bearer(t)
        });
        if !ok {
            return auth_error(AuthError::Missing).into_response();
        }
        let mut request = request;
        request.extensions_mut().insert(Caller {
            access_key: String::new(),
            admin: false,
        });
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let body = match read_body(body, CODE_REQUEST_MAX_BYTES, "this").await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let headers = crate::auth::header_pairs(&parts.headers);
    let signed = SignedRequest {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    let verified = {
        let keys = keys.read().unwrap_or_else(|p| p.into_inner());
        wisp_auth::verify(&signed, time::OffsetDateTime::now_utc(), |id| {
            keys.find(id).map(|k| k.secret_access_key.clone())
        })
        .map(|v| {
            let admin = keys.find(&v.access_key).is_some_and(|k| k.admin);
            Caller {
                access_key: v.access_key,
                admin,
            }
        })
    };
    match verified {
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, Body::from(body))).await
        }
        Err(e) => {
            tracing::info!(path = %parts.uri.path(), error = e.aws_type(), "request refused");
            auth_error(e).into_response()
        }
    }
}

fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError(Error::new(
            ErrorKind::AccessDenied,
            "Only the admin key may manage keys.",
        )))
    }
}

fn keys_of(auth: &Auth) -> ApiResult<&Arc<RwLock<KeyFile>>> {
    auth.keys.as_ref().ok_or_else(|| {
        ApiError(Error::invalid(
            "Authentication is off on this server (--no-auth): there are no keys to manage.",
        ))
    })
}

fn key_error(e: wisp_auth::keys::KeyError) -> ApiError {
    tracing::error!(error = %e, "key file failure");
    ApiError(Error::service(
        "Could not update the key file; see the server log.",
    ))
}

async fn list_keys(
    State(auth): State<Auth>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    require_admin(&caller)?;
    let keys = keys_of(&auth)?.read().unwrap_or_else(|p| p.into_inner());
    let listed: Vec<Value> = keys
        .list()
        .iter()
        .map(|k| json!({ "AccessKeyId": k.access_key_id, "Created": k.created }))
        .collect();
    Ok(Json(json!({ "Keys": listed })))
}

async fn create_key(
    State(auth): State<Auth>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    require_admin(&caller)?;
    let key = keys_of(&auth)?
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .create()
        .map_err(key_error)?;
    let doc = json!({ "AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key, "Created": key.created });
    Ok((StatusCode::CREATED, Json(doc)).into_response())
}

async fn revoke_key(
    State(auth): State<Auth>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    let revoked = keys_of(&auth)?
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .revoke(&id)
        .map_err(key_error)?;
    if !revoked {
        return Err(ApiError(Error::not_found(format!(
            "No revocable key {id}."
        ))));
    }
    Ok(StatusCode::NO_CONTENT)
}

pub fn routes() -> Router<Auth> {
    Router::new()
        .route("/wisp/v1/keys", get(list_keys).post(create_key))
        .route("/wisp/v1/keys/{id}", delete(revoke_key))
}
