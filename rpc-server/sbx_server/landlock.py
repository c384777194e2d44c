"""Landlock through ctypes syscalls (no library has it in the standard library): the ABI version and one
ruleset per sandbox, applied by isolation.CONFINE_FN in the command's wrapper, cold or warm
(landlock_restrict_self).

The rules mirror HF's src/landlock.rs: system directories read-only and executable, /proc and /sys
readable, the standard /dev nodes readable and writable, the sandbox's home fully; nothing else (not
/tmp, not /dev/shm, not another home). TCP bind is denied (ABI 4): a sandbox's servers listen on unix
sockets in $SBX_PROXY_DIR. Abstract unix sockets are scoped to the domain (ABI 6). Signals are not
scoped, as in HF's: every command gets a domain of its own, so a signal scope would stop a sandbox
from signalling its own background processes; its own uid already keeps it from other sandboxes'.
The syscall numbers are the same on x86_64 and aarch64 (the generic table)."""

import ctypes
import os

SYS_CREATE_RULESET, SYS_ADD_RULE = 444, 445
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FS_ABI1 = (1 << 13) - 1  # execute .. make_sym: everything ABI 1 controls
NET_BIND_TCP = 1 << 0
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0

EXEC_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc", "/opt", "/run")
READ_DIRS = ("/proc", "/sys")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi():
    version = _libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(0, int(version))


def handled_fs(version):
    handled = FS_ABI1
    if version >= 2:
        handled |= FS_REFER
    if version >= 3:
        handled |= FS_TRUNCATE
    if version >= 5:
        handled |= FS_IOCTL_DEV
    return handled


_system = []  # (O_PATH fd, access) of the system directories: opened once, for every ruleset


def system_rules(version):
    if not _system:
        fs = handled_fs(version)
        rules = [(d, (FS_EXECUTE | FS_READ_FILE | FS_READ_DIR) & fs) for d in EXEC_DIRS]
        rules += [(d, (FS_READ_FILE | FS_READ_DIR) & fs) for d in READ_DIRS]
        rules.append(("/dev", (FS_READ_FILE | FS_WRITE_FILE | FS_READ_DIR | FS_IOCTL_DEV) & fs))
        for path, access in rules:
            try:
                _system.append((os.open(path, os.O_PATH | os.O_CLOEXEC), access))
            except OSError:
                pass  # absent in this image
    return _system


def add_rule(ruleset_fd, parent_fd, access):
    attr = PathBeneathAttr(access, parent_fd)
    if _libc.syscall(SYS_ADD_RULE, ruleset_fd, RULE_PATH_BENEATH, ctypes.byref(attr), ctypes.c_uint32(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "landlock_add_rule: %s" % os.strerror(err))


def ruleset(version, home):
    """A ruleset fd confining a command to `home` (kept open for the sandbox's life; inherited by the
    wrapper only through pass_fds)."""
    fs = handled_fs(version)
    attr = RulesetAttr(fs, NET_BIND_TCP if version >= 4 else 0, SCOPE_ABSTRACT_UNIX_SOCKET if version >= 6 else 0)
    fd = _libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, "landlock_create_ruleset: %s" % os.strerror(err))
    fd = int(fd)
    try:
        os.set_inheritable(fd, False)
        for parent_fd, access in system_rules(version):
            add_rule(fd, parent_fd, access)
        home_fd = os.open(home, os.O_PATH | os.O_CLOEXEC)
        try:
            add_rule(fd, home_fd, fs)
        finally:
            os.close(home_fd)
    except BaseException:
        os.close(fd)
        raise
    return fd
