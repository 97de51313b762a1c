"""The one training loop, for every task and configuration: ``train(dataset, config, task, fold)``.

A step: fetch batch ``step`` -> draw one timestep and one noise tensor per sample -> noise the
images -> ``model(task.model_input(x_t, task.condition(image, paint_mask)), t)`` -> masked,
min-SNR-weighted MSE -> backward -> clip the gradient norm to 1 -> AdamW -> EMA update. The task
only enters through ``ldiff/tasks/`` (conditioning, masks, validation sampling); the trainer never asks which task it runs.

Determinism. Timestep and noise of sample ``i`` of step ``s`` come from a generator seeded with
``(seed, s, i)``, where ``i`` is the sample's *global* index (rank r holds ``[r*b, (r+1)*b)``); the
data interface keys its samples the same way, and anything drawing from torch's global RNG (dropout)
is reseeded from ``(seed, s, rank)`` each step. So a run is a function of its seed and step counter:
a resumed run repeats the uninterrupted one, whatever the number of data workers.

Loss. Per sample, the mean squared error over the voxels of its ``loss_mask`` (and all channels);
then ``mean_i(w(t_i) * mse_i)`` over the batch with the min-SNR-gamma weights of the schedule. The
batch mean divides by the batch size, not by the sum of the weights: with that, the mean over W
ranks of their per-rank losses (which DDP's gradient averaging computes) *is* the loss of one
process holding all W*b samples, so DDP with W ranks of batch b makes the same update as one
process with batch W*b, up to floating-point summation order. A sample with an empty loss mask
contributes 0.

Precision: bf16 autocast on CUDA (no loss scaling needed), fp32 on the CPU. The loss is computed
in fp32.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ldiff.devices import resolve_device
from ldiff.diffusion import NoiseSchedule
from ldiff.errors import LdiffError
from ldiff.io import save_json_atomic
from ldiff.io.model_files import write_model_json
from ldiff.masks.library_cache import load_or_build_lesion_library
from ldiff.networks import build_network
from ldiff.preprocessing.standardisation import training_landmarks
from ldiff.seeds import keyed_seed
from ldiff.tasks import Task
from ldiff.training import checkpoints
from ldiff.training.augmentation import AUGMENTATION_PRESETS
from ldiff.training.data import SAMPLE_KEYS, SampleSource, training_batches, validation_samples
from ldiff.training.distributed import (
    DistributedContext,
    all_reduce_mean,
    barrier,
    initialise,
    launched_by_torchrun,
    shutdown,
    spawn,
)
from ldiff.training.ema import ExponentialMovingAverage
from ldiff.training.lr_schedule import WarmupCosineSchedule
from ldiff.training.pretrained import load_pretrained_weights, pretrained_settings
from ldiff.training.progress import TrainingLog, plot_progress
from ldiff.training.settings import SLICE_AXES, TrainingRun, TrainingSettings, borrowed_lesion_library, resolve_run
from ldiff.training.splits import get_split
from ldiff.training.validation import Validator

logger = logging.getLogger("ldiff")

# Separate random streams keyed by the same (seed, step, index): the data interface uses the bare
# key; these tags keep the diffusion noise and the global reseeding independent of it.
NOISE_STREAM = 1
GLOBAL_RNG_STREAM = 2
# progress.png is redrawn at checkpoints at most this often (drawing takes about a second on a CPU).
PLOT_INTERVAL_S = 60.0


def keyed_noise_and_timesteps(sample_shape: tuple[int, ...], first_index: int, batch_size: int, seed: int, step: int,
                              num_train_timesteps: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise ``(B, *sample_shape)`` ~ N(0, 1) and timesteps ``(B,)`` in ``[0, T)`` for global samples
    ``first_index .. first_index + B - 1`` of ``step``; each sample's draws depend only on its key."""
    noises, timesteps = [], []
    for index in range(first_index, first_index + batch_size):
        generator = torch.Generator(device=device).manual_seed(keyed_seed(seed, step, index, NOISE_STREAM))
        timesteps.append(torch.randint(0, num_train_timesteps, (1,), generator=generator, device=device))
        noises.append(torch.randn(sample_shape, generator=generator, device=device))
    return torch.stack(noises), torch.cat(timesteps)


