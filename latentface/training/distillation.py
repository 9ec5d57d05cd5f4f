"""Learning from the paired RGB image: an RGB RetinaFace that sees the pixels (the teacher) guides the
latent student on the same image, and the image itself can be a target.

Three terms, each with its weight (the first two need a teacher, the third only the image):

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
- **reconstruction**: the image rebuilt at full resolution from the bridge output (C1, stride 4) by a
  1x1 convolution to 3 x 4 x 4 channels and a PixelShuffle(4), L1 against the image scaled to about
  [-1, 1]: it asks the bridge to carry what lies *inside* a 16-px latent cell, where a face smaller
  than the cell is.

The teacher runs in eval mode without gradients (in half precision on CUDA when asked); it, the
adapters and the reconstruction head are not part of the student: the student's state dict,
checkpoints and exported graph are the same as without them.
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
    reconstruct: float = 0.0
    neg_ratio: int = 3
    min_negatives: int = 16


#: The reconstruction head's upsampling: C1 is at stride 4.
RECONSTRUCTION_SCALE = 4


def reconstruction_loss(rebuilt: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Mean L1 between ``rebuilt`` [B, 3, H, W] and RGB ``images`` (0..255) scaled by (x - 127.5) / 128."""
    if rebuilt.shape != images.shape:
        raise ValueError(f"reconstruction {list(rebuilt.shape)} and image {list(images.shape)} differ in shape")
    return (rebuilt.float() - (images.float() - 127.5) / 128).abs().mean()


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
    """The training-only part of learning from the paired image: the teacher's adapters (with a teacher), the
    reconstruction head (with a ``reconstruct`` weight), and the loss terms for one batch."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        weights: DistillationWeights,
        source: str = "teacher",
    ):
        super().__init__()
        if teacher is not None and teacher.anchor_layout != student.anchor_layout:
            raise TeacherError(
                f"{source}: its anchor layout differs from the student's; soft labels need the same anchors "
                "(train the teacher with the student's --anchors)"
            )
        self.weights = weights
        self.teacher_s = 0.0  # wall time of the teacher's forward passes: its cost, reported apart
        self.teacher = [teacher] if teacher is not None else []  # a list: never in this module's state
        student_channels = _map_channels(student)
        if teacher is not None:
            teacher_channels = _map_channels(teacher)
            self.adapters = nn.ModuleDict(
                {name: nn.Conv2d(student_channels[name], teacher_channels[name], 1) for name in FEATURE_MAPS}
            )
        self.reconstruction = None  # the head, with a reconstruct weight
        if weights.reconstruct > 0:
            self.reconstruction = nn.Sequential(
                nn.Conv2d(student_channels["C1"], 3 * RECONSTRUCTION_SCALE**2, 1),
                nn.PixelShuffle(RECONSTRUCTION_SCALE),
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
        """The weighted terms over the samples whose target carries a ``teacher_image``: ``distill_feature``
        and ``distill_soft`` with a teacher, ``reconstruct`` with a reconstruction head; each 0 (with
        gradients) when no sample has an image. ``positives`` [B, A]: the anchors the loss matched to faces."""
        paired = [i for i, t in enumerate(targets) if t.get("teacher_image") is not None]
        names = (["distill_feature", "distill_soft"] if self.teacher else []) + (
            ["reconstruct"] if self.reconstruction is not None else []
        )
        if not paired:
            zero = student_logits.sum() * 0.0
            return dict.fromkeys(names, zero)
        device = student_logits.device
        index = torch.tensor(paired, device=device)
        images = torch.stack([targets[i]["teacher_image"] for i in paired]).to(device)
        w = self.weights
        terms = {}
        if self.teacher:
            teacher_maps, teacher_logits = self.teacher_outputs(images)
            feature = sum(
                normalised_l2(self.adapters[name](student_maps[name][index]), teacher_maps[name])
                for name in FEATURE_MAPS
            ) / len(FEATURE_MAPS)
            face = student_logits[index].detach().float().softmax(-1)[..., 1]
            mask = distilled_anchors(positives[index], face, w.neg_ratio, w.min_negatives)
            soft = soft_label_loss(student_logits[index], teacher_logits, mask, w.temperature)
            terms.update(distill_feature=w.feature * feature, distill_soft=w.soft * soft)
        if self.reconstruction is not None:
            rebuilt = self.reconstruction(student_maps["C1"][index])
            terms["reconstruct"] = w.reconstruct * reconstruction_loss(rebuilt, images)
        return terms


def _map_channels(model: nn.Module) -> dict[str, int]:
    """Channels of each distilled map: C1 has layer1's width (the bridge lifts the latent to it), C2 layer2's."""
    return dict(zip(FEATURE_MAPS, CHANNELS[model.config["backbone"]]))
