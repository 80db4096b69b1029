//! Aliases (named pointers to versions, with weighted routing to a second version) and
//! tags.

use std::collections::BTreeMap;
use std::sync::Arc;

use wisp_core::error::Result;
use wisp_core::{Error, ErrorKind, Qualifier};
use wisp_store::Alias;

use crate::control::store_err;
use crate::{Engine, Resolved};

/// AliasConfiguration's inputs; `None` leaves a field as it is on update.
#[derive(Debug, Clone, Default)]
pub struct AliasInput {
    pub version: Option<String>,
    pub description: Option<String>,
    /// `AdditionalVersionWeights`: at most one version, weight in 0..=1.
    pub weights: Option<BTreeMap<String, f64>>,
    pub revision_id: Option<String>,
}

fn alias_name(name: &str) -> Result<()> {
    match Qualifier::parse(name) {
        Ok(Qualifier::Alias(_)) => Ok(()),
        _ => Err(Error::invalid(format!(
            "Alias name '{}' is invalid: use letters, digits, '-' and '_', not only digits, and not $LATEST.",
            name.chars().take(128).collect::<String>()
        ))),
    }
}

/// A uniform number in [0, 1) for weighted routing.
fn unit_random() -> f64 {
    let bits = (uuid::Uuid::new_v4().as_u128() >> 64) as u64;
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl Engine {
    fn check_version_exists(&self, function: &str, version: &str) -> Result<()> {
        match Qualifier::parse(version)? {
            Qualifier::Latest => Ok(()),
            Qualifier::Version(v) => {
                match self.store.get_version(function, v).map_err(store_err)? {
                    Some(_) => Ok(()),
                    None => Err(Error::not_found(format!(
                        "Function not found: {function}:{v}"
                    ))),
                }
            }
            Qualifier::Alias(_) => Err(Error::invalid(
                "FunctionVersion must be $LATEST or a version number.",
            )),
        }
    }

    fn routing(
        &self,
        function: &str,
        primary: &str,
        weights: &BTreeMap<String, f64>,
    ) -> Result<Option<(u64, f64)>> {
        let mut entries = weights.iter();
        let Some((version, weight)) = entries.next() else {
            return Ok(None);
        };
        if entries.next().is_some() {
            return Err(Error::invalid(
                "RoutingConfig supports one additional version.",
            ));
        }
        if !(0.0..=1.0).contains(weight) || weight.is_nan() {
            return Err(Error::invalid(
                "AdditionalVersionWeights values must be between 0.0 and 1.0.",
            ));
        }
        let Ok(Qualifier::Version(v)) = Qualifier::parse(version) else {
            return Err(Error::invalid(
                "AdditionalVersionWeights keys must be published version numbers.",
            ));
        };
        if primary == "$LATEST" {
            return Err(Error::invalid("RoutingConfig is not allowed on an alias of $LATEST: point it at a published version."));
        }
        if version == primary {
            return Err(Error::invalid(
                "The additional version must differ from the alias's FunctionVersion.",
            ));
        }
        self.check_version_exists(function, version)?;
        Ok(Some((v, *weight)))
    }

    pub fn create_alias(&self, function: &str, name: &str, input: AliasInput) -> Result<Alias> {
        let fname = wisp_core::parse_function_ref(function)?.name;
        alias_name(name)?;
        let version = input
            .version
            .ok_or_else(|| Error::invalid("FunctionVersion is required."))?;
        self.latest_row_pub(&fname)?;
        self.check_version_exists(&fname, &version)?;
        let additional = self.routing(&fname, &version, &input.weights.unwrap_or_default())?;
        let alias = Alias {
            function: fname.clone(),
            name: name.to_string(),
            version,
            description: input.description.unwrap_or_default(),
            additional,
            revision_id: uuid::Uuid::new_v4().to_string(),
        };
        if !self.store.create_alias(&alias).map_err(store_err)? {
            return Err(Error::conflict(format!(
                "Alias already exists: {}",
                self.alias_arn(&alias)
            )));
        }
        Ok(alias)
    }

    pub fn get_alias(&self, function: &str, name: &str) -> Result<Alias> {
        let fname = wisp_core::parse_function_ref(function)?.name;
        self.store
            .get_alias(&fname, name)
            .map_err(store_err)?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "Alias not found: {}",
                    wisp_core::name::function_arn(&self.cfg.region, &fname, Some(name))
                ))
            })
    }

    pub fn list_aliases(&self, function: &str, version: Option<&str>) -> Result<Vec<Alias>> {
        let fname = wisp_core::parse_function_ref(function)?.name;
        self.latest_row_pub(&fname)?;
        let all = self.store.list_aliases(&fname).map_err(store_err)?;
        Ok(all
            .into_iter()
            .filter(|a| version.is_none_or(|v| a.version == v))
            .collect())
    }

    pub fn update_alias(&self, function: &str, name: &str, input: AliasInput) -> Result<Alias> {
        let current = self.get_alias(function, name)?;
        if let Some(rev) = &input.revision_id {
            if *rev != current.revision_id {
                return Err(Error::new(
                    ErrorKind::PreconditionFailed,
                    "The Revision Id provided does not match the latest Revision Id. Call the GetAlias API to retrieve the latest Revision Id",
                ));
            }
        }
        let mut next = current.clone();
        if let Some(v) = input.version {
            self.check_version_exists(&current.function, &v)?;
            next.version = v;
        }
        if let Some(d) = input.description {
            next.description = d;
        }
        match input.weights {
            Some(w) => next.additional = self.routing(&current.function, &next.version, &w)?,
            None => {
                if let Some((v, _)) = next.additional {
                    if v.to_string() == next.version {
                        next.additional = None;
                    }
                }
            }
        }
        next.revision_id = uuid::Uuid::new_v4().to_string();
        if !self
            .store
            .update_alias(&next, &current.revision_id)
            .map_err(store_err)?
        {
            return Err(Error::conflict(
                "The alias was changed by another request; retry.",
            ));
        }
        Ok(next)
    }

    pub fn delete_alias(&self, function: &str, name: &str) -> Result<()> {
        let fname = wisp_core::parse_function_ref(function)?.name;
        self.store.delete_alias(&fname, name).map_err(store_err)?;
        Ok(())
    }

    pub fn alias_arn(&self, alias: &Alias) -> String {
        wisp_core::name::function_arn(&self.cfg.region, &alias.function, Some(&alias.name))
    }

    /// The version an invocation through `alias` runs, drawn by the alias's weights.
    pub(crate) fn resolve_alias(&self, function: &str, alias: &str) -> Result<Resolved> {
        let alias = self.get_alias(function, alias)?;
        let version = match alias.additional {
            Some((v, weight)) if unit_random() < weight => v.to_string(),
            _ => alias.version.clone(),
        };
        let mut resolved = self.resolve(function, Some(&version))?;
        resolved.alias = Some(alias.name);
        Ok(resolved)
    }

    /// Refuses to delete a version an alias points to.
    pub(crate) fn check_version_unreferenced(&self, function: &str, version: u64) -> Result<()> {
        let v = version.to_string();
        for alias in self.store.list_aliases(function).map_err(store_err)? {
            if alias.version == v || alias.additional.is_some_and(|(a, _)| a == version) {
                return Err(Error::conflict(format!(
                    "Unable to delete version because the following aliases reference it: [{}]",
                    alias.name
                )));
            }
        }
        Ok(())
    }

    /// The function an ARN (of a function, version or alias) names, for tag operations.
    fn tag_target(&self, arn: &str) -> Result<String> {
        let fref = wisp_core::parse_function_ref(arn)?;
        if !arn.starts_with("arn:") {
            return Err(Error::invalid("Tags are addressed by the function's ARN."));
        }
        Ok(fref.name)
    }

    pub fn list_tags(&self, arn: &str) -> Result<BTreeMap<String, String>> {
        let name = self.tag_target(arn)?;
        self.store
            .tags(&name)
            .map_err(store_err)?
            .ok_or_else(|| Error::not_found(format!("Function not found: {arn}")))
    }

    pub fn tag(&self, arn: &str, tags: BTreeMap<String, String>) -> Result<()> {
        let mut current = self.list_tags(arn)?;
        for (k, v) in tags {
            validate_tag(&k, &v)?;
            current.insert(k, v);
        }
        if current.len() > 50 {
            return Err(Error::invalid("A function can have at most 50 tags."));
        }
        self.store
            .set_tags(&self.tag_target(arn)?, &current)
            .map_err(store_err)?;
        Ok(())
    }

    pub fn untag(&self, arn: &str, keys: &[String]) -> Result<()> {
        let mut current = self.list_tags(arn)?;
        for k in keys {
            current.remove(k);
        }
        self.store
            .set_tags(&self.tag_target(arn)?, &current)
            .map_err(store_err)?;
        Ok(())
    }

    pub(crate) fn set_initial_tags(
        &self,
        function: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<()> {
        for (k, v) in tags {
            validate_tag(k, v)?;
        }
        self.store.set_tags(function, tags).map_err(store_err)?;
        Ok(())
    }

    pub fn latest_row_pub(&self, name: &str) -> Result<Arc<wisp_store::FunctionRow>> {
        self.latest_row(name)
    }
}

pub fn validate_tag(key: &str, value: &str) -> Result<()> {
    if key.is_empty()
        || key.chars().count() > 128
        || value.chars().count() > 256
        || key.starts_with("aws:")
    {
        return Err(Error::invalid(format!(
            "Tag '{}' is invalid: keys are 1-128 characters and may not start with 'aws:', values at most 256.",
            key.chars().take(128).collect::<String>()
        )));
    }
    Ok(())
}
