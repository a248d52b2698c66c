"""The native ``SIGBUS`` handler of :mod:`udfkit.io.backends._sigbus` (imports numba).

Importing this module compiles the handler (or loads it from numba's cache); installing it
is :func:`udfkit.io.backends._sigbus.install`'s job.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba import carray, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._sigbus import FIRST, FLAGS, PAGE, SIZE, SLOTS, SYMBOL, table

# The symbol must be defined before the handler is compiled or loaded: the JIT linker resolves
# it when it finalizes code, and an unresolved one aborts the process at the next
# finalization, of whatever other kernel.
llvm.add_symbol(SYMBOL, table().ctypes.data)

__all__ = ["on_sigbus"]

_intp, _intc = types.intp, types.intc
# libc, linked by name so that the cached machine code holds no address of this process
_mmap = types.ExternalFunction("mmap", _intp(_intp, _intp, _intc, _intc, _intc, _intp))
_sigaction = types.ExternalFunction("sigaction", _intc(_intc, _intp, _intp))
_raise = types.ExternalFunction("raise", _intc(_intc))
_PROT_READ = 1


@intrinsic
def _table_address(typingctx):
    def codegen(context, builder, signature, args):
        gv = cgutils.add_global_variable(builder.module, ir.IntType(64), SYMBOL)
        gv.linkage = "external"
        return builder.ptrtoint(gv, ir.IntType(64))
    return _intp(), codegen


@intrinsic
def _as_pointer(typingctx, addr):
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
    return types.CPointer(types.int64)(_intp), codegen


@numba.cfunc(types.void(_intc, types.CPointer(types.int64), types.voidptr), cache=True)
def on_sigbus(sig, info, context):  # pragma: no cover - runs as a signal handler
    # siginfo_t: si_signo, si_errno, si_code (int32 each, padded to 16 bytes), then si_addr
    code = np.int32(info[1] & 0xFFFFFFFF)
    addr = info[2]
    base = _table_address()
    t = carray(_as_pointer(base), (SIZE,))
    if code > 0:  # raised by the kernel for an access, not sent by kill/raise
        page = t[PAGE]
        for i in range(SLOTS):
            lo = t[FIRST + 3 * i]
            hi = t[FIRST + 3 * i + 1]
            if lo <= addr < hi:
                at = addr - addr % page
                if _mmap(at, hi - at, _PROT_READ, t[FLAGS], -1, 0) == at:
                    t[FIRST + 3 * i + 2] += 1
                    return
                break
    # not ours: hand it to the previous handler (saved at the start of the table), which
    # gets the retried access
    _sigaction(sig, base, 0)
    if code <= 0:
        _raise(sig)
