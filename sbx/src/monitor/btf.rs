//! Field offsets of kernel structs, read from the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE relocations, so a kernel program that follows
//! pointers through kernel structs (the tracer's walk from a task to its
//! working directory) gets the offsets from here, as data, at load time.
//! This is a small reader of the BTF format (types and strings sections)
//! that answers one question: the byte offset of a named member of a named
//! struct, looking through anonymous structs and unions.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source}")]
    Read { path: &'static str, source: std::io::Error },
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("the kernel's BTF has no struct {0}")]
    NoStruct(String),
    #[error("the kernel's struct {0} has no member {1}")]
    NoMember(String, String),
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    ty: u32,
    /// Offset in bits.
    bits: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    members: Vec<Member>,
}

/// The struct and union types of a BTF blob, by id.
pub struct Btf {
    strings: Vec<u8>,
    types: Vec<Type>,
    structs: HashMap<String, u32>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

impl Btf {
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).map_err(|source| BtfError::Read { path, source })?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.get(0..2) != Some(&[0x9f, 0xeb]) {
            return Err(BtfError::Malformed("bad magic (only little-endian BTF is read)"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let types_data = data.get(hdr_len + type_off..hdr_len + type_off + type_len).ok_or(BtfError::Malformed("type section"))?;
        let strings = data.get(hdr_len + str_off..hdr_len + str_off + str_len).ok_or(BtfError::Malformed("string section"))?.to_vec();
        // Type id 0 is void.
        let mut types = vec![Type { name: 0, kind: 0, members: Vec::new() }];
        let mut at = 0;
        while at < types_data.len() {
            let name = u32_at(types_data, at)?;
            let info = u32_at(types_data, at + 4)?;
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => at += 4,
                KIND_ARRAY => at += 12,
                KIND_STRUCT | KIND_UNION => {
                    for _ in 0..vlen {
                        let offset = u32_at(types_data, at + 8)?;
                        let bits = if kind_flag { offset & 0xff_ffff } else { offset };
                        members.push(Member { name: u32_at(types_data, at)?, ty: u32_at(types_data, at + 4)?, bits });
                        at += 12;
                    }
                }
                KIND_ENUM | KIND_FUNC_PROTO => at += 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => at += 12 * vlen,
                _ => {}
            }
            types.push(Type { name, kind, members });
        }
        let mut btf = Self { strings, types, structs: HashMap::new() };
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name != 0 {
                btf.structs.entry(btf.string(t.name).to_string()).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn string(&self, offset: u32) -> &str {
        let rest = self.strings.get(offset as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Offset in bits of `member` within type `id`, searching anonymous
    /// struct and union members too.
    fn find(&self, id: u32, member: &str) -> Option<u32> {
        let t = self.types.get(id as usize)?;
        for m in &t.members {
            if m.name != 0 {
                if self.string(m.name) == member {
                    return Some(m.bits);
                }
                continue;
            }
            // An anonymous struct or union member: its type is the
            // anonymous struct or union itself; look inside.
            let inner = self.types.get(m.ty as usize)?;
            if inner.kind != KIND_STRUCT && inner.kind != KIND_UNION {
                continue;
            }
            if let Some(bits) = self.find(m.ty, member) {
                return Some(m.bits + bits);
            }
        }
        None
    }

    /// The id of `typedef name`.
    pub fn typedef_id(&self, name: &str) -> Option<u32> {
        self.types.iter().position(|t| t.kind == KIND_TYPEDEF && self.string(t.name) == name).map(|id| id as u32)
    }

    /// Byte offset of `member` in `struct name`.
    pub fn offset(&self, name: &str, member: &str) -> Result<u64, BtfError> {
        let id = *self.structs.get(name).ok_or_else(|| BtfError::NoStruct(name.to_string()))?;
        let bits = self.find(id, member).ok_or_else(|| BtfError::NoMember(name.to_string(), member.to_string()))?;
        Ok(u64::from(bits / 8))
    }
}

/// A BTF blob that holds the named typedefs at the given ids and nothing
/// else of substance (every other id up to the largest is a pointer to
/// void). A tp_btf program's attach looks up one typedef by name and takes
/// its id, which must be the kernel's: this gives aya that lookup without
/// a parse of the kernel's whole BTF.
pub fn typedefs_at(typedefs: &[(&str, u32)]) -> Vec<u8> {
    let max = typedefs.iter().map(|&(_, id)| id).max().unwrap_or(0);
    let mut strings = vec![0u8];
    let mut names = HashMap::new();
    for &(name, id) in typedefs {
        names.insert(id, strings.len() as u32);
        strings.extend_from_slice(name.as_bytes());
        strings.push(0);
    }
    let mut types = Vec::with_capacity(max as usize * 12);
    for id in 1..=max {
        let (name, kind) = match names.get(&id) {
            Some(&off) => (off, KIND_TYPEDEF),
            None => (0, KIND_PTR),
        };
        types.extend_from_slice(&name.to_le_bytes());
        types.extend_from_slice(&(kind << 24).to_le_bytes());
        types.extend_from_slice(&0u32.to_le_bytes());
    }
    let mut out = Vec::with_capacity(24 + types.len() + strings.len());
    out.extend_from_slice(&[0x9f, 0xeb, 1, 0]);
    for v in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&types);
    out.extend_from_slice(&strings);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_offsets_from_this_kernel() {
        let Ok(btf) = Btf::from_sys_fs() else {
            panic!("/sys/kernel/btf/vmlinux is required (see sbx doctor)");
        };
        // struct path { struct vfsmount *mnt; struct dentry *dentry; }: an
        // ABI-stable layout to check the reader against.
        assert_eq!(btf.offset("path", "mnt").unwrap(), 0);
        assert_eq!(btf.offset("path", "dentry").unwrap(), 8);
        // qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const unsigned char *name; }
        assert_eq!(btf.offset("qstr", "name").unwrap(), 8);
        assert_eq!(btf.offset("qstr", "len").unwrap(), 4, "found through the anonymous union and struct");
        assert!(btf.offset("task_struct", "fs").unwrap() > 0);
        assert!(matches!(btf.offset("task_struct", "nonexistent"), Err(BtfError::NoMember(..))));
        assert!(btf.typedef_id("btf_trace_sys_exit").is_some());
    }

    #[test]
    fn typedefs_land_at_their_ids_for_aya() {
        let blob = typedefs_at(&[("btf_trace_a", 7), ("btf_trace_b", 3)]);
        let ours = Btf::parse(&blob).unwrap();
        assert_eq!(ours.typedef_id("btf_trace_a"), Some(7));
        assert_eq!(ours.typedef_id("btf_trace_b"), Some(3));
        let aya = aya::Btf::parse(&blob, aya::Endianness::default()).unwrap();
        assert_eq!(aya.id_by_type_name_kind("btf_trace_a", aya_obj::btf::BtfKind::Typedef).unwrap(), 7);
        assert_eq!(aya.id_by_type_name_kind("btf_trace_b", aya_obj::btf::BtfKind::Typedef).unwrap(), 3);
    }
}
