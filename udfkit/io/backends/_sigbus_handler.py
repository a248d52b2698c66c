"""The native ``SIGBUS`` handler of :mod:`udfkit.io.backends._sigbus`, built with llvmlite.

The handler is a few dozen instructions of LLVM IR, JIT-compiled once per process (about
10 ms, plus 0.1 s to import llvmlite where numba has not done so already). numba could
write it in Python, but a numba ``cfunc`` costs a process that has not used numba yet almost
a second (importing numba and starting its JIT), paid by every worker process on its first
mmap partition, while a UDF that uses numpy only needs no numba at all.

The table address and libc's ``mmap``, ``sigaction`` and ``raise`` are constants of the
code, so nothing is resolved by name; the code is never cached (the addresses belong to this
process). Arguments are passed as 64-bit integers, which is how the LP64 calling
conventions of x86-64 and AArch64 pass pointers too.
"""

from __future__ import annotations

import ctypes

import llvmlite.binding as llvm
from llvmlite import ir

__all__ = ["build"]

_NAME = "udfkit_on_sigbus"
_PROT_READ = 1
_engines: list = []  # the JIT engines own the handlers' code: kept for the life of the process


def _libc_address(libc, name: str) -> int:
    address = ctypes.cast(getattr(libc, name), ctypes.c_void_p).value
    if not address:
        raise OSError(f"libc has no {name}")
    return address


def _ir(table: int, slots: int, first: int, page_w: int, flags_w: int, old_w: int,
        libc) -> ir.Module:
    i32, i64 = ir.IntType(32), ir.IntType(64)
    mod = ir.Module(name="udfkit_sigbus")
    mod.triple = llvm.get_process_triple()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [i32, i64.as_pointer(),
                                                           ir.IntType(8).as_pointer()]), name=_NAME)
    sig, info, _ = fn.args
    blocks = {n: fn.append_basic_block(n) for n in
              ("entry", "head", "body", "next", "hit", "count", "chain", "reraise", "done")}
    mmap_t = ir.FunctionType(i64, [i64, i64, i32, i32, i32, i64])
    sigaction_t = ir.FunctionType(i32, [i32, i64, i64])
    raise_t = ir.FunctionType(i32, [i32])

    def call(b, name, fty, *args):
        return b.call(b.inttoptr(i64(_libc_address(libc, name)), fty.as_pointer()), args)

    def word(b, index):
        return b.gep(b.inttoptr(i64(table), i64.as_pointer()), [index])

    b = ir.IRBuilder(blocks["entry"])
    # siginfo_t: si_signo, si_errno, si_code (int32 each, padded to 16 bytes), then si_addr
    code = b.trunc(b.load(b.gep(info, [i64(1)])), i32)
    addr = b.load(b.gep(info, [i64(2)]))
    # a positive si_code: raised by the kernel for an access, not sent by kill/raise
    b.cbranch(b.icmp_signed(">", code, i32(0)), blocks["head"], blocks["chain"])

    b = ir.IRBuilder(blocks["head"])  # for i in range(slots)
    i = b.phi(i64)
    i.add_incoming(i64(0), blocks["entry"])
    b.cbranch(b.icmp_unsigned("<", i, i64(slots)), blocks["body"], blocks["chain"])

    b = ir.IRBuilder(blocks["body"])  # lo <= addr < hi of slot i?
    w = b.add(i64(first), b.mul(i, i64(3)))
    lo = b.load(word(b, w))
    hi = b.load(word(b, b.add(w, i64(1))))
    inside = b.and_(b.icmp_unsigned("<=", lo, addr), b.icmp_unsigned("<", addr, hi))
    b.cbranch(inside, blocks["hit"], blocks["next"])

    b = ir.IRBuilder(blocks["next"])
    i.add_incoming(b.add(i, i64(1)), blocks["next"])
    b.branch(blocks["head"])

    b = ir.IRBuilder(blocks["hit"])  # zeros over the rest of the range, then count the fault
    at = b.sub(addr, b.urem(addr, b.load(word(b, i64(page_w)))))
    flags = b.trunc(b.load(word(b, i64(flags_w))), i32)
    got = call(b, "mmap", mmap_t, at, b.sub(hi, at), i32(_PROT_READ), flags, i32(-1), i64(0))
    b.cbranch(b.icmp_unsigned("==", got, at), blocks["count"], blocks["chain"])

    b = ir.IRBuilder(blocks["count"])
    faults = word(b, b.add(w, i64(2)))
    b.store(b.add(b.load(faults), i64(1)), faults)
    b.ret_void()

    b = ir.IRBuilder(blocks["chain"])
    # not ours: put back the handler from before, which then gets the retried access
    call(b, "sigaction", sigaction_t, sig, i64(table + 8 * old_w), i64(0))
    b.cbranch(b.icmp_signed(">", code, i32(0)), blocks["done"], blocks["reraise"])

    b = ir.IRBuilder(blocks["reraise"])  # a sent signal is not retried: send it again
    call(b, "raise", raise_t, sig)
    b.branch(blocks["done"])

    b = ir.IRBuilder(blocks["done"])
    b.ret_void()
    return mod


def build(table: int, *, slots: int, first: int, page_w: int, flags_w: int, old_w: int) -> int:
    """Compile the handler for the table at address ``table``; its address."""
    try:
        llvm.initialize()
    except Exception:  # llvmlite >= 0.45 initializes itself and refuses the call
        pass
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    libc = ctypes.CDLL(None)
    mod = llvm.parse_assembly(str(_ir(table, slots, first, page_w, flags_w, old_w, libc)))
    mod.verify()
    machine = llvm.Target.from_default_triple().create_target_machine()
    engine = llvm.create_mcjit_compiler(mod, machine)
    engine.finalize_object()
    _engines.append(engine)
    return engine.get_function_address(_NAME)
