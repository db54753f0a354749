//! Built-in policy templates (JSONC text, named by `-t NAME` or
//! `"extends": "NAME"`) and the commented starter file that
//! `sbx config init` writes.
//!
//! The templates follow fence's templates of the same names
//! (`internal/templates/*.json` in fencesandbox/fence), restricted to the keys
//! sbx implements and tightened where fence's choice is too broad for sbx
//! (see the comments inside each template).

/// One built-in template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    pub name: &'static str,
    /// One line for `sbx config templates`.
    pub summary: &'static str,
    /// The template as JSONC, parsed like a policy file.
    pub text: &'static str,
}

/// All built-in templates, in the order `sbx` lists them.
pub fn templates() -> &'static [Template] {
    TEMPLATES
}

/// The template called `name`, if any.
pub fn template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

static TEMPLATES: &[Template] = &[
    Template {
        name: "default",
        summary: "the built-in default: no network, everything readable, writes only to the working directory and a private /tmp",
        text: DEFAULT,
    },
    Template {
        name: "code",
        summary: "for AI coding agents: LLM APIs, git hosts and package registries reachable; credentials unreadable",
        text: CODE,
    },
    Template {
        name: "code-strict",
        summary: "like code, but reads are denied by default except the project and the agents' own config and cache",
        text: CODE_STRICT,
    },
    Template {
        name: "code-relaxed",
        summary: "like code, but every domain is allowed except the denied ones",
        text: CODE_RELAXED,
    },
    Template {
        name: "local-dev-server",
        summary: "run a dev server in the sandbox and reach dev servers on the host's common dev ports",
        text: LOCAL_DEV_SERVER,
    },
    Template {
        name: "disable-telemetry",
        summary: "every domain allowed except analytics, telemetry and error-reporting services",
        text: DISABLE_TELEMETRY,
    },
];

const DEFAULT: &str = r#"// The built-in default policy: no network access, the whole filesystem
// readable, writes only to the working directory and a private /tmp (which
// sbx always adds).
{}
"#;

