//! Function URLs: configuration, and the lookup the URL listener does per request.

use std::sync::Arc;

use wisp_core::error::Result;
use wisp_core::Error;
use wisp_store::FunctionUrl;

use crate::control::store_err;
use crate::Engine;

#[derive(Debug, Clone, Default)]
pub struct UrlInput {
    pub auth_type: Option<String>,
    pub cors: Option<serde_json::Value>,
    pub invoke_mode: Option<String>,
}

fn check_auth_type(t: &str) -> Result<()> {
    match t {
        "NONE" | "AWS_IAM" => Ok(()),
        _ => Err(Error::invalid("AuthType must be NONE or AWS_IAM.")),
    }
}

fn check_invoke_mode(m: &str) -> Result<()> {
    match m {
        "BUFFERED" => Ok(()),
        "RESPONSE_STREAM" => Err(Error::invalid(
            "InvokeMode RESPONSE_STREAM is not supported by this server; use BUFFERED.",
        )),
        _ => Err(Error::invalid(
            "InvokeMode must be BUFFERED or RESPONSE_STREAM.",
        )),
    }
}

fn check_cors(cors: &serde_json::Value) -> Result<()> {
    let serde_json::Value::Object(map) = cors else {
        return Err(Error::invalid("Cors must be an object."));
    };
    for (key, value) in map {
        let ok = match key.as_str() {
            "AllowCredentials" => value.is_boolean(),
            "MaxAge" => value.as_u64().is_some_and(|v| v <= 86_400),
            "AllowHeaders" | "AllowMethods" | "AllowOrigins" | "ExposeHeaders" => {
                value.as_array().is_some_and(|a| {
                    a.len() <= 100
                        && a.iter()
                            .all(|v| v.as_str().is_some_and(|s| s.len() <= 1024))
                })
            }
            _ => return Err(Error::invalid(format!("Cors has no field '{key}'."))),
        };
        if !ok {
            return Err(Error::invalid(format!(
                "Cors.{key} has the wrong type or is too long."
            )));
        }
    }
    Ok(())
}

impl Engine {
    pub fn url_of(&self, url: &FunctionUrl) -> String {
        format!(
            "{}/{}/",
            self.cfg.url_base.trim_end_matches('/'),
            url.url_id
        )
    }

    pub fn create_url(
        &self,
        function: &str,
        qualifier: Option<&str>,
        input: UrlInput,
    ) -> Result<FunctionUrl> {
        let (name, q) = self.existing_qualifier(function, qualifier, false)?;
        let auth_type = input
            .auth_type
            .ok_or_else(|| Error::invalid("AuthType is required."))?;
        check_auth_type(&auth_type)?;
        let invoke_mode = input.invoke_mode.unwrap_or_else(|| "BUFFERED".into());
        check_invoke_mode(&invoke_mode)?;
        if let Some(c) = &input.cors {
            check_cors(c)?;
        }
        let now = wisp_core::time::lambda_timestamp(wisp_core::time::now_ms());
        let url = FunctionUrl {
            function: name.clone(),
            qualifier: q,
            url_id: uuid::Uuid::new_v4().simple().to_string(),
            auth_type,
            cors: input.cors,
            invoke_mode,
            created: now.clone(),
            modified: now,
        };
        self.cache.forget_urls();
        if !self.store.create_url(&url).map_err(store_err)? {
            return Err(Error::conflict(format!(
                "Failed to create function url config for [functionArn = {}]. Error message:  FunctionUrlConfig exists for this Lambda function",
                wisp_core::name::function_arn(&self.cfg.region, &name, None)
            )));
        }
        Ok(url)
    }

    pub fn get_url(&self, function: &str, qualifier: Option<&str>) -> Result<FunctionUrl> {
        let (name, q) = self.existing_qualifier(function, qualifier, false)?;
        self.store
            .get_url(&name, &q)
            .map_err(store_err)?
            .ok_or_else(|| Error::not_found("The resource you requested does not exist."))
    }

    pub fn update_url(
        &self,
        function: &str,
        qualifier: Option<&str>,
        input: UrlInput,
    ) -> Result<FunctionUrl> {
        let mut url = self.get_url(function, qualifier)?;
        if let Some(t) = input.auth_type {
            check_auth_type(&t)?;
            url.auth_type = t;
        }
        if let Some(m) = input.invoke_mode {
            check_invoke_mode(&m)?;
            url.invoke_mode = m;
        }
        if let Some(c) = input.cors {
            check_cors(&c)?;
            url.cors = Some(c);
        }
        url.modified = wisp_core::time::lambda_timestamp(wisp_core::time::now_ms());
        self.store.update_url(&url).map_err(store_err)?;
        self.cache.forget_urls();
        Ok(url)
    }

    pub fn delete_url(&self, function: &str, qualifier: Option<&str>) -> Result<()> {
        let (name, q) = self.existing_qualifier(function, qualifier, false)?;
        let deleted = self.store.delete_url(&name, &q).map_err(store_err)?;
        self.cache.forget_urls();
        if !deleted {
            return Err(Error::not_found(
                "The resource you requested does not exist.",
            ));
        }
        Ok(())
    }

    pub fn list_urls(&self, function: &str) -> Result<Vec<FunctionUrl>> {
        let name = wisp_core::parse_function_ref(function)?.name;
        self.latest_row(&name)?;
        self.store.list_urls(&name).map_err(store_err)
    }

    /// The URL config behind a URL id, for the URL listener: from memory after the first
    /// request (URL writes go through the engine, which forgets what it cached).
    pub fn url_by_id(&self, url_id: &str) -> Result<Option<Arc<FunctionUrl>>> {
        if url_id.len() != 32 || !url_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let generation = match self.cache.url(url_id) {
            Ok(url) => return Ok(Some(url)),
            Err(generation) => generation,
        };
        let Some(url) = self.store.url_by_id(url_id).map_err(store_err)? else {
            return Ok(None);
        };
        let url = Arc::new(url);
        self.cache.put_url(url.clone(), generation);
        Ok(Some(url))
    }
}
