//! The keys file: TOML, one `[[keys]]` table per key, the key itself only as its SHA-256.
//!
//! ```toml
//! [[keys]]
//! id = "team-a"                        # stable, non-secret: logs, metrics, Redis
//! name = "Team A"
//! team = "a"
//! sha256 = "…64 hex digits…"           # `open-bedrock-server keys new` prints a key and this line
//! models = ["gpt-4o*", "fast-chat"]    # names, globs, model groups; absent = every model
//! requests_per_minute = 60
//! tokens_per_minute = 100000
//! max_concurrent = 8                   # requests and open streams at once
//! usd_per_day = 5.0
//! usd_per_month = 100.0
//! tokens_per_day = 2000000
//! expires_at = 2027-01-01T00:00:00Z
//! admin = false                        # may read any key's /v1/key/info
//! metadata = { cost_center = "CC-42" }
//! ```

use std::num::{NonZeroU32, NonZeroU64};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::period::days_from_civil;
use super::store::{KeyHash, KeySet};
use super::{Budgets, KeyRecord, ModelPattern};
use crate::auth::ApiKeyId;
use crate::cost::Usd;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    team: Option<String>,
    sha256: String,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    requests_per_minute: Option<NonZeroU32>,
    #[serde(default)]
    tokens_per_minute: Option<NonZeroU64>,
    #[serde(default)]
    max_concurrent: Option<usize>,
    #[serde(default)]
    usd_per_day: Option<f64>,
    #[serde(default)]
    usd_per_month: Option<f64>,
    #[serde(default)]
    tokens_per_day: Option<u64>,
    #[serde(default)]
    expires_at: Option<toml::value::Datetime>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    metadata: Map<String, Value>,
}

/// Parses a keys file into a key set; `default_max_concurrent` applies to keys without their own
/// `max_concurrent`. Errors name the key (`keys[2] (team-b)`) and the field.
pub(crate) fn parse(
    text: &str,
    reserved: &[ApiKeyId],
    default_max_concurrent: Option<usize>,
) -> Result<KeySet, String> {
    let file: KeysFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut keys = Vec::with_capacity(file.keys.len());
    for (i, entry) in file.keys.into_iter().enumerate() {
        let at = format!("keys[{i}] ({})", entry.id);
        keys.push(entry_record(entry, default_max_concurrent).map_err(|e| format!("{at}: {e}"))?);
    }
    KeySet::new(keys, reserved)
}

