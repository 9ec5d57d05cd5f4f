"""Learning from an RGB teacher: an RGB RetinaFace that sees the pixels guides the latent student
on the same image.

Two terms, each with its weight:

- **feature**: the student's stride-4 and stride-8 maps (``C1``, the bridge output, and ``C2``,
  layer2's) against the teacher's (its stem + layer1 and layer2) through 1x1 adapters that exist
  only during training. The distance is the *normalised* L2 — ``|s/|s| - t/|t||^2`` per location,
  i.e. ``2 (1 - cos)`` — because the two networks' activations have unrelated scales (their inputs
  are normalised differently): the term asks for the same direction of the feature vector at each
  place, not the same magnitude, and stays in [0, 4] whatever the teacher's scale.
- **soft labels**: the classification head on the anchors, KL(teacher || student) of the
  face/background softmax at a temperature T (times T^2, as Hinton et al., so its gradient keeps
  its scale), over the anchors the matching makes positive plus, per image, the hard negatives:
  the negatives the *student* scores most face-like (``neg_ratio`` per positive, at least
  ``min_negatives``), as the detection loss mines them. Not the teacher's: its most face-like negatives
  are the anchors next to a face, and soft labels that raise the student's scores there, where no box
  is regressed, put confident, badly placed boxes above the good ones: the likely cause of the collapse
  the codec study measured with them (AP@0.5 0.11 against 0.32 without a teacher, two seeds).

The teacher runs in eval mode without gradients (in half precision on CUDA when asked); it and the
adapters are not part of the student: the student's state dict, checkpoints and exported graph are
the same as without distillation.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from latentface.checkpoint import CheckpointError
from latentface.errors import LatentfaceError
from latentface.model.backbone import CHANNELS
from latentface.model.builder import model_from_checkpoint

#: The student maps distilled and the teacher maps they follow (same stride: 4 and 8 pixels).
FEATURE_MAPS = ("C1", "C2")


class TeacherError(LatentfaceError, ValueError):
    """A teacher checkpoint that cannot guide this student; the message names the file."""


@dataclass(frozen=True)
class DistillationWeights:
    feature: float = 1.0
    soft: float = 1.0
    temperature: float = 2.0
    neg_ratio: int = 3
    min_negatives: int = 16


def normalised_l2(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over batch and locations of ``|s/|s| - t/|t||^2`` along channels ([B, C, H, W] each)."""
    if student.shape != teacher.shape:
        raise ValueError(f"feature maps differ in shape: student {list(student.shape)}, teacher {list(teacher.shape)}")
    return (F.normalize(student, dim=1) - F.normalize(teacher, dim=1)).pow(2).sum(1).mean()


def distilled_anchors(
    positives: torch.Tensor, student_face: torch.Tensor, neg_ratio: int, min_negatives: int
) -> torch.Tensor:
    """Mask [B, A]: the positive anchors plus each image's hardest negatives: those the *student* scores most
    face-like (its false positives, which the teacher's soft label corrects)."""
    chosen = positives.clone()
    for b in range(positives.shape[0]):
        count = min(max(neg_ratio * int(positives[b].sum()), min_negatives), int((~positives[b]).sum()))
        if count:
            scores = student_face[b].masked_fill(positives[b], -float("inf"))
            chosen[b, scores.topk(count).indices] = True
    return chosen


