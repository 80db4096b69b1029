//! `wisp.toml`: a project's functions, parsed strictly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format; only 1 exists.
    pub version: u32,
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionDef>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FunctionDef {
    pub runtime: String,
    pub handler: String,
    /// The code folder, relative to the manifest.
    #[serde(default)]
    pub path: Option<PathBuf>,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    pub description: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Manifest {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let manifest: Manifest = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        if manifest.version != 1 {
            bail!(
                "{}: manifest version {} is not supported; use version = 1",
                path.display(),
                manifest.version
            );
        }
        if manifest.functions.is_empty() {
            bail!("{}: declares no [functions.NAME] table", path.display());
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        toml::from_str::<Manifest>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn strict_manifest() {
        let ok = parse(
            "version = 1\n[functions.a]\nruntime = \"python3.11\"\nhandler = \"app.handler\"\nenv = { X = \"1\" }\n",
        )
        .unwrap();
        assert_eq!(ok.functions["a"].env["X"], "1");
        let err =
            parse("version = 1\n[functions.a]\nruntime = \"x\"\nhandler = \"y\"\nmemroy_mb = 3\n")
                .unwrap_err();
        assert!(err.contains("memroy_mb"), "{err}");
        assert!(parse("[functions.a]\nruntime = \"x\"\nhandler = \"y\"\n").is_err());
    }
}
