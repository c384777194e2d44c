"""Writes that land atomically: temporary files beside their destination, multi-part transfers by id,
and the journal that lets a supervisor (or the next server) remove what a killed server left."""

import errno
import os
import re
import stat
import threading
import time

from .common import FILE_CHUNK, AsServer, HttpError, env_seconds, log, shown
from .digest import sha256


# ---- atomic writes ----
#
# A write that takes more than one request (a "transfer": ranges sent in
# parallel, or one after the other) goes to a temporary file beside its
# destination, named after the client's transfer id, and a commit request
# renames it into place. An abandoned transfer's temporary file is removed:
# at once when a client hangs up mid-body, else once no byte of it has
# arrived for TRANSFER_STALE seconds. A transfer that was removed stays
# refused (410), so a late range can never rebuild a file with holes.

# Patterns, which re compiles at their first use (see httpframe.py). \Z: `$` would take a trailing newline.
TRANSFER_ID_RE = r"\A[A-Za-z0-9_-]{8,64}\Z"
TRANSFER_DEAD_KEEP = 4096  # removed transfer ids remembered, oldest forgotten first


def transfer_stale_seconds():
    return env_seconds("SBX_TRANSFER_STALE", 120.0)


def temp_beside(dest, tag):
    """A hidden name in the destination's directory (so that the rename is
    atomic) that says what it is and cannot collide with a user's file."""
    return os.path.join(os.path.dirname(dest), ".%s.hf-sandbox-%s.part" % (os.path.basename(dest), tag))


def write_target(path):
    """Where a write to `path` lands: through symlinks (as an in-place write
    would), so the rename replaces the file a link points to, not the link."""
    return os.path.realpath(path)


def is_special(dest):
    """A device, FIFO or socket: written in place, never replaced by a
    regular file (a write to /dev/null must not put a file there)."""
    try:
        kind = os.stat(dest).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(kind) and not stat.S_ISDIR(kind)


def dir_writable(dest):
    return os.access(os.path.dirname(dest), os.W_OK | os.X_OK)


def replace_file(tmp, dest):
    """Renames `tmp` over `dest`. A file that is a mount point (a container's
    bind-mounted /etc/hosts) cannot be renamed over: its content is copied in
    place instead, the best that can be done for it."""
    try:
        os.replace(tmp, dest)
    except OSError as e:
        if e.errno not in (errno.EBUSY, errno.EXDEV):
            raise
        import shutil  # at first use: a module the server's start does without

        with open(tmp, "rb") as src, open(dest, "r+b") as out:
            out.truncate(0)
            shutil.copyfileobj(src, out, FILE_CHUNK)
        os.chmod(dest, stat.S_IMODE(os.stat(tmp).st_mode))
        os.unlink(tmp)


def unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


# ---- the journal of temporary files ----
#
# A server killed outright (SIGKILL, the OOM killer) cannot remove the
# temporary files of the writes it was in the middle of, and they may be
# anywhere on the machine. So each one is recorded, before it is created,
# in a journal directory (--journal) that outlives the server: its
# supervisor, a server started later on the same journal, or the client's
# sweep of a crashed sandbox removes what it lists. An entry is a symlink
# named by a digest of the file's path and pointing to it: symlink(2) adds
# and unlink(2) removes one atomically, in one system call, with no file to
# rewrite and no lock, so the journal costs a write next to nothing.

TEMP_NAME_RE = r"(?s)^\..+\.hf-sandbox-[A-Za-z0-9_-]{8,64}\.part$"  # patterns, as TRANSFER_ID_RE
JOURNAL_ENTRY_RE = r"^[0-9a-f]{40}$"


class Journal(object):
    def __init__(self):
        self.dir = None

    def open(self, path):
        """Starts journaling into `path`, after removing what a crashed
        predecessor's journal there still lists. A directory that is not a
        journal is refused (os.mkdir fails), never emptied."""
        replay_journal(path)
        os.mkdir(path, 0o700)
        self.dir = path

    def _entry(self, tmp):
        return os.path.join(self.dir, sha256(os.fsencode(tmp)).hexdigest()[:40])

    def add(self, tmp):
        if self.dir is None:
            return
        try:
            with AsServer():  # the journal is the server's
                os.symlink(tmp, self._entry(tmp))
        except FileExistsError:
            pass
        except OSError as e:
            # The write itself can still succeed; only a crash during it would leave its file.
            log("cannot record %s in the journal %s: %s" % (shown(tmp), self.dir, e.strerror or e))

    def remove(self, tmp):
        """After `tmp` is gone (renamed into place or removed), never before."""
        if self.dir is not None:
            with AsServer():
                unlink_quietly(self._entry(tmp))


