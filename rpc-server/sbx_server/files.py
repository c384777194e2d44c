"""File system helpers of the file routes: errors as HTTP answers, parents, positional reads and
writes, listing entries, directories opened without following symlinks, modes."""

import errno
import os
import re
import stat

from .common import HttpError, bad_request


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def fs_error(e, path, action):
    """Map an OSError to an HttpError whose message names the path."""
    err = getattr(e, "errno", None)
    what = "cannot %s %s" % (action, path)
    if err == errno.ENOENT:
        return HttpError(404, "%s: no such file or directory" % what, "not_found")
    if err == errno.EISDIR:
        return HttpError(409, "%s: it is a directory" % what, "is_a_directory")
    if err == errno.ENOTDIR:
        return HttpError(400, "%s: a component of the path is not a directory" % what, "not_a_directory")
    if err == errno.ENOTEMPTY:
        return HttpError(409, "%s: directory not empty (delete it recursively)" % what, "not_empty")
    if err == errno.EEXIST:
        return HttpError(409, "%s: it already exists" % what, "already_exists")
    if err in (errno.EACCES, errno.EPERM):
        return HttpError(400, "%s: permission denied" % what, "permission_denied")
    if err in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return HttpError(507, "%s: no space left on device" % what, "no_space")
    if err == errno.EROFS:
        return HttpError(400, "%s: read-only file system" % what, "read_only")
    if isinstance(e, ValueError):
        return HttpError(400, "%s: %s" % (what, e), "bad_request")
    return HttpError(400, "%s: %s" % (what, getattr(e, "strerror", None) or e), "io_error")


def make_parents(path, action):
    """Create the parent directories of `path`. A file in the way is ENOTDIR's
    not_a_directory (makedirs reports it as EEXIST, which would say "exists")."""
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
    except FileExistsError:
        message = "cannot %s %s: a component of the path is not a directory" % (action, path)
        raise bad_request(message, "not_a_directory")
    except OSError as e:
        raise fs_error(e, parent, "create the parent directory of")


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def pread(fd, n, offset):
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, n)


def pread_all(fd, n, offset):
    parts, got = [], 0
    while got < n:
        data = pread(fd, n - got, offset + got)
        if not data:
            break  # the file shrank
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def entry(path, name=None, st=None, with_target=False, dir_fd=None):
    """An Entry with exactly the keys of HF's FileEntry (whose client rejects any
    other key), plus a symlink's `target` when `with_target`. With `dir_fd`, the
    target is read relative to that directory (by the last part of `path`), not
    through `path`'s parents, which may have been swapped for links meanwhile."""
    if st is None:
        st = os.lstat(path)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        kind = "dir"
    elif stat.S_ISLNK(mode):
        kind = "symlink"
    else:
        kind = "file"
    out = {
        "name": name if name is not None else (os.path.basename(path) or path),
        "path": path,
        "type": kind,
        "size": st.st_size,
        "mtime_ms": st.st_mtime_ns // 1000000,
        "mode": "%o" % stat.S_IMODE(mode),
    }
    if with_target and kind == "symlink":
        try:
            if dir_fd is None:
                out["target"] = os.readlink(path)
            else:
                out["target"] = os.readlink(os.path.basename(path), dir_fd=dir_fd)
        except OSError:
            pass  # vanished or unreadable: omit rather than send null
    return out


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class DirChanged(OSError):
    """A directory seen by lstat was something else when opened: swapped for a
    symlink, a file or another directory in between."""


def open_dir(name, dir_fd=None, seen=None):
    """A descriptor of the directory `name`. A listed directory's root is opened
    as given (a symlink there is followed, as the caller named it); a child
    (`dir_fd` given) never: it is opened relative to its parent's descriptor with
    O_NOFOLLOW, and must be the very directory `seen` (its lstat) described, so a
    directory swapped for a link between the lstat and the open is never entered."""
    if dir_fd is None:
        return os.open(name, _DIR_FLAGS)
    try:
        fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # now a symlink, or a file
            raise DirChanged(e.errno, "it was replaced while listing (now not a directory)")
        raise
    if seen is not None:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
            os.close(fd)
            raise DirChanged(errno.ESTALE, "it was replaced by another directory while listing")
    return fd


def scan_dir(path, failed=None, dir_fd=None):
    """The (name, lstat) pairs of a directory, sorted by name. `path` is a path,
    or, with `dir_fd`, an open directory descriptor (kept open; entries are
    stat'ed relative to it, never through a path). Raises OSError for the
    directory itself. An entry that vanishes meanwhile is left out; one that
    cannot be lstat'ed for another reason (a directory readable but not
    searchable) too, after appending (name, error) to `failed`."""
    children = []
    # scandir of a descriptor works on a duplicate of it: `dir_fd` stays open.
    with os.scandir(path if dir_fd is None else dir_fd) as it:
        for de in it:
            try:
                children.append((de.name, de.stat(follow_symlinks=False)))
            except OSError as e:
                if failed is not None and not isinstance(e, FileNotFoundError):
                    failed.append((de.name, e))
    children.sort(key=lambda c: c[0])
    return children


_MODE_RE = r"\A(0o)?[0-7]{1,4}\Z"  # a pattern: re compiles it at its first use (see httpframe.py)


def parse_mode(value):
    if not re.match(_MODE_RE, value):
        raise bad_request("invalid mode %r: expected an octal string such as 644 or 0755" % value)
    return int(value[2:] if value.startswith("0o") else value, 8)
