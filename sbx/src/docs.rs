//! What a package installs beside the binary, generated from `cli`'s clap definitions: shell
//! completions (`sbx completions bash|zsh|fish`, clap_complete) and man pages (`sbx man`,
//! clap_mangen). Both see `-t`'s values as the built-in template names, so that the
//! completions offer them and the pages list them.

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
};

use clap::{CommandFactory as _, builder::PossibleValuesParser};

use crate::{
    cli::{Cli, Shell},
    config,
};

/// sbx's clap command, with the template names as `-t`'s possible values. (Parsing keeps
/// `-t` free-form, so that an unknown name gets sbx's own sentence.)
pub fn command() -> clap::Command {
    let names: Vec<&'static str> = config::templates().iter().map(|t| t.name).collect();
    with_template_names(Cli::command(), &names)
}

fn with_template_names(mut cmd: clap::Command, names: &[&'static str]) -> clap::Command {
    if cmd.get_arguments().any(|a| a.get_id() == "template") {
        cmd = cmd.mut_arg("template", |a| a.value_parser(PossibleValuesParser::new(names.iter().copied())));
    }
    let subcommands: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(name, |s| with_template_names(s, names));
    }
    cmd
}

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cmd = command();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Into memory: clap_complete panics when its writer fails (a closed pipe).
    clap_complete::generate(generator, &mut cmd, "sbx", &mut out);
    out
}

/// The command for the pages: built (so that subcommands are named `sbx-run` and so on),
/// with the plain version (the long one is for bug reports) and no `help` subcommand.
fn man_command() -> clap::Command {
    let mut cmd = command().long_version(None::<&'static str>).disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Renders a page with the given source (`.TH`'s "sbx 0.1.0").
fn page(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd).source(format!("sbx {}", env!("CARGO_PKG_VERSION"))).manual("User Commands")
}

/// sbx(1): clap_mangen's page, with the exit statuses and the see-also of a Debian page.
pub fn man_page(out: &mut dyn Write) -> io::Result<()> {
    let man = page(man_command());
    type Section = fn(&clap_mangen::Man, &mut dyn Write) -> io::Result<()>;
    let sections: [Section; 7] = [
        clap_mangen::Man::render_title,
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
        clap_mangen::Man::render_subcommands_section,
        clap_mangen::Man::render_version_section,
    ];
    let mut text = Vec::new();
    for (i, section) in sections.iter().enumerate() {
        if i == sections.len() - 1 {
            text.extend_from_slice(EXTRA_SECTIONS.as_bytes());
        }
        let mut part = Vec::new();
        section(&man, &mut part)?;
        // Each rendering starts with roff's quote-defining preamble: once is enough.
        let part = String::from_utf8_lossy(&part).into_owned();
        let body = if i == 0 { part.as_str() } else { strip_preamble(&part) };
        text.extend_from_slice(body.as_bytes());
    }
    out.write_all(&text)
}

fn strip_preamble(part: &str) -> &str {
    let mut rest = part;
    for line in [".ie \\n(.g .ds Aq \\(aq\n", ".el .ds Aq '\n"] {
        rest = rest.strip_prefix(line).unwrap_or(rest);
    }
    rest
}

const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
The command's own status; 128+N when it was killed by signal N;
124 when \fB\-\-timeout\fR stopped it; 126 when it cannot be executed;
127 when it is not found; 125 when sbx itself fails to set up (bad flags,
bad configuration, missing bubblewrap).
.SH FILES
.TP
\fIsbx.jsonc\fR
The policy file, looked for in the working directory and its parents
(JSONC, with fence's field names); \fBsbx config init\fR writes a starter.
.TP
\fI$XDG_CONFIG_HOME/sbx/sbx.jsonc\fR (\fI~/.config/sbx/sbx.jsonc\fR)
The user's policy, used when there is no \fIsbx.jsonc\fR from the working
directory up (else the built-in default).
.TP
\fI~/.local/state/sbx\fR
The audit logs' keys and temporary files, mode 0700.
.SH "SEE ALSO"
\fBbwrap\fR(1), \fBlandlock\fR(7), \fBseccomp\fR(2)
"#;

/// Writes sbx.1 and a page for each subcommand (sbx-run.1, sbx-config-show.1, ...) into
/// `dir`; returns the files written.
pub fn write_man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let top = dir.join("sbx.1");
    let mut text = Vec::new();
    man_page(&mut text)?;
    std::fs::write(&top, text)?;
    written.push(top);
    let mut stack: Vec<clap::Command> = man_command().get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
    while let Some(cmd) = stack.pop() {
        stack.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let man = page(cmd);
        let file = dir.join(man.get_filename());
        let mut text = Vec::new();
        man.render(&mut text)?;
        std::fs::write(&file, text)?;
        written.push(file);
    }
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands_and_templates() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(completions(shell)).unwrap();
            for word in ["run", "monitor", "doctor", "completions"] {
                assert!(text.contains(word), "{shell:?}: no {word}");
            }
            for t in config::templates() {
                assert!(text.contains(t.name), "{shell:?}: no template {}", t.name);
            }
        }
    }

    #[test]
    fn man_pages_are_one_per_subcommand_with_the_plain_version() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_man_pages(dir.path()).unwrap();
        let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
        for page in ["sbx.1", "sbx-run.1", "sbx-monitor.1", "sbx-config-show.1", "sbx-log-verify.1"] {
            assert!(names.iter().any(|n| n == page), "no {page} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "a page for help: {names:?}");
        let top = std::fs::read_to_string(dir.path().join("sbx.1")).unwrap();
        assert!(top.contains("\n.TH sbx 1 ") && top.matches(".ds Aq").count() == 2, "{top}");
        assert!(top.contains("EXIT STATUS") && top.contains("sbx\\-run(1)"), "{top}");
        assert!(top.contains(&format!("v{}", env!("CARGO_PKG_VERSION"))) && !top.contains("sha256"), "{top}");
    }
}
