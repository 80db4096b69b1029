//! One executor per kind of runtime behind the dispatcher: components (`wasm`) go to the
//! WebAssembly runtime, everything else to the process runtime. The dispatcher, the pool
//! and the records do not know which one ran an instance.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use wisp_core::{FunctionSpec, RuntimeKind};
use wisp_runtime::{Executor, Instance, StartError};

pub struct RuntimeRouter {
    process: Arc<dyn Executor>,
    wasm: Arc<dyn Executor>,
}

impl RuntimeRouter {
    pub fn new(process: Arc<dyn Executor>, wasm: Arc<dyn Executor>) -> RuntimeRouter {
        RuntimeRouter { process, wasm }
    }

    fn for_runtime(&self, runtime: &str) -> &Arc<dyn Executor> {
        if RuntimeKind::parse(runtime).ok() == Some(RuntimeKind::Wasm) {
            &self.wasm
        } else {
            &self.process
        }
    }
}

impl Executor for RuntimeRouter {
    fn start(
        &self,
        spec: &FunctionSpec,
        version: &str,
        code_dir: PathBuf,
    ) -> BoxFuture<'_, Result<Box<dyn Instance>, StartError>> {
        self.for_runtime(&spec.runtime)
            .start(spec, version, code_dir)
    }

    fn takes_http(&self, runtime: &str) -> bool {
        self.for_runtime(runtime).takes_http(runtime)
    }

    fn check_config(
        &self,
        runtime: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        self.for_runtime(runtime).check_config(runtime, env)
    }

    fn collect_garbage(&self, referenced: &[String]) {
        self.process.collect_garbage(referenced);
        self.wasm.collect_garbage(referenced);
    }

    fn prepare(
        &self,
        runtime: &str,
        code_sha256: &str,
        code_dir: PathBuf,
    ) -> BoxFuture<'_, Result<(), String>> {
        self.for_runtime(runtime)
            .prepare(runtime, code_sha256, code_dir)
    }
}
