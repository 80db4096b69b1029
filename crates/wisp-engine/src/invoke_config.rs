//! Where asynchronous results go: PutFunctionEventInvokeConfig (retries 0–2, maximum event
//! age) and destinations on success and on failure, with Lambda's destination record.

use serde_json::{json, Value};
use wisp_core::error::Result;
use wisp_core::Error;
use wisp_store::AsyncEvent;

use crate::control::store_err;
use crate::Engine;

/// The settings that apply to one async event.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeConfig {
    pub max_retries: u32,
    pub max_age_s: u64,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

impl Default for InvokeConfig {
    fn default() -> Self {
        // Lambda's defaults: two retries, six hours.
        InvokeConfig {
            max_retries: 2,
            max_age_s: 21_600,
            on_success: None,
            on_failure: None,
        }
    }
}

/// A destination: a function (optionally qualified) or a queue, by ARN.
async fn check_destination(engine: &Engine, arn: &str) -> Result<()> {
    if arn.starts_with("arn:aws:lambda:") {
        let fref = wisp_core::parse_function_ref(arn)?;
        engine.latest_row(&fref.name)?;
        return Ok(());
    }
    if arn.starts_with("arn:aws:sqs:") {
        let exists = match engine.queue_sink.get() {
            Some(sink) => sink.exists(arn).await,
            None => false,
        };
        if exists {
            return Ok(());
        }
        return Err(Error::invalid(format!(
            "Destination queue {arn} does not exist."
        )));
    }
    Err(Error::invalid(format!(
        "Destination '{}' is not supported: use a function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME) or a queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME).",
        arn.chars().take(200).collect::<String>()
    )))
}

fn parse(doc: &Value) -> InvokeConfig {
    let d = InvokeConfig::default();
    InvokeConfig {
        max_retries: doc["MaximumRetryAttempts"]
            .as_u64()
            .map_or(d.max_retries, |v| v as u32),
        max_age_s: doc["MaximumEventAgeInSeconds"]
            .as_u64()
            .unwrap_or(d.max_age_s),
        on_success: doc["DestinationConfig"]["OnSuccess"]["Destination"]
            .as_str()
            .map(str::to_string),
        on_failure: doc["DestinationConfig"]["OnFailure"]["Destination"]
            .as_str()
            .map(str::to_string),
    }
}

impl Engine {
    /// Put (replace) or update (merge into) a function's async invocation settings.
    pub async fn put_invoke_config(
        &self,
        function: &str,
        qualifier: Option<&str>,
        input: Value,
        merge: bool,
    ) -> Result<Value> {
        let (name, q) = self.existing_qualifier(function, qualifier, true)?;
        let Value::Object(input) = input else {
            return Err(Error::invalid("The request body must be a JSON object."));
        };
        let mut doc = match (
            merge,
            self.store.get_invoke_config(&name, &q).map_err(store_err)?,
        ) {
            (true, Some(Value::Object(existing))) => existing,
            _ => serde_json::Map::new(),
        };
        for (k, v) in input {
            match k.as_str() {
                "MaximumRetryAttempts" => {
                    if v.as_u64().is_none_or(|n| n > 2) {
                        return Err(Error::invalid("MaximumRetryAttempts must be 0, 1 or 2."));
                    }
                }
                "MaximumEventAgeInSeconds" => {
                    if !v.as_u64().is_some_and(|n| (60..=21_600).contains(&n)) {
                        return Err(Error::invalid(
                            "MaximumEventAgeInSeconds must be between 60 and 21600.",
                        ));
                    }
                }
                "DestinationConfig" => {
                    let Value::Object(dc) = &v else {
                        return Err(Error::invalid("DestinationConfig must be an object."));
                    };
                    for (when, dest) in dc {
                        if when != "OnSuccess" && when != "OnFailure" {
                            return Err(Error::invalid(format!(
                                "DestinationConfig has no field '{when}'."
                            )));
                        }
                        match dest.get("Destination").and_then(Value::as_str) {
                            Some(arn) => check_destination(self, arn).await?,
                            None if dest.as_object().is_some_and(|o| o.is_empty()) => {}
                            None => {
                                return Err(Error::invalid(format!(
                                    "DestinationConfig.{when}.Destination must be an ARN."
                                )))
                            }
                        }
                    }
                }
                other => {
                    return Err(Error::invalid(format!(
                        "Unknown field '{other}' in the event invoke config."
                    )))
                }
            }
            doc.insert(k, v);
        }
        doc.insert(
            "FunctionArn".into(),
            wisp_core::name::function_arn(&self.cfg.region, &name, Some(&q)).into(),
        );
        doc.insert(
            "LastModified".into(),
            json!(wisp_core::time::now_ms() as f64 / 1000.0),
        );
        let doc = Value::Object(doc);
        if !self
            .store
            .put_invoke_config(&name, &q, &doc)
            .map_err(store_err)?
        {
            return Err(Error::not_found(format!("Function not found: {name}")));
        }
        Ok(doc)
    }

