"""The bench's columns: one ``Target`` per thing measured.

Workloads talk to a ``Target`` only, so every column runs the same code:

- ``StoreTarget`` wraps ``layerfs.Store`` with one driver (``copy``,
  ``overlay``, ``fuse``, ``fuse-nopt`` = fuse with passthrough off,
  ``devmapper``). A new driver joins by adding a ``ColumnSpec``.
- ``NativeTarget`` does the same work on plain directories of the same
  filesystem type: the baseline every ratio is taken against. It has no
  snapshots, so a snapshot on a parent *is* the parent's directory (work
  happens in place) and a layer on a parent writes into the parent's tree.
- ``PeerTarget`` mounts the layers of an overlay store with another
  union filesystem program (``fuse-overlayfs``), for comparison with what
  users run today: the store makes and commits the layers, the peer only
  mounts them.
"""

from __future__ import annotations

import abc
import functools
import itertools
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from layerfs import errors
from layerfs._mounting import unmount_path

from .cleanup import Cleanup
from .scratch import ScratchFs

Populate = Callable[[Path], None]


class Target(abc.ABC):
    """One column: a place to make layers and snapshots and mount them.

    Snapshot names and keys share one space per target, as in the store.
    The target remembers what it made so ``remove_all`` can undo a
    workload's setup in reverse order (children before parents).

    Args:
        name: the column name.
        fs: the scratch filesystem this column lives on.
        cleanup: the run's cleanup registry.
    """

    native = False

    def __init__(self, name: str, fs: ScratchFs, cleanup: Cleanup) -> None:
        self.name = name
        self.fs = fs
        self.cleanup = cleanup
        self._made: list[str] = []
        self._ids = itertools.count(1)

    def new_key(self, prefix: str) -> str:
        """Return a key never used before in this target, starting with ``prefix``."""
        return f"{prefix}-{next(self._ids)}"

    def layer(self, populate: Populate, parent: str | None = None) -> str:
        """Make a committed layer on ``parent`` holding what ``populate`` writes.

        ``populate`` writes into an empty staging directory on the column's
        filesystem; the result is applied as a layer tar, the way images
        arrive, so building a layer mounts nothing.

        Args:
            populate: called with the staging directory; writes the files.
            parent: committed parent name, or None for a base layer.

        Returns:
            The committed layer's name.
        """
        staging = self.fs.mountpoint / "staging" / self.new_key("s")
        staging.mkdir(parents=True)
        try:
            populate(staging)
            return apply_directory(self, staging, parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def chain(self, depth: int, populate_one: Callable[[Path, int], None]) -> list[str]:
        """Make ``depth`` committed layers, each on the previous; ``populate_one(path, i)``."""
        names: list[str] = []
        parent: str | None = None
        for i in range(depth):
            parent = self.layer(functools.partial(_call_with_index, populate_one, i), parent)
            names.append(parent)
        return names

    def holds(self, key: str) -> bool:
        """True when ``key`` was made by this target and not removed yet."""
        return key in self._made

    def remove_all(self) -> None:
        """Remove every snapshot and layer this target still holds, newest first."""
        while self._made:
            key = self._made[-1]
            self.remove(key)

    # -- the store's verbs ----------------------------------------------------

    @abc.abstractmethod
    def prepare(self, key: str, parent: str | None = None) -> None:
        """Make an active (writable) snapshot ``key`` on ``parent``."""

    @abc.abstractmethod
    def view(self, key: str, parent: str) -> None:
        """Make a read-only snapshot ``key`` of ``parent``."""

    @abc.abstractmethod
    def mount(self, key: str) -> Path:
        """Mount snapshot ``key`` and return where its tree is."""

    @abc.abstractmethod
    def unmount(self, key: str) -> None:
        """Undo ``mount``."""

    @abc.abstractmethod
    def commit(self, name: str, key: str) -> None:
        """Turn active ``key`` into committed ``name``."""

    @abc.abstractmethod
    def remove(self, key: str) -> None:
        """Remove snapshot or layer ``key``."""

    @abc.abstractmethod
    def apply(self, fileobj: IO[bytes], parent: str | None = None) -> str:
        """Apply a layer tar on ``parent``; return the committed layer's name."""

    @abc.abstractmethod
    def export(self, name: str) -> Iterator[bytes]:
        """Yield the layer tar of ``name`` against its parent."""

    def facts(self) -> dict[str, object]:
        """Return facts about this column for the report (driver status...)."""
        return {}

    def close(self) -> None:
        """Release the column (unmount what it mounted, close the store). Idempotent."""
        self._made.clear()


class StoreTarget(Target):
    """A column backed by ``layerfs.Store`` with one driver.

    Args:
        name: column name.
        fs: scratch filesystem (the store's root goes on it).
        cleanup: the run's cleanup registry.
        driver: the store driver name.
        options: driver options.
    """

    def __init__(
        self,
        name: str,
        fs: ScratchFs,
        cleanup: Cleanup,
        driver: str,
        options: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name, fs, cleanup)
        import layerfs

        self.driver = driver
        self.root = fs.mountpoint / "store"
        self.store: Any = layerfs.Store(self.root, driver=driver, options=dict(options or {}))
        self._mounted: set[str] = set()
        self._closed = False
        self._token = cleanup.push(f"close {name} store", self.close)

    def prepare(self, key: str, parent: str | None = None) -> None:
        self.store.prepare(key, parent)
        self._made.append(key)

    def view(self, key: str, parent: str) -> None:
        self.store.view(key, parent)
        self._made.append(key)

    def mount(self, key: str) -> Path:
        path = self.store.mount(key)
        self._mounted.add(key)
        return Path(path)

    def unmount(self, key: str) -> None:
        self.store.unmount(key)
        self._mounted.discard(key)

    def commit(self, name: str, key: str) -> None:
        self.store.commit(name, key)
        self._made[self._made.index(key)] = name

    def remove(self, key: str) -> None:
        if key in self._mounted:
            self.unmount(key)
        self.store.remove(key)
        if key in self._made:
            self._made.remove(key)

    def apply(self, fileobj: IO[bytes], parent: str | None = None) -> str:
        info = self.store.apply(fileobj, parent=parent)
        if info.name not in self._made:
            self._made.append(info.name)
        return str(info.name)

    def export(self, name: str) -> Iterator[bytes]:
        return iter(self.store.export(name))

    def mounts_of(self, key: str) -> list[Any]:
        """Return the store's ``Mount`` list for ``key``."""
        return list(self.store.mounts(key))

    def facts(self) -> dict[str, object]:
        try:
            status = self.store.status()
        except errors.LayerfsError as exc:
            return {"status_error": str(exc)}
        return dict(status) if isinstance(status, Mapping) else {"status": str(status)}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.cleanup.discard(self._token)
        for key in list(self._mounted):
            try:
                self.store.unmount(key)
            except errors.LayerfsError:
                pass  # the sweep detaches whatever stays mounted
        self._mounted.clear()
        self.store.close()


class NativeTarget(Target):
    """The baseline: the same work on plain directories (see the module doc)."""

    native = True

    def __init__(self, name: str, fs: ScratchFs, cleanup: Cleanup) -> None:
        super().__init__(name, fs, cleanup)
        self.base = fs.mountpoint / "native"
        self.base.mkdir(exist_ok=True)
        self._dirs: dict[str, Path] = {}
        self._owned: set[Path] = set()

    def _new_dir(self) -> Path:
        path = self.base / self.new_key("d")
        path.mkdir()
        self._owned.add(path)
        return path

    def _dir_for(self, parent: str | None) -> Path:
        if parent is None:
            return self._new_dir()
        try:
            return self._dirs[parent]
        except KeyError:
            raise errors.NotFound(f"native: no layer {parent!r}") from None

    def layer(self, populate: Populate, parent: str | None = None) -> str:
        """Write the layer straight into the tree (a new one without ``parent``)."""
        path = self._dir_for(parent)
        populate(path)
        name = self.new_key("layer")
        self._dirs[name] = path
        self._made.append(name)
        return name

    def prepare(self, key: str, parent: str | None = None) -> None:
        self._dirs[key] = self._dir_for(parent)
        self._made.append(key)

    def view(self, key: str, parent: str) -> None:
        self.prepare(key, parent)

    def mount(self, key: str) -> Path:
        return self._dirs[key]

    def unmount(self, key: str) -> None:
        pass

    def commit(self, name: str, key: str) -> None:
        self._dirs[name] = self._dirs.pop(key)
        self._made[self._made.index(key)] = name

    def remove(self, key: str) -> None:
        path = self._dirs.pop(key)
        if key in self._made:
            self._made.remove(key)
        if path in self._owned and path not in self._dirs.values():
            self._owned.discard(path)
            shutil.rmtree(path)

    def apply(self, fileobj: IO[bytes], parent: str | None = None) -> str:
        path = self._dir_for(parent)
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            # The tars are the bench's own. Extraction filters came in 3.11.4;
            # Debian 12's Python 3.11.2 lacks them.
            if hasattr(tarfile, "tar_filter"):
                tar.extractall(path, filter="tar")
            else:
                tar.extractall(path)
        name = self.new_key("applied")
        self._dirs[name] = path
        self._made.append(name)
        return name

    def export(self, name: str) -> Iterator[bytes]:
        return tar_directory(self._dirs[name])

    def path_of(self, name: str) -> Path:
        """Return the directory holding ``name``'s tree."""
        return self._dirs[name]


class PeerTarget(Target):
    """Another union filesystem program mounting an overlay store's layers.

    Args:
        name: column name.
        inner: the overlay ``StoreTarget`` that makes the layers.
        program: the program to mount with (``fuse-overlayfs``).
    """

    def __init__(self, name: str, inner: StoreTarget, program: str) -> None:
        super().__init__(name, inner.fs, inner.cleanup)
        self.inner = inner
        self.program = program
        self._mnt = inner.fs.mountpoint / "peer"
        self._mnt.mkdir(exist_ok=True)
        self._mounted: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._made = inner._made

    def prepare(self, key: str, parent: str | None = None) -> None:
        self.inner.prepare(key, parent)

    def view(self, key: str, parent: str) -> None:
        self.inner.view(key, parent)

    def _options(self, key: str) -> str:
        lower = upper = work = None
        for m in self.inner.mounts_of(key):
            if m.type == "overlay":
                for opt in m.options:
                    k, _, v = opt.partition("=")
                    if k == "lowerdir":
                        lower = v
                    elif k == "upperdir":
                        upper = v
                    elif k == "workdir":
                        work = v
                    elif k == "lowerdir+":
                        lower = v if lower is None else f"{lower}:{v}"
            elif m.type == "bind" or "bind" in m.options or "rbind" in m.options:
                # No parent (rw) or one parent (ro): the store binds a plain dir.
                if "ro" in m.options:
                    lower = m.source
                else:
                    upper = m.source
            else:
                raise errors.Unsupported(f"{self.program}: cannot mount a {m.type} mount")
        if upper is not None and lower is None:
            lower = str(self._scratch_dir(key, "empty"))
        if upper is not None and work is None:
            work = str(self._scratch_dir(key, "work"))
        opts = [f"lowerdir={lower}"]
        if upper is not None:
            opts += [f"upperdir={upper}", f"workdir={work}"]
        return ",".join(opts)

    def _scratch_dir(self, key: str, what: str) -> Path:
        path = self.inner.root / "peer-state" / f"{key}.{what}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mount(self, key: str) -> Path:
        target = self._mnt / key
        target.mkdir(exist_ok=True)
        opts = self._options(key)
        proc = subprocess.run(
            [self.program, "-o", opts, str(target)],
            cwd=self.inner.root / "overlay",
            capture_output=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise errors.Unsupported(
                f"{self.program} could not mount {key}: {proc.stderr.decode(errors='replace')}"
            )
        with self._lock:
            self._mounted[key] = target
        return target

    def unmount(self, key: str) -> None:
        with self._lock:
            target = self._mounted.pop(key, None)
        if target is not None:
            # A lazy detach drops the FUSE connection; the daemon then exits.
            unmount_path(str(target), attempts=5)

    def commit(self, name: str, key: str) -> None:
        self.unmount(key)
        self.inner.commit(name, key)

    def remove(self, key: str) -> None:
        self.unmount(key)
        self.inner.remove(key)
        for what in ("empty", "work"):
            shutil.rmtree(self.inner.root / "peer-state" / f"{key}.{what}", ignore_errors=True)

    def apply(self, fileobj: IO[bytes], parent: str | None = None) -> str:
        return self.inner.apply(fileobj, parent)

    def export(self, name: str) -> Iterator[bytes]:
        return self.inner.export(name)

    def facts(self) -> dict[str, object]:
        return {"program": shutil.which(self.program) or self.program}

    def close(self) -> None:
        for key in list(self._mounted):
            self.unmount(key)
        self.inner.close()


def apply_directory(target: Target, path: Path, parent: str | None) -> str:
    """Apply the tree under ``path`` to ``target`` as a layer on ``parent``.

    The tar is streamed through a pipe by a writer thread, so a large
    tree is never stored twice.
    """
    rfd, wfd = os.pipe()
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            with os.fdopen(wfd, "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
                for child in sorted(path.iterdir()):
                    tar.add(child, arcname=child.name)
        except BrokenPipeError:
            pass  # the reader gave up; its error is the one to report
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            failure.append(exc)

    thread = threading.Thread(target=writer, name="layer-tar", daemon=True)
    thread.start()
    try:
        with os.fdopen(rfd, "rb") as stream:
            name = target.apply(stream, parent)
    finally:
        thread.join()
    if failure:
        raise failure[0]
    return name


def tar_directory(path: Path, members: list[str] | None = None) -> Iterator[bytes]:
    """Yield an uncompressed tar of ``path`` (or only ``members``, relative paths)."""
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|") as tar:
        if members is None:
            for child in sorted(path.iterdir()):
                tar.add(child, arcname=child.name)
        else:
            for rel in members:
                tar.add(path / rel, arcname=rel, recursive=False)
    yield buf.getvalue()


def _call_with_index(fn: Callable[[Path, int], None], i: int, path: Path) -> None:
    fn(path, i)
