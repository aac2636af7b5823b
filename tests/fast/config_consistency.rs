//! Settings structs, docs/configuration.md and the Helm chart's values stay
//! in step (no stack needed). `scripts/check_chart.py` closes the loop: the
//! variables the chart renders are exactly the documented keys.

use std::collections::BTreeSet;

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Keys read from Secrets: never serialized, never in the chart's `config`.
const SECRETS: [&str; 5] = [
    "admin_token",
    "database.url",
    "redis.url",
    "s3.access_key_id",
    "s3.secret_access_key",
];

/// Keys the chart sets itself (from other values), not under `config`.
const CHART_MANAGED: [&str; 6] = [
    "server.host",
    "server.port",
    "server.metrics_port",
    "worker.http_host",
    "worker.http_port",
    "database.migrate",
];

fn flatten(prefix: &str, value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

fn documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string(format!("{ROOT}/docs/configuration.md")).unwrap();
    let mut keys = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('|').nth(1).unwrap();
        for part in cell.split('`').skip(1).step_by(2) {
            keys.insert(part.to_string());
        }
    }
    keys
}

fn from_structs() -> BTreeSet<String> {
    let env = prewarm_store::settings::example_env();
    let api = template_api::settings::load_from(env.clone().into_iter()).unwrap();
    let worker = warmup_worker::settings::load_from(env.into_iter()).unwrap();
    let mut keys = BTreeSet::new();
    flatten("", &serde_json::to_value(&api).unwrap(), &mut keys);
    flatten("", &serde_json::to_value(&worker).unwrap(), &mut keys);
    // Where the file came from is not a setting of its own.
    keys.remove("config_file");
    keys.extend(SECRETS.iter().map(|s| s.to_string()));
    keys
}

fn chart_config() -> serde_yaml::Value {
    let text = std::fs::read_to_string(format!("{ROOT}/deploy/helm/prewarm/values.yaml")).unwrap();
    let values: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    values["config"].clone()
}

fn diff(a: &BTreeSet<String>, b: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    (
        a.difference(b).cloned().collect(),
        b.difference(a).cloned().collect(),
    )
}

#[test]
fn every_setting_is_documented_once_and_every_documented_key_exists() {
    let (undocumented, unknown) = diff(&from_structs(), &documented());
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "settings not in docs/configuration.md: {undocumented:?}; documented keys no service reads: {unknown:?}"
    );
}

#[test]
fn the_chart_values_cover_every_setting_and_both_services_accept_them() {
    let config: Value = serde_json::to_value(chart_config()).unwrap();
    let mut keys = BTreeSet::new();
    flatten("", &config, &mut keys);
    keys.extend(CHART_MANAGED.iter().map(|s| s.to_string()));
    keys.extend(SECRETS.iter().map(|s| s.to_string()));
    let (missing, extra) = diff(&documented(), &keys);
    assert!(
        missing.is_empty() && extra.is_empty(),
        "settings with no chart value: {missing:?}; chart values no service reads: {extra:?}"
    );

    // The chart's mapping (config.<section>.<key> -> PREWARM_<SECTION>__<KEY>,
    // empty strings left out), plus what it sets itself: both services load it.
    let mut env: Vec<(String, String)> = Vec::new();
    for (section, entries) in config.as_object().unwrap() {
        for (key, value) in entries.as_object().unwrap() {
            // A map (kafka.properties) is one variable per entry, as the chart renders it.
            if let Value::Object(map) = value {
                for (name, entry) in map {
                    env.push((
                        format!(
                            "PREWARM_{}__{}__{}",
                            section.to_uppercase(),
                            key.to_uppercase(),
                            name.replace('.', "_").to_uppercase()
                        ),
                        entry.as_str().map_or(entry.to_string(), str::to_string),
                    ));
                }
                continue;
            }
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !text.is_empty() {
                env.push((
                    format!("PREWARM_{}__{}", section.to_uppercase(), key.to_uppercase()),
                    text,
                ));
            }
        }
    }
    for (k, v) in [
        ("PREWARM_SERVER__HOST", "0.0.0.0"),
        ("PREWARM_SERVER__PORT", "8080"),
        ("PREWARM_WORKER__HTTP_HOST", "0.0.0.0"),
        ("PREWARM_WORKER__HTTP_PORT", "9091"),
        ("PREWARM_DATABASE__MIGRATE", "false"),
        ("PREWARM_ADMIN_TOKEN", "config-consistency-admin-token-01"),
        ("PREWARM_DATABASE__URL", "postgres://db/prewarm"),
        ("PREWARM_REDIS__URL", "redis://redis:6379"),
        ("PREWARM_S3__ACCESS_KEY_ID", "id"),
        ("PREWARM_S3__SECRET_ACCESS_KEY", "secret"),
    ] {
        env.push((k.into(), v.into()));
    }
    let api = template_api::settings::load_from(env.clone().into_iter());
    assert!(
        api.is_ok(),
        "the API rejects the chart's defaults: {:?}",
        api.err()
    );
    let worker = warmup_worker::settings::load_from(env.into_iter());
    assert!(
        worker.is_ok(),
        "the worker rejects the chart's defaults: {:?}",
        worker.err()
    );
}
