use super::*;
use super::discover::resolve_target;
use crate::limits::Setting;

use std::path::{Path, PathBuf};

fn parse(text: &str) -> Result<ParsedFile, ConfigError> {
    parse_str(text, Path::new("sbx.jsonc"))
}

fn parse_err(text: &str) -> String {
    match parse(text) {
        Ok(p) => panic!("expected an error, parsed {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

fn request<'a>(cwd: &'a Path, xdg: Option<&'a Path>) -> Request<'a> {
    Request {
        file: None,
        template: None,
        cwd,
        xdg_config_home: xdg,
    }
}

fn load_err(req: &Request) -> String {
    match load(req) {
        Ok(l) => panic!("expected an error, loaded {l:?}"),
        Err(e) => e.to_string(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn part(origin: Origin, how: Discovery) -> Part {
    Part { origin, how }
}

fn template_config(name: &str) -> Config {
    parse(template(name).unwrap().text).unwrap().config
}

// --- parsing -----------------------------------------------------------------

#[test]
fn parses_every_field() {
    let text = r#"{
  "network": {
    "allowedDomains": ["example.com", "*.example.org"],
    "deniedDomains": ["bad.example.com"],
    "allowPrivateResolution": ["registry.corp.example"],
    "allowLocalBinding": true,
    "allowLocalOutboundPorts": [5432, 6379],
    "allowUnixSockets": ["/run/docker.sock"],
    "allowAllUnixSockets": true
  },
  "filesystem": {
    "defaultDenyRead": true,
    "allowRead": ["."],
    "denyRead": ["~/.ssh"],
    "allowWrite": ["~/.cache"],
    "denyWrite": ["**/.env"],
    "allowGitConfig": true
  },
  "command": { "deny": ["git push", "git commit -m 'a b'"], "allow": ["git push origin docs"], "useDefaults": false,
               "runtimeExecPolicy": "argv", "acceptSharedBinaryCannotRuntimeDeny": ["chroot"] },
  "limits": { "memory": "4G", "pids": 512, "cpu": 1.5, "tmpSize": "off", "timeout": "10m" }
}"#;
    let parsed = parse(text).unwrap();
    assert_eq!(
        parsed,
        ParsedFile {
            config: Config {
                network: NetworkConfig {
                    allowed_domains: strings(&["example.com", "*.example.org"]),
                    denied_domains: strings(&["bad.example.com"]),
                    allow_private_resolution: strings(&["registry.corp.example"]),
                    allow_local_binding: true,
                    allow_local_outbound_ports: vec![5432, 6379],
                    allow_unix_sockets: strings(&["/run/docker.sock"]),
                    allow_all_unix_sockets: true,
                },
                filesystem: FilesystemConfig {
                    default_deny_read: true,
                    allow_read: strings(&["."]),
                    allow_execute: Vec::new(),
                    deny_read: strings(&["~/.ssh"]),
                    allow_write: strings(&["~/.cache"]),
                    deny_write: strings(&["**/.env"]),
                    allow_git_config: true,
                    private_write: Vec::new(),
                },
                ssh: Default::default(),
                command: CommandConfig {
                    deny: strings(&["git push", "git commit -m 'a b'"]),
                    allow: strings(&["git push origin docs"]),
                    use_defaults: Some(false),
                },
                limits: crate::limits::LimitsConfig {
                    memory: Some(Setting::Value(4 << 30)),
                    pids: Some(Setting::Value(512)),
                    cpu: Some(Setting::Value(1500)),
                    tmp_size: Some(Setting::Off),
                    timeout: Some(Setting::Value(std::time::Duration::from_secs(600))),
                },
            },
            extends: None,
            unsupported: vec![],
        }
    );
}

#[test]
fn comments_and_trailing_commas() {
    let text = "// header\n{\n  /* block\n     comment */\n  \"network\": {\n    \"allowedDomains\": [\"a.example.com\", // one\n      \"b.example.com\",],\n  },\n}\n";
    let parsed = parse(text).unwrap();
    assert_eq!(
        parsed.config.network.allowed_domains,
        strings(&["a.example.com", "b.example.com"])
    );
}

#[test]
fn empty_and_comment_only_text_is_the_default() {
    assert_eq!(parse("").unwrap(), ParsedFile::default());
    assert_eq!(
        parse("  // nothing\n/* here */\n").unwrap(),
        ParsedFile::default()
    );
}

#[test]
fn null_means_not_set() {
    let parsed =
        parse(r#"{"network": null, "filesystem": {"allowRead": null, "defaultDenyRead": null}}"#);
    assert_eq!(parsed.unwrap(), ParsedFile::default());
}

#[test]
fn unknown_key_names_line_column_and_suggestion() {
    let text = "{\n  // comment\n  \"filesytem\": {}\n}";
    assert_eq!(
        parse_err(text),
        r#"sbx.jsonc:3:3: unknown key "filesytem" (did you mean "filesystem"?)"#
    );
}

#[test]
fn unknown_nested_key_after_a_comment() {
    let text = "{\n  \"filesystem\": {\n    /* c */ \"alowWrite\": []\n  }\n}";
    assert_eq!(
        parse_err(text),
        r#"sbx.jsonc:3:13: unknown key "filesystem.alowWrite" (did you mean "filesystem.allowWrite"?)"#
    );
}

#[test]
fn misplaced_key_suggests_its_section() {
    assert_eq!(
        parse_err(r#"{"allowWrite": ["x"]}"#),
        r#"sbx.jsonc:1:2: unknown key "allowWrite" (did you mean "filesystem.allowWrite"?)"#
    );
}

#[test]
fn unknown_key_without_a_close_match() {
    assert_eq!(
        parse_err("{\n  \"network\": {},\n  \"zzzzzz\": 1\n}"),
        r#"sbx.jsonc:3:3: unknown key "zzzzzz""#
    );
}

#[test]
fn first_unknown_key_in_file_order_is_reported() {
    // serde_json sorts keys; the error must still name the first in the file.
    assert_eq!(
        parse_err(r#"{"zzz": 1, "aaa": 2}"#),
        r#"sbx.jsonc:1:2: unknown key "zzz""#
    );
}

#[test]
fn wrong_type_names_key_and_value_position() {
    assert_eq!(
        parse_err(r#"{"network": {"allowLocalBinding": "yes"}}"#),
        r#"sbx.jsonc:1:35: "network.allowLocalBinding" must be true or false, found "yes""#
    );
    assert_eq!(
        parse_err(r#"{"filesystem": {"allowWrite": "/data"}}"#),
        r#"sbx.jsonc:1:31: "filesystem.allowWrite" must be a list of strings, found "/data""#
    );
    assert_eq!(
        parse_err(r#"{"filesystem": {"denyRead": ["a", 7]}}"#),
        r#"sbx.jsonc:1:35: "filesystem.denyRead" must be a list of strings, found 7"#
    );
    assert_eq!(
        parse_err(r#"{"network": []}"#),
        r#"sbx.jsonc:1:13: "network" must be an object, found a list"#
    );
    assert_eq!(
        parse_err("[]"),
        r#"sbx.jsonc:1:1: "(top level)" must be an object, found a list"#
    );
    assert_eq!(
        parse_err(r#"{"extends": 3}"#),
        r#"sbx.jsonc:1:13: "extends" must be a string, found 3"#
    );
}

#[test]
fn ports_must_be_1_to_65535() {
    let text = "{\n  \"network\": {\n    \"allowLocalOutboundPorts\": [8080, \"abc\"]\n  }\n}";
    assert_eq!(
        parse_err(text),
        r#"sbx.jsonc:3:39: "network.allowLocalOutboundPorts" must be a list of port numbers 1-65535, found "abc""#
    );
    for bad in ["0", "65536", "80.5", "-1"] {
        let text = format!(r#"{{"network": {{"allowLocalOutboundPorts": [{bad}]}}}}"#);
        assert_eq!(
            parse_err(&text),
            format!(
                r#"sbx.jsonc:1:42: "network.allowLocalOutboundPorts" must be a list of port numbers 1-65535, found {bad}"#
            )
        );
    }
    let ok = parse(r#"{"network": {"allowLocalOutboundPorts": [1, 65535, 1]}}"#).unwrap();
    assert_eq!(ok.config.network.allow_local_outbound_ports, vec![1, 65535], "a repeated port is one");
    // The proxy's own ports inside the sandbox.
    assert_eq!(
        parse_err(r#"{"network": {"allowLocalOutboundPorts": [5432, 1080]}}"#),
        r#"sbx.jsonc:1:48: "network.allowLocalOutboundPorts" contains 1080, which is not allowed: 1080 is the port of sbx's SOCKS5 proxy inside the sandbox"#
    );
}

#[test]
fn domain_patterns_are_checked_like_fence() {
    assert_eq!(
        parse_err(r#"{"network": {"allowedDomains": ["https://github.com"]}}"#),
        r#"sbx.jsonc:1:33: "network.allowedDomains" contains "https://github.com", which is not allowed: a domain pattern cannot contain a scheme or path"#
    );
    assert_eq!(
        parse_err(r#"{"network": {"deniedDomains": ["*.com"]}}"#),
        r#"sbx.jsonc:1:32: "network.deniedDomains" contains "*.com", which is not allowed: the wildcard is too broad; use "*.example.com", not "*.com""#
    );
    for bad in [
        "api.*.com",
        "example",
        ".example.com",
        "a..b",
        "",
        "exa mple.com",
        "host:443",
        "https://example.com",
        "example.com:0",
        "example.com:99999",
    ] {
        assert!(check_domain(bad).is_err(), "{bad:?} should be rejected");
    }
    for good in [
        "*",
        "localhost",
        "example.com",
        "*.example.com",
        "169.254.169.254",
        "example.com:443",
        "*.example.com:8443",
        "127.0.0.1:8080",
        "[::1]:443",
        "localhost:5432",
    ] {
        assert_eq!(check_domain(good), Ok(()), "{good:?} should be accepted");
    }
}

#[test]
fn empty_paths_are_rejected() {
    assert_eq!(
        parse_err(r#"{"filesystem": {"allowWrite": ["a", ""]}}"#),
        r#"sbx.jsonc:1:37: "filesystem.allowWrite" contains "", which is not allowed: paths must not be empty"#
    );
}

#[test]
fn syntax_errors_point_into_the_original_text() {
    let text = "{\n  // a comment, with a comma,\n  \"network\": [1 2]\n}";
    assert_eq!(
        parse_err(text),
        "sbx.jsonc:3:17: invalid JSONC: expected `,` or `]`"
    );
    assert_eq!(
        parse_err("{\n  /* never closed\n}"),
        "sbx.jsonc:2:3: invalid JSONC: unterminated /* comment"
    );
}

#[test]
fn extends_is_recorded_with_its_position() {
    let parsed = parse("{\n  \"extends\": \"code\"\n}").unwrap();
    assert_eq!(
        parsed.extends,
        Some(ExtendsRef {
            target: "code".into(),
            line: 2,
            column: 14
        })
    );
    assert_eq!(parse(r#"{"extends": ""}"#).unwrap().extends, None);
}

#[test]
fn fence_only_keys_are_accepted_and_reported() {
    let text = r#"{
  "$schema": "https://raw.githubusercontent.com/fencesandbox/fence/main/docs/schema/fence.schema.json",
  "allowPty": true,
  "forceNewSession": null,
  "network": {"allowLocalOutbound": true, "httpProxyPort": 0, "defaultAction": "deny"},
  "filesystem": {"strictDenyRead": true, "allowExecute": [], "wslInterop": false},
  "command": {"deny": ["git push"], "useDefaults": null, "runtimeExecPolicy": "argv"},
  "ssh": {"allowedHosts": ["*.example.com"], "inheritDeny": false},
  "devices": {"mode": "minimal"},
  "macos": {"mach": {"lookup": ["org.chromium.*"]}, "gpu": false}
}"#;
    let parsed = parse(text).unwrap();
    let got: Vec<(&str, usize)> = parsed
        .unsupported
        .iter()
        .map(|u| (u.key.as_str(), u.line))
        .collect();
    assert_eq!(
        got,
        vec![
            ("allowPty", 3),
            ("network.allowLocalOutbound", 5),
            ("network.defaultAction", 5),
            ("filesystem.strictDenyRead", 6),
            ("devices.mode", 9),
            ("macos.mach.lookup", 10),
        ]
    );
    assert!(
        parsed
            .unsupported
            .iter()
            .all(|u| u.file == Path::new("sbx.jsonc"))
    );
    // strictDenyRead implies defaultDenyRead (fence's Validate does the same); the
    // command rules are sbx's too.
    let mut expected = Config::default();
    expected.filesystem.default_deny_read = true;
    expected.command.deny = strings(&["git push"]);
    expected.ssh.allowed_hosts = strings(&["*.example.com"]);
    assert_eq!(parsed.config, expected);
}

#[test]
fn fence_only_keys_are_type_checked_and_spelled_right() {
    assert_eq!(
        parse_err(r#"{"command": {"deny": "git push"}}"#),
        r#"sbx.jsonc:1:22: "command.deny" must be a list of strings, found "git push""#
    );
    assert_eq!(
        parse_err(r#"{"command": {"denny": []}}"#),
        r#"sbx.jsonc:1:14: unknown key "command.denny" (did you mean "command.deny"?)"#
    );
    assert_eq!(
        parse_err(r#"{"devices": {"mode": "full"}}"#),
        r#"sbx.jsonc:1:22: "devices.mode" must be one of "auto", "minimal", "host", found "full""#
    );
    assert_eq!(
        parse_err(r#"{"allowPty": 1}"#),
        r#"sbx.jsonc:1:14: "allowPty" must be true or false, found 1"#
    );
}

#[test]
fn fence_only_key_list() {
    let keys = fence_only_keys();
    for k in [
        "devices.mode",
        "macos.mach.lookup",
        "macos.gpu",
        "allowPty",
        "forceNewSession",
        "network.upstreamProxy",
        "filesystem.wslInterop",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} missing");
    }
    assert!(!keys.iter().any(|x| x == "network.allowedDomains" || x.starts_with("command.") || x.starts_with("ssh.")));
    assert_eq!(keys.len(), 14);
}

// --- merge -------------------------------------------------------------------

#[test]
fn merge_unions_lists_and_ors_booleans() {
    let parent = parse(
        r#"{"network": {"allowedDomains": ["a.example.com", "b.example.com"], "allowLocalBinding": true,
            "allowLocalOutboundPorts": [3000]},
           "filesystem": {"denyRead": ["~/.ssh"]}}"#,
    )
    .unwrap()
    .config;
    let child = parse(
        r#"{"network": {"allowedDomains": ["b.example.com", "c.example.com"], "allowLocalBinding": false,
            "allowLocalOutboundPorts": [3000, 8080]},
           "filesystem": {"defaultDenyRead": true, "allowRead": ["."]}}"#,
    )
    .unwrap()
    .config;
    let mut merged = parent.clone();
    merged.merge_from(&child);
    let mut expected = Config::default();
    expected.network.allowed_domains =
        strings(&["a.example.com", "b.example.com", "c.example.com"]);
    expected.network.allow_local_binding = true; // a child cannot turn it off
    expected.network.allow_local_outbound_ports = vec![3000, 8080];
    expected.filesystem.default_deny_read = true;
    expected.filesystem.allow_read = strings(&["."]);
    expected.filesystem.deny_read = strings(&["~/.ssh"]);
    assert_eq!(merged, expected);

    // Merging into the default is the identity (apart from de-duplication).
    let mut from_default = Config::default();
    from_default.merge_from(&parent);
    assert_eq!(from_default, parent);
}

// --- templates and starter ---------------------------------------------------

#[test]
fn every_template_parses_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&str> = templates().iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "default",
            "code",
            "code-strict",
            "code-relaxed",
            "local-dev-server",
            "disable-telemetry"
        ]
    );
    for t in templates() {
        let parsed = parse_str(t.text, Path::new(t.name)).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            parsed.unsupported.is_empty(),
            "{}: {:?}",
            t.name,
            parsed.unsupported
        );
        assert!(!t.summary.is_empty());
        let req = Request {
            template: Some(t.name),
            ..request(dir.path(), None)
        };
        let loaded = load(&req).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            loaded.chain.last(),
            Some(&part(Origin::Template(t.name), Discovery::TemplateFlag))
        );
    }
    assert_eq!(template_config("default"), Config::default());
}

#[test]
fn template_contents() {
    let code = template_config("code");
    for d in [
        "registry.npmjs.org",
        "*.npmjs.org",
        "pypi.org",
        "files.pythonhosted.org",
        "crates.io",
        "static.crates.io",
        "index.crates.io",
        "proxy.golang.org",
        "sum.golang.org",
        "github.com",
        "*.github.com",
        "*.githubusercontent.com",
        "gitlab.com",
        "bitbucket.org",
        "rubygems.org",
        "api.anthropic.com",
        "api.openai.com",
    ] {
        assert!(code.network.allowed_domains.iter().any(|x| x == d), "{d}");
    }
    for p in [
        "~/.ssh",
        "~/.aws",
        "~/.gnupg",
        "~/.config/gcloud",
        "~/.azure",
        "~/.kube",
        "~/.docker/config.json",
        "~/.netrc",
        "~/.npmrc",
        "~/.pypirc",
        "**/.env",
        "**/.env.*",
    ] {
        assert!(code.filesystem.deny_read.iter().any(|x| x == p), "{p}");
    }
    // Issue 18, point 3: each tool's caches, logs and state are writable, in copies of
    // the sandbox's own (a host tool trusts its cache: issue 13)...
    for p in [
        "~/.cache/",
        "~/.npm/",
        "~/.local/share/pnpm/store",
        "~/.yarn/berry",
        "~/.bun/install/cache",
        "~/.cargo/registry",
        "~/.cargo/git",
        "~/go/pkg/mod",
        "~/.gradle/caches",
        "~/.m2/repository",
    ] {
        assert!(code.filesystem.private_write.iter().any(|x| x == p), "{p}");
        assert!(!code.filesystem.allow_write.iter().any(|x| Path::new(p).starts_with(x.trim_end_matches('/'))), "{p} is the host's");
    }
    assert!(code.filesystem.allow_write.iter().any(|x| x == "~/.cargo/.package-cache-mutate"));
    // ... and no PATH directory or executable configuration is, nor anything above one.
    for never in [
        "~/.npmrc",
        "~/.yarnrc",
        "~/.yarnrc.yml",
        "~/.cargo/config.toml",
        "~/.cargo/config",
        "~/.cargo/bin",
        "~/.bun/bin",
        "~/.yarn/bin",
        "~/.local/share/pnpm/pnpm",
        "~/.local/bin",
        "~/.gradle/init.d",
        "~/.gradle/gradle.properties",
        "~/.gradle/wrapper",
        "~/.m2/settings.xml",
        "~/.config/pip/pip.conf",
        "~/.pip/pip.conf",
        "~/.config/uv/uv.toml",
        "~/.config/pypoetry",
        "~/go/bin",
        "~/.bashrc",
        // cargo's last-use database: the host's cargo deletes the paths it names.
        "~/.cargo/.global-cache",
    ] {
        let w = code.filesystem.allow_write.iter().chain(&code.filesystem.private_write).find(|x| Path::new(never).starts_with(x.trim_end_matches('/')));
        assert_eq!(w, None, "{never} is writable under code");
    }
    // Claude Code signs in at platform.claude.com (issue 18, point 6).
    for d in ["*.claude.com", "claude.ai", "auth.openai.com", "chatgpt.com"] {
        assert!(code.network.allowed_domains.iter().any(|x| x == d), "{d}");
    }
    assert!(!code.filesystem.default_deny_read);

    let req = Request {
        template: Some("code-strict"),
        ..request(Path::new("/"), None)
    };
    let strict = load(&req).unwrap();
    assert_eq!(
        strict.chain,
        vec![
            part(Origin::Template("code"), Discovery::Extends),
            part(Origin::Template("code-strict"), Discovery::TemplateFlag),
        ]
    );
    assert!(strict.config.filesystem.default_deny_read);
    assert_eq!(strict.config.network, code.network);
    assert_eq!(
        strict.config.filesystem.deny_read,
        code.filesystem.deny_read
    );
    assert_eq!(strict.config.filesystem.allow_read[0], ".");

    let dev = template_config("local-dev-server");
    assert!(dev.network.allow_local_binding);
    assert_eq!(
        dev.network.allow_local_outbound_ports,
        vec![3000, 3001, 4000, 4200, 5000, 5173, 8000, 8080, 8888, 9000]
    );
}

#[test]
fn starter_parses_to_the_default() {
    let parsed = parse(STARTER).unwrap();
    assert_eq!(parsed, ParsedFile::default());
    // Every key sbx implements is present (and explained) in the starter.
    let json = serde_json::to_value(Config::default()).unwrap();
    for (section, keys) in json.as_object().unwrap() {
        assert!(STARTER.contains(&format!("\"{section}\": {{")), "{section}");
        for key in keys.as_object().unwrap().keys() {
            assert!(STARTER.contains(&format!("\"{key}\":")), "{section}.{key}");
        }
    }
}

// --- discovery -----------------------------------------------------------------

#[test]
fn discovery_order() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let xdg = root.join("xdg");
    let project = root.join("project");
    let sub = project.join("a/b");
    fs::create_dir_all(&sub).unwrap();

    // Nothing anywhere: the built-in default.
    let loaded = load(&request(&sub, Some(&xdg))).unwrap();
    assert_eq!(
        loaded.chain,
        vec![part(Origin::BuiltinDefault, Discovery::Default)]
    );
    assert_eq!(loaded.config, Config::default());

    // The user config beats the default.
    let user = write(
        &xdg,
        "sbx/sbx.jsonc",
        r#"{"network": {"allowedDomains": ["user.example.com"]}}"#,
    );
    let loaded = load(&request(&sub, Some(&xdg))).unwrap();
    assert_eq!(
        loaded.chain,
        vec![part(Origin::File(user.clone()), Discovery::UserConfig)]
    );
    assert_eq!(
        loaded.config.network.allowed_domains,
        strings(&["user.example.com"])
    );
    // ... but only when the caller gives a config home.
    let loaded = load(&request(&sub, None)).unwrap();
    assert_eq!(
        loaded.chain,
        vec![part(Origin::BuiltinDefault, Discovery::Default)]
    );

    // The nearest file, found from a subdirectory, beats the user config.
    let json = write(&project, "sbx.json", "{}");
    let loaded = load(&request(&sub, Some(&xdg))).unwrap();
    assert_eq!(
        loaded.chain,
        vec![part(Origin::File(json), Discovery::Nearest)]
    );

    // sbx.jsonc beats sbx.json in the same directory.
    let jsonc = write(&project, "sbx.jsonc", "{}");
    let loaded = load(&request(&sub, Some(&xdg))).unwrap();
    assert_eq!(
        loaded.chain,
        vec![part(Origin::File(jsonc.clone()), Discovery::Nearest)]
    );

    // A nearer file beats a farther one.
    let nearer = write(&sub, "sbx.json", "{}");
    let loaded = load(&request(&sub, Some(&xdg))).unwrap();
    assert_eq!(
        loaded.chain,
        vec![part(Origin::File(nearer), Discovery::Nearest)]
    );

    // -s beats everything; relative to cwd.
    let other = write(
        &project,
        "other.jsonc",
        r#"{"network": {"allowLocalBinding": true}}"#,
    );
    let req = Request {
        file: Some(Path::new("../../other.jsonc")),
        ..request(&sub, Some(&xdg))
    };
    let loaded = load(&req).unwrap();
    assert_eq!(
        loaded.chain,
        vec![part(
            Origin::File(sub.join("../../other.jsonc")),
            Discovery::Flag
        )]
    );
    assert!(loaded.config.network.allow_local_binding);
    let req = Request {
        file: Some(&other),
        ..request(&sub, Some(&xdg))
    };
    assert_eq!(
        load(&req).unwrap().chain,
        vec![part(Origin::File(other), Discovery::Flag)]
    );

    // -t beats the nearest file too.
    let req = Request {
        template: Some("code"),
        ..request(&sub, Some(&xdg))
    };
    assert_eq!(
        load(&req).unwrap().chain,
        vec![part(Origin::Template("code"), Discovery::TemplateFlag)]
    );
}

#[test]
fn flag_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let req = Request {
        file: Some(Path::new("x.jsonc")),
        template: Some("code"),
        ..request(cwd, None)
    };
    assert_eq!(
        load_err(&req),
        "cannot use both -s x.jsonc and -t code; give only one"
    );

    let req = Request {
        file: Some(Path::new("./nope.jsonc")),
        ..request(cwd, None)
    };
    assert_eq!(
        load_err(&req),
        format!(
            "{}/nope.jsonc: the policy file given with -s does not exist",
            cwd.display()
        )
    );

    let req = Request {
        template: Some("cod"),
        ..request(cwd, None)
    };
    assert_eq!(
        load_err(&req),
        r#"unknown template "cod" given with -t (did you mean "code"?) (available: default, code, code-strict, code-relaxed, local-dev-server, disable-telemetry)"#
    );

    // fence ignores a ".json" suffix on template names.
    let req = Request {
        template: Some("code.json"),
        ..request(cwd, None)
    };
    assert_eq!(
        load(&req).unwrap().chain[0].origin,
        Origin::Template("code")
    );
}

// --- extends -------------------------------------------------------------------

#[test]
fn extends_a_template() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "sbx.jsonc",
        r#"{"extends": "code", "network": {"allowedDomains": ["private.example.com", "github.com"]}}"#,
    );
    let loaded = load(&request(dir.path(), None)).unwrap();
    assert_eq!(
        loaded.chain,
        vec![
            part(Origin::Template("code"), Discovery::Extends),
            part(Origin::File(file), Discovery::Nearest),
        ]
    );
    let mut expected = template_config("code");
    expected
        .network
        .allowed_domains
        .push("private.example.com".into());
    assert_eq!(loaded.config, expected);
}

#[test]
fn extends_a_relative_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "base/base.jsonc",
        r#"{"extends": "local-dev-server", "filesystem": {"denyRead": ["~/.ssh"]}}"#,
    );
    let child = write(
        root,
        "proj/sub/child.jsonc",
        "{\n  // relative to this file, not to the working directory\n  \"extends\": \"../../base/base.jsonc\",\n  \"filesystem\": {\"denyRead\": [\"~/.aws\", \"~/.ssh\"]}\n}",
    );
    let req = Request {
        file: Some(&child),
        ..request(root, None)
    };
    let loaded = load(&req).unwrap();
    let base = root.join("proj/sub/../../base/base.jsonc");
    assert_eq!(
        loaded.chain,
        vec![
            part(Origin::Template("local-dev-server"), Discovery::Extends),
            part(Origin::File(base), Discovery::Extends),
            part(Origin::File(child), Discovery::Flag),
        ]
    );
    let mut expected = template_config("local-dev-server");
    expected.filesystem.deny_read = strings(&["~/.ssh", "~/.aws"]);
    assert_eq!(loaded.config, expected);
}

#[test]
fn extends_cycle_is_rejected_naming_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = write(root, "a.jsonc", r#"{"extends": "./b.jsonc"}"#);
    let b = write(root, "b.jsonc", "{\n  \"extends\": \"./a.jsonc\"\n}");
    let req = Request {
        file: Some(&a),
        ..request(root, None)
    };
    assert_eq!(
        load_err(&req),
        format!(
            r#"{b}:2:14: "extends" makes a cycle: {a} -> {b} -> {a}"#,
            a = a.display(),
            b = b.display()
        )
    );

    // A file extending itself.
    let s = write(root, "self.jsonc", r#"{"extends": "./self.jsonc"}"#);
    let req = Request {
        file: Some(&s),
        ..request(root, None)
    };
    assert_eq!(
        load_err(&req),
        format!(
            r#"{s}:1:13: "extends" makes a cycle: {s} -> {s}"#,
            s = s.display()
        )
    );
}

#[test]
fn extends_depth_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..=MAX_EXTENDS_DEPTH {
        write(
            root,
            &format!("f{i}.jsonc"),
            &format!(r#"{{"extends": "./f{}.jsonc"}}"#, i + 1),
        );
    }
    write(root, &format!("f{}.jsonc", MAX_EXTENDS_DEPTH + 1), "{}");
    let first = root.join("f0.jsonc");
    let req = Request {
        file: Some(&first),
        ..request(root, None)
    };
    assert!(matches!(
        load(&req),
        Err(ConfigError::ExtendsTooDeep { .. })
    ));

    // Exactly MAX_EXTENDS_DEPTH hops is fine.
    let second = root.join("f1.jsonc");
    let req = Request {
        file: Some(&second),
        ..request(root, None)
    };
    assert_eq!(load(&req).unwrap().chain.len(), MAX_EXTENDS_DEPTH + 1);
}

#[test]
fn extends_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let f = write(root, "sbx.jsonc", r#"{"extends": "cod"}"#);
    assert_eq!(
        load_err(&request(root, None)),
        format!(
            r#"{}:1:13: "extends" names unknown template "cod" (did you mean "code"?) (available: default, code, code-strict, code-relaxed, local-dev-server, disable-telemetry; a file path must contain "/" or start with ".")"#,
            f.display()
        )
    );
    write(root, "sbx.jsonc", r#"{"extends": "./missing.jsonc"}"#);
    assert_eq!(
        load_err(&request(root, None)),
        format!(
            r#"{}:1:13: "extends" names "./missing.jsonc", but {}/missing.jsonc does not exist"#,
            f.display(),
            root.display()
        )
    );
    // Errors inside an extended file name that file.
    let base = write(
        root,
        "base.jsonc",
        "{\n  \"network\": {\"allowedDomain\": []}\n}",
    );
    write(root, "sbx.jsonc", r#"{"extends": "./base.jsonc"}"#);
    assert_eq!(
        load_err(&request(root, None)),
        format!(
            r#"{}:2:15: unknown key "network.allowedDomain" (did you mean "network.allowedDomains"?)"#,
            base.display()
        )
    );
}

#[test]
fn extends_at_base_is_the_user_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let xdg = root.join("xdg");
    let project = root.join("project");
    let file = write(
        &project,
        "sbx.jsonc",
        r#"{"extends": "@base", "network": {"allowedDomains": ["proj.example.com"]}}"#,
    );
    let loaded = load(&request(&project, Some(&xdg))).unwrap();
    assert_eq!(
        loaded.chain,
        vec![
            part(Origin::BuiltinDefault, Discovery::Extends),
            part(Origin::File(file.clone()), Discovery::Nearest),
        ]
    );
    let user = write(
        &xdg,
        "sbx/sbx.jsonc",
        r#"{"network": {"allowedDomains": ["user.example.com"]}}"#,
    );
    let loaded = load(&request(&project, Some(&xdg))).unwrap();
    assert_eq!(
        loaded.chain,
        vec![
            part(Origin::File(user), Discovery::Extends),
            part(Origin::File(file), Discovery::Nearest),
        ]
    );
    assert_eq!(
        loaded.config.network.allowed_domains,
        strings(&["user.example.com", "proj.example.com"])
    );
}

#[test]
fn unsupported_keys_follow_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let base = write(
        root,
        "base.jsonc",
        "{\n  \"devices\": {\"mode\": \"minimal\"}\n}",
    );
    let top = write(
        root,
        "sbx.jsonc",
        "{\n  \"extends\": \"./base.jsonc\",\n  \"allowPty\": true\n}",
    );
    let loaded = load(&request(root, None)).unwrap();
    assert_eq!(
        loaded.unsupported,
        vec![
            UnsupportedKey {
                key: "devices.mode".into(),
                file: base,
                line: 2
            },
            UnsupportedKey {
                key: "allowPty".into(),
                file: top,
                line: 3
            },
        ]
    );
}

// --- show ----------------------------------------------------------------------

#[test]
fn render_show_output() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let file = write(
        root,
        "sbx.jsonc",
        "{\n  \"extends\": \"local-dev-server\",\n  \"allowPty\": true,\n  \"filesystem\": {\"allowWrite\": [\"~/.cache\"]}\n}",
    );
    let loaded = load(&request(root, None)).unwrap();
    let f = file.display();
    let expected = format!(
        r#"// Policy sources, most general first:
// 1. built-in template "local-dev-server" (extended by {f})
// 2. {f} (nearest sbx.jsonc)
// warning: {f}:3: "allowPty" is a fence setting sbx does not implement; it is ignored
{{
  "network": {{
    "allowedDomains": [],
    "deniedDomains": [],
    "allowPrivateResolution": [],
    "allowLocalBinding": true,
    "allowLocalOutboundPorts": [
      3000,
      3001,
      4000,
      4200,
      5000,
      5173,
      8000,
      8080,
      8888,
      9000
    ],
    "allowUnixSockets": [],
    "allowAllUnixSockets": false
  }},
  "filesystem": {{
    "defaultDenyRead": false,
    "allowRead": [],
    "denyRead": [],
    "allowWrite": [
      "~/.cache"
    ],
    "denyWrite": [],
    "allowGitConfig": false
  }}
}}
"#
    );
    let shown = render_show(&loaded);
    assert_eq!(shown, expected);
    // The output is itself a valid policy file for the same policy.
    assert_eq!(parse(&shown).unwrap().config, loaded.config);

    let default = Loaded {
        config: Config::default(),
        chain: vec![part(Origin::BuiltinDefault, Discovery::Default)],
        unsupported: vec![],
    };
    assert!(render_show(&default).starts_with(
        "// Policy sources, most general first:\n// 1. built-in default policy (no policy file found)\n{\n"
    ));
}

#[test]
fn a_template_cannot_extend_a_file() {
    let ext = ExtendsRef {
        target: "./base.jsonc".into(),
        line: 2,
        column: 14,
    };
    let err = resolve_target(&ext, None, true, None, &template_error_path("code"))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"<template code>:2:14: "extends" of a built-in template must name another template, not "./base.jsonc""#
    );
}

#[test]
fn a_bad_limit_names_the_key_and_line() {
    let err = parse("{\n  \"limits\": {\n    \"memory\": \"lots\"\n  }\n}").unwrap_err().to_string();
    assert!(err.starts_with("sbx.jsonc:3:15: \"limits.memory\" contains \"lots\", which is not allowed: \"lots\" is not a size"), "{err}");
    let err = parse(r#"{ "limits": { "pids": [1] } }"#).unwrap_err().to_string();
    assert!(err.contains("\"limits.pids\"") && err.contains("a number of processes"), "{err}");
    let err = parse(r#"{ "limits": { "timeout": "0s" } }"#).unwrap_err().to_string();
    assert!(err.contains("greater than zero"), "{err}");
}

#[test]
fn command_rules_are_checked_where_they_are_written() {
    let err = parse("{\n  \"command\": {\n    \"deny\": [\"git push\", \"  \"]\n  }\n}").unwrap_err().to_string();
    assert!(err.contains(":3:") && err.contains("\"command.deny\" contains \"  \"") && err.contains("must name a command"), "{err}");
    let err = parse("{\"command\": {\"allow\": [\"git 'push\"]}}").unwrap_err().to_string();
    assert!(err.contains("command.allow") && err.contains("not closed"), "{err}");
    // Lists add up along extends; the nearest useDefaults wins.
    let mut base = parse(r#"{"command": {"deny": ["git push"], "useDefaults": false}}"#).unwrap().config;
    base.merge_from(&parse(r#"{"command": {"deny": ["npm publish"]}}"#).unwrap().config);
    assert_eq!((base.command.deny.len(), base.command.use_defaults), (2, Some(false)));
    base.merge_from(&parse(r#"{"command": {"useDefaults": true}}"#).unwrap().config);
    assert_eq!(base.command.use_defaults, Some(true));
}
