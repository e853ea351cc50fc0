"""`trm-fast bench` on the CPU: the tiny config, the reference backends, rows as ../shared/BENCH.md defines
them, the table and the PNG; bad arguments give one clear error."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from trm_fast.bench import configs
from trm_fast.bench.flops import step_bytes, step_flops
from trm_fast.bench.report import format_table, speedups
from trm_fast.cli.main import main

# the foundation schema (../shared/BENCH.md), then what trm-fast bench adds
ROW_FIELDS = {"config", "mode", "backend", "batch", "seq", "steps", "ms", "ms_min", "ms_max", "warmup_s", "peak_gib",
              "gflop", "tflops", "floor_ms", "puzzles_per_s", "device", "torch", "triton", "commit", "date"}
ADDED = {"ms_iqr", "reps", "first_call_s", "gbyte", "tb_per_s", "samples_per_s", "compute_frac", "bandwidth_frac"}
TYPES = {"config": str, "mode": str, "backend": str, "batch": int, "seq": int, "steps": int, "ms": float,
         "ms_min": float, "ms_max": float, "ms_iqr": float, "warmup_s": float, "gflop": float, "tflops": float,
         "gbyte": float, "tb_per_s": float, "reps": int, "device": str, "commit": str, "date": str}


def _bench(tmp_path, *args):
    out = tmp_path / "rows.json"
    code = main(["bench", "tiny", "--device", "cpu", "--reps", "1", "--warmup", "1", "--json", str(out),
                 "--commit", "abc123", *args])
    return code, [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_tiny_rows_follow_the_schema(tmp_path, capsys):
    code, rows = _bench(tmp_path, "--backend", "reference-eager", "--batch", "1,3")
    assert code == 0
    assert [(r["mode"], r["batch"]) for r in rows] == [("train", 1), ("infer", 1), ("train", 3), ("infer", 3)]
    for r in rows:
        assert ROW_FIELDS | ADDED <= set(r), (ROW_FIELDS | ADDED) - set(r)
        for key, kind in TYPES.items():
            assert isinstance(r[key], kind), (key, r[key])
        assert r["commit"] == "abc123" and r["device"] == "cpu" and r["peak_gib"] is None
        assert r["floor_ms"] is None and r["compute_frac"] is None  # no ceilings on a CPU
        assert r["ms_min"] <= r["ms"] <= r["ms_max"] and math.isclose(r["tflops"], r["gflop"] / r["ms"])
        assert math.isclose(r["tb_per_s"], r["gbyte"] / r["ms"])
        assert r["steps"] == (1 if r["mode"] == "train" else 4) and r["seq"] == 81 + 1
    infer, train = rows[1], rows[0]
    assert math.isclose(infer["puzzles_per_s"], 1 / (infer["ms"] / 1000)) and infer["samples_per_s"] is None
    assert math.isclose(train["samples_per_s"], 1 / (train["ms"] / 1000)) and train["puzzles_per_s"] is None
    out = capsys.readouterr().out
    assert "tiny train b1 reference-eager:" in out  # a line per row while measuring
    assert "vs compile" in out and "appended 4 rows" in out  # then the table
    png = tmp_path / "rows.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_both_reference_backends_side_by_side(tmp_path):
    code, rows = _bench(tmp_path, "--mode", "infer", "--backend", "reference-eager,reference-compile",
                        "--png", str(tmp_path / "plot.png"))
    assert code == 0 and [r["backend"] for r in rows] == ["reference-eager", "reference-compile"]
    assert rows[0]["batch"] == rows[1]["batch"] == 8  # the config's batch
    assert (tmp_path / "plot.png").stat().st_size > 1000
    table = format_table(rows).splitlines()
    assert table[-1].split()[-1] == "1.00"  # reference-compile against itself


def test_engine_rows_beside_the_reference(tmp_path):
    code, rows = _bench(tmp_path, "--backend", "engine,reference-eager", "--no-png")
    assert code == 0 and [(r["mode"], r["backend"]) for r in rows] == [
        ("train", "engine"), ("train", "reference-eager"), ("infer", "engine"), ("infer", "reference-eager")]
    assert "trm_fast.Engine" in rows[2]["note"] and "trainer" in rows[0]["note"]
    assert rows[2]["puzzles_per_s"] > 0 and rows[2]["steps"] == 4


@pytest.mark.parametrize("flag, mode, label", [(["--recompute"], True, "engine+recompute"),
                                               (["--recompute", "mlp"], "mlp", "engine+recompute=mlp")])
def test_recompute_applies_to_the_engines_training_step_only(tmp_path, capsys, monkeypatch, flag, mode, label):
    built = []
    original = configs.BenchConfig.build

    def spy(self, batch, backend, recompute=False):
        built.append(recompute)
        return original(self, batch, backend, recompute)
    monkeypatch.setattr(configs.BenchConfig, "build", spy)
    code, rows = _bench(tmp_path, "--backend", "engine,reference-eager", *flag, "--mode", "train")
    assert code == 0
    assert [(r["backend"], r.get("recompute")) for r in rows] == [("engine", mode), ("reference-eager", None)]
    assert built == [False, mode, False]  # the shared weights, the engine's model, the reference's
    assert f"tiny train b8 {label}:" in capsys.readouterr().out


def test_an_unknown_recompute_mode_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _bench(tmp_path, "--recompute", "attention", "--mode", "train")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--recompute: invalid choice: 'attention'" in err and "mlp" in err


def test_speedup_and_table_from_rows():
    row = dict(config="c", mode="infer", batch=4, seq=97, steps=16, ms_min=1.0, ms_max=3.0, ms_iqr=0.5, warmup_s=1.0,
               peak_gib=1.0, tflops=1.0, puzzles_per_s=1.0, samples_per_s=None, compute_frac=0.5,
               bandwidth_frac=0.25, floor_ms=1.0)
    rows = [dict(row, backend="reference-compile", ms=3.0), dict(row, backend="fused", ms=2.0),
            dict(row, backend="reference-eager", error="RuntimeError: boom")]
    assert speedups(rows) == {("c", "infer", 4): 1.5}
    table = format_table(rows)
    assert "1.50" in table and "FAILED reference-eager" not in table
    assert "FAILED c infer b4 reference-eager: RuntimeError: boom" in table


def test_flop_count_matches_the_official_flop_counter():
    # torch.utils.flop_counter on the official model (../shared/baseline/official_h100.json)
    for name, per_step_infer, per_train in [("sudoku_attn", 28.577760256, 47.765947392),
                                            ("sudoku_mlpt", 25.6324864, 42.722270208),
                                            ("arc_attn", 238.859503616, 406.706116608),
                                            ("sudoku_hrm", 13.744807936, 36.709138432)]:
        bc = configs.load(name)
        cfg, hrm = bc.build(1, "reference").config, bc.kind == "hrm"
        assert math.isclose(step_flops(cfg, hrm, 1, False, hrm) / 1e9, per_step_infer, rel_tol=2e-3), name
        assert math.isclose(step_flops(cfg, hrm, 1, True, hrm) / 1e9, per_train, rel_tol=2e-3), name


def test_train_floor_times_the_backward_at_its_own_rates():
    # the backward's FLOPs at the backward GEMMs' rates: MLP-t's forward reduces over 97 positions and ran
    # slower than its backward, so timing every FLOP at the forward's rate put its floor above both rows
    from trm_fast.bench import ceilings, harness
    from trm_fast.bench.flops import layer_flops, step_flops_split

    cfg = configs.load("sudoku_mlpt").build(1, "reference").config
    forward, backward = step_flops_split(cfg, False, 768, True, False)
    assert math.isclose(forward + backward, step_flops(cfg, False, 768, True, False))
    assert step_flops_split(cfg, False, 768, False, False)[1] == 0
    assert len(ceilings.backward_gemm_shapes(cfg, 768)) == 2 * len(ceilings.gemm_shapes(cfg, 768))
    assert (768 * 512, 97, 1024) in ceilings.gemm_shapes(cfg, 768)  # MLP-t's gate/up, K = positions
    assert (97, 768 * 512, 1024) in ceilings.backward_gemm_shapes(cfg, 768)  # its weight gradient
    ceil = dict(layer_floor_ms=1.0, layer_backward_floor_ms=1.0)
    fwd_units, bwd_units = forward / (768 * layer_flops(cfg)), backward / (768 * layer_flops(cfg, backward=True))
    assert math.isclose(harness._floor_ms(cfg, 768, forward, backward, ceil), fwd_units + bwd_units)
    ceil["layer_backward_floor_ms"] = 0.5
    assert math.isclose(harness._floor_ms(cfg, 768, forward, backward, ceil), fwd_units + bwd_units / 2)


def test_byte_count_of_sudoku_attn():
    # bench/NOTES.md: 42 block applications per ACT step, each 18 S D + 6 S I bf16 elements at S 97, D 512, I 1536
    cfg = configs.load("sudoku_attn").build(1, "reference").config
    per_block = (18 * 97 * 512 + 6 * 97 * 1536) * 2
    assert step_bytes(cfg, False, 768, False, False, 0) == 768 * 42 * per_block
    train = step_bytes(cfg, False, 768, True, False, 7_000_000)
    assert train == 768 * (42 + 2 * 14) * per_block + 28 * 7_000_000


def test_named_configs_have_the_papers_shapes():
    seqs = {"sudoku_attn": 97, "sudoku_mlpt": 97, "arc_attn": 916, "sudoku_hrm": 82, "tiny": 82}
    for name, seq in seqs.items():
        bc = configs.load(name)
        model = bc.build(1, "reference")
        assert model.config.full_seq_len == seq, name
        assert type(model).__name__ == ("HRM" if name == "sudoku_hrm" else "TRM")


def test_a_yaml_config_takes_its_shape(tmp_path):
    bc = configs.load("sudoku_att", configs.parse_shape("seq_len=81,vocab_size=11,num_puzzle_identifiers=5"))
    assert bc.name == "sudoku_att" and bc.arch["num_puzzle_identifiers"] == 5
    with pytest.raises(ValueError, match="is not built here.*--shape"):
        configs.load("sudoku_att")  # no dataset on this machine, no shape
    with pytest.raises(ValueError, match="missing vocab_size"):
        configs.parse_shape("seq_len=81,num_puzzle_identifiers=1")


@pytest.mark.parametrize("args, message", [
    (["bench", "huge", "--device", "cpu"], "unknown config 'huge'"),
    (["bench", "tiny", "--device", "cpu", "--backend", "fused"], "backend 'fused' needs a CUDA device"),
    (["bench", "tiny", "--device", "cpu", "--backend", "fast"], "unknown backend 'fast'"),
    (["bench", "tiny", "--device", "cpu", "--backend", "reference-graphs"], "needs a CUDA device"),
    (["bench", "tiny", "--device", "cpu", "--mode", "serve"], "unknown mode 'serve'"),
    (["bench", "tiny", "--device", "cpu", "--reps", "0"], "--reps and --warmup must be >= 1"),
    (["bench", "tiny", "--device", "cpu", "--shape", "seq_len=x"], "--shape takes"),
])
def test_bad_arguments_are_named(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("batch, message", [("0", "--batch sizes must be >= 1"), ("1,x", "comma list of integers")])
def test_bad_batch_is_refused_by_the_parser(batch, message, capsys):
    with pytest.raises(SystemExit):
        main(["bench", "tiny", "--device", "cpu", "--batch", batch])
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the micro-benchmarks run: `pytest bench/`")
def test_kernel_microbenchmarks_collect_and_skip_without_a_gpu():
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "pytest", "bench", "-q", "-p", "no:cacheprovider"], cwd=repo,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # every case collected and skipped with the reason, none run (the summary line counts skips alone)
    assert re.search(r"^\d+ skipped in ", done.stdout, re.M) and "no CUDA device is visible" in done.stdout


def test_bench_warns_about_noisy_rows_and_draws_their_spread(tmp_path, monkeypatch, capsys):
    from trm_fast.bench import harness

    def rows(bc, modes, backends, batches, *args, **kwargs):
        return [dict(config="tiny", mode="infer", backend=backend, batch=batch, ms=10.0, ms_min=6.0, ms_max=19.0,
                     ms_iqr=iqr, warmup_s=0.1, tflops=0.1, puzzles_per_s=batch / 0.01)
                for batch in batches for backend, iqr in (("reference-eager", 4.0), ("reference-compile", 1.0))]
    monkeypatch.setattr(harness, "run", rows)
    for batch in ("8", "1,8"):  # bars, then lines
        png = tmp_path / f"{batch}.png"
        assert main(["bench", "tiny", "--device", "cpu", "--mode", "infer", "--batch", batch, "--png", str(png)]) == 0
        warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
        assert len(warnings) == len(batch.split(","))  # reference-eager's rows; 10% is no warning
        assert warnings[0].startswith("trm-fast bench: warning: tiny infer b") and "reference-eager: the repeats " \
            "spread 40% of their median (IQR 4 ms of 10 ms)" in warnings[0]
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_bench_warns_about_a_row_that_beats_its_floor(monkeypatch, capsys):
    # a floor is what nothing can beat without doing less work: a row under it says the floor is wrong
    from trm_fast.bench import harness

    def rows(bc, modes, backends, batches, *args, **kwargs):
        return [dict(config="tiny", mode="infer", backend=backend, batch=1, ms=ms, ms_iqr=0.0, floor_ms=10.0)
                for backend, ms in (("reference-eager", 9.5), ("reference-compile", 10.0))]
    monkeypatch.setattr(harness, "run", rows)
    assert main(["bench", "tiny", "--device", "cpu", "--mode", "infer", "--batch", "1", "--no-png"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == ["trm-fast bench: warning: tiny infer b1 reference-eager: 9.5 ms beats its floor of 10 ms: "
                        "the floor is wrong (trm_fast/bench/ceilings.py), and so is every x floor of this run"]


def test_train_fit_finds_the_largest_batch_within_one_percent(monkeypatch):
    # bench/train_fit.py's search, on a stand-in for the GPU: batches up to 1,234 rows fit
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "train_fit.py"
    spec = importlib.util.spec_from_file_location("train_fit", path)
    fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit)
    tried = []
    monkeypatch.setattr(fit, "fits", lambda bc, batch, *rest: tried.append(batch) or batch <= 1234)
    lo, hi, trials = fit.largest(None, "auto", False, None, start=192)
    assert lo <= 1234 < hi and hi - lo <= max(1, lo // 100) and trials == len(tried)
    lo, hi, _ = fit.largest(None, "auto", False, None, start=2000)  # the first batch tried already fails
    assert 0.99 * 1234 <= lo <= 1234 < hi


def test_engine_ops_lists_the_longest_kernels_of_a_profiled_solve():
    # bench/engine_ops.py --kernels, on a CPU: the ops' own times stand in for kernels
    import importlib.util

    from trm_fast.bench import configs, harness

    path = Path(__file__).resolve().parents[1] / "bench" / "engine_ops.py"
    spec = importlib.util.spec_from_file_location("engine_ops", path)
    engine_ops = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(engine_ops)
    bc = configs.load("tiny")
    model = bc.build(3, "reference").eval()
    inputs = harness.make_batch(model.config, 3, torch.device("cpu"))
    found = engine_ops.kernels(model, 3, "reference", inputs, top=4)
    top = found["kernels_top"]
    assert len(top) == 4 and all(k["us"] > 0 and k["calls"] > 0 for k in top)
    assert [k["us"] for k in top] == sorted((k["us"] for k in top), reverse=True)
    assert found["kernels_us"] >= sum(k["us"] for k in top) - 0.5


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the script runs: bench/fused_bench.sh")
@pytest.mark.parametrize("script", ["gemm_tiles.py", "ncu_kernels.py", "sanitize_triton.py"])
def test_kernel_probes_say_they_need_a_gpu(script):
    repo = Path(__file__).resolve().parents[1]
    args = {"ncu_kernels.py": ["fused", "linear_swiglu forward"], "sanitize_triton.py": ["swiglu"]}.get(script, [])
    done = subprocess.run([sys.executable, str(repo / "bench" / script), *args], cwd=repo, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode in (1, 2) and "needs a CUDA device; none is visible" in done.stderr, done.stderr


def test_sanitize_triton_names_an_unknown_kernel():
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(repo / "bench" / "sanitize_triton.py"), "swiglu", "linear_swigl"],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "unknown kernel ['linear_swigl']; choose from" in done.stderr, done.stderr


def test_kernel_resources_compiles_every_kernel_for_hopper_without_a_gpu():
    # Triton compiles for sm_90a on any machine: each kernel's first config, its signature built from the
    # argument names, so a kernel whose arguments change without the script is caught here
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the tile lists of a real GPU
    done = subprocess.run([sys.executable, str(repo / "bench" / "kernel_resources.py"), "--first", "1"], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip() and not line.startswith("#")]
    assert {line.split()[0] for line in lines} >= {"linear_swiglu_tma", "linear_swiglu_pointer", "linear_rope",
                                                    "rope_attention", "rope_attention_tma"}, done.stdout
    for line in lines:
        assert "failed" not in line and re.search(r" \d+ regs +\d+ B spill +[\d.]+ KiB shared +\d+ per SM$", line), line


def test_kernel_resources_counts_what_the_sass_holds(tmp_path):
    # --sass on a listing as cuobjdump prints one: a loop of four instructions (a backward branch to 0x0010) and
    # a predicated HGMMA; --set overrides a constexpr, and refuses what is not KEY=VALUE
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "kernel_resources", Path(__file__).resolve().parents[1] / "bench" / "kernel_resources.py")
    kernel_resources = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernel_resources)

    listing = """
        /*0000*/                   LDGSTS.E.BYPASS.128 [R1], desc[UR4][R2.64] ;
        /*0010*/                   MEMBAR.ALL.CTA ;
        /*0020*/              @!P0 HGMMA.64x64x16.F32.BF16 R24, gdesc[UR8], R24 ;
        /*0030*/                   UTMALDG.2D [UR8], [UR4] ;
        /*0040*/              @P1  BRA 0x10 ;
        /*0050*/                   EXIT ;
    """
    assert kernel_resources.sass_counts(listing) == dict(instructions=6, longest_loop=4, HGMMA=1, LDGSTS=1, UTMALDG=1,
                                                         MEMBAR=1)
    with pytest.raises(SystemExit):
        kernel_resources.main(["small_layer", "--set", "PHASE"])


def test_byte_count_of_sudoku_mlpt():
    # MLP-t's token mix is one kernel that reads h and writes y (kernels/token_mix.py): 2 S D beside the channel
    # MLP's 5 S D + 6 S I
    cfg = configs.load("sudoku_mlpt").build(1, "reference").config
    per_block = (7 * 97 * 512 + 6 * 97 * 1536) * 2
    assert step_bytes(cfg, False, 768, False, False, 0) == 768 * 42 * per_block


def test_token_mix_floor_counts_at_the_best_rate_of_the_other_gemms(monkeypatch):
    # MLP-t's token mix is one kernel that writes none of what cuBLAS's GEMMs at its shapes write: its forward
    # FLOPs count at the fastest rate measured at the channel MLP's shapes, which alone are timed forward
    from trm_fast.bench import ceilings

    cfg = configs.load("sudoku_mlpt").build(1, "reference").config
    rates = {(768 * 97, 512, 3072): 500.0, (768 * 97, 1536, 512): 600.0}
    timed = []

    def fake_gemm(m, k, n, device):
        timed.append((m, k, n))
        return rates.get((m, k, n), 100.0)
    monkeypatch.setattr(ceilings, "measure_gemm", fake_gemm)
    monkeypatch.setattr(ceilings, "measure_copy", lambda device: 4.0)
    got = ceilings.measure(cfg, 768, "cuda")
    assert timed == list(rates)
    channel = sum(2 * m * k * n / (rate * 1e12) for (m, k, n), rate in rates.items())
    mix = sum(2 * m * k * n for m, k, n in ceilings.token_mix_shapes(cfg, 768)) / (600.0 * 1e12)
    assert math.isclose(got["layer_floor_ms"], (channel + mix) * 1e3)
    assert ceilings.token_mix_shapes(configs.load("sudoku_attn").build(1, "reference").config, 768) == []


def _fake_ceilings(monkeypatch, l2_tb_per_s=5.0):
    """Rates that grow with the rows (cuBLAS at M = 97 is slow), a copy and an L2 copy, each call recorded."""
    from trm_fast.bench import ceilings

    calls = []

    def gemm(m, k, n, device):
        calls.append(("gemm", m, k, n))
        return 50.0 if m < 10_000 else 600.0

    def attention(batch, heads, seq, head_dim, device):
        calls.append(("attention", batch))
        return 5.0 if batch < 100 else 300.0

    def l2_copy(device):
        calls.append(("l2",))
        return l2_tb_per_s
    monkeypatch.setattr(ceilings, "measure_gemm", gemm)
    monkeypatch.setattr(ceilings, "measure_attention", attention)
    monkeypatch.setattr(ceilings, "measure_copy", lambda device: 4.0)
    monkeypatch.setattr(ceilings, "measure_l2_copy", l2_copy)
    return ceilings, calls


def test_small_batch_floor_is_the_latency_model_where_that_is_lower(monkeypatch):
    # at batch 1 a persistent kernel can beat back-to-back library calls: the floor is the lower of the library
    # floor and the latency model (the layer's weights once from L2, or its FLOPs at the rates of a batch whose
    # rows fill the GPU, whichever is longer)
    ceilings, calls = _fake_ceilings(monkeypatch)
    cfg = configs.load("sudoku_attn").build(1, "reference").config
    full = ceilings.full_batch(cfg, 1)
    assert full == 676 and full * 97 >= ceilings.FULL_ROWS > (full - 1) * 97
    got = ceilings.measure(cfg, 1, "cuda")
    shapes = [(97, 512, 3072), (97, 1536, 512), (97, 512, 1536), (97, 512, 512)]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    attn_flops = 4 * 97 * 97 * 512
    library = flops / 50e12 + attn_flops / 5e12
    weights = sum(k * n * 2 for _, k, n in shapes)
    latency = max(weights / 5e12, flops / 600e12 + attn_flops / 300e12)
    assert math.isclose(got["layer_library_floor_ms"], library * 1e3)
    assert math.isclose(got["layer_latency_floor_ms"], latency * 1e3)
    assert math.isclose(got["layer_floor_ms"], latency * 1e3) and latency < library
    assert got["l2_copy_tb_per_s"] == 5.0 and got["attention_tflops_latency_model"] == 300.0
    assert ("gemm", full * 97, 512, 3072) in calls and ("attention", full) in calls
    assert [g["kind"] for g in got["gemm"]] == ["gemm"] * 4 + ["gemm, latency model"] * 4


def test_latency_model_never_raises_the_floor(monkeypatch):
    # an L2 so slow that reading the weights takes longer than the library calls: the library floor stands
    ceilings, _ = _fake_ceilings(monkeypatch, l2_tb_per_s=1e-4)
    cfg = configs.load("sudoku_attn").build(1, "reference").config
    got = ceilings.measure(cfg, 1, "cuda")
    assert got["layer_latency_floor_ms"] > got["layer_library_floor_ms"] == got["layer_floor_ms"]


def test_batches_that_fill_the_gpu_keep_the_library_floor_alone(monkeypatch):
    ceilings, calls = _fake_ceilings(monkeypatch)
    for name, batch in (("sudoku_attn", 768), ("arc_attn", 72)):
        cfg = configs.load(name).build(1, "reference").config
        got = ceilings.measure(cfg, batch, "cuda")
        assert ceilings.full_batch(cfg, batch) == batch
        assert got["layer_floor_ms"] == got["layer_library_floor_ms"] and "layer_latency_floor_ms" not in got
    assert ("l2",) not in calls


def test_small_batch_floor_of_mlpt_counts_its_token_mix_weights(monkeypatch):
    # MLP-t has no attention; its token mix's FLOPs count at the best rate of the channel MLP's GEMMs, its
    # weights (97 x 2 I_t and I_t x 97) among the layer's
    ceilings, _ = _fake_ceilings(monkeypatch, l2_tb_per_s=1e-3)
    cfg = configs.load("sudoku_mlpt").build(1, "reference").config
    got = ceilings.measure(cfg, 1, "cuda")
    weights = sum(k * n * 2 for _, k, n in ceilings.gemm_shapes(cfg, 1))
    assert math.isclose(got["layer_latency_floor_ms"], weights / 1e-3 / 1e12 * 1e3)
    assert "attention_tflops_latency_model" not in got
