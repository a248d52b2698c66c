"""``udfkit worker``: private by default, quick and clear when the scheduler is not there.

The cluster tests list the listening sockets of real processes (a local cluster as
``Context.make_with("dask")`` makes it, ``udfkit worker`` started as a subprocess) and
fail on any that listens on an address other machines can reach when it should not.
"""

import ipaddress
import os
import socket
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfkit import Context
from udfkit.cli import build_parser
from udfkit.cli._common import CLIError
from udfkit.cli.worker import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SCHEDULER_PORT,
    parse_scheduler_address,
    route_to_scheduler,
    worker_command,
)
from udfkit.testing.profiles import examples
from udfkit.udf import SumSigUDF, SumUDF


def listening_sockets(pids) -> list:
    """``[(pid, ip, port)]`` of the listening TCP sockets of the processes ``pids``."""
    found = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found += [(pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return found


def process_tree(pid) -> list:
    return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]


def is_loopback(ip: str) -> bool:
    return ipaddress.ip_address(ip.split("%")[0]).is_loopback


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_address() -> str | None:
    """A non-loopback IPv4 address of this machine, if it has one."""
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback \
                    and not ipaddress.ip_address(a.address).is_link_local:
                return a.address
    return None


def parse(*argv):
    return build_parser().parse_args(["worker", *argv])


# ---------------------------------------------------------------- addresses and the command


@pytest.mark.parametrize("address, expected", [
    ("tcp://10.0.0.1:8786", ("tcp", "10.0.0.1", 8786)),
    ("10.0.0.1:9000", ("tcp", "10.0.0.1", 9000)),
    ("node7", ("tcp", "node7", DEFAULT_SCHEDULER_PORT)),
    ("TLS://node7.cluster:443", ("tls", "node7.cluster", 443)),
    ("tcp://[::1]:8786", ("tcp", "::1", 8786)),
    ("tcp://[fe80::1]", ("tcp", "fe80::1", DEFAULT_SCHEDULER_PORT)),
])
def test_parse_scheduler_address(address, expected):
    assert parse_scheduler_address(address) == expected


@pytest.mark.parametrize("address, needle", [
    ("tcp://h:99999", "port number from 1 to 65535, found '99999'"),
    ("tcp://h:0", "found '0'"),
    ("tcp://h:http", "found 'http'"),
    ("tcp://[::1:8786", "IPv6 host in brackets"),
    ("tcp://:8786", "no host"),
])
def test_parse_scheduler_address_errors(address, needle):
    with pytest.raises(CLIError, match="SCHEDULER") as e:
        parse_scheduler_address(address)
    assert needle in str(e.value) and repr(address) in str(e.value)


hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.lists(st.text("abcxyz019-", min_size=1, max_size=8).map(lambda w: "n" + w),
             min_size=1, max_size=4).map(".".join))


@settings(max_examples=examples(60))
@given(scheme=st.sampled_from(["", "tcp://", "tls://"]), host=hosts,
       port=st.one_of(st.none(), st.integers(1, 65535)))
def test_parse_scheduler_address_round_trip(scheme, host, port):
    address = scheme + host + ("" if port is None else f":{port}")
    got = parse_scheduler_address(address)
    assert got == ((scheme[:-3] or "tcp"), host.strip("[]"),
                   DEFAULT_SCHEDULER_PORT if port is None else port)


def test_command_binds_to_the_route_to_the_scheduler():
    cmd = worker_command(parse("tcp://10.0.0.1:8786", "--nworkers", "2"), "10.0.0.5")
    assert cmd[cmd.index("--host") + 1] == "10.0.0.5"
    # dask's HTTP port defaults to all interfaces, whatever --host says
    assert cmd[cmd.index("--dashboard-address") + 1] == "10.0.0.5:0"
    assert not any(a.startswith(("0.0.0.0", "::", "[::]", ":")) for a in cmd[3:])
    cmd = worker_command(parse("tcp://[::1]:8786", "--nworkers", "1"), "::1")
    assert cmd[cmd.index("--dashboard-address") + 1] == "[::1]:0"


