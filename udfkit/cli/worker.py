"""``udfkit worker``: dask workers for a udfkit cluster node.

A dask worker accepts pickled tasks from anyone who can reach its port, so ``udfkit worker``
does not listen on every interface the way ``dask worker`` does: the worker, nanny and HTTP
ports bind to the one local address through which this node reaches the scheduler (the
loopback address for a scheduler on this machine), unless ``--host`` or ``--listen-address``
names another.
"""

from __future__ import annotations

import os
import socket
import sys
import time

from ._common import CLIError

__all__ = ["add_parser", "worker_command", "parse_scheduler_address", "route_to_scheduler"]

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

#: the port ``dask scheduler`` listens on when the address names none
DEFAULT_SCHEDULER_PORT = 8786

#: seconds ``udfkit worker`` tries to reach the scheduler before it gives up
DEFAULT_CONNECT_TIMEOUT = 5.0


def _seconds(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds like 5 or 0.5, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_parser(sub) -> None:
    """Register ``udfkit worker`` on the subcommand parsers ``sub``."""
    p = sub.add_parser(
        "worker", help="start dask workers with udfkit preloaded",
        description="Start dask worker processes connected to SCHEDULER, one thread each, with "
                    "BLAS/OpenMP/numba limited to one thread and udfkit preloaded (runs `dask "
                    "worker` with the right options). The workers listen only on the local "
                    "address through which this machine reaches SCHEDULER (127.0.0.1 for a "
                    "scheduler on this machine), never on all interfaces unless --host or "
                    "--listen-address says so; their HTTP (health and metrics) port follows "
                    "the same address. dask workers run the pickled code any peer sends them: on "
                    "a shared network use TLS (--tls-ca-file, --tls-cert, --tls-key with a "
                    "tls:// scheduler).")
    p.add_argument("scheduler", metavar="SCHEDULER",
                   help="scheduler address, e.g. tcp://10.0.0.1:8786 or tls://10.0.0.1:8786 "
                        f"(port {DEFAULT_SCHEDULER_PORT} if none is given)")
    p.add_argument("--nworkers", type=int, default=None, metavar="N",
                   help="worker processes (default: one per physical core)")
    p.add_argument("--preload", action="append", default=[], metavar="MODULE",
                   help="further modules to preload (repeatable)")
    p.add_argument("--name", default=None, help="worker name prefix")
    p.add_argument("--host", default=None, metavar="HOST",
                   help="address the workers listen on and advertise to the scheduler, and their "
                        "HTTP port's address (default: the local address of the route to "
                        "SCHEDULER; 0.0.0.0 listens on all IPv4 interfaces)")
    p.add_argument("--listen-address", default=None, metavar="ADDRESS",
                   help="exact address to bind, e.g. tcp://10.0.0.5:9000 (one worker: needs "
                        "--nworkers 1; not with --host)")
    p.add_argument("--contact-address", default=None, metavar="ADDRESS",
                   help="address advertised to the scheduler when it differs from "
                        "--listen-address (behind NAT or a port forward)")
    p.add_argument("--connect-timeout", type=_seconds, default=DEFAULT_CONNECT_TIMEOUT,
                   metavar="SECONDS",
                   help="how long to try reaching SCHEDULER before giving up with an error "
                        f"(default: {DEFAULT_CONNECT_TIMEOUT:g}; longer when the scheduler starts "
                        "at the same time, as in a batch job)")
    p.add_argument("--tls-ca-file", default=None, metavar="PEM",
                   help="CA certificates that the scheduler's and other workers' certificates "
                        "must be signed by (TLS, with a tls:// SCHEDULER)")
    p.add_argument("--tls-cert", default=None, metavar="PEM", help="this node's TLS certificate")
    p.add_argument("--tls-key", default=None, metavar="PEM",
                   help="the private key of --tls-cert (if not in the same file)")
    p.set_defaults(func=run, needs_context=False)


def parse_scheduler_address(address: str) -> tuple[str, str, int]:
    """``"tcp://10.0.0.1:8786"`` → ``("tcp", "10.0.0.1", 8786)``.

    The scheme defaults to ``tcp`` and the port to 8786 (``dask scheduler``'s default); an
    IPv6 host is written in brackets (``tcp://[::1]:8786``).

    Parameters
    ----------
    address : str
        ``[SCHEME://]HOST[:PORT]`` as ``dask worker`` takes it.

    Returns
    -------
    tuple of (str, str, int)
        The scheme in lower case, the host (IPv6 without brackets), the port.

    Raises
    ------
    CLIError
        No host, a port that is not a number from 1 to 65535, an unclosed bracket.

    Examples
    --------
    >>> parse_scheduler_address("tls://[::1]:9000")
    ('tls', '::1', 9000)
    >>> parse_scheduler_address("node7")
    ('tcp', 'node7', 8786)
    """
    scheme, sep, location = address.partition("://")
    if not sep:
        scheme, location = "tcp", address
    scheme = scheme.lower()
    port_text = ""
    if location.startswith("["):
        host, bracket, rest = location[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise CLIError(f"SCHEDULER {address!r}: expected an IPv6 host in brackets like "
                           "tcp://[::1]:8786")
        port_text = rest[1:]
    elif location.count(":") == 1:
        host, _, port_text = location.partition(":")
    else:
        host = location  # a bare IPv6 address or a host name without a port
    if not host:
        raise CLIError(f"SCHEDULER {address!r}: expected an address like tcp://10.0.0.1:8786, "
                       "found no host")
    if not port_text:
        return scheme, host, DEFAULT_SCHEDULER_PORT
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise CLIError(f"SCHEDULER {address!r}: expected a port number from 1 to 65535, "
                       f"found {port_text!r}")
    return scheme, host, port


def route_to_scheduler(address: str, timeout: float) -> str | None:
    """The local IP address of a TCP connection to the scheduler at ``address``.

    Tries (again and again, for a scheduler that is still starting) until ``timeout``
    seconds have passed; the local end of the connection that succeeds is the address of
    the interface through which this machine reaches the scheduler, and so the address
    the scheduler and the other workers can reach this one at.

    Parameters
    ----------
    address : str
        The scheduler, as :func:`parse_scheduler_address` reads it.
    timeout : float
        Seconds to keep trying.

    Returns
    -------
    str or None
        The local IP address; None for schemes other than tcp and tls (ucx, inproc), which
        this check does not know.

    Raises
    ------
    CLIError
        The host name does not resolve, or no connection succeeded in time.

    Examples
    --------
    >>> import socket
    >>> scheduler = socket.create_server(("127.0.0.1", 0))
    >>> route_to_scheduler(f"tcp://127.0.0.1:{scheduler.getsockname()[1]}", timeout=2)
    '127.0.0.1'
    >>> scheduler.close()
    """
    scheme, host, port = parse_scheduler_address(address)
    if scheme not in ("tcp", "tls"):
        return None
    try:
        targets = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise CLIError(f"cannot resolve the host {host!r} of SCHEDULER {address!r}: "
                       f"{e.strerror}") from None
    deadline = time.monotonic() + timeout
    reason = "no address to try"
    while True:
        for family, kind, proto, _, sockaddr in targets:
            left = deadline - time.monotonic()
            with socket.socket(family, kind, proto) as s:
                s.settimeout(max(left, 0.05))
                try:
                    s.connect(sockaddr)
                    return s.getsockname()[0]
                except TimeoutError:
                    reason = "no answer"
                except OSError as e:
                    reason = (e.strerror or str(e)).lower()
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(0.2, left))
    raise CLIError(f"cannot reach the scheduler at {address} within {timeout:g} s ({reason}); "
                   "check the address and that `dask scheduler` runs there, or give it longer "
                   "with --connect-timeout SECONDS")


def _host_of(listen_address: str) -> str:
    try:
        return parse_scheduler_address(listen_address)[1]
    except CLIError as e:
        raise CLIError(str(e).replace("SCHEDULER", "--listen-address", 1)) from None


def _http_address(host: str) -> str:
    """``host:0`` for dask's ``--dashboard-address`` (a free port on that address only)."""
    if ":" in host:  # IPv6
        return f"[{host}]:0"
    return f"{host}:0"


def worker_command(args, local_host: str | None = None) -> list:
    """The ``dask worker`` command line that ``udfkit worker`` runs.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``udfkit worker`` command line.
    local_host : str, optional
        The address found by :func:`route_to_scheduler`; without ``--host`` or
        ``--listen-address`` the worker, nanny and HTTP ports bind to it. Without any of the
        three (a scheme this command does not check) dask chooses, as ``dask worker`` does.

    Returns
    -------
    list of str
        The command, starting with this Python interpreter.

    Raises
    ------
    CLIError
        Options that contradict each other, or a TLS file that does not exist.

    Examples
    --------
    >>> from udfkit.cli import build_parser
    >>> args = build_parser().parse_args(["worker", "tcp://10.0.0.1:8786", "--nworkers", "2"])
    >>> " ".join(worker_command(args, "10.0.0.5")[3:])  # doctest: +NORMALIZE_WHITESPACE
    'tcp://10.0.0.1:8786 --nworkers 2 --nthreads 1 --preload udfkit.preload --no-dashboard
     --host 10.0.0.5 --dashboard-address 10.0.0.5:0'
    """
    from ..executor.base import default_workers

    _check_options(args)
    n = args.nworkers or default_workers()
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", args.scheduler,
           "--nworkers", str(n), "--nthreads", "1", "--preload", "udfkit.preload",
           "--no-dashboard"]
    for module in args.preload:
        cmd += ["--preload", module]
    if args.name:
        cmd += ["--name", args.name]
    if args.listen_address:
        cmd += ["--listen-address", args.listen_address]
        if args.contact_address:
            cmd += ["--contact-address", args.contact_address]
        host: str | None = _host_of(args.listen_address)
    else:
        host = args.host or local_host
        if host:
            cmd += ["--host", host]
    if host:
        # dask's default HTTP address is ":0", all interfaces, whatever --host says; the
        # HTTP port serves health checks and metrics even with --no-dashboard
        cmd += ["--dashboard-address", _http_address(host)]
    for flag in ("tls_ca_file", "tls_cert", "tls_key"):
        value = getattr(args, flag)
        if value is not None:
            cmd += ["--" + flag.replace("_", "-"), value]
    return cmd


