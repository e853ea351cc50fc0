"""`trm-fast profile` on the CPU: every recursion level named and every op attributed to its stage, the
table, trace, kernels.json and roofline written; the Nsight Compute wrapper's parsing and its errors."""

import gzip
import json
import os
import stat
from collections import Counter

import pytest
import torch
from trm_fast.bench import configs
from trm_fast.cli.main import main
from trm_fast.profile import kernels, ncu
from trm_fast.profile.runner import build_unit
from trm_fast.profile.stages import Marker, stage

SDPA = "aten::_scaled_dot_product_flash_attention_for_cpu"


def _attention_calls_by_stage(mode, bc=None, backend="reference-eager"):
    bc = bc or configs.load("tiny")  # H_cycles 2, L_cycles 2, L_layers 2
    model, unit = build_unit(bc, mode, backend, 3, torch.device("cpu"), False, Marker(nvtx=False))
    unit()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        unit()
    records = kernels.collect(prof.events(), on_gpu=False)
    return Counter(" > ".join(k.stage) for k in records if k.name.startswith(SDPA)), records


def test_train_step_stages_follow_the_recursion():
    counts, records = _attention_calls_by_stage("train")
    # per ACT step: 2 H cycles of (2 z updates + 1 y update) x 2 layers; only the last cycle has gradients
    assert counts == {
        "forward > no-grad cycles > z updates (L cycles) > attention": 4,
        "forward > no-grad cycles > y update > attention": 2,
        "forward > grad cycle > z updates (L cycles) > attention": 4,
        "forward > grad cycle > y update > attention": 2,
        "backward > grad cycle > z updates (L cycles) > attention": 4,
        "backward > grad cycle > y update > attention": 2,
    }
    stages = {k.stage for k in records}
    for expected in [("forward", "embedding"), ("forward", "heads"), ("optimizer",),
                     ("forward", "grad cycle", "y update", "projection + add + RMSNorm"),
                     ("forward", "grad cycle", "y update", "mlp")]:
        assert expected in stages, expected
    mm = [k for k in records if k.op == "aten::mm" and k.stage[-1] == "mlp"]
    assert mm and all(k.counted_flops and k.flops > 0 and k.bytes > 0 for k in mm)


@pytest.mark.parametrize("backend", ["reference-eager", "engine"])
def test_evaluation_stages_have_no_backward(backend):
    counts, _ = _attention_calls_by_stage("infer", backend=backend)
    # 4 ACT steps (the tiny config's halt_max_steps), all without gradients
    assert counts == {"no-grad cycles > z updates (L cycles) > attention": 4 * 8,
                      "no-grad cycles > y update > attention": 4 * 4}


def test_hrm_stages_follow_its_two_levels():
    tiny = configs.load("tiny")
    arch = {k: v for k, v in tiny.arch.items() if k not in ("no_ACT_continue", "puzzle_emb_len", "mlp_t")}
    bc = configs.BenchConfig("tiny_hrm", "hrm", dict(arch, H_layers=1, L_layers=1), tiny.loss_type, 3)
    counts, records = _attention_calls_by_stage("train", bc)
    # H_cycles 2, L_cycles 2: L L H L | L H, the last L and H with gradients; then HRM's Q-continue target pass
    assert counts == {
        "forward > no-grad cycles > L level > attention": 3,
        "forward > no-grad cycles > H level > attention": 1,
        "forward > grad cycle > L level > attention": 1,
        "forward > grad cycle > H level > attention": 1,
        "forward > Q-continue target > no-grad cycles > L level > attention": 4,
        "forward > Q-continue target > no-grad cycles > H level > attention": 2,
        "backward > grad cycle > L level > attention": 1,
        "backward > grad cycle > H level > attention": 1,
    }


def test_stage_names():
    assert stage(["unit 0", "forward", "act_step", "core", "H_cycle 1/3", "L_cycle 2 no_grad", "layer 0"]) == (
        "forward", "no-grad cycles", "z updates (L cycles)", "projection + add + RMSNorm")
    assert stage(["act_step", "q_target", "H_cycle 2/2", "H_level no_grad"]) == (
        "Q-continue target", "no-grad cycles", "H level", "input injection")


def test_matmul_cost_from_shapes():
    class Evt:
        name, input_shapes, input_dtypes = "aten::mm", [[6, 4], [4, 5]], ["c10::BFloat16", "c10::BFloat16"]
    flops, nbytes, counted = kernels.op_cost(Evt)
    assert (flops, nbytes, counted) == (2 * 6 * 4 * 5, (24 + 20 + 30) * 2, True)


