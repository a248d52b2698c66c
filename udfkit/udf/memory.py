"""Do a run's result buffers fit? Checked before a run allocates anything.

:func:`check_memory` takes a :class:`~udfkit.udf.plan.RunPlan`, counts the bytes of result
buffers that the run will hold at once (:func:`buffer_needs`) on the main process and in each
worker process on this machine, and compares them with what this machine and these processes
can still get (:func:`available_memory`). A run that cannot fit is refused with a
:class:`~udfkit.errors.UDFError` that names the UDF, its largest buffer, the sizes and the
memory available, instead of a ``MemoryError`` from numpy halfway through, a worker killed by
the OOM killer, or a machine that swaps.

What is counted
---------------
Only result buffers: they are what a UDF declares and what can be any size (a sig buffer with
a large ``extra_shape``, a nav buffer of a large scan). Tiles, read buffers and the Python
interpreter are small or already there (see the plan's memory estimate for all of it).

* Worker side, per task: the partition-sized buffers of every UDF (nav buffers for the
  largest partition, sig and single buffers whole). A ``threads`` or ``inline`` run holds
  one such set per thread in the main process: a finished task's set counts until it is
  merged, and from 16 MiB of partition buffers a ``threads`` run starts no task while as
  many unmerged results exist as it has threads (:class:`~udfkit.udf.runner.ResultGate`;
  below that, one more set is counted). A run with ``deterministic=True`` parks results that
  arrive early, which is not counted. A ``processes`` worker holds one task's set, allocated in shared memory
  (``/dev/shm``) when the buffer is 64 KiB or more, and copies the smaller ones for the
  pipe; a ``dask`` worker (or any other executor) copies the returned ones for the
  transport.
* Main process: the full buffers, plus the larger of one partition result being merged
  (another process's) and the ``result_only`` buffers ``get_results`` makes.

What is available
-----------------
* This machine: ``psutil.virtual_memory().available``, or what the process's memory cgroup
  (v2 ``memory.max``, v1 ``memory.limit_in_bytes``, and those of its parents) still allows
  when that is less (usage minus reclaimable file pages).
* One process: the soft ``RLIMIT_AS`` minus the address space in use (``VmSize``) and the
  soft ``RLIMIT_DATA`` minus the data in use (``VmData``); worker processes inherit the limits
  and are taken to start from what the main process uses now.
* Shared memory (``processes``): the free space of ``/dev/shm``.

Workers of a dask cluster run elsewhere, or are limited by dask's own ``memory_limit``: for
them only the main process is checked.

Runs whose result buffers need less than 16 MiB in all (:data:`CHECK_FROM`) are not checked.

Turning it off
--------------
``UDFKIT_MEMORY_CHECK=0`` (or ``off``, ``false``, ``no``) in the environment skips the check,
for users who know better (memory that the kernel will find, a buffer a UDF never fills, an
overcommitting machine); ``UDFRun.execute(..., check_memory=False)`` does it for one run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..common.allocation import SHARED_MIN_BYTES
from ..errors import UDFError

__all__ = ["AvailableMemory", "BufferNeeds", "available_memory", "buffer_needs", "check_memory",
           "memory_check_enabled", "ENV_VAR", "CHECK_FROM"]

#: the environment variable that turns the check off
ENV_VAR = "UDFKIT_MEMORY_CHECK"
_OFF = ("0", "off", "false", "no")
#: limits at or above this are "no limit" (cgroup v1 writes 2**63 rounded to a page)
_UNLIMITED = 1 << 60
#: runs whose result buffers need less than this on this machine are not checked: looking up
#: the memory available costs about 0.4 ms, a lot for a small run, and a process that has
#: less than this left fails in the interpreter anyway
CHECK_FROM = 16 << 20


@dataclass(frozen=True)
class AvailableMemory:
    """What a run may still allocate.

    Attributes
    ----------
    system : int
        Bytes this machine (or the memory cgroup) can still give.
    system_source : str
        Where ``system`` comes from, for messages.
    process : int or None
        Bytes one process may still allocate under its resource limits; ``None``: no limit.
    process_source : str
    shm : int or None
        Free bytes in ``/dev/shm``; ``None`` where there is none.
    """

    system: int
    system_source: str
    process: int | None = None
    process_source: str = ""
    shm: int | None = None


@dataclass(frozen=True)
class BufferNeeds:
    """Bytes of result buffers a run holds at once (see the module docstring).

    Attributes
    ----------
    main : int
        On the main process (worker-side buffers included for ``threads``/``inline``).
    main_parts : dict
        ``{what: bytes}`` making up ``main``.
    per_worker : int
        In one worker process.
    workers_here : int
        Worker processes on this machine that are counted (0: none, or elsewhere).
    shm : int
        Bytes of shared memory in use at once (``processes``).
    """

    main: int
    main_parts: dict
    per_worker: int
    workers_here: int
    shm: int

    @property
    def total(self) -> int:
        """Bytes on this machine: main process plus the counted workers."""
        return self.main + self.workers_here * self.per_worker


def memory_check_enabled() -> bool:
    """False when ``UDFKIT_MEMORY_CHECK`` turns the check off."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF


