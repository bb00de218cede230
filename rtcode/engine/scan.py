"""The pipeline over many files: read -> extract -> link -> measure and classify,
streamed by ``Scanner`` (workers, cache, replay) and collected by ``scan``."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import logging
import os
import pickle
import struct
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from rtcode.coding.policy import Policy
from rtcode.dicom import read as reader
from rtcode.dicom.vendors import class_oddity
from rtcode.engine.cache import (
    MISS,
    Cache,
    PlanSummary,
    StructureSetSummary,
    build_id,
    key,
    summary,
)
from rtcode.engine.execute import Ready, Workers
from rtcode.link import LinkedPlan, link
from rtcode.model.errors import RtcodeError
from rtcode.model.facts import (
    SOP_CLASS_MODALITY,
    Dose,
    Inventory,
    Plan,
    ReadError,
    Skipped,
    StructureSet,
    Tally,
)
from rtcode.model.limits import Limits, default_limits
from rtcode.model.results import PlanResult, ScanResult

# one file's outcome: its facts, an error, the file skipped and why, or its kind
_Outcome = ReadError | Plan | StructureSet | Dose | Skipped | str


class ScanInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``scan``: ``result`` holds the files read and the plans coded
    before it, with ``interrupted`` set."""

    def __init__(self, result: ScanResult) -> None:
        super().__init__("the scan was interrupted")
        self.result = result


def collect(inputs: Iterable[str | os.PathLike[str]], limits: Limits | None = None) -> Inventory:
    """Walk the inputs and extract the facts of every RT object found.

    ``limits`` default to the shipped policy's. Ctrl-C propagates from here; ``scan``
    catches it and keeps what was read.
    """
    inv = Inventory()
    limits = limits if limits is not None else default_limits()
    for outcome, _ in _outcomes(reader.walk(inputs), limits, None):
        _record(inv, outcome)
    return inv


def _record(inv: Inventory, outcome: object) -> None:
    """Count one file's outcome; recorded once the file is done, so an interrupted
    file leaves no trace."""
    if isinstance(outcome, reader.WalkError):
        inv.errors.append(ReadError(outcome.display, outcome.error))
        return
    inv.files_seen += 1
    if isinstance(outcome, ReadError):
        inv.errors.append(outcome)
    elif isinstance(outcome, Plan):
        inv.plans.append(outcome)
    elif isinstance(outcome, PlanSummary):
        # with a cache: linking reads only its path, UIDs and patient (see PlanSummary)
        inv.plans.append(outcome)  # type: ignore[arg-type]  # Inventory names Plan only
    elif isinstance(outcome, StructureSet):
        inv.structure_sets.append(outcome)
    elif isinstance(outcome, StructureSetSummary):
        inv.structure_sets.append(outcome)  # type: ignore[arg-type]  # as a PlanSummary
    elif isinstance(outcome, Dose):
        inv.doses.append(outcome)
    elif isinstance(outcome, Skipped):
        inv.skipped.append(outcome)
        if outcome.kind == "not_dicom":
            inv.non_dicom_skipped += 1
        else:
            inv.other_dicom_skipped += 1
    else:  # "image": thousands of them, counted
        inv.images_skipped += 1


def file_outcomes(entries: list[reader.FileEntry], limits: Limits) -> list[_Outcome]:
    """The outcome of each file (the per-file work, run by the executor's workers)."""
    return [_one_file(entry, limits) for entry in entries]