fn entry_record(
    e: KeyEntry,
    default_max_concurrent: Option<usize>,
) -> Result<(KeyHash, KeyRecord), String> {
    let id = e.id.trim();
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
    {
        return Err("`id` must be 1–128 characters of A–Z a–z 0–9 - _ . : @".into());
    }
    let hash = hex::decode(e.sha256.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or("`sha256` must be 64 hex digits (the SHA-256 of the key; `open-bedrock-server keys new` prints a key and its line)")?;
    let usd = |name: &str, v: Option<f64>| -> Result<Option<Usd>, String> {
        match v {
            Some(v) if !v.is_finite() || v < 0.0 => Err(format!("`{name}` must be a number ≥ 0")),
            Some(v) => Ok(Some(Usd::from_dollars(v))),
            None => Ok(None),
        }
    };
    if e.max_concurrent == Some(0) {
        return Err("`max_concurrent` must be at least 1".into());
    }
    let mut record = KeyRecord::new(id);
    record.name = e.name.unwrap_or_else(|| id.to_owned());
    record.team = e.team;
    record.metadata = e.metadata;
    record.models = e
        .models
        .map(|m| m.iter().map(|p| ModelPattern::new(p.trim())).collect());
    record.requests_per_minute = e.requests_per_minute;
    record.tokens_per_minute = e.tokens_per_minute;
    record.max_concurrent = e.max_concurrent.or(default_max_concurrent);
    record.budgets = Budgets {
        usd_per_day: usd("usd_per_day", e.usd_per_day)?,
        usd_per_month: usd("usd_per_month", e.usd_per_month)?,
        tokens_per_day: e.tokens_per_day,
    };
    record.expires_at = e.expires_at.map(|d| datetime(&d)).transpose()?;
    record.admin = e.admin;
    Ok((KeyHash(hash), record))
}

/// A TOML date-time as a moment: a date alone is midnight UTC, no offset is UTC.
fn datetime(d: &toml::value::Datetime) -> Result<SystemTime, String> {
    let date = d.date.ok_or("`expires_at` needs a date")?;
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let mut secs = days * 86_400;
    if let Some(t) = d.time {
        secs += i64::from(t.hour) * 3600 + i64::from(t.minute) * 60 + i64::from(t.second);
    }
    if let Some(toml::value::Offset::Custom { minutes }) = d.offset {
        secs -= i64::from(minutes) * 60;
    }
    let secs = u64::try_from(secs).map_err(|_| "`expires_at` is before 1970")?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(key: &str) -> String {
        hex::encode(KeyHash::of(key.as_bytes()).0)
    }

    #[test]
    fn a_full_entry_and_its_defaults() {
        let text = format!(
            r#"
            [[keys]]
            id = "team-a"
            name = "Team A"
            team = "a"
            sha256 = "{}"
            models = ["gpt-4o*", "fast"]
            requests_per_minute = 60
            max_concurrent = 2
            usd_per_day = 1.5
            tokens_per_day = 1000
            expires_at = 2027-01-01T01:00:00+01:00
            admin = true
            metadata = {{ cost_center = "CC-42", tier = 2 }}

            [[keys]]
            id = "team-b"
            sha256 = "{}"
            "#,
            hash_of("ka"),
            hash_of("kb")
        );
        let set = parse(&text, &[], Some(16)).unwrap();
        assert_eq!(set.len(), 2);
        let store = super::super::KeyStore::new(Vec::<String>::new());
        store.swap(set);
        let a = store.record("team-a").unwrap();
        assert_eq!(
            (a.name.as_str(), a.team.as_deref(), a.admin),
            ("Team A", Some("a"), true)
        );
        assert!(a.allows("gpt-4o-mini") && !a.allows("o3"));
        assert_eq!(a.max_concurrent, Some(2));
        assert_eq!(a.budgets.usd_per_day, Some(Usd(1_500_000_000)));
        assert_eq!(
            a.expires_at_secs(),
            Some(1_798_761_600),
            "01:00+01:00 is midnight UTC"
        );
        assert_eq!(a.metadata["tier"], 2);
        let b = store.record("team-b").unwrap();
        assert_eq!(
            (b.name.as_str(), b.max_concurrent, b.models.is_none()),
            ("team-b", Some(16), true)
        );
        use crate::auth::ValidateKey;
        assert_eq!(store.validate(b"kb").unwrap().0.as_ref(), "team-b");
    }

    #[test]
    fn errors_name_the_key_and_the_field() {
        let e = parse("[[keys]]\nid = \"x\"\nsha256 = \"abc\"\n", &[], None).unwrap_err();
        assert!(e.contains("keys[0] (x)") && e.contains("sha256"), "{e}");
        let e = parse(
            &format!(
                "[[keys]]\nid = \"x\"\nsha256 = \"{}\"\nusd_per_day = -1\n",
                hash_of("k")
            ),
            &[],
            None,
        )
        .unwrap_err();
        assert!(e.contains("usd_per_day"), "{e}");
        let e = parse(
            &format!("[[keys]]\nid = \"x y\"\nsha256 = \"{}\"\n", hash_of("k")),
            &[],
            None,
        )
        .unwrap_err();
        assert!(e.contains("`id`"), "{e}");
        let e = parse("[[keys]]\nid = \"x\"\nsha = 1\n", &[], None).unwrap_err();
        assert!(e.contains("sha"), "{e}");
        let e = parse("[[keys]\n", &[], None).unwrap_err();
        assert!(!e.is_empty());
    }
}
