"""The training run: the official pretrain.py loop, resumable step for step.

    total_steps = int(epochs * total_groups * mean_puzzle_examples / global_batch_size)
    for each iteration (eval_interval epochs; all epochs without eval_interval):
        for each batch:  step += 1
            carry, loss = head(carry, batch)             # the ACT carry persists across batches
            backward(loss / global_batch_size); all_reduce(grads)
            lr = cosine_with_warmup(step); SignSGD and AdamATan2 step; EMA update
        evaluate (the EMA weights when ema is on), checkpoint (every eval, or at the end)

A run stops at total_steps; the official loop keeps drawing (and skipping) batches past it until the
iteration ends, which changes nothing but the EMA. Checkpoints also come every `checkpoint_every_steps`.
SIGTERM or SIGINT (a scheduler's preemption, Ctrl-C) stops a one-process run after its current step with
a checkpoint of that step, so `--resume` loses nothing; the exception says which signal it was. (With
several processes the signals act as before: the ranks would first have to agree on a step.)
"""

import contextlib
import copy
import os
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from tqdm import tqdm

from .. import backend, distributed
from ..arch import build_model
from ..checkpoint import load_checkpoint as load_model_checkpoint
from ..data.dataset import PuzzleSplit
from ..disk import check_free_space, make_dirs, remove_dirs
from ..engine import Engine, checkpoints_calls, training_forward
from ..evaluate.arc import ArcVotes, read_arc_files, write_submission
from ..evaluate.runner import evaluate, gather_arc_votes
from ..resources import DeviceOutOfMemory, out_of_memory, out_of_memory_in
from . import checkpoint
from .build import build_optimizers
from .config import TrainConfig, dump_yaml
from .ema import EMA
from .graphed_step import GraphedStep
from .logger import RunLogger
from .profiling import StepProfiler
from .sampler import TrainSampler
from .schedule import cosine_with_warmup

# Changing these makes the saved state meaningless; anything else may change on --resume.
FIXED_ON_RESUME = ("arch", "data_paths", "global_batch_size", "seed")
# ...except these arch keys, which say how the same model runs (so a run out of memory can resume with recompute)
RUNTIME_ARCH_KEYS = ("backend", "recompute")


@dataclass
class Pending:
    """A queued step's metrics, summed over ranks, on their way to the host. On a GPU the copy is queued
    right behind the step, into pinned memory, with an event after it: reading waits for that event only.
    (A plain .tolist() issued once the next step is queued would wait for that step too, the stream being
    in order: the host would then fetch each batch while the GPU idles, 8-10% of an H200 step.)"""
    step: int
    lr: float
    keys: list
    values: torch.Tensor
    done: Optional[torch.cuda.Event] = None

    @classmethod
    def queue(cls, step: int, lr: float, keys: list, values: torch.Tensor) -> "Pending":
        if values.device.type != "cuda":
            return cls(step, lr, keys, values)
        host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        host.copy_(values, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(values.device))
        return cls(step, lr, keys, host, done)

    def read(self) -> list:
        if self.done is not None:
            self.done.synchronize()
        return self.values.tolist()


