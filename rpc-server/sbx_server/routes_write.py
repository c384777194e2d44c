"""Routes: PUT /v1/files/write, POST /v1/files/commit and /abort, the legacy POST /write; and the
writes behind them (in place, replacing atomically, by range into a transfer)."""

import os
import re
import stat

from .common import FILE_CHUNK, HttpError, _O_CLOEXEC, _O_NONBLOCK, bad_request
from .files import fs_error, make_parents, parse_mode, write_all
from .httpframe import legacy_path
from .transfers import (
    JOURNAL,
    TRANSFERS,
    TRANSFER_ID_RE,
    dir_writable,
    is_special,
    replace_file,
    temp_beside,
    unlink_quietly,
    write_target,
)


class WriteRoutes(object):
    """A mixin of RoutedHandler (see routes.py): the write routes."""

    def route_write(self):
        path = self.path_param()
        mode = self.param("mode", required=False)
        mode = parse_mode(mode) if mode is not None else None
        offset = self.int_param("offset", None)
        truncate_to = self.int_param("truncate_to", None)
        transfer = self.transfer_param(False)
        if self.param("path").endswith("/"):
            if os.path.isdir(path):
                raise HttpError(409, "cannot write %s: it is a directory" % path, "is_a_directory")
            raise bad_request("cannot write %s/: a path ending in / names a directory; name the file" % path)
        if self.bool_param("mkdir", True):
            make_parents(path, "write")
        if transfer is not None:
            return self.write_range(path, transfer, offset or 0, truncate_to)
        # HF's ranged writes (an offset, no transfer) and asked-for in-place writes change the file itself.
        if offset is not None or self.bool_param("in_place", False):
            return self.write_in_place(path, mode, offset, truncate_to)
        self.write_replacing(path, mode, truncate_to)

    def transfer_param(self, required):
        transfer = self.param("transfer", required=required)
        if transfer is not None and not re.match(TRANSFER_ID_RE, transfer):
            raise bad_request("query parameter `transfer` must be 8 to 64 letters, digits, `-` or `_`, got %r" % transfer)
        return transfer

    def route_commit(self):
        path = self.path_param()
        transfer = self.transfer_param(True)
        mode = self.param("mode", required=False)
        mode = parse_mode(mode) if mode is not None else None
        size = self.int_param("size", None)
        dest = self.write_destination(path)
        if is_special(dest):
            return self.respond_json({"path": path, "size": 0})  # its ranges went straight to it
        tmp = temp_beside(dest, transfer)
        TRANSFERS.take(tmp)
        try:
            try:
                got = os.stat(tmp).st_size
            except FileNotFoundError:
                raise TRANSFERS.gone(tmp)
            if size is not None and got != size:
                message = "cannot write %s: the transfer holds %d bytes, not the %d expected" % (path, got, size)
                raise HttpError(409, message, "size_mismatch")
            self.settle_mode(tmp, dest, mode)
            replace_file(tmp, dest)
        except OSError as e:
            TRANSFERS.abort(tmp)
            raise fs_error(e, path, "write")
        except HttpError:
            TRANSFERS.abort(tmp)
            raise
        TRANSFERS.committed(tmp)
        self.respond_json({"path": path, "size": got})

    def route_abort(self):
        path = self.path_param()
        transfer = self.transfer_param(True)
        tmp = temp_beside(write_target(path), transfer)
        self.respond_json({"path": path, "aborted": TRANSFERS.abort(tmp)})

    def route_legacy_write(self):
        req = self.read_json()
        given = legacy_path(req)
        if isinstance(req.get("content_b64"), str):
            import base64  # at first use: a module the server's start does without

            try:
                data = base64.b64decode(req["content_b64"], validate=True)
            except (ValueError, TypeError):
                raise bad_request("`content_b64` is not valid base64")
        elif isinstance(req.get("content"), str):
            data = req["content"].encode("utf-8", "surrogatepass")
        else:
            raise bad_request("pass the file content as `content_b64` (base64) or `content` (text)")
        path = os.path.abspath(given)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        except OSError as e:
            raise fs_error(e, given, "write")
        self.respond_json({"ok": True})


