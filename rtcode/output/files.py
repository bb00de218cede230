"""Where rtcode writes: the one guard for every path a command writes (``check``:
never an input, nothing under a scanned folder, no device or pipe) and the one
atomic writer (``AtomicFile``; ``write_bytes_atomically`` for the listener's store).

Outputs (scan, report, audit and results ``--output``, ``report --html``) are created
like any file a command makes: mode 0666 less the umask (0644 under the usual 022),
so a colleague can read a shared report; a umask of 077 keeps them private. What
rtcode keeps for itself stays private whatever the umask (0600): the instances the
listener stores (``write_bytes_atomically``), the scan cache and the results
database."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import signal
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

import click

STDOUT = "-"
_STDOUT_ALIASES = frozenset({"/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"})
_DESCRIPTOR = re.compile(r"^/(dev/(stdin|stdout|stderr|fd/.*)|proc/[^/]+/fd/.*)$")
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
_HAVE_O_TMPFILE = hasattr(os, "O_TMPFILE")
OUTPUT_MODE = 0o666  # less the umask, as the system applies it: outputs are shared
PRIVATE_MODE = 0o600  # whatever the umask: what rtcode keeps for itself


class OutputRefused(click.ClickException):
    """An output path the command must not write: a usage error (exit status 2), said
    in one line."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"rtcode: {self.format_message()}", err=True)


class OutputFailed(click.ClickException):
    """Writing the output failed (disk full, permissions changed): exit status 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"rtcode: {self.format_message()}", err=True)


Identity = tuple[int, int]


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino)


def _shown(value: str | os.PathLike[str]) -> str:
    return click.format_filename(os.fspath(value))


class _Input(NamedTuple):
    given: str  # as named on the command line
    real: str  # os.path.realpath
    ident: Identity | None  # (st_dev, st_ino); None when missing
    what: str | None  # what it is, when not simply an input ("the scan cache")


def _input(path: str | os.PathLike[str], what: str | None = None) -> _Input:
    given = os.fspath(path)
    try:
        ident: Identity | None = _identity(os.stat(given))
    except (OSError, ValueError):
        ident = None
    return _Input(given, os.path.realpath(given), ident, what)


class Inputs:
    """What a command reads: the files and folders it was given. ``paths`` are files
    or folders (a missing one is compared by its path); ``folders`` are folders that
    may not exist yet (``listen --store``). Other entries (dicomweb URLs) are ignored."""

    def __init__(
        self,
        paths: Iterable[object] = (),
        folders: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self.files: list[_Input] = []
        self.folders: list[_Input] = []
        self._reached: dict[Identity, str | None] = {}  # target id -> link that reads it
        for p in paths:
            if not isinstance(p, (str, os.PathLike)) or _is_url(p):
                continue
            entry = _input(p)
            is_dir = entry.ident is not None and os.path.isdir(entry.given)
            (self.folders if is_dir else self.files).append(entry)
        self.folders.extend(_input(f) for f in folders)

    def add_file(
        self, path: str | os.PathLike[str], what: str | None = None, sqlite: bool = False
    ) -> None:
        """Also protect this file (a policy file, the scan cache: ``what`` it is);
        ``sqlite``: and the files SQLite keeps beside it."""
        for suffix in ("", *SQLITE_SIDECARS) if sqlite else ("",):
            label = f"{what}'s {suffix} file" if what and suffix else what
            self.files.append(_input(os.fspath(path) + suffix, label))

    def clash(self, real: str, ident: Identity | None, shown: str = "") -> str | None:
        """Why writing the file at real path ``real`` (identity ``ident`` when it
        exists; named ``shown``) would change an input, or None."""
        for f in self.files:
            if real == f.real or (ident is not None and ident == f.ident):
                given = _shown(f.given)
                what = f.what or ("one of the inputs" if given == shown else f"the input {given}")
                return f"is {what}: refusing to overwrite it"
        for d in self.folders:
            if _under(real, d.real) or (d.ident is not None and _above(real, d.ident)):
                return (
                    f"is inside the scanned folder {_shown(d.given)}: rtcode never writes"
                    " under the folders it scans"
                )
        if ident is not None and self.folders:
            if ident not in self._reached:
                self._reached[ident] = self._link_to(ident)
            link = self._reached[ident]
            if link is not None:
                return f"is the input {link} (the same file): refusing to overwrite it"
        return None

    def _link_to(self, ident: Identity) -> str | None:
        """A symbolic or hard link under the scanned folders to the file ``ident``:
        the scan reads that file. Folders are listed as the scan walks them (links
        to folders are not followed); only links are stat'ed."""
        stack = [d.given for d in self.folders]
        while stack:
            try:
                with os.scandir(stack.pop()) as it:
                    entries = list(it)
            except OSError:
                continue  # the scan cannot list it either
            for entry in entries:
                try:
                    if entry.is_symlink():
                        if _identity(entry.stat()) == ident:
                            return _shown(entry.path)
                    elif entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.inode() == ident[1] and (
                        _identity(entry.stat(follow_symlinks=False)) == ident
                    ):
                        return _shown(entry.path)
                except OSError:
                    continue
        return None


