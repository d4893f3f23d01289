"""Dask clusters: connecting to a scheduler (``--scheduler ADDRESS``) and what the ``fairl`` commands
share about it. Needs the ``dask`` extra (``pip install 'fairl_opt[dask]'``: dask and distributed),
imported only when a scheduler is given; without it, :func:`connect` raises a
:class:`~fairl_opt.exceptions.DataError` that says what to install.

A scheduler is given as an address (``tcp://host:8786``, as ``dask scheduler`` prints it) or as the
JSON file ``dask scheduler --scheduler-file FILE`` writes. An address that is malformed, or a
scheduler that cannot be reached within the connect timeout (dask's
``distributed.comm.timeouts.connect``, 30 s unless configured, e.g. with
``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``), raises :class:`~fairl_opt.exceptions.ClusterError`
naming the option, which the ``fairl`` command reports with exit status 5.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections import Counter, OrderedDict
from pathlib import Path

from fairl_opt.exceptions import ClusterError, DataError

#: How long a run waits for a scheduler without workers to get one before it gives up (seconds).
WAIT_FOR_WORKERS_S = 60.0


def distributed():
    """The ``distributed`` module, or a DataError saying how to install the ``dask`` extra."""
    try:
        import distributed as dist
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("--scheduler needs the dask extra: pip install 'fairl_opt[dask]' "
                        "(or pip install -c constraints.txt -e '.[dask]')") from exc
    return dist


def _probe(address: str, timeout) -> None:
    """Open and close one connection to ``address`` (in a thread of its own, so that it works under
    a running event loop too); raises what ``distributed.comm.connect`` raises."""
    import asyncio
    import threading

    from distributed.comm import connect as comm_connect

    failure = []

    async def once():
        comm = await comm_connect(address, timeout=timeout)
        await comm.close()

    def run():
        try:
            asyncio.run(once())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def connect(address: str, *, timeout=None, option: str = "--scheduler", set_as_default: bool = False):
    """A ``distributed.Client`` connected to the scheduler at ``address``.

    Parameters
    ----------
    address : str
        ``tcp://host:port`` (any scheme distributed knows), a bare ``host:port``, or the path of a
        scheduler file (JSON, from ``dask scheduler --scheduler-file``).
    timeout : str or float, optional
        Connect timeout (``"5s"`` or seconds); default: dask's ``distributed.comm.timeouts.connect``.
    option : str
        The command-line option the address came from, named in errors.
    set_as_default : bool
        Make the client dask's default (``dask.compute`` and dask arrays then run on it).

    Returns
    -------
    distributed.Client
        The caller closes it (or uses :func:`client_for`).

    Raises
    ------
    ClusterError
        A malformed address, a missing or unreadable scheduler file, or no scheduler answering at
        ``address`` within the timeout; the message names ``option`` and the address.
    DataError
        The ``dask`` extra is not installed.
    """
    dist = distributed()
    import dask
    if not isinstance(address, str) or not address.strip():
        raise ClusterError(f"{option}: expected a scheduler address such as tcp://host:8786, got {address!r}")
    address = address.strip()
    if timeout is None:
        timeout = dask.config.get("distributed.comm.timeouts.connect")
    kwargs = {"address": address}
    if address.endswith(".json") or Path(address).is_file():
        path = Path(address)
        if not path.is_file():
            raise ClusterError(f"{option} {address}: no such scheduler file")
        try:
            import json

            address = str(json.loads(path.read_text(encoding="utf-8"))["address"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise ClusterError(f"{option} {path}: not a scheduler file with an 'address' field "
                               f"({type(exc).__name__}: {exc})") from None
        kwargs = {"address": address}
    try:
        _probe(address, timeout)
        return dist.Client(**kwargs, timeout=timeout, set_as_default=set_as_default)
    except (OSError, ValueError, TypeError) as exc:  # TimeoutError is an OSError
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterError(f"{option} {address}: cannot connect to a Dask scheduler ({reason}); start one "
                           f"with `dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`") from None


@contextlib.contextmanager
def client_for(scheduler, *, option: str = "--scheduler"):
    """Context manager: ``None`` → ``None``; a ``distributed.Client`` → itself (left open); an
    address → :func:`connect` (closed on exit)."""
    if scheduler is None or not isinstance(scheduler, (str, Path)):
        yield scheduler
        return
    client = connect(str(scheduler), option=option)
    try:
        yield client
    finally:
        client.close()


def worker_threads(client, wait_s: float = WAIT_FOR_WORKERS_S) -> int:
    """Threads over all workers of ``client``'s cluster, waiting up to ``wait_s`` for a first
    worker; raises :class:`ClusterError` when none comes."""
    nthreads = client.nthreads()
    if not nthreads:
        try:
            client.wait_for_workers(1, timeout=wait_s)
        except (TimeoutError, OSError) as exc:
            raise ClusterError(f"the Dask scheduler {client.scheduler.address} has no workers (waited "
                               f"{wait_s:.0f} s: {exc}); start some with `dask worker "
                               f"{client.scheduler.address} --nthreads 1`") from None
        nthreads = client.nthreads()
    return max(1, sum(nthreads.values()))


def add_scheduler_argument(parser) -> None:
    """``--scheduler ADDRESS`` on a command that also has ``--workers`` (the two exclude each
    other: :func:`check_scheduler_arguments`)."""
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run the chunks on the Dask cluster at ADDRESS (tcp://host:8786 or a scheduler "
                             "file) instead of local processes; the cache stays here (needs the dask extra)")


def check_scheduler_arguments(args) -> None:
    """DataError when ``--scheduler`` comes with ``--workers`` above 1 (which of the two should
    share the chunks?)."""
    if getattr(args, "scheduler", None) is not None and getattr(args, "workers", 1) > 1:
        raise DataError(f"--workers {args.workers} and --scheduler {args.scheduler}: choose one (local "
                        "processes or the Dask cluster's workers)")


# ----------------------------------------------------------------------------------------------
# chunk jobs on the workers


#: Per-process memo of the Dask workers: (setup, resource) -> state, the most recent last.
_WORKER_STATE: OrderedDict = OrderedDict()
#: How many times each (setup, resource) was set up in this process (:func:`worker_loads`).
_WORKER_LOADS: Counter = Counter()
_WORKER_LOCK = threading.Lock()
#: States a worker keeps at once (e.g. a sampling and an embedding model); the oldest goes first.
WORKER_STATES_KEPT = 2


def _memo_key(work):
    return (f"{work.setup.__module__}.{work.setup.__qualname__}", work.resource)


def _worker_state(work):
    """``work.setup(work.resource)``, once per process and key: the chunks a worker runs (in any of
    its threads, in this run or a later one) share one loaded model."""
    key = _memo_key(work)
    with _WORKER_LOCK:  # a second thread waits for the first one's load instead of loading again
        if key not in _WORKER_STATE:
            while len(_WORKER_STATE) >= WORKER_STATES_KEPT:
                _WORKER_STATE.popitem(last=False)
            _WORKER_STATE[key] = work.setup(work.resource)
            _WORKER_LOADS[repr(key)] += 1
        _WORKER_STATE.move_to_end(key)
        return _WORKER_STATE[key]


def _dask_chunk(work, payload):
    """The task a Dask worker runs for one chunk: its result, computed on the worker's memoised state."""
    return work.compute(_worker_state(work), payload)


