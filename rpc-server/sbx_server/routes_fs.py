"""Routes: delete, mkdir, rename, chmod and symlink under /v1/files."""

import errno
import os
import stat

from .common import HttpError, bad_request
from .files import fs_error, make_parents, parse_mode


class FsRoutes(object):
    """A mixin of RoutedHandler (see routes.py)."""

    def route_delete(self):
        path = self.path_param()
        recursive = self.bool_param("recursive", False)
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                if recursive:
                    import shutil  # at first use: a module the server's start does without

                    shutil.rmtree(path)  # unlinks symlinks inside, never follows them
                else:
                    os.rmdir(path)
            else:
                os.unlink(path)  # files and symlinks (the link, not its target)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST) and not recursive:
                raise HttpError(409, "cannot delete %s: directory not empty (delete it recursively)" % path, "not_empty")
            raise fs_error(e, path, "delete")
        self.respond_json({"deleted": path})

    def route_mkdir(self):
        path = self.path_param()
        try:
            os.makedirs(path, exist_ok=True)
        except FileExistsError:
            raise HttpError(409, "cannot create directory %s: a file with that name exists" % path, "already_exists")
        except OSError as e:
            raise fs_error(e, path, "create directory")
        self.respond_json({"created": path})

    def route_rename(self):
        src = self.path_param("from")
        dst = self.path_param("to")
        try:
            os.lstat(src)
        except OSError as e:
            raise fs_error(e, src, "rename")
        make_parents(dst, "rename %s to" % src)
        try:
            try:
                os.replace(src, dst)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                import shutil  # at first use: a module the server's start does without

                shutil.move(src, dst)  # across file systems: copy, then delete
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                message = "cannot rename %s to %s: the target is a non-empty directory" % (src, dst)
                raise HttpError(409, message, "not_empty")
            if e.errno == errno.EISDIR:
                raise HttpError(409, "cannot rename %s to %s: the target is a directory" % (src, dst), "is_a_directory")
            if e.errno == errno.ENOTDIR and os.path.isdir(src) and not os.path.isdir(dst):
                # Not "a component of the path": the source is a directory and the target a file.
                message = "cannot rename the directory %s to %s: the target exists and is not a directory" % (src, dst)
                raise bad_request(message, "not_a_directory")
            raise fs_error(e, "%s to %s" % (src, dst), "rename")
        self.respond_json({"renamed": src, "to": dst})

    def route_chmod(self):
        path = self.path_param()
        mode = parse_mode(self.param("mode"))
        try:
            os.chmod(path, mode)
        except OSError as e:
            raise fs_error(e, path, "chmod")
        self.respond_json({"path": path, "mode": "%o" % mode})

    def route_symlink(self):
        path = self.path_param()
        target = self.param("target")
        if not target:
            raise bad_request("query parameter `target` is empty")
        if "\0" in target:
            raise bad_request("query parameter `target` contains a NUL character")
        replace = self.bool_param("replace", False)
        try:
            kind = os.lstat(path).st_mode
            if stat.S_ISDIR(kind):
                message = "cannot create symlink %s: a directory with that name exists" % path
                raise HttpError(409, message, "is_a_directory")
            # Another link is replaced (re-linking is what `ln -sfn` does); a file only when asked.
            if not stat.S_ISLNK(kind) and not replace:
                message = "cannot create symlink %s: a file with that name exists (pass replace=1 to replace it)" % path
                raise HttpError(409, message, "already_exists")
        except FileNotFoundError:
            pass
        except OSError as e:
            raise fs_error(e, path, "create symlink")
        parent = os.path.dirname(path)
        make_parents(path, "create symlink")
        # A temporary link next to it, renamed over it: whoever looks at `path`
        # sees the old entry or the new link, never nothing.
        for _ in range(100):
            tmp = os.path.join(parent, ".symlink-%s.tmp" % os.urandom(6).hex())
            try:
                os.symlink(target, tmp)
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise fs_error(e, path, "create symlink")
        else:
            raise HttpError(500, "cannot create symlink %s: no free temporary name" % path, "internal")
        try:
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if e.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):  # a directory appeared meanwhile
                message = "cannot create symlink %s: a directory with that name exists" % path
                raise HttpError(409, message, "is_a_directory")
            raise fs_error(e, path, "create symlink")
        self.respond_json({"path": path, "target": target})