def _is_url(p: object) -> bool:
    return isinstance(p, str) and p.lower().startswith(("dicomweb+http://", "dicomweb+https://"))


def _under(real: str, folder: str) -> bool:
    return real == folder or real.startswith(os.path.join(folder, ""))


def _above(real: str, folder_id: Identity) -> bool:
    """Whether a folder above ``real`` is the folder ``folder_id`` (a bind mount or
    another path to it)."""
    parent = os.path.dirname(real)
    while True:
        try:
            if _identity(os.stat(parent)) == folder_id:
                return True
        except OSError:
            pass
        up = os.path.dirname(parent)
        if up == parent:
            return False
        parent = up


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


class Target:
    """A checked place to write: standard output (``path`` None) or a file."""

    def __init__(
        self, path: Path | None, shown: str, option: str, inputs: Inputs, rules: _Rules
    ) -> None:
        self.path = path
        self.shown = shown
        self.option = option
        self.inputs = inputs
        self.rules = rules

    @property
    def stdout(self) -> bool:
        return self.path is None

    def __str__(self) -> str:
        return self.shown

    def recheck(self) -> Path:
        """Check again (right before the rename: a file may have appeared); the real
        path to write."""
        assert self.path is not None
        return Path(_check_file(os.fspath(self.path), self.option, self.inputs, self.rules))

    def write_text(self, text: str) -> None:
        """Write ``text`` whole: to standard output, or atomically to the file."""
        if self.path is None:
            click.echo(text, nl=False)
            return
        with self.open() as fh:
            fh.write(text)

    def open(self) -> AtomicFile:
        assert self.path is not None, "standard output needs no AtomicFile"
        return AtomicFile(self)


class _Rules(NamedTuple):
    database: bool  # SQLite: no standard output; -wal, -shm, -journal checked too
    make_folder: bool  # the caller creates a missing folder (the scan cache)


def check(
    value: str | os.PathLike[str] | None,
    option: str,
    inputs: Inputs,
    database: bool = False,
    make_folder: bool = False,
) -> Target | None:
    """The checked ``Target`` for the path an option names (None: not given); raises
    ``OutputRefused`` naming the option, the path and the reason. ``database``: an
    SQLite file (no standard output; its -wal, -shm and -journal files are checked).
    ``make_folder``: a missing folder is no reason to refuse (the caller creates it,
    as the scan cache does); what of it exists must still be a writable folder.

    The guard (``check``) runs before any work and again right before the rename:

    - ``-`` is standard output (also ``/dev/stdout``, ``/dev/fd/1`` and
      ``/proc/self/fd/1``, which are written as ``-``); ``""`` is refused, and so is
      any other file descriptor alias (``/dev/stderr``, ``/dev/fd/N``, ``/proc/*/fd/N``).
    - What exists must be a regular file: a folder, named pipe, device or socket is
      refused (as root, replacing ``/dev/null`` by a file would break the machine), and
      so is a broken symbolic link.
    - Its folder must exist and be writable: rtcode creates no folders for outputs
      (only the scan cache's, as it always did; what of it exists is checked).
    - It must not be one of the inputs: a file named on the command line (the scanned
      paths, a charges, PTP or policy file, the scan cache), compared by real path and by
      (st_dev, st_ino) so that symbolic and hard links are caught; nor anything under a
      scanned folder (by real path, and by identity for each folder above it, so a bind
      mount is caught); nor a file that a link inside a scanned folder leads to (the
      scan reads it: looked for only when the target exists, one listing of the folders).

    An SQLite database (the cache, the results database) is checked with its ``-wal``,
    ``-shm`` and ``-journal`` files, which SQLite writes beside it.
    """
    if value is None:
        return None
    rules = _Rules(database, make_folder)
    text = os.fspath(value)
    what = "a database file" if database else "a file name, or - for standard output"
    if text == "":
        raise OutputRefused(f"{option} is empty: give {what}")
    absolute = os.path.abspath(text) if text != STDOUT else text
    if text == STDOUT or absolute in _STDOUT_ALIASES:
        if database:
            raise OutputRefused(f"{option} {_shown(text)}: standard output cannot hold {what}")
        return Target(None, text, option, inputs, rules)
    if _DESCRIPTOR.match(absolute):
        raise OutputRefused(
            f"{option} {_shown(text)} is a file descriptor, not a file: give {what}"
        )
    _check_file(text, option, inputs, rules)
    return Target(Path(text), _shown(text), option, inputs, rules)


