//! The control plane: create, read, update and delete functions and versions, and their
//! reserved concurrency. Every change is validated in full before anything is stored, and
//! stored in one transaction, so a refused request leaves nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use wisp_core::error::Result;
use wisp_core::function::{validate_description, validate_env, validate_memory, validate_timeout};
use wisp_core::limits::*;
use wisp_core::name::validate_name;
use wisp_core::{Error, ErrorKind, FunctionSpec, Qualifier, RuntimeKind};
use wisp_store::{FunctionRow, FunctionUrl, StoreError};

use crate::Engine;

/// CreateFunction's input, already decoded from the wire.
#[derive(Debug, Clone, Default)]
pub struct CreateInput {
    pub name: String,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub role: Option<String>,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    pub env: Option<BTreeMap<String, String>>,
    pub description: Option<String>,
    pub code: CodeInput,
    pub publish: bool,
    pub tags: Option<BTreeMap<String, String>>,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Where a package comes from. Only inline zips are served by the embedded store.
#[derive(Debug, Clone, Default)]
pub struct CodeInput {
    /// The zip, base64 as sent.
    pub zip_base64: Option<String>,
    /// Set when the caller named an S3 object or an image instead.
    pub external: Option<String>,
}

/// UpdateFunctionConfiguration's input: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ConfigInput {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub role: Option<String>,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    pub env: Option<BTreeMap<String, String>>,
    pub description: Option<String>,
    pub revision_id: Option<String>,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A function version resolved for an invocation or a read.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub spec: Arc<FunctionSpec>,
    /// `$LATEST` or the version number.
    pub version: String,
    pub reserved_concurrency: Option<u32>,
    /// The alias the caller went through, if any.
    pub alias: Option<String>,
}

/// Recently resolved `$LATEST` rows and function URLs, so the invoke path does not read
/// the store. Every write through the engine invalidates its entry; a change to any
/// function or URL forgets every cached URL (those writes are rare, and a URL's function
/// being deleted removes the URL with it).
#[derive(Default)]
pub struct SpecCache {
    latest: RwLock<HashMap<String, Arc<FunctionRow>>>,
    /// URLs by id, and a generation that each forgetting bumps: a lookup that read the
    /// store before a write does not put back what the write changed.
    urls: RwLock<(u64, HashMap<String, Arc<FunctionUrl>>)>,
}

/// Past this many entries a cache map is emptied rather than grown.
const CACHE_MAX: usize = 10_000;