def _one_file(entry: reader.FileEntry, limits: Limits) -> _Outcome:
    """The one outcome of one file: its facts, an error, the file skipped and why, or
    "image"."""
    from rtcode.dicom.extract import extract  # here: pydicom is imported only when a file is parsed

    try:
        result = reader.read(entry, limits)
    except Exception as exc:  # the reader should not raise; never lose the batch to it
        return ReadError(entry.display, f"could not read the file: {_unexpected(exc)}")
    if result.kind == "error":
        return ReadError(result.display, result.error or "the file could not be read")
    if result.kind == "image":
        return "image"
    if result.kind != "rt":
        return _skipped(result.display, result.kind, result.reason, result.sop_class_uid,
                        result.modality_text)  # fmt: skip
    if result.dataset is None or result.modality is None:
        return ReadError(result.display, "could not read the file: no data set came back")
    try:
        facts: Plan | StructureSet | Dose = extract(
            result.dataset, result.modality, result.display, result.has_pixel_data, limits
        )
    except RtcodeError as exc:
        return ReadError(result.display, str(exc))
    except Exception as exc:  # a file shaped in a way we did not foresee
        return ReadError(result.display, f"could not interpret the file: {_unexpected(exc)}")
    if result.sop_class_uid not in SOP_CLASS_MODALITY:  # read by its content
        odd = class_oddity(result.sop_class_uid, result.modality, result.display)
        facts = replace(facts, oddities=(odd, *facts.oddities))
    return facts


def _skipped(
    display: str, kind: str, reason: str | None, sop_class: str | None, modality: str | None
) -> Skipped:
    return Skipped(display, kind, reason or "not an RT Plan, RT Dose or RT Structure Set",
                   sop_class, modality)  # fmt: skip


def _unexpected(exc: BaseException) -> str:
    """A failure rtcode did not foresee, in words: no exception class or text (Python's
    words mean nothing to the user; they go to the log, logger "rtcode", for whoever
    looks into the report)."""
    logging.getLogger("rtcode").debug("unforeseen failure", exc_info=exc)
    return "rtcode does not handle something in it; please report this file"


# ------------------------------------------------------------------ the engine

_WINDOW = 1024  # items looked at before deciding whether worker processes are worth it
_INLINE_BELOW = 24  # fewer items to work on than this in a window: done in this process
_FILE_BATCH = 64  # files sent to a worker at a time (most are images: a quick look each)
_PLAN_BATCH = 4  # plans sent to a worker at a time (each is milliseconds of work)


@dataclass
class Runner:
    """How the per-file and per-plan work runs: ``jobs`` worker processes (1: in this
    process) or a Dask cluster, and an optional scan cache. Close it when done."""

    jobs: int = 1
    executor: str = "local"
    scheduler: str | None = None
    cache: Cache | None = None
    _workers: Workers | None = field(default=None, init=False, repr=False)

    def map(
        self, fn: Callable[..., list[Any]], items: Iterable[Any], *args: Any, batch_size: int = 8
    ) -> Iterator[Any]:
        """``fn([item], *args)`` of each item, ``Ready`` items passed through, results in
        input order. A local scan with little to do (fewer than ``_INLINE_BELOW`` items
        in the first ``_WINDOW``) does it in this process: starting workers would cost
        more."""
        it = iter(items)
        while self._workers is None:
            window, work = [], 0
            for item in it:
                window.append(item)
                work += not isinstance(item, Ready)
                if len(window) >= _WINDOW or work >= _INLINE_BELOW:
                    break
            if self.executor == "local" and (self.jobs <= 1 or work < _INLINE_BELOW):
                yield from _inline(fn, window, args)
                if len(window) < _WINDOW and work < _INLINE_BELOW:
                    return  # the input ended
                if self.jobs <= 1:
                    yield from _inline(fn, it, args)
                    return
                continue
            if self.executor == "local":
                _load_the_workers_modules()
            self._workers = Workers(self.jobs, self.executor, self.scheduler)
            it = itertools.chain(window, it)
        self._workers.batch_size = batch_size
        yield from self._workers.map(fn, it, *args)

    def close(self, interrupted: bool = False) -> None:
        if self._workers is not None:
            self._workers.close(interrupted)
            self._workers = None


def _load_the_workers_modules() -> None:
    """Import what the per-file and per-plan work needs (pydicom, numpy, the
    extractor, classifier and renderer) before the worker processes start: where
    they are forked (Linux), they start with it loaded instead of each importing it."""
    from rtcode.coding import (
        classify,  # noqa: F401
        related,  # noqa: F401
    )
    from rtcode.dicom import extract  # noqa: F401
    from rtcode.output import formats  # noqa: F401