def replay_journal(path):
    """Removes every temporary file the journal at `path` lists, then the
    journal. Only a regular file with the name of one of our temporary files
    is ever removed, whatever a link points to, and only our entries (links
    with our names): a directory that is not a journal is left as it is.
    Returns how many files went."""
    try:
        names = os.listdir(path)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if not re.match(JOURNAL_ENTRY_RE, name):
            continue
        entry = os.path.join(path, name)
        try:
            tmp = os.readlink(entry)
        except OSError:
            continue  # not a link: not ours
        try:
            if os.path.isabs(tmp) and re.match(TEMP_NAME_RE, os.path.basename(tmp)):
                if stat.S_ISREG(os.lstat(tmp).st_mode):
                    os.unlink(tmp)
                    removed += 1
        except OSError:
            pass
        unlink_quietly(entry)
    try:
        os.rmdir(path)
    except OSError:
        pass
    return removed


JOURNAL = Journal()


class Transfers(object):
    """The temporary files of transfers in progress: how many requests are
    writing each, and when a byte last arrived."""

    def __init__(self):
        self.lock = threading.Lock()
        self.live = {}  # temp path -> [requests writing, last activity (monotonic)]
        self.dead = {}  # temp path -> None, insertion ordered
        # temp path -> requests writing it, abandoned transfers included: its
        # journal entry goes only once none of them can create the file again.
        self.writers = {}
        self.sweeper = None
        self.stale = None

    def _bury(self, tmp):
        self.live.pop(tmp, None)
        self.dead[tmp] = None
        while len(self.dead) > TRANSFER_DEAD_KEEP:
            del self.dead[next(iter(self.dead))]
        unlink_quietly(tmp)
        if not self.writers.get(tmp):
            JOURNAL.remove(tmp)

    def gone(self, tmp):
        return HttpError(
            410,
            "the transfer %s was abandoned (cut short, aborted, or silent too long); write the file again" % tmp,
            "transfer_gone",
        )

    def begin(self, tmp):
        with self.lock:
            if tmp in self.dead:
                raise self.gone(tmp)
            if tmp not in self.live and not self.writers.get(tmp):
                JOURNAL.add(tmp)  # before the first request creates it
            self.writers[tmp] = self.writers.get(tmp, 0) + 1
            entry = self.live.setdefault(tmp, [0, time.monotonic()])
            entry[0] += 1
            entry[1] = time.monotonic()
            if self.sweeper is None:
                self.stale = transfer_stale_seconds()
                self.sweeper = threading.Thread(target=self._sweep, name="transfer-sweeper", daemon=True)
                self.sweeper.start()

    def touch(self, tmp):
        entry = self.live.get(tmp)  # a plain read and store: races only delay a sweep
        if entry is not None:
            entry[1] = time.monotonic()

    def end(self, tmp, failed):
        """One request is done with `tmp`; a failed one abandons the transfer."""
        with self.lock:
            left = self.writers.pop(tmp, 1) - 1
            if left > 0:
                self.writers[tmp] = left
            entry = self.live.get(tmp)
            if entry is None:
                # Aborted or swept while this request ran: what it may have
                # recreated since goes too.
                self._bury(tmp)
                if failed:
                    return
                raise self.gone(tmp)
            entry[0] -= 1
            entry[1] = time.monotonic()
            if failed:
                self._bury(tmp)

    def abort(self, tmp):
        with self.lock:
            known = tmp in self.live
            self._bury(tmp)
            return known

    def take(self, tmp):
        """Claims a finished transfer for its commit."""
        with self.lock:
            if tmp in self.dead:
                raise self.gone(tmp)
            entry = self.live.get(tmp)
            if entry is None:
                raise HttpError(404, "no transfer to commit at %s (send its ranges first)" % tmp, "not_found")
            if entry[0] > 0:
                raise HttpError(409, "the transfer to %s still has ranges being written" % tmp, "transfer_busy")
            del self.live[tmp]

    def committed(self, tmp):
        """A taken transfer's file is in place: nothing is left to remove."""
        with self.lock:
            if tmp not in self.live and not self.writers.get(tmp):
                JOURNAL.remove(tmp)

    def _sweep(self):
        # Bounded: one pass over the live transfers every quarter of the bound (at most 10 s).
        period = min(max(self.stale / 4.0, 0.05), 10.0)
        while True:
            time.sleep(period)
            now = time.monotonic()
            with self.lock:
                for tmp, (_, seen) in list(self.live.items()):
                    if now - seen > self.stale:
                        log("removed %s: no byte of its transfer for %.1fs" % (shown(tmp), now - seen))
                        self._bury(tmp)


TRANSFERS = Transfers()
