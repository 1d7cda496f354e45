"""The classifier recipe: EfficientNet-B2, Adam + cosine annealing + weight decay + dropout, early stopping.

Reads top to bottom: load crops split by subject, choose where the weights start (by
default the shipped B2, fine-tuned; a checkpoint of another architecture or crop is refused
before anything is written), train with capture augmentation on class-balanced draws
against hard or soft targets, keep the checkpoint with the best validation loss, calibrate
the threshold on validation, measure on test, write the checkpoint and its card. Resumable:
the state of the last finished epoch is kept in ``OUT/resume.pt`` (tensors only, loaded
with ``weights_only=True``).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.atomic import write_aside
from pipeline.checkpoint import CARD_FILE, checkpoint_paths, load_weights, save_checkpoint
from pipeline.config import CONFIG_DIR, load_flat_config
from pipeline.errors import ConfigError, InputError
from pipeline.faces.crop import CropSpec
from pipeline.scoring.model import (
    DEFAULT_MODEL_DIR,
    Architecture,
    ModelCard,
    create_model,
    load_checkpoint,
    preprocess,
    read_card,
)
from training.data.datasets import AugmentSettings, CropSet, augment, load_crop_sets
from training.data.preprocess import read_crop_spec
from training.measure.evaluate import calibrate_and_measure, predict_probs, write_evaluation
from training.measure.metrics import cross_entropy

log = logging.getLogger(__name__)

INIT_SHIPPED = "shipped"  # fine-tune the shipped B2 (models/default)
INIT_SCRATCH = "scratch"  # random initialisation


class TrainConfig(BaseModel):
    """Every hyper-parameter of ``liveness train``; unknown keys fail."""

    model_config = ConfigDict(extra="forbid")

    input_size: int | None = Field(
        None, ge=32, le=640, description="null = the crops' size (preprocess --size); set, it must agree"
    )
    crop_scale: float | None = Field(
        None, gt=0, description="null = the crops' scale (preprocess --scale); set, it must agree"
    )
    architecture: Architecture = Field("efficientnet_b2", description="the network (the seed recipe: EfficientNet-B2)")
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    drop_rate: float = Field(0.3, ge=0, lt=1)
    patience: int = Field(3, ge=1)
    seed: int = 0
    threshold_method: str = "eer"
    sampling: Literal["uniform", "subject", "balanced"] = "balanced"
    init: str = Field(
        INIT_SHIPPED,
        min_length=1,
        description="shipped | scratch | a checkpoint directory to fine-tune | ImageNet weights (.safetensors)",
    )
    max_train_batches: int = Field(0, ge=0)
    augment: AugmentSettings = Field(
        default_factory=AugmentSettings, description="capture augmentation (training.data.datasets.AugmentSettings)"
    )
    version: str | None = None
    trained_on: str = ""
    limits: str = ""
    reproduce: str = ""


def load_train_config(path: Path | None, overrides: list[str]) -> TrainConfig:
    """``configs/train.yaml`` (or ``path``) with ``key=value`` overrides, validated."""
    return load_flat_config(TrainConfig, path or CONFIG_DIR / "train.yaml", overrides, "training")


@dataclass(frozen=True)
class InitSource:
    """Where a training run's weights start: a whole checkpoint to fine-tune (``checkpoint``),
    backbone weights such as ImageNet's (``backbone``), or neither (from scratch)."""

    checkpoint: Path | None = None
    backbone: Path | None = None
    version: str = ""
    named: str = ""  # the start as the user named it (the shipped one: models/default)

    def describe(self) -> str:
        """What the card's ``init`` says."""
        if self.checkpoint is not None:
            return f"fine-tuned from {self.version} ({self.named})"
        if self.backbone is not None:
            return f"backbone weights from {self.backbone}"
        return "scratch (random initialisation)"


def resolve_init(config: TrainConfig, spec: CropSpec) -> InitSource:
    """Where the weights start (``config.init``), checked against the network and the crops
    before anything is written: a checkpoint of another architecture or crop is a
    :class:`ConfigError` naming the mismatch."""
    if config.init == INIT_SCRATCH:
        return InitSource()
    path = DEFAULT_MODEL_DIR if config.init == INIT_SHIPPED else Path(config.init)
    if path.is_file() and path.suffix == ".safetensors" and not (path.parent / CARD_FILE).is_file():
        return InitSource(backbone=path)
    if not path.exists():
        raise ConfigError(f"init={config.init}: {path} does not exist (give shipped, scratch, a checkpoint or weights)")
    card = read_card(path)
    mismatches = [
        f"{what} {theirs} where this run has {ours}"
        for what, theirs, ours in (
            ("architecture", card.architecture, config.architecture),
            ("input size", card.input_size, spec.size),
            ("crop scale", card.crop_scale, spec.scale),
        )
        if theirs != ours
    ]
    if mismatches:
        raise ConfigError(
            f"init={config.init}: cannot fine-tune {path} ({card.version}): its {'; its '.join(mismatches)} "
            f"(crops: {spec.size} px, scale {spec.scale:g}). Cut the crops as it was "
            f"(mine --set size={card.input_size} --set scale={card.crop_scale:g}), or --set init=scratch"
        )
    named = "models/default" if config.init == INIT_SHIPPED else config.init
    return InitSource(checkpoint=checkpoint_paths(path)[0], version=card.version, named=named)


