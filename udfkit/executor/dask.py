"""The ``dask`` executor: partitions as tasks on a ``distributed`` cluster.

``Context.make_with("dask", cpus=N)`` starts a local cluster of ``N`` single-threaded worker
processes bound to 127.0.0.1; ``Context.make_with("dask", scheduler="tcp://host:port")`` (or
:meth:`DaskExecutor.connect`) uses a running scheduler, whose workers are best started with
``udfkit worker ADDRESS`` (or ``dask worker ADDRESS --preload udfkit.preload``).

The run loop is the shared one (:mod:`udfkit.executor._schedule`); this module is its
adapter: one future per task, at most ``2 ×`` workers tasks submitted at a time, more as
results come back. Two per worker on purpose: a worker starts its next task while the
client fetches the last result (a round trip of milliseconds), and dask's scheduler gives a
one-thread worker at most two tasks at once (``worker-saturation`` 1.1). A worker's memory
is then one running task's buffers, the result of the task before it until the client has
fetched it (results are released as soon as they are fetched), and the payload of a queued
task; only a client much slower than its workers lets finished results pile up on one
worker, and never more than ``2 ×`` workers of them. Runs of many partitions go as groups
merged on the workers (:meth:`DaskExecutor.tasks_per_group`), whose result is one
partition's sig and single buffers plus the group's nav rows. A run's large parameters are scattered once to every worker and the tasks
depend on them (:mod:`udfkit.executor._params`). Partition results are gathered and merged
on the client. Progress reports of running partitions travel through a
``distributed.Queue`` named after the run. A run that stops early (an error, Ctrl-C, a ``run_udf_iter`` generator closed) cancels its tasks; those
already running stop at their next progress report, so the next run does not wait for
them. An exception in a UDF comes back with its type and remote traceback (dask keeps both;
the traceback is added as a note too); one that cannot be pickled comes back as an
:class:`~udfkit.errors.ExecutorError` with its type, message and traceback, and
``SystemExit`` or ``KeyboardInterrupt`` raised by a UDF comes back as itself at once (dask
would let it end the worker process).

Code and Ctrl-C
---------------
Tasks are pickled with the classes and functions of the user's own modules *by value*
(:mod:`udfkit.executor._shipping`): a remote worker needs only the installed packages, not
the analysis script and the modules next to it. The workers of a local cluster do not run
the main module again (:mod:`udfkit.executor._spawn`; scripts on standard input work) and
ignore SIGINT (:data:`udfkit.preload.IGNORE_SIGINT_ENV`): Ctrl-C in a terminal reaches the
whole process group, and the main process alone decides, by cancelling the run's tasks; the
cluster stays as it was for the next run. Nannies that closed anyway (their worker closed
itself) are replaced before each run (:meth:`DaskExecutor._restore_workers`).

Workers that die
----------------
A task whose worker dies is run again on another worker ``retries`` times (default 1), then
the run fails with :class:`~udfkit.errors.ExecutorError` naming the task. On a local cluster
the scheduler itself gives up at the first death (``allowed_failures=0``), so ``retries`` is
the whole policy; a remote scheduler first retries by its own setting
(``distributed.scheduler.allowed-failures``, default 3), and ``retries`` then counts
``KilledWorker`` errors on top.
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid

from ..errors import ExecutorError
from ._schedule import Adapter, Outcome, schedule
from .base import Executor, check_count, default_workers

__all__ = ["DaskExecutor", "DaskJobExecutor"]

#: how often (seconds) a run that waits looks for workers of a local cluster to start again
RESTORE_EVERY = 2.0

#: a run of more than this many tasks per worker is grouped (see :meth:`DaskExecutor.tasks_per_group`)
GROUP_FROM_TASKS_PER_WORKER = 8

#: with groups, about this many groups per worker (enough for the load to balance)
GROUPS_PER_WORKER = 4

#: the name ``distributed``'s nanny gives the worker processes it spawns
_NANNY_WORKER_NAME = "Dask Worker process (from Nanny)"


def _run_task(payload, queue_name, index, params=None):
    """What a dask worker runs: the task, with progress reports into the run's queue.

    ``params`` maps the content keys of the task's shared parameters to their
    :class:`~udfkit.executor._params.Blob` (dask resolves the run's scattered futures to the
    worker's copy; see :mod:`udfkit.executor._params`).

    The task arrives as cloudpickle bytes: dask pickles with the standard pickle first,
    which refers to classes by module name, and a scheduler or worker that cannot import
    the module (a user's module registered with ``cloudpickle.register_pickle_by_value``)
    would fail to load it.

    The task always gets a ``progress`` callback, even when nobody watches the progress:
    each (rate-limited) report is where a cancelled task stops itself (see
    :func:`_cancelled`).
    """
    import cloudpickle

    if params:
        from ..common.shared import resolving

        with resolving(lambda key: params[key].value()):
            task = cloudpickle.loads(payload)
    else:
        task = cloudpickle.loads(payload)
    queue = None
    if queue_name is not None:
        from distributed import Queue

        queue = Queue(queue_name)
    # dask runs a task again when its worker dies: the client tells the attempts apart
    # (uuid4 reads the system's entropy pool: a noticeable part of a task's cost on a
    # loaded machine; the process's own generator is enough here)
    attempt = f"{os.getpid()}-{random.getrandbits(64):016x}"

    def report(frames):
        if _cancelled():
            raise _Cancelled(f"task {index} was cancelled by the client")
        if queue is not None:
            queue.put((index, attempt, frames))

    try:
        return task(progress=report)
    except _Cancelled:
        raise
    except Exception as e:
        # dask sends an exception it cannot pickle as a plain Exception with its text only:
        # one that does not survive the trip becomes an ExecutorError with its type, message
        # and traceback, as the processes executor gives
        try:
            cloudpickle.loads(cloudpickle.dumps(e))
        except Exception:
            instead: Exception = _substitute(e, index)
        else:
            raise
    except BaseException as e:
        # SystemExit or KeyboardInterrupt raised by the task's own code would end the worker
        # process (dask catches Exception only), and the client would learn of it as a dead
        # worker, after the nanny's restart: wrapped, it travels as the task's error
        instead = _BaseExit.wrap(e)
    # raised outside the handler: dask pickles an exception's context too, and the context
    # would be the original that cannot travel
    raise instead


def _substitute(e: BaseException, index: int) -> ExecutorError:
    import traceback

    text = "".join(traceback.format_exception(e))
    error = ExecutorError(f"task {index} failed on a dask worker with an exception that cannot "
                          f"be sent back ({type(e).__module__}.{type(e).__qualname__}): {e}\n"
                          f"worker traceback:\n{text}")
    error.task_index = index
    return error


class _BaseExit(Exception):
    """A ``SystemExit`` or ``KeyboardInterrupt`` raised by a task, on its way to the client,
    which raises the original again (:meth:`original`).

    It travels as the original's type, arguments and traceback text: the exception object
    itself would carry its traceback (dask pickles tracebacks) and, rebuilt without its
    ``__init__``, lose ``SystemExit.code``.
    """

    def __init__(self, kind: type, args: tuple, text: str):
        # the arguments are what the exception pickles as
        super().__init__(kind, args, text)

    @classmethod
    def wrap(cls, exc: BaseException) -> _BaseExit:
        import traceback

        return cls(type(exc), exc.args, "".join(traceback.format_exception(exc)))

    def __str__(self):
        kind, args, _ = self.args
        return f"{kind.__name__}{args!r} raised by the task"

    __repr__ = __str__

    def original(self) -> BaseException:
        """The task's exception, with the worker traceback as a note."""
        kind, args, text = self.args
        exc = kind(*args)
        exc.add_note(f"raised by a task on a dask worker; worker traceback:\n{text}")
        return exc


class _Cancelled(Exception):
    """Raised inside a cancelled task to stop it (nobody waits for its result)."""


def _cancelled() -> bool:
    """Has the client cancelled the task running in this thread?

    dask cannot stop a running function: a cancelled task keeps its worker thread until
    it returns, and the next run's tasks wait behind it (after a Ctrl-C, for as long as
    the interrupted partitions would have taken). The worker does mark the task
    ``cancelled``, so the task can look and stop itself. Best effort: outside a worker,
    or should dask's internals change, the answer is no.
    """
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        ts = get_worker().state.tasks.get(thread_state.key)
    except Exception:  # pragma: no cover - not on a worker, or other dask internals
        return False
    return ts is not None and ts.state == "cancelled"


class DaskExecutor(Executor):
    """Run tasks on a dask.distributed cluster.

    Parameters
    ----------
    cpus : int, optional
        Workers of a new local cluster (default one per physical core); ignored with
        ``scheduler``.
    scheduler : str, optional
        Address of a running scheduler (``"tcp://host:port"``) to connect to.
    client : distributed.Client, optional
        An existing client to use (not closed by :meth:`close`).
    connect_timeout : float or str
        How long to try reaching ``scheduler`` (seconds, or a dask time string such as
        ``"30s"``) before giving up with an :class:`~udfkit.errors.ExecutorError`.
    retries : int
        How many times a task whose worker died is run again before the run fails
        (default 1; see the module docstring for remote schedulers).
    tree_merge : bool
        Run many partitions as groups of consecutive ones, merged on the workers
        (:meth:`tasks_per_group`; default on).

    Raises
    ------
    ExecutorSpecError
        For ``cpus`` that is not a positive integer or ``retries`` that is negative.
    ExecutorError
        When ``scheduler`` cannot be reached within ``connect_timeout``.
    """

    kind = "dask"

    def __init__(self, cpus: int | None = None, scheduler: str | None = None, client=None,
                 connect_timeout: float | str = "10s", retries: int = 1, tree_merge: bool = True):
        self.retries = check_count(retries, "retries", minimum=0)
        self.tree_merge = bool(tree_merge)
        n = default_workers() if cpus is None else check_count(cpus, "cpus")
        from distributed import Client, LocalCluster

        self._own_client = client is None
        self._cluster = None
        self._warm: list[str] = []
        if client is not None:
            self.client = client
        elif scheduler is not None:
            try:
                self.client = Client(scheduler, timeout=connect_timeout)
            except OSError as e:
                raise ExecutorError(f"cannot connect to the dask scheduler at {scheduler!r} within "
                                    f"{connect_timeout}: {e}") from None
        else:
            # without a dashboard the scheduler still serves HTTP (health checks), by default
            # on port 8787: a free port instead, or a second cluster (or a dask dashboard
            # already open) makes it warn "Port 8787 is already in use".
            # allowed_failures=0: the scheduler gives up on a task at its first dead worker,
            # and the run loop's ``retries`` decides whether it runs again
            self._n = n
            from ..preload import IGNORE_SIGINT_ENV
            from . import _spawn

            # the worker processes do not run the script again (scripts on standard input,
            # scripts without a main guard), see _spawn
            _spawn.neutral_main_for(_NANNY_WORKER_NAME)
            # env: the workers ignore SIGINT (udfkit.preload), as the processes executor's
            # do. Ctrl-C in a terminal reaches the whole process group; a worker that took it
            # would close, its nanny (in this process) with it, and the cluster would be left
            # without workers. The main process decides: it cancels the run's tasks.
            self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                         host="127.0.0.1", dashboard_address=None,
                                         scheduler_kwargs={"dashboard_address": "127.0.0.1:0",
                                                           "allowed_failures": 0},
                                         preload=["udfkit.preload"], silence_logs=40,
                                         env={IGNORE_SIGINT_ENV: "1"})
            self.client = Client(self._cluster)
        self._runs = itertools.count(1)

    @classmethod
    def connect(cls, address: str, connect_timeout: float | str = "10s") -> DaskExecutor:
        """An executor on the running scheduler at ``address``."""
        return cls(scheduler=address, connect_timeout=connect_timeout)

    @property
    def num_workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def tasks_per_group(self, n_tasks: int) -> int:
        """How many consecutive partitions a run of ``n_tasks`` should run as one dask task,
        their results merged on the worker (:mod:`udfkit.udf.treemerge`; runs that ask for
        determinism are not grouped).

        A dask task costs milliseconds of scheduler and client time on the main process,
        and every result it sends back is received and merged there: with more than
        :data:`GROUP_FROM_TASKS_PER_WORKER` tasks per worker, about
        :data:`GROUPS_PER_WORKER` groups per worker keep every worker busy (the groups are
        handed out as workers finish, like partitions) at a fraction of those costs.
        """
        if not self.tree_merge:
            return 1
        workers = self.num_workers
        if n_tasks <= GROUP_FROM_TASKS_PER_WORKER * workers:
            return 1
        return max(1, n_tasks // (GROUPS_PER_WORKER * workers))

    def warm_modules(self, modules) -> None:
        new = [m for m in modules if m not in self._warm]
        if new:
            self._warm.extend(new)
            # the scheduler runs a registered plugin on every worker, also on those that
            # join later (a nanny's replacement of a dead worker)
            from ._dask_plugins import WarmModules

            self.client.register_plugin(WarmModules(new))

    def _restore_workers(self) -> None:
        """Start again the workers a local cluster gave up on.

        A nanny restarts a worker that died; but a local cluster drops a worker that has
        not come back within ``distributed.deploy.lost-worker-timeout`` (15 s, easily
        reached on a loaded machine) and never starts it again, and a nanny whose worker
        closed itself (a worker that took a SIGINT closes "gracefully") closes too and
        stays in the cluster's list, closed. Either way a run could wait for ever on a
        cluster without workers. Closed nannies are dropped, and scaling to the requested
        size starts the missing workers and leaves those still restarting alone.
        """
        cluster = self._cluster
        if cluster is None:
            return
        from distributed.core import Status

        gone = [name for name, nanny in list(cluster.workers.items())
                if getattr(nanny, "status", None) in (Status.closing, Status.closed,
                                                      Status.closing_gracefully, Status.failed)]
        if gone:
            cluster.sync(_drop_workers, cluster, gone)
        if len(cluster.workers) < self._n:
            cluster.scale(self._n)

    def run_tasks(self, tasks, progress=None, *, retries=None):
        retries = self.retries if retries is None else check_count(retries, "retries", minimum=0)
        self._restore_workers()
        adapter = _DaskRun(self, progress is not None)
        try:
            yield from schedule(adapter, tasks, progress, retries)
        finally:
            adapter.close()

    def close(self) -> None:
        if self._own_client:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __repr__(self):
        return f"DaskExecutor({self.client.scheduler.address!r})"


async def _drop_workers(cluster, names) -> None:
    """Forget the closed nannies ``names`` of ``cluster`` (runs on the cluster's loop)."""
    for name in names:
        nanny = cluster.workers.pop(name, None)
        if nanny is not None:
            await nanny.close()


class _DaskRun(Adapter):
    """One run on the cluster: futures are the handles; ``KilledWorker`` is a dead worker."""

    def __init__(self, executor: DaskExecutor, want_progress: bool):
        from distributed import Queue

        self.client = executor.client
        self.queue_name = None
        self.queue = None
        if want_progress:
            self.queue_name = f"udfkit-progress-{uuid.uuid4().hex}"
            self.queue = Queue(self.queue_name, client=self.client)
        self.limit = 2 * executor.num_workers
        self.executor = executor
        self.looked = time.monotonic()
        #: content key -> future of the run's scattered shared parameter
        self.params: dict = {}
        self.nonce = uuid.uuid4().hex[:12]
        #: submissions so far: a task run again gets a key of its own
        self.submissions = itertools.count()

    def free_slots(self, in_flight):
        return self.limit - in_flight

    def submit(self, index, task):
        # the user's own modules travel by value: a remote worker has only what is installed
        from ._shipping import dumps_by_value

        from ._params import pickle_with_refs

        # large parameters become references to their content key (udfkit.common.shared),
        # scattered once per run to every worker
        payload, shared = pickle_with_refs(task, index, "a dask worker", dumps=dumps_by_value)
        deps = {key: self._scattered(key, value) for key, value in shared.items()}
        # params only where there are some: a task without calls _run_task as before
        extra = {"params": deps} if deps else {}
        return self.client.submit(_run_task, payload, self.queue_name, index, pure=False,
                                  key=f"udfkit-task-{self.nonce}-{next(self.submissions)}-{index}",
                                  **extra)

    def _scattered(self, key, value):
        """The future of the shared parameter ``key``, scattered to every worker the first
        time a task needs it, and again should its last copy have been lost (all the
        workers that held it died)."""
        future = self.params.get(key)
        if future is None or future.status != "finished":
            from ._params import Blob
            from ._shipping import dumps_by_value

            blob = Blob(key, dumps_by_value(value.value))
            name = f"udfkit-param-{key[:32]}-{self.nonce}"
            future = self.client.scatter({name: blob}, broadcast=True, hash=False)[name]
            self.params[key] = future
        return future

    def wait(self, handles, timeout):
        from distributed import wait
        from distributed.scheduler import KilledWorker

        try:
            done, _ = wait(handles, timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = ()
        if not done and time.monotonic() - self.looked > RESTORE_EVERY:
            # a local cluster that lost workers during the run (nannies that closed) would
            # leave the remaining tasks waiting for ever
            self.looked = time.monotonic()
            self.executor._restore_workers()
        reports = [] if self.queue is None else self.queue.get(batch=True)
        outcomes = []
        for future in done:
            try:
                outcomes.append(Outcome(future, "result", self._fetch(future)))
                # the worker keeps a result until its key is released: let go at once, not
                # when the loop drops the future (a large sig buffer would stay on the worker
                # while the next tasks run there)
                future.release()
            except KilledWorker as e:
                outcomes.append(Outcome(future, "died", f"the dask worker running it died ({e})"))
            except _BaseExit as e:
                outcomes.append(Outcome(future, "error", e.original()))
            except BaseException as e:
                if future.status == "error":
                    import traceback

                    text = "".join(traceback.format_tb(future.traceback()))
                    e.add_note(f"raised on a dask worker; worker traceback:\n{text}")
                outcomes.append(Outcome(future, "error", e))
        return outcomes, reports

    def _fetch(self, future):
        """The result of a finished ``future``. Where the worker that holds it went away
        (all of a local cluster's workers closed themselves just after it finished), dask
        computes it again, which needs workers: without restoring them, ``result()`` would
        wait for ever."""
        while True:
            try:
                return future.result(timeout=RESTORE_EVERY)
            except TimeoutError:
                self.looked = time.monotonic()
                self.executor._restore_workers()

    def cancel(self, handles):
        self.client.cancel(list(handles), force=True)

    def close(self):
        # the workers drop the run's parameters (and the values unpickled from them)
        for future in self.params.values():
            future.release()
        self.params.clear()
        if self.queue is not None:
            try:
                self.queue.close()
            except Exception:  # pragma: no cover - best effort on shutdown
                pass


class DaskJobExecutor(DaskExecutor):
    """LiberTEM's name (``libertem.executor.dask.DaskJobExecutor``) of :class:`DaskExecutor`,
    with its constructors :meth:`make_local` and :meth:`connect`.

    LiberTEM's ``spec`` (a worker specification with CPU and GPU workers), ``preload``
    and ``snooze_timeout`` are not offered: workers are CPU workers, one thread each.
    """

    @classmethod
    def make_local(cls, spec=None, cluster_kwargs=None, client_kwargs=None, preload=None,
                   snooze_timeout=None, main_process_gpu=None) -> DaskJobExecutor:
        """A local cluster; ``cluster_kwargs={"n_workers": N}`` sets the number of workers."""
        from ..errors import ExecutorSpecError

        for name, value in (("spec", spec), ("preload", preload), ("snooze_timeout", snooze_timeout),
                            ("client_kwargs", client_kwargs)):
            if value is not None:
                raise ExecutorSpecError(f"DaskJobExecutor.make_local: {name}= is not offered; use "
                                        "Context.make_with('dask', cpus=N) or DaskJobExecutor.connect(...)")
        if not (main_process_gpu is None or main_process_gpu is False):
            raise ExecutorSpecError(f"DaskJobExecutor.make_local: main_process_gpu={main_process_gpu!r} "
                                    "is not offered: udfkit has no GPU back-end")
        extra = set(cluster_kwargs or {}) - {"n_workers"}
        if extra:
            raise ExecutorSpecError(f"DaskJobExecutor.make_local: cluster_kwargs {sorted(extra)} are "
                                    "not offered; only n_workers")
        return cls(cpus=(cluster_kwargs or {}).get("n_workers"))

    @classmethod
    def connect(cls, scheduler_uri: str, *args,  # type: ignore[override]  # LiberTEM's signature
                client_kwargs=None, **kwargs) -> DaskJobExecutor:
        """Join the running scheduler at ``scheduler_uri``."""
        if args or kwargs or client_kwargs:
            from ..errors import ExecutorSpecError

            raise ExecutorSpecError("DaskJobExecutor.connect: only the scheduler address is offered")
        return cls(scheduler=scheduler_uri)
