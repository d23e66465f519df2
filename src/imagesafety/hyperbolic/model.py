"""Hyperbolic CLIP models: light heads on frozen embeddings, or LoRA on both towers of a transformers CLIP.

Both lift Euclidean features onto the hyperboloid as HySAC does: scale by a learned alpha (log space),
then the exponential map at the origin, with a learned curvature (log space). Before every forward pass of
training the parameters are clamped as the authors' trainer does: curvature to [c0/10, 10 c0], the alphas to
<= 0 (features are never scaled up), the logit scale to [log(1/0.07), log(100)].
Attribute names follow the released HySAC checkpoints (`visual`, `textual`, `curv`, `visual_alpha`,
`textual_alpha`, `logit_scale`) so their state dicts load into `LoraHyperbolicCLIP` (see `checkpoint.py`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from imagesafety.hyperbolic import lorentz as L
from imagesafety.pixels import CLIP_MEAN, CLIP_STD, PixelSpec

#: LoRA settings of the released HySAC checkpoints.
RELEASED_LORA = {
    "r": 16,
    "lora_alpha": 1,
    "target_modules": ["k_proj", "v_proj", "out_proj", "fc1", "fc2", "patch_embedding"],
    "lora_dropout": 0.1,
    "bias": "none",
}


class HyperbolicBase(nn.Module):
    """Learned curvature, per-modality scales and the contrastive logit scale, all in log space."""

    def __init__(self, embed_dim: int, curv_init: float = 1.0, learn_curv: bool = True):
        super().__init__()
        self.curv = nn.Parameter(torch.tensor(float(curv_init)).log(), requires_grad=learn_curv)
        self._curv_bounds = (math.log(curv_init / 10), math.log(curv_init * 10))
        self.visual_alpha = nn.Parameter(torch.tensor(embed_dim**-0.5).log())
        self.textual_alpha = nn.Parameter(torch.tensor(embed_dim**-0.5).log())
        self.logit_scale = nn.Parameter(torch.tensor(1 / 0.07).log())

    #: parameters the authors exclude from weight decay
    NO_DECAY = ("curv", "visual_alpha", "textual_alpha", "logit_scale")

    def clamp_parameters(self, rule: str = "authors") -> None:
        """Keep the learned scalars in range: `authors` (before each forward pass: curvature, alphas <= 0, logit scale
        in
        [log(1/0.07), log 100]) or `v1` (this toolkit's first rule, after each step: curvature and the logit-scale
        maximum)."""
        with torch.no_grad():
            self.curv.clamp_(*self._curv_bounds)
            if rule == "authors":
                self.visual_alpha.clamp_(max=0.0)
                self.textual_alpha.clamp_(max=0.0)
                self.logit_scale.clamp_(min=math.log(1 / 0.07), max=math.log(100))
            else:
                self.logit_scale.clamp_(max=math.log(100))

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: weight decay on the trainable weights, none on curvature, alphas and logit scale (as the
        authors)."""
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if param.requires_grad:
                (no_decay if name in self.NO_DECAY else decay).append(param)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def forward(self, index, batches):
        """`batches(index)`: lets DistributedDataParallel wrap any batch function of this model."""
        return batches(index)

    @property
    def curvature(self) -> torch.Tensor:
        return self.curv.exp()

    def lift_image(self, feats: torch.Tensor) -> torch.Tensor:
        return L.exp_map0(feats * self.visual_alpha.exp(), self.curvature)

    def lift_text(self, feats: torch.Tensor) -> torch.Tensor:
        return L.exp_map0(feats * self.textual_alpha.exp(), self.curvature)


class HyperbolicHeads(HyperbolicBase):
    """Light mode: trainable linear projections on frozen, cached CLIP embeddings (CPU-friendly)."""

    def __init__(self, in_dim: int, embed_dim: int | None = None, curv_init: float = 1.0):
        embed_dim = embed_dim or in_dim
        super().__init__(embed_dim, curv_init)
        self.in_dim, self.embed_dim = in_dim, embed_dim
        self.image_proj = nn.Linear(in_dim, embed_dim, bias=False)
        self.text_proj = nn.Linear(in_dim, embed_dim, bias=False)
        if in_dim == embed_dim:  # start as plain CLIP geometry
            nn.init.eye_(self.image_proj.weight)
            nn.init.eye_(self.text_proj.weight)
        # CLIP embeddings are unit-norm: start the lift at norm ~1 rather than ~1/sqrt(d)
        with torch.no_grad():
            self.visual_alpha.fill_(0.0)
            self.textual_alpha.fill_(0.0)

    def encode_image(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.lift_image(self.image_proj(embeddings))

    def encode_text(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.lift_text(self.text_proj(embeddings))


class LoraHyperbolicCLIP(HyperbolicBase):
    """Full mode: LoRA adapters (peft) on both towers of a transformers CLIP, as in the paper."""

    def __init__(self, backbone: str, lora: dict | None = None, curv_init: float = 1.0, device: str | None = None):
        from peft import LoraConfig, get_peft_model
        from transformers import AutoTokenizer, CLIPTextModelWithProjection, CLIPVisionModelWithProjection

        visual = CLIPVisionModelWithProjection.from_pretrained(backbone)
        textual = CLIPTextModelWithProjection.from_pretrained(backbone)
        embed_dim = int(visual.config.projection_dim)
        super().__init__(embed_dim, curv_init)
        config = LoraConfig(**(lora or RELEASED_LORA))
        self.visual = get_peft_model(visual, config)
        self.textual = get_peft_model(textual, config)
        self.tokenizer = AutoTokenizer.from_pretrained(backbone)
        self.backbone, self.embed_dim = backbone, embed_dim
        # the authors preprocess with transformers' CLIPProcessor: shortest edge, centre crop, CLIP's statistics
        self.pixel_spec = PixelSpec(
            int(visual.config.image_size), CLIP_MEAN, CLIP_STD, "shortest_edge", "bicubic", "floor"
        )
        if device:
            self.to(device)

    def patch_embedding(self) -> nn.Conv2d:
        """The vision tower's patch convolution (inside its LoRA wrapper)."""
        wrapper = self.visual.get_submodule("base_model.model.vision_model.embeddings.patch_embedding")
        return wrapper.base_layer

    def add_patch_bias(self) -> None:
        """Give the patch convolution a (frozen) bias: peft 0.4.0 wrapped it with one, randomly initialised, and the
        authors' checkpoints carry it; CLIP's own patch embedding has none."""
        conv = self.patch_embedding()
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels, device=conv.weight.device), requires_grad=False)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised pixels (B, 3, S, S), as `pixel_spec.normalize` gives them -> points on the hyperboloid."""
        return self.lift_image(self.visual(pixel_values=pixel_values).image_embeds)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        max_length = self.textual.config.max_position_embeddings
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        feats = self.textual(
            input_ids=tokens["input_ids"].to(self.curv.device),
            attention_mask=tokens["attention_mask"].to(self.curv.device),
        ).text_embeds
        return self.lift_text(feats)
