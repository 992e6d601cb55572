//! Prices and cost: what a call cost, from its actual usage.
//!
//! The price table ships as a data file, `src/cost/prices.json` (its sources and the date it was
//! checked are in the file), for the main OpenAI and Bedrock models, in USD per million tokens:
//! input, output, prompt-cache read and prompt-cache write, with per-region prices where Bedrock's
//! differ. The configuration's `[prices]` table overrides or adds models ([`PriceSpec`]; a key may
//! be a glob such as `"llama-local*"`).
//!
//! A model id is looked up as written by the upstream call (after aliases), then — for a Bedrock
//! cross-region inference profile (`us.`, `eu.`, `apac.`, `jp.`, `au.`, `us-gov.`, `global.`) or an
//! ARN — as its model, since AWS bills a profile as its model in the calling region; a profile with
//! its own entry (Claude 4.5's cheaper `global.` profiles) keeps it. Overrides are looked up before
//! the shipped table. A model found nowhere has an **unknown** price: its cost is `None`, reported as
//! `unknown`, never as zero.
//!
//! The arithmetic is exact integer arithmetic: prices are held in pico-dollars per token (six
//! decimals of USD per million tokens), a call's cost is rounded to the nano-dollar ([`Usd`]).
//! `prompt_tokens` includes cache reads and writes, `completion_tokens` includes reasoning, so
//!
//! ```text
//! cost = uncached input × input + cache reads × cache_read + cache writes × cache_write
//!      + max(completion, reasoning) × output
//! ```
//!
//! with a missing cache price charged as input (the conservative reading).
//!
//! ```
//! use open_bedrock_server::cost::PriceTable;
//! use open_bedrock_server::model::Usage;
//!
//! let prices = PriceTable::builtin();
//! // 1,000 uncached input tokens, 2,000 read from the cache, 500 written to it, 300 output.
//! let usage = Usage::from_parts(1_000, 300, 2_000, 500);
//! let cost = prices.cost("anthropic.claude-3-5-haiku-20241022-v1:0", None, &usage).unwrap();
//! // 1000 × 0.80 + 2000 × 0.08 + 500 × 1.00 + 300 × 4.00, per million.
//! assert_eq!(cost.to_string(), "0.00266");
//! // A cross-region profile is priced as its model; an unknown model has no price.
//! assert_eq!(prices.cost("us.anthropic.claude-3-5-haiku-20241022-v1:0", None, &usage), Some(cost));
//! assert_eq!(prices.cost("my-own-model", None, &usage), None);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};

use crate::keys::ModelPattern;
use crate::model::Usage;
use crate::NameMap;

/// An amount of US dollars, in whole nano-dollars (10⁻⁹ USD). Displays as an exact decimal
/// (`0.00266`, `12`, `-0.5`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub i64);

impl Usd {
    /// Nano-dollars in one dollar.
    pub const NANOS_PER_USD: i64 = 1_000_000_000;

    /// `dollars`, rounded to the nano-dollar (saturating; not-a-number is zero).
    pub fn from_dollars(dollars: f64) -> Usd {
        Usd((dollars * Self::NANOS_PER_USD as f64).round() as i64)
    }

    /// The amount in nano-dollars.
    pub fn nanos(self) -> i64 {
        self.0
    }

    /// The amount in dollars, as a float (for JSON and metrics).
    pub fn dollars(self) -> f64 {
        self.0 as f64 / Self::NANOS_PER_USD as f64
    }
}

impl Usd {
    /// The amount as [`Display`](fmt::Display) writes it, with `write_str` alone (the
    /// `x-gateway-cost` header of every priced reply is written with it).
    pub(crate) fn write(&self, f: &mut impl fmt::Write) -> fmt::Result {
        if self.0 < 0 {
            f.write_str("-")?;
        }
        let n = self.0.unsigned_abs();
        let whole = n / Self::NANOS_PER_USD as u64;
        let frac = n % Self::NANOS_PER_USD as u64;
        f.write_str(itoa::Buffer::new().format(whole))?;
        // Nine digits of nanodollars, trailing zeros dropped (written on every access-log line).
        crate::digits::write_fraction(f, frac, 9)
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f)
    }
}

impl Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.dollars())
    }
}

/// One model's prices in USD per million tokens, as the data file and the `[prices]` table write
/// them. `cache_read` / `cache_write` default to `input`; `regions` holds the regions whose price
/// differs (each a complete price, without `regions` of its own).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PriceSpec {
    /// Input (prompt) tokens not served from or written to the prompt cache.
    pub input: f64,
    /// Output tokens, reasoning included.
    pub output: f64,
    /// Input tokens read from the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    /// Input tokens written to the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Prices in the regions where they differ (Bedrock).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, PriceSpec>,
}

