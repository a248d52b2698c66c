"""``udfkit plan`` and the plan behind ``udfkit info``."""

import json

import numpy as np
import pytest

from udfkit import UDF, Context
from udfkit.cli import main
from udfkit.udf import ApplyMasksUDF, StdDevUDF, SumUDF

NAV, SIG = (4, 5), (8, 6)
RAW_ARGS = ["--dtype", "uint16", "--nav-shape", "4,5", "--sig-shape", "8x6"]


@pytest.fixture
def raw_file(tmp_path):
    path = tmp_path / "scan.raw"
    np.random.default_rng(3).integers(0, 1000, NAV + SIG).astype(np.uint16).tofile(path)
    return str(path)


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_json_matches_context_plan(raw_file, tmp_path, capsys):
    roi = np.random.default_rng(1).random(NAV) > 0.5
    np.save(tmp_path / "roi.npy", roi)
    masks = np.ones((2,) + SIG, dtype=np.float32)
    np.save(tmp_path / "masks.npy", masks)
    code, out, err = run_cli(["plan", raw_file, *RAW_ARGS, "--num-partitions", "3",
                              "--udf", "sum,stddev,masks", "--masks", str(tmp_path / "masks.npy"),
                              "--roi", str(tmp_path / "roi.npy"), "--json"], capsys)
    assert code == 0, err
    facts = json.loads(out)
    with Context.make_with("inline") as ctx:
        ds = ctx.load("raw", path=raw_file, dtype="uint16", nav_shape=NAV, sig_shape=SIG,
                      num_partitions=3)
        plan = ctx.plan(ds, [SumUDF(), StdDevUDF(), ApplyMasksUDF(mask_factories=masks)], roi=roi)
    want = plan.to_dict()
    for key in ("tile_shape", "sig_slices", "partitions", "processed_frames", "bytes_read",
                "udfs", "result_bytes"):
        assert facts[key] == want[key], key
    assert facts["processed_frames"] == int(roi.sum())
    # the command's own executor: worker processes
    assert facts["executor"] == "processes"
    assert facts["memory_per_worker"] > 0 and facts["reasons"]["tiling"]


def test_plan_table_and_bad_udf(raw_file, capsys):
    code, out, err = run_cli(["plan", raw_file, *RAW_ARGS, "--udf", "sumsig"], capsys)
    assert code == 0, err
    assert out.startswith("run plan: SumSigUDF on")
    for needle in ("tiles", "partitions", "per worker", "main process", "intensity", "why",
                   "(4, 5)"):
        assert needle in out
    code, out, err = run_cli(["plan", raw_file, *RAW_ARGS, "--udf", "nosuch"], capsys)
    assert code == 1 and "unknown UDF 'nosuch'" in err and len(err.strip().splitlines()) == 1


class _FloatTile(UDF):
    # what a user's process_tile UDF with the default float32 input gets (test-side only)
    def get_result_buffers(self):
        return {"x": self.buffer(kind="single")}

    def process_tile(self, tile):
        pass

    def merge(self, dest, src):
        pass


def test_info_tile_shapes_are_those_of_real_plans(raw_file, capsys):
    code, out, err = run_cli(["info", raw_file, *RAW_ARGS, "--num-partitions", "2", "--json"],
                             capsys)
    assert code == 0, err
    facts = json.loads(out)
    with Context.make_with("inline") as ctx:
        ds = ctx.load("raw", path=raw_file, dtype="uint16", nav_shape=NAV, sig_shape=SIG,
                      num_partitions=2)
        assert tuple(facts["tile_shape_native"]) == ctx.plan(ds, SumUDF()).tile_shape
        assert tuple(facts["tile_shape_float32"]) == ctx.plan(ds, _FloatTile()).tile_shape
    # the keys scripts read stay
    for key in ("path", "format", "file_size", "nav_shape", "sig_shape", "dtype", "dtype_name",
                "frames", "frames_in_file", "sync_offset", "partitions", "partition_frames",
                "partition_bytes", "tile_shape_native", "tile_shape_float32", "layout"):
        assert key in facts