def _inline(
    fn: Callable[..., list[Any]], items: Iterable[Any], args: tuple[Any, ...]
) -> Iterator[Any]:
    for item in items:
        if isinstance(item, Ready):
            yield item.value
        else:
            yield from fn([item], *args)


def _cache_key(entry: reader.FileEntry) -> bytes:
    """The file's absolute path as bytes: the same file whatever folder rtcode was
    started in, and exact for names that are not UTF-8."""
    return os.fsencode(os.path.abspath(entry.path))


@dataclass(frozen=True)
class _FileId:
    """A file as the cache knows it: its real path (``key``: absolute, bytes, since a
    display name may be lossy), its signature, and the context its facts hold in
    (rtcode build, limits, whether it was named: a non-DICOM file named on the
    command line is an error, met in a folder it is skipped; and the path as displayed,
    which its facts carry)."""

    entry: reader.FileEntry
    signature: tuple[int, int, str]
    key: bytes
    context: str


def _file_contexts(context: str) -> dict[bool, str]:
    """The start of the context of a file found in a folder (False) and of one named
    (True): two strings for the whole scan; each file's display path follows (its
    facts, error or skip reason carry that path: another display is another entry)."""
    return {False: f"{context}:found:", True: f"{context}:named:"}


@dataclass(frozen=True)
class _Look:
    """A file for a worker to look at: ``known`` is the signature the cache holds for
    its path (None: none), so that an unchanged file is not parsed again."""

    entry: reader.FileEntry
    known: tuple[int, int, str] | None


_UNCHANGED = "unchanged"  # a worker's answer: the file's signature is the known one


@dataclass(frozen=True)
class _Pickled:
    """A plan's or structure set's facts as a worker sends them with a cache: pickled
    once, by the worker, for the cache to store as they are, and their summary
    (``cache.summary``) for the scanning process to link. Control points and ROIs
    are most of their bytes: the scanning process never unpickles them."""

    summary: PlanSummary | StructureSetSummary
    pickled: bytes


def look_at_files(
    looks: list[_Look], limits: Limits
) -> list[tuple[tuple[int, int, str] | None, _Outcome | _Pickled]]:
    """(signature, outcome) of each file (the per-file work with a cache, run by the
    workers): its first bytes decide; an image named by its file meta is done with,
    a file whose signature is the known one is ``_UNCHANGED``, the rest are read
    (a plan or structure set comes back ``_Pickled``)."""
    out: list[tuple[tuple[int, int, str] | None, _Outcome | _Pickled]] = []
    for look in looks:
        peek = reader.peek(look.entry)
        if peek.signature is None:  # could not be opened: read() says why
            out.append((None, _one_file(look.entry, limits)))
        elif peek.kind == "image":  # from its file meta
            out.append((peek.signature, "image"))
        elif peek.kind is not None:  # an object not used for coding, from its file meta
            skip = _skipped(look.entry.display, peek.kind, peek.reason, peek.sop_class_uid, None)
            out.append((peek.signature, skip))
        elif peek.signature == look.known:
            out.append((peek.signature, _UNCHANGED))
        else:
            outcome = _one_file(look.entry, limits)
            small = summary(outcome)
            if small is not None and small is not outcome:
                out.append((peek.signature, _Pickled(small, _dumps(outcome))))
            else:
                out.append((peek.signature, outcome))
    return out