def buffer_needs(plan, placement=None, nav_on_disk: bool = False) -> BufferNeeds:
    """The result-buffer bytes of ``plan`` on the main process and per worker.

    ``placement`` (:class:`~udfkit.udf.plan.Placement`): where the run goes, when that is not
    the executor the plan was made for.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import SumUDF
    >>> from udfkit.udf.plan import plan_run
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.zeros((4, 16, 16), "float32"), num_partitions=2)
    >>> needs = buffer_needs(plan_run(ds, SumUDF(), executor=ctx.executor))
    >>> needs.main_parts  # float64 sums: the full buffer, one task's partition buffer
    {'full buffers': 2048, 'partition buffers': 2048, 'get_results': 0}
    """
    from .runner import GATE_MIN_BYTES

    bufs = [b for u in plan.udfs for b in u.buffers]
    pl = plan.memory.placement if placement is None else placement
    part = sum(b.partition_nbytes for b in bufs)
    returned = sum(b.partition_nbytes for b in bufs if b.returned)
    # nav buffers on disk (results in a store): one partition's block while it is merged
    full = sum((b.partition_nbytes if nav_on_disk and b.kind == "nav" else b.nbytes)
               for b in bufs if b.use != "result_only")
    made = sum(b.nbytes for b in bufs if b.use == "result_only")
    if pl.in_main_process:
        held = pl.tasks_per_process
        if pl.kind != "inline" and part < GATE_MIN_BYTES:
            held += 1  # no gate for small buffers: one result may wait next to the tasks
        tasks = part * held
        main_parts = {"full buffers": full, "partition buffers": tasks, "get_results": made}
        # the result being merged is one of the tasks' sets (counted in tasks)
        return BufferNeeds(main=full + max(tasks, made), main_parts=main_parts, per_worker=0,
                           workers_here=0, shm=0)
    if pl.kind == "processes":
        # returned buffers of 64 KiB or more live in shared memory from the start; the
        # smaller ones are copied into the pipe's message
        large = sum(b.partition_nbytes for b in bufs
                    if b.returned and b.partition_nbytes >= SHARED_MIN_BYTES)
        per_worker = part + (returned - large)
        workers_here, shm = pl.workers, pl.workers * large
    else:
        # dask and other executors: a copy of the returned buffers for the transport; the
        # workers may run elsewhere, so they are not counted against this machine
        per_worker = part + returned
        workers_here, shm = 0, 0
    main_parts = {"full buffers": full, "partition result being merged": returned,
                  "get_results": made}
    return BufferNeeds(main=full + max(returned, made), main_parts=main_parts,
                       per_worker=per_worker, workers_here=workers_here, shm=shm)


def available_memory() -> AvailableMemory:
    """What this machine, its memory cgroup, this process's resource limits and
    ``/dev/shm`` still allow (see the module docstring)."""
    import psutil

    system = int(psutil.virtual_memory().available)
    source = "available memory of this machine"
    cg = _cgroup_available()
    if cg is not None and cg[0] < system:
        system, source = cg[0], f"left under the memory cgroup's limit ({cg[1]})"
    process, psource = _rlimit_available()
    shm = None
    if os.path.isdir("/dev/shm"):
        try:
            st = os.statvfs("/dev/shm")
            shm = st.f_bavail * st.f_frsize
        except OSError:
            shm = None
    return AvailableMemory(system=system, system_source=source, process=process,
                           process_source=psource, shm=shm)