class WriteMethods(object):
    """A mixin of RoutedHandler (see routes.py): the ways a write lands, for WriteRoutes."""

    def write_in_place(self, path, mode, offset, truncate_to):
        flags = os.O_WRONLY | os.O_CREAT | _O_CLOEXEC | _O_NONBLOCK
        if offset is None:
            flags |= os.O_TRUNC
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:
            message = "cannot write %s: parent directory does not exist (omit mkdir=0 to create it)" % path
            raise HttpError(404, message, "not_found")
        except OSError as e:
            raise fs_error(e, path, "write")
        try:
            try:
                self.copy_body(fd, offset)
                if truncate_to is not None:
                    os.ftruncate(fd, truncate_to)
                if mode is not None:
                    if hasattr(os, "fchmod"):
                        os.fchmod(fd, mode)
                    else:
                        os.chmod(path, mode)
                size = os.fstat(fd).st_size
            except OSError as e:
                raise fs_error(e, path, "write")
        finally:
            os.close(fd)
        self.respond_json({"path": path, "size": size})

    def open_temp(self, tmp, path, extra_flags):
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | _O_CLOEXEC | _O_NONBLOCK | extra_flags, 0o666)
        except FileNotFoundError:
            message = "cannot write %s: parent directory does not exist (omit mkdir=0 to create it)" % path
            raise HttpError(404, message, "not_found")
        except OSError as e:
            raise fs_error(e, path, "write")

    def copy_body(self, fd, offset, tmp=None):
        if offset:
            os.lseek(fd, offset, os.SEEK_SET)
        while True:
            chunk = self._body.read(FILE_CHUNK)
            if not chunk:
                return
            write_all(fd, chunk)
            if tmp is not None:
                TRANSFERS.touch(tmp)

    @staticmethod
    def settle_mode(tmp, dest, mode):
        """The replacing file gets `mode`, else the mode of the file it replaces
        (an in-place write would have kept it), else the default a new file gets."""
        if mode is None:
            try:
                mode = stat.S_IMODE(os.stat(dest).st_mode)
            except OSError:
                return
        os.chmod(tmp, mode)

    def write_destination(self, path):
        dest = write_target(path)
        if os.path.isdir(dest):
            raise HttpError(409, "cannot write %s: it is a directory" % path, "is_a_directory")
        return dest

    def write_replacing(self, path, mode, truncate_to):
        """One request, one file: written beside the destination, then renamed
        over it, so a reader (or a cut connection) never meets half a file."""
        dest = self.write_destination(path)
        if is_special(dest) or (os.path.isfile(dest) and not dir_writable(dest)):
            # No room for a temp file beside a writable file: written in place, as it always could be.
            return self.write_in_place(path, mode, None, truncate_to)
        tmp = temp_beside(dest, os.urandom(8).hex())
        JOURNAL.add(tmp)
        try:
            fd = self.open_temp(tmp, path, os.O_EXCL)
        except BaseException:
            JOURNAL.remove(tmp)
            raise
        done = False
        try:
            try:
                self.copy_body(fd, 0)
                if truncate_to is not None:
                    os.ftruncate(fd, truncate_to)
                size = os.fstat(fd).st_size
                self.settle_mode(tmp, dest, mode)
                replace_file(tmp, dest)
                done = True
            except OSError as e:
                raise fs_error(e, path, "write")
        finally:
            os.close(fd)
            if not done:
                unlink_quietly(tmp)
            JOURNAL.remove(tmp)
        self.respond_json({"path": path, "size": size})

    def write_range(self, path, transfer, offset, truncate_to):
        """One range of a transfer, into the transfer's temporary file."""
        dest = self.write_destination(path)
        if is_special(dest):
            return self.write_in_place(path, None, offset, None)
        if os.path.isfile(dest) and not dir_writable(dest):
            message = (
                "cannot write %s: its directory is not writable, so it cannot be replaced whole by a transfer; "
                "write it in one request in place (in_place=1)" % path
            )
            raise bad_request(message, "permission_denied")
        tmp = temp_beside(dest, transfer)
        TRANSFERS.begin(tmp)
        failed = True
        try:
            fd = self.open_temp(tmp, path, 0)
            try:
                try:
                    self.copy_body(fd, offset, tmp)
                    if truncate_to is not None:
                        os.ftruncate(fd, truncate_to)
                    size = os.fstat(fd).st_size
                except OSError as e:
                    raise fs_error(e, path, "write")
            finally:
                os.close(fd)
            failed = False
        finally:
            TRANSFERS.end(tmp, failed)
        self.respond_json({"path": path, "size": size})
