"""Many processes on one store: a mixed workload and the checks that must hold after it.

``run_stress`` starts worker processes (``python -m layerfs.testing.stress``)
on one store root. Each worker draws operations at random on a small set
of shared keys (so they collide): prepare, view, commit, remove, mount
with a write or a read, apply of the same and of different layers, and,
in worker 0, ``check(repair=True)``. Contention errors (``Busy``,
``AlreadyExists``, ``NotFound``, ``FailedPrecondition``) are correct
answers; anything else is a failure. Each worker writes a journal of what
succeeded; ``verify`` then checks the store against the journals:

- every key exists at the end exactly when its successful creations
  (prepare, view, commit as the new name) outnumber its successful
  removals (remove, commit of the active key); these alternate, so the
  difference is 0 or 1 whatever the order;
- every applied layer exists and holds its files;
- every committed snapshot holds each file written into it or its
  ancestors, with its content, and no file written into another snapshot;
- ``check()`` is empty, no mount row, mount or FUSE server is left, and the
  concurrent ``check(repair=True)`` calls found nothing to repair (no one
  died: every intent and mount belonged to a live process).

A driver's own test binds a store root and options to it; the numbers
(operations, outcomes, run time) come back in a ``StressReport``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import layerfs
from layerfs import errors
from layerfs._streams import chain_id

from .suite import build_tar

#: Errors that are correct answers when callers race for the same key.
CONTENTION = (errors.Busy, errors.AlreadyExists, errors.NotFound, errors.FailedPrecondition)

KEYS = [f"s{i}" for i in range(8)]

WEIGHTS = {
    "prepare": 20,
    "view": 8,
    "commit": 12,
    "remove": 16,
    "mount_write": 20,
    "mount_read": 8,
    "apply": 12,
    "stat": 4,
}


def layer_specs() -> list[tuple[str, list[tuple[str, bytes | None]], int | None]]:
    """Four layers: two bases, a child of the first base and a grandchild.

    Returns ``(label, entries, parent index)`` per layer.
    """
    return [
        ("base-a", [("etc", None), ("etc/layer", b"base-a\n"), ("a", b"A" * 5000)], None),
        ("base-b", [("etc", None), ("etc/layer", b"base-b\n"), ("b", b"B" * 300)], None),
        ("child", [("etc", None), ("etc/layer", b"child\n"), ("c", b"C")], 0),
        ("grandchild", [("g", b"G" * 70000)], 2),
    ]


def layer_names() -> list[str]:
    """The chain IDs of ``layer_specs()``, in order."""
    names: list[str] = []
    for _label, entries, parent in layer_specs():
        diff = "sha256:" + hashlib.sha256(build_tar(entries)).hexdigest()
        names.append(chain_id(None if parent is None else names[parent], diff))
    return names


# -- the worker ------------------------------------------------------------------------------


class Worker:
    """One process's share of the workload; see the module docstring."""

    def __init__(self, store: layerfs.Store, wid: int, seed: int, check_every: int) -> None:
        self.store = store
        self.wid = wid
        self.rng = random.Random(seed)
        self.check_every = check_every
        self.layers = layer_specs()
        self.layer_tars = [build_tar(entries) for _l, entries, _p in self.layers]
        self.layer_names = layer_names()
        self.outcomes: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []
        self.writes: list[tuple[str, str, str]] = []  # snapshot id, file, content
        self.checks: list[list[str]] = []
        self.failures: list[str] = []
        self.n = 0

    def run(self, ops: int) -> None:
        """Do ``ops`` operations."""
        names = list(WEIGHTS)
        weights = [WEIGHTS[n] for n in names]
        for i in range(ops):
            if self.wid == 0 and self.check_every and i % self.check_every == self.check_every - 1:
                op = "check"
            else:
                op = self.rng.choices(names, weights)[0]
            self.n += 1
            try:
                getattr(self, "op_" + op)()
            except CONTENTION as exc:
                self.outcomes[f"{op}:{type(exc).__name__}"] += 1
            except Exception as exc:  # noqa: BLE001 - any other error is what we look for
                self.outcomes[f"{op}:FAILED"] += 1
                self.failures.append(f"{op}: {type(exc).__module__}.{type(exc).__name__}: {exc}")
            else:
                self.outcomes[f"{op}:ok"] += 1

    def _event(self, what: str, key: str, **extra: Any) -> None:
        self.events.append({"what": what, "key": key, **extra})

    def _parent(self) -> str | None:
        choice = self.rng.random()
        if choice < 0.2:
            return None
        if choice < 0.6:
            return self.rng.choice(self.layer_names)
        return self._existing("committed")

    def op_prepare(self) -> None:
        key = self._free()
        self.store.prepare(key, self._parent())
        self._event("create", key)

    def op_view(self) -> None:
        key = self._free()
        parent = self._parent()
        self.store.view(key, parent if parent is not None else self.rng.choice(self.layer_names))
        self._event("create", key)

    def _existing(self, kind: str) -> str:
        """Mostly a key of that kind as listed a moment ago (others race for it too)."""
        if self.rng.random() < 0.7:
            keys = [i.name for i in self.store.walk(f"kind=={kind}") if i.name in KEYS]
            if keys:
                return self.rng.choice(keys)
        return self.rng.choice(KEYS)

    def _free(self) -> str:
        if self.rng.random() < 0.7:
            free = sorted(set(KEYS) - {i.name for i in self.store.walk()})
            if free:
                return self.rng.choice(free)
        return self.rng.choice(KEYS)

    def op_commit(self) -> None:
        name, key = self._free(), self._existing("active")
        self.store.commit(name, key)
        self._event("remove", key)
        self._event("create", name)

    def op_remove(self) -> None:
        key = self.rng.choice(KEYS)
        self.store.remove(key)
        self._event("remove", key)

    def op_mount_write(self) -> None:
        key = self._existing("active")
        path = self.store.mount(key)
        try:
            # Held mounted, the key can be neither committed nor removed: its kind is stable.
            rec = self.store._get(key)
            if rec.kind is layerfs.Kind.ACTIVE:
                sid = rec.sid
                name = f"w-{self.wid}-{self.n}"
                content = f"{sid} {self.wid} {self.n} {self.rng.random()}\n"
                with open(os.path.join(path, name), "w") as f:
                    f.write(content)
                self.writes.append((sid, name, content))
            os.listdir(path)
        finally:
            self.store.unmount(key, path)

    def op_mount_read(self) -> None:
        key = self.rng.choice(KEYS + self.layer_names)
        with self.store.mounted(key) as path:
            for entry in os.listdir(path):
                if entry.startswith("w-"):
                    with open(os.path.join(path, entry)) as f:
                        f.read()

    def op_apply(self) -> None:
        i = self.rng.randrange(len(self.layers))
        parent = self.layers[i][2]
        info = self.store.apply(
            io.BytesIO(self.layer_tars[i]),
            parent=None if parent is None else self.layer_names[parent],
        )
        if info.name != self.layer_names[i]:
            raise AssertionError(f"apply of layer {i} returned {info.name}")
        self._event("apply", info.name)

    def op_stat(self) -> None:
        list(self.store.walk())
        self.store.stat(self.rng.choice(KEYS))

    def op_check(self) -> None:
        self.checks.append(self.store.check(repair=True))

    def journal(self) -> dict[str, Any]:
        """What this worker did, for ``verify``."""
        return {
            "worker": self.wid,
            "outcomes": dict(self.outcomes),
            "events": self.events,
            "writes": self.writes,
            "checks": self.checks,
            "failures": self.failures,
        }


