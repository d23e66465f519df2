"""Editors behind one interface: `edit(image, plan, seed) -> image`.

`MaskCompositeEditor` is deterministic (a region is blurred away, filled, or given a patch), for
pipelines you can check by eye and for tests; model-based editors implement the same protocol.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageFilter

from imagesafety import hub
from imagesafety.pairs.plans import EditPlan


@runtime_checkable
class Editor(Protocol):
    name: str
    config: dict[str, Any]

    def edit(self, image: Image.Image, plan: EditPlan, seed: int) -> Image.Image: ...

    def region(
        self, image: Image.Image, plan: EditPlan, seed: int
    ) -> np.ndarray | None: ...  # bool mask of what it may change


@runtime_checkable
class EditsRegion(Protocol):
    """Editors that change a box (fractions left, top, right, bottom) and nothing else: the box can come from the
    evidence (`--region evidence:SPEC`)."""

    box: tuple[float, float, float, float]

    def with_box(self, box: tuple[float, float, float, float]) -> Editor: ...


class MaskCompositeEditor:
    """Edits a box (fractions of width/height: left, top, right, bottom): `fill` a colour, `blur` it, or paste `patch`.

    For additions (target unsafe) the box gets `patch` (or `fill`); for removals it is blurred (or filled).
    The seed jitters the box by up to `jitter` of the image size, so retries differ.
    """

    def __init__(
        self,
        box: tuple[float, float, float, float] = (0.3, 0.3, 0.7, 0.7),
        fill: tuple[int, int, int] | None = None,
        patch: Image.Image | None = None,
        blur: float = 12.0,
        jitter: float = 0.05,
    ):
        self.box, self.fill, self.patch, self.blur, self.jitter = tuple(box), fill, patch, float(blur), float(jitter)
        self.name = "mask-composite"
        self.config = {
            "box": self.box,
            "fill": fill,
            "patch": patch is not None,
            "blur": self.blur,
            "jitter": self.jitter,
        }

    def _pixels(self, image: Image.Image, seed: int) -> tuple[int, int, int, int]:
        rng = np.random.default_rng(seed)
        dx, dy = rng.uniform(-self.jitter, self.jitter, 2) if self.jitter else (0.0, 0.0)
        left, top, right, bottom = self.box
        w, h = image.size
        box = (left + dx, top + dy, right + dx, bottom + dy)
        x0, y0, x1, y1 = (int(round(np.clip(v, 0, 1) * s)) for v, s in zip(box, (w, h, w, h)))
        return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)

    def with_box(self, box: tuple[float, float, float, float]) -> MaskCompositeEditor:
        """The same edit on another box, without jitter (the box is already the region to change)."""
        return MaskCompositeEditor(box, self.fill, self.patch, self.blur, jitter=0.0)

    def region(self, image: Image.Image, plan: EditPlan, seed: int) -> np.ndarray:
        x0, y0, x1, y1 = self._pixels(image, seed)
        mask = np.zeros((image.height, image.width), dtype=bool)
        mask[y0:y1, x0:x1] = True
        return mask

    def edit(self, image: Image.Image, plan: EditPlan, seed: int) -> Image.Image:
        out = image.convert("RGB").copy()
        x0, y0, x1, y1 = self._pixels(out, seed)
        if plan.target_label == 1 and self.patch is not None:
            out.paste(self.patch.convert("RGB").resize((x1 - x0, y1 - y0)), (x0, y0))
        elif self.fill is not None:
            out.paste(Image.new("RGB", (x1 - x0, y1 - y0), tuple(self.fill)), (x0, y0))
        else:
            out.paste(out.crop((x0, y0, x1, y1)).filter(ImageFilter.GaussianBlur(self.blur)), (x0, y0))
        return out


class DiffusersEditor:
    """An instruction-editing diffusers pipeline (InstructPix2Pix, FLUX.1 Kontext, Qwen-Image-Edit, ...) by hub id
    or local folder: `pipe(prompt=instruction, image=image, generator=seeded)`; the seed is recorded with the pair.
    Outputs that differ from the input size only by the pipeline's rounding are resized back."""

    def __init__(
        self,
        model: str,
        steps: int = 20,
        guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        device: str | None = None,
        dtype: str = "float32",
    ):
        import torch
        from diffusers import DiffusionPipeline

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
        ref = hub.resolve(model, "diffusers pipeline", cache_file="model_index.json")
        try:
            self.pipe = DiffusionPipeline.from_pretrained(ref.location, torch_dtype=getattr(torch, dtype)).to(
                self.device
            )
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot load diffusers pipeline {ref.location!r}: {exc}") from exc
        model = ref.location
        self.pipe.set_progress_bar_config(disable=True)
        self.call_options = {"num_inference_steps": int(steps)}
        if guidance_scale is not None:
            self.call_options["guidance_scale"] = float(guidance_scale)
        if image_guidance_scale is not None:
            self.call_options["image_guidance_scale"] = float(image_guidance_scale)
        self.name = f"diffusers:{model}"
        self.config = {"model": model, "pipeline": type(self.pipe).__name__, **self.call_options}

    def region(self, image: Image.Image, plan: EditPlan, seed: int) -> None:
        return None  # the whole image may change; verification bounds how much

    def edit(self, image: Image.Image, plan: EditPlan, seed: int) -> Image.Image:
        import torch

        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        out = self.pipe(
            prompt=plan.instruction, image=image.convert("RGB"), generator=generator, **self.call_options
        ).images[0]
        if out.size != image.size and all(abs(a - b) <= 16 for a, b in zip(out.size, image.size)):
            out = out.resize(image.size, Image.BICUBIC)
        return out