impl SpecCache {
    fn get(&self, name: &str) -> Option<Arc<FunctionRow>> {
        self.latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
    fn put(&self, name: &str, row: Arc<FunctionRow>) {
        let mut map = self.latest.write().unwrap_or_else(|p| p.into_inner());
        // Bounded: forget everything rather than grow past the bound.
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(name.to_string(), row);
    }
    fn invalidate(&self, name: &str) {
        self.latest
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.forget_urls();
    }
    /// The cached URL, or the generation to hand to `put_url` after reading the store.
    pub(crate) fn url(&self, url_id: &str) -> Result<Arc<FunctionUrl>, u64> {
        let urls = self.urls.read().unwrap_or_else(|p| p.into_inner());
        urls.1.get(url_id).cloned().ok_or(urls.0)
    }
    pub(crate) fn put_url(&self, url: Arc<FunctionUrl>, generation: u64) {
        let mut urls = self.urls.write().unwrap_or_else(|p| p.into_inner());
        if urls.0 != generation {
            return;
        }
        if urls.1.len() >= CACHE_MAX {
            urls.1.clear();
        }
        urls.1.insert(url.url_id.clone(), url);
    }
    pub(crate) fn forget_urls(&self) {
        let mut urls = self.urls.write().unwrap_or_else(|p| p.into_inner());
        urls.0 += 1;
        urls.1.clear();
    }
}

pub(crate) fn store_err(e: StoreError) -> Error {
    match e {
        StoreError::Package(p) => Error::invalid(p.to_string()),
        other => {
            tracing::error!(error = %other, "store failure");
            Error::service("The server could not complete the request; see its log.")
        }
    }
}

fn not_found(name: &str, region: &str) -> Error {
    Error::not_found(format!(
        "Function not found: {}",
        wisp_core::name::function_arn(region, name, None)
    ))
}

fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Engine {
    fn check_runtime(&self, runtime: &str, handler: &str) -> Result<()> {
        let kind = RuntimeKind::parse(runtime).map_err(|e| {
            Error::invalid(format!(
                "{} Available runtimes on this server: {}.",
                e.message,
                self.interpreters.available().join(", ")
            ))
        })?;
        self.interpreters.interpreter(kind, runtime)?;
        kind.validate_handler(handler)
    }

    /// Decodes, validates and stores a package; returns its sha256 (hex) and size.
    async fn store_package(&self, code: &CodeInput, runtime: &str) -> Result<(String, u64)> {
        if let Some(external) = &code.external {
            return Err(Error::invalid(format!(
                "{external} is not supported by this server: send the package inline as Code.ZipFile."
            )));
        }
        let Some(b64) = &code.zip_base64 else {
            return Err(Error::invalid("Code.ZipFile is required."));
        };
        if b64.len() > ZIP_MAX_BYTES.div_ceil(3) * 4 + 4 {
            return Err(Error::new(
                ErrorKind::RequestTooLarge,
                format!("Zipped package is larger than {ZIP_MAX_BYTES} bytes."),
            ));
        }
        let zip = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| Error::invalid("Code.ZipFile is not valid base64."))?;
        let wasm = RuntimeKind::parse(runtime)? == RuntimeKind::Wasm;
        if wasm && !zip.starts_with(b"\0asm") && !zip.starts_with(b"PK") {
            return Err(Error::invalid(
                "The package is not WebAssembly: for Runtime wasm, Code.ZipFile holds a WebAssembly component (a .wasm file, starting with \\0asm) or a zip that holds exactly one.",
            ));
        }
        let size = zip.len() as u64;
        let blobs = self.blobs.clone();
        let sha = tokio::task::spawn_blocking(move || blobs.put_package(&zip))
            .await
            .map_err(|e| Error::service(e.to_string()))?
            .map_err(store_err)?;
        if wasm {
            // Compiled and checked now, so a bad component is refused at deploy time and
            // no invocation pays for compiling. A refused package is collected with the
            // other unreferenced ones.
            let code_dir = self.blobs.code_dir(&sha).map_err(store_err)?;
            if let Err(message) = self.dispatcher.prepare(runtime, &sha, code_dir).await {
                self.collect_garbage();
                return Err(Error::invalid(message));
            }
        }
        if RuntimeKind::parse(runtime)? == RuntimeKind::Provided {
            let bootstrap = self
                .blobs
                .code_dir(&sha)
                .map_err(store_err)?
                .join("bootstrap");
            if bootstrap.is_file() {
                // Zips made by tools that drop modes are common; Lambda would fail at
                // init, wisp makes the entry point runnable.
                let _ = wisp_store::package::make_executable(&bootstrap);
            }
        }
        Ok((sha, size))
    }

