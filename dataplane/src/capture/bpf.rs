//! A classic BPF (cBPF) interpreter for capture filters on the polling
//! cores. libpcap compiles the filter text (`libpcap.rs`, on the admin
//! side); `Program::new` validates the instructions once (opcodes known,
//! jumps forward and in range, scratch memory in range, a return at the
//! end), so `Program::run` is bounded by the program length, allocates
//! nothing and makes no syscall. Semantics follow libpcap's `bpf_filter`:
//! an out-of-range load or a division by zero rejects the packet.

/// One cBPF instruction, as `struct bpf_insn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Scratch memory words (`BPF_MEMWORDS`).
const MEMWORDS: usize = 16;
/// Longest program accepted (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

// Instruction classes, sizes, modes, operations (linux/filter.h, pcap/bpf.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const LEN: u16 = 0x80;
const MSH: u16 = 0xa0;
const SRC_X: u16 = 0x08;
const ADD: u16 = 0x00;
const SUB: u16 = 0x10;
const MUL: u16 = 0x20;
const DIV: u16 = 0x30;
const OR: u16 = 0x40;
const AND: u16 = 0x50;
const LSH: u16 = 0x60;
const RSH: u16 = 0x70;
const NEG: u16 = 0x80;
const MOD: u16 = 0x90;
const XOR: u16 = 0xa0;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
const RVAL_K: u16 = 0x00;
const RVAL_X: u16 = 0x08;
const RVAL_A: u16 = 0x10;
const TAX: u16 = 0x00;
const TXA: u16 = 0x80;

/// Why a program was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BpfError {
    #[error("empty BPF program")]
    Empty,
    #[error("BPF program of {0} instructions (at most {MAX_INSNS})")]
    TooLong(usize),
    #[error("BPF instruction {at}: opcode {code:#06x} is not classic BPF this interpreter runs")]
    Opcode { at: usize, code: u16 },
    #[error("BPF instruction {at}: jump past the end of the program")]
    Jump { at: usize },
    #[error("BPF instruction {at}: scratch memory index {k} (0-15)")]
    Memory { at: usize, k: u32 },
    #[error("BPF instruction {at}: division by constant zero")]
    DivZero { at: usize },
    #[error("BPF program does not end with a return")]
    NoReturn,
}

/// A validated cBPF program.
#[derive(Debug, Clone)]
pub struct Program {
    insns: Box<[Insn]>,
}

impl Program {
    /// Validates `insns` (as `bpf_validate` does) so that `run` needs no checks
    /// beyond packet bounds.
    pub fn new(insns: Vec<Insn>) -> Result<Self, BpfError> {
        if insns.is_empty() {
            return Err(BpfError::Empty);
        }
        if insns.len() > MAX_INSNS {
            return Err(BpfError::TooLong(insns.len()));
        }
        let n = insns.len();
        for (at, i) in insns.iter().enumerate() {
            let bad = || BpfError::Opcode { at, code: i.code };
            let mem = |k: u32| {
                if (k as usize) < MEMWORDS {
                    Ok(())
                } else {
                    Err(BpfError::Memory { at, k })
                }
            };
            match i.code & 0x07 {
                LD => match (i.code & 0xe0, i.code & 0x18) {
                    (ABS | IND, W | H | B) => {}
                    (IMM | LEN, W) => {}
                    (MEM, W) => mem(i.k)?,
                    _ => return Err(bad()),
                },
                LDX => match (i.code & 0xe0, i.code & 0x18) {
                    (IMM | LEN, W) => {}
                    (MEM, W) => mem(i.k)?,
                    (MSH, B) => {}
                    _ => return Err(bad()),
                },
                ST | STX => {
                    if i.code & !0x07 != 0 {
                        return Err(bad());
                    }
                    mem(i.k)?
                }
                ALU => {
                    let op = i.code & 0xf0;
                    if !matches!(
                        op,
                        ADD | SUB | MUL | DIV | OR | AND | LSH | RSH | NEG | MOD | XOR
                    ) || i.code & 0x07 != ALU
                        || i.code & !0xff != 0
                    {
                        return Err(bad());
                    }
                    if matches!(op, DIV | MOD) && i.code & SRC_X == 0 && i.k == 0 {
                        return Err(BpfError::DivZero { at });
                    }
                }
                JMP => {
                    let op = i.code & 0xf0;
                    if i.code & !0xff != 0 {
                        return Err(bad());
                    }
                    let next = at + 1;
                    let ok = match op {
                        JA => (i.k as usize) < n - next,
                        JEQ | JGT | JGE | JSET => {
                            next + usize::from(i.jt) < n && next + usize::from(i.jf) < n
                        }
                        _ => return Err(bad()),
                    };
                    if !ok {
                        return Err(BpfError::Jump { at });
                    }
                }
                RET => {
                    if !matches!(i.code & 0x18, RVAL_K | RVAL_X | RVAL_A) || i.code & !0x1f != 0 {
                        return Err(bad());
                    }
                }
                MISC => {
                    if !matches!(i.code & 0xf8, TAX | TXA) {
                        return Err(bad());
                    }
                }
                _ => unreachable!("the class is three bits"),
            }
        }
        if insns[n - 1].code & 0x07 != RET {
            return Err(BpfError::NoReturn);
        }
        Ok(Program {
            insns: insns.into_boxed_slice(),
        })
    }