def _read_int(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _inactive_file(stat_path, key):
    try:
        with open(stat_path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_available(proc_cgroup="/proc/self/cgroup", root="/sys/fs/cgroup"):
    """``(bytes, file)``: the least that any memory cgroup of this process still allows, or
    ``None`` without a limit (``proc_cgroup`` and ``root`` are for tests)."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best = None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base, limit, usage, stat, key = (root, "memory.max", "memory.current",
                                             "memory.stat", "inactive_file")
        elif "memory" in controllers.split(","):
            base, limit, usage, stat, key = (os.path.join(root, "memory"), "memory.limit_in_bytes",
                                             "memory.usage_in_bytes", "memory.stat",
                                             "total_inactive_file")
        else:
            continue
        # the cgroup and its parents (a limit may sit on any); inside a container the
        # process's own cgroup is often the mount's root, whatever /proc/self/cgroup says
        parts = [p for p in path.split("/") if p]
        dirs = [os.path.join(base, *parts[:i]) for i in range(len(parts), -1, -1)]
        candidates.extend((d, limit, usage, stat, key) for d in dirs)
    seen = set()
    for d, limit, usage, stat, key in candidates:
        lpath = os.path.join(d, limit)
        if lpath in seen:
            continue
        seen.add(lpath)
        cap = _read_int(lpath)
        used = _read_int(os.path.join(d, usage))
        if cap is None or cap >= _UNLIMITED or used is None:
            continue
        left = max(0, cap - max(0, used - _inactive_file(os.path.join(d, stat), key)))
        if best is None or left < best[0]:
            best = (left, lpath)
    return best


def _rlimit_available():
    """``(bytes or None, description)`` that this process may still allocate under
    ``RLIMIT_AS`` and ``RLIMIT_DATA``."""
    try:
        import resource
    except ImportError:  # not a Unix
        return None, ""
    status = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmSize", "VmData"):
                    status[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    best = None
    for name, used_key in (("RLIMIT_AS", "VmSize"), ("RLIMIT_DATA", "VmData")):
        soft = resource.getrlimit(getattr(resource, name))[0]
        if soft == resource.RLIM_INFINITY or soft >= _UNLIMITED:
            continue
        used = status.get(used_key, 0)
        left = max(0, soft - used)
        if best is None or left < best[0]:
            best = (left, f"{name} {_human(soft)} with {_human(used)} in use ({used_key})")
    return (None, "") if best is None else best


def check_memory(plan, available: AvailableMemory | None = None, placement=None,
                 nav_on_disk: bool = False) -> None:
    """Refuse a run whose result buffers cannot fit (see the module docstring).

    Parameters
    ----------
    plan : RunPlan
    available : AvailableMemory, optional
        Default: :func:`available_memory` now.
    placement : Placement, optional
        Where the run goes; default: the plan's.

    Raises
    ------
    UDFError
        Naming the UDF, its largest buffer, what the run needs where, and what is available.
        Nothing is raised when ``UDFKIT_MEMORY_CHECK=0``.
    """
    if not memory_check_enabled():
        return
    pl = plan.memory.placement if placement is None else placement
    needs = buffer_needs(plan, pl, nav_on_disk)
    if needs.total < CHECK_FROM and available is None:
        return
    if available is None:
        available = available_memory()
    problems = []
    if available.process is not None:
        if needs.main > available.process:
            problems.append(f"{_human(needs.main)} on the main process, where "
                            f"{_human(available.process)} is left under {available.process_source}")
        if needs.workers_here and needs.per_worker > available.process:
            problems.append(f"{_human(needs.per_worker)} in each worker process, where "
                            f"{_human(available.process)} is left under the same limits "
                            f"({available.process_source})")
    if needs.total > available.system:
        where = f"{_human(needs.main)} on the main process"
        if needs.workers_here:
            where += (f" and {_human(needs.per_worker)} in each of {needs.workers_here} worker "
                      f"process{'es' if needs.workers_here != 1 else ''}")
        problems.append(f"{_human(needs.total)} in all ({where}), where {_human(available.system)} "
                        f"is the {available.system_source}")
    if needs.shm and available.shm is not None and needs.shm > available.shm:
        problems.append(f"{_human(needs.shm)} of shared memory for the results of "
                        f"{pl.workers} worker processes, where /dev/shm has "
                        f"{_human(available.shm)} free")
    if not problems:
        return
    has_nav = any(b.kind == "nav" for u in plan.udfs for b in u.buffers)
    advice = "declare a smaller buffer (extra_shape, dtype)"
    if needs.workers_here or (pl.in_main_process and pl.tasks_per_process > 1):
        advice += ", use fewer workers"
    if has_nav:
        advice += ", use smaller partitions (num_partitions)"
    raise UDFError(f"{_culprit(plan)} does not fit in memory: this run's result buffers "
                   f"need {'; and '.join(problems)}. On the main process: "
                   f"{_parts(needs.main_parts)}. To run it, {advice}, or set {ENV_VAR}=0 "
                   "to skip this check")


def _culprit(plan) -> str:
    """The largest buffer of the run, and how many others there are."""
    entries = [(b.nbytes + b.partition_nbytes, u.name, b) for u in plan.udfs for b in u.buffers]
    size, udf, b = max(entries, key=lambda e: e[0])
    shape = b.shape if b.use == "result_only" or b.kind != "nav" else b.partition_shape
    what = "shape" if b.kind != "nav" else "shape per partition"
    text = (f"{udf}'s {b.kind} buffer {b.name!r} ({b.dtype}, extra_shape {b.extra_shape}, "
            f"{what} {shape}: {_human(b.nbytes if b.kind != 'nav' else b.partition_nbytes)}"
            + (f"; {_human(b.nbytes)} in all" if b.kind == "nav" else "") + ")")
    others = len(entries) - 1
    if others:
        text += f" with {others} other buffer{'s' if others != 1 else ''}"
    return text


def _parts(parts: dict) -> str:
    return ", ".join(f"{k} {_human(v)}" for k, v in parts.items() if v)


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
