//! The plan without namespaces (`--no-namespaces`), for containers and sandboxes where no
//! namespace can be created: Landlock and seccomp only, applied by stage-2, which sbx starts
//! itself instead of bubblewrap.
//!
//! What a mount did, Landlock does where it can:
//! - **Root**: refused. The command would own the host's system files, and Landlock does
//!   not cover chmod, chown nor ACLs; `--user NAME` (or sudo from that user) runs it as a user.
//! - **denyRead**: Landlock grants only, so a
//!   hidden path is left out by granting reads on each of its siblings, and on the siblings
//!   of each of its ancestors, instead of on their parent. Listing is granted on the
//!   directories on the way, and a Landlock rule covers everything below it: the names
//!   (sizes, link targets) of everything there can be listed, the hidden path's too, not
//!   read; an entry created beside one after the start cannot be read. No rule is given to
//!   another name (a bind mount) of a directory on the way: rules belong to inodes. A hidden path inside a writable
//!   directory cannot be left out that way (writing there is granted on the whole
//!   directory), so that is refused at start.
//! - **/dev**: the host's; only the harmless devices (null, zero, full, random, urandom, tty,
//!   ptmx) and the command's own terminal are reachable: no block device, no other terminal
//!   of the user's, no /dev/shm.
//! - **/tmp**: a directory of the session's own in the host's /tmp (`TMPDIR`), removed at
//!   the end; /tmp itself is read-only.
//! - **Network**: none (IP sockets refused by seccomp, TCP by Landlock), or unfiltered when
//!   the user chose it (`--unfiltered-network`): never unfiltered by default.
//!
//! What is not enforced is said in [`not_enforced`], which the banner, `session_start` and
//! the dashboard show.

use super::*;

/// The network of a sandbox without namespaces: there is no loopback of its own for the
/// proxy to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// No IP socket at all.
    None,
    /// The host's network, unfiltered (`--unfiltered-network`).
    Unfiltered,
}

/// The devices the command may use; every other node of the host's /dev is out of reach,
/// the host's other terminals (`/dev/pts/*`) included: only the command's own
/// (`terminals`), where a program of it could otherwise write escape sequences to another
/// terminal of the user's. So a terminal it makes (openpty opens `/dev/pts/N` by its
/// name) cannot be opened: said in [`not_enforced`].
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx"];

/// What a sandbox without namespaces does not enforce, one phrase each, for the banner,
/// `session_start` and the dashboard.
pub fn not_enforced(network: Network, islands: &[PathBuf]) -> Vec<String> {
    let mut out = vec![
        "no namespaces: the command sees the host's processes (Landlock still keeps it from signalling or tracing them) and its /proc".to_string(),
        "no private /tmp: TMPDIR is a directory of the session's own, /tmp is the host's, read-only; no /dev/shm; no terminal but the command's own (the host's other terminals are the user's), so none made by openpty, script or pexpect".to_string(),
        "denyRead hides contents, not names: everything below a directory on the way to a hidden path can be listed (names, sizes, link targets), the hidden path's own entries too".to_string(),
        "modes of the user's own files outside the writable paths can be changed (Landlock does not cover chmod)".to_string(),
        "if sbx itself is killed (SIGKILL), processes the command left running are not stopped (they stay confined)".to_string(),
    ];
    out.push(match network {
        Network::None => "network: none (no proxy without a network namespace; --unfiltered-network gives the host's network)".to_string(),
        Network::Unfiltered => "network: the host's, unfiltered (--unfiltered-network): no domain rule applies".to_string(),
    });
    if !islands.is_empty() {
        out.push(format!(
            "the {} protected paths inside the writable ones (.git/hooks and config, shell startup files, editor and agent configuration) are not read-only: a change is undone at the end (a missing one created is moved away at once), so a host program that runs one meanwhile would run the change",
            islands.len()
        ));
    }
    out
}

/// Refuses a command that would run as root (`as_root`: sbx is root and runs it as
/// itself): uid 0 owns the host's system files, and Landlock does not cover chmod, chown nor
/// ACLs, which only a read-only mount kept from it. Checked before anything starts, and
/// again by [`plan`].
pub fn check_user(as_root: bool) -> Result<(), LaunchError> {
    if as_root {
        return Err(LaunchError::NoNamespaces(
            "--no-namespaces cannot run a command as root: it would own the host's system files, and Landlock does not cover changes of their modes and owners; run it as a user (--user NAME, or sudo from that user)".into(),
        ));
    }
    Ok(())
}

