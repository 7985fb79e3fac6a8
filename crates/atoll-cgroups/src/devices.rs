//! Device access rules: from OCI linux.resources.devices to cgroup v1 devices.allow/deny lines,
//! or to a BPF_PROG_TYPE_CGROUP_DEVICE program for cgroup v2 (same semantics as runc's
//! devicefilter: the last matching rule decides, no match denies).

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::CgroupError;

/// Access bits as the kernel passes them to device programs (BPF_DEVCG_ACC_*).
pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;
/// Device types as the kernel passes them (BPF_DEVCG_DEV_*).
const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    All,
    Block,
    Char,
}

/// One checked rule; `None` major/minor is the wildcard '*'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

impl DeviceRule {
    pub fn from_oci(rule: &LinuxDeviceCgroup) -> Result<DeviceRule, CgroupError> {
        let kind = match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => DeviceKind::All,
            LinuxDeviceType::B => DeviceKind::Block,
            LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
            LinuxDeviceType::P => {
                return Err(CgroupError::Invalid {
                    field: "linux.resources.devices[].type",
                    value: "p".into(),
                    why: "the device cgroup governs only 'a', 'b' and 'c'",
                })
            }
        };
        let number = |v: Option<i64>, field| match v {
            None | Some(-1) => Ok(None),
            Some(n) if (0..=u32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
            Some(n) => Err(CgroupError::Invalid {
                field,
                value: n.to_string(),
                why: "expected -1 (any) or a device number",
            }),
        };
        let access_str = rule.access().as_deref().unwrap_or("");
        let mut access = 0;
        for c in access_str.chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => {
                    return Err(CgroupError::Invalid {
                        field: "linux.resources.devices[].access",
                        value: access_str.to_string(),
                        why: "only the letters r, w and m are allowed",
                    })
                }
            };
        }
        Ok(DeviceRule {
            allow: rule.allow(),
            kind,
            major: number(rule.major(), "linux.resources.devices[].major")?,
            minor: number(rule.minor(), "linux.resources.devices[].minor")?,
            // An empty access string means all access, as in runc.
            access: if access == 0 { ACC_ALL } else { access },
        })
    }

    fn matches_everything(&self) -> bool {
        self.kind == DeviceKind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
    }

    /// The v1 line "c 1:3 rwm" ('a' rules are just "a", which the kernel reads as "a *:* rwm").
    pub fn v1_line(&self) -> String {
        let t = match self.kind {
            DeviceKind::All => 'a',
            DeviceKind::Block => 'b',
            DeviceKind::Char => 'c',
        };
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let mut acc = String::new();
        for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                acc.push(c);
            }
        }
        format!("{t} {}:{} {acc}", num(self.major), num(self.minor))
    }
}

pub fn rules_from_oci(rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, CgroupError> {
    rules.iter().map(DeviceRule::from_oci).collect()
}

/// v1: deny everything, then replay the rules in order (runc's semantics). Returns (file, line).
pub fn v1_writes(rules: &[DeviceRule]) -> Vec<(&'static str, String)> {
    let mut out = vec![("devices.deny", "a".to_string())];
    for r in rules {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        out.push((file, r.v1_line()));
    }
    out
}

// eBPF encoding (include/uapi/linux/bpf.h, bpf_common.h). One `struct bpf_insn` is
// { u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm }, here packed into a u64 in the
// little-endian layout the kernel reads on every architecture we build for.
const BPF_LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const BPF_ALU_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K (32-bit)
const BPF_ALU_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const BPF_ALU_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const BPF_ALU_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const BPF_JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const BPF_JMP_JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const BPF_JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

/// One eBPF instruction, kept as fields so tests and error messages can read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// The raw 8 bytes, as a u64 whose in-memory little-endian bytes are the struct.
    pub fn encode(self) -> u64 {
        let bytes = [
            self.code,
            (self.src << 4) | (self.dst & 0x0f),
            self.off.to_le_bytes()[0],
            self.off.to_le_bytes()[1],
            self.imm.to_le_bytes()[0],
            self.imm.to_le_bytes()[1],
            self.imm.to_le_bytes()[2],
            self.imm.to_le_bytes()[3],
        ];
        u64::from_ne_bytes(bytes)
    }
}

