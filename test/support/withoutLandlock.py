"""Runs a program (argv[1:]) on this kernel as if Landlock were disabled at boot: a seccomp filter makes
the three Landlock syscalls fail with EOPNOTSUPP, which is what the kernel answers when Landlock is built
in but not enabled (security/landlock/syscalls.c). The filter is inherited by everything the program
starts, so its children see the same kernel. The host-mode suites use it to start a server without
Landlock (test/server/hostWeak.test.ts); the server itself has no switch for that. Linux x86_64 and
aarch64 only: there the Landlock syscalls are 444-446 (the generic table)."""

import ctypes
import errno
import os
import sys

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
LD_W_ABS, JGE_K, JGT_K, RET_K = 0x20, 0x35, 0x25, 0x06
RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
FIRST, LAST = 444, 446  # landlock_create_ruleset, landlock_add_rule, landlock_restrict_self


class Instruction(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]


def main():
    code = [
        (LD_W_ABS, 0, 0, 0),  # the syscall number (seccomp_data.nr)
        (JGE_K, 0, 2, FIRST),  # below 444: allow
        (JGT_K, 1, 0, LAST),  # above 446: allow
        (RET_K, 0, 0, RET_ERRNO | errno.EOPNOTSUPP),
        (RET_K, 0, 0, RET_ALLOW),
    ]
    instructions = (Instruction * len(code))(*[Instruction(*i) for i in code])
    program = Program(len(code), instructions)
    libc = ctypes.CDLL(None, use_errno=True)
    # Unprivileged, a seccomp filter needs NO_NEW_PRIVS (root needs none: it has CAP_SYS_ADMIN). The
    # program inherits it: a test must not take it for the server's doing.
    if os.geteuid() != 0 and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
