"""The training loop: SGD with warm-up and cosine decay, AMP, clipping, a non-finite guard,
validation by the WIDER protocol, exact resume, clean stops on SIGINT/SIGTERM, and DDP.

The run directory's files are named by :class:`latentface.checkpoint.RunDir`. Checkpoint keys:
``format_version`` (:data:`latentface.checkpoint.FORMAT_VERSION`), ``model`` (state dict), ``config``
(``model.config``, the anchor layout written out: ``detect`` needs no architecture flags),
``epoch`` (epochs finished), ``epoch_step`` (steps done in the next), ``step`` (all steps),
``metrics`` (per-epoch rows), ``train_config``, ``best``; the resumable ``last.pth`` adds
``optimizer``, ``scheduler``, ``scaler``, ``rng``, ``meters``, ``nonfinite_steps``, ``elapsed_s``
and ``wandb_id``; ``weight_final.pth`` adds ``finished`` and ``stopped`` (why it ended early, or None).

Before the first step both splits are checked (``--on_bad_latent``); ``last.pth`` is written before
each validation, so a failure in it loses no training; ``summary.json`` says how the run stands or ended
(:meth:`_Run.summary`). Exit status of ``latentface train`` (:attr:`Outcome.exit_status`): 0 when it ran
to its end (all epochs, ``--max_steps``, ``--time_budget`` or ``--wall_budget``), 128 + the signal's
number after a stop signal (130 SIGINT, 143 SIGTERM), 2 for bad input.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from latentface.checkpoint import CheckpointError, RunDir, load_checkpoint, load_weights, save_checkpoint
from latentface.data.layout import image_path
from latentface.data.stats import compute_latent_stats, load_stats
from latentface.inference.operating_point import DISPLAY_CONF
from latentface.inference.postprocessing import postprocess
from latentface.loss import MultiBoxLoss
from latentface.metrics.wider import wider_ap
from latentface.model import build_model
from latentface.training.bridge_init import initialise_bridge
from latentface.training.clock import Clock, Progress, duration, hms, run_start
from latentface.training.config import TrainConfig, TrainingError, merge_for_resume, resolved
from latentface.training.data import (
    build_datasets,
    build_loaders,
    close_loaders,
    preflight,
    subset_loader,
    with_teacher_images,
)
from latentface.training.distillation import FEATURE_MAPS, DistillationWeights, Distiller, load_teacher
from latentface.training.distributed import (
    Processes,
    StopSignals,
    parameters_digest,
    rng_state,
    seed_everything,
    set_rng_state,
    stop_signals_blocked,
)
from latentface.training.records import (
    LOSS_PARTS,
    Tracker,
    check_writable,
    draw_boxes,
    plot_curves,
    run_summary,
    summary_line,
    write_metrics_csv,
)
from latentface.util.io import read_image, write_json


def train(config: TrainConfig) -> Path:
    """Train as ``config`` says (under ``torchrun``: one process of a DDP run); returns the run directory."""
    return run(config).run_dir


@dataclasses.dataclass
class Outcome:
    """How a run ended: its directory, why it stopped early (None: all epochs; ``budget``, ``max_steps``,
    ``signal``) and the stop signal's number."""

    run_dir: Path
    stopped: str | None
    signum: int | None = None

    @property
    def exit_status(self) -> int:
        """0, or 128 + the signal's number after a stop signal (the shell's convention)."""
        return 128 + self.signum if self.signum else 0


def run(config: TrainConfig) -> Outcome:
    """:func:`train`, returning how the run ended."""
    clock = Clock(start=run_start())
    config.validate()
    procs = Processes.start(config.device, config.dist_timeout)
    try:
        r = _Run(config, procs, clock)
        r.fit()
        return Outcome(r.run_dir, r.stopped, r.signum)
    finally:
        procs.close()