/// Builds the program. Context (struct bpf_cgroup_dev_ctx): u32 access_type at 0 (type in the low
/// 16 bits, access bits in the high 16), u32 major at 4, u32 minor at 8. Registers after the
/// prologue: R2 type, R3 access, R4 major, R5 minor. Rules are checked last-first, so the first
/// hit is the rule that came last in the list; each block jumps past itself on a mismatch.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        Insn::new(BPF_LDX_MEM_W, R2, R1, 0, 0),
        Insn::new(BPF_ALU_AND_K, R2, 0, 0, 0xffff),
        Insn::new(BPF_LDX_MEM_W, R3, R1, 0, 0),
        Insn::new(BPF_ALU_RSH_K, R3, 0, 0, 16),
        Insn::new(BPF_LDX_MEM_W, R4, R1, 4, 0),
        Insn::new(BPF_LDX_MEM_W, R5, R1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        if rule.matches_everything() {
            // Nothing earlier can be reached: this rule decides every access.
            p.push(Insn::new(BPF_ALU_MOV_K, R0, 0, 0, rule.allow as i32));
            p.push(Insn::new(BPF_JMP_EXIT, 0, 0, 0, 0));
            return p;
        }
        p.extend(rule_block(rule));
    }
    p.push(Insn::new(BPF_ALU_MOV_K, R0, 0, 0, 0));
    p.push(Insn::new(BPF_JMP_EXIT, 0, 0, 0, 0));
    p
}