const CODE: &str = r#"// For AI coding agents (Claude Code, Codex, Copilot, opencode, ...).
// Follows fence's "code" template. Differences: no "*.amazonaws.com" (it
// would let a process upload to any S3 bucket), no writes to ~/.config or
// ~/.local/share but opencode's own directories (autostart entries and
// systemd user units there run outside the sandbox), no writes to .git/hooks, and credentials such as ~/.npmrc and
// **/.env are unreadable, not merely unwritable.
{
  "network": {
    "allowedDomains": [
      // LLM APIs and the agents' sign-in: Claude Code signs in at
      // platform.claude.com and claude.ai, Codex at auth.openai.com and
      // chatgpt.com, gemini-cli at Google's OAuth and Code Assist endpoints.
      "api.anthropic.com",
      "*.anthropic.com",
      "claude.ai",
      "*.claude.ai",
      "claude.com",
      "*.claude.com",
      "api.openai.com",
      "auth.openai.com",
      "chatgpt.com",
      // Codex asks for its feature flags at start.
      "ab.chatgpt.com",
      "oauth2.googleapis.com",
      "accounts.google.com",
      "cloudcode-pa.googleapis.com",
      "api.githubcopilot.com",
      "*.githubcopilot.com",
      "generativelanguage.googleapis.com",
      "api.mistral.ai",
      "api.cohere.ai",
      "api.together.xyz",
      "openrouter.ai",
      // gemini-cli's usage statistics (Clearcut), sent every few seconds
      // unless its privacy.usageStatisticsEnabled is false; disable-telemetry
      // denies it.
      "play.googleapis.com",
      // Agent services: opencode's own models, its model list
      // (models.opencode.ai) and its sign-in.
      "opencode.ai",
      "*.opencode.ai",
      "ampcode.com",
      "*.ampcode.com",
      "*.factory.ai",
      "*.cursor.sh",
      "models.dev",
      // Git hosting
      "github.com",
      "*.github.com",
      "*.githubusercontent.com",
      "gitlab.com",
      "bitbucket.org",
      // Package registries
      "registry.npmjs.org",
      "*.npmjs.org",
      "registry.yarnpkg.com",
      "pypi.org",
      "files.pythonhosted.org",
      "crates.io",
      "static.crates.io",
      "index.crates.io",
      "proxy.golang.org",
      "sum.golang.org",
      "rubygems.org",
      "index.rubygems.org",
    ],
    "deniedDomains": [
      // Cloud metadata services (credential theft)
      "169.254.169.254",
      "metadata.google.internal",
      "instance-data.ec2.internal",
      // Telemetry
      "statsig.anthropic.com",
      "*.sentry.io",
    ],
    // Agents start dev servers and test servers inside the sandbox. The
    // sandbox's own loopback is free to bind anyway; this matters only where
    // the sandbox shares the host's network.
    "allowLocalBinding": true,
  },
  "filesystem": {
    // Caches, package stores, logs and update checks, from each tool's
    // documentation: the command writes them in copies of its own that sbx keeps
    // for your sandboxes (sbx's privateWrite, in ~/.local/state/sbx/private),
    // never in yours: a host tool that trusts its cache (cargo's registry
    // sources with their build.rs, pip's built wheels, Go's build cache,
    // Gradle's compiled scripts) must not run what a sandboxed command put there.
    // The first install in a sandbox downloads again; later ones use the copy.
    // ~/.cache holds pip, uv, poetry, pnpm, yarn classic, Go's build cache.
    // A trailing "/" names a directory sbx creates when it is missing, so that
    // a fresh user's first install works (only these, not every tool's).
    "privateWrite": [
      "~/.cache/",
      // npm: _cacache, _npx, _logs, _update-notifier-last-checked (npm's
      // configuration is ~/.npmrc, outside).
      "~/.npm/",
      "~/.local/share/pnpm/store",
      "~/.local/state/pnpm",
      "~/.yarn/berry",
      // Bun's package cache only: ~/.bun/bin is on PATH.
      "~/.bun/install/cache",
      "~/.cargo/registry",
      "~/.cargo/git",
      "~/go/pkg/mod",
      // Gradle's and Maven's dependency caches (not ~/.gradle/wrapper, whose
      // distributions ./gradlew runs on the host).
      "~/.gradle/caches",
      "~/.m2/repository",
    ],
    "allowWrite": [
      // Never a PATH directory (~/.cargo/bin, ~/.bun/bin, ~/.yarn/bin,
      // ~/.local/share/pnpm itself: sbx keeps them read-only anyway) nor
      // executable configuration (~/.npmrc, ~/.cargo/config.toml,
      // ~/.gradle/init.d, ~/.m2/settings.xml, ~/.yarnrc).
      // Cargo's lock files (files: writable when they exist; ~/.cargo itself
      // holds config.toml, so it is not). Not its last-use database
      // (~/.cargo/.global-cache): the host's cargo deletes the paths it
      // names when it cleans its caches, and the sandbox's registry is its own.
      "~/.cargo/.package-cache",
      "~/.cargo/.package-cache-mutate",
      // The agents' own state, created when missing (a trailing "/") for the
      // agents sbx's tests start (Claude Code, Codex, gemini-cli, opencode,
      // aider). What of it runs commands on the host (hooks, MCP servers,
      // notify commands) sbx compares before and after the session and puts
      // back (see "host code" in the README). Not ~/.claude.json: Claude Code
      // writes its state in a copy in ~/.claude that sbx merges back after the
      // session (CLAUDE_CONFIG_DIR; see "Claude Code" in the README).
      "~/.claude/",
      "~/.codex/",
      "~/.cursor",
      "~/.opencode",
      "~/.gemini/",
      "~/.factory",
      "~/.copilot",
      "~/.amp",
      // opencode's data (sessions, logs, its database, sign-in) and state,
      // and its configuration directory, which it will not start without
      // writing: its opencode.json(c) and package.json are compared and put
      // back like the other agents' settings; the plugins, tools and packages
      // it loads on the host there stay read-only whatever a policy says (as
      // do gemini-cli's extensions and commands, Codex's rules).
      "~/.local/share/opencode/",
      "~/.local/state/opencode/",
      "~/.config/opencode/",
      // aider's caches and analytics id (its chat history and tags cache
      // are in the project).
      "~/.aider/",
    ],
    "denyRead": [
      // Keys and cloud credentials
      "~/.ssh",
      "~/.gnupg",
      "~/.aws",
      "~/.azure",
      "~/.config/gcloud",
      "~/.kube",
      "~/.docker/config.json",
      // Tokens of package managers and git tools
      "~/.netrc",
      "~/.npmrc",
      "~/.pypirc",
      "~/.git-credentials",
      "~/.cargo/credentials",
      "~/.cargo/credentials.toml",
      "~/.config/gh/hosts.yml",
      // Project secrets
      "**/.env",
      "**/.env.*",
    ],
    "denyWrite": [
      "**/.env",
      "**/.env.*",
      "**/*.key",
      "**/*.pem",
      "**/*.p12",
      "**/*.pfx",
      // Hooks run outside the sandbox the next time you use git.
      "**/.git/hooks",
    ],
  },
}
"#;

const CODE_STRICT: &str = r#"// Like "code", but nothing outside the system paths is readable unless listed
// here. Follows fence's "code-strict" template.
{
  "extends": "code",
  "filesystem": {
    "defaultDenyRead": true,
    "allowRead": [
      // The project
      ".",
      // The agents' own settings
      "~/.claude",
      "~/.claude.json",
      "~/.codex",
      "~/.cursor",
      "~/.opencode",
      "~/.gemini",
      "~/.factory",
      "~/.local/share/opencode",
      "~/.local/state/opencode",
      "~/.aider",
      // XDG config and caches (credentials there stay denied by "code")
      "~/.config",
      "~/.cache",
    ],
  },
}
"#;