    /// Runs the program on a packet of which `pkt` was captured and `wire_len`
    /// bytes were on the wire; the program's return value (0: no match).
    pub fn run(&self, pkt: &[u8], wire_len: u32) -> u32 {
        let mut a: u32 = 0;
        let mut x: u32 = 0;
        let mut mem = [0u32; MEMWORDS];
        let mut pc = 0usize;
        let load = |off: u32, size: u16| -> Option<u32> {
            let off = off as usize;
            match size {
                W => pkt
                    .get(off..off.checked_add(4)?)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                H => pkt
                    .get(off..off.checked_add(2)?)
                    .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]]))),
                _ => pkt.get(off).map(|&b| u32::from(b)),
            }
        };
        // Validation made every jump forward and in range, and the last
        // instruction a return: this loop ends within `insns.len()` steps.
        loop {
            let i = self.insns[pc];
            pc += 1;
            match i.code & 0x07 {
                LD => {
                    a = match i.code & 0xe0 {
                        ABS => match load(i.k, i.code & 0x18) {
                            Some(v) => v,
                            None => return 0,
                        },
                        IND => match x.checked_add(i.k).and_then(|o| load(o, i.code & 0x18)) {
                            Some(v) => v,
                            None => return 0,
                        },
                        MEM => mem[i.k as usize],
                        LEN => wire_len,
                        _ => i.k,
                    }
                }
                LDX => {
                    x = match i.code & 0xe0 {
                        MEM => mem[i.k as usize],
                        LEN => wire_len,
                        MSH => match pkt.get(i.k as usize) {
                            Some(&b) => u32::from(b & 0x0f) << 2,
                            None => return 0,
                        },
                        _ => i.k,
                    }
                }
                ST => mem[i.k as usize] = a,
                STX => mem[i.k as usize] = x,
                ALU => {
                    let v = if i.code & SRC_X != 0 { x } else { i.k };
                    a = match i.code & 0xf0 {
                        ADD => a.wrapping_add(v),
                        SUB => a.wrapping_sub(v),
                        MUL => a.wrapping_mul(v),
                        DIV => match a.checked_div(v) {
                            Some(r) => r,
                            None => return 0,
                        },
                        MOD => match a.checked_rem(v) {
                            Some(r) => r,
                            None => return 0,
                        },
                        OR => a | v,
                        AND => a & v,
                        XOR => a ^ v,
                        LSH => a.checked_shl(v).unwrap_or(0),
                        RSH => a.checked_shr(v).unwrap_or(0),
                        _ => a.wrapping_neg(),
                    }
                }
                JMP => {
                    let v = if i.code & SRC_X != 0 { x } else { i.k };
                    let taken = match i.code & 0xf0 {
                        JA => {
                            pc += i.k as usize;
                            continue;
                        }
                        JEQ => a == v,
                        JGT => a > v,
                        JGE => a >= v,
                        _ => a & v != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                RET => {
                    return match i.code & 0x18 {
                        RVAL_X => x,
                        RVAL_A => a,
                        _ => i.k,
                    }
                }
                _ => {
                    if i.code & 0xf8 == TXA {
                        a = x
                    } else {
                        x = a
                    }
                }
            }
        }
    }

    /// Does the packet match (a non-zero return)?
    #[inline]
    pub fn matches(&self, pkt: &[u8], wire_len: u32) -> bool {
        self.run(pkt, wire_len) != 0
    }

    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ins(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }

    #[test]
    fn validation_refuses_bad_programs() {
        assert_eq!(Program::new(vec![]).unwrap_err(), BpfError::Empty);
        assert_eq!(
            Program::new(vec![ins(LD | W | ABS, 0, 0, 0)]).unwrap_err(),
            BpfError::NoReturn
        );
        assert_eq!(
            Program::new(vec![ins(JMP | JEQ, 5, 0, 1), ins(RET, 0, 0, 1)]).unwrap_err(),
            BpfError::Jump { at: 0 }
        );
        assert_eq!(
            Program::new(vec![ins(ST, 0, 0, 16), ins(RET, 0, 0, 1)]).unwrap_err(),
            BpfError::Memory { at: 0, k: 16 }
        );
        assert_eq!(
            Program::new(vec![ins(ALU | DIV, 0, 0, 0), ins(RET, 0, 0, 1)]).unwrap_err(),
            BpfError::DivZero { at: 0 }
        );
        assert!(matches!(
            Program::new(vec![ins(0x20 | 0x18 | LD, 0, 0, 0), ins(RET, 0, 0, 1)]),
            Err(BpfError::Opcode { at: 0, .. })
        ));
        assert!(Program::new(vec![ins(JMP | JA, 0, 0, 0), ins(RET, 0, 0, 1)]).is_ok());
    }

    #[test]
    fn runtime_rejections() {
        // Load past the end of the packet: no match.
        let p = Program::new(vec![
            ins(LD | W | ABS, 0, 0, 10),
            ins(RET | RVAL_A, 0, 0, 0),
        ])
        .unwrap();
        assert_eq!(p.run(&[1; 13], 13), 0);
        assert_eq!(p.run(&[1; 14], 14), 0x0101_0101);
        // Division by X = 0: no match.
        let p = Program::new(vec![
            ins(LD | IMM, 0, 0, 7),
            ins(ALU | DIV | SRC_X, 0, 0, 0),
            ins(RET | RVAL_A, 0, 0, 0),
        ])
        .unwrap();
        assert_eq!(p.run(&[], 0), 0);
        // MSH, IND, scratch memory, TAX/TXA.
        let p = Program::new(vec![
            ins(LDX | B | MSH, 0, 0, 0),
            ins(LD | B | IND, 0, 0, 0),
            ins(ST, 0, 0, 3),
            ins(MISC | TAX, 0, 0, 0),
            ins(LD | MEM, 0, 0, 3),
            ins(ALU | ADD | SRC_X, 0, 0, 0),
            ins(RET | RVAL_A, 0, 0, 0),
        ])
        .unwrap();
        let mut pkt = [0u8; 24];
        pkt[0] = 0x45;
        pkt[20] = 9;
        assert_eq!(p.run(&pkt, 24), 18);
    }
}