def worker_main(argv: list[str] | None = None) -> int:
    """Entry point of one worker process."""
    ap = argparse.ArgumentParser(prog="python -m layerfs.testing.stress")
    ap.add_argument("root")
    ap.add_argument("driver")
    ap.add_argument("--options", default="{}")
    ap.add_argument("--worker", type=int, required=True)
    ap.add_argument("--ops", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-every", type=int, default=10)
    ap.add_argument("--journal", required=True)
    ap.add_argument("--go", help="wait until this file exists before starting")
    args = ap.parse_args(argv)
    with layerfs.Store(args.root, driver=args.driver, options=json.loads(args.options)) as store:
        worker = Worker(store, args.worker, args.seed * 1000 + args.worker, args.check_every)
        if args.go:
            deadline = time.monotonic() + 60
            while not os.path.exists(args.go) and time.monotonic() < deadline:
                time.sleep(0.01)
        worker.run(args.ops)
    Path(args.journal).write_text(json.dumps(worker.journal()))
    return 0


# -- the run and the checks --------------------------------------------------------------------


@dataclasses.dataclass
class StressReport:
    """What a stress run did and found."""

    driver: str
    processes: int
    operations: int
    seconds: float
    outcomes: dict[str, int]
    contention: dict[str, int]
    failures: list[str]
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One paragraph for a test log."""
        by_error = ", ".join(f"{k} {v}" for k, v in sorted(self.contention.items())) or "none"
        return (
            f"stress {self.driver}: {self.processes} processes, {self.operations} operations "
            f"in {self.seconds:.1f}s; contention answers: {by_error}; "
            f"failures {len(self.failures)}; problems after {len(self.problems)}"
        )

    def log(self) -> None:
        """Print the summary, outcomes and failures for the test log, and save the report as
        ``stress-<driver>.json`` under ``$LAYERFS_STRESS_JSON`` when that is set."""
        print("\n" + self.summary())
        print(json.dumps(self.outcomes, sort_keys=True))
        for line in self.failures + self.problems:
            print(line[-3000:])
        out = os.environ.get("LAYERFS_STRESS_JSON")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            Path(out, f"stress-{self.driver}.json").write_text(json.dumps(self.as_dict(), indent=1))


def run_stress(
    root: Path,
    driver: str,
    *,
    processes: int = 8,
    operations: int = 2000,
    options: dict[str, str] | None = None,
    seed: int = 1,
    check_every: int = 10,
    timeout: float = 900.0,
) -> StressReport:
    """Run the workload on a store at ``root`` and verify the result (see the module docstring)."""
    options = dict(options or {})
    work = Path(str(root) + ".stress")
    work.mkdir(parents=True, exist_ok=True)
    layerfs.Store(root, driver=driver, options=options).close()
    go = work / "go"
    per = -(-operations // processes)
    procs = []
    for wid in range(processes):
        argv = [sys.executable, "-m", "layerfs.testing.stress", str(root), driver]
        argv += ["--options", json.dumps(options), "--worker", str(wid), "--ops", str(per)]
        argv += ["--seed", str(seed), "--check-every", str(check_every)]
        argv += ["--journal", str(work / f"journal-{wid}.json"), "--go", str(go)]
        procs.append(subprocess.Popen(argv, stderr=subprocess.PIPE, text=True))
    start = time.monotonic()
    go.touch()
    failures: list[str] = []
    for wid, p in enumerate(procs):
        try:
            _, err = p.communicate(timeout=max(1.0, timeout - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            failures.append(f"worker {wid} did not finish in {timeout:g}s")
        if p.returncode != 0:
            failures.append(f"worker {wid} exited {p.returncode}: {err[-3000:]}")
    seconds = time.monotonic() - start
    journals = []
    for wid in range(processes):
        path = work / f"journal-{wid}.json"
        if path.exists():
            journals.append(json.loads(path.read_text()))
    outcomes: Counter[str] = Counter()
    for j in journals:
        outcomes.update(j["outcomes"])
        failures += [f"worker {j['worker']}: {f}" for f in j["failures"]]
    contention: Counter[str] = Counter()
    for k, v in outcomes.items():
        result = k.split(":", 1)[1]
        if result not in ("ok", "FAILED"):
            contention[result] += v
    with layerfs.Store(root, driver=driver, options=options) as store:
        problems = verify(store, journals)
        base = str(store.root)
    # Once the store is closed: an open fuse store keeps its fork server.
    problems += [f"process left: {p}" for p in _processes_naming(base)]
    return StressReport(
        driver=driver,
        processes=processes,
        operations=sum(outcomes.values()),
        seconds=seconds,
        outcomes=dict(sorted(outcomes.items())),
        contention=dict(contention),
        failures=failures,
        problems=problems,
    )


def verify(store: layerfs.Store, journals: list[dict[str, Any]]) -> list[str]:
    """Everything that contradicts the journals, or is left mounted; empty when all is well.

    Processes left behind are looked for by ``run_stress`` once ``store`` is closed.
    """
    problems = [f"check() after the run: {p}" for p in store.check()]
    for j in journals:
        for found in j["checks"]:
            if found:
                problems.append(f"a concurrent check(repair=True) found {found}")
    balance: Counter[str] = Counter()
    applied: set[str] = set()
    for j in journals:
        for e in j["events"]:
            if e["what"] == "create":
                balance[e["key"]] += 1
            elif e["what"] == "remove":
                balance[e["key"]] -= 1
            elif e["what"] == "apply":
                applied.add(e["key"])
    infos = {i.name: i for i in store.walk()}
    for key in KEYS:
        if balance[key] not in (0, 1):
            problems.append(f"{key}: {balance[key]} more creations than removals succeeded")
        elif (key in infos) != (balance[key] == 1):
            problems.append(
                f"{key}: {'exists' if key in infos else 'is missing'} but the successful "
                f"operations leave it {'present' if balance[key] else 'absent'}"
            )
    specs = layer_specs()
    for i, name in enumerate(layer_names()):
        if name not in applied:
            continue
        if name not in infos:
            problems.append(f"applied layer {specs[i][0]} ({name}) is missing")
            continue
        with store.mounted(name) as path:
            for entry, content in specs[i][1]:
                if content is None:
                    continue
                try:
                    with open(os.path.join(path, entry), "rb") as f:
                        data = f.read()
                except OSError as exc:
                    problems.append(f"layer {specs[i][0]}: {entry} unreadable: {exc}")
                    continue
                if data != content:
                    problems.append(f"layer {specs[i][0]}: {entry} has other content")
    problems += _verify_writes(store, journals, infos)
    with store._meta.transaction(write=False) as db:
        rows = db.execute("SELECT target, state, refs FROM mounts").fetchall()
    problems += [f"mount row left: {r}" for r in rows]
    problems += [f"still mounted: {m}" for m in _mounts_under(str(store.root))]
    return problems


def _verify_writes(
    store: layerfs.Store, journals: list[dict[str, Any]], infos: dict[str, layerfs.Info]
) -> list[str]:
    problems: list[str] = []
    by_sid: dict[str, dict[str, str]] = {}
    for j in journals:
        for sid, name, content in j["writes"]:
            by_sid.setdefault(sid, {})[name] = content
    for name, info in infos.items():
        if info.kind is not layerfs.Kind.COMMITTED or name not in KEYS:
            continue
        rec = store._get(name)
        ref = store._ref_from(rec)
        lineage = [rec.sid, *ref.parents]
        expected: dict[str, str] = {}
        for sid in lineage:
            for fname, content in by_sid.get(sid, {}).items():
                expected.setdefault(fname, content)
        with store.mounted(name) as path:
            present = {e for e in os.listdir(path) if e.startswith("w-")}
            for fname, content in expected.items():
                try:
                    data = Path(path, fname).read_text()
                except OSError:
                    problems.append(f"{name}: written file {fname} is missing")
                    continue
                if data != content:
                    problems.append(f"{name}: {fname} holds {data!r}, not {content!r}")
            for fname in sorted(present - set(expected)):
                problems.append(f"{name}: holds {fname}, written into another snapshot")
    return problems


def _mounts_under(base: str) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(base + "/")]


def _processes_naming(base: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a.startswith(base + "/") or a == base for a in args):
            found.append(f"{pid}: {' '.join(args)[:200]}")
    return found


if __name__ == "__main__":
    sys.exit(worker_main())