/// Resolves `policy` into a plan for stage-2 started directly, with `tmp` as the session's
/// temporary directory (made by the caller). Errors name what cannot be enforced here.
/// `terminals`: the command's own terminal devices (`/dev/pts/N` of its stdin, stdout or
/// stderr, or the dashboard's pty).
pub fn plan(policy: &Policy, command: Vec<OsString>, facts: &HostFacts, network: Network, tmp: &Path, terminals: &[PathBuf]) -> Result<Plan, LaunchError> {
    check_user(facts.hide_host_secrets)?;
    let probe = facts.probe;
    let exists = |p: &Path| probe(p) != PathKind::Missing;
    let plain = |p: &Path| (facts.canonical)(p).as_deref() == Some(p);
    let mut warnings = Vec::new();
    let expand = |list: &[PathBuf], warnings: &mut Vec<String>| expand_rules(list, facts, warnings);
    let allow_read = expand(&policy.fs.allow_read, &mut warnings);
    let allow_execute = expand(&policy.fs.allow_execute, &mut warnings);
    let mut hidden: Vec<PathBuf> = expand(&policy.fs.deny_read, &mut warnings).into_iter().filter(|p| exists(p)).collect();
    // A hidden path that is or goes through a symlink is hidden where it leads too: the walk
    // below grants nothing to a link, but would grant its target, where it lies.
    let real: Vec<PathBuf> = hidden.iter().filter_map(|h| (facts.canonical)(h).filter(|r| r != h)).collect();
    hidden.extend(real);
    let allow_write = expand(&policy.fs.allow_write, &mut warnings);
    let deny_write = expand(&policy.fs.deny_write, &mut warnings);
    // The host's /dev is hidden but for a few devices, granted below.
    hidden.push("/dev".into());
    hidden.sort();
    hidden.dedup();

    // Writable: the workspace, allowWrite (the real paths only, as with namespaces), the
    // session's temporary directory; denyWrite and the hidden paths win.
    let mut writable = vec![tmp.to_path_buf()];
    let mut wanted = vec![policy.workspace.clone()];
    wanted.extend(allow_write.iter().cloned());
    for path in wanted {
        if !exists(&path) || deny_write.iter().any(|d| path.starts_with(d)) || hidden.iter().any(|h| path.starts_with(h)) {
            continue;
        }
        if !plain(&path) {
            warnings.push(through_a_symlink(&path));
            continue;
        }
        writable.push(path);
    }
    if let Some(h) = hidden.iter().find(|h| h.as_path() != Path::new("/dev") && writable.iter().any(|w| h.starts_with(w))) {
        return Err(LaunchError::NoNamespaces(format!(
            "--no-namespaces cannot hide {} (denyRead): it is inside a writable directory, where Landlock cannot refuse reads of one path; move it out of the workspace, or run sbx where namespaces work",
            crate::termtext::path(h)
        )));
    }

    if !policy.fs.private_write.is_empty() {
        warnings.push("the privateWrite directories are read-only without namespaces: no mount can give the command a copy of its own".into());
    }

    // Readable: the whole view (or, under defaultDenyRead, the system paths, allowRead and
    // the workspace), less the hidden paths.
    let roots: Vec<PathBuf> = if policy.fs.default_deny_read {
        SYSTEM_READ.iter().map(PathBuf::from).chain(allow_read.iter().cloned()).chain([policy.workspace.clone()]).filter(|p| exists(p)).collect()
    } else {
        vec!["/".into()]
    };
    let mut read = Vec::new();
    let mut list = Vec::new();
    // Landlock's rules belong to inodes: a rule on another name of a directory on the way
    // to a hidden path (a bind mount of an ancestor) would grant the hidden path through
    // every name. Those inodes get no rule of their own.
    let guarded = guarded_inodes(&hidden);
    for root in &roots {
        readable_except(root, &hidden, &guarded, &mut read, &mut list);
    }
    let execute: Vec<PathBuf> = allow_execute.into_iter().filter(|p| exists(p) && !hidden.iter().any(|h| p.starts_with(h))).collect();
    writable.extend(DEVICES.iter().map(PathBuf::from).filter(|p| exists(p)));
    writable.extend(terminals.iter().filter(|t| t.starts_with("/dev/pts/")).cloned());
    list.push("/dev".into());

    let mut args = Vec::new();
    environment(&mut args, policy, facts, false);
    args.push(Arg::SetEnv("TMPDIR".into(), tmp.into()));
    let seccomp = crate::syscalls::FilterOptions {
        mediate_exec: policy.commands.active(),
        shared_host: true,
        no_ip: network == Network::None,
        // No network namespace of its own, so no outside to reach by name: none, or the
        // host's, unfiltered.
        transparent_egress: false,
        ..crate::syscalls::FilterOptions::for_network(&policy.net)
    };
    let stage2 = stage2::Plan {
        read,
        list,
        execute,
        write: writable,
        command,
        report_fd: Some(facts.report_fd),
        require_landlock: facts.require_landlock,
        seccomp,
        control_fd: facts.control_fd,
        notify: facts.notify,
        net: stage2::NetPlan { allow_local_binding: network == Network::Unfiltered && policy.net.allow_local_binding, ..Default::default() },
        max_tasks: facts.max_tasks,
        foreground: facts.own_terminal,
        direct: true,
    };
    hidden.retain(|h| h.as_path() != Path::new("/dev"));
    Ok(Plan {
        bwrap: Invocation { args, command: Vec::new() },
        stage2,
        warnings,
        hidden,
        // Not mount points here: the exit checks restore them (`snapshot::Guard::take_deep`).
        islands: Vec::new(),
        pins: Vec::new(),
        not_enforced: not_enforced(network, &protected_paths(policy, &facts.git_paths)),
    })
}

