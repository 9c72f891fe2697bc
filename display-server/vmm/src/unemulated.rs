//! Instructions that nested, software-assisted KVM (which emulates guest kernel code,
//! as on the CI machines) cannot run, but Linux does: the VMM completes them as the CPU
//! would. On real KVM hosts they run natively and never come here. `cmpxchg16b`,
//! `xrstor` and `clac` are not among them: kernel arguments keep Linux from using them
//! (`clearcpuid=cx16,smap noxsave`).

use kvm_bindings::kvm_regs;

/// What to do for the instruction at RIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completion {
    /// `int3`: raise #BP with RIP after the instruction.
    Breakpoint,
    /// `fwait` with no x87 exception pending: nothing.
    Skip { len: u64 },
    /// `ldmxcsr m32`: load MXCSR from this guest-virtual address.
    LoadMxcsr { address: u64, len: u64 },
}

/// Decodes the instruction in `code` (bytes at RIP) if it is one the VMM completes.
pub(crate) fn decode(code: &[u8], regs: &kvm_regs) -> Option<Completion> {
    match code {
        [0xcc, ..] => return Some(Completion::Breakpoint),
        [0x9b, ..] => return Some(Completion::Skip { len: 1 }),
        _ => {}
    }
    // ldmxcsr: [REX] 0F AE /2 with a memory operand.
    let (rex, rest) = match code {
        [r @ 0x40..=0x4f, rest @ ..] => (*r, rest),
        rest => (0, rest),
    };
    let [0x0f, 0xae, modrm, tail @ ..] = rest else {
        return None;
    };
    let (mode, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if reg != 2 || mode == 3 {
        return None;
    }
    let prefix = u64::from(rex != 0);
    let mut len = prefix + 3;
    let rex_b = (rex & 1) << 3;
    let mut tail = tail;
    let base = if rm == 4 {
        // SIB: only a base register, no index (what compilers emit for stack slots).
        let [sib, after @ ..] = tail else { return None };
        tail = after;
        len += 1;
        let (index, base) = ((sib >> 3) & 7, sib & 7);
        if index != 4 || (rex & 2) != 0 || (base == 5 && mode == 0) {
            return None;
        }
        register(regs, base | rex_b)
    } else if rm == 5 && mode == 0 {
        // RIP-relative: from the end of the instruction.
        let disp = i32::from_le_bytes(tail.get(..4)?.try_into().ok()?);
        let len = len + 4;
        let address = regs.rip.wrapping_add(len).wrapping_add(disp as i64 as u64);
        return Some(Completion::LoadMxcsr { address, len });
    } else {
        register(regs, rm | rex_b)
    };
    let disp = match mode {
        0 => 0,
        1 => {
            len += 1;
            i64::from(*tail.first()? as i8)
        }
        _ => {
            len += 4;
            i64::from(i32::from_le_bytes(tail.get(..4)?.try_into().ok()?))
        }
    };
    Some(Completion::LoadMxcsr {
        address: base.wrapping_add(disp as u64),
        len,
    })
}

fn register(regs: &kvm_regs, index: u8) -> u64 {
    [
        regs.rax, regs.rcx, regs.rdx, regs.rbx, regs.rsp, regs.rbp, regs.rsi, regs.rdi, regs.r8,
        regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15,
    ][usize::from(index & 15)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_linux_runs() {
        let regs = kvm_regs {
            rsp: 0x1000,
            rip: 0x5000,
            r9: 0x2000,
            ..Default::default()
        };
        assert_eq!(decode(&[0xcc], &regs), Some(Completion::Breakpoint));
        assert_eq!(
            decode(&[0x9b, 0x65], &regs),
            Some(Completion::Skip { len: 1 })
        );
        // ldmxcsr 0x4(%rsp), as in kernel_fpu_begin_mask.
        assert_eq!(
            decode(&[0x0f, 0xae, 0x54, 0x24, 0x04], &regs),
            Some(Completion::LoadMxcsr {
                address: 0x1004,
                len: 5
            })
        );
        // ldmxcsr -8(%r9)
        assert_eq!(
            decode(&[0x41, 0x0f, 0xae, 0x51, 0xf8], &regs),
            Some(Completion::LoadMxcsr {
                address: 0x1ff8,
                len: 5
            })
        );
        // ldmxcsr 0x10(%rip)
        assert_eq!(
            decode(&[0x0f, 0xae, 0x15, 0x10, 0, 0, 0], &regs),
            Some(Completion::LoadMxcsr {
                address: 0x5017,
                len: 7
            })
        );
        // stmxcsr (/3), register forms and other instructions are not ours.
        assert_eq!(decode(&[0x0f, 0xae, 0x5c, 0x24, 0x04], &regs), None);
        assert_eq!(decode(&[0x0f, 0xae, 0xd0], &regs), None);
        assert_eq!(decode(&[0x0f, 0xc7, 0x0f], &regs), None);
        assert_eq!(decode(&[0x0f, 0xae], &regs), None);
    }
}
