"""BLAS runs single-threaded inside tasks and keeps its threads outside them."""

import numpy as np
from threadpoolctl import threadpool_info

from udfkit import UDF, Context


def blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


class BlasThreadsUDF(UDF):
    def get_result_buffers(self):
        return {"threads": self.buffer(kind="single", dtype="int64")}

    def process_partition(self, partition):
        self.results.threads[:] = max(blas_threads() or [1])

    def merge(self, dest, src):
        dest.threads[:] = np.maximum(dest.threads, src.threads)


def test_single_blas_thread_inside_tasks_only():
    before = blas_threads()
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=np.zeros((4, 4, 8, 8)), num_partitions=2)
    res = ctx.run_udf(dataset=ds, udf=BlasThreadsUDF())
    assert int(res["threads"].data[0]) == 1
    assert blas_threads() == before