    pub fn get_invoke_config(&self, function: &str, qualifier: Option<&str>) -> Result<Value> {
        let (name, q) = self.existing_qualifier(function, qualifier, true)?;
        self.store
            .get_invoke_config(&name, &q)
            .map_err(store_err)?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "The function {name} doesn't have an EventInvokeConfig"
                ))
            })
    }

    pub fn delete_invoke_config(&self, function: &str, qualifier: Option<&str>) -> Result<()> {
        let (name, q) = self.existing_qualifier(function, qualifier, true)?;
        if !self
            .store
            .delete_invoke_config(&name, &q)
            .map_err(store_err)?
        {
            return Err(Error::not_found(format!(
                "The function {name} doesn't have an EventInvokeConfig"
            )));
        }
        Ok(())
    }

    pub fn list_invoke_configs(&self, function: &str) -> Result<Vec<Value>> {
        let name = wisp_core::parse_function_ref(function)?.name;
        self.latest_row(&name)?;
        Ok(self
            .store
            .list_invoke_configs(&name)
            .map_err(store_err)?
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }

    /// The settings for an event sent to `function` with `qualifier`.
    pub(crate) fn invoke_config_for(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> InvokeConfig {
        let q = qualifier.unwrap_or("$LATEST");
        match self.store.get_invoke_config(function, q) {
            Ok(Some(doc)) => parse(&doc),
            _ => InvokeConfig::default(),
        }
    }

    /// The event that carries a destination record to a destination function.
    pub(crate) fn destination_event(
        &self,
        destination: &str,
        record: &Value,
    ) -> Option<AsyncEvent> {
        let fref = wisp_core::parse_function_ref(destination).ok()?;
        let now = wisp_core::time::now_ms();
        Some(AsyncEvent {
            id: 0,
            request_id: uuid::Uuid::new_v4().to_string(),
            function: fref.name,
            qualifier: fref.qualifier.map(|q| q.to_string()),
            payload: record.to_string().into_bytes(),
            attempts: 0,
            due_ms: now,
            enqueued_ms: now,
        })
    }

    /// Dead letters of a function: events that used up their attempts or aged out.
    pub fn dead_letters(&self, function: &str, limit: usize) -> Result<Vec<Value>> {
        let name = wisp_core::parse_function_ref(function)?.name;
        self.latest_row(&name)?;
        let letters = self
            .store
            .dead_letters(&name, limit.clamp(1, 1000))
            .map_err(store_err)?;
        Ok(letters
            .into_iter()
            .map(|(e, error)| {
                json!({
                    "RequestId": e.request_id,
                    "Qualifier": e.qualifier,
                    "Attempts": e.attempts,
                    "EnqueuedMs": e.enqueued_ms,
                    "Error": error,
                    "Payload": serde_json::from_slice::<Value>(&e.payload).unwrap_or(Value::Null),
                })
            })
            .collect())
    }

    /// Sends a function's dead letters back to the queue; returns how many.
    pub fn redrive(&self, function: &str) -> Result<u64> {
        let name = wisp_core::parse_function_ref(function)?.name;
        self.latest_row(&name)?;
        let n = self.store.redrive(&name).map_err(store_err)?;
        self.queue.notify();
        Ok(n)
    }
}