impl PriceSpec {
    /// `input` and `output` USD per million tokens; cache prices as input.
    pub fn new(input: f64, output: f64) -> Self {
        PriceSpec {
            input,
            output,
            ..PriceSpec::default()
        }
    }

    /// With prompt-cache read and write prices.
    pub fn with_cache(mut self, read: f64, write: f64) -> Self {
        self.cache_read = Some(read);
        self.cache_write = Some(write);
        self
    }

    /// Checks that every price is a finite number ≥ 0 (`at` names it in the error).
    pub fn validate(&self, at: &str) -> Result<(), String> {
        let prices = [
            ("input", Some(self.input)),
            ("output", Some(self.output)),
            ("cache_read", self.cache_read),
            ("cache_write", self.cache_write),
        ];
        for (name, value) in prices {
            if let Some(v) = value {
                if !v.is_finite() || v < 0.0 {
                    return Err(format!(
                        "{at}.{name}: `{v}` is not a price (USD per million tokens, ≥ 0)"
                    ));
                }
            }
        }
        for (region, spec) in &self.regions {
            if !spec.regions.is_empty() {
                return Err(format!(
                    "{at}.regions.{region}: a regional price has no regions of its own"
                ));
            }
            spec.validate(&format!("{at}.regions.{region}"))?;
        }
        Ok(())
    }
}

/// A resolved price, in pico-dollars (10⁻¹² USD) per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Uncached input.
    pub input: u64,
    /// Output, reasoning included.
    pub output: u64,
    /// Prompt-cache reads.
    pub cache_read: u64,
    /// Prompt-cache writes.
    pub cache_write: u64,
}

/// USD per million tokens → pico-dollars per token (exact for six decimals).
fn picos(per_million: f64) -> u64 {
    (per_million * 1_000_000.0).round().max(0.0) as u64
}

impl From<&PriceSpec> for Price {
    fn from(s: &PriceSpec) -> Price {
        Price {
            input: picos(s.input),
            output: picos(s.output),
            cache_read: picos(s.cache_read.unwrap_or(s.input)),
            cache_write: picos(s.cache_write.unwrap_or(s.input)),
        }
    }
}

impl Price {
    /// What `usage` costs at this price, to the nano-dollar (half up).
    pub fn cost(&self, usage: &Usage) -> Usd {
        let output = usage
            .completion_tokens
            .max(usage.reasoning_tokens().unwrap_or(0));
        let picos = u128::from(usage.uncached_input_tokens()) * u128::from(self.input)
            + u128::from(usage.cached_tokens()) * u128::from(self.cache_read)
            + u128::from(usage.cache_write_tokens()) * u128::from(self.cache_write)
            + u128::from(output) * u128::from(self.output);
        Usd(i64::try_from((picos + 500) / 1000).unwrap_or(i64::MAX))
    }
}

#[derive(Debug, Clone)]
struct ModelPrices {
    base: Price,
    regions: HashMap<String, Price>,
}

impl ModelPrices {
    fn of(spec: &PriceSpec) -> Self {
        ModelPrices {
            base: Price::from(spec),
            regions: spec
                .regions
                .iter()
                .map(|(r, s)| (r.clone(), Price::from(s)))
                .collect(),
        }
    }

    fn in_region(&self, region: Option<&str>) -> Price {
        region
            .and_then(|r| self.regions.get(r))
            .copied()
            .unwrap_or(self.base)
    }
}

#[derive(Debug, Deserialize)]
struct DataFile {
    checked: String,
    sources: Vec<String>,
    models: BTreeMap<String, PriceSpec>,
}

static BUILTIN: LazyLock<Arc<Table>> = LazyLock::new(|| {
    // The file is part of the crate and parsed by a unit test: a failure here is a build defect.
    let file: DataFile = serde_json::from_str(include_str!("prices.json"))
        .unwrap_or_else(|e| panic!("src/cost/prices.json: {e}"));
    Arc::new(Table {
        exact: file
            .models
            .iter()
            .map(|(m, s)| (m.clone(), ModelPrices::of(s)))
            .collect(),
        patterns: Vec::new(),
        checked: file.checked,
        sources: file.sources,
    })
});

