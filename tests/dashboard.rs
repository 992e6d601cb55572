//! The Grafana dashboard (`deploy/grafana/dashboards/open-bedrock-server.json`) queries only
//! metrics the gateway really exports: every metric name in every panel's PromQL is looked up in
//! a real `/metrics` scrape, taken after traffic that touches each family (a model group with a
//! failing deployment, a key with a budget and an allowlist, a model without a price, a stream).

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::fake::{self, Fake};
use common::{send, start_service};
use http::Method;
use open_bedrock_server::config::Config;
use open_bedrock_server::keys::hash_line;
use open_bedrock_server::Gateway;
use serde_json::{json, Value};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/dashboards/open-bedrock-server.json"
);

/// Every panel's PromQL expressions, with the panel's title.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap().to_owned();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel `{title}` queries nothing");
        for t in targets {
            out.push((title.clone(), t["expr"].as_str().unwrap().to_owned()));
        }
    }
    out
}

/// The metric names an expression reads: identifiers outside label matchers (`{…}`), strings and
/// `by (…)` / `without (…)` groupings that are not PromQL functions or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const NOT_METRICS: &[&str] = &[
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "rate",
        "irate",
        "increase",
        "histogram_quantile",
        "by",
        "without",
        "on",
        "ignoring",
        "and",
        "or",
        "unless",
        "offset",
        "topk",
        "bottomk",
    ];
    let mut names = BTreeSet::new();
    let (mut depth_braces, mut in_string, mut after_grouping) = (0, false, false);
    let mut chars = expr.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            '[' => {
                // A range: `[5m]`, `[$__rate_interval]`.
                for (_, c) in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                }
            }
            '(' if after_grouping => {
                after_grouping = false;
                let mut paren_skip = 1usize;
                for (_, c) in chars.by_ref() {
                    match c {
                        '(' => paren_skip += 1,
                        ')' => {
                            paren_skip -= 1;
                            if paren_skip == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            c if depth_braces == 0 && (c.is_ascii_alphabetic() || c == '_') => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = &expr[i..end];
                if word == "by" || word == "without" {
                    after_grouping = true;
                } else if !NOT_METRICS.contains(&word) {
                    names.insert(word.to_owned());
                }
            }
            _ => {}
        }
    }
    names
}

/// The metric families of a scrape (`# TYPE <name> <type>`), with each histogram's series names.
fn exported(scrape: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split(' ');
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        out.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{suffix}"));
            }
        }
    }
    out
}

#[test]
fn the_expression_reader_finds_metrics_and_skips_the_rest() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le, route) (rate(obs_request_duration_seconds_bucket{route=~"chat|x_y"}[$__rate_interval]))) + max(obs_open_streams)"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["obs_open_streams", "obs_request_duration_seconds_bucket"]
    );
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let exprs = expressions(&dashboard);
    let queried: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    // What operators watch (issue 17) is on the dashboard.
    for must in [
        "obs_requests_total",
        "obs_upstream_errors_total",
        "obs_request_duration_seconds_bucket",
        "obs_time_to_first_token_seconds_bucket",
        "obs_key_tokens_total",
        "obs_cost_usd_total",
        "obs_budget_used_ratio",
        "obs_rate_limited_total",
        "obs_key_rejections_total",
        "obs_in_flight_requests",
        "obs_open_streams",
        "obs_deployment_state",
    ] {
        assert!(queried.contains(must), "the dashboard does not show {must}");
    }

    // A gateway with a model group whose first deployment fails, a rate limit, and a key with a
    // budget and an allowlist.
    let upstream = Fake::start(fake::openai_smart()).await;
    static N: AtomicU64 = AtomicU64::new(0);
    let keys_path = std::env::temp_dir().join(format!(
        "obs-dashboard-keys-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(
        &keys_path,
        format!(
            "[[keys]]\nid = \"team-a\"\n{}\nmodels = [\"gpt-*\", \"mixed\"]\nusd_per_day = 10.0\n",
            hash_line("sk-team-a")
        ),
    )
    .unwrap();
    let toml_text = format!(
        "[providers.second]\nkind = \"openai\"\nbase_url = \"{url}/v1\"\n\n[model_groups.mixed]\ndeployments = [\n  {{ provider = \"openai\", model = \"gpt-fail-500\", priority = 0 }},\n  {{ provider = \"second\", model = \"gpt-4o\", priority = 1 }},\n]\n\n[rate_limit]\nrequests_per_minute = 1000\n",
        url = upstream.url()
    );
    let mut c: Config = toml::from_str(&toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    c.auth.api_keys = vec![common::KEY.into()];
    c.openai.base_url = format!("{}/v1", upstream.url());
    c.bedrock.enabled = false;
    c.retry.base_delay = Duration::from_millis(1);
    c.retry.max_delay = Duration::from_millis(5);
    c.keys.file = Some(keys_path.clone());
    let gw = start_service(Gateway::from_config(&c).await.unwrap()).await;
    let chat = |model: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let url = gw.url("/v1/chat/completions");
    for (model, stream) in [
        ("gpt-4o", false),
        ("gpt-4o", true),
        ("mixed", false),
        ("gpt-unpriced", false),
        ("gpt-fail-500", false),
        ("o3", false), // not allowed
    ] {
        send(
            Method::POST,
            &url,
            Some("sk-team-a"),
            Some(&chat(model, stream)),
        )
        .await;
    }
    let scrape = send(Method::GET, &gw.url("/metrics"), Some(common::KEY), None)
        .await
        .text();
    let _ = std::fs::remove_file(&keys_path);

    let exported = exported(&scrape);
    for (title, expr) in &exprs {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "panel `{title}` queries `{name}`, which /metrics does not export:\n{expr}\n\n{scrape}"
            );
        }
    }
}