def _dumps(value: object) -> bytes:
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def _outcomes(
    walk: Iterable[reader.FileEntry | reader.WalkError],
    limits: Limits,
    runner: Runner | None,
) -> Iterator[tuple[object, _FileId | None]]:
    """Each walked file's outcome, in walk order, with its identity for the cache.
    Without a cache every file is read by the runner's workers. With one, a file
    untouched since the cache saw it is not opened; the workers look at the others'
    first bytes and read those that changed."""
    runner = runner if runner is not None else Runner()
    cache = runner.cache
    if cache is None:
        entries = (Ready(e) if isinstance(e, reader.WalkError) else e for e in walk)
        for outcome in runner.map(file_outcomes, entries, limits, batch_size=_FILE_BATCH):
            yield outcome, None
        return
    contexts = _file_contexts(key(build_id(), limits))
    # (entry, path key, context) of the files sent and not yet back, in order: a
    # queue, so that nothing is kept per file once its result is in
    looks: deque[tuple[reader.FileEntry, bytes, str]] = deque()

    def work() -> Iterator[_Look | Ready]:
        for entry in walk:
            if isinstance(entry, reader.WalkError):
                yield Ready(_Done((entry, None)))
                continue
            path_key = _cache_key(entry)
            # the path as shown: every path in the file's facts (or its error) is built
            # from it, so an entry made under another display of the file is not used
            named = contexts[bool(entry.explicit)] + entry.display
            known = None
            if entry.stat_key is not None:  # untouched since the cache saw it: not opened
                hit = cache.get_untouched(path_key, entry.stat_key, named)
                if hit is not None and hit[1] is not MISS:
                    signature, outcome = hit
                    fid = _FileId(entry, signature, path_key, named)
                    done = None if isinstance(outcome, (str, Skipped)) else fid
                    yield Ready(_Done((outcome, done)))
                    continue
                known = cache.stored_signature(path_key, named)
            looks.append((entry, path_key, named))
            yield _Look(entry, known)

    for result in runner.map(look_at_files, work(), limits, batch_size=_FILE_BATCH):
        if isinstance(result, _Done):  # a walk error, or an untouched file's outcome
            yield result.outcome  # type: ignore[misc]  # work() puts (outcome, id) pairs in
            continue
        signature, outcome = result
        entry, path_key, named = looks.popleft()
        if signature is None:
            yield outcome, None
            continue
        fid = _FileId(entry, signature, path_key, named)
        pickled = None
        if isinstance(outcome, str) and outcome == _UNCHANGED:
            stored = cache.get_file_pickled(path_key, signature, named)
            if stored is not None:  # moved or touched, the same bytes: not read again
                pickled, small = stored
                outcome = _loads(small if small is not None else pickled)
            if outcome is MISS or stored is None:  # gone from the cache meanwhile: read
                pickled = None
                outcome = _one_file(entry, limits)
        if isinstance(outcome, _Pickled):
            pickled = outcome.pickled
            outcome = outcome.summary
        cache.put_file(path_key, signature, named, outcome, entry.stat_key, pickled)
        yield outcome, (None if isinstance(outcome, (str, Skipped)) else fid)


# a plan's or structure set's facts, whole or as the summary the scan links
_FACTS = (Plan, StructureSet, PlanSummary, StructureSetSummary)


def _coded(outcome: object) -> bool:
    """A plan's coded result (a PlanResult, or its rendered row), not an error or a
    file's facts."""
    return not isinstance(outcome, (ReadError, Dose, Skipped, str, *_FACTS))


@dataclass(frozen=True)
class _Done:
    outcome: object
    key: str | None = None  # a coded plan's result key, when it came from the cache


def classify_plans(
    plans: list[LinkedPlan | _PlanToCode],
    policy: Policy,
    day: dt.date | None,
    render: Callable[[PlanResult, Policy], object] | None = None,
) -> list[object]:
    """PlanResult (or ReadError) of each linked plan (the per-plan work); with
    ``render``, what it makes of the PlanResult (a small row) instead."""
    out: list[object] = []
    for item in plans:
        lp = item.unpickle(policy) if isinstance(item, _PlanToCode) else item
        if isinstance(lp, ReadError):
            out.append(lp)
            continue
        result = _classify_one(lp, policy, day)
        if render is not None and isinstance(result, PlanResult):
            out.append(render(result, policy))
        else:
            out.append(result)
    return out


def _summary(outcome: object) -> object:
    small = summary(outcome)
    return outcome if small is None else small