def box_mask(size: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """Bool mask (H, W) of a box given as fractions (left, top, right, bottom)."""
    w, h = size
    x0, y0, x1, y1 = (int(round(v * s)) for v, s in zip(box, (w, h, w, h)))
    mask = np.zeros((h, w), dtype=bool)
    mask[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)] = True
    return mask


class InpaintEditor(DiffusersEditor):
    """Mask-based inpainting (a region plus a prompt): the pipeline repaints `box`, and only the box is kept from
    its output, so nothing outside the region can change."""

    def __init__(self, model: str, box: tuple[float, float, float, float] = (0.25, 0.25, 0.75, 0.75), **options: Any):
        super().__init__(model, **options)
        self.box = tuple(float(v) for v in box)
        self.name, self.config["box"] = f"diffusers-inpaint:{model}", self.box

    def with_box(self, box: tuple[float, float, float, float]) -> InpaintEditor:
        """The same pipeline repainting another box (the loaded pipeline is shared)."""
        other = copy.copy(self)
        other.box = tuple(float(v) for v in box)
        other.config = {**self.config, "box": other.box}
        return other

    def region(self, image: Image.Image, plan: EditPlan, seed: int) -> np.ndarray:
        return box_mask(image.size, self.box)

    def edit(self, image: Image.Image, plan: EditPlan, seed: int) -> Image.Image:
        import torch

        original = image.convert("RGB")
        mask = self.region(original, plan, seed)
        mask_image = Image.fromarray((mask * 255).astype(np.uint8))
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        painted = (
            self.pipe(
                prompt=plan.instruction,
                image=original,
                mask_image=mask_image,
                generator=generator,
                height=original.height - original.height % 8 or 8,
                width=original.width - original.width % 8 or 8,
                **self.call_options,
            )
            .images[0]
            .resize(original.size, Image.BICUBIC)
        )
        return Image.fromarray(np.where(mask[..., None], np.asarray(painted), np.asarray(original)))


class EndpointEditor:
    """An OpenAI-compatible image-edit endpoint (`POST /v1/images/edits`); no seeds there, so the seed only numbers
    attempts."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        max_retries: int = 3,
        size: str | None = None,
    ):
        import os

        from openai import OpenAI

        self.client = OpenAI(
            base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY", timeout=timeout, max_retries=max_retries
        )
        self.model, self.size = model, size
        self.name = f"openai-edit:{model}"
        self.config = {"model": model, "base_url": base_url, "size": size}

    def region(self, image: Image.Image, plan: EditPlan, seed: int) -> None:
        return None

    def edit(self, image: Image.Image, plan: EditPlan, seed: int) -> Image.Image:
        import base64
        import io

        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        options = {"size": self.size} if self.size else {}
        response = self.client.images.edit(
            model=self.model, image=("image.png", buf.getvalue(), "image/png"), prompt=plan.instruction, **options
        )
        data = response.data[0]
        if not data.b64_json:
            raise RuntimeError("the endpoint returned no image data (b64_json)")
        return Image.open(io.BytesIO(base64.b64decode(data.b64_json))).convert("RGB")


def load_editor(spec: str, **options: Any) -> Editor:
    """An editor by spec, through the registry: `mask-composite` (options: box="l,t,r,b" fractions, fill="r,g,b",
    patch=IMAGE_PATH, blur, jitter), `diffusers:MODEL_OR_PATH` (instruction editing; options: steps, guidance_scale,
    image_guidance_scale, device, dtype), `diffusers-inpaint:MODEL_OR_PATH` (options: box and the above) or
    `openai-edit:MODEL` (options: base_url, size)."""
    from imagesafety import registry

    return registry.build("editor", spec, **options)


def _numbers(value: Any, kind=float) -> tuple:
    return tuple(kind(v) for v in str(value).split(",")) if isinstance(value, str) else tuple(value)


def mask_composite_from_spec(
    arg: str | None,
    *,
    box: Any = (0.3, 0.3, 0.7, 0.7),
    fill: Any = None,
    patch: str | None = None,
    blur: float = 12.0,
    jitter: float = 0.05,
) -> MaskCompositeEditor:
    return MaskCompositeEditor(
        _numbers(box),
        _numbers(fill, int) if fill is not None else None,
        Image.open(patch).convert("RGB") if patch else None,
        float(blur),
        float(jitter),
    )


def diffusers_from_spec(
    arg: str | None,
    *,
    steps: int = 20,
    guidance_scale: float | None = None,
    image_guidance_scale: float | None = None,
    device: str | None = None,
    dtype: str = "float32",
) -> DiffusersEditor:
    if not arg:
        raise ValueError("diffusers editor needs a model: diffusers:timbrooks/instruct-pix2pix or diffusers:PATH")
    return DiffusersEditor(arg, steps, guidance_scale, image_guidance_scale, device, dtype)


def inpaint_from_spec(
    arg: str | None,
    *,
    box: Any = (0.25, 0.25, 0.75, 0.75),
    steps: int = 20,
    guidance_scale: float | None = None,
    device: str | None = None,
    dtype: str = "float32",
) -> InpaintEditor:
    if not arg:
        raise ValueError("diffusers-inpaint editor needs a model: diffusers-inpaint:MODEL_OR_PATH")
    return InpaintEditor(arg, _numbers(box), steps=steps, guidance_scale=guidance_scale, device=device, dtype=dtype)


def endpoint_from_spec(
    arg: str | None,
    *,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 120.0,
    max_retries: int = 3,
    size: str | None = None,
) -> EndpointEditor:
    if not arg:
        raise ValueError("openai-edit editor needs a model: openai-edit:MODEL")
    return EndpointEditor(arg, base_url, api_key_env, timeout, max_retries, size)
