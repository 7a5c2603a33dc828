//! `validate --print`: the effective config as YAML, with every secret shown as `***`.

use serde_json::{Value as Json, json};

use super::{CatalogConfig, Config, SourceConfig};
use crate::adapters::aws::MemberAuth;
use crate::core::report::Regions;

/// What a user would have to write to get the same behaviour, defaults filled in.
pub fn effective(config: &Config) -> Json {
    let regions = |r: &Regions| match r {
        Regions::Enabled => json!("enabled"),
        Regions::List(list) => json!(list),
    };
    let source = match &config.source {
        SourceConfig::Snapshot { path, regions: r } => json!({
            "type": "snapshot",
            "path": path.display().to_string(),
            "regions": regions(r),
        }),
        SourceConfig::Aws(aws) => {
            let mut accounts = serde_json::Map::new();
            if let Some(arn) = &aws.account_role_arn {
                accounts.insert("accountRoleArn".into(), json!(arn));
            }
            if let Some(arns) = &aws.account_role_arns {
                accounts.insert("accountRoleArns".into(), json!(arns));
            }
            if aws.external_id.is_some() {
                accounts.insert("externalId".into(), json!("***"));
            }
            let member_auth = match aws.member_auth {
                MemberAuth::Auto => "auto",
                MemberAuth::AssumeRole => "assumeRole",
                MemberAuth::WebIdentity => "webIdentity",
            };
            accounts.insert("memberAuth".into(), json!(member_auth));
            accounts.insert(
                "organizationalUnits".into(),
                json!(aws.organizational_units),
            );
            accounts.insert("exclude".into(), json!(aws.exclude));
            json!({
                "type": "aws",
                "accounts": accounts,
                "regions": regions(&aws.regions),
                "concurrency": {"accounts": aws.concurrency_accounts, "requestsPerSecond": aws.requests_per_second},
            })
        }
    };
    let catalog = match &config.catalog {
        CatalogConfig::Local { path } => {
            json!({"type": "local", "path": path.display().to_string()})
        }
        CatalogConfig::Port(port) => json!({
            "type": "port",
            "baseUrl": port.base_url,
            "clientId": "***",
            "clientSecret": "***",
        }),
    };
    let mappings: Vec<&str> = config
        .mapping_files
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    json!({
        "integration": {"identifier": config.integration.identifier, "adopt": config.integration.adopt},
        "source": source,
        "catalog": catalog,
        "mappings": mappings,
        "resync": {"interval": humantime::format_duration(config.resync_interval).to_string()},
        "watch": {"cacheLimitMiB": config.watch_cache_limit_mib},
        "shard": config.shard_setting.map(|s| json!({
            "index": match s.index {
                crate::core::shard::ShardIndex::Fixed(i) => json!(i),
                crate::core::shard::ShardIndex::Auto => json!("auto"),
            },
            "count": s.count,
        })),
    })
}

/// Block-style YAML for a JSON value; strings are quoted whenever plain YAML could misread them.
pub fn to_yaml(value: &Json) -> String {
    let mut out = String::new();
    write_yaml(value, 0, &mut out);
    out
}

fn write_yaml(value: &Json, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Json::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                out.push_str(&format!("{pad}{}:", scalar(&Json::String(k.clone()))));
                write_child(v, indent, out);
            }
        }
        Json::Array(items) if !items.is_empty() => {
            for v in items {
                out.push_str(&format!("{pad}-"));
                write_child(v, indent, out);
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

fn write_child(v: &Json, indent: usize, out: &mut String) {
    match v {
        Json::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_yaml(v, indent + 2, out);
        }
        Json::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_yaml(v, indent + 2, out);
        }
        _ => out.push_str(&format!(" {}\n", scalar(v))),
    }
}

fn scalar(v: &Json) -> String {
    match v {
        Json::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./*:@".contains(c))
                && !s.starts_with(['-', '*', ':', '@'])
                && !s.contains(": ")
                && crate::core::yaml::parse(s).is_ok_and(|n| n.as_str() == Some(s.as_str()));
            if plain {
                s.clone()
            } else {
                Json::String(s.clone()).to_string()
            }
        }
        Json::Array(_) => "[]".into(),
        Json::Object(_) => "{}".into(),
        other => other.to_string(),
    }
}