def _whole(cache: Cache, fid: _FileId | None) -> tuple[bytes | None, reader.FileEntry | None]:
    """A linked file's whole facts as the cache holds them, pickled (None: not there),
    and its entry, to read it again if need be."""
    if fid is None:
        return None, None
    stored = cache.get_file_pickled(fid.key, fid.signature, fid.context)
    return (stored[0] if stored is not None else None), fid.entry


@dataclass(frozen=True)
class _PlanToCode:
    """A linked plan sent to be coded, with its own and its structure set's facts as
    the cache holds them, pickled (``None``: gone from the cache, read the file
    again). The scanning process links summaries (``cache.summary``): the worker
    puts the whole facts in their place, never coding a summary."""

    linked: LinkedPlan
    pickled: bytes | None
    entry: reader.FileEntry | None
    structure_set_pickled: bytes | None = None
    structure_set_entry: reader.FileEntry | None = None

    def unpickle(self, policy: Policy) -> LinkedPlan | ReadError:
        limits = Limits.from_policy(policy)
        lp = self.linked
        plan = _restore(lp.plan, Plan, self.pickled, self.entry, limits)
        if isinstance(plan, ReadError):
            return plan
        if lp.structure_set is None:
            return replace(lp, plan=plan)
        ss = _restore(
            lp.structure_set,
            StructureSet,
            self.structure_set_pickled,
            self.structure_set_entry,
            limits,
        )
        if isinstance(ss, ReadError):  # the structure set's error, under the plan's name
            return ReadError(lp.plan.path, f"its structure set {ss.path}: {ss.error}")
        return replace(lp, plan=plan, structure_set=ss)


_KIND_NAMES = {Plan: "an RT Plan", StructureSet: "an RT Structure Set"}
_Whole = TypeVar("_Whole", Plan, StructureSet)


def _restore(
    small: Plan | StructureSet | PlanSummary | StructureSetSummary,
    kind: type[_Whole],
    pickled: bytes | None,
    entry: reader.FileEntry | None,
    limits: Limits,
) -> _Whole | ReadError:
    """The whole facts of which ``small`` is the summary: from the cache's pickle, else
    (gone from the cache, e.g. cleaned up by another scan) from the file again; a
    ReadError when the file is no longer of that kind or cannot be read."""
    whole = _loads(pickled) if pickled is not None else MISS
    if isinstance(whole, kind) and whole.path == small.path:  # (not another display of it)
        return whole
    path = small.path
    again = _one_file(entry or reader.FileEntry(Path(path), path, explicit=True), limits)
    if isinstance(again, (kind, ReadError)):
        return again
    return ReadError(path, f"the file is no longer {_KIND_NAMES[kind]}")


def _loads(blob: bytes) -> object:
    try:
        return pickle.loads(blob)
    except Exception:  # damaged, or written by a build whose classes changed
        return MISS


def _classify_one(
    lp: LinkedPlan, policy: Policy, date_override: dt.date | None
) -> PlanResult | ReadError:
    # here: the classifier loads numpy, which a rescan from the cache never needs
    from rtcode.coding.classify import classify
    from rtcode.coding.related import date_of_service, related_codes

    try:
        c = classify(lp, policy)
        day = date_of_service(lp, date_override)
        related = related_codes(lp, c, policy, day)
        return PlanResult(lp, c, related, day)
    except Exception as exc:  # never lose the batch to one plan
        return ReadError(lp.plan.path, f"could not classify the plan: {_unexpected(exc)}")


