"""``python -m fastconv bench``: it runs on a tiny subset of the layer suite, its JSON parses,
and a wrong kernel is reported, never timed. Speed itself is never asserted."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time

import numba
import pytest

import fastconv
from fastconv import bench, shapes

TINY = ["--layers", "lenet_c3,global_avgpool", "--repeat", "1"]
ROWS = [
    ("lenet_c3", "forward"),
    ("lenet_c3", "backward_input"),
    ("lenet_c3", "backward_weight"),
    ("global_avgpool", "forward"),
    ("global_avgpool", "backward_input"),
]
TORCH = [False] + ([True] if bench.import_torch() is not None else [])


@pytest.fixture(autouse=True)
def _keep_thread_counts():
    """The command sets Numba's and PyTorch's thread counts; restore them after each test."""
    torch = bench.import_torch()
    saved = numba.get_num_threads(), None if torch is None else torch.get_num_threads()
    yield
    numba.set_num_threads(saved[0])
    if torch is not None:
        torch.set_num_threads(saved[1])


def _run(tmp_path, argv):
    path = tmp_path / "bench.json"
    code = bench.main([*argv, "--json", str(path)])
    assert sorted(tmp_path.iterdir()) == [path]  # written atomically: no temp file left
    return code, json.loads(path.read_text())


def test_layer_suite_copy():
    layers = bench.load_layers()
    assert len({layer["name"] for layer in layers}) == len(layers) == 18
    assert {layer["op"] for layer in layers} == {"conv", "conv_transpose", "max_pool", "avg_pool"}
    assert {len(layer["spatial"]) for layer in layers} == {1, 2, 3}


def test_off_suite_layers():
    """The layers outside the suite: named apart from it, what the issue lists (channel tails,
    a non-square kernel, a strided 5x5, groups, a long dilated 1-D signal), each valid."""
    off, main = bench.load_layers("off"), bench.load_layers("main")
    names = [layer["name"] for layer in off]
    assert len(set(names)) == len(names) == 10 and not set(names) & {layer["name"] for layer in main}
    assert any(layer["C_in"] % 16 and layer["C_out"] % 16 for layer in off)  # tails
    assert any(len(set(layer["kernel"])) > 1 for layer in off)  # non-square
    assert any(layer["kernel"] == [5, 5] and layer["stride"] == 2 for layer in off)
    assert {layer["groups"] for layer in off} > {1}
    assert any(layer["spatial"][0] >= 4000 and layer["dilation"] > 1 for layer in off)
    for layer in off:  # every one is found by name and is a valid convolution
        assert bench.layer_by_name(layer["name"]) == layer
        d, geo = len(layer["spatial"]), bench._geometry(layer)
        x_shape = (layer["N"], layer["C_in"], *layer["spatial"])
        w_shape = (layer["C_out"], layer["C_in"] // layer["groups"], *layer["kernel"])
        assert min(shapes.conv_geometry(d, x_shape, w_shape, **geo).out_size) > 0


def test_off_suite_per_axis_padding(tmp_path):
    """``--layers`` finds a layer of either suite; a per-axis padding (the 1x7's (0, 3))
    reaches fastconv and PyTorch alike, whose check would otherwise fail."""
    argv = ["--layers", "inception_1x7", "--passes", "backward_input", "--repeat", "1"]
    code, data = _run(tmp_path, argv + ([] if bench.import_torch() else ["--no-torch"]))
    assert code == 0 and [(r["layer"], r["pass"]) for r in data["results"]] == [
        ("inception_1x7", "backward_input")
    ]
    assert bench._geometry(bench.layer_by_name("inception_1x7"))["padding"] == (0, 3)


@pytest.mark.parametrize("use_torch", TORCH)
def test_json_output(tmp_path, capsys, use_torch):
    code, data = _run(tmp_path, [*TINY, "--threads", "1"] + ([] if use_torch else ["--no-torch"]))
    assert code == 0
    assert data["environment"]["threads"] == 1 and data["repeat"] == 1
    assert [(r["layer"], r["pass"]) for r in data["results"]] == ROWS
    for row in data["results"]:
        assert row["dtype"] == "float32" and row["ms"] > 0 and row["gflops"] > 0
        assert ("ratio_to_torch" in row) == use_torch
        if use_torch:
            assert row["ratio_to_torch"] == pytest.approx(row["ms"] / row["torch_ms"])
        nhwc = use_torch and row["layer"] == "lenet_c3" and row["pass"] == "forward"  # 2-D conv forward
        assert ("ratio_to_torch_channels_last" in row) == nhwc
        if nhwc:
            assert row["ratio_to_torch_channels_last"] == pytest.approx(
                row["ms"] / row["torch_channels_last_ms"]
            )
    printed = capsys.readouterr().out
    assert all(f"{layer:<16}{pass_:<17}" in printed for layer, pass_ in ROWS)


@pytest.mark.parametrize("use_torch", TORCH)
def test_wrong_kernel_is_not_timed(tmp_path, monkeypatch, capsys, use_torch):
    real = fastconv.conv2d_backward_weight
    monkeypatch.setattr(fastconv, "conv2d_backward_weight", lambda *a, **k: real(*a, **k) * 1.01)
    argv = ["--layers", "lenet_c3", "--passes", "backward_weight", "--repeat", "1"]
    code, data = _run(tmp_path, argv + ([] if use_torch else ["--no-torch"]))
    assert code == 1
    [row] = data["results"]
    assert "error" in row and "ms" not in row
    assert "WRONG RESULT, not timed" in capsys.readouterr().out


def test_pass_filter_and_float64(tmp_path):
    argv = ["--layers", "global_avgpool,lenet_c3", "--passes", "backward_weight", "--dtype", "float64"]
    code, data = _run(tmp_path, [*argv, "--repeat", "1", "--no-torch"])
    assert code == 0  # pooling has no weight, so only lenet_c3 runs
    assert [(r["layer"], r["pass"], r["dtype"]) for r in data["results"]] == [
        ("lenet_c3", "backward_weight", "float64")
    ]


@pytest.mark.parametrize("argv", [["--layers", "nope"], ["--passes", "sideways"], ["--suite", "other"]])
def test_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        bench.main(argv)
    assert info.value.code == 2
    assert repr(argv[1]) in capsys.readouterr().err


def test_command_line():
    argv = ["bench", "--layers", "global_avgpool", "--passes", "forward", "--repeat", "1", "--no-torch"]
    result = subprocess.run([sys.executable, "-m", "fastconv", *argv], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "global_avgpool  forward" in result.stdout


def test_paired_timings_alternate_calls():
    """fastconv and PyTorch are timed in turns (a burst of load slows both)."""
    calls = []
    times = bench.median_times(
        [lambda: calls.append("a"), lambda: calls.append("b")], repeat=3, warmup=1, settle=0
    )
    assert calls == ["a", "b"] * 4
    assert len(times) == 2 and all(t >= 0 for t in times)


def test_each_turn_settles_before_its_timed_call():
    """A turn runs its function untimed for ``settle`` seconds, then times one call: in two
    rounds of two 1 ms functions with settle = 5 ms, each turn is a block of calls (at least
    one untimed) whose timed, last call starts at least 5 ms after the turn began (after the
    previous turn's last call ended), however slowly a loaded machine sleeps."""
    calls = []

    def make(name):
        def fn():
            start = time.perf_counter()
            time.sleep(0.001)
            calls.append((name, start, time.perf_counter()))

        return fn

    origin = time.perf_counter()
    times = bench.median_times([make("a"), make("b")], repeat=2, warmup=0, settle=0.005)
    blocks = [list(g) for _, g in itertools.groupby(calls, key=lambda call: call[0])]
    assert [b[0][0] for b in blocks] == ["a", "b", "a", "b"]
    for block in blocks:
        assert len(block) >= 2
        assert block[-1][1] - origin >= 0.005
        origin = block[-1][2]
    assert all(t >= 0.001 for t in times)