def test_profile_command_writes_its_outputs(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["profile", "tiny", "--device", "cpu", "--steps", "1", "--warmup", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tiny train batch 8 engine: CPU ops" in text and "kind of kernel" in text
    assert "forward > grad cycle > z updates (L cycles) > attention" in text
    assert (out / "roofline.png").read_bytes()[:4] == b"\x89PNG"
    trace = json.loads(gzip.open(out / "trace.json.gz").read())
    assert any(e.get("name") == "trm:act_step" for e in trace["traceEvents"])
    summary = json.loads((out / "kernels.json").read_text())
    assert summary["config"] == "tiny" and summary["kernels"][0]["us"] > 0 and "stage" in summary["kernels"][0]
    assert (out / "profile.txt").read_text().startswith("tiny train batch 8")


@pytest.mark.parametrize("args, message", [
    (["profile", "huge", "--device", "cpu"], "unknown config 'huge'"),
    (["profile", "tiny", "--device", "cpu", "--backend", "fused"], "backend 'fused' needs a CUDA device"),
    (["profile", "tiny", "--device", "cpu", "--backend", "reference-graphs"], "needs a CUDA device"),
    (["profile", "tiny", "--device", "cpu", "--batch", "0"], "--batch must be >= 1"),
    (["profile", "tiny", "--device", "cpu", "--steps", "0"], "--steps must be >= 1"),
    (["profile", "tiny", "--device", "cpu", "--ncu", "gemm"], "--ncu profiles GPU kernels and needs a CUDA device"),
])
def test_bad_arguments_are_named(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


NCU_CSV = '''==PROF== Connected to process 1
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","dram__throughput.avg.pct_of_peak_sustained_elapsed","gpu__time_duration.sum","sm__warps_active.avg.pct_of_peak_sustained_active"
"","","","","","","","","","","","%","usecond","%"
"0","1","python3","h","void swiglu_fwd<bf16>(int)","1","7","(128, 1, 1)","(1, 1, 1)","0","9.0","91.5","229.5","60.25"
"1","1","python3","h","void swiglu_fwd<bf16>(int)","1","7","(128, 1, 1)","(1, 1, 1)","0","9.0","88.5","230.5","59.75"
"2","1","python3","h","nvjet_hsh_128x256","1","7","(384, 1, 1)","(132, 1, 1)","0","9.0","30.0","1,000.0","12.5"
'''


def test_ncu_csv_is_summarised_per_kernel():
    rows = ncu.parse_csv(NCU_CSV)
    assert len(rows) == 3 and rows[0]["gpu__time_duration.sum"] == 229.5
    text = ncu.summarise(rows, kernels.short_name).splitlines()
    assert text[1].split()[:2] == ["nvjet_hsh_128x256", "1"]  # the longest first
    assert text[2].split() == ["swiglu_fwd", "2", "230.0", "60.0", "90.0"]


def _fake_ncu(tmp_path, monkeypatch, script):
    path = tmp_path / "bin" / "ncu"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{path.parent}{os.pathsep}{os.environ['PATH']}")


def test_ncu_wrapper_runs_the_child_and_reads_its_csv(tmp_path, monkeypatch):
    csv_file = tmp_path / "canned.csv"
    csv_file.write_text(NCU_CSV)
    _fake_ncu(tmp_path, monkeypatch, f'echo "$@" > {tmp_path}/argv; cat {csv_file}\n')
    text = ncu.run("swiglu", ["tiny"], 5, str(tmp_path), kernels.short_name, log=lambda line: None)
    argv = (tmp_path / "argv").read_text()
    assert "-k regex:swiglu -c 5" in argv and "--nvtx-include trm:profiled/" in argv and "--ncu-child" in argv
    assert "swiglu_fwd" in text and (tmp_path / "ncu.txt").exists()


@pytest.mark.parametrize("output, message", [
    ("==ERROR== ERR_NVGPUCTRPERM - The user does not have permission", "NVreg_RestrictProfilingToAdminUsers=0"),
    ("==ERROR== Failed to initialize the profiler: LibraryNotLoaded", "counters are not reachable"),
    ("==WARNING== No kernels were profiled.", "matched none"),
])
def test_ncu_failures_are_explained(tmp_path, monkeypatch, output, message):
    _fake_ncu(tmp_path, monkeypatch, f'echo "{output}" >&2; exit 1\n')
    with pytest.raises(ncu.NcuUnavailable, match=message):
        ncu.run("gemm", ["tiny"], 5, str(tmp_path), kernels.short_name, log=lambda line: None)


def test_missing_ncu_is_explained(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ncu.NcuUnavailable, match="not on PATH"):
        ncu.find_ncu()


def test_cost_without_recorded_dtypes_takes_the_model_dtype():
    class Evt:  # torch 2.11 records shapes but no dtypes
        name, input_shapes = "aten::mm", [[6, 4], [4, 5]]
    assert kernels.op_cost(Evt, 2) == (240.0, (24 + 20 + 30) * 2, True)


def test_a_kernel_is_counted_once_on_a_gpu():
    from types import SimpleNamespace as NS

    kernel = NS(name="nvjet_sm90_tst", device=0, duration=5.0)
    op = NS(name="aten::mm", kernels=[kernel], cpu_parent=None, sequence_nr=-1, input_shapes=[[6, 4], [4, 5]])
    # the profiler also hangs the kernel on CUPTI's bookkeeping and on the runtime call under the op
    noise = [NS(name=n, kernels=[kernel], cpu_parent=op, sequence_nr=-1, input_shapes=[])
             for n in ("Activity Buffer Request", "Lazy Function Loading", "cudaLaunchKernel", "cuLaunchKernelEx",
                       "Command Buffer Full")]
    records = kernels.collect([op, *noise], on_gpu=True)
    assert [(k.name, k.op, k.us, k.flops) for k in records] == [("nvjet_sm90_tst", "aten::mm", 5.0, 240.0)]


@pytest.mark.parametrize("name, q, k", [
    ("aten::scaled_dot_product_attention", [2, 8, 97, 64], [2, 8, 97, 64]),
    ("aten::_scaled_dot_product_cudnn_attention", [2, 8, 97, 64], [2, 8, 97, 64]),
    ("aten::_flash_attention_forward", [2, 97, 8, 64], [2, 97, 8, 64]),
])
def test_attention_flops_in_either_layout(name, q, k):
    class Evt:
        input_shapes, input_dtypes = [q, k, k], ["c10::BFloat16"] * 3
    Evt.name = name
    assert kernels.op_cost(Evt)[0] == 4 * 2 * 8 * 97 * 97 * 64
    Evt.name = "aten::_cudnn_attention_forward"  # named neither way: the model's head count decides
    assert kernels.op_cost(Evt, heads=8)[0] == 4 * 2 * 8 * 97 * 97 * 64


def test_fused_rope_attention_counts_its_one_qkv_input():
    class Evt:  # qkv (B, S, 3H, D) and the two RoPE tables (S, D) fp32
        name, input_shapes = "trm_fast::rope_attention", [[2, 97, 24, 64], [97, 64], [97, 64]]
        input_dtypes = ["c10::BFloat16", "float", "float"]
    qkv, out, tables = 2 * 97 * 24 * 64 * 2, 2 * 97 * 8 * 64 * 2, 2 * 97 * 64 * 4
    assert kernels.op_cost(Evt, heads=8) == (4 * 2 * 8 * 97 * 97 * 64, qkv + tables + out, True)
    Evt.input_shapes, Evt.input_dtypes = Evt.input_shapes[:1], Evt.input_dtypes[:1]  # no RoPE: no tables
    assert kernels.op_cost(Evt) == (4 * 2 * 8 * 97 * 97 * 64, qkv + out, True)
    # its Triton kernel is one of trm_fast's, not the library attention, even where its op is not seen
    assert kernels.category(kernels.Kernel("_rope_attention_fwd_kernel", "", (), 1.0)) == "trm_fast kernels"


def test_gemm_epilogue_ops_count_their_gemm():
    class Evt:  # x (B, S, K) and the weight as stored: gate/up (2N, K) writes N columns, qkv (3HD, K) all
        name, input_shapes, input_dtypes = "trm_fast::linear_swiglu", [[2, 97, 512], [3072, 512]], ["c10::BFloat16"] * 2
    rows, read = 2 * 97, (2 * 97 * 512 + 3072 * 512) * 2
    assert kernels.op_cost(Evt) == (2.0 * rows * 512 * 3072, read + rows * 1536 * 2, True)
    Evt.name, Evt.input_shapes = "trm_fast::linear_rope", [[2, 97, 512], [1536, 512], [97, 64], [97, 64]]
    Evt.input_dtypes = ["c10::BFloat16"] * 2 + ["float"] * 2
    read = (2 * 97 * 512 + 1536 * 512) * 2 + 2 * 97 * 64 * 4
    assert kernels.op_cost(Evt) == (2.0 * rows * 512 * 1536, read + rows * 1536 * 2, True)
    # the projection with the residual add and the norm: x, the weight (N, K) and the residual in, N columns out
    Evt.name, Evt.input_shapes = "trm_fast::linear_add_rms_norm", [[2, 97, 1536], [512, 1536], [2, 97, 512]]
    Evt.input_dtypes = ["c10::BFloat16"] * 3
    read = (2 * 97 * 1536 + 512 * 1536 + 2 * 97 * 512) * 2
    assert kernels.op_cost(Evt) == (2.0 * rows * 1536 * 512, read + rows * 512 * 2, True)
    for kernel in ("_linear_swiglu_tma_kernel", "_linear_rope_kernel", "_linear_add_rms_norm_kernel",
                   "_rope_attention_tma_kernel"):
        assert kernels.category(kernels.Kernel(kernel, "", (), 1.0)) == "trm_fast kernels"


def test_matmul_with_an_out_argument():
    class Evt:  # inductor's extern mm: mm(a, b, out=c)
        name, input_shapes = "aten::mm", [[6, 4], [4, 5], [6, 5]]
        input_dtypes = ["c10::BFloat16"] * 3
    assert kernels.op_cost(Evt) == (240.0, (24 + 20 + 30) * 2, True)
    Evt.name, Evt.input_shapes = "aten::addmm", [[5], [6, 4], [4, 5]]
    assert kernels.op_cost(Evt) == (240.0, (24 + 20 + 30 + 5) * 2, True)
