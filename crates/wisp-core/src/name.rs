//! Function names, qualifiers and the ARN forms Lambda accepts wherever a function is named.

use crate::error::{Error, Result};
use crate::limits::FUNCTION_NAME_MAX_CHARS;

/// The account id wisp reports in ARNs. There is one tenant per server.
pub const ACCOUNT_ID: &str = "000000000000";

/// What follows a function name: `$LATEST`, a published version, or an alias.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Qualifier {
    Latest,
    Version(u64),
    Alias(String),
}

impl Qualifier {
    pub fn parse(s: &str) -> Result<Self> {
        if s == "$LATEST" {
            return Ok(Qualifier::Latest);
        }
        if !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Qualifier::Version)
                .map_err(|_| Error::invalid(format!("Version '{s}' is out of range.")));
        }
        if valid_name_chars(s) && s.len() <= 128 {
            return Ok(Qualifier::Alias(s.to_string()));
        }
        Err(Error::invalid(format!(
            "Invalid qualifier '{s}': use $LATEST, a version number or an alias name ([a-zA-Z0-9-_]+)."
        )))
    }
}

impl std::fmt::Display for Qualifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Qualifier::Latest => f.write_str("$LATEST"),
            Qualifier::Version(v) => write!(f, "{v}"),
            Qualifier::Alias(a) => f.write_str(a),
        }
    }
}

/// A reference to a function as a caller wrote it, reduced to its name and qualifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub qualifier: Option<Qualifier>,
}

fn valid_name_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a bare function name: 1 to 64 of `[a-zA-Z0-9-_]`.
pub fn validate_name(name: &str) -> Result<()> {
    if name.len() > FUNCTION_NAME_MAX_CHARS || !valid_name_chars(name) {
        return Err(Error::invalid(format!(
            "Invalid function name '{}': a name is 1 to {FUNCTION_NAME_MAX_CHARS} characters of letters, digits, '-' and '_'.",
            truncate_for_message(name)
        )));
    }
    Ok(())
}

fn truncate_for_message(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Parses every form Lambda accepts: `name`, `name:qualifier`,
/// `123456789012:function:name[:qualifier]` and
/// `arn:aws:lambda:region:123456789012:function:name[:qualifier]`.
pub fn parse_function_ref(input: &str) -> Result<FunctionRef> {
    if input.len() > 256 {
        return Err(Error::invalid(
            "Function name or ARN is longer than 256 characters.",
        ));
    }
    let parts: Vec<&str> = input.split(':').collect();
    let (name, qualifier) = match parts.as_slice() {
        [name] => (*name, None),
        [name, q] => (*name, Some(*q)),
        [_account, "function", name] => (*name, None),
        [_account, "function", name, q] => (*name, Some(*q)),
        ["arn", _partition, "lambda", _region, _account, "function", name] => (*name, None),
        ["arn", _partition, "lambda", _region, _account, "function", name, q] => (*name, Some(*q)),
        _ => {
            return Err(Error::invalid(format!(
                "'{}' is not a function name or function ARN.",
                truncate_for_message(input)
            )))
        }
    };
    validate_name(name)?;
    let qualifier = qualifier.map(Qualifier::parse).transpose()?;
    Ok(FunctionRef {
        name: name.to_string(),
        qualifier,
    })
}

/// The ARN wisp reports for a function, optionally qualified.
pub fn function_arn(region: &str, name: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) => format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}:{q}"),
        None => format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Option<(&str, Option<Qualifier>)>) {
        let got = parse_function_ref(input)
            .ok()
            .map(|r| (r.name, r.qualifier));
        let expect = expect.map(|(n, q)| (n.to_string(), q));
        assert_eq!(got, expect, "input {input:?}");
    }

    #[test]
    fn function_refs() {
        check("orders", Some(("orders", None)));
        check("orders:$LATEST", Some(("orders", Some(Qualifier::Latest))));
        check("orders:7", Some(("orders", Some(Qualifier::Version(7)))));
        check(
            "orders:live",
            Some(("orders", Some(Qualifier::Alias("live".into())))),
        );
        check("000000000000:function:orders", Some(("orders", None)));
        check(
            "arn:aws:lambda:us-east-1:000000000000:function:orders:prod",
            Some(("orders", Some(Qualifier::Alias("prod".into())))),
        );
        check("", None);
        check("bad name", None);
        check("a/b", None);
        check("../etc", None);
        check(&"x".repeat(65), None);
        check(&"x".repeat(64), Some((&"x".repeat(64), None)));
        check("a:b:c", None);
        check("orders:bad qualifier", None);
    }
}