def worker_loads() -> dict:
    """{repr((setup, resource)): times set up} in this process; ``client.run(worker_loads)`` asks
    every Dask worker (how the tests count model loads)."""
    with _WORKER_LOCK:
        return dict(_WORKER_LOADS)


def run_on_workers(client, work, payloads: dict, save, on_saved=None) -> None:
    """:func:`fairl_opt.jobs.run_chunks` on a Dask cluster.

    The chunks of ``payloads`` ({chunk index: payload}) of ``work`` (a
    :class:`fairl_opt.jobs.ChunkWork`) go to ``client``'s workers, at most two per worker thread in
    flight (results wait on the workers only briefly, and a large job is not one huge graph); the
    driver calls ``save(c, value)`` and then ``on_saved(c)`` as each result arrives
    (``distributed.as_completed``). On any error or an interrupt, the chunks still queued are
    cancelled and the error goes on; what was saved stays cached. A chunk whose workers keep dying
    (``distributed.KilledWorker``) raises :class:`ClusterError`.
    """
    dist = distributed()
    todo = iter(sorted(payloads))
    in_flight: dict = {}

    def submit(c):
        future = client.submit(_dask_chunk, work, payloads[c], pure=False)
        in_flight[future.key] = (c, future)
        return future

    window = 2 * worker_threads(client)
    queue = dist.as_completed([submit(c) for c in itertools.islice(todo, window)])
    try:
        for future in queue:
            c, _ = in_flight.pop(future.key)
            try:
                value = future.result()
            except dist.KilledWorker as exc:
                raise ClusterError(f"chunk {c}: the Dask workers running it died ({exc}); the chunks "
                                   "finished so far are cached, rerun to resume") from None
            future.release()
            save(c, value)
            if on_saved is not None:
                on_saved(c)
            nxt = next(todo, None)
            if nxt is not None:
                queue.add(submit(nxt))
    except BaseException:
        client.cancel([f for _, f in in_flight.values()])
        raise