def diffusion_loss(model: nn.Module, task: Task, schedule: NoiseSchedule, batch: dict[str, torch.Tensor],
                   noise: torch.Tensor, timesteps: torch.Tensor, autocast: bool = False) -> torch.Tensor:
    """The training loss of one batch (see the module docstring), a scalar fp32 tensor.

    Args:
        batch: ``image`` (B, C, ...) in [-1, 1]; ``paint_mask`` and ``loss_mask`` (B, 1, ...) 0/1.
        noise: (B, C, ...) standard normal; timesteps: (B,) long, one per sample (per stack for p3d).
        autocast: run the network under bf16 autocast (CUDA).
    """
    image, loss_mask = batch["image"], batch["loss_mask"]
    noisy = schedule.add_noise(image, noise, timesteps)
    model_input = task.model_input(noisy, task.condition(image, batch["paint_mask"]))
    with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=autocast):
        output = model(model_input, timesteps)
    target = schedule.training_target(image, noise, timesteps)
    squared_error = (output.float() - target).pow(2) * loss_mask
    voxels = loss_mask.flatten(1).sum(1) * image.shape[1]
    per_sample = squared_error.flatten(1).sum(1) / voxels.clamp(min=1.0)
    return (schedule.loss_weights(timesteps) * per_sample).mean()


