"""A file that shrinks while a run reads it through mmap ends the run with a DataSetError.

Touching a mapped page past the new end of a file raises SIGBUS, which kills a Python process.
Each case runs in a fresh interpreter, so that a SIGBUS that gets through shows up as that
interpreter's exit status and the "Bus error" of faulthandler on its stderr, instead of
killing the test run.
"""

import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the SIGBUS guard is for Linux")

# One script per executor: every case truncates (or rewrites shorter) the file from inside
# the run, in the middle of a mapped window, and then checks that the Context still gives
# numpy's result once the file is whole again.
SCRIPT = r'''
import os, re, sys, threading, time
import numpy as np
from udfkit import Context, UDF
from udfkit.errors import DataSetError
from udfkit.udf.builtins import SumUDF
import udfkit.io.backends.mmap as mm

KIND, PATH = sys.argv[1], sys.argv[2]
NAV, SIG = 96, (128, 128)
DATA = np.arange(NAV * 128 * 128, dtype=np.uint16).reshape((NAV,) + SIG)
FULL = DATA.nbytes

def write():
    DATA.tofile(PATH)

class Shrink(UDF):
    """Shrinks the file when it reaches frame ``at`` and keeps reading."""
    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav", dtype="float64")}
    def get_preferred_input_dtype(self):
        return self.USE_NATIVE_DTYPE if self.params.native else np.float32
    def get_tiling_preferences(self):
        return {"depth": 4}  # tiles after the one that shrinks the file: it is read later
    def process_frame(self, frame):
        if self.meta.coordinates[0][0] == self.params.at:
            if self.params.how == "truncate":
                os.truncate(self.params.path, self.params.keep)
            else:  # replaced in place by a shorter file, as an editor or a new acquisition does
                with open(self.params.path, "wb") as f:
                    f.write(b"\0" * self.params.keep)
        self.results.s[:] = frame.sum()

def expect_error(ctx, ds, **params):
    write()
    try:
        ctx.run_udf(dataset=ds, udf=Shrink(path=PATH, **params))
    except DataSetError as e:
        msg = str(e)
        keep = params["keep"]
        # the guard and the size check of a later window give the old and the new size; on
        # threads and processes, another partition may see the short file when it opens it
        # and say what its frames need instead
        # a rewrite empties the file before it writes: another partition may see it at any
        # size from 0 bytes up to the new one
        seen = [int(n) for n in re.findall(r"(\d+) bytes", msg)]
        ok = (lambda n: n <= keep) if params["how"] == "rewrite" else (lambda n: n == keep)
        assert PATH in msg and any(ok(n) for n in seen), msg
        if params["exact"] and KIND == "inline":
            assert f"from {FULL} to {keep} bytes" in msg, msg
        print("OK", params["how"], params["native"], msg)
    else:
        raise AssertionError(f"no error for {params}")

def check_sum(ctx, ds):
    write()
    res = ctx.run_udf(dataset=ds, udf=SumUDF())
    assert np.array_equal(res["intensity"].data, DATA.sum(axis=0, dtype=np.float64)), "sum differs"

if __name__ == "__main__":
    mm.WINDOW_BYTES = 256 << 10  # many windows per partition: faults in the middle of one
    ctx = Context.make_with(KIND) if KIND == "inline" else Context.make_with(KIND, cpus=2)
    with ctx:
        write()
        ds = ctx.load("raw", path=PATH, nav_shape=(NAV,), sig_shape=SIG, dtype="uint16",
                      num_partitions=2)
        # frame 10 is early in the first window: the rest of the window is lost
        expect_error(ctx, ds, at=10, keep=4096 * 3, how="truncate", native=True, exact=True)
        expect_error(ctx, ds, at=70, keep=FULL // 2 + 4096, how="rewrite", native=True, exact=True)
        # decoded tiles (a numba kernel reads the mapping)
        expect_error(ctx, ds, at=10, keep=8192, how="truncate", native=False, exact=False)
        check_sum(ctx, ds)
        if KIND == "inline":
            # another thread truncates at an arbitrary moment: the run fails with the
            # error or finishes before it, never with SIGBUS
            for delay in (0.0, 0.001, 0.003, 0.01):
                write()
                t = threading.Timer(delay, os.truncate, (PATH, 4096))
                t.start()
                try:
                    ctx.run_udf(dataset=ds, udf=SumUDF())
                except DataSetError as e:
                    assert PATH in str(e) and "4096 bytes" in str(e), str(e)
                t.join()
            check_sum(ctx, ds)
    print("DONE")
'''


def _run(tmp_path, *args):
    script = tmp_path / "truncate_run.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, "-X", "faulthandler", str(script), *args],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)


@pytest.mark.parametrize("kind", ["inline", "threads", "processes",
                                  pytest.param("dask", marks=pytest.mark.slow)])