def test_command_host_and_listen_address_are_the_users_choice(tmp_path):
    cmd = worker_command(parse("tcp://10.0.0.1:8786", "--host", "0.0.0.0", "--nworkers", "1"),
                         "10.0.0.5")
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--dashboard-address") + 1] == "0.0.0.0:0"
    cmd = worker_command(parse("tcp://10.0.0.1:8786", "--listen-address", "tcp://10.0.0.9:9000",
                               "--contact-address", "tcp://1.2.3.4:9000", "--nworkers", "1"),
                         "10.0.0.5")
    assert "--host" not in cmd
    assert cmd[cmd.index("--listen-address") + 1] == "tcp://10.0.0.9:9000"
    assert cmd[cmd.index("--contact-address") + 1] == "tcp://1.2.3.4:9000"
    assert cmd[cmd.index("--dashboard-address") + 1] == "10.0.0.9:0"
    pem = tmp_path / "node.pem"
    pem.write_text("-")
    cmd = worker_command(parse("tls://10.0.0.1:8786", "--tls-cert", str(pem), "--tls-ca-file",
                               str(pem), "--nworkers", "1"), "10.0.0.5")
    assert cmd[cmd.index("--tls-cert") + 1] == str(pem)
    assert cmd[cmd.index("--tls-ca-file") + 1] == str(pem)
    assert cmd[cmd.index("--preload") + 1] == "udfkit.preload"


@pytest.mark.parametrize("argv, needle", [
    (["--host", "1.2.3.4", "--listen-address", "tcp://1.2.3.4:9000"], "give one"),
    (["--listen-address", "tcp://1.2.3.4:9000"], "--nworkers 1"),
    (["--listen-address", "tcp://1.2.3.4:9000", "--nworkers", "3"], "--nworkers 1"),
    (["--contact-address", "tcp://1.2.3.4:9000"], "needs --listen-address"),
    (["--nworkers", "0"], "--nworkers"),
    (["--tls-key", "/no/such/key.pem", "--nworkers", "1"], "--tls-key '/no/such/key.pem'"),
    (["--listen-address", "tcp://h:x", "--nworkers", "1"], "--listen-address 'tcp://h:x'"),
])
def test_command_refuses_contradictions(argv, needle):
    with pytest.raises(CLIError) as e:
        worker_command(parse("tcp://10.0.0.1:8786", *argv), "10.0.0.5")
    assert needle in str(e.value)