def _check_options(args) -> None:
    """Contradicting options and missing TLS files, found before the scheduler is tried."""
    if args.host and args.listen_address:
        raise CLIError("--host and --listen-address both name the address to listen on; "
                       "give one (--listen-address for one worker on a fixed port)")
    if args.contact_address and not args.listen_address:
        raise CLIError("--contact-address needs --listen-address (the address to bind)")
    if args.nworkers is not None and args.nworkers < 1:
        raise CLIError(f"--nworkers: expected a positive number of worker processes, got "
                       f"{args.nworkers}")
    if args.listen_address and args.nworkers != 1:
        raise CLIError("--listen-address binds one port, so it needs --nworkers 1; "
                       "--host chooses the address for several workers")
    if args.listen_address:
        _host_of(args.listen_address)  # a malformed address fails here, in our words
    for flag in ("tls_ca_file", "tls_cert", "tls_key"):
        value = getattr(args, flag)
        if value is not None and not os.path.isfile(value):
            raise CLIError(f"--{flag.replace('_', '-')} {value!r}: no such file")


def run(args, ctx=None) -> int:
    _check_options(args)  # before a wait for the scheduler
    local_host = route_to_scheduler(args.scheduler, args.connect_timeout)
    cmd = worker_command(args, local_host)
    env = dict(os.environ, **{k: "1" for k in _THREAD_ENV})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, env)  # replaces this process: signals reach dask directly
    return 0  # pragma: no cover
