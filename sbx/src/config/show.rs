//! `sbx config show`.

use super::*;

/// What `sbx config show` prints: `//` comment lines naming each link of the
/// chain (most general first) and each ignored fence-only key, then the
/// merged policy as pretty JSON. The whole output is valid JSONC and parses
/// back to the same policy, so it can be saved as an `sbx.jsonc`.
pub fn render_show(loaded: &Loaded) -> String {
    let mut out = String::from("// Policy sources, most general first:\n");
    for (i, part) in loaded.chain.iter().enumerate() {
        let how = match part.how {
            Discovery::Flag => "given with -s".to_string(),
            Discovery::TemplateFlag => "given with -t".to_string(),
            Discovery::Nearest => match &part.origin {
                Origin::File(p) => format!(
                    "nearest {}",
                    p.file_name()
                        .map_or_else(|| FILE_NAMES[0].into(), |n| n.to_string_lossy())
                ),
                _ => "nearest sbx.jsonc".to_string(),
            },
            Discovery::UserConfig => "user config".to_string(),
            Discovery::Default => "no policy file found".to_string(),
            Discovery::Extends => match loaded.chain.get(i + 1) {
                Some(next) => format!("extended by {}", next.origin.label()),
                None => "extended".to_string(),
            },
        };
        let _ = writeln!(out, "// {}. {} ({how})", i + 1, part.origin.label());
    }
    for u in &loaded.unsupported {
        let _ = writeln!(
            out,
            "// warning: {}:{}: \"{}\" is a fence setting sbx does not implement; it is ignored",
            u.file.display(),
            u.line,
            u.key
        );
    }
    match serde_json::to_string_pretty(&loaded.config) {
        Ok(json) => out.push_str(&json),
        Err(e) => {
            let _ = write!(out, "// cannot render the policy as JSON: {e}\n{{}}");
        }
    }
    out.push('\n');
    out
}