    pub async fn create_function(&self, input: CreateInput) -> Result<Resolved> {
        // Held until the function row commits, so garbage collection cannot remove the
        // package in between.
        let _packages = self.gc_lock.read().await;
        validate_name(&input.name)?;
        let runtime = input
            .runtime
            .ok_or_else(|| Error::invalid("Runtime is required for a Zip package."))?;
        let handler = match input.handler {
            Some(h) => h,
            // A component's entry point is its wasi:http/incoming-handler export.
            None if RuntimeKind::parse(&runtime).ok() == Some(RuntimeKind::Wasm) => String::new(),
            None => return Err(Error::invalid("Handler is required for a Zip package.")),
        };
        self.check_runtime(&runtime, &handler)?;
        let memory_mb = input.memory_mb.unwrap_or(MEMORY_DEFAULT_MB);
        validate_memory(memory_mb)?;
        let timeout_s = input.timeout_s.unwrap_or(TIMEOUT_DEFAULT_S);
        validate_timeout(timeout_s)?;
        let env = input.env.unwrap_or_default();
        validate_env(&env)?;
        self.dispatcher.check_config(&runtime, &env)?;
        let description = input.description.unwrap_or_default();
        validate_description(&description)?;
        for (k, v) in input.tags.iter().flatten() {
            crate::aliases::validate_tag(k, v)?;
        }
        if self
            .store
            .get_function(&input.name)
            .map_err(store_err)?
            .is_some()
        {
            return Err(Error::conflict(format!(
                "Function already exist: {}",
                input.name
            )));
        }
        let (code_sha256, code_size) = self.store_package(&input.code, &runtime).await?;
        let spec = FunctionSpec {
            name: input.name.clone(),
            runtime,
            handler,
            memory_mb,
            timeout_s,
            env,
            description,
            role: input.role.unwrap_or_default(),
            code_sha256,
            code_size,
            last_modified_ms: wisp_core::time::now_ms(),
            revision_id: new_revision(),
            extra: input.extra,
        };
        if !self
            .store
            .create_function(&spec, input.publish)
            .map_err(store_err)?
        {
            return Err(Error::conflict(format!(
                "Function already exist: {}",
                input.name
            )));
        }
        self.cache.invalidate(&spec.name);
        if let Some(tags) = &input.tags {
            self.set_initial_tags(&spec.name, tags)?;
        }
        Ok(Resolved {
            spec: Arc::new(spec),
            version: if input.publish {
                "1".into()
            } else {
                "$LATEST".into()
            },
            reserved_concurrency: None,
            alias: None,
        })
    }

    pub(crate) fn latest_row(&self, name: &str) -> Result<Arc<FunctionRow>> {
        if let Some(row) = self.cache.get(name) {
            return Ok(row);
        }
        let row = self
            .store
            .get_function(name)
            .map_err(store_err)?
            .ok_or_else(|| not_found(name, &self.cfg.region))?;
        let row = Arc::new(row);
        self.cache.put(name, row.clone());
        Ok(row)
    }

    /// The function and qualifier (`$LATEST`, a version, an alias) that a per-qualifier
    /// setting (a function URL, an event invoke config) names, both checked to exist.
    /// Function URLs cannot be on versions (as on AWS): `allow_versions` is false for them.
    pub(crate) fn existing_qualifier(
        &self,
        function: &str,
        qualifier: Option<&str>,
        allow_versions: bool,
    ) -> Result<(String, String)> {
        let fref = wisp_core::parse_function_ref(function)?;
        let q = fref
            .qualifier
            .or(qualifier.map(Qualifier::parse).transpose()?);
        self.latest_row(&fref.name)?;
        let q = match q {
            None | Some(Qualifier::Latest) => "$LATEST".to_string(),
            Some(Qualifier::Version(_)) if !allow_versions => {
                return Err(Error::invalid(
                    "A function URL's qualifier must be $LATEST or an alias, not a version.",
                ))
            }
            Some(Qualifier::Version(v)) => {
                self.resolve(&fref.name, Some(&v.to_string()))?;
                v.to_string()
            }
            Some(Qualifier::Alias(a)) => {
                self.get_alias(&fref.name, &a)?;
                a
            }
        };
        Ok((fref.name, q))
    }

