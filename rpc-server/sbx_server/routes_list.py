"""Routes: GET /v1/files/stat and /v1/files/list (recursive listings that never follow a symlink)."""

import os
import stat

from .common import bad_request, dumps
from .files import DirChanged, entry, fs_error, open_dir, scan_dir


class ListRoutes(object):
    """A mixin of RoutedHandler (see routes.py)."""

    def route_stat(self):
        path = self.path_param()
        with_target = self.bool_param("symlink_targets", False)
        try:
            self.respond_json(entry(path, with_target=with_target))
        except OSError as e:
            raise fs_error(e, path, "stat")

    def route_list(self):
        path = self.path_param()
        recursive = self.bool_param("recursive", False)
        with_target = self.bool_param("symlink_targets", False)
        try:
            fd = open_dir(path)  # `path` itself may be a symlink: followed
        except NotADirectoryError:
            raise bad_request("cannot list %s: not a directory (stat or read it instead)" % path, "not_a_directory")
        except OSError as e:
            raise fs_error(e, path, "list")
        try:
            self.list_from(path, fd, recursive, with_target)
        finally:
            os.close(fd)

    def list_from(self, path, fd, recursive, with_target):
        """Answers a listing of the directory open at `fd`. The walk goes from
        descriptor to descriptor (see open_dir): a directory swapped for a symlink
        between its lstat and its listing is reported, never followed."""
        try:
            failed = []
            children = scan_dir(path, failed, dir_fd=fd)
            root = os.fstat(fd) if recursive else None
        except OSError as e:
            raise fs_error(e, path, "list")
        if not recursive:
            listed = [entry(os.path.join(path, name), name, st, with_target, fd) for name, st in children]
            self.respond_json({"entries": listed})
            return
        # Depth first, siblings sorted by name: a directory comes right before
        # its contents. Entries are encoded as they are found, so memory is the
        # answer's bytes plus one sorted directory (and one descriptor) per
        # level being walked.
        parts, skipped = [], []

        def skip(rel, full, e, action="list"):
            if isinstance(e, DirChanged):
                message = "cannot list %s: %s" % (full, e.strerror)
                skipped.append({"name": rel, "path": full, "error": message, "code": "changed"})
                return
            err = fs_error(e, full, action)
            skipped.append({"name": rel, "path": full, "error": err.message, "code": err.code})

        for name, e in failed:
            skip(name, os.path.join(path, name), e, "stat")
        ancestors = {(root.st_dev, root.st_ino)}
        stack = [("", iter(children), None, fd)]
        try:
            while stack:
                prefix, it, key, parent_fd = stack[-1]
                child = next(it, None)
                if child is None:
                    stack.pop()
                    ancestors.discard(key)
                    if parent_fd != fd:
                        os.close(parent_fd)
                    continue
                name, st = child
                rel = prefix + name
                full = os.path.join(path, rel)
                parts.append(dumps(entry(full, rel, st, with_target, parent_fd)))
                if not stat.S_ISDIR(st.st_mode):
                    continue  # files, and symlinks (never followed, even to a directory)
                key = (st.st_dev, st.st_ino)
                if key in ancestors:  # a bind mount of one of its own ancestors
                    message = "cannot list %s: it is one of its own parent directories (a file system loop)" % full
                    skipped.append({"name": rel, "path": full, "error": message, "code": "loop"})
                    continue
                del failed[:]
                try:
                    child_fd = open_dir(name, parent_fd, st)
                except FileNotFoundError:
                    continue  # vanished while listing
                except OSError as e:
                    skip(rel, full, e)
                    continue
                try:
                    grandchildren = scan_dir(full, failed, dir_fd=child_fd)
                except OSError as e:
                    os.close(child_fd)
                    if not isinstance(e, FileNotFoundError):
                        skip(rel, full, e)
                    continue
                for sub, e in failed:
                    skip(rel + "/" + sub, os.path.join(full, sub), e, "stat")
                ancestors.add(key)
                stack.append((rel + "/", iter(grandchildren), key, child_fd))
        finally:
            for _, _, _, open_fd in stack:
                if open_fd != fd:
                    os.close(open_fd)
        tail = b'],"skipped":' + dumps(skipped) + b"}"
        self.respond(200, b'{"entries":[' + b",".join(parts) + tail)