class _Listing:
    """A hash of every file a walk yields (its path, whether it was named, and its
    size, modification time, change time and inode): the same hash later means the
    same files, none written since (the change time moves on every write and cannot
    be set back). ``digest`` is None when the walk met an error or a file it could not
    stat: such a scan is not replayed."""

    _CHUNK = 4096  # files hashed together (a rescan walks tens of thousands)

    def __init__(self, base: str) -> None:
        self._hash = hashlib.sha256(base.encode())
        self._ok = True
        self._paths: list[str] = []
        self._counts = array("Q")  # per file: size, inode, whether named
        self._times = array("q")  # per file: mtime and ctime in ns (before 1970: < 0)

    def watch(self, walk: Iterable[Any]) -> Iterator[Any]:
        paths, counts, times = self._paths, self._counts, self._times
        for entry in walk:
            key = getattr(entry, "stat_key", None)  # a WalkError has none
            if key is None:
                self._ok = False
            else:
                paths.append(os.fspath(entry.path))
                try:
                    counts.extend((key[0], key[3], entry.explicit))
                    times.extend((key[1], key[2]))
                except OverflowError:  # beyond 64 bits (not seen on POSIX): not replayed
                    self._ok = False
                if len(paths) >= self._CHUNK:
                    self._flush()
            yield entry

    def _flush(self) -> None:
        # each chunk framed by its counts; names that are not UTF-8 keep their bytes
        names = "\0".join(self._paths).encode("utf-8", "surrogateescape")
        self._hash.update(struct.pack("<qq", len(self._paths), len(names)))
        self._hash.update(names)
        self._hash.update(self._counts.tobytes())
        self._hash.update(self._times.tobytes())
        self._paths.clear()
        del self._counts[:], self._times[:]

    @property
    def digest(self) -> str | None:
        if self._paths:
            self._flush()
        return self._hash.hexdigest() if self._ok else None


@dataclass(frozen=True)
class _Replay:
    """A whole scan's result as the scan cache keeps it: what the walk found,
    counted (with its errors), and the result key of every coded plan's rendered
    row, in order (the rows themselves are in the cache once)."""

    listing: str  # the _Listing digest of the files it was made from
    tally: Tally
    result_keys: list[str]