class Trainer:
    """Trains one :class:`TrainingRun` with :class:`TrainingSettings` on one rank of ``context``.

    Args:
        run: dataset, task, configuration, fold and output folder (see ``settings.resolve_run``).
        settings: the resolved training settings.
        context: this process's rank, world size and device.
        resume_from: a loaded ``checkpoint_latest.pth`` to continue from, or None.
    """

    def __init__(self, run: TrainingRun, settings: TrainingSettings, context: DistributedContext,
                 resume_from: dict[str, Any] | None = None) -> None:
        self.run_info, self.settings, self.context = run, settings, context
        self.device = context.device
        self.task = run.task.with_lesion_level_cue(settings.lesion_level_cue)  # checked in train()
        self.schedule = NoiseSchedule.from_dict(run.plans["diffusion"])
        self.per_rank_batch = settings.batch_size // context.world_size
        torch.manual_seed(keyed_seed(settings.seed, 0, GLOBAL_RNG_STREAM))  # identical initial weights on every rank
        self.network = build_network(run.network_config).to(self.device)
        if resume_from is None and settings.pretrained_weights is not None:  # the EMA below starts from them too
            load_pretrained_weights(self.network, settings.pretrained_weights)
        self.model: nn.Module = self.network
        if context.is_distributed:
            self.model = nn.parallel.DistributedDataParallel(
                self.network, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=settings.learning_rate,
                                           weight_decay=settings.weight_decay)
        self.lr_schedule = WarmupCosineSchedule(self.optimizer, settings.learning_rate, settings.warmup_steps,
                                                settings.num_training_steps)
        self.ema = ExponentialMovingAverage(self.network, settings.ema_decay, settings.ema_warmup)
        self.log = TrainingLog(settings.log_every)
        self.start_step = 0
        self._last_plot = time.monotonic()  # the first picture after PLOT_INTERVAL_S (or at the end)
        if resume_from is not None:
            self._restore(resume_from)
        self.source, self.validator = self._data()

    # ---- set-up ----------------------------------------------------------------------------------
    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.network.load_state_dict(checkpoint["model"])
        self.ema.load_state_dict(checkpoint["ema"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.lr_schedule.load_state_dict(checkpoint["lr_schedule"])
        self.lr_schedule.total_steps = self.settings.num_training_steps  # --steps may extend a resumed run
        self.log.load_state_dict(checkpoint["training_log"])
        checkpoints.restore_rng_state(checkpoint["rng"])
        self.start_step = int(checkpoint["step"])
        logger.info("resuming %s at step %d", self.run_info.output_folder, self.start_step)

    def _data(self) -> tuple[Any, Validator | None]:
        """The training SampleSource and (rank 0) the Validator; cached files are made by rank 0 first."""
        run, settings = self.run_info, self.settings

        def split_and_library() -> tuple[list[str], list[str], Any]:
            train_ids, validation_ids = get_split(run.preprocessed_folder, list(run.case_ids), run.fold)
            library = None
            if settings.lesion_shapes_from is not None:
                library = borrowed_lesion_library(settings.lesion_shapes_from, self.task)
            elif self.task.borrows_lesion_shapes:  # e.g. filling masks take real shapes of the training cases
                library = load_or_build_lesion_library(run.preprocessed_folder, run.plans["data_identifier"], train_ids)
            return train_ids, validation_ids, library

        # Rank 0 writes the cached splits and lesion library; the other ranks read them afterwards.
        if self.context.is_main:
            train_ids, validation_ids, library = split_and_library()
            barrier(self.context)
        else:
            barrier(self.context)
            train_ids, validation_ids, library = split_and_library()
        # What prediction standardises a new scan's intensities to (ldiff.preprocessing.standardisation).
        self.intensity_landmarks = training_landmarks(run.data_folder, train_ids) if self.context.is_main else None
        source = SampleSource(run.data_folder, train_ids, run.plans, run.config_name, self.task, settings.seed,
                              augment=True, lesion_library=library,
                              augmentation=AUGMENTATION_PRESETS[settings.augmentation],
                              views=SLICE_AXES[settings.slice_axes])
        validation = None
        if self.context.is_main and settings.num_validation_samples > 0:
            samples = validation_samples(run.data_folder, validation_ids, run.plans, run.config_name, self.task,
                                         settings.num_validation_samples, seed=settings.seed, lesion_library=library)
            validation = Validator(samples, self.task, self.schedule, settings.validation_sampler, self.device,
                                   batch_size=self.per_rank_batch, seed=settings.seed)
        return source, validation

    def _write_run_files(self) -> None:
        run, folder = self.run_info, self.run_info.output_folder
        save_json_atomic(run.plans, folder / "plans.json")
        save_json_atomic(run.dataset_json, folder / "dataset.json")
        write_model_json(self.model_description(), folder)
        save_json_atomic({**self.settings.to_dict(), "world_size": self.context.world_size},
                         folder / "training_settings.json")

    def model_description(self) -> dict[str, Any]:
        run = self.run_info
        return checkpoints.model_description(run.plans, run.dataset_json, run.dataset_name, self.task, run.config_name,
                                             run.network_config, self.settings.to_dict(), self.intensity_landmarks)

    # ---- the loop --------------------------------------------------------------------------------
    def train_step(self, step: int, batch: dict[str, torch.Tensor]) -> float:
        """One update at ``step``; returns the loss averaged over all ranks."""
        settings = self.settings
        torch.manual_seed(keyed_seed(settings.seed, step, self.context.rank, GLOBAL_RNG_STREAM))
        batch = {key: batch[key].to(self.device, non_blocking=True) for key in SAMPLE_KEYS}
        noise, timesteps = keyed_noise_and_timesteps(
            tuple(batch["image"].shape[1:]), self.context.rank * self.per_rank_batch, self.per_rank_batch,
            settings.seed, step, self.schedule.num_train_timesteps, self.device)
        self.model.train()
        self.lr_schedule.apply(step)
        self.optimizer.zero_grad(set_to_none=True)
        loss = diffusion_loss(self.model, self.task, self.schedule, batch, noise, timesteps,
                              autocast=self.device.type == "cuda")
        loss.backward()
        nn.utils.clip_grad_norm_(self.network.parameters(), settings.gradient_clip)
        self.optimizer.step()
        self.ema.update(self.network)
        return float(all_reduce_mean(loss.detach(), self.context))

    def validate(self, step: int) -> dict[str, Any]:
        """Score the EMA weights on the held-out samples and log the result (rank 0)."""
        evaluation_network = build_network(self.run_info.network_config).to(self.device)
        self.ema.copy_to(evaluation_network)
        metrics = self.validator.evaluate(evaluation_network)
        entry = self.log.record_validation(step, metrics)
        logger.info("step %d: validation SSIM %s, PSNR %s dB", step, _fmt(metrics["ssim"]), _fmt(metrics["psnr"]))
        return entry

    def save_latest(self, completed_steps: int, force_plot: bool = False) -> None:
        state = checkpoints.latest_checkpoint_state(
            step=completed_steps, model_state=self.network.state_dict(), ema_state=self.ema.state_dict(),
            optimizer_state=self.optimizer.state_dict(), lr_schedule_state=self.lr_schedule.state_dict(),
            training_log_state=self.log.state_dict(), settings=self.settings.to_dict(), identity=self.run_info.identity)
        checkpoints.save_checkpoint(state, self.run_info.output_folder / checkpoints.LATEST_NAME)
        self.write_progress(force_plot)

    def write_progress(self, force_plot: bool = False) -> None:
        """Write training_log.json, and progress.png if forced or PLOT_INTERVAL_S have passed."""
        folder = self.run_info.output_folder
        self.log.save(folder / "training_log.json")
        if not force_plot and time.monotonic() - self._last_plot < PLOT_INTERVAL_S:
            return
        self._last_plot = time.monotonic()
        title = f"{self.run_info.dataset_name} {self.task.name} {self.run_info.config_name} fold {self.run_info.fold}"
        plot_progress(self.log, folder / "progress.png", title)

    def run(self) -> Path:
        """Train from ``start_step`` to ``num_training_steps``; returns the results folder."""
        settings, main, total = self.settings, self.context.is_main, self.settings.num_training_steps
        if main:
            self._write_run_files()
        bar = tqdm(total=total, initial=self.start_step, unit="step", disable=not main, dynamic_ncols=True,
                   desc=f"{self.task.name} {self.run_info.config_name}")
        batches = training_batches(self.source, self.per_rank_batch, self.start_step, self.context.rank,
                                   self.context.world_size, settings.num_workers)
        try:
            for step in range(self.start_step, total):
                started = time.perf_counter()
                delivered, batch = next(batches)
                data_wait = time.perf_counter() - started
                if delivered != step:
                    raise RuntimeError(f"the data stream delivered step {delivered} at step {step}.")
                loss = self.train_step(step, batch)
                entry = self.log.record_step(step, loss, self.lr_schedule.lr_at(step), time.perf_counter() - started,
                                             data_wait)
                bar.update(1)
                if entry is not None:
                    bar.set_postfix(loss=f"{entry['loss']:.4f}", lr=f"{entry['lr']:.2e}")
                if main and self.validator is not None and _due(step, settings.validate_every):
                    self.validate(step)
                    self.write_progress()
                if main and _due(step, settings.checkpoint_every):
                    self.save_latest(step + 1)
        finally:
            batches.close()
            bar.close()
        if main:
            self._finish(total)
        barrier(self.context)
        return self.run_info.output_folder

    def _finish(self, total: int) -> None:
        validations = self.log.validation_entries()
        if self.validator is not None and (not validations or validations[-1]["step"] != total - 1):
            self.validate(total - 1)
        self.save_latest(total, force_plot=True)
        final = checkpoints.final_checkpoint_state(total, self.ema.averaged_state_dict(), self.model_description())
        checkpoints.save_checkpoint(final, self.run_info.output_folder / checkpoints.FINAL_NAME)
        wait = self.log.data_wait_fraction()
        logger.info("finished %d steps in %s (data wait %.1f %% of step time)", total, self.run_info.output_folder,
                    100 * wait if np.isfinite(wait) else float("nan"))


def _due(step: int, every: int) -> bool:
    """Whether something done every ``every`` steps (0 = never) is due after update ``step``."""
    return every > 0 and (step + 1) % every == 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# ---- the library entry point ---------------------------------------------------------------------
def _train_process(run: TrainingRun, settings: TrainingSettings, device_type: str, resume: bool) -> None:
    """Body of every training process (the only one, one of torchrun's, or one spawned by ldiff)."""
    context = initialise(device_type)
    try:
        checkpoint = None
        if resume:
            checkpoint = checkpoints.load_checkpoint(run.output_folder / checkpoints.LATEST_NAME, context.device)
        Trainer(run, settings, context, checkpoint).run()
    finally:
        shutdown()


def train(dataset: str | int, config_name: str, task_name: str, fold: int | str = 0, continue_training: bool = False,
          num_processes: int = 1, **overrides: Any) -> Path:
    """Train ``task_name`` on ``config_name`` of a preprocessed dataset; returns the results folder.

    Args:
        dataset: id (1, "001") or name ("Dataset001_MSPhantom").
        config_name: ``"2d"`` or ``"p3d"``.
        task_name: ``cond_fill``, ``uncond_fill``, ``cond_synth`` or ``uncond_synth``.
        fold: 0-4 (or fewer with fewer cases) or ``"all"``.
        continue_training: resume from ``checkpoint_latest.pth`` (its saved settings, updated by
            ``overrides``); without a checkpoint the run starts from scratch.
        num_processes: data-parallel processes to spawn on this machine (one per GPU on CUDA).
            Under ``torchrun`` leave it at 1: the environment says the rank and world size.
        overrides: any :class:`TrainingSettings` field, e.g. ``num_training_steps=2000, batch_size=8``;
            ``pretrained_weights=MODEL_FOLDER`` fine-tunes from a trained model (see ``pretrained.py``).

    Raises:
        LdiffError: one sentence for every user error (see ``settings.resolve_run``).
    """
    run = resolve_run(dataset, config_name, task_name, fold)
    latest = run.output_folder / checkpoints.LATEST_NAME
    saved_settings, resume = None, False
    if continue_training and latest.is_file():
        checkpoint = checkpoints.load_checkpoint(latest)
        checkpoints.check_checkpoint_matches(checkpoint, latest, run.dataset_name, run.task.name, run.config_name)
        saved_settings, resume = checkpoint["settings"], True
        del checkpoint
    elif continue_training:
        logger.warning("--c: no %s in %s yet; starting from scratch", checkpoints.LATEST_NAME, run.output_folder)
    elif latest.is_file():
        logger.warning("%s exists and will be overwritten (use --c to continue it)", latest)
    requested = overrides.pop("pretrained_weights", None)
    overrides.update(pretrained_settings(requested, run, resume, saved_settings))  # checked before any process starts
    settings = TrainingSettings.from_plan(run.configuration, saved_settings, overrides)
    device_type = resolve_device(settings.device, max(num_processes, 1))
    world_size = num_processes if num_processes > 1 else int(os.environ.get("WORLD_SIZE", "1"))
    if settings.batch_size % world_size:
        # The batch is global: W processes of batch b equal one of batch W*b (see the module docstring).
        raise LdiffError(f"The batch size {settings.batch_size} cannot be split evenly over {world_size} processes; "
                         f"choose --batch-size as a multiple of {world_size}.")
    if settings.lesion_shapes_from is not None:
        borrowed_lesion_library(settings.lesion_shapes_from, run.task)  # fails here, not in a spawned process
    if settings.lesion_level_cue and not run.task.accepts_lesion_level_cue:
        raise LdiffError(f"--lesion-level-cue is for conditional synthesis (cond_synth), not {run.task.name}.")
    if num_processes > 1:
        if launched_by_torchrun():
            raise LdiffError("Under torchrun, leave --num-gpus/--num-processes out: torchrun starts the processes.")
        _spawn_checked(num_processes, (run, settings, device_type, resume))
    else:
        _train_process(run, settings, device_type, resume)
    return run.output_folder


def _spawn_checked(num_processes: int, arguments: tuple) -> None:
    """Spawn the processes; a user error raised in one of them stays one sentence."""
    from torch.multiprocessing import ProcessRaisedException

    try:
        spawn(_train_process, num_processes, arguments)
    except ProcessRaisedException as error:
        last_line = str(error).strip().splitlines()[-1]
        prefix = f"{LdiffError.__module__}.{LdiffError.__name__}: "
        if last_line.startswith(prefix):
            raise LdiffError(last_line[len(prefix):]) from None
        raise
