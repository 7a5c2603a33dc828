use std::collections::HashMap;
use std::path::Path;

use super::*;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn load_str(text: &str, vars: &[(&str, &str)]) -> Result<Loaded, Vec<Diagnostic>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tidemark.yaml");
    std::fs::write(&path, text).expect("write");
    load(&path, &env(vars))
}

const MINIMAL: &str = "integration: {identifier: demo}\nsource: {type: snapshot, path: snap}\ncatalog: {type: local}\n";

fn messages(errors: &[Diagnostic]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn variables_are_substituted_and_dollar_dollar_escapes() {
    let e = env(&[("A", "x"), ("B", "y")]);
    assert_eq!(substitute_vars("${A}-${B}", &e).as_deref(), Ok("x-y"));
    assert_eq!(
        substitute_vars("$${A} costs $5", &e).as_deref(),
        Ok("${A} costs $5")
    );
    assert_eq!(
        substitute_vars("${MISSING}", &e),
        Err("environment variable MISSING is not set".to_string())
    );
}

#[test]
fn role_arns_are_recognised() {
    assert!(is_role_arn(
        "arn:aws:iam::111111111111:role/PortOceanReadRole"
    ));
    assert!(is_role_arn(
        "arn:aws-cn:iam::111111111111:role/path/to/Role"
    ));
    assert!(!is_role_arn("arn:aws:iam::1111:role/X"));
    assert!(!is_role_arn("arn:aws:iam::111111111111:user/X"));
}

#[test]
fn a_minimal_config_gets_the_documented_defaults() {
    let (config, _) = load_str(MINIMAL, &[]).expect("valid");
    assert_eq!(config.integration.identifier, "demo");
    assert_eq!(config.resync_interval, Duration::from_secs(3600));
    assert_eq!(config.watch_cache_limit_mib, 512);
    assert_eq!(config.mapping_files[0].name, builtin::AWS_MAPPING_NAME);
    match &config.catalog {
        CatalogConfig::Local { path } => {
            assert!(path.ends_with(".tidemark/catalog.db"), "{}", path.display())
        }
        other => panic!("unexpected {other:?}"),
    }
    match &config.source {
        SourceConfig::Snapshot { path, regions } => {
            assert!(path.ends_with("snap") && path.is_absolute() || path.parent().is_some());
            assert_eq!(regions, &Regions::Enabled);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unknown_keys_are_errors_with_positions_and_a_hint() {
    let errors =
        load_str(&format!("{MINIMAL}resynk: {{interval: 1h}}\n"), &[]).expect_err("unknown key");
    let text = messages(&errors);
    assert!(
        text.contains(":4:1: unknown key resynk (did you mean resync?)"),
        "{text}"
    );
}

#[test]
fn an_unset_variable_is_an_error_naming_it() {
    let errors = load_str(
        "integration: {identifier: demo}\nsource: {type: aws, accounts: {externalId: '${EXTERNAL_ID}'}}\ncatalog: {type: local}\n",
        &[],
    )
    .expect_err("unset");
    assert!(
        messages(&errors).contains(":2:44: environment variable EXTERNAL_ID is not set"),
        "{}",
        messages(&errors)
    );
}

#[test]
fn port_settings_fall_back_to_port_and_ocean_variables() {
    let text = "integration: {identifier: demo}\nsource: {type: snapshot, path: s}\ncatalog: {type: port}\n";
    let (config, _) = load_str(
        text,
        &[
            ("OCEAN__PORT__CLIENT_ID", "id"),
            ("PORT_CLIENT_SECRET", "sec"),
            ("PORT_BASE_URL", "https://api.us.port.io/"),
        ],
    )
    .expect("valid");
    match config.catalog {
        CatalogConfig::Port(port) => {
            assert_eq!(port.client_id.expose(), "id");
            assert_eq!(port.client_secret.expose(), "sec");
            assert_eq!(port.base_url, "https://api.us.port.io");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn ocean_variables_fill_the_aws_accounts_and_integration() {
    let text = "source: {type: aws}\ncatalog: {type: local}\n";
    let (config, _) = load_str(
        text,
        &[
            ("OCEAN__INTEGRATION__IDENTIFIER", "from-ocean"),
            (
                "OCEAN__INTEGRATION__CONFIG__ACCOUNT_ROLE_ARNS",
                r#"["arn:aws:iam::222222222222:role/R"]"#,
            ),
            ("OCEAN__INTEGRATION__CONFIG__EXTERNAL_ID", "ext"),
        ],
    )
    .expect("valid");
    assert_eq!(config.integration.identifier, "from-ocean");
    match config.source {
        SourceConfig::Aws(aws) => {
            assert_eq!(
                aws.account_role_arns,
                Some(vec!["arn:aws:iam::222222222222:role/R".to_string()])
            );
            assert_eq!(aws.external_id.as_ref().map(Secret::expose), Some("ext"));
            assert_eq!(aws.concurrency_accounts, 5);
            assert_eq!(aws.requests_per_second, 10.0);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn secrets_can_come_from_files_relative_to_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("secret.txt"), "s3cr3t\n").expect("write");
    let path = dir.path().join("tidemark.yaml");
    std::fs::write(
        &path,
        "integration: {identifier: demo}\nsource: {type: snapshot, path: s}\ncatalog: {type: port, clientId: x, clientSecretFile: secret.txt}\n",
    )
    .expect("write");
    let (config, _) = load(&path, &env(&[])).expect("valid");
    let CatalogConfig::Port(port) = &config.catalog else {
        panic!("port")
    };
    assert_eq!(port.client_secret.expose(), "s3cr3t");
    assert!(!format!("{config:?}").contains("s3cr3t"));
}

#[test]
fn both_arn_keys_are_an_error() {
    let errors = load_str(
        "integration: {identifier: demo}\nsource:\n  type: aws\n  accounts:\n    accountRoleArn: arn:aws:iam::111111111111:role/R\n    accountRoleArns: [arn:aws:iam::222222222222:role/R]\ncatalog: {type: local}\n",
        &[],
    )
    .expect_err("both");
    assert!(
        messages(&errors).contains(":6:22: set accountRoleArn"),
        "{}",
        messages(&errors)
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let errors = load_str(
        "integration: {identifier: Bad_Id}\nsource: {type: nope}\ncatalog: {type: local, baseUrl: x}\nresync: {interval: soon}\n",
        &[],
    )
    .expect_err("invalid");
    assert_eq!(errors.len(), 4, "{}", messages(&errors));
}

#[test]
fn a_list_instead_of_a_map_is_a_clear_error() {
    let errors = load_str("- a\n- b\n", &[]).expect_err("list");
    assert!(
        messages(&errors).contains(":1:1: a tidemark config must be a map"),
        "{}",
        messages(&errors)
    );
    let errors = load_str("", &[]).expect_err("empty");
    assert!(
        messages(&errors).contains("found an empty file"),
        "{}",
        messages(&errors)
    );
}

#[test]
fn a_config_symlink_loop_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::os::unix::fs::symlink(&b, &a).expect("symlink");
    std::os::unix::fs::symlink(&a, &b).expect("symlink");
    let errors = load(&a, &env(&[])).expect_err("loop");
    assert!(
        messages(&errors).contains("cannot read the config file"),
        "{}",
        messages(&errors)
    );
}

#[test]
fn blueprints_defined_twice_differently_are_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (sub, title) in [("one", "A"), ("two", "B")] {
        let d = dir.path().join(sub);
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::write(d.join("m.yaml"), "resources: []\n").expect("write");
        std::fs::write(
            d.join("blueprints.json"),
            format!(
                r#"[{{"identifier": "x", "title": "{title}", "schema": {{"properties": {{}}}}}}]"#
            ),
        )
        .expect("write");
    }
    let path = dir.path().join("tidemark.yaml");
    std::fs::write(&path, format!("{MINIMAL}mappings: [one, two]\n")).expect("write");
    let errors = load(&path, &env(&[])).expect_err("conflict");
    assert!(
        messages(&errors).contains("blueprint \"x\" is defined differently"),
        "{}",
        messages(&errors)
    );
}

#[test]
fn the_schemas_accept_the_documented_example_and_reject_unknown_keys() {
    let ok = "integration: {identifier: aws-prod, adopt: []}\nsource:\n  type: aws\n  accounts:\n    accountRoleArn: arn:aws:iam::111111111111:role/PortOceanReadRole\n    memberAuth: auto\n  regions: enabled\n  concurrency: {accounts: 5, requestsPerSecond: 10}\ncatalog: {type: port, baseUrl: 'https://api.port.io', clientId: x, clientSecret: y}\nmappings: [builtin:aws]\nresync: {interval: 1h}\nwatch: {cacheLimitMiB: 512}\n";
    assert_eq!(schema::check(schema::Schema::Config, "t.yaml", ok), vec![]);
    let bad = format!("{ok}extra: 1\n");
    let errors = schema::check(schema::Schema::Config, "t.yaml", &bad);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        schema::check(schema::Schema::Mapping, "m.yaml", builtin::AWS_MAPPING),
        vec![]
    );
}

#[test]
fn validate_print_masks_secrets() {
    let text = "integration: {identifier: demo}\nsource: {type: aws, accounts: {externalId: ext-123}}\ncatalog: {type: port, clientId: id-123, clientSecret: sec-123}\n";
    let (config, _) = load_str(text, &[]).expect("valid");
    let printed = print::to_yaml(&print::effective(&config));
    assert!(
        printed.contains("clientSecret: '***'") || printed.contains("clientSecret: \"***\""),
        "{printed}"
    );
    for secret in ["ext-123", "id-123", "sec-123"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    let _ = Path::new("");
}

#[test]
fn moving_keys_within_a_section_is_no_change_to_that_section() {
    let (a, _) = load_str(
        "integration: {identifier: demo, adopt: []}\nsource: {type: snapshot, path: snap}\ncatalog: {type: local}\n",
        &[],
    )
    .expect("valid");
    let (b, _) = load_str(
        "integration: {adopt: [], identifier: demo}\nsource: {path: snap, type: snapshot}\ncatalog: {type: local}\n",
        &[],
    )
    .expect("valid");
    assert_ne!(a.hash, b.hash, "the text differs");
    assert_eq!(a.section_hashes.integration, b.section_hashes.integration);
    assert_eq!(a.section_hashes.source, b.section_hashes.source);
    assert_eq!(
        crate::watch::reload::classify(&a, &b),
        crate::watch::reload::Change::Apply {
            source: false,
            mappings: false,
            settings: false
        }
    );
}

#[test]
fn variables_that_fill_secret_fields_are_hidden_from_jq() {
    let text = "integration: {identifier: demo}\n\
        source: {type: aws, accounts: {accountRoleArns: ['arn:aws:iam::222222222222:role/R'], externalId: 'x-${MY_EXT}'}}\n\
        catalog: {type: port, clientId: '${MY_ID}', clientSecret: '${MY_SECRET}', baseUrl: '${MY_URL}'}\n";
    let (config, _) = load_str(
        text,
        &[
            ("MY_EXT", "ext"),
            ("MY_ID", "id"),
            ("MY_SECRET", "sec"),
            ("MY_URL", "https://api.port.io"),
        ],
    )
    .expect("valid");
    let hidden = &config.mappings.options.hidden_env;
    for name in ["MY_EXT", "MY_ID", "MY_SECRET", "PORT_CLIENT_SECRET"] {
        assert!(
            hidden.iter().any(|h| h == name),
            "{name} is visible: {hidden:?}"
        );
    }
    assert!(
        !hidden.iter().any(|h| h == "MY_URL"),
        "a variable of a setting that is not secret is hidden: {hidden:?}"
    );
}

#[test]
fn schema_messages_never_show_a_secret_value() {
    for text in [
        "integration: {identifier: demo}\nsource: {type: snapshot, path: s}\ncatalog: {type: local, clientSecret: s3cr3t-v}\n",
        "integration: {identifier: demo}\nsource: {type: aws, accounts: {externalId: [s3cr3t-v]}}\ncatalog: {type: port, clientId: {k: s3cr3t-v}, clientSecret: 98765432123}\n",
    ] {
        let errors = schema::check(schema::Schema::Config, "t.yaml", text);
        assert!(!errors.is_empty() || text.contains("type: port"), "{text}");
        let shown = messages(&errors);
        for secret in ["s3cr3t-v", "98765432123"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}

#[test]
fn a_secret_written_as_a_number_is_an_error_that_does_not_show_it() {
    let text = "integration: {identifier: demo}\nsource: {type: snapshot, path: s}\ncatalog: {type: port, clientId: '12', clientSecret: 0123456789}\n";
    let errors = load_str(text, &[]).expect_err("a number is not a secret");
    let shown = messages(&errors);
    assert!(
        shown.contains("clientSecret must be a quoted string"),
        "{shown}"
    );
    assert!(!shown.contains("123456789"), "{shown}");
}

#[test]
fn numeric_settings_out_of_their_bounds_are_errors_not_panics_later() {
    let aws = |concurrency: &str| {
        format!(
            "integration: {{identifier: demo}}\nsource: {{type: aws, concurrency: {concurrency}}}\ncatalog: {{type: local}}\n"
        )
    };
    for (text, expected) in [
        (
            aws("{accounts: 1e300}"),
            "concurrency.accounts must be a whole number from 1 to 1000",
        ),
        (
            aws("{accounts: 2.5}"),
            "concurrency.accounts must be a whole number",
        ),
        (
            aws("{requestsPerSecond: 1e-300}"),
            "concurrency.requestsPerSecond must be a number from 0.02",
        ),
        (
            aws("{requestsPerSecond: .nan}"),
            "concurrency.requestsPerSecond must be a number from 0.02",
        ),
        (
            aws("{requestsPerSecond: .inf}"),
            "concurrency.requestsPerSecond must be a number from 0.02",
        ),
        (
            format!("{MINIMAL}watch: {{cacheLimitMiB: 1e30}}\n"),
            "watch.cacheLimitMiB must be a whole number from 0",
        ),
        (
            format!("{MINIMAL}watch: {{cacheLimitMiB: -1}}\n"),
            "watch.cacheLimitMiB must be a whole number from 0",
        ),
    ] {
        let errors = load_str(&text, &[]).expect_err(&text);
        let shown = messages(&errors);
        assert!(shown.contains(expected), "{text}: {shown}");
    }
    let (config, _) =
        load_str(&aws("{accounts: 1000, requestsPerSecond: 0.5}"), &[]).expect("in bounds");
    match config.source {
        SourceConfig::Aws(aws) => {
            assert_eq!(aws.concurrency_accounts, 1000);
            assert_eq!(aws.requests_per_second, 0.5);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_base_url_with_credentials_is_refused_without_showing_them_and_plain_http_is_a_warning() {
    let port = |url: &str| {
        format!(
            "integration: {{identifier: demo}}\nsource: {{type: snapshot, path: s}}\ncatalog: {{type: port, clientId: i, clientSecret: s, baseUrl: '{url}'}}\n"
        )
    };
    let errors =
        load_str(&port("https://admin:hunter2@api.port.io"), &[]).expect_err("credentials");
    let shown = messages(&errors);
    assert!(shown.contains("must not hold credentials"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");

    for remote in ["http://port.internal.example", "http://127.evil.example:80"] {
        let (_, warnings) = load_str(&port(remote), &[]).expect("valid");
        assert!(
            messages(&warnings).contains("plain http"),
            "{remote}: {warnings:?}"
        );
    }
    for local in [
        "http://127.0.0.1:8080",
        "http://localhost:9000/",
        "https://api.port.io",
    ] {
        let (_, warnings) = load_str(&port(local), &[]).expect("valid");
        assert!(warnings.is_empty(), "{local}: {warnings:?}");
    }
    let errors = load_str(&port("ftp://api.port.io"), &[]).expect_err("not http");
    assert!(messages(&errors).contains("must be an http(s) URL"));
}

#[test]
fn a_broken_link_in_a_mapping_folder_is_an_error_and_hidden_files_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maps = dir.path().join("maps");
    std::fs::create_dir(&maps).expect("mkdir");
    std::fs::write(maps.join("a.yaml"), "resources: []\n").expect("write");
    // An Emacs lock file: a dangling link with a .yaml name.
    std::os::unix::fs::symlink("user@host.123", maps.join(".#a.yaml")).expect("symlink");
    let path = dir.path().join("tidemark.yaml");
    let config = format!("{MINIMAL}mappings: [maps]\n");
    std::fs::write(&path, &config).expect("write");
    let (loaded, _) = load(&path, &env(&[])).expect("the lock file is ignored");
    assert_eq!(loaded.mapping_files.len(), 1);

    std::os::unix::fs::symlink(maps.join("c.yaml"), maps.join("b.yaml")).expect("symlink");
    std::os::unix::fs::symlink(maps.join("b.yaml"), maps.join("c.yaml")).expect("symlink");
    let errors = load(&path, &env(&[])).expect_err("a looping link");
    let shown = messages(&errors);
    assert!(
        shown.contains("cannot read the mapping file") && shown.contains("b.yaml"),
        "{shown}"
    );
}

#[test]
fn a_region_that_is_not_spelt_like_one_is_a_config_error_at_its_position() {
    let text = "integration: {identifier: demo}\nsource:\n  type: snapshot\n  path: s\n  regions: [eu-west-1, EU-WEST-2]\ncatalog: {type: local}\n";
    let errors = load_str(text, &[]).expect_err("a misspelt region");
    let shown = messages(&errors);
    assert!(shown.contains(":5:"), "{shown}");
    assert!(
        shown.contains("\"EU-WEST-2\" is not a region name"),
        "{shown}"
    );
}

#[test]
fn file_names_in_messages_leave_out_dot_dot_pairs() {
    assert_eq!(
        display_name(Path::new("examples/demo/../../mappings/aws.yaml")),
        "mappings/aws.yaml"
    );
    assert_eq!(display_name(Path::new("./a/./b.yaml")), "a/b.yaml");
    assert_eq!(
        display_name(Path::new("../shared/m.yaml")),
        "../shared/m.yaml"
    );
    assert_eq!(
        display_name(Path::new("/etc/tidemark/..data/m.yaml")),
        "/etc/tidemark/..data/m.yaml"
    );
}

#[test]
fn the_shard_comes_from_the_config_or_the_pod_name_and_the_flag_wins() {
    let (config, _) =
        load_str(&format!("{MINIMAL}shard: {{index: 1, count: 3}}\n"), &[]).expect("valid");
    assert_eq!(config.shard, Some(Shard { index: 1, count: 3 }));

    // The StatefulSet variant: the index from HOSTNAME, the count from a variable.
    let text = format!("{MINIMAL}shard:\n  index: auto\n  count: ${{SHARDS}}\n");
    let (mut config, _) =
        load_str(&text, &[("SHARDS", "4"), ("HOSTNAME", "tidemark-2")]).expect("valid");
    assert_eq!(config.shard, Some(Shard { index: 2, count: 4 }));
    let pod = env(&[("HOSTNAME", "tidemark-3")]);
    config.resolve_shard(None, &pod).expect("resolves");
    assert_eq!(config.shard, Some(Shard { index: 3, count: 4 }));
    config
        .resolve_shard(Some(Shard { index: 0, count: 2 }), &pod)
        .expect("the flag");
    assert_eq!(config.shard, Some(Shard { index: 0, count: 2 }));
    let no_pod = env(&[]);
    assert!(config.resolve_shard(None, &no_pod).is_err());

    let (config, _) = load_str(MINIMAL, &[]).expect("valid");
    assert_eq!(config.shard, None);
}

#[test]
fn a_shard_index_past_the_count_or_a_missing_count_is_an_error() {
    for (shard, expected) in [
        (
            "{index: 3, count: 3}",
            "shard.index 3 is not below shard.count 3",
        ),
        ("{index: 0}", "shard needs count"),
        ("{count: 2}", "shard needs index"),
        (
            "{index: 0, count: 0}",
            "shard.count must be a whole number from 1",
        ),
        ("{index: 0, count: 2, size: 1}", "size"),
    ] {
        let errors = load_str(&format!("{MINIMAL}shard: {shard}\n"), &[]).expect_err(shard);
        let text = messages(&errors);
        assert!(text.contains(expected), "{shard}: {text}");
    }
}