def _start_weights(model, source: InitSource) -> None:
    """Load the start weights into ``model``: all of a checkpoint's, or a backbone's where they fit."""
    if source.checkpoint is not None:
        load_weights(model, source.checkpoint, f"a fine-tuning start ({source.checkpoint})")
        log.info("start: %s", source.describe())
    elif source.backbone is not None:
        from safetensors.torch import load_file

        state = load_file(source.backbone)
        own = model.state_dict()
        usable = {k: v.float() for k, v in state.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(usable, strict=False)
        log.info("initialised %d/%d tensors from %s", len(usable), len(own), source.backbone)
    else:
        log.warning("training from scratch (init=scratch): weights are never downloaded")


def crop_spec_for(processed: Path, config: TrainConfig) -> CropSpec:
    """The crop the model is trained on: the one its crops were cut with (``crop_spec.json``);
    a :class:`ConfigError` when the config asks for another."""
    spec = read_crop_spec(processed)
    for key, wanted, made in (
        ("input_size", config.input_size, spec.size),
        ("crop_scale", config.crop_scale, spec.scale),
    ):
        if wanted is not None and wanted != made:
            raise ConfigError(
                f"{key}={wanted} conflicts with the crops in {processed} (made with {made}); "
                f"drop the setting or run `liveness preprocess` with the size and scale you want"
            )
    return spec


def load_training_sets(folders: list[Path], config: TrainConfig) -> tuple[CropSpec, dict[str, CropSet]]:
    """The crops of every folder, split by split; all of them must have been cut alike."""
    specs = [crop_spec_for(folder, config) for folder in folders]
    if len(set(specs)) != 1:
        made = ", ".join(f"{f} ({s.size} px, scale {s.scale:g})" for f, s in zip(folders, specs, strict=True))
        raise ConfigError(f"the crop folders were cut differently: {made}")
    parts = [load_crop_sets(folder, specs[0], seed=config.seed) for folder in folders]
    sets = {split: CropSet.concat([p[split] for p in parts]) for split in parts[0]}
    for split in ("train", "val"):
        if len(set(sets[split].labels.tolist())) < 2:
            raise InputError(
                f"the {split} split holds {len(sets[split])} crops of "
                f"{'no class' if not len(sets[split]) else 'one class only'}: training needs live and spoof "
                "crops in both train and val (add data or subjects)"
            )
    return specs[0], sets


def epoch_order(subjects: list[str], labels: np.ndarray, sampling: str, rng: np.random.Generator) -> np.ndarray:
    """The crops of one epoch, in order: a permutation (``uniform``); or as many draws with
    each subject equally likely (``subject``), so that a face photographed once weighs as much
    as one rendered a hundred times; or (``balanced``) each class equally likely and, within a
    class, each subject, so that an archive of 95% live sessions does not teach "live"."""
    n = len(subjects)
    if sampling == "uniform":
        return rng.permutation(n)
    keys = list(zip(labels.tolist(), subjects, strict=True)) if sampling == "balanced" else subjects
    counts = Counter(keys)
    weights = np.array([1.0 / counts[k] for k in keys])
    if sampling == "balanced":
        per_class = Counter(label for label, _ in set(keys))  # subjects per class
        weights /= np.array([per_class[label] for label in labels.tolist()])
    return rng.choice(n, size=n, replace=True, p=weights / weights.sum())


def soft_cross_entropy(logits, targets):
    """Cross-entropy against spoof-probability targets (a hard label is a target of 0 or 1;
    a teacher's soft label anything between), averaged over the batch."""
    import torch

    log_p = torch.log_softmax(logits.float(), dim=1)
    return -(targets * log_p[:, 1] + (1 - targets) * log_p[:, 0]).mean()


def validation_loss(model, card: ModelCard, val: CropSet) -> float:
    """The model's cross-entropy on the validation crops (their labels): what early stopping watches."""
    return cross_entropy(predict_probs(model, val.images, card), val.labels)


def train(data: Path | list[Path], out: Path, config: TrainConfig, *, progress: bool = True) -> dict:
    """Train, calibrate and evaluate on the crops of ``data`` (one folder or several);
    writes the checkpoint in ``out`` and returns the card's metrics."""
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    folders = data if isinstance(data, list) else [data]
    spec, sets = load_training_sets(folders, config)
    for split, crops in sets.items():
        log.info(
            "%s: %d crops (%d spoof) from %d subjects",
            split,
            len(crops),
            int(crops.labels.sum()),
            len(set(crops.subjects)),
        )
    source = resolve_init(config, spec)
    card = ModelCard(
        architecture=config.architecture, input_size=spec.size, crop_scale=spec.scale, drop_rate=config.drop_rate
    )
    model = create_model(card)
    _start_weights(model, source)
    model = model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
    out.mkdir(parents=True, exist_ok=True)
    resume_path = out / "resume.pt"
    best = {"val_loss": math.inf, "epoch": -1}
    start_epoch, stale = 0, 0
    history: list[dict] = []
    fingerprint = json.dumps(
        config.model_dump(exclude={"epochs", "patience", "version", "trained_on", "limits", "reproduce"}),
        sort_keys=True,
    )
    if resume_path.is_file():
        state = torch.load(resume_path, map_location=device, weights_only=True)
        if state.get("config") != fingerprint:
            raise ConfigError(
                f"{resume_path} was written by a run with another configuration; "
                "use the same settings to resume, or another --out"
            )
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, stale = int(state["epoch"]) + 1, int(state["stale"])
        best = {"val_loss": float(state["best_val_loss"]), "epoch": int(state["best_epoch"])}
        history = list(state["history"])
        rng = np.random.default_rng(config.seed + start_epoch)
        log.info("resuming after epoch %d (best so far: epoch %d)", start_epoch, best["epoch"])
    elif source.checkpoint is not None:  # fine-tuning keeps its start unless an epoch does better on validation
        best = {"val_loss": validation_loss(model, card, sets["val"]), "epoch": 0}
        save_checkpoint(model, card, out / "best")
        log.info("validation loss of the start: %.4f", best["val_loss"])
    use_amp = device.type == "cuda"
    train_set = sets["train"]
    for epoch in range(start_epoch, config.epochs):
        model.train()
        started, order = time.perf_counter(), epoch_order(train_set.subjects, train_set.labels, config.sampling, rng)
        batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        batches = [b for b in batches if len(b) > 1]
        if config.max_train_batches:
            batches = batches[: config.max_train_batches]
        total = 0.0
        for step, idx in enumerate(batches):
            batch = augment(train_set.images[idx], rng, labels=train_set.labels[idx], settings=config.augment)
            x = torch.from_numpy(preprocess(batch, card)).to(device)
            y = torch.from_numpy(train_set.targets[idx]).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = soft_cross_entropy(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step_loss = loss.item()
            total += step_loss
            if progress and step % 20 == 0:
                log.info("epoch %d step %d/%d loss %.4f", epoch + 1, step + 1, len(batches), step_loss)
        scheduler.step()
        val_loss = validation_loss(model, card, sets["val"])
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": total / max(len(batches), 1),
                "val_loss": val_loss,
                "seconds": time.perf_counter() - started,
            }
        )
        log.info(
            "epoch %d: train loss %.4f, val loss %.4f (%.0f s)",
            epoch + 1,
            history[-1]["train_loss"],
            val_loss,
            history[-1]["seconds"],
        )
        if val_loss < best["val_loss"]:
            best, stale = {"val_loss": val_loss, "epoch": epoch + 1}, 0
            save_checkpoint(model, card, out / "best")
        else:
            stale += 1
        resume = {
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "stale": stale,
            "best_val_loss": best["val_loss"],
            "best_epoch": best["epoch"],
            "history": history,
            "config": fingerprint,
        }
        write_aside(
            resume_path, partial(torch.save, resume)
        )  # a run killed while saving keeps the previous epoch's state
        if stale >= config.patience:
            log.info("early stop: validation loss did not improve for %d epochs", stale)
            break

    model, _ = load_checkpoint(out / "best", require_trained=False)
    threshold, metrics, scores, measured = calibrate_and_measure(model, card, sets, config.threshold_method)
    card = card.model_validate(
        card.model_dump()
        | {
            "threshold": threshold,
            "threshold_method": config.threshold_method,
            "trained": True,
            "version": config.version or datetime.now(UTC).strftime("b2-%Y%m%d-%H%M"),
            "init": source.describe(),
            "trained_on": config.trained_on or f"crops in {', '.join(str(f) for f in folders)}",
            "limits": config.limits,
            "reproduce": config.reproduce,
            "metrics": metrics,
            "best_epoch": best["epoch"],
            "history": history,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data": {
                split: {"crops": len(s), "spoof": int(s.labels.sum()), "subjects": len(set(s.subjects))}
                for split, s in sets.items()
            },
        }
    )
    save_checkpoint(model, card, out)
    write_evaluation(out, metrics, scores, measured, title=f"{card.version} on held-out {metrics['split']}")
    resume_path.unlink(missing_ok=True)
    shutil.rmtree(out / "best")  # our own intermediate copy; the final checkpoint is in `out`
    return metrics