class Scanner:
    """A scan as a stream: ``run(inputs)`` yields each plan's result in input order as
    soon as it is known, keeping only the small facts needed to link plans (and with a
    cache, only their summaries: plans without control points, structure sets without
    ROIs; the worker that codes a plan reads both back from the cache).
    ``tally()``, ``inventory`` and ``interrupted`` say what was found once the stream
    ends (``tally()`` for a report: a replayed scan's inventory holds no facts).

    Ctrl-C while files are read: the plans read so far are still coded, then the
    stream ends with ``interrupted`` set; Ctrl-C while coding ends it at once.

    ``Scanner`` streams it: every file's outcome first (in worker processes, from the
    scan cache when the file is unchanged), then every plan's coded result in input
    order (from the cache when nothing it depends on changed). ``scan`` collects the
    stream into one ``ScanResult``.

    One bad file never stops the batch: each file's problem becomes one entry in
    ``errors`` with its path and a sentence a person understands. Limits from the
    policy's ``[limits]`` section go to the reader (file size) and the extractor
    (counts, meterset). Ctrl-C (KeyboardInterrupt) ends the scan early: ``scan`` raises
    ``ScanInterrupted``, still a KeyboardInterrupt for callers that only want to stop,
    carrying what was done so far; ``rtcode scan`` reports that and exits 130.
    """

    def __init__(
        self,
        policy: Policy,
        date_override: dt.date | None = None,
        runner: Runner | None = None,
        progress: Callable[[str, object], None] | None = None,
        render: Callable[[PlanResult, Policy], object] | None = None,
    ) -> None:
        """``render`` (a module-level function, run by the workers) turns each
        PlanResult into what the caller keeps, e.g. ``rtcode.output.formats.plan_row``: the
        stream then yields those, and the cache keeps those. ``progress(event, item)``
        hears "file" (each file's outcome), "files" (a count: a replayed scan's),
        "plan" and "error"."""
        self.render = render
        self.policy = policy
        self.date_override = date_override
        self.runner = runner if runner is not None else Runner()
        self.progress = progress or (lambda event, item: None)
        self.inventory = Inventory()
        self.interrupted = False
        self.plans_coded = 0
        self.result_keys: list[str | None] = []  # of the plans coded, in order
        self._replayed: Tally | None = None

    def tally(self) -> Tally:
        """What the scan found, counted. After a scan replayed from the cache this is
        the stored count, and ``inventory`` holds the counts and errors only (the
        plans, structure sets and doses are not read back)."""
        if self._replayed is None:
            return self.inventory.tally()
        return replace(
            self._replayed,
            errors=tuple(self.inventory.errors),
            skipped=tuple(self.inventory.skipped),
        )

    def run(self, inputs: Iterable[str | os.PathLike[str]]) -> Iterator[PlanResult]:
        inputs = list(inputs)
        cache = self.runner.cache
        base = self._replay_base(inputs)
        kept = cache.get_result(f"scan:{base}") if base is not None and cache else MISS
        if isinstance(kept, _Replay) and base is not None and cache is not None:
            probe = _Listing(base)
            for _ in probe.watch(reader.walk(inputs)):
                pass
            if probe.digest == kept.listing and cache.keep_results(kept.result_keys):
                yield from self._replay(kept, cache)
                self.runner.close()
                return
        listing = _Listing(base) if base is not None else None
        walk = reader.walk(inputs) if listing is None else listing.watch(reader.walk(inputs))
        yield from self._run(walk)
        keys = self.result_keys
        if listing is None or listing.digest is None or cache is None or self.interrupted:
            return
        coded = [k for k in keys if k is not None]
        if len(coded) == len(keys):  # every coded plan's row is in the cache
            cache.put_result(f"scan:{base}", _Replay(listing.digest, self.inventory.tally(), coded))

    def _replay_base(self, inputs: list[Any]) -> str | None:
        """What, beside the files, a scan's whole result depends on; None when it is
        not replayed (no lasting cache, whole results kept, inputs that are not
        paths). The cache keeps the last scan made with each: a nightly rescan finds
        last night's, and a first scan does not walk twice."""
        cache = self.runner.cache
        if cache is None or cache.temporary or self.render is None:
            return None  # no cache, one for this run only, or whole results kept
        if not all(isinstance(i, (str, os.PathLike)) for i in inputs):
            return None
        try:
            cwd = os.getcwd()
        except OSError:  # the working folder is gone: relative inputs mean nothing sure
            return None
        render = f"{self.render.__module__}.{self.render.__name__}"
        return key(
            "scan",
            build_id(),
            render,
            self.policy.sha256,
            self.date_override,
            cwd,
            tuple(os.fspath(i) for i in inputs),
        )

    def _replay(self, stored: _Replay, cache: Cache) -> Iterator[Any]:
        """The stored result of this scan, every file untouched since: nothing to read
        or code again."""
        inv = self.inventory
        self._replayed = stored.tally
        inv.errors.extend(stored.tally.errors)
        inv.skipped.extend(stored.tally.skipped)
        for name in ("files_seen", "images_skipped", "other_dicom_skipped", "non_dicom_skipped"):
            setattr(inv, name, getattr(stored.tally, name))
        self.progress("files", inv.files_seen)  # all at once: none is looked at
        for error in inv.errors:
            self.progress("error", error)
        rows = cache.kept_results(stored.result_keys)  # there: keep_results saw to it
        for result_key, row in zip(stored.result_keys, rows, strict=True):
            if row is MISS:  # cannot be unpickled: the cache file was damaged
                error = ReadError("(scan cache)", "a stored result could not be read: scan again")
                inv.errors.append(error)
                self.progress("error", error)
                continue
            self.result_keys.append(result_key)
            self.plans_coded += 1
            self.progress("plan", row)
            yield row

    def _run(self, walk: Iterable[Any]) -> Iterator[Any]:
        cache = self.runner.cache
        limits = Limits.from_policy(self.policy)
        files: dict[int, _FileId] = {}  # id() of a plan, structure set or dose found
        inv = self.inventory
        try:
            for outcome, fid in _outcomes(walk, limits, self.runner):
                if cache is not None:  # the rest is read back when the plan is coded
                    outcome = _summary(outcome)
                if fid is not None and isinstance(outcome, (Dose, *_FACTS)):
                    files[id(outcome)] = fid
                _record(inv, outcome)
                self.progress("file", outcome)
        except KeyboardInterrupt:
            self.interrupted = True
        try:
            yield from self._code(_link_in_input_order(inv), files)
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self.runner.close(self.interrupted)

    def _code(self, linked: list[LinkedPlan], files: dict[int, _FileId]) -> Iterator[Any]:
        cache = self.runner.cache
        # result key of each plan sent and not yet back, in order
        keys: deque[str | None] = deque()

        def work() -> Iterator[LinkedPlan | _PlanToCode | Ready]:
            for lp in linked:
                if cache is None:
                    keys.append(None)
                    yield lp
                    continue
                result_key = self._result_key(lp, files)
                found = cache.get_result(result_key) if result_key else MISS
                if found is not MISS:
                    yield Ready(_Done(found, result_key))
                    continue
                keys.append(result_key)
                yield _PlanToCode(
                    lp,
                    *_whole(cache, files.get(id(lp.plan))),
                    *_whole(cache, files.get(id(lp.structure_set))),
                )

        results = self.runner.map(
            classify_plans,
            work(),
            self.policy,
            self.date_override,
            self.render,
            batch_size=_PLAN_BATCH,
        )
        for outcome in results:
            if isinstance(outcome, _Done):
                result_key, outcome = outcome.key, outcome.outcome
            else:
                result_key = keys.popleft()
                if cache is not None and result_key is not None and _coded(outcome):
                    cache.put_result(result_key, outcome)
            if isinstance(outcome, ReadError):
                self.inventory.errors.append(outcome)
                self.progress("error", outcome)
            elif _coded(outcome):
                self.result_keys.append(result_key)
                self.plans_coded += 1
                self.progress("plan", outcome)
                yield outcome

    def _result_key(self, lp: LinkedPlan, files: dict[int, _FileId]) -> str | None:
        """Everything a plan's coded result depends on, hashed; None: not cacheable."""
        plan = files.get(id(lp.plan))
        if plan is None:
            return None
        companions = []
        for c in (lp.structure_set, *lp.doses):
            if c is not None:
                fid = files.get(id(c))
                if fid is None:
                    return None
                companions.append((fid.key, fid.signature, fid.context))
        render = None if self.render is None else f"{self.render.__module__}.{self.render.__name__}"
        return key(
            build_id(),
            render,
            self.policy.sha256,
            self.date_override,
            plan.key,
            plan.signature,
            plan.context,  # with the display path, as are the companions'
            lp.plan.path,
            tuple(companions),
            lp.structure_set_status,
            lp.notes,
            lp.duplicate_uid_paths,
        )