class Stopped(KeyboardInterrupt):
    """The run stopped on a signal, after a step; `signum` is the signal."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"{signal.Signals(signum).name} after step {step}, checkpoint saved: --resume continues "
                         "from it")
        self.signum = signum


@contextlib.contextmanager
def _signals_noted(enabled: bool, signums=(signal.SIGTERM, signal.SIGINT)):
    """Within: the first of those signals is noted in the yielded list instead of stopping the process; a
    second one interrupts at once (only the main thread takes signals; elsewhere nothing changes)."""
    noted = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum, frame):
        if noted:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: stopped at once")
        noted.append(signum)
    previous = {s: signal.signal(s, note) for s in signums}
    try:
        yield noted
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_directory(config: TrainConfig) -> str:
    """checkpoint_path, or checkpoints/{project}/{run} with the official project name."""
    if config.checkpoint_path:
        return config.checkpoint_path
    dataset = os.path.basename(os.path.normpath(config.data_paths[0]))
    project = config.project_name or f"{dataset.capitalize()}-ACT-torch"
    return os.path.join("checkpoints", project, config.run_name or "run")


class Run:
    def __init__(self, config: TrainConfig, resume: Optional[str] = None, profile_steps: int = 0):
        """`resume`: a checkpoint path, or "latest" for the newest one in the run directory. `profile_steps`:
        profile that many steps after the warm-up (train/profiling.py; rank 0)."""
        self.config, cfg = config, config
        self.proc = proc = distributed.start()
        backend.resolve(cfg.arch.get("backend"), proc.device)  # before any work: fused needs a GPU
        torch.random.manual_seed(cfg.seed + proc.rank)
        if cfg.global_batch_size % proc.world_size:
            raise ValueError(f"global_batch_size ({cfg.global_batch_size}) must be a multiple of the number of "
                             f"processes ({proc.world_size})")
        self.run_dir = run_directory(cfg)

        self.train_split = PuzzleSplit(cfg.data_paths, "train")
        meta = self.train_split.metadata
        self.test_split = PuzzleSplit(cfg.test_paths, "test") if PuzzleSplit.exists(cfg.test_paths, "test") else None
        self.epochs_per_iter = cfg.eval_interval or cfg.epochs
        self.total_iters = cfg.epochs // self.epochs_per_iter
        self.total_steps = int(cfg.epochs * meta.total_groups * meta.mean_puzzle_examples / cfg.global_batch_size)
        if self.total_steps < 1:
            raise ValueError(f"no training step: epochs ({cfg.epochs}) x groups ({meta.total_groups}) x examples "
                             f"per puzzle ({meta.mean_puzzle_examples}) is below global_batch_size "
                             f"({cfg.global_batch_size})")

        self.head, self.model = build_model(cfg.arch, meta, cfg.global_batch_size // proc.world_size, proc.device)
        resume_path = self._resume_path(resume)
        if cfg.load_checkpoint and resume_path is None:  # every rank reads it, so a bad file fails them all
            self._load_weights(cfg.load_checkpoint)
        if proc.world_size > 1:
            distributed.broadcast_module(self.model)
        self.forward = training_forward(self.head, proc.device, cfg.compile)
        self.optimizers, self.base_lrs = build_optimizers(cfg, self.model)
        self.graphed = None  # built at the first step, after a resume has loaded the optimizers' groups
        if cfg.cuda_graph:
            GraphedStep.check(proc.device, proc.world_size, checkpoints_calls(self.model, proc.device))
        self.ema = EMA(self.model, cfg.ema_rate) if cfg.ema else None
        self.sampler = TrainSampler(self.train_split, seed=cfg.seed, global_batch_size=cfg.global_batch_size,
                                    epochs_per_iter=self.epochs_per_iter, rank=proc.rank, world_size=proc.world_size)
        self.arc = self._arc_evaluator()
        self.step, self.iteration, self.evals_done, self.carry = 0, 0, 0, None
        self.engine = self.eval_model = None  # built at the first evaluation
        self.evaluating = False
        if resume_path is not None:
            self._restore(resume_path)  # last: it also restores the random generators

        self.log, self.made_dir = None, None
        if proc.is_main:
            weights = sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
            moments = sum(p.numel() * 4 for p in self.model.parameters())  # Adam's two, EMA's one, all fp32
            check_free_space(self.run_dir, weights + (2 + (self.ema is not None)) * moments, "a checkpoint")
            self.made_dir = make_dirs(self.run_dir)  # removed again if the run fails before its first step
            with open(os.path.join(self.run_dir, "config.yaml"), "w") as f:
                f.write(dump_yaml(cfg))
            self.log = RunLogger(self.run_dir, total_steps=self.total_steps, start_step=self.step,
                                 evals_done=self.evals_done, resume=resume_path is not None)
            if self.test_split is None:
                self.log.write(f"no test split in {', '.join(cfg.test_paths)}: training without evaluation")
        self.profiler = StepProfiler(self.run_dir, profile_steps if proc.is_main else 0, proc.device,
                                     log=self.log.write if self.log is not None else print)

    # -- setup helpers ---------------------------------------------------------------------------------------

    def _resume_path(self, resume: Optional[str]) -> Optional[str]:
        latest = checkpoint.latest_checkpoint(self.run_dir) if os.path.isdir(self.run_dir) else None
        if resume is None:
            if latest is not None:
                raise FileExistsError(f"the run directory {self.run_dir} already holds checkpoints ({latest}): pass "
                                      "--resume to continue that run, or set checkpoint_path / run_name for a new one")
            return None
        if resume != "latest":
            return resume
        if latest is None:
            raise FileNotFoundError(f"--resume: no checkpoint (step_N.pt) in the run directory {self.run_dir}")
        return latest

    def _load_weights(self, path: str):
        """Start from a trained model (official or trm_fast checkpoint): the weights the official run
        would have saved, i.e. the EMA weights when it averaged them. A puzzle embedding of another size
        is reset to the checkpoint's mean row, as officially."""
        source = path
        try:
            full = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # not readable: load_checkpoint below says why, naming the file
            full = None
        if isinstance(full, dict) and full.get("format") == checkpoint.FORMAT:
            source = {**full["model"], **(full["ema"] or {})}
        load_model_checkpoint(source, self.model, reset_puzzle_emb=True)

    def _arc_evaluator(self) -> Optional[ArcVotes]:
        if not self.config.evaluators or self.test_split is None:
            return None
        spec = self.config.evaluators[0]  # the config admits arc@ARC alone
        if len(self.config.test_paths) != 1:
            raise ValueError(f"the arc@ARC evaluator scores one test dataset, got {len(self.config.test_paths)}: "
                             f"{self.config.test_paths}")
        identifiers, self.test_puzzles = read_arc_files(self.config.test_paths[0])
        self.arc_spec = spec
        return ArcVotes(identifiers, self.test_split.metadata.blank_identifier_id)

    def _restore(self, path: str):
        state = checkpoint.load(path)
        saved = state["config"]
        for key in FIXED_ON_RESUME:
            there, now = saved.get(key), getattr(self.config, key)
            if key == "arch" and isinstance(there, dict):
                there, now = ({k: v for k, v in a.items() if k not in RUNTIME_ARCH_KEYS} for a in (there, now))
            if there != now:
                raise ValueError(f"--resume: config key '{key}' differs from the checkpoint {path}: "
                                 + _differences(key, there, now))
        changed = [k for k, v in self.config.to_dict().items() if k not in FIXED_ON_RESUME and saved.get(k) != v]
        if changed and self.proc.is_main:
            warnings.warn(f"--resume: config keys changed since the checkpoint: {', '.join(changed)}", stacklevel=2)
        rank, world, saved_world = self.proc.rank, self.proc.world_size, state["world_size"]
        if saved_world != world and self.proc.is_main:
            warnings.warn(f"--resume: {path} was written by {saved_world} processes, this run has {world}: the "
                          "weights, optimizers, EMA, step, data order and ACT carry continue, but each process's "
                          "random numbers (halt exploration) differ, so the run is not step-for-step the one it "
                          "would have been", stacklevel=2)
        self.model.load_state_dict(state["model"], strict=True)
        for opt, opt_state in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(opt_state)
        if self.ema is not None:
            if state["ema"] is None:
                raise ValueError(f"--resume: ema is on, but {path} was written without EMA")
            self.ema.load_state_dict(state["ema"])
        carries = state["carry"]
        if carries and saved_world != world:
            carries = checkpoint.regroup_carries(carries, world)
        self.carry = checkpoint.carry_from_dict(carries[rank] if carries else None, self.proc.device)
        self.sampler.load_state_dict(state["data_position"])  # one global position, whatever the ranks
        if self.arc is not None and state.get("arc_votes"):
            if saved_world == world:
                self.arc.load_state_dict(state["arc_votes"][rank])
            elif rank == 0:  # votes are summed over ranks at each evaluation: rank 0 takes them all
                for votes in state["arc_votes"]:
                    saved = ArcVotes(self.arc.identifiers, self.arc.blank)
                    saved.load_state_dict(votes)
                    self.arc.merge(saved)
        self.step, self.iteration, self.evals_done = state["step"], state["iteration"], state["evals_done"]
        if rank < saved_world:  # a process the checkpoint did not have keeps its seed's generators
            checkpoint.set_rng_state(state["rng"][rank])

    # -- the loop --------------------------------------------------------------------------------------------

    def train_step(self, batch: dict) -> Optional["Pending"]:
        """One optimisation step, queued on the device; its metrics (rank 0, else None) are read later, by
        `metrics()`, so that the host queues the next step while this one runs."""
        cfg, device = self.config, self.proc.device
        if device.type == "cuda":  # from pageable memory the copy would wait for the previous step to finish
            batch = {k: v.pin_memory() for k, v in batch.items()}
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if self.carry is None:
            self.carry = self.head.initial_carry(batch)
        self.step += 1
        lrs = [cosine_with_warmup(self.step, base_lr, round(cfg.lr_warmup_steps), self.total_steps, cfg.lr_min_ratio)
               for base_lr in self.base_lrs]
        if cfg.cuda_graph:
            if self.graphed is None:
                self.graphed = GraphedStep(self._device_step, self.optimizers, device)
            self.carry, keys, values = self.graphed(batch, self.carry, lrs)
        else:
            for opt, lr in zip(self.optimizers, lrs):
                for group in opt.param_groups:
                    group["lr"] = lr
            self.carry, keys, values = self._device_step(batch, self.carry)
        values = distributed.sum_to_main(values, self.proc)
        return Pending.queue(self.step, lrs[-1], keys, values) if self.proc.is_main else None

    def _device_step(self, batch: dict, carry):
        """Everything a step does on the device: forward, backward, the gradients' sum over ranks, the
        optimizers, the EMA; returns the next carry and this rank's metric sums (names, float64 tensor)."""
        carry, loss, metrics, _, _ = self.forward(return_keys=(), carry=carry, batch=batch)
        ((1 / self.config.global_batch_size) * loss).backward()
        if self.proc.world_size > 1:
            distributed.sum_gradients(self.model)
        for opt in self.optimizers:
            opt.step()
            opt.zero_grad()
        if self.ema is not None:
            self.ema.update(self.model)
        keys = sorted(metrics)
        return carry, keys, torch.stack([metrics[k].double() for k in keys])

    def metrics(self, pending: "Pending") -> dict:
        """A step's metrics as the official train_batch reports them (waits for the step to finish)."""
        values = dict(zip(pending.keys, pending.read()))
        count = max(values["count"], 1)
        out = {"lr": pending.lr, "count": int(values["count"])}
        out.update({k: v / (self.config.global_batch_size if k.endswith("loss") else count)
                    for k, v in values.items() if k != "count"})
        return out

    def _log_step(self, pending: Optional["Pending"]):
        if pending is not None and self.log is not None:
            self.log.step(pending.step, self.metrics(pending))

    def run(self) -> str:
        try:
            with _signals_noted(self.proc.world_size == 1) as signals:
                self._iterations(signals)
        except BaseException as err:
            self._abandon()
            oom = out_of_memory_in(err)
            if oom is not None:
                raise self._out_of_memory(oom) from err
            raise
        else:
            if self.log is not None:
                device = self.proc.device
                self.log.close(peak_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda"
                               else None)
        finally:
            distributed.stop()
        return self.run_dir

    def _iterations(self, signals: list):
        cfg = self.config
        for it in range(self.iteration, self.total_iters):
            self.head.train()
            pending = None  # the last step queued, whose metrics are read once the next one is queued
            for _, batch, _ in self.sampler.iteration():
                if self.step >= self.total_steps:
                    break
                try:
                    queued = self.train_step(batch)
                except BaseException:
                    with contextlib.suppress(Exception):  # the step before the failing one finished: keep it
                        self._log_step(pending)
                    raise
                done, pending = pending, queued
                self._log_step(done)
                self.profiler.step_done()
                if cfg.checkpoint_every_steps and self.step % cfg.checkpoint_every_steps == 0 or signals:
                    # a checkpoint's step is in metrics.csv before the checkpoint (resume cuts the file to it)
                    self._log_step(pending)
                    pending = None
                    if signals:
                        self._stop(signals[0])
                    self.save()
            self._log_step(pending)
            self.profiler.finish()  # before an evaluation: a window the run outlives ends with its steps
            last = it == self.total_iters - 1 or self.step >= self.total_steps
            if it >= (cfg.min_eval_interval or 0) and self.test_split is not None:
                self.evaluate()
            self.iteration = it + 1
            if last or (cfg.checkpoint_every_eval and it >= (cfg.min_eval_interval or 0)):
                self.save()
            if last:
                break

    def _out_of_memory(self, err: BaseException) -> DeviceOutOfMemory:
        cfg, world = self.config, self.proc.world_size
        per_process = f", {cfg.global_batch_size // world} per process" if world > 1 else ""
        if self.evaluating:  # no gradients there: only the rows at once matter
            return out_of_memory(err, f"in the evaluation after step {self.step}", [
                f"a smaller global_batch_size, which is also the evaluation's rows (now {cfg.global_batch_size}"
                f"{per_process}; a new run)"], self.proc.device)
        mode, tries = cfg.arch.get("recompute", False), []
        if mode is False:
            tries.append("arch.recompute=mlp (on a GPU, the gradient cycle's channel MLPs recomputed: a few "
                         "percent more time; --resume takes it)")
        if mode is not True:
            tries.append("arch.recompute=true (the gradient cycle's activations recomputed: about a quarter of the "
                         "memory; --resume takes it)")
        tries.append(f"a smaller global_batch_size (now {cfg.global_batch_size}{per_process}; a new run)")
        latest = checkpoint.latest_checkpoint(self.run_dir) if os.path.isdir(self.run_dir) else None
        tries.append(f"the last checkpoint is {latest}" if latest else "no checkpoint was written yet")
        return out_of_memory(err, f"in training step {self.step}", tries, self.proc.device)

    def _stop(self, signum: int):
        """After a step, on a signal: checkpoint it and stop."""
        self.save()
        raise Stopped(signum, self.step)

    def _abandon(self):
        """After a failure: close the logs without letting a second error (say, the disk is full) hide the
        first, and remove the run directory this run made if not one step finished."""
        if self.log is None:
            return
        with contextlib.suppress(Exception):
            self.log.close(finished=False)
        if self.made_dir is not None and self.log.steps_logged == 0:
            remove_dirs(self.run_dir, self.made_dir)

    def evaluate(self):
        self.evaluating = True  # stays set if it fails: the error says where
        self._evaluate()
        self.evaluating = False

    def _evaluate(self):
        cfg = self.config
        if self.engine is None:
            # With EMA, evaluation reads its own copy of the model, which takes the averaged weights.
            self.eval_model = copy.deepcopy(self.model) if self.ema is not None else self.model
            self.engine = Engine(self.eval_model, cfg.global_batch_size // self.proc.world_size)
        if self.ema is not None:
            self.ema.write_to(self.eval_model, self.model)
        # the engine re-reads weights it sees changed through their version counters, which the kernels of a
        # replayed graph (cuda_graph) do not bump: read them always
        self.engine.refresh()
        if self.arc is not None and not self.arc_spec["aggregated_voting"]:
            # each evaluation votes alone (the official default, aggregated_voting: true, piles votes up)
            self.arc = ArcVotes(self.arc.identifiers, self.arc.blank)
        total = sum(s.inputs.shape[0] for s in self.test_split.sets.values())
        # nested under the training bar, it moves the cursor up: only where a terminal shows it
        with tqdm(total=total, unit="puzzle", desc="eval", leave=False,
                  disable=not (self.proc.is_main and sys.stderr.isatty())) as bar:
            result = evaluate(self.engine, self.test_split, cfg.arch["loss"]["loss_type"], proc=self.proc,
                              arc_votes=self.arc, save_keys=cfg.eval_save_outputs, progress=bar)
        if result.saved_outputs:
            os.makedirs(self.run_dir, exist_ok=True)
            checkpoint.save_atomic(result.saved_outputs,
                                   os.path.join(self.run_dir, f"step_{self.step}_all_preds.{self.proc.rank}"))
        if self.arc is not None:
            merged = gather_arc_votes(self.arc, self.proc)
            if merged is not None:
                result.arc, submission = merged.score(self.test_puzzles, self.arc_spec["pass_Ks"],
                                                      self.arc_spec["submission_K"])
                out_dir = os.path.join(self.run_dir, f"evaluator_ARC_step_{self.step}")
                os.makedirs(out_dir, exist_ok=True)
                write_submission(submission, os.path.join(out_dir, "submission.json"))
        self.evals_done += 1
        if self.log is not None:
            self.log.evaluation(self.step, result.flat_metrics())

    def save(self):
        """Collective: every rank hands its carry, generator states and votes to rank 0, which writes."""
        per_rank = distributed.gather_to_main(
            {"carry": checkpoint.carry_to_dict(self.carry), "rng": checkpoint.rng_state(),
             "arc_votes": self.arc.state_dict() if self.arc is not None else None}, self.proc)
        if not self.proc.is_main:
            return
        state = {
            "format": checkpoint.FORMAT,
            "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
            "ema": {k: v.cpu() for k, v in self.ema.state_dict().items()} if self.ema is not None else None,
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "carry": [r["carry"] for r in per_rank] if self.carry is not None else None,
            "rng": [r["rng"] for r in per_rank],
            "arc_votes": [r["arc_votes"] for r in per_rank] if self.arc is not None else None,
            "data_position": self.sampler.state_dict(),
            "step": self.step, "iteration": self.iteration, "evals_done": self.evals_done,
            "world_size": self.proc.world_size, "config": self.config.to_dict(),
            "metadata": self.train_split.metadata.to_dict(),
        }
        os.makedirs(self.run_dir, exist_ok=True)
        checkpoint.save_atomic(state, checkpoint.checkpoint_file(self.run_dir, self.step))
        if self.log is not None:
            self.log.untimed()  # the write is not a training step's time (multi-GPU: the gather neither)


def _differences(name: str, there, now) -> str:
    """`name.a 1 there, 2 now; ...`: the leaves that differ between two nested dicts."""
    if not (isinstance(there, dict) and isinstance(now, dict)):
        return f"{name} {there!r} there, {now!r} now"
    return "; ".join(_differences(f"{name}.{k}", there.get(k), now.get(k))
                     for k in sorted(set(there) | set(now)) if there.get(k) != now.get(k))


def train(config: TrainConfig, resume: Optional[str] = None, profile_steps: int = 0) -> str:
    """Train per `config` (optionally resuming, optionally profiling steps); returns the run directory."""
    try:
        run = Run(config, resume, profile_steps)
    except BaseException as err:  # building the model, or loading a checkpoint onto the device
        oom = out_of_memory_in(err)
        if oom is None:
            raise
        tries = [f"a smaller global_batch_size (now {config.global_batch_size})"]
        raise out_of_memory(oom, "setting up the run", tries) from err
    return run.run()
