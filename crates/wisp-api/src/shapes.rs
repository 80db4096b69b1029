//! Request and response bodies of the Lambda API, spelled as AWS spells them. Requests are
//! strict: an unknown field is an error rather than silently ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use wisp_engine::{CodeInput, Resolved};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Environment {
    pub variables: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct FunctionCode {
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    pub s3_object_version: Option<String>,
    pub image_uri: Option<String>,
    #[serde(rename = "SourceKMSKeyArn")]
    pub source_kms_key_arn: Option<String>,
}

impl FunctionCode {
    pub fn into_input(self) -> CodeInput {
        let external = if self.s3_bucket.is_some() || self.s3_key.is_some() {
            Some("Code.S3Bucket/S3Key".to_string())
        } else if self.image_uri.is_some() {
            Some("Code.ImageUri (container images)".to_string())
        } else {
            None
        };
        CodeInput {
            zip_base64: self.zip_file,
            external,
        }
    }
}

/// Declares a request struct with the fields wisp stores and returns but does not act on
/// (written out rather than `#[serde(flatten)]`ed, which would disable
/// `deny_unknown_fields`), and a method that collects them.
macro_rules! with_opaque_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            pub vpc_config: Option<Value>,
            pub dead_letter_config: Option<Value>,
            #[serde(rename = "KMSKeyArn")]
            pub kms_key_arn: Option<Value>,
            pub tracing_config: Option<Value>,
            pub layers: Option<Value>,
            pub file_system_configs: Option<Value>,
            pub image_config: Option<Value>,
            pub ephemeral_storage: Option<Value>,
            pub snap_start: Option<Value>,
            pub logging_config: Option<Value>,
        }

        impl $name {
            /// The stored-but-unused fields that were present.
            pub fn opaque(&mut self) -> Map<String, Value> {
                let mut map = Map::new();
                for (key, value) in [
                    ("VpcConfig", self.vpc_config.take()),
                    ("DeadLetterConfig", self.dead_letter_config.take()),
                    ("KMSKeyArn", self.kms_key_arn.take()),
                    ("TracingConfig", self.tracing_config.take()),
                    ("Layers", self.layers.take()),
                    ("FileSystemConfigs", self.file_system_configs.take()),
                    ("ImageConfig", self.image_config.take()),
                    ("EphemeralStorage", self.ephemeral_storage.take()),
                    ("SnapStart", self.snap_start.take()),
                    ("LoggingConfig", self.logging_config.take()),
                ] {
                    if let Some(v) = value {
                        map.insert(key.to_string(), v);
                    }
                }
                map
            }
        }
    };
}

with_opaque_fields! {
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct CreateFunction {
    pub function_name: String,
    pub runtime: Option<String>,
    pub role: Option<String>,
    pub handler: Option<String>,
    pub code: Option<FunctionCode>,
    pub description: Option<String>,
    pub timeout: Option<u32>,
    pub memory_size: Option<u32>,
    pub publish: Option<bool>,
    pub environment: Option<Environment>,
    pub package_type: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub architectures: Option<Vec<String>>,
    pub code_signing_config_arn: Option<String>,
}
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct UpdateCode {
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    pub s3_object_version: Option<String>,
    pub image_uri: Option<String>,
    pub publish: Option<bool>,
    pub dry_run: Option<bool>,
    pub revision_id: Option<String>,
    pub architectures: Option<Vec<String>>,
    #[serde(rename = "SourceKMSKeyArn")]
    pub source_kms_key_arn: Option<String>,
}

with_opaque_fields! {
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct UpdateConfiguration {
    pub role: Option<String>,
    pub handler: Option<String>,
    pub description: Option<String>,
    pub timeout: Option<u32>,
    pub memory_size: Option<u32>,
    pub environment: Option<Environment>,
    pub runtime: Option<String>,
    pub revision_id: Option<String>,
}
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PublishVersion {
    pub code_sha256: Option<String>,
    pub description: Option<String>,
    pub revision_id: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RoutingConfig {
    pub additional_version_weights: Option<BTreeMap<String, f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct CreateAlias {
    pub name: String,
    pub function_version: String,
    pub description: Option<String>,
    pub routing_config: Option<RoutingConfig>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct UpdateAlias {
    pub function_version: Option<String>,
    pub description: Option<String>,
    pub routing_config: Option<RoutingConfig>,
    pub revision_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TagResource {
    pub tags: BTreeMap<String, String>,
}

/// The AliasConfiguration document.
pub fn alias(a: &wisp_store::Alias, arn: String) -> Value {
    let mut doc = json!({
        "AliasArn": arn,
        "Name": a.name,
        "FunctionVersion": a.version,
        "Description": a.description,
        "RevisionId": a.revision_id,
    });
    if let Some((v, w)) = a.additional {
        doc["RoutingConfig"] = json!({ "AdditionalVersionWeights": { v.to_string(): w } });
    }
    doc
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PutConcurrency {
    pub reserved_concurrent_executions: u32,
}

/// The FunctionConfiguration document.
pub fn configuration(r: &Resolved, region: &str) -> Value {
    let spec = &r.spec;
    let qualifier = (r.version != "$LATEST").then_some(r.version.as_str());
    let mut doc = json!({
        "FunctionName": spec.name,
        "FunctionArn": wisp_core::name::function_arn(region, &spec.name, qualifier),
        "Runtime": spec.runtime,
        "Role": spec.role,
        "Handler": spec.handler,
        "CodeSize": spec.code_size,
        "Description": spec.description,
        "Timeout": spec.timeout_s,
        "MemorySize": spec.memory_mb,
        "LastModified": wisp_core::time::lambda_timestamp(spec.last_modified_ms),
        "CodeSha256": wisp_engine::control::code_sha256_b64(&spec.code_sha256),
        "Version": r.version,
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": spec.revision_id,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": 512},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": format!("/aws/lambda/{}", spec.name)},
    });
    if !spec.env.is_empty() {
        doc["Environment"] = json!({ "Variables": spec.env });
    }
    if let Value::Object(map) = &mut doc {
        for (k, v) in &spec.extra {
            if k != "Tags" {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    doc
}