def scan(
    inputs: Iterable[str | os.PathLike[str]],
    policy: Policy,
    date_override: dt.date | None = None,
    runner: Runner | None = None,
) -> ScanResult:
    """Scan to the end and return everything at once (``Scanner`` streams instead).

    Ctrl-C raises ``ScanInterrupted`` carrying what was done so far.
    """
    scanner = Scanner(policy, date_override, runner)
    result = ScanResult(policy=policy, inventory=scanner.inventory)
    try:
        for plan_result in scanner.run(inputs):
            result.plans.append(plan_result)
    except KeyboardInterrupt:
        scanner.interrupted = True
    result.interrupted = scanner.interrupted
    if result.interrupted:
        raise ScanInterrupted(result)
    return result


def _link_in_input_order(inv: Inventory) -> list[LinkedPlan]:
    """Link with every list sorted by path, so that which companion a plan gets (and
    the order of its notes) does not depend on the order the files were given in;
    the plans come back in the order they were found."""
    by_path = replace(
        inv,
        plans=sorted(inv.plans, key=lambda p: p.path),
        structure_sets=sorted(inv.structure_sets, key=lambda s: s.path),
        doses=sorted(inv.doses, key=lambda d: d.path),
    )
    linked = {id(lp.plan): lp for lp in link(by_path)}
    return [linked[id(p)] for p in inv.plans]