#[derive(Debug)]
struct Table {
    exact: NameMap<String, ModelPrices>,
    patterns: Vec<(ModelPattern, ModelPrices)>,
    checked: String,
    sources: Vec<String>,
}

impl Table {
    fn find(&self, id: &str) -> Option<&ModelPrices> {
        if let Some(p) = self.exact.get(id) {
            return Some(p);
        }
        let base = model_of_profile(id);
        if base != id {
            if let Some(p) = self.exact.get(base) {
                return Some(p);
            }
        }
        self.patterns
            .iter()
            .find(|(pattern, _)| pattern.matches(id) || pattern.matches(base))
            .map(|(_, p)| p)
    }
}

/// The price table: the shipped data file under the configuration's overrides. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PriceTable {
    overrides: Arc<Table>,
    builtin: Arc<Table>,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable::builtin()
    }
}

impl PriceTable {
    /// The shipped table (`src/cost/prices.json`) alone.
    pub fn builtin() -> Self {
        PriceTable {
            overrides: Arc::new(Table {
                exact: NameMap::new(),
                patterns: Vec::new(),
                checked: String::new(),
                sources: Vec::new(),
            }),
            builtin: BUILTIN.clone(),
        }
    }

    /// The shipped table under `overrides` (model id or glob → price): an override wins over the
    /// shipped price of the same model; globs are tried in key order after exact ids.
    pub fn with_overrides(overrides: &BTreeMap<String, PriceSpec>) -> Result<Self, String> {
        let mut exact = NameMap::new();
        let mut patterns = Vec::new();
        for (model, spec) in overrides {
            spec.validate(&format!("prices.\"{model}\""))?;
            if model.contains(['*', '?']) {
                patterns.push((ModelPattern::new(model), ModelPrices::of(spec)));
            } else {
                exact.insert(model.clone(), ModelPrices::of(spec));
            }
        }
        Ok(PriceTable {
            overrides: Arc::new(Table {
                exact,
                patterns,
                checked: String::new(),
                sources: Vec::new(),
            }),
            builtin: BUILTIN.clone(),
        })
    }

    /// The price of `model` (as sent upstream) called in `region` (Bedrock's; `None` elsewhere),
    /// or `None` when it is unknown.
    pub fn price(&self, model: &str, region: Option<&str>) -> Option<Price> {
        self.overrides
            .find(model)
            .or_else(|| self.builtin.find(model))
            .map(|p| p.in_region(region))
    }

    /// What `usage` of `model` in `region` cost, or `None` when its price is unknown.
    pub fn cost(&self, model: &str, region: Option<&str>, usage: &Usage) -> Option<Usd> {
        self.price(model, region).map(|p| p.cost(usage))
    }

    /// When the shipped table was checked, and against what.
    pub fn provenance(&self) -> (&str, &[String]) {
        (&self.builtin.checked, &self.builtin.sources)
    }
}

/// The region an ARN names (`arn:aws:bedrock:eu-west-1:…` → `eu-west-1`): where a call of an ARN
/// model goes, and so its price's region.
///
/// ```
/// use open_bedrock_server::cost::region_of_arn;
///
/// assert_eq!(region_of_arn("arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.x"), Some("eu-west-1"));
/// assert_eq!(region_of_arn("anthropic.claude-3-5-haiku-20241022-v1:0"), None);
/// ```
pub fn region_of_arn(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("arn:")?;
    rest.split(':').nth(2).filter(|r| !r.is_empty())
}

