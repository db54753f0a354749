//! Who the sandboxed command runs as.
//!
//! sbx needs root for the kernel tracer and the session's cgroups; the command needs
//! neither, and must not be root when a person ran `sudo sbx monitor -- cmd` to get the
//! tracer: it would see root's home and git identity, fail to write the person's project,
//! and leave files they cannot delete. So when sbx runs as root and `SUDO_UID` (with
//! `SUDO_GID`; or doas's `DOAS_USER`) names another user, or `--user NAME` is given, the
//! command runs as that user: uid, gid and supplementary groups, that user's `HOME`, `USER`
//! and `LOGNAME`, and the policy reads `~` and `~/.config/sbx` as that user's. bubblewrap
//! is started as that user (between fork and exec, after the process has joined the
//! session's cgroups), so the sandbox is what that user's own `sbx run` would build; sbx
//! itself stays root for the tracer, the cgroups and the limits.

use std::{ffi::CString, path::PathBuf};

use thiserror::Error;

/// The user the command runs as, when it is not the one running sbx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the user's, from the group database).
    pub groups: Vec<u32>,
    pub home: PathBuf,
    /// Why: `--user`, `SUDO_UID`, `DOAS_USER`.
    pub from: &'static str,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("--user {0}: only root can run the command as another user (sbx already runs it as you)")]
    NotRoot(String),
    #[error("{from} names {who}, which is not a user of this system")]
    NoSuchUser { from: &'static str, who: String },
    #[error("cannot read the user database for {who}: {detail}")]
    Lookup { who: String, detail: String },
}

/// The user to run the command as: `flag` (`--user`), else the one sudo or doas ran sbx
/// for; `None` when that is whoever runs sbx (or root).
pub fn resolve(flag: Option<&str>) -> Result<Option<RunAs>, IdentityError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    resolve_with(nix::unistd::geteuid().is_root(), flag, env("SUDO_UID"), env("SUDO_GID"), env("DOAS_USER"))
}

fn resolve_with(root: bool, flag: Option<&str>, sudo_uid: Option<String>, sudo_gid: Option<String>, doas_user: Option<String>) -> Result<Option<RunAs>, IdentityError> {
    if !root {
        return match flag {
            Some(name) => Err(IdentityError::NotRoot(name.to_owned())),
            None => Ok(None),
        };
    }
    let (user, gid, from) = if let Some(name) = flag {
        let user = match name.parse::<u32>() {
            Ok(uid) => by_uid(uid, "--user", name)?,
            Err(_) => by_name(name, "--user")?,
        };
        (user, None, "--user")
    } else if let Some(uid) = sudo_uid.as_deref().and_then(|u| u.parse::<u32>().ok()) {
        (by_uid(uid, "SUDO_UID", &uid.to_string())?, sudo_gid.as_deref().and_then(|g| g.parse::<u32>().ok()), "SUDO_UID")
    } else if let Some(name) = doas_user {
        (by_name(&name, "DOAS_USER")?, None, "DOAS_USER")
    } else {
        return Ok(None);
    };
    if user.uid.is_root() {
        return Ok(None);
    }
    let gid = gid.unwrap_or(user.gid.as_raw());
    let groups = CString::new(user.name.clone())
        .ok()
        .and_then(|n| nix::unistd::getgrouplist(&n, nix::unistd::Gid::from_raw(gid)).ok())
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![gid]);
    Ok(Some(RunAs { name: user.name, uid: user.uid.as_raw(), gid, groups, home: user.dir, from }))
}

fn by_uid(uid: u32, from: &'static str, shown: &str) -> Result<nix::unistd::User, IdentityError> {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(IdentityError::NoSuchUser { from, who: shown.to_owned() }),
        Err(e) => Err(IdentityError::Lookup { who: shown.to_owned(), detail: e.to_string() }),
    }
}

fn by_name(name: &str, from: &'static str) -> Result<nix::unistd::User, IdentityError> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(IdentityError::NoSuchUser { from, who: name.to_owned() }),
        Err(e) => Err(IdentityError::Lookup { who: name.to_owned(), detail: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_runs_the_command_as_someone_else() {
        assert_eq!(resolve_with(false, None, Some("1000".into()), None, None), Ok(None));
        assert_eq!(resolve_with(false, Some("nobody"), None, None, None), Err(IdentityError::NotRoot("nobody".into())));
        assert_eq!(
            IdentityError::NotRoot("nobody".into()).to_string(),
            "--user nobody: only root can run the command as another user (sbx already runs it as you)"
        );
    }

    #[test]
    fn sudo_doas_and_the_flag_name_the_user() {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        let uid = nobody.uid.as_raw().to_string();
        let got = resolve_with(true, None, Some(uid.clone()), Some("4242".into()), None).unwrap().unwrap();
        assert_eq!((got.name.as_str(), got.gid, got.from), ("nobody", 4242, "SUDO_UID"));
        let got = resolve_with(true, None, None, None, Some("nobody".into())).unwrap().unwrap();
        assert_eq!((got.uid, got.from), (nobody.uid.as_raw(), "DOAS_USER"));
        let got = resolve_with(true, Some("nobody"), Some("0".into()), None, None).unwrap().unwrap();
        assert_eq!((got.uid, got.gid, got.from), (nobody.uid.as_raw(), nobody.gid.as_raw(), "--user"));
        // sudo from root, or --user root: the command stays root.
        assert_eq!(resolve_with(true, None, Some("0".into()), None, None), Ok(None));
        assert_eq!(resolve_with(true, Some("root"), None, None, None), Ok(None));
        assert_eq!(resolve_with(true, None, None, None, None), Ok(None));
        assert_eq!(
            resolve_with(true, Some("no-such-user-sbx"), None, None, None),
            Err(IdentityError::NoSuchUser { from: "--user", who: "no-such-user-sbx".into() })
        );
    }
}
