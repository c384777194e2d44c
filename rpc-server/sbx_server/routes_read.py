"""Routes: GET /v1/files/read and the legacy POST /read."""

import os
import stat

from .common import ClientGone, FILE_CHUNK, HttpError, _O_CLOEXEC, _O_NONBLOCK
from .files import fs_error, pread, pread_all
from .httpframe import legacy_path


class ReadRoutes(object):
    """A mixin of RoutedHandler (see routes.py)."""

    def open_for_read(self, path, shown):
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NONBLOCK)
        except OSError as e:
            raise fs_error(e, shown, "read")
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            message = "cannot read %s: it is a directory (list it with files/list)" % shown
            raise HttpError(409, message, "is_a_directory")
        return fd, st

    def stream_file(self, fd, offset, n, content_type, prefix=b"", encode=None, suffix=b"", total=None, headers=()):
        """Send file bytes [offset, offset+n) as the body. Small bodies go out
        in one sendall; large ones are streamed in FILE_CHUNK pieces (sendfile
        when possible) after announcing the length. If the file shrinks under
        us, the connection is closed rather than desynchronised."""
        if total is None:
            total = n
        if n <= FILE_CHUNK:
            data = pread_all(fd, n, offset)
            if encode is not None:
                data = encode(data)
            return self.respond(200, prefix + data + suffix, content_type, headers)
        length = len(prefix) + total + len(suffix)
        head = self.head_bytes(200, [("Content-Type", content_type), ("Content-Length", str(length))] + list(headers))
        self.send_bytes(head + prefix)
        sent = 0
        if encode is None and hasattr(os, "sendfile"):
            f = os.fdopen(fd, "rb", closefd=False)
            try:
                sent = self.connection.sendfile(f, offset, n)
            except (OSError, ValueError):
                raise ClientGone()
            finally:
                f.close()
        else:
            step = FILE_CHUNK - FILE_CHUNK % 3  # base64 needs whole 3-byte groups
            while sent < n:
                data = pread(fd, min(step, n - sent), offset + sent)
                if not data:
                    break
                sent += len(data)
                self.send_bytes(encode(data) if encode is not None else data)
        if sent < n:
            self.close_connection = True
            return
        self.send_bytes(suffix)

    def route_read(self):
        path = self.path_param()
        if self.param("path").endswith("/") and path != "/":
            path += "/"  # `file/` is not a directory: the OS answers ENOTDIR, like `cat file/`
        offset = self.int_param("offset", 0)
        length = self.int_param("length", None)
        fd, st = self.open_for_read(path, path)
        try:
            size = st.st_size
            n = max(0, size - offset)
            if length is not None:
                n = min(n, length)
            # The whole file's size and mode ride along, so a ranged reader needs no separate stat.
            facts = [("X-File-Size", str(size)), ("X-File-Mode", "%o" % stat.S_IMODE(st.st_mode))]
            self.stream_file(fd, offset, n, "application/octet-stream", headers=facts)
        finally:
            os.close(fd)

    def route_legacy_read(self):
        req = self.read_json()
        given = legacy_path(req)
        path = os.path.abspath(given)
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NONBLOCK)
        except FileNotFoundError:
            raise HttpError(404, "file not found: %s" % given, "not_found")
        except OSError as e:
            raise fs_error(e, given, "read")
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise HttpError(409, "cannot read %s: it is a directory" % given, "is_a_directory")
            n = st.st_size
            import base64  # at first use: a module the server's start does without

            # Streamed as JSON: the base64 length is known up front, so memory
            # stays bounded even for a large file.
            self.stream_file(
                fd, 0, n, "application/json",
                prefix=b'{"content_b64":"', encode=base64.b64encode, suffix=b'"}', total=4 * ((n + 2) // 3),
            )
        finally:
            os.close(fd)