def soft_label_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T^2 x mean over the ``mask`` anchors of KL(softmax(teacher / T) || softmax(student / T)); 0 without any."""
    if not mask.any():
        return student_logits.sum() * 0.0
    t = F.log_softmax(teacher_logits[mask].float() / temperature, dim=-1)
    s = F.log_softmax(student_logits[mask].float() / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2


def load_teacher(path: str | os.PathLike, device: torch.device, half: bool = False) -> nn.Module:
    """The RGB RetinaFace of checkpoint ``path``, frozen in eval mode (half precision on CUDA if ``half``)."""
    if not os.path.isfile(path):
        raise TeacherError(f"--teacher {path}: no such file")
    try:
        teacher, payload = model_from_checkpoint(path)
    except CheckpointError as exc:
        raise TeacherError(f"--teacher {path}: {exc}") from None
    kind = payload["config"].get("kind")
    if kind != "rgb":
        raise TeacherError(
            f"--teacher {path}: a {kind} checkpoint; the teacher must be an RGB RetinaFace "
            "(latentface train --input rgb)"
        )
    teacher.eval().requires_grad_(False).to(device)
    if half and device.type == "cuda":
        teacher.half()
    return teacher


class Distiller(nn.Module):
    """The training-only part of distillation: the adapters, and the loss terms for one batch."""

    def __init__(self, student: nn.Module, teacher: nn.Module, weights: DistillationWeights, source: str = "teacher"):
        super().__init__()
        if teacher.anchor_layout != student.anchor_layout:
            raise TeacherError(
                f"{source}: its anchor layout differs from the student's; soft labels need the same anchors "
                "(train the teacher with the student's --anchors)"
            )
        self.weights = weights
        self.teacher_s = 0.0  # wall time of the teacher's forward passes: its cost, reported apart
        self.teacher = [teacher]  # a list: not a submodule, so never in this module's state or parameters
        student_channels = _map_channels(student)
        teacher_channels = _map_channels(teacher)
        self.adapters = nn.ModuleDict(
            {name: nn.Conv2d(student_channels[name], teacher_channels[name], 1) for name in FEATURE_MAPS}
        )

    @torch.no_grad()
    def teacher_outputs(self, images: torch.Tensor):
        """The teacher's maps and head outputs for RGB ``images`` [B, 3, H, W] (0..255)."""
        teacher = self.teacher[0]
        dtype = next(teacher.parameters()).dtype
        started = time.perf_counter()
        outputs, maps = teacher(images.to(dtype), return_maps=True)
        result = {k: maps[k].float() for k in FEATURE_MAPS}, outputs.logits.float()
        if images.is_cuda:
            torch.cuda.synchronize(images.device)
        self.teacher_s += time.perf_counter() - started
        return result

    def forward(
        self,
        student_maps: dict[str, torch.Tensor],
        student_logits: torch.Tensor,
        positives: torch.Tensor,
        targets: list[dict],
    ) -> dict[str, torch.Tensor]:
        """The weighted terms (``distill_feature``, ``distill_soft``) over the samples whose target carries a
        ``teacher_image``; both 0 (with gradients) when none does. ``positives`` [B, A]: the anchors the
        detection loss matched to faces."""
        paired = [i for i, t in enumerate(targets) if t.get("teacher_image") is not None]
        if not paired:
            zero = student_logits.sum() * 0.0
            return {"distill_feature": zero, "distill_soft": zero}
        device = student_logits.device
        index = torch.tensor(paired, device=device)
        images = torch.stack([targets[i]["teacher_image"] for i in paired]).to(device)
        teacher_maps, teacher_logits = self.teacher_outputs(images)
        feature = sum(
            normalised_l2(self.adapters[name](student_maps[name][index]), teacher_maps[name]) for name in FEATURE_MAPS
        ) / len(FEATURE_MAPS)
        w = self.weights
        face = student_logits[index].detach().float().softmax(-1)[..., 1]
        mask = distilled_anchors(positives[index], face, w.neg_ratio, w.min_negatives)
        soft = soft_label_loss(student_logits[index], teacher_logits, mask, w.temperature)
        return {"distill_feature": w.feature * feature, "distill_soft": w.soft * soft}


def _map_channels(model: nn.Module) -> dict[str, int]:
    """Channels of each distilled map: C1 has layer1's width (the bridge lifts the latent to it), C2 layer2's."""
    return dict(zip(FEATURE_MAPS, CHANNELS[model.config["backbone"]]))