/// The checks of one rule, then "r0 = allow; exit". Jump offsets count the instructions left in
/// the block after the jump, so a mismatch lands on the next block.
fn rule_block(rule: &DeviceRule) -> Vec<Insn> {
    // Each entry: (instructions, of which the last is a conditional jump to "next").
    let mut checks: Vec<Vec<Insn>> = Vec::new();
    match rule.kind {
        DeviceKind::All => {}
        DeviceKind::Block => {
            checks.push(vec![Insn::new(BPF_JMP_JNE_K, R2, 0, 0, DEV_BLOCK as i32)])
        }
        DeviceKind::Char => checks.push(vec![Insn::new(BPF_JMP_JNE_K, R2, 0, 0, DEV_CHAR as i32)]),
    }
    if rule.access != ACC_ALL {
        // Every requested bit must be in the rule: (access & rule) == access.
        checks.push(vec![
            Insn::new(BPF_ALU_MOV_X, R1, R3, 0, 0),
            Insn::new(BPF_ALU_AND_K, R1, 0, 0, rule.access as i32),
            Insn::new(BPF_JMP_JNE_X, R1, R3, 0, 0),
        ]);
    }
    if let Some(major) = rule.major {
        checks.push(vec![Insn::new(BPF_JMP_JNE_K, R4, 0, 0, major as i32)]);
    }
    if let Some(minor) = rule.minor {
        checks.push(vec![Insn::new(BPF_JMP_JNE_K, R5, 0, 0, minor as i32)]);
    }
    let mut block: Vec<Insn> = checks.into_iter().flatten().collect();
    block.push(Insn::new(BPF_ALU_MOV_K, R0, 0, 0, rule.allow as i32));
    block.push(Insn::new(BPF_JMP_EXIT, 0, 0, 0, 0));
    let len = block.len();
    for (i, insn) in block.iter_mut().enumerate() {
        if insn.code == BPF_JMP_JNE_K || insn.code == BPF_JMP_JNE_X {
            insn.off = (len - i - 1) as i16;
        }
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        kind: DeviceKind,
        major: Option<u32>,
        minor: Option<u32>,
        access: u32,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access,
        }
    }

    /// A tiny interpreter for the instructions `program` emits, to check semantics, not only shape.
    fn run(p: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> bool {
        let ctx = [kind | (access << 16), major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (d, s) = (i.dst as usize, i.src as usize);
            pc += 1;
            match i.code {
                BPF_LDX_MEM_W => {
                    assert_eq!(s, 1);
                    r[d] = ctx[i.off as usize / 4] as u64;
                }
                BPF_ALU_AND_K => r[d] = (r[d] as u32 & i.imm as u32) as u64,
                BPF_ALU_RSH_K => r[d] = ((r[d] as u32) >> i.imm) as u64,
                BPF_ALU_MOV_K => r[d] = i.imm as u32 as u64,
                BPF_ALU_MOV_X => r[d] = r[s] as u32 as u64,
                BPF_JMP_JNE_K => {
                    if r[d] != i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                BPF_JMP_JNE_X => {
                    if r[d] != r[s] {
                        pc += i.off as usize;
                    }
                }
                BPF_JMP_EXIT => return r[0] == 1,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn exact_instructions_for_one_char_rule() {
        let p = program(&[rule(
            true,
            DeviceKind::Char,
            Some(1),
            Some(5),
            ACC_READ | ACC_WRITE,
        )]);
        let expect = vec![
            Insn::new(BPF_LDX_MEM_W, R2, R1, 0, 0),
            Insn::new(BPF_ALU_AND_K, R2, 0, 0, 0xffff),
            Insn::new(BPF_LDX_MEM_W, R3, R1, 0, 0),
            Insn::new(BPF_ALU_RSH_K, R3, 0, 0, 16),
            Insn::new(BPF_LDX_MEM_W, R4, R1, 4, 0),
            Insn::new(BPF_LDX_MEM_W, R5, R1, 8, 0),
            Insn::new(BPF_JMP_JNE_K, R2, 0, 7, 2),
            Insn::new(BPF_ALU_MOV_X, R1, R3, 0, 0),
            Insn::new(BPF_ALU_AND_K, R1, 0, 0, 6),
            Insn::new(BPF_JMP_JNE_X, R1, R3, 4, 0),
            Insn::new(BPF_JMP_JNE_K, R4, 0, 3, 1),
            Insn::new(BPF_JMP_JNE_K, R5, 0, 2, 5),
            Insn::new(BPF_ALU_MOV_K, R0, 0, 0, 1),
            Insn::new(BPF_JMP_EXIT, 0, 0, 0, 0),
            Insn::new(BPF_ALU_MOV_K, R0, 0, 0, 0),
            Insn::new(BPF_JMP_EXIT, 0, 0, 0, 0),
        ];
        assert_eq!(p, expect);
        // r2 = *(u32 *)(r1 + 4) is 61 14 04 00 00 00 00 00.
        assert_eq!(
            Insn::new(BPF_LDX_MEM_W, R4, R1, 4, 0)
                .encode()
                .to_ne_bytes(),
            [0x61, 0x14, 4, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn last_rule_wins_default_deny() {
        let rules = [
            rule(false, DeviceKind::All, None, None, ACC_ALL),
            rule(true, DeviceKind::Char, Some(1), Some(5), ACC_ALL),
            rule(true, DeviceKind::Char, Some(1), None, ACC_READ),
            rule(false, DeviceKind::Char, Some(1), Some(3), ACC_ALL),
        ];
        let p = program(&rules);
        assert!(run(&p, DEV_CHAR, ACC_WRITE, 1, 5)); // /dev/zero rwm
        assert!(run(&p, DEV_CHAR, ACC_READ, 1, 8)); // c 1:* r
        assert!(!run(&p, DEV_CHAR, ACC_WRITE, 1, 8));
        assert!(!run(&p, DEV_CHAR, ACC_READ, 1, 3)); // denied by the last rule
        assert!(!run(&p, DEV_BLOCK, ACC_READ, 1, 5)); // block, not char
        assert!(!run(&p, DEV_CHAR, ACC_READ, 4, 0)); // nothing matched
    }

    #[test]
    fn catch_all_allow_stops_compilation() {
        let rules = [
            rule(false, DeviceKind::Char, Some(1), Some(3), ACC_ALL),
            rule(true, DeviceKind::All, None, None, ACC_ALL),
        ];
        let p = program(&rules);
        assert_eq!(p.len(), 8);
        assert!(run(&p, DEV_CHAR, ACC_READ, 1, 3));
        assert!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0));
        assert!(!run(&program(&[]), DEV_CHAR, ACC_READ, 1, 3));
    }

    #[test]
    fn oci_conversion_and_v1_lines() {
        let oci: Vec<LinuxDeviceCgroup> = serde_json::from_str(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":5,"access":"rw"},
                {"allow":true,"type":"b","major":-1,"access":""}]"#,
        )
        .unwrap();
        let rules = rules_from_oci(&oci).unwrap();
        assert_eq!(rules[2].access, ACC_ALL);
        let lines = v1_writes(&rules);
        assert_eq!(
            lines,
            vec![
                ("devices.deny", "a".to_string()),
                ("devices.deny", "a *:* rwm".to_string()),
                ("devices.allow", "c 1:5 rw".to_string()),
                ("devices.allow", "b *:* rwm".to_string()),
            ]
        );
        let bad: Vec<LinuxDeviceCgroup> =
            serde_json::from_str(r#"[{"allow":true,"access":"rx"}]"#).unwrap();
        assert!(rules_from_oci(&bad).is_err());
    }
}