/// The model a Bedrock inference profile or ARN names: `us.anthropic.claude…` → `anthropic.claude…`,
/// `arn:…:inference-profile/eu.meta.llama…` → `meta.llama…`; any other id as is.
pub fn model_of_profile(id: &str) -> &str {
    let id = match id.strip_prefix("arn:") {
        Some(arn) => arn.rsplit('/').next().unwrap_or(id),
        None => id,
    };
    for prefix in [
        "us-gov.", "us.", "eu.", "apac.", "jp.", "au.", "ca.", "global.",
    ] {
        if let Some(rest) = id.strip_prefix(prefix) {
            return rest;
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn usage(v: serde_json::Value) -> Usage {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_data_file_parses_and_every_price_is_valid() {
        let file: DataFile = serde_json::from_str(include_str!("prices.json")).unwrap();
        assert!(file.models.len() > 50);
        assert!(!file.sources.is_empty() && file.checked.len() == 10);
        for (model, spec) in &file.models {
            spec.validate(model).unwrap();
        }
        let table = PriceTable::builtin();
        let (checked, sources) = table.provenance();
        assert_eq!(
            (checked, sources.len()),
            (file.checked.as_str(), file.sources.len())
        );
    }

    #[test]
    fn openai_cached_and_reasoning_usage() {
        let t = PriceTable::builtin();
        // gpt-4o: 2.50 in, 1.25 cached, 10 out. 1,000 prompt of which 400 cached; 500 completion
        // of which 200 reasoning.
        let u = usage(
            json!({"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500,
            "prompt_tokens_details":{"cached_tokens":400},
            "completion_tokens_details":{"reasoning_tokens":200}}),
        );
        // 600 × 2.5 + 400 × 1.25 + 500 × 10 = 1500 + 500 + 5000 = 7000 per million.
        assert_eq!(t.cost("gpt-4o", None, &u), Some(Usd(7_000_000)));
        assert_eq!(Usd(7_000_000).to_string(), "0.007");
        // Reasoning above the completion count (an upstream that reports it apart) is still paid.
        let u = usage(
            json!({"prompt_tokens":0,"completion_tokens":10,"completion_tokens_details":{"reasoning_tokens":30}}),
        );
        assert_eq!(
            t.cost("o3", None, &u),
            Some(Usd(240_000)),
            "30 × 8 per million"
        );
    }

    #[test]
    fn regions_profiles_overrides_and_unknowns() {
        let mut o = BTreeMap::new();
        o.insert("llama-local*".to_owned(), PriceSpec::new(0.1, 0.2));
        o.insert("gpt-4o".to_owned(), PriceSpec::new(1.0, 1.0));
        let t = PriceTable::with_overrides(&o).unwrap();
        let u = Usage::from_parts(1_000_000, 1_000_000, 0, 0);
        assert_eq!(
            t.cost("gpt-4o", None, &u).unwrap().to_string(),
            "2",
            "override wins"
        );
        assert_eq!(
            t.cost("llama-local-70b", None, &u).unwrap().to_string(),
            "0.3"
        );
        let llama = "meta.llama3-70b-instruct-v1:0";
        assert_eq!(
            t.cost(llama, Some("us-east-1"), &u).unwrap().to_string(),
            "6.15"
        );
        assert_eq!(
            t.cost(llama, Some("eu-west-2"), &u).unwrap().to_string(),
            "8"
        );
        assert_eq!(
            t.cost(&format!("eu.{llama}"), Some("eu-west-2"), &u)
                .unwrap()
                .to_string(),
            "8"
        );
        let sonnet = "anthropic.claude-sonnet-4-5-20250929-v1:0";
        assert_eq!(
            t.cost(&format!("us.{sonnet}"), None, &u)
                .unwrap()
                .to_string(),
            "19.8"
        );
        assert_eq!(
            t.cost(&format!("global.{sonnet}"), None, &u)
                .unwrap()
                .to_string(),
            "18"
        );
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0";
        assert_eq!(t.cost(arn, None, &u).unwrap().to_string(), "4.8");
        assert_eq!(t.cost("mystery", None, &u), None);
        let mut bad = BTreeMap::new();
        bad.insert("x".to_owned(), PriceSpec::new(-1.0, 0.0));
        assert!(PriceTable::with_overrides(&bad)
            .unwrap_err()
            .contains("prices.\"x\".input"));
    }

    #[test]
    fn rounding_is_half_up_to_the_nano_dollar_and_display_is_exact() {
        // nova-micro: 0.035 in → 35,000 pico per token; 0.00875 cached → 8,750 pico.
        let t = PriceTable::builtin();
        let u = Usage::from_parts(0, 0, 1, 0);
        assert_eq!(
            t.cost("amazon.nova-micro-v1:0", None, &u),
            Some(Usd(9)),
            "8.75 → 9"
        );
        let u = Usage::from_parts(1, 0, 0, 0);
        assert_eq!(t.cost("amazon.nova-micro-v1:0", None, &u), Some(Usd(35)));
        let p = Price {
            input: 1_400,
            output: 0,
            cache_read: 0,
            cache_write: 0,
        };
        assert_eq!(p.cost(&Usage::from_parts(1, 0, 0, 0)), Usd(1), "1.4 → 1");
        assert_eq!(Usd(-500_000_000).to_string(), "-0.5");
        assert_eq!(Usd(12 * Usd::NANOS_PER_USD).to_string(), "12");
        assert_eq!(Usd(1).to_string(), "0.000000001");
        assert_eq!(Usd::from_dollars(0.1), Usd(100_000_000));
    }
}