const CODE_RELAXED: &str = r#"// Like "code", but every domain is allowed; "deniedDomains" still applies.
// Follows fence's "code-relaxed" template.
{
  "extends": "code",
  "network": {
    "allowedDomains": ["*"],
  },
}
"#;

const LOCAL_DEV_SERVER: &str = r#"// Run a dev server inside the sandbox and reach dev servers on the host.
// fence's "local-dev-server" sets allowLocalBinding and allowLocalOutbound;
// on Linux the host ports must be listed, so common dev ports are listed
// here. Database ports (5432, 6379, ...) are deliberately not: add them in
// your own file if the sandbox should reach your databases.
{
  "network": {
    // Kept for fence files: the sandbox's own loopback is free to bind anyway.
    "allowLocalBinding": true,
    "allowLocalOutboundPorts": [3000, 3001, 4000, 4200, 5000, 5173, 8000, 8080, 8888, 9000],
  },
}
"#;

const DISABLE_TELEMETRY: &str = r#"// Allow every domain except analytics, telemetry and error reporting.
// Follows the network part of fence's "disable-telemetry" template.
{
  "network": {
    "allowedDomains": ["*"],
    "deniedDomains": [
      // Error reporting
      "sentry.io",
      "*.sentry.io",
      "*.bugsnag.com",
      "*.rollbar.com",
      "crashlytics.com",
      "*.crashlytics.com",
      // Product analytics and feature flags
      "*.posthog.com",
      "statsig.com",
      "*.statsig.com",
      "statsig.anthropic.com",
      // gemini-cli's usage statistics
      "play.googleapis.com",
      "*.segment.io",
      "*.segment.com",
      "*.amplitude.com",
      "*.mixpanel.com",
      "*.heap.io",
      "*.heapanalytics.com",
      "*.launchdarkly.com",
      "*.split.io",
      "*.pendo.io",
      "*.intercom.io",
      "*.intercom.com",
      // Session recording
      "*.fullstory.com",
      "*.hotjar.com",
      "*.hotjar.io",
      "*.logrocket.io",
      "*.logrocket.com",
      // Monitoring
      "*.datadoghq.com",
      "*.newrelic.com",
      "*.nr-data.net",
      // Mobile attribution
      "*.appsflyer.com",
      "*.adjust.com",
      "*.branch.io",
    ],
  },
}
"#;

/// What `sbx config init` writes: every key sbx implements, set to the
/// built-in default, with a comment explaining it. Parses to
/// `Config::default()`.
pub const STARTER: &str = r#"// sbx policy file. sbx uses the nearest sbx.jsonc (or sbx.json) in the
// working directory or a parent, else ~/.config/sbx/sbx.jsonc, else the
// built-in default. `sbx config show` prints the policy in effect.
// The field names are fence's, so a fence.json works here unchanged.
{
  // Start from a built-in template ("code", "code-strict", "code-relaxed",
  // "local-dev-server", "disable-telemetry") or from another file, given
  // relative to this one ("./base.jsonc"). Lists in this file are added to
  // the template's lists; a true here turns a setting on.
  // "extends": "code",

  "network": {
    // Domains the sandbox may reach through sbx's proxy; everything else is
    // refused. "example.com" matches that host only, "*.example.com" its
    // subdomains only, "*" every domain.
    "allowedDomains": [],
    // Domains refused even when allowedDomains matches them.
    "deniedDomains": [],
    // Allowed domains that may resolve to private or loopback addresses
    // (an internal registry); others that do are refused, so that a name
    // cannot be pointed at this machine or network (DNS rebinding).
    "allowPrivateResolution": [],
    // Let the sandbox listen on TCP ports where it shares the host's network;
    // its own network namespace's loopback is free to bind without it.
    "allowLocalBinding": false,
    // Ports on the host's loopback the sandbox may connect to, e.g. [5432].
    "allowLocalOutboundPorts": [],
    // Unix sockets the sandbox may connect to, e.g. ["/run/docker.sock"].
    "allowUnixSockets": [],
    // Let the sandbox connect to any Unix socket.
    "allowAllUnixSockets": false
  },

  "filesystem": {
    // If true, nothing is readable except system paths and allowRead.
    "defaultDenyRead": false,
    // Paths readable when defaultDenyRead is true, e.g. ["."].
    "allowRead": [],
    // Paths never readable, e.g. ["~/.ssh", "**/.env"].
    "denyRead": [],
    // Paths writable besides the working directory and the private /tmp,
    // e.g. ["~/.config/myapp"]: the host's own, shared with the sandbox.
    "allowWrite": [],
    // Directories of your home the command writes in copies of its own that
    // sbx keeps for your sandboxes, never yours: caches your tools trust,
    // e.g. ["~/.cache/", "~/.cargo/registry"] (a trailing "/": created
    // when missing).
    "privateWrite": [],
    // Paths never writable, even inside allowWrite, e.g. ["**/.git/hooks"].
    "denyWrite": [],
    // Allow access to your git configuration (~/.gitconfig, ~/.config/git).
    "allowGitConfig": false
  }
}
"#;