/// Landlock rules that make `root` readable but for the `hidden` paths: `root` itself when
/// nothing hidden is inside it; otherwise each entry of it, recursively, and `root` listable
/// (into `list`). Symbolic links get no rule: a rule on one would be a rule on its target
/// (Landlock opens the path), and the target is ruled where it lies.
fn readable_except(root: &Path, hidden: &[PathBuf], guarded: &std::collections::HashSet<(u64, u64)>, read: &mut Vec<PathBuf>, list: &mut Vec<PathBuf>) {
    use std::os::unix::fs::MetadataExt as _;
    if hidden.iter().any(|h| root.starts_with(h)) {
        return;
    }
    // Another name of a hidden path or of a directory on the way to one.
    let on_the_way = hidden.iter().any(|h| h.starts_with(root));
    if !on_the_way && std::fs::metadata(root).is_ok_and(|m| guarded.contains(&(m.dev(), m.ino()))) {
        return;
    }
    if !hidden.iter().any(|h| h.starts_with(root)) {
        read.push(root.to_path_buf());
        return;
    }
    list.push(root.to_path_buf());
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_symlink() {
            continue;
        }
        readable_except(&entry.path(), hidden, guarded, read, list);
    }
}

/// The inodes of the hidden paths and of every directory above one.
fn guarded_inodes(hidden: &[PathBuf]) -> std::collections::HashSet<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    hidden.iter().flat_map(|h| h.ancestors()).filter_map(|p| std::fs::metadata(p).ok()).map(|m| (m.dev(), m.ino())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_paths_are_left_out_by_granting_their_siblings() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for p in ["a/secret", "a/b/c", "a/b/d", "e"] {
            std::fs::create_dir_all(d.join(p)).unwrap();
        }
        std::fs::write(d.join("a/file"), "x").unwrap();
        std::os::unix::fs::symlink(d.join("a/secret"), d.join("a/link")).unwrap();
        let (mut read, mut list) = (Vec::new(), Vec::new());
        let hidden = [d.join("a/secret"), d.join("a/b/d")];
        readable_except(d, &hidden, &guarded_inodes(&hidden), &mut read, &mut list);
        read.sort();
        list.sort();
        assert_eq!(read, [d.join("a/b/c"), d.join("a/file"), d.join("e")]);
        assert_eq!(list, [d.to_path_buf(), d.join("a"), d.join("a/b")]);
        // A second name of a directory on the way (a bind mount in real life: its inode is
        // the same) gets no rule, which would grant everything below that inode.
        let guarded: std::collections::HashSet<(u64, u64)> = guarded_inodes(&hidden).into_iter().chain(guarded_inodes(&[d.join("e")])).collect();
        let (mut read, mut list) = (Vec::new(), Vec::new());
        readable_except(d, &hidden, &guarded, &mut read, &mut list);
        assert!(!read.contains(&d.join("e")), "{read:?}");
    }
}
