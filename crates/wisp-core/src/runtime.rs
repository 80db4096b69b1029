//! Runtime identifiers as Lambda spells them, reduced to what wisp must start.

use crate::error::{Error, Result};

/// The language runtime a function declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    /// `python3.N`: wisp's own bootstrap on a CPython 3.N found on the machine.
    Python { minor: u32 },
    /// `nodejsN.x`: wisp's own bootstrap on a Node.js N found on the machine.
    Node { major: u32 },
    /// `provided`, `provided.al2`, `provided.al2023`: the package's own `bootstrap`.
    Provided,
    /// `wasm`: a WebAssembly component of the `wasi:http/proxy` world, run by wasmtime
    /// inside the server. The handler is not used.
    Wasm,
}

impl RuntimeKind {
    /// Parses a Lambda runtime identifier. Whether this machine can run it is a separate
    /// question that the process runtime answers.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(minor) = s.strip_prefix("python3.") {
            if let Ok(minor) = minor.parse::<u32>() {
                return Ok(RuntimeKind::Python { minor });
            }
        }
        if let Some(major) = s.strip_prefix("nodejs").and_then(|r| r.strip_suffix(".x")) {
            if let Ok(major) = major.parse::<u32>() {
                return Ok(RuntimeKind::Node { major });
            }
        }
        if matches!(s, "provided" | "provided.al2" | "provided.al2023") {
            return Ok(RuntimeKind::Provided);
        }
        if s == "wasm" {
            return Ok(RuntimeKind::Wasm);
        }
        Err(Error::invalid(format!(
            "Value '{}' at 'runtime' is not a runtime wisp knows: use python3.N, nodejsN.x, provided, provided.al2023 or wasm.",
            s.chars().take(64).collect::<String>()
        )))
    }

    /// Checks the handler string's shape for this runtime.
    pub fn validate_handler(self, handler: &str) -> Result<()> {
        if self == RuntimeKind::Wasm {
            // A component's entry point is its wasi:http/incoming-handler export.
            return Ok(());
        }
        let bad = |why: &str| {
            Err(Error::invalid(format!(
                "Invalid handler '{}': {why}",
                handler.chars().take(128).collect::<String>()
            )))
        };
        if handler.is_empty() || handler.chars().count() > crate::limits::HANDLER_MAX_CHARS {
            return bad("a handler is 1 to 128 characters.");
        }
        if handler.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("a handler has no whitespace.");
        }
        match self {
            RuntimeKind::Provided | RuntimeKind::Wasm => Ok(()),
            RuntimeKind::Python { .. } | RuntimeKind::Node { .. } => {
                let Some((module, func)) = handler.rsplit_once('.') else {
                    return bad("expected 'module.function', such as 'app.handler'.");
                };
                if module.is_empty() || func.is_empty() {
                    return bad("expected 'module.function', such as 'app.handler'.");
                }
                if module.starts_with('/')
                    || module.split('/').any(|seg| seg == ".." || seg.is_empty())
                {
                    return bad("the module path must stay inside the package.");
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runtimes() {
        assert_eq!(
            RuntimeKind::parse("python3.11").unwrap(),
            RuntimeKind::Python { minor: 11 }
        );
        assert_eq!(
            RuntimeKind::parse("nodejs20.x").unwrap(),
            RuntimeKind::Node { major: 20 }
        );
        assert_eq!(
            RuntimeKind::parse("provided.al2023").unwrap(),
            RuntimeKind::Provided
        );
        for bad in ["python", "python3.", "nodejs20", "java21", "cobol9", ""] {
            assert!(RuntimeKind::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn handlers() {
        let py = RuntimeKind::Python { minor: 11 };
        for ok in ["app.handler", "src/app.handler", "pkg.mod.handler"] {
            assert!(py.validate_handler(ok).is_ok(), "{ok}");
        }
        for bad in [
            "nodot",
            ".handler",
            "app.",
            "../x.handler",
            "/abs.handler",
            "a b.c",
            "",
        ] {
            assert!(py.validate_handler(bad).is_err(), "{bad}");
        }
        assert!(RuntimeKind::Provided.validate_handler("anything").is_ok());
        assert_eq!(RuntimeKind::parse("wasm").unwrap(), RuntimeKind::Wasm);
        assert!(RuntimeKind::Wasm.validate_handler("").is_ok());
    }
}