def warmup_cosine(total_steps: int, warmup_steps: int, final: float):
    """LR factor per step: linear warm-up to 1 over ``warmup_steps``, then cosine down to ``final`` at
    ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class _Run:
    def __init__(self, config: TrainConfig, procs: Processes, clock: Clock | None = None):
        self.procs = procs
        self.clock = clock or Clock()
        self.stopped: str | None = None  # why the run ended early, for summary.json
        self.stop_reason: str | None = None
        self.signum: int | None = None
        self.failure: BaseException | None = None
        self.device = procs.device
        payload = None
        if config.resume:
            source = RunDir.resume_checkpoint(config.resume)
            payload = load_checkpoint(source)
            if "optimizer" not in payload or "train_config" not in payload:
                raise CheckpointError(
                    f"{source}: holds weights but no training state; resume from a run's {RunDir.LAST}, "
                    "or start a new run from these weights with --weight"
                )
            config = merge_for_resume(config, payload["train_config"], source).validate()
        self.config = config
        self.clock.budget, self.clock.margin = config.wall_budget, config.margin()
        # Cheap checks before the data scan: a bad --weight file, an --out that cannot be written.
        start = load_checkpoint(config.weight) if config.weight and payload is None else None
        if procs.is_main:
            check_writable(source.parent if payload is not None else Path(config.out), config.name, payload is None)
        self.log(
            f"latentface train: {config.input} input, process {procs.rank + 1}/{procs.world_size} on {self.device}"
        )
        seed_everything(config.seed)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = not config.deterministic

        self.train_set, self.val_set = build_datasets(config)
        self.bad_latents = preflight(
            {"train": self.train_set, "val": self.val_set}, config, procs, self.clock.measure, self.log
        )
        self.train_set = with_teacher_images(self.train_set, config)
        self.train_loader, self.sampler, self.val_loader = build_loaders(
            self.train_set, self.val_set, config, procs.rank, procs.world_size, pin_memory=self.device.type == "cuda"
        )
        self.val_subset_loader = (
            subset_loader(self.val_loader, config.val_subset)
            if config.val_subset is not None and config.val_subset < len(self.val_set)
            else None
        )
        self.steps_per_epoch = self.sampler.num_samples // config.batch_size
        self.total_steps = config.epochs * self.steps_per_epoch

        in_channels = 3 if config.input == "rgb" else self.train_set.expected_shape[0]
        model = build_model(config.model_config(in_channels), pretrained=config.pretrained)
        if payload is not None:
            self._check_architecture(payload["config"], model.config, source)
            load_weights(model, payload["model"], source)
            self.stats = None
            self.bridge_init = payload.get("bridge_init")
        else:
            self.stats = self._stats(in_channels)
            if start is not None:
                self._check_architecture(start["config"], model.config, config.weight)
                load_weights(model, start["model"], config.weight)
                self.log(f"starting from the weights of {config.weight}")
            if self.stats is not None:
                model.set_normalization(self.stats["mean"], self.stats["std"])
            if start is not None:
                self.bridge_init = f"from {config.weight}"
            else:
                self.bridge_init = initialise_bridge(
                    model, self.train_set, self.log, procs.broadcast, procs.is_main, seed=config.seed
                )
        if config.freeze:
            model.freeze_backbone()
        model.to(self.device)
        if config.sync_bn and procs.distributed:
            if self.device.type == "cuda":
                model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                self.log("--sync_bn ignored: SyncBatchNorm needs GPUs; BatchNorm statistics stay per process")
        self.raw_model = model
        self.model = (
            DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if procs.distributed
            else model
        )
        self.distiller = None
        if config.teacher is not None or config.reconstruct > 0:
            teacher = None if config.teacher is None else load_teacher(config.teacher, self.device, config.teacher_half)
            weights = DistillationWeights(
                config.distill_feature, config.distill_soft, config.distill_temperature, config.reconstruct
            )
            self.distiller = Distiller(model, teacher, weights, source=str(config.teacher)).to(self.device)
            if procs.distributed:  # every rank starts its adapters alike (their gradients are averaged)
                self.distiller.load_state_dict(procs.broadcast(self.distiller.state_dict()))
            if teacher is not None:
                self.log(
                    f"distillation: teacher {config.teacher} ({teacher.config['backbone']}), feature x "
                    f"{config.distill_feature:g} on {'/'.join(FEATURE_MAPS)}, soft labels x {config.distill_soft:g} "
                    f"at T={config.distill_temperature:g}"
                )
            if config.reconstruct > 0:
                self.log(f"reconstruction: the image rebuilt from the bridge output, L1 x {config.reconstruct:g}")
        self.params = [p for p in model.parameters() if p.requires_grad]
        # training-only parameters: optimised with the model, clipped apart (the student's clipping is its own)
        self.adapter_params = list(self.distiller.parameters()) if self.distiller is not None else []
        self.optimizer = torch.optim.SGD(
            self.params + self.adapter_params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        warmup = round(config.warmup * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(self.total_steps, warmup, config.final_lr)
        )
        self.amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.criterion = MultiBoxLoss(matching=config.matching)
        self._anchor_cache: dict = {}

        self.epoch = self.epoch_step = self.step = 0
        self.nonfinite = self.consecutive_nonfinite = 0
        self.elapsed = 0.0
        self.history: list[dict] = []
        self.best: dict | None = None
        self.meters = _Meters()
        self.wandb_id = None
        if payload is not None:
            self.run_dir = source.parent
            self._restore(payload, source)
        else:
            self.run_dir = self._new_run_dir()
        self.files = RunDir(self.run_dir)
        self.tracker = None
        self.progress = Progress(config.progress_every, self.clock, self.log)

    # ------------------------------------------------------------------------------ set-up
    def log(self, message: str) -> None:
        if self.procs.is_main:
            tqdm.write(message, file=sys.stderr)

    def _stats(self, channels: int) -> dict | None:
        """Latent normalisation: --stats, else computed from the training split (rank 0, shared)."""
        cfg = self.config
        if cfg.input == "rgb":
            return None
        if cfg.stats:
            try:
                stats = load_stats(cfg.stats, channels)
            except (OSError, ValueError) as exc:
                raise TrainingError(f"--stats: {exc}") from None
            if stats.get("latent_type") not in (None, cfg.latent_type):
                self.log(f"note: {cfg.stats} was computed for {stats['latent_type']}, this run reads {cfg.latent_type}")
            return stats
        stats = None
        if self.procs.is_main:
            self.log(f"computing latent statistics of {cfg.dataset_root}/train ({cfg.latent_type}) for normalisation")
            with self.clock.measure("statistics"):
                stats = compute_latent_stats(
                    cfg.dataset_root, "train", cfg.latent_type, progress=cfg.progress, on_bad_latent=cfg.on_bad_latent
                )
            self.log(f"statistics of {stats['count']} latents in {self.clock.spent['statistics']:.1f} s")
        return self.procs.broadcast(stats)

    @staticmethod
    def _check_architecture(saved: dict, wanted: dict, source) -> None:
        diff = {
            k: (saved.get(k), wanted.get(k)) for k in dict.fromkeys([*saved, *wanted]) if saved.get(k) != wanted.get(k)
        }
        if diff:
            details = ", ".join(f"{k}: {a!r} in the checkpoint, {b!r} asked for" for k, (a, b) in diff.items())
            raise CheckpointError(f"{source}: a different model architecture ({details})")

    def _new_run_dir(self) -> Path:
        cfg = self.config
        run_dir = None
        if self.procs.is_main:
            run_dir = Path(cfg.out) / (cfg.name or datetime.now().strftime("%Y%m%d-%H%M%S"))
            if not cfg.name:  # two runs started in the same second must not share a directory
                stem, n = run_dir, 1
                while run_dir.exists():
                    n += 1
                    run_dir = stem.with_name(f"{stem.name}-{n}")
            if RunDir(run_dir).holds_run():
                raise TrainingError(
                    f"{run_dir} already holds a run: continue it with --resume {run_dir}, or choose another --name"
                )
            run_dir.mkdir(parents=True, exist_ok=True)
            saved = dataclasses.replace(resolved(cfg), resume=None)
            write_json(RunDir(run_dir).config, saved.to_dict())
            # The normalisation the model uses; for RGB the ImageNet statistics it has built in.
            stats = self.stats or {
                "mean": self.raw_model.input_mean.tolist(),
                "std": self.raw_model.input_std.tolist(),
                "count": 0,
                "latent_type": "rgb (ImageNet statistics, 0..255 pixels)",
            }
            write_json(RunDir(run_dir).stats, stats)
            self.log(f"run directory: {run_dir}")
        return Path(self.procs.broadcast(str(run_dir)))

    def _restore(self, payload: dict, source: Path) -> None:
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            if self.amp:
                self.scaler.load_state_dict(payload["scaler"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{source}: its optimizer state does not fit this run ({exc}); was --freeze changed?"
            ) from None
        self.epoch, self.epoch_step, self.step = payload["epoch"], payload["epoch_step"], payload["step"]
        self.history, self.best = list(payload["metrics"]), payload.get("best")
        self.nonfinite, self.elapsed = payload["nonfinite_steps"], payload["elapsed_s"]
        self.meters = _Meters(**payload["meters"])
        self.wandb_id = payload.get("wandb_id")
        if self.distiller is not None:
            if "distiller" not in payload:
                raise CheckpointError(f"{source}: saved without a teacher; resume it without --teacher")
            self.distiller.load_state_dict(payload["distiller"])
        set_rng_state(payload["rng"])
        if self.epoch_step > self.steps_per_epoch:
            raise TrainingError(
                f"{source}: saved at step {self.epoch_step} of an epoch, but an epoch now has "
                f"{self.steps_per_epoch} steps (--batch_size or the dataset changed)"
            )
        self.log(
            f"resuming {self.run_dir} at epoch {self.epoch + 1}, step {self.epoch_step} of "
            f"{self.steps_per_epoch} ({self.step} steps done)"
        )

    # ------------------------------------------------------------------------------ training
    def fit(self) -> Path:
        cfg = self.config
        if self.procs.is_main:
            enabled, why_off = Tracker.wanted(cfg.no_wandb)
            self.tracker = Tracker(
                enabled,
                why_off,
                cfg.wandb_project,
                self.run_dir.name,
                self.run_dir,
                cfg.to_dict() | {"bridge_init": self.bridge_init},
                self.wandb_id,
                log=self.log,
            )
            self.wandb_id = self.tracker.run_id
        self._write_summary("running")
        try:
            with StopSignals(self.log) as signals:
                finished = self._loop(signals)
            if finished:
                self._finish()
        except BaseException as exc:
            self.failure = exc
            raise
        finally:
            close_loaders(self.train_loader, self.val_loader, self.val_subset_loader)
            if self.tracker is not None:
                self.tracker.finish()
            self._write_summary()
        return self.run_dir

    def _write_summary(self, state: str | None = None) -> None:
        if self.procs.is_main:
            write_json(self.files.summary, run_summary(self, state))

    def _loop(self, signals: StopSignals) -> bool:
        """Train until the last epoch, --max_steps, --time_budget or --wall_budget (True), or a stop signal (False)."""
        cfg = self.config
        self.model.train()
        stop = None
        spent = self.clock.spent
        spent["set-up"] = max(0.0, self.clock.now() - sum(v for k, v in spent.items() if k != "set-up"))
        budget = ""
        if cfg.wall_budget is not None:
            budget = (
                f"; wall budget {hms(cfg.wall_budget)} from the process start, {hms(self.clock.margin)} of it kept "
                f"for after training, {hms(self.clock.now())} used by the set-up"
            )
        self.log(
            f"training: epoch {self.epoch + 1} of {cfg.epochs} from step {self.epoch_step}, "
            f"{self.steps_per_epoch} steps of {cfg.batch_size} x {self.procs.world_size} images per epoch{budget}"
        )
        while self.epoch < cfg.epochs and stop is None:
            self.sampler.set_epoch(self.epoch)
            self.sampler.skip = self.epoch_step * cfg.batch_size
            bar = tqdm(
                total=self.steps_per_epoch,
                initial=self.epoch_step,
                desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                unit="step",
                disable=not (cfg.progress and self.procs.is_main),
                leave=False,
                dynamic_ncols=True,
            )
            session_start, images, first = time.perf_counter(), 0, self.epoch_step
            clock_start = self.clock.now()  # the run's clock (the budget's) times steps and epochs
            if self.epoch_step < self.steps_per_epoch:  # a resume may land just after the epoch's last step
                self._tick = session_start
                with stop_signals_blocked():  # loader workers start here and must ignore stop signals
                    batches = iter(self.train_loader)
                for inputs, targets in batches:
                    stop = self._step(inputs, targets, signals)
                    now = time.perf_counter()
                    self.elapsed += now - self._tick  # data loading included, validation not
                    self._tick = now
                    images += len(inputs) * self.procs.world_size
                    rate = images / (now - session_start)
                    if "validation" not in self.clock.last:  # until one is measured: as long as training on it
                        self.clock.val_guess = len(self.val_set) * self.procs.world_size / rate
                    bar.update()
                    bar.set_postfix(
                        self.meters.postfix(lr=self.optimizer.param_groups[0]["lr"], img_s=rate), refresh=False
                    )
                    steps_per_s = (self.epoch_step - first) / (now - session_start)
                    self.clock.step_s = (self.clock.now() - clock_start) / (self.epoch_step - first)
                    self.progress.step(
                        self.epoch + 1, cfg.epochs, self.epoch_step, self.steps_per_epoch, rate, steps_per_s
                    )
                    if stop is not None:
                        break
            bar.close()
            took = time.perf_counter() - session_start
            if self.epoch_step > first:
                self.clock.epoch_s = self.clock.step_s * self.steps_per_epoch
            self.meters.images_per_s = images / max(took, 1e-9) if images else 0.0
            if stop != "signal":
                budget_stop = self._end_epoch(stop is not None or self.epoch + 1 == cfg.epochs, signals)
                if budget_stop is not None:
                    stop = budget_stop
            flag = torch.tensor([float(signals.received is not None)], device=self.device)
            if stop == "signal" or self.procs.max(flag)[0]:  # also one that came during the epoch's end
                self._save()
                signum = self.procs.max(torch.tensor([signals.signum or 0], device=self.device))
                self.stopped, self.signum = "signal", int(signum[0]) or signal.SIGTERM.value
                name = signal.Signals(self.signum).name
                self.stop_reason = f"{name} received"
                self.log(
                    f"stopped by {name} at epoch {self.epoch + 1}, step {self.epoch_step}: "
                    f"continue with --resume {self.run_dir}"
                )
                self._log_summary()
                return False
            if stop is not None:
                self.stopped = "max_steps" if stop.startswith("--max_steps") else "budget"
                self.stop_reason = f"{stop} reached after {self.step} steps"
                self.log(f"stopped: {self.stop_reason}")
        return True

    def _anchors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The anchors on input ``x`` and each one's pyramid level (for adaptive matching), cached by size."""
        key = tuple(x.shape[-2:])
        if key not in self._anchor_cache:
            levels = self.raw_model.anchor_layout.levels_of(*self.raw_model.image_size(x), device=x.device)
            self._anchor_cache[key] = self.raw_model.anchors(x), levels
        return self._anchor_cache[key]

    def _step(self, inputs: torch.Tensor, targets: list[dict], signals: StopSignals) -> str | None:
        """One optimisation step; returns why training must stop now, if it must."""
        cfg = self.config
        x = inputs.to(self.device, non_blocking=True).float()  # float16 latents are cast here, on the device
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            if self.distiller is None:
                outputs = self.model(x)
            else:
                outputs, maps = self.model(x, return_maps=True)
        anchors, levels = self._anchors(x)
        matched = self.criterion.targets(targets, anchors, levels)  # matched once: the distiller's positives too
        losses = self.criterion(outputs, targets, anchors, matched=matched)
        if self.distiller is not None:
            terms = self.distiller(maps, outputs.logits, matched[0] > 0, targets)
            losses = {**losses, **terms, "total": losses["total"] + sum(terms.values())}
        loss = losses["total"]
        # Backward runs even on a non-finite loss: every DDP rank must join the gradient all-reduce.
        self.scaler.scale(loss).backward()
        over_budget = cfg.time_budget is not None and self.elapsed + time.perf_counter() - self._tick >= cfg.time_budget
        over_wall = self.procs.is_main and self.clock.must_stop()  # rank 0's clock knows the validation's time
        flags = self.procs.max(
            torch.tensor(
                [
                    float(not torch.isfinite(loss)),
                    float(signals.received is not None),
                    float(over_budget),
                    float(over_wall),
                ],
                device=self.device,
            )
        )
        skipped = bool(flags[0])
        if self.distiller is not None and self.procs.distributed:  # DDP averages the model's, not the adapters'
            for p in self.distiller.parameters():
                grad = p.grad if p.grad is not None else torch.zeros_like(p)  # a rank without teacher images
                p.grad = self.procs.sum(grad) / self.procs.world_size
        if not skipped:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.clip_grad)
            if self.adapter_params:
                torch.nn.utils.clip_grad_norm_(self.adapter_params, cfg.clip_grad)
            skipped = not bool(torch.isfinite(grad_norm))  # identical on every rank: gradients are all-reduced
            if not skipped:
                self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a skipped first step is deliberate: the schedule still advances
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler.step\(\)` before", UserWarning)
            self.scheduler.step()
        self.step += 1
        self.epoch_step += 1
        if skipped:
            self.nonfinite += 1
            self.consecutive_nonfinite += 1
            scale = f"; fp16 loss scale now {self.scaler.get_scale():g}" if self.amp else ""
            self.log(f"step {self.step}: non-finite loss or gradient, step skipped ({self.nonfinite} so far{scale})")
            if self.consecutive_nonfinite > cfg.max_nonfinite:
                self._save()
                raise TrainingError(
                    f"{self.consecutive_nonfinite} consecutive steps had a non-finite loss or gradient (epoch "
                    f"{self.epoch + 1}, step {self.step}); training stopped. Lower --lr (now {cfg.lr}) or check the "
                    f"data; the state is saved in {self.files.last}"
                )
        else:
            self.consecutive_nonfinite = 0
            self.meters.add({k: float(v.detach()) for k, v in losses.items()}, len(inputs))
        if flags[1]:
            return "signal"
        if cfg.max_steps is not None and self.step >= cfg.max_steps:
            return f"--max_steps {cfg.max_steps}"
        if flags[2]:
            return f"--time_budget {cfg.time_budget:g} s"
        if flags[3]:
            return f"--wall_budget {cfg.wall_budget:g} s (less its final margin of {self.clock.margin:g} s)"
        return None

    # ------------------------------------------------------------------------------ epochs
    def _end_epoch(self, final: bool, signals: StopSignals) -> str | None:
        """Validate when due, record the epoch's row, write checkpoints; a partial epoch gives a fractional row.

        ``last.pth`` is written before a validation, so nothing trained is lost to a failure in it; a stop
        signal abandons the validation (that ``last.pth`` holds the epoch). Returns why the run stops after this
        epoch when the next does not fit ``--wall_budget`` (then this epoch validates as the last), else None.
        """
        cfg = self.config
        complete = self.epoch_step >= self.steps_per_epoch
        due = complete and (self.epoch + 1) % cfg.val_every == 0
        budget_stop = None
        if (
            complete
            and not final
            and cfg.wall_budget is not None
            and not self.procs.broadcast(self._next_epoch_fits(due) if self.procs.is_main else None)
        ):
            final, budget_stop = True, f"--wall_budget {cfg.wall_budget:g} s (the next epoch would not fit)"
        train = self.procs.sum(
            torch.tensor([*self.meters.sums(), self.meters.count], dtype=torch.float64, device=self.device)
        ).tolist()
        val, images = None, []
        if (due or final) and self.procs.is_main:
            with self.clock.measure("checkpoints"):
                self._save()
            with self.clock.measure("validation"):
                val, images = self._validate(final or self.epoch + 1 == cfg.epochs, signals)
            if val is None:  # abandoned for a stop signal: last.pth holds this epoch, which a resume validates
                self.clock.last.pop("validation")
                self.procs.barrier()
                return None
            self.clock.validated(val["val_images"], len(self.val_set))  # the budget scales a subset's time
        row = {
            "epoch": round(self.epoch + self.epoch_step / self.steps_per_epoch, 4),
            "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            **{f"train_{k}": (train[i] / train[-1] if train[-1] else None) for i, k in enumerate(LOSS_PARTS)},
            **(val or {}),
            "nonfinite_steps": self.nonfinite,
            "images_per_s": round(self.meters.images_per_s, 2),
            "elapsed_s": round(self.elapsed, 1),
        }
        if self.history and self.history[-1]["epoch"] > self.epoch:  # the partial row of this epoch, before a resume
            self.history.pop()
        self.history.append(row)
        improved = val is not None and self._is_best(val)
        finished_epoch = self.epoch + 1
        if complete:
            self.epoch, self.epoch_step = self.epoch + 1, 0
            self.meters = _Meters()
        if self.procs.is_main:
            with self.clock.measure("checkpoints"):
                if complete:
                    self._save_weights(self.files.epoch(finished_epoch))
                    self._prune_epochs()
                if improved:
                    self._save_weights(self.files.best)
                self._save()
            records_start = time.perf_counter()
            write_metrics_csv(self.history, self.files.metrics)
            plot_curves(self.history, self.files.curves)
            self.tracker.log(
                {
                    "epoch": row["epoch"],
                    "lr": row["lr"],
                    **{f"train/{k}": row[f"train_{k}"] for k in LOSS_PARTS},
                    **{f"val/{k[4:]}": v for k, v in (val or {}).items()},
                },
                step=self.step,
            )
            self.tracker.log_images(images, step=self.step)
            self._write_summary("running")
            self.clock.spent["records"] += time.perf_counter() - records_start
            ap = "undefined" if row.get("val_ap") is None else f"{row['val_ap']:.4f}"
            train_loss = "n/a (every step skipped)" if row["train_total"] is None else f"{row['train_total']:.4f}"
            subset = f" on {val['val_images']} images" if val and val["val_images"] < len(self.val_set) else ""
            took = self.clock.last
            self.log(
                f"epoch {row['epoch']:g}: train loss {train_loss}"
                + (f", val loss {row['val_total']:.4f}, val AP {ap}{subset}" if val else "")
                + (" (best)" if improved else "")
                + f"; training {duration(self.clock.epoch_s)} per epoch"
                + (f", validation {took['validation']:.1f} s" if val else "")
                + f", checkpoints {took['checkpoints']:.1f} s"
            )
        self.procs.barrier()
        return budget_stop

    def _next_epoch_fits(self, validate_now: bool) -> bool:
        """Rank 0: does another epoch (training, one validation, checkpoints, as measured) fit the wall budget?"""
        fits, need, left = self.clock.next_epoch_fits(validate_now)
        if not fits:
            self.log(
                f"wall budget: stopping after epoch {self.epoch + 1}: going on needs about {duration(need)} (an "
                f"epoch's training {duration(self.clock.epoch_s)}, validation and checkpoints "
                f"{duration(self.clock.validation_s())}), {duration(max(left, 0))} are left before the final margin "
                f"of {duration(self.clock.margin)}"
            )
        return fits

    def _is_best(self, val: dict) -> bool:
        """Highest validation AP; validation loss decides while AP is undefined (a validation set without faces)."""
        ap = val["val_ap"] if val["val_ap"] is not None and math.isfinite(val["val_ap"]) else -math.inf
        score = [ap, -val["val_total"]]
        if self.best is None or score > self.best["score"]:
            self.best = {
                "score": score,
                "epoch": self.epoch + self.epoch_step / self.steps_per_epoch,
                "step": self.step,
            }
            return True
        return False

    @torch.no_grad()
    def _validate(self, full: bool = True, signals: StopSignals | None = None) -> tuple[dict | None, list]:
        """Validation loss and WIDER AP over the validation split (rank 0; the first --val_subset images unless
        ``full``), plus a few drawn images. (None, []) when a stop signal abandons it."""
        model = self.raw_model
        loader = self.val_loader if full or self.val_subset_loader is None else self.val_subset_loader
        records = self.val_set.records
        if loader is not self.val_loader:
            records = {k: records[k] for k in self.val_set.keys[: self.config.val_subset]}
        model.eval()
        sums, count, predictions, shown = torch.zeros(4, dtype=torch.float64), 0, {}, []
        with stop_signals_blocked():  # loader workers start here and must ignore stop signals
            batches = iter(loader)
        bar = tqdm(
            batches, total=len(loader), desc="validate", unit="batch", leave=False, disable=not self.config.progress
        )
        for inputs, targets in bar:
            if signals is not None and signals.received is not None:
                model.train()
                self.log(f"{signals.received}: validation abandoned; {self.files.last} holds the epoch's training")
                return None, []
            x = inputs.to(self.device, non_blocking=True).float()  # float16 latents are cast here, on the device
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                outputs = model(x)
            anchors, levels = self._anchors(x)
            losses = self.criterion(outputs, targets, anchors, levels)
            sums += torch.tensor([float(losses[k]) for k in LOSS_PARTS], dtype=torch.float64) * len(x)
            count += len(x)
            for i, (det, target) in enumerate(zip(postprocess(outputs, anchors), targets)):
                pred = torch.cat([det["boxes"], det["scores"][:, None]], 1).cpu().numpy()
                predictions[target["key"]] = pred
                if len(shown) < self.config.val_images:
                    picture = self._picture(inputs[i], target, pred)
                    if picture is not None:
                        shown.append((target["key"], picture))
        model.train()
        try:
            ap = wider_ap(predictions, records)
        except ValueError as exc:  # no face to evaluate: AP is undefined, the loss still ranks epochs
            self.log(f"validation AP undefined: {exc}")
            ap = None
        losses = {"val_" + k: float(v) for k, v in zip(LOSS_PARTS, sums / max(count, 1))}
        return losses | {"val_ap": ap, "val_images": count}, shown

    def _picture(self, inputs: torch.Tensor, target: dict, pred: np.ndarray) -> np.ndarray | None:
        """The validation image with boxes drawn, when an image exists (RGB input, or a PNG beside the latent)."""
        if self.tracker is None or self.tracker.run is None:
            return None
        if self.config.input == "rgb":
            image = inputs.permute(1, 2, 0).clamp(0, 255).byte().numpy()
        else:
            path = image_path(self.config.dataset_root, "val", target["key"])
            if not path.is_file():
                return None
            image = read_image(path)
        return draw_boxes(image, pred[pred[:, 4] >= DISPLAY_CONF], target["boxes"].numpy())

    # ------------------------------------------------------------------------------ checkpoints
    def _weights_payload(self) -> dict:
        return {
            "model": self.raw_model.state_dict(),
            "config": self.raw_model.config,
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "metrics": list(self.history),
            "train_config": self.config.to_dict(),
            "best": self.best,
            "bridge_init": self.bridge_init,
        }

    def _save_weights(self, path: Path) -> None:
        save_checkpoint(self._weights_payload(), path)

    def _save(self) -> None:
        """last.pth: everything needed to continue exactly where this step left off (rank 0)."""
        if not self.procs.is_main:
            return
        payload = self._weights_payload()
        payload.update(
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=rng_state(),
            meters=dataclasses.asdict(self.meters),
            nonfinite_steps=self.nonfinite,
            elapsed_s=self.elapsed,
            wandb_id=self.wandb_id,
        )
        if self.distiller is not None:  # training-only: in last.pth, never in the inference checkpoints
            payload["distiller"] = self.distiller.state_dict()
        save_checkpoint(payload, self.files.last)

    def _prune_epochs(self) -> None:
        if self.config.keep_epochs > 0:
            for old in self.files.epochs()[: -self.config.keep_epochs]:
                old.unlink()

    def _finish(self) -> None:
        """weight_final.pth, and under DDP a check that every rank ends with the same weights (ranks.json)."""
        digests = self.procs.gather(parameters_digest(self.raw_model))
        adapters = self.procs.gather(parameters_digest(self.distiller)) if self.distiller is not None else None
        if self.procs.is_main:
            with self.clock.measure("checkpoints"):
                payload = self._weights_payload() | {"finished": self.stopped is None, "stopped": self.stopped}
                save_checkpoint(payload, self.files.final)
            if self.procs.distributed:
                same = len(set(digests)) == 1 and len(set(adapters or [None])) == 1
                ranks = {"world_size": self.procs.world_size, "parameters_sha256": digests, "identical": same}
                if adapters is not None:  # the training-only distillation adapters: averaged like the model
                    ranks["adapters_sha256"] = adapters
                write_json(self.files.ranks, ranks)
                self.log(
                    "weights identical on all ranks"
                    if same
                    else f"WARNING: ranks ended with different weights: {digests}"
                )
            if self.stopped:
                self.log(
                    f"done, but NOT a finished run: {self.files.final} holds the weights at the stop "
                    f"({self.stop_reason}); continue with --resume {self.run_dir}"
                )
            else:
                self.log(f"done: {self.files.final}")
            self._log_summary()
        self.procs.barrier()

    def _log_summary(self) -> None:
        """The end summary line (summary.json says the same)."""
        self.log(summary_line(run_summary(self, "stopped" if self.stopped else "finished"), self.clock.overheads()))


@dataclasses.dataclass
class _Meters:
    """Running sums of the loss components over this epoch's finite steps (per image)."""

    total: float = 0.0
    box: float = 0.0
    cls: float = 0.0
    landmark: float = 0.0
    count: int = 0
    images_per_s: float = 0.0

    def add(self, losses: dict, n: int) -> None:
        for k in LOSS_PARTS:
            setattr(self, k, getattr(self, k) + losses[k] * n)
        self.count += n

    def sums(self) -> list[float]:
        return [getattr(self, k) for k in LOSS_PARTS]

    def postfix(self, **extra) -> dict:
        shown = {k: f"{getattr(self, k) / self.count:.3f}" for k in LOSS_PARTS if self.count}
        return {**shown, "lr": f"{extra['lr']:.2e}", "img/s": f"{extra['img_s']:.1f}"}