def test_truncated_while_mapped_raises_dataset_error(tmp_path, kind):
    out = _run(tmp_path, kind, str(tmp_path / "data.raw"))
    assert "Bus error" not in out.stderr and out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("OK ") == 3 and out.stdout.rstrip().endswith("DONE"), out.stdout


FOREIGN = r'''
import mmap, os, signal, sys
import numpy as np
from udfkit.io.backends import _sigbus
assert _sigbus.install()
path = sys.argv[1]
with open(path, "wb") as f:
    f.write(b"\1" * (1 << 20))
fd = os.open(path, os.O_RDONLY)
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGBUS)
else:  # a mapping the guard does not know: its bus error must not be swallowed
    arr = np.frombuffer(mmap.mmap(fd, 1 << 20, access=mmap.ACCESS_READ), np.uint8)
    os.truncate(path, 0)
    print(int(arr.sum()))
print("survived")
'''


@pytest.mark.parametrize("how", ["fault", "kill"])
def test_other_bus_errors_still_reach_the_previous_handler(tmp_path, how):
    """The guard only handles its own ranges: other SIGBUS go to faulthandler and kill."""
    script = tmp_path / "foreign.py"
    script.write_text(FOREIGN)
    out = subprocess.run([sys.executable, "-X", "faulthandler", str(script),
                          str(tmp_path / "f.bin"), how],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGBUS, (out.returncode, out.stdout, out.stderr[-2000:])
    assert "survived" not in out.stdout
    assert "Bus error" in out.stderr  # faulthandler, installed before the guard, still reports it


SOURCE = textwrap.dedent(r'''
import os, sys
import numpy as np
from udfkit.errors import DataSetError
from udfkit.io.backends import _sigbus
from udfkit.io.backends.mmap import MMapBackend
from udfkit.io.layout import FileLayout, FileSet
path = sys.argv[1]
np.arange(64 * 1024, dtype="uint16").tofile(path)  # 64 frames of 2 KiB
files = FileSet([FileLayout(path, 0, np.dtype("uint16"), (32, 32), 64)])
src = MMapBackend().open(files, np.arange(64), 8)
flat, offs = src.read(0, 8)
assert flat[:8].tolist() == list(range(8))
os.truncate(path, 2048)
assert int(flat[1024:].sum()) == 0  # the lost pages read as zeros, no SIGBUS
try:
    src.read(8, 16)
except DataSetError as e:
    assert "from 131072 to 2048 bytes" in str(e), str(e)
    print("raised")
src.close()  # does not raise the same error again, releases the guard slot
assert len(_sigbus._free) == _sigbus.SLOTS
print("closed", len(os.listdir("/proc/self/fd")))
''')


def test_source_reports_fault_once_and_releases_its_slot(tmp_path):
    script = tmp_path / "source.py"
    script.write_text(SOURCE)
    out = subprocess.run([sys.executable, "-X", "faulthandler", str(script), str(tmp_path / "d.raw")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "raised" in out.stdout and "closed" in out.stdout


def test_guard_needs_no_numba():
    """The handler is built with llvmlite alone: a numpy-only run does not pay numba's start."""
    code = ("import sys, time; t = time.perf_counter(); from udfkit.io.backends import _sigbus; "
            "assert _sigbus.install(); print(time.perf_counter() - t, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seconds, numba_imported = out.stdout.split()
    assert numba_imported == "False"


MEMMAP = r'''
import os, sys
import numpy as np
from udfkit.errors import FileChangedError
from udfkit.io.backends._sigbus import guarded_reads
path = sys.argv[1]
np.arange(1 << 20, dtype=np.uint8).tofile(path)
arr = np.memmap(path, dtype=np.uint8, mode="r", offset=4096)
try:
    with guarded_reads(arr[::3], path):  # a strided view: its byte bounds are guarded
        os.truncate(path, 8192)
        total = int(arr[::3].astype(np.int64).sum())
except FileChangedError as e:
    assert "8192 bytes" in str(e) and path in str(e), str(e)
    print("raised")
'''


def test_guarded_reads_of_a_readers_own_memmap(tmp_path):
    """Readers that map files themselves (the DM transposed layout) use the same guard."""
    script = tmp_path / "memmap.py"
    script.write_text(MEMMAP)
    out = subprocess.run([sys.executable, "-X", "faulthandler", str(script), str(tmp_path / "m.bin")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "raised" in out.stdout, out.stderr[-3000:]


CONCURRENT_INSTALL = r'''
import threading
from udfkit.io.backends import _sigbus
start = threading.Barrier(8)
answers = []
def first_partition():
    start.wait()
    answers.append(_sigbus.install())
threads = [threading.Thread(target=first_partition) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(answers)
'''


def test_threads_that_install_the_guard_at_once_all_get_it():
    """Partitions that open their first mmap window at the same time on the threads executor:
    each must be told the guard is on. A thread told "no" while another one was still
    building the handler mapped its windows unguarded, and a truncation killed the run."""
    out = subprocess.run([sys.executable, "-c", CONCURRENT_INSTALL], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str([True] * 8), out.stdout