def test_help_says_where_workers_listen(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "never on all interfaces" in text and "--tls-cert" in text
    assert "--connect-timeout" in text


# ---------------------------------------------------------------- reaching the scheduler


def test_route_is_the_local_end_of_the_connection():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert route_to_scheduler(f"tcp://127.0.0.1:{port}", 2) == "127.0.0.1"
        assert route_to_scheduler(f"localhost:{port}", 2) == "127.0.0.1"
    address = cluster_address()
    if address is not None:
        with socket.socket() as server:
            server.bind((address, 0))
            server.listen()
            port = server.getsockname()[1]
            assert route_to_scheduler(f"tls://{address}:{port}", 2) == address
    if socket.has_ipv6:
        try:
            server = socket.socket(socket.AF_INET6)
            server.bind(("::1", 0))
        except OSError:
            return  # no IPv6 loopback on this machine
        with server:
            server.listen()
            port = server.getsockname()[1]
            assert route_to_scheduler(f"tcp://[::1]:{port}", 2) == "::1"


def test_route_waits_for_a_scheduler_that_is_starting():
    import threading

    port = closed_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def start_late():
        time.sleep(0.5)
        server.bind(("127.0.0.1", port))
        server.listen()

    t = threading.Thread(target=start_late)
    t.start()
    try:
        assert route_to_scheduler(f"tcp://127.0.0.1:{port}", 10) == "127.0.0.1"
    finally:
        t.join()
        server.close()


def test_route_gives_up_after_the_timeout():
    port = closed_port()
    t0 = time.monotonic()
    with pytest.raises(CLIError) as e:
        route_to_scheduler(f"tcp://127.0.0.1:{port}", 0.5)
    elapsed = time.monotonic() - t0
    assert 0.4 < elapsed < 3
    message = str(e.value)
    assert f"tcp://127.0.0.1:{port}" in message and "0.5 s" in message
    assert "connection refused" in message and "--connect-timeout" in message
    with pytest.raises(CLIError, match="cannot resolve the host 'no-such-host.invalid'"):
        route_to_scheduler("tcp://no-such-host.invalid:8786", 0.5)


def test_default_connect_timeout_is_short():
    assert parse("tcp://127.0.0.1:1").connect_timeout == DEFAULT_CONNECT_TIMEOUT <= 10
    assert parse("x", "--connect-timeout", "0.5").connect_timeout == 0.5


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_connect_timeout(value, capsys):
    with pytest.raises(SystemExit) as e:
        parse("x", "--connect-timeout", value)
    assert e.value.code == 2
    assert "--connect-timeout" in capsys.readouterr().err


def test_bad_options_before_the_wait(capsys):
    """A contradiction is reported at once, not after --connect-timeout on a dead address."""
    from udfkit.cli import main

    t0 = time.monotonic()
    code = main(["worker", f"tcp://127.0.0.1:{closed_port()}", "--connect-timeout", "30",
                 "--host", "127.0.0.1", "--listen-address", "tcp://127.0.0.1:9000"])
    assert code == 1 and time.monotonic() - t0 < 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--host and --listen-address" in err


def test_no_scheduler_one_line_quickly(tmp_path):
    """Item 8: nothing listening gives one line and exit code 1 within the timeout."""
    port = closed_port()
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "udfkit", "worker", f"tcp://127.0.0.1:{port}",
                        "--connect-timeout", "0.5"], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    elapsed = time.monotonic() - t0
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"udfkit worker: error: cannot reach the scheduler at "
                               f"tcp://127.0.0.1:{port} within 0.5 s")
    assert elapsed < 20  # interpreter start-up on a loaded machine; was 30 s + 86 lines


# ---------------------------------------------------------------- listening sockets


@pytest.mark.cluster
def test_local_cluster_listens_on_loopback_only():
    before = set(listening_sockets([os.getpid()]))
    with Context.make_with("dask", cpus=1) as ctx:
        children = process_tree(os.getpid())[1:]
        sockets = [s for s in listening_sockets([os.getpid()]) if s not in before]
        sockets += listening_sockets(children)
        # the scheduler (comm and HTTP) in this process, the nanny, worker and HTTP port
        assert len(sockets) >= 4, sockets
        exposed = [s for s in sockets if not is_loopback(s[1])]
        assert not exposed, f"the local cluster listens on non-loopback addresses: {exposed}"
        data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
        ds = ctx.load("memory", data=data)
        res = ctx.run_udf(dataset=ds, udf=SumSigUDF())
        np.testing.assert_allclose(res["intensity"].data, data.sum(axis=(2, 3)))