def _check_file(text: str, option: str, inputs: Inputs, rules: _Rules) -> str:
    """The real path of ``text`` when it may be written; else raises OutputRefused."""
    shown = _shown(text)
    real = _check_one(text, shown, option, inputs, rules)
    if rules.database:  # SQLite writes these beside it, named after both paths
        for suffix in SQLITE_SIDECARS:
            sides = {os.path.realpath(p): p for p in (real + suffix, text + suffix)}
            for side in sides.values():
                _check_one(side, f"{shown}: its SQLite file {_shown(side)}", option, inputs, rules)
    return real


def _check_one(text: str, shown: str, option: str, inputs: Inputs, rules: _Rules) -> str:
    def refuse(reason: str) -> OutputRefused:
        return OutputRefused(f"{option} {shown} {reason}")

    ident = None
    try:
        st = os.stat(text)
    except (FileNotFoundError, NotADirectoryError):  # the folder check below says why
        if os.path.islink(text):
            raise refuse("is a broken symbolic link: refusing to write through it") from None
    except OSError as exc:
        raise refuse(f"cannot be checked: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL in the name
        raise refuse(f"is not a usable file name: {exc}") from None
    else:
        if not stat.S_ISREG(st.st_mode):
            raise refuse(f"is {_kind(st.st_mode)}, not a regular file: refusing to replace it")
        ident = _identity(st)
    real = os.path.realpath(text)
    folder = os.path.dirname(real)
    if rules.make_folder:
        while not os.path.lexists(folder):  # the nearest part of it that exists
            folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        problem = "is not a folder" if os.path.lexists(folder) else "does not exist"
        raise refuse(f"cannot be written: the folder {_shown(folder)} {problem}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise refuse(f"cannot be written: no permission to write in {_shown(folder)}")
    reason = inputs.clash(real, ident, shown)
    if reason is not None:
        raise refuse(reason)
    return real


# ------------------------------------------------------------------ atomic writing


class AtomicFile:
    """A text file written beside its target and renamed into place by ``commit``
    (after the target is checked again); ``discard`` leaves the target as it was.
    As a context manager: commit on success, discard on any exception.

    ``AtomicFile`` writes beside the target and renames into place: on Linux an unnamed
    ``O_TMPFILE`` that gets a name only to be renamed (a killed process leaves nothing),
    elsewhere a named temporary file that is removed on any exception and on SIGTERM or
    SIGHUP (where that signal would have ended the process). Files are created with
    mode 0666 less the umask (``OUTPUT_MODE``), as any file a command makes.
    """

    def __init__(self, target: Target) -> None:
        assert target.path is not None
        self.target = target
        self.real = Path(os.path.realpath(target.path))
        self._name: str | None = None  # the named temporary file, when there is one
        try:
            fd = _open_unnamed(self.real.parent, OUTPUT_MODE)
            if fd < 0:
                fd, self._name = _open_named(self.real, OUTPUT_MODE)
        except OSError as exc:
            raise OutputFailed(f"cannot write {target.shown}: {exc.strerror or exc}") from None
        self.stream = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def write(self, text: str) -> None:
        self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def commit(self) -> None:
        """Flush, check the target again, rename into place."""
        try:
            self.stream.flush()
            os.fsync(self.stream.fileno())
            real = self.target.recheck()
            if real.parent != self.real.parent:
                raise OutputRefused(
                    f"{self.target.option} {self.target.shown} now leads to another folder"
                    f" ({_shown(real.parent)}) than when rtcode began: not written"
                )
            if self._name is None:
                self._name = _name_unnamed(self.stream.fileno(), real, OUTPUT_MODE)
            os.replace(self._name, real)
            name, self._name = self._name, None
            _forget(name)
            fsync_folder(real.parent)
        except OSError as exc:
            self.discard()
            raise OutputFailed(f"cannot write {self.target.shown}: {exc.strerror or exc}") from None
        except BaseException:
            self.discard()
            raise
        finally:
            if not self.stream.closed:
                self.stream.close()

    def discard(self) -> None:
        """Remove what was written; the target is left as it was."""
        try:
            if not self.stream.closed:
                self.stream.close()
        except OSError:
            pass
        finally:
            name, self._name = self._name, None
            if name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(name)
                _forget(name)


def _open_unnamed(folder: Path, mode: int = PRIVATE_MODE) -> int:
    """An O_TMPFILE in ``folder`` (no name: gone with the process) with ``mode`` (less
    the umask), or -1 where the system or its file system has none."""
    if not _HAVE_O_TMPFILE:
        return -1
    try:
        # O_RDWR: where it cannot be linked, it is read back into a named file
        return os.open(folder, os.O_TMPFILE | os.O_RDWR, mode)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOSYS):
            return -1
        raise


def _temporary_name(real: Path) -> str:
    return os.path.join(real.parent, f".{real.name}.{secrets.token_hex(4)}.tmp")


def _name_unnamed(fd: int, real: Path, mode: int = PRIVATE_MODE) -> str:
    """A temporary name beside the target for the O_TMPFILE ``fd``, to rename it into
    place (linkat cannot replace a file): only the instant between the two can leave
    a named file behind. Where /proc cannot link it, its bytes are copied into a named
    temporary file."""
    folder = os.open(real.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        for _ in range(100):
            name = _temporary_name(real)
            try:
                # dst_dir_fd makes CPython call linkat(AT_SYMLINK_FOLLOW); a plain
                # os.link() calls link(2), which links the /proc symlink itself (EXDEV)
                os.link(f"/proc/self/fd/{fd}", os.path.basename(name), dst_dir_fd=folder)
            except FileExistsError:
                continue
            except OSError:
                break
            return name
    finally:
        os.close(folder)
    out, name = _open_named(real, mode)
    try:
        offset = 0
        while chunk := os.pread(fd, 1 << 20, offset):
            offset += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view) :]
        os.fsync(out)
    except BaseException:
        os.close(out)
        with contextlib.suppress(OSError):
            os.unlink(name)
        _forget(name)
        raise
    os.close(out)
    return name