    /// Resolves `name[:qualifier]` (or an ARN) with an optional separate qualifier, as
    /// Lambda does for its `Qualifier` parameter.
    pub fn resolve(&self, function: &str, qualifier: Option<&str>) -> Result<Resolved> {
        let fref = wisp_core::parse_function_ref(function)?;
        let separate = qualifier.map(Qualifier::parse).transpose()?;
        let qualifier = match (fref.qualifier, separate) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::invalid(
                    "The derived qualifier from the function name does not match the specified qualifier.",
                ))
            }
            (a, b) => a.or(b),
        };
        let row = self.latest_row(&fref.name)?;
        match qualifier {
            None | Some(Qualifier::Latest) => Ok(Resolved {
                spec: Arc::new(row.latest.clone()),
                version: "$LATEST".into(),
                reserved_concurrency: row.reserved_concurrency,
                alias: None,
            }),
            Some(Qualifier::Version(v)) => {
                let spec = self
                    .store
                    .get_version(&fref.name, v)
                    .map_err(store_err)?
                    .ok_or_else(|| {
                        Error::not_found(format!(
                            "Function not found: {}",
                            wisp_core::name::function_arn(
                                &self.cfg.region,
                                &fref.name,
                                Some(&v.to_string())
                            )
                        ))
                    })?;
                Ok(Resolved {
                    spec: Arc::new(spec),
                    version: v.to_string(),
                    reserved_concurrency: row.reserved_concurrency,
                    alias: None,
                })
            }
            Some(Qualifier::Alias(a)) => self.resolve_alias(&fref.name, &a),
        }
    }

    /// Functions after `marker`, and the marker of the next page.
    pub fn list_functions(
        &self,
        marker: Option<&str>,
        max_items: Option<usize>,
    ) -> Result<(Vec<FunctionSpec>, Option<String>)> {
        let limit = max_items.unwrap_or(LIST_DEFAULT_ITEMS);
        if limit == 0 || limit > LIST_MAX_ITEMS {
            return Err(Error::invalid(format!(
                "MaxItems must be between 1 and {LIST_MAX_ITEMS}."
            )));
        }
        let mut rows = self
            .store
            .list_functions(marker, limit + 1)
            .map_err(store_err)?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| r.latest.name.clone())
        } else {
            None
        };
        Ok((rows.into_iter().map(|r| r.latest).collect(), next))
    }

    fn check_revision(current: &FunctionSpec, expected: Option<&str>) -> Result<()> {
        match expected {
            Some(rev) if rev != current.revision_id => Err(Error::new(
                ErrorKind::PreconditionFailed,
                "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
            )),
            _ => Ok(()),
        }
    }

    fn commit_update(&self, spec: FunctionSpec, previous_revision: &str) -> Result<()> {
        if !self
            .store
            .update_function(&spec, previous_revision)
            .map_err(store_err)?
        {
            self.cache.invalidate(&spec.name);
            return Err(Error::conflict(
                "The operation cannot be performed at this time. The function was changed by another request; retry.",
            ));
        }
        self.cache.invalidate(&spec.name);
        self.dispatcher
            .retire(&spec.name, "$LATEST", &spec.revision_id);
        self.collect_garbage();
        Ok(())
    }

    pub async fn update_code(
        &self,
        function: &str,
        code: CodeInput,
        publish: bool,
        revision_id: Option<&str>,
    ) -> Result<Resolved> {
        let _packages = self.gc_lock.read().await;
        let name = wisp_core::parse_function_ref(function)?.name;
        let row = self.latest_row(&name)?;
        Self::check_revision(&row.latest, revision_id)?;
        let (code_sha256, code_size) = self.store_package(&code, &row.latest.runtime).await?;
        let mut spec = row.latest.clone();
        spec.code_sha256 = code_sha256;
        spec.code_size = code_size;
        spec.last_modified_ms = wisp_core::time::now_ms();
        spec.revision_id = new_revision();
        self.commit_update(spec, &row.latest.revision_id)?;
        drop(_packages);
        if publish {
            return self.publish_version(&name, None, None, None);
        }
        self.resolve(&name, None)
    }

    pub async fn update_configuration(
        &self,
        function: &str,
        input: ConfigInput,
    ) -> Result<Resolved> {
        let name = wisp_core::parse_function_ref(function)?.name;
        let row = self.latest_row(&name)?;
        Self::check_revision(&row.latest, input.revision_id.as_deref())?;
        let mut spec = row.latest.clone();
        if let Some(r) = input.runtime {
            spec.runtime = r;
        }
        if let Some(h) = input.handler {
            spec.handler = h;
        }
        self.check_runtime(&spec.runtime, &spec.handler)?;
        let to_wasm = RuntimeKind::parse(&spec.runtime).ok() == Some(RuntimeKind::Wasm)
            && RuntimeKind::parse(&row.latest.runtime).ok() != Some(RuntimeKind::Wasm);
        if to_wasm {
            // The package was stored for another runtime: it must be a component, checked
            // and compiled now, as at a deploy with Runtime wasm.
            let code_dir = self.blobs.code_dir(&spec.code_sha256).map_err(store_err)?;
            self.dispatcher
                .prepare(&spec.runtime, &spec.code_sha256, code_dir)
                .await
                .map_err(Error::invalid)?;
        }
        if let Some(m) = input.memory_mb {
            validate_memory(m)?;
            spec.memory_mb = m;
        }
        if let Some(t) = input.timeout_s {
            validate_timeout(t)?;
            spec.timeout_s = t;
        }
        if let Some(env) = input.env {
            validate_env(&env)?;
            spec.env = env;
        }
        self.dispatcher.check_config(&spec.runtime, &spec.env)?;
        if let Some(d) = input.description {
            validate_description(&d)?;
            spec.description = d;
        }
        if let Some(r) = input.role {
            spec.role = r;
        }
        spec.extra.extend(input.extra);
        spec.last_modified_ms = wisp_core::time::now_ms();
        spec.revision_id = new_revision();
        self.commit_update(spec, &row.latest.revision_id)?;
        self.resolve(&name, None)
    }

    pub fn publish_version(
        &self,
        function: &str,
        code_sha256: Option<&str>,
        revision_id: Option<&str>,
        description: Option<&str>,
    ) -> Result<Resolved> {
        if let Some(d) = description {
            validate_description(d)?;
        }
        let name = wisp_core::parse_function_ref(function)?.name;
        let row = self.latest_row(&name)?;
        Self::check_revision(&row.latest, revision_id)?;
        if let Some(expected) = code_sha256 {
            if expected != crate::control::code_sha256_b64(&row.latest.code_sha256) {
                return Err(Error::invalid(
                    "CodeSHA256 does not match the code of $LATEST: the code changed since you read it.",
                ));
            }
        }
        let (version, spec) = self
            .store
            .publish_version(&name, description)
            .map_err(store_err)?
            .ok_or_else(|| not_found(&name, &self.cfg.region))?;
        Ok(Resolved {
            spec: Arc::new(spec),
            version: version.to_string(),
            reserved_concurrency: row.reserved_concurrency,
            alias: None,
        })
    }

    pub fn list_versions(&self, function: &str) -> Result<Vec<Resolved>> {
        let name = wisp_core::parse_function_ref(function)?.name;
        let row = self.latest_row(&name)?;
        let mut out = vec![Resolved {
            spec: Arc::new(row.latest.clone()),
            version: "$LATEST".into(),
            reserved_concurrency: row.reserved_concurrency,
            alias: None,
        }];
        for (v, spec) in self.store.list_versions(&name).map_err(store_err)? {
            out.push(Resolved {
                spec: Arc::new(spec),
                version: v.to_string(),
                reserved_concurrency: row.reserved_concurrency,
                alias: None,
            });
        }
        Ok(out)
    }

    pub fn delete_function(&self, function: &str, qualifier: Option<&str>) -> Result<()> {
        let fref = wisp_core::parse_function_ref(function)?;
        let qualifier = fref
            .qualifier
            .or(qualifier.map(Qualifier::parse).transpose()?);
        match qualifier {
            None => {
                if !self.store.delete_function(&fref.name).map_err(store_err)? {
                    return Err(not_found(&fref.name, &self.cfg.region));
                }
                self.cache.invalidate(&fref.name);
                self.dispatcher.retire(&fref.name, "", "");
            }
            Some(Qualifier::Latest) => {
                return Err(Error::invalid(
                    "$LATEST version cannot be deleted without deleting the function.",
                ))
            }
            Some(Qualifier::Version(v)) => {
                self.check_version_unreferenced(&fref.name, v)?;
                if !self
                    .store
                    .delete_version(&fref.name, v)
                    .map_err(store_err)?
                {
                    return Err(not_found(&fref.name, &self.cfg.region));
                }
                self.dispatcher.retire(&fref.name, &v.to_string(), "");
            }
            Some(Qualifier::Alias(_)) => {
                return Err(Error::invalid(
                    "Deleting an alias is done with DeleteAlias.",
                ))
            }
        }
        self.collect_garbage();
        Ok(())
    }

    pub fn put_concurrency(&self, function: &str, reserved: u32) -> Result<u32> {
        let name = wisp_core::parse_function_ref(function)?.name;
        if reserved > self.cfg.max_concurrency {
            return Err(Error::invalid(format!(
                "Specified ReservedConcurrentExecutions for function exceeds the server's concurrency limit of {}.",
                self.cfg.max_concurrency
            )));
        }
        if !self
            .store
            .set_reserved_concurrency(&name, Some(reserved))
            .map_err(store_err)?
        {
            return Err(not_found(&name, &self.cfg.region));
        }
        self.cache.invalidate(&name);
        Ok(reserved)
    }

    pub fn get_concurrency(&self, function: &str) -> Result<Option<u32>> {
        let name = wisp_core::parse_function_ref(function)?.name;
        Ok(self.latest_row(&name)?.reserved_concurrency)
    }

    pub fn delete_concurrency(&self, function: &str) -> Result<()> {
        let name = wisp_core::parse_function_ref(function)?.name;
        if !self
            .store
            .set_reserved_concurrency(&name, None)
            .map_err(store_err)?
        {
            return Err(not_found(&name, &self.cfg.region));
        }
        self.cache.invalidate(&name);
        Ok(())
    }

    /// (function count, total code size in bytes, concurrency not reserved by any function).
    pub fn usage(&self) -> Result<(u64, u64, u64)> {
        let (count, size, reserved) = self.store.usage().map_err(store_err)?;
        Ok((
            count,
            size,
            u64::from(self.cfg.max_concurrency).saturating_sub(reserved),
        ))
    }

    /// The package of a function version, as uploaded.
    pub fn read_package(&self, sha256: &str) -> Result<Vec<u8>> {
        self.blobs
            .read_package(sha256)
            .map_err(|_| Error::not_found("No such code package."))
    }

    pub fn records(
        &self,
        function: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<wisp_core::InvocationRecord>> {
        let name = wisp_core::parse_function_ref(function)?.name;
        self.store
            .records(&name, after_seq, limit.clamp(1, 1000))
            .map_err(store_err)
    }

    pub fn recent_records(
        &self,
        function: &str,
        limit: usize,
    ) -> Result<Vec<wisp_core::InvocationRecord>> {
        let name = wisp_core::parse_function_ref(function)?.name;
        self.store
            .recent_records(&name, limit.clamp(1, 1000))
            .map_err(store_err)
    }

    /// Removes packages no function or version refers to any more, in the background.
    pub fn collect_garbage(&self) {
        let store = self.store.clone();
        let blobs = self.blobs.clone();
        let lock = self.gc_lock.clone();
        let dispatcher = self.dispatcher.clone();
        tokio::spawn(async move {
            let _exclusive = lock.write().await;
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(keep) = store.referenced_code() {
                    if let Err(e) = blobs.collect_garbage(&keep) {
                        tracing::warn!(error = %e, "artifact garbage collection failed");
                    }
                    dispatcher.collect_garbage(&keep);
                }
            })
            .await;
        });
    }
}

/// Lambda reports `CodeSha256` as base64 of the digest; wisp keys packages by hex.
pub fn code_sha256_b64(hex_digest: &str) -> String {
    hex::decode(hex_digest)
        .map(|d| base64::engine::general_purpose::STANDARD.encode(d))
        .unwrap_or_default()
}