def _start_worker(scheduler: str, cwd: str):
    return subprocess.Popen([sys.executable, "-m", "udfkit", "worker", scheduler, "--nworkers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)


def _stop(proc):
    tree = process_tree(proc.pid) if proc.poll() is None else [proc.pid]
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    for pid in tree[1:]:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass


@pytest.mark.cluster
@pytest.mark.parametrize("where", ["loopback", "cluster network"])
def test_udfkit_worker_listens_where_it_reaches_the_scheduler(where, tmp_path):
    """``udfkit worker`` binds its worker, nanny and HTTP ports to the address through which
    it reaches the scheduler, and a run on that cluster gives numpy's result."""
    from distributed import Client, LocalCluster

    host = "127.0.0.1" if where == "loopback" else cluster_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", host=host,
                      dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": f"{host}:0"}) as cluster:
        worker = _start_worker(cluster.scheduler_address, str(tmp_path))
        try:
            with Client(cluster.scheduler_address, timeout=30) as client:
                try:
                    client.wait_for_workers(1, timeout=90)
                except TimeoutError:
                    worker.kill()
                    pytest.fail(f"udfkit worker did not join: {worker.stderr.read().decode()}")
                sockets = listening_sockets(process_tree(worker.pid))
                # nanny, worker and the worker's HTTP port
                assert len(sockets) >= 3, sockets
                wrong = [s for s in sockets if s[1] != host]
                assert not wrong, f"udfkit worker listens beyond {host}: {wrong}"
                (address,) = client.scheduler_info()["workers"]
                assert address.startswith(f"tcp://{host}:")
                data = np.random.default_rng(3).integers(0, 99, (3, 4, 5, 6)).astype(np.uint16)
                path = tmp_path / "scan.npy"
                np.save(path, data)
                with Context.make_with("dask", client=client) as ctx:
                    res = ctx.run_udf(dataset=ctx.load("npy", path=str(path)), udf=SumUDF())
                np.testing.assert_array_equal(res["intensity"].data,
                                              data.astype(np.float64).sum(axis=(0, 1)))
        finally:
            _stop(worker)


def _make_certificates(directory) -> dict:
    """A CA and one node certificate for 127.0.0.1, made with the openssl command."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make test certificates")
    d = str(directory)
    with open(f"{d}/san.cnf", "w") as f:
        f.write("[req]\ndistinguished_name=dn\n[dn]\n[ext]\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "1", "-subj", "/CN=udfkit-test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr",
         "-subj", "/CN=node", "-config", "san.cnf"],
        ["x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "node.pem", "-days", "1", "-extfile", "san.cnf",
         "-extensions", "ext"],
    ]
    for step in steps:
        subprocess.run(["openssl", *step], cwd=d, check=True, capture_output=True, timeout=60)
    return {"ca": f"{d}/ca.pem", "cert": f"{d}/node.pem", "key": f"{d}/node.key"}


@pytest.mark.slow
@pytest.mark.cluster
def test_udfkit_worker_with_tls(tmp_path):
    """The TLS set-up the docs show: a tls:// scheduler, ``udfkit worker --tls-*``, a client
    with a ``distributed.security.Security``; a client without TLS is turned away."""
    from distributed import Client, LocalCluster
    from distributed.security import Security

    pem = _make_certificates(tmp_path)
    sec = Security(tls_ca_file=pem["ca"], tls_client_cert=pem["cert"], tls_client_key=pem["key"],
                   tls_scheduler_cert=pem["cert"], tls_scheduler_key=pem["key"],
                   require_encryption=True)
    with LocalCluster(n_workers=0, processes=False, protocol="tls://", host="127.0.0.1",
                      security=sec, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        worker = subprocess.Popen(
            [sys.executable, "-m", "udfkit", "worker", address, "--nworkers", "1",
             "--tls-ca-file", pem["ca"], "--tls-cert", pem["cert"], "--tls-key", pem["key"]],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(tmp_path))
        try:
            with Client(address, security=sec, timeout=30) as client:
                client.wait_for_workers(1, timeout=90)
                (worker_address,) = client.scheduler_info()["workers"]
                assert worker_address.startswith("tls://127.0.0.1:")
                sockets = listening_sockets(process_tree(worker.pid))
                assert sockets and all(s[1] == "127.0.0.1" for s in sockets), sockets
                data = np.random.default_rng(5).random((3, 4, 5, 6)).astype(np.float32)
                np.save(tmp_path / "scan.npy", data)
                with Context.make_with("dask", client=client) as ctx:
                    res = ctx.run_udf(dataset=ctx.load("npy", path=str(tmp_path / "scan.npy")),
                                      udf=SumSigUDF())
                np.testing.assert_allclose(res["intensity"].data, data.sum(axis=(2, 3)),
                                           rtol=1e-5)
            with pytest.raises(OSError):
                Client(address.replace("tls://", "tcp://"), timeout=3)
        finally:
            _stop(worker)