def _open_named(real: Path, mode: int = PRIVATE_MODE) -> tuple[int, str]:
    """A new temporary file beside ``real`` with ``mode`` (less the umask): its
    descriptor and name."""
    for _ in range(100):
        name = _temporary_name(real)
        _remember(name)  # before it exists: a signal now still removes it
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            _forget(name)
            continue
        except BaseException:
            _forget(name)
            raise
        return fd, name
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(real.parent))


def fsync_folder(folder: Path) -> None:
    """Make the rename durable; best effort (not every system can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Named temporary files of this process, removed when SIGTERM or SIGHUP would end it.
_LIVE: set[str] = set()
_HANDLED: dict[int, Any] = {}  # signal -> the handler it had
_OWNER = 0  # the process that installed the handlers (forked workers inherit them)
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def remove_on_signal(name: str) -> None:
    """Remove this temporary file if SIGTERM or SIGHUP ends the process."""
    _remember(name)


def keep_on_signal(name: str) -> None:
    """The file is gone or kept on purpose: no longer removed on a signal."""
    _forget(name)


def _remember(name: str) -> None:
    global _OWNER
    _LIVE.add(name)
    if _HANDLED or threading.current_thread() is not threading.main_thread():
        return
    _OWNER = os.getpid()
    for sig in _SIGNALS:
        if signal.getsignal(sig) is signal.SIG_DFL:  # it would end the process
            _HANDLED[sig] = signal.signal(sig, _on_signal)


def _forget(name: str | None) -> None:
    if name is not None:
        _LIVE.discard(name)
    if not _LIVE and _HANDLED and threading.current_thread() is threading.main_thread():
        for sig, previous in _HANDLED.items():
            signal.signal(sig, previous)
        _HANDLED.clear()


def _on_signal(signum: int, frame: object) -> None:
    """Remove this process's temporary files, then end as the signal would have."""
    if os.getpid() == _OWNER:
        for name in list(_LIVE):
            with contextlib.suppress(OSError):
                os.unlink(name)
        _LIVE.clear()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def write_bytes_atomically(target: Path, spool: Path, *parts: bytes | memoryview) -> None:
    """Write ``parts`` (bytes) as the file ``target``, atomically: an unnamed
    ``O_TMPFILE`` in ``spool`` (a named temporary file where the system has none),
    flushed to disk, named there only to be renamed into place, then the folder
    synced. ``spool`` must be on the target's file system; unlike ``AtomicFile`` no
    output guard applies (the storage listener writes into its own store), and the
    file is private (0600, whatever the umask: received instances carry patient
    data). A named temporary file is removed on any exception (and on SIGTERM or
    SIGHUP in the main thread)."""
    beside = spool / target.name  # where files.py names its temporary file
    name: str | None = None
    fd = _open_unnamed(spool)  # private: the default
    if fd < 0:
        fd, name = _open_named(beside)
    try:
        for part in parts:
            view = memoryview(part).cast("B")
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
        if name is None:
            name = _name_unnamed(fd, beside)
        os.replace(name, target)
        keep_on_signal(name)
        name = None
    finally:
        os.close(fd)
        if name is not None:
            with contextlib.suppress(OSError):
                os.unlink(name)
            keep_on_signal(name)
    fsync_folder(target.parent)
