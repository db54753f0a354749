//! The audit log's seal: a chain of MACs that makes an edited, inserted,
//! removed, reordered or appended line detectable.
//!
//! The log usually lives where the sandboxed command can write, and
//! `sbx policy suggest` turns its denials into policy. Each writer of a log
//! (a session, `policy suggest`'s record, `learn`, a dashboard export)
//! draws a fresh 32-byte key from the kernel's random source and keeps it
//! in sbx's state directory (`<state>/keys/<key id>`, mode 0600 in a 0700
//! directory that the sandbox cannot see: see `state`). The first line it
//! writes names the key (`"mac_key":"<32 hex digits>"`), and every line it
//! writes ends with `"mac":"<64 hex digits>"`:
//!
//! ```text
//! mac(line 1) = HMAC-SHA256(key, [0; 32]        || body(line 1))
//! mac(line n) = HMAC-SHA256(key, mac(line n-1)  || body(line n))
//! ```
//!
//! where `body` is the line's bytes without its `,"mac":"..."` suffix (the
//! JSON object closed right after its other fields). The key file also
//! records how many lines the writer has written and the last MAC, updated
//! after each flush, so that lines removed from the end are detected too.
//! [`verify`] walks a log and names the first line that fails.

use std::{
    fs::File,
    io,
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

const MAC_PREFIX: &[u8] = b",\"mac\":\"";
/// `,"mac":"` + 64 hex digits + `"}`.
const MAC_SUFFIX_LEN: usize = MAC_PREFIX.len() + 64 + 2;
/// The key file: the key in hex and a newline, then the progress record.
const PROGRESS_AT: u64 = 65;

#[derive(Debug, Error)]
pub enum SealError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Fs(#[from] crate::fsio::FsError),
    #[error("cannot draw a random key for the log: {0}")]
    Random(String),
    #[error("cannot write the log's key file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Where the logs' keys are kept (created private if needed).
pub fn keys_dir() -> Result<PathBuf, crate::state::StateError> {
    let dir = crate::state::state_dir()?.join("keys");
    crate::state::ensure_private(&dir)?;
    Ok(dir)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

fn mac(key: &[u8; 32], prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <HmacSha256 as hmac::Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(prev);
    m.update(body);
    m.finalize().into_bytes().into()
}

/// Seals the lines of one writer.
pub struct Sealer {
    key: [u8; 32],
    id: String,
    prev: [u8; 32],
    lines: u64,
    key_file: File,
    key_path: PathBuf,
}

impl Sealer {
    /// A fresh key, stored in the keys directory.
    pub fn new() -> Result<Self, SealError> {
        Self::in_dir(&keys_dir()?)
    }

    pub fn in_dir(dir: &Path) -> Result<Self, SealError> {
        let mut key = [0u8; 32];
        let mut id = [0u8; 16];
        getrandom::fill(&mut key).and_then(|()| getrandom::fill(&mut id)).map_err(|e| SealError::Random(e.to_string()))?;
        let id = hex(&id);
        let key_path = dir.join(&id);
        let key_file = crate::fsio::create_new(&key_path, 0o600)?;
        let mut sealer = Self { key, id, prev: [0; 32], lines: 0, key_file, key_path };
        sealer.key_file.write_all_at(format!("{}\n", hex(&key)).as_bytes(), 0).map_err(|source| SealError::Io { path: sealer.key_path.clone(), source })?;
        sealer.record().map_err(|source| SealError::Io { path: sealer.key_path.clone(), source })?;
        Ok(sealer)
    }

    /// The key's id, as the first line names it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals one line: `line` holds a JSON object (`{...}`, no newline);
    /// the first line gets `mac_key`, every line `mac`.
    pub fn seal(&mut self, line: &mut Vec<u8>) {
        if self.lines == 0 && line.first() == Some(&b'{') {
            let field = format!("\"mac_key\":\"{}\"{}", self.id, if line.len() > 2 { "," } else { "" });
            line.splice(1..1, field.into_bytes());
        }
        let tag = mac(&self.key, &self.prev, line);
        if line.last() == Some(&b'}') {
            line.pop();
        }
        if line.last() == Some(&b'{') {
            line.extend_from_slice(&MAC_PREFIX[1..]);
        } else {
            line.extend_from_slice(MAC_PREFIX);
        }
        line.extend_from_slice(hex(&tag).as_bytes());
        line.extend_from_slice(b"\"}");
        self.prev = tag;
        self.lines += 1;
    }

    /// Records in the key file how many lines were sealed and the last MAC
    /// (call once they have reached the log).
    pub fn record(&mut self) -> io::Result<()> {
        let progress = format!("{:020} {}\n", self.lines, hex(&self.prev));
        self.key_file.write_all_at(progress.as_bytes(), PROGRESS_AT)
    }
}

/// The first line of a log that fails verification, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {why}")]
pub struct VerifyError {
    pub line: usize,
    pub why: String,
}

/// What a verified log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub lines: usize,
    /// Writers (sessions, suggest records, ...), one key each.
    pub segments: usize,
}

/// A key file: the key, and how many lines its writer sealed, the last MAC.
struct KeyRecord {
    key: [u8; 32],
    lines: u64,
    last: [u8; 32],
}

fn load_key(dir: &Path, id: &str) -> Result<KeyRecord, String> {
    let path = dir.join(id);
    let text = match crate::fsio::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => {
            return Err(format!(
                "its key {id} is not in {} (a log written by another user or on another machine cannot be verified here; a forged line names a key that does not exist)",
                dir.display()
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut lines = text.lines();
    let bad = || format!("the key file {} is damaged", path.display());
    let key: [u8; 32] = lines.next().and_then(unhex).and_then(|k| k.try_into().ok()).ok_or_else(bad)?;
    let (count, last) = lines.next().and_then(|l| l.split_once(' ')).ok_or_else(bad)?;
    let lines = count.parse().map_err(|_| bad())?;
    let last: [u8; 32] = unhex(last).and_then(|k| k.try_into().ok()).ok_or_else(bad)?;
    Ok(KeyRecord { key, lines, last })
}

/// One writer's lines being checked.
struct Segment {
    start: usize,
    record: KeyRecord,
    prev: [u8; 32],
    seen: u64,
}

impl Segment {
    /// The segment ends (another begins, or the log does) at `line`.
    fn close(&self, line: usize) -> Result<(), VerifyError> {
        if self.seen < self.record.lines {
            return Err(VerifyError {
                line,
                why: format!(
                    "{} line{} of the writer that starts at line {} {} missing here (its key records {} lines): lines were removed",
                    self.record.lines - self.seen,
                    if self.record.lines - self.seen == 1 { "" } else { "s" },
                    self.start,
                    if self.record.lines - self.seen == 1 { "is" } else { "are" },
                    self.record.lines
                ),
            });
        }
        if self.prev != self.record.last {
            return Err(VerifyError { line, why: format!("the writer that starts at line {} ended with a line other than its last one", self.start) });
        }
        Ok(())
    }
}

/// Verifies the MAC chain of every line of `text` with the keys in `keys`.
pub fn verify(text: &str, keys: &Path) -> Result<Verified, VerifyError> {
    let mut verifier = Verifier::new(keys);
    let mut rest = text;
    while !rest.is_empty() {
        let Some((line, after)) = rest.split_once('\n') else {
            return Err(verifier.incomplete());
        };
        rest = after;
        verifier.line(line)?;
    }
    verifier.finish()
}

/// [`verify`] a line at a time, for a log read as a stream (`sbx monitor --replay` checks a
/// log of any size without holding it).
pub struct Verifier<'a> {
    keys: &'a Path,
    segment: Option<Segment>,
    segments: usize,
    /// Lines checked.
    n: usize,
}

impl<'a> Verifier<'a> {
    pub fn new(keys: &'a Path) -> Self {
        Self { keys, segment: None, segments: 0, n: 0 }
    }

    /// Checks the next line (without its newline).
    pub fn line(&mut self, line: &str) -> Result<(), VerifyError> {
        self.n += 1;
        let n = self.n;
        let fail = |why: &str| VerifyError { line: n, why: why.to_string() };
        let bytes = line.as_bytes();
        if bytes.len() < MAC_SUFFIX_LEN + 1 || !bytes.ends_with(b"\"}") || &bytes[bytes.len() - MAC_SUFFIX_LEN..][..MAC_PREFIX.len()] != MAC_PREFIX {
            return Err(fail("it carries no MAC (it was not written by sbx, or was edited)"));
        }
        let tag = unhex(&line[line.len() - 66..line.len() - 2]).ok_or_else(|| fail("its MAC is not 64 hex digits"))?;
        let mut body = bytes[..bytes.len() - MAC_SUFFIX_LEN].to_vec();
        body.push(b'}');
        let value: serde_json::Value = serde_json::from_slice(&body).map_err(|_| fail("it is not a JSON object"))?;
        if let Some(id) = value.get("mac_key") {
            let id = id.as_str().filter(|s| s.len() == 32 && unhex(s).is_some()).ok_or_else(|| fail("its mac_key is not a key id"))?;
            if let Some(s) = &self.segment {
                s.close(n)?;
            }
            let record = load_key(self.keys, id).map_err(|why| fail(&why))?;
            self.segment = Some(Segment { start: n, record, prev: [0; 32], seen: 0 });
            self.segments += 1;
        }
        let Some(s) = self.segment.as_mut() else {
            return Err(fail("it comes before any line that names a key (mac_key)"));
        };
        if s.seen >= s.record.lines {
            return Err(fail(&format!("it follows the last line that the writer starting at line {} wrote (lines were appended)", s.start)));
        }
        let want = mac(&s.record.key, &s.prev, &body);
        if tag != want {
            return Err(fail("its MAC does not match: the line was edited, inserted, or moved from elsewhere in the log"));
        }
        s.prev = want;
        s.seen += 1;
        Ok(())
    }

    /// The error for a last line without its newline.
    pub fn incomplete(&self) -> VerifyError {
        VerifyError { line: self.n + 1, why: "the line is incomplete (no newline at the end of the log)".into() }
    }

    /// The log ends after the lines checked.
    pub fn finish(self) -> Result<Verified, VerifyError> {
        match &self.segment {
            Some(s) => s.close(self.n + 1)?,
            None => return Err(VerifyError { line: 1, why: "the log is empty".into() }),
        }
        Ok(Verified { lines: self.n, segments: self.segments })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(dir: &Path, lines: &[&str]) -> String {
        let mut s = Sealer::in_dir(dir).unwrap();
        let mut out = String::new();
        for l in lines {
            let mut b = l.as_bytes().to_vec();
            s.seal(&mut b);
            out.push_str(std::str::from_utf8(&b).unwrap());
            out.push('\n');
        }
        s.record().unwrap();
        out
    }

    #[test]
    fn a_sealed_log_verifies_and_every_tampering_is_named_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path();
        let log = sealed(keys, &[r#"{"seq":0,"type":"session_start"}"#, r#"{"seq":1,"type":"denial"}"#, r#"{"seq":2,"type":"session_end"}"#]);
        let log2 = sealed(keys, &[r#"{"seq":3,"type":"policy"}"#]);
        let both = format!("{log}{log2}");
        assert_eq!(verify(&both, keys), Ok(Verified { lines: 4, segments: 2 }));
        let lines: Vec<&str> = both.lines().collect();
        assert!(lines[0].starts_with(r#"{"mac_key":""#), "{}", lines[0]);
        assert!(lines[1].starts_with(r#"{"seq":1,"type":"denial","mac":""#), "{}", lines[1]);
        let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();

        // Edited.
        let edited = both.replacen("\"denial\"", "\"denia1\"", 1);
        assert_eq!(verify(&edited, keys).unwrap_err().line, 2);
        // Reordered.
        assert_eq!(verify(&join(&[lines[0], lines[2], lines[1], lines[3]]), keys).unwrap_err().line, 2);
        // Truncated at the end of a writer, and in the middle of a line.
        let cut = verify(&join(&lines[..2]), keys).unwrap_err();
        assert_eq!(cut.line, 3);
        assert!(cut.why.contains("1 line of the writer that starts at line 1 is missing"), "{cut}");
        assert_eq!(verify(&join(&[lines[0], lines[1], lines[3]]), keys).unwrap_err().line, 3);
        assert_eq!(verify(&both[..both.len() - 10], keys).unwrap_err().line, 4);
        // Appended: a forged line without a MAC, one with a made-up MAC,
        // a copy of a real line, a writer whose key does not exist.
        let forged = r#"{"type":"denial","source":"proxy","host":"attacker-c2.example","v":1}"#;
        assert_eq!(verify(&format!("{both}{forged}\n"), keys).unwrap_err().line, 5);
        let fake_mac = format!("{},\"mac\":\"{}\"}}", &forged[..forged.len() - 1], "0".repeat(64));
        assert_eq!(verify(&format!("{both}{fake_mac}\n"), keys).unwrap_err().line, 5);
        assert_eq!(verify(&format!("{both}{}\n", lines[1]), keys).unwrap_err().line, 5);
        let other = tempfile::tempdir().unwrap();
        let stranger = sealed(other.path(), &[forged]);
        let e = verify(&format!("{both}{stranger}"), keys).unwrap_err();
        assert_eq!(e.line, 5);
        assert!(e.why.contains("is not in"), "{e}");
        // A line before any key, and an empty log.
        assert_eq!(verify(&join(&lines[1..]), keys).unwrap_err().line, 1);
        assert_eq!(verify("", keys).unwrap_err().why, "the log is empty");
    }
}
