"""A transformers vision-language model as the scorer of `ask` atoms: frames -> log p(yes) − log p(no).

    scorer = VLMScorer.load("path/to/llava-1.5-7b-hf", device="cuda", dtype="bfloat16")
    program = ruledsl.load("demo.rule").compile(vqa=scorer)

The differentiable path is torch from the video to the margin: the image processor's resize, centre
crop, rescale and normalisation are re-done in torch from the processor's own settings
(`PixelTransform`), so `pixel_values` keep the graph back to the video (and through it to the LoRA).
Their values are the processor's own: the processor resizes 8-bit images (PIL's fixed-point
resampling), so the forward value is that 8-bit result while the gradient is the float resampling's
(straight-through). Text inputs are tokenised once per (question, number of images) and cached. The
model is frozen, in eval mode, and loaded once.

The margin reads the next-token distribution after the prompt: each answer's token variants
("yes", "Yes", " yes", ...: the single-token encodings the tokenizer has) are summed in probability.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

from ruledsl.compiler.asks import VQAError

ANSWERS = {"yes": ("yes", "Yes", "YES"), "no": ("no", "No", "NO")}
SUFFIX = "Answer yes or no."  # appended to every question, as yes/no VQA prompts usually are
PRECISION_BITS = 32 - 8 - 2  # PIL's fixed-point resampling of 8-bit images (Resample.c)


class VLMLoadError(VQAError):
    """The model folder cannot be used as a VQA scorer (the message says which and why)."""


# ---- image preprocessing in torch -------------------------------------------------------------


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    a, x = -0.5, x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def _sinc(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x == 0, torch.ones_like(x), torch.sin(math.pi * x) / (math.pi * torch.where(x == 0, 1.0, x)))


# PIL resample code -> (support, filter), as in Pillow's Resample.c.
FILTERS = {
    4: (0.5, lambda x: ((x > -0.5) & (x <= 0.5)).to(x.dtype)),  # BOX
    2: (1.0, lambda x: (1.0 - x.abs()).clamp(min=0.0)),  # BILINEAR
    5: (1.0, lambda x: torch.where(x.abs() < 1.0, _sinc(x) * (0.54 + 0.46 * torch.cos(math.pi * x)), 0.0)),  # HAMMING
    3: (2.0, _bicubic),  # BICUBIC
    1: (3.0, lambda x: torch.where(x.abs() < 3.0, _sinc(x) * _sinc(x / 3.0), torch.zeros_like(x))),  # LANCZOS
}


@functools.lru_cache(maxsize=64)
def resample_matrix(size_in: int, size_out: int, resample: int) -> torch.Tensor:
    """[size_out, size_in] float64 weights of PIL's antialiased resampling along one axis (precompute_coeffs).

    Cached per (sizes, filter): every frame of a run has the same size. Callers must not modify it.
    """
    support, kernel = FILTERS[resample]
    scale = size_in / size_out
    filterscale = max(scale, 1.0)
    support *= filterscale
    out = torch.zeros(size_out, size_in, dtype=torch.float64)
    for i in range(size_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), size_in)
        xs = torch.arange(lo, hi, dtype=torch.float64)
        w = kernel((xs - center + 0.5) / filterscale)
        total = float(w.sum())
        out[i, lo:hi] = w / total if total != 0 else w
    return out


def _fixed_point(weights: torch.Tensor) -> torch.Tensor:
    """PIL's 8-bit coefficients: weights scaled by 2^22 and rounded half away from zero (normalize_coeffs_8bpc)."""
    scaled = weights * (1 << PRECISION_BITS)
    return torch.where(scaled < 0, torch.ceil(scaled - 0.5), torch.floor(scaled + 0.5))


@dataclass(frozen=True)
class PixelTransform:
    """The image processor's steps, in torch: [N, 3, H, W] in [0, 1] -> pixel_values [N, 3, h, w].

    Read from the processor's config (`from_processor`): resize (`size`, `resample`), centre crop
    (`crop_size`), rescale (`rescale_factor`, applied to 0..255 values as the processor does) and
    normalisation (`image_mean`, `image_std`).
    """

    size: dict | None  # None: no resize; keys as the processor's: height/width, shortest_edge, longest_edge
    resample: int
    crop: tuple[int, int] | None
    rescale: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    # Whose 8-bit resampling the forward value reproduces: "pil" (Pillow's fixed point, exact) or
    # "torchvision" (the processor's torch backend: torch's uint8 antialiased kernel).
    backend: str = "pil"

    @classmethod
    def from_processor(cls, ip) -> PixelTransform:
        def on(flag: str) -> bool:
            return bool(getattr(ip, flag, False))

        size = None
        if on("do_resize"):
            raw = ip.size if isinstance(ip.size, dict) else dict(vars(ip.size)) if ip.size is not None else {}
            size = {k: v for k, v in raw.items() if v is not None}
        resample = int(getattr(ip, "resample", 2) if getattr(ip, "resample", None) is not None else 2)
        if size is not None and resample not in FILTERS:
            raise VLMLoadError(
                f"the image processor resizes with PIL filter {resample} (nearest), which has no gradient; "
                "supported: box, bilinear, hamming, bicubic, lanczos"
            )
        crop = None
        if on("do_center_crop"):
            c = ip.crop_size if isinstance(ip.crop_size, dict) else vars(ip.crop_size)
            crop = (int(c["height"]), int(c["width"]))
        mean = tuple(float(v) for v in ip.image_mean) if on("do_normalize") else None
        std = tuple(float(v) for v in ip.image_std) if on("do_normalize") else None
        backend = "torchvision" if getattr(ip, "backend", "pil") == "torchvision" and resample in (2, 3) else "pil"
        rescale = float(ip.rescale_factor) if on("do_rescale") else None
        return cls(size, resample, crop, rescale, mean, std, backend)

    def grey_level(self) -> float:
        """One 8-bit grey level in pixel-value units (what a resampler's rounding can differ by)."""
        return (self.rescale or 1.0) / (min(self.std) if self.std else 1.0)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """The resized (height, width) of an h × w frame, by the processor's rules."""
        from transformers.image_transforms import get_size_with_aspect_ratio
        from transformers.image_utils import get_image_size_for_max_height_width

        s = self.size or {}
        if s.get("shortest_edge") and s.get("longest_edge"):
            oh, ow = get_size_with_aspect_ratio((h, w), s["shortest_edge"], s["longest_edge"])
            return int(oh), int(ow)
        if s.get("shortest_edge"):
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = s["shortest_edge"], int(s["shortest_edge"] * long / short)
            return (new_long, new_short) if w <= h else (new_short, new_long)
        if s.get("max_height") and s.get("max_width"):
            oh, ow = get_image_size_for_max_height_width((h, w), s["max_height"], s["max_width"])
            return int(oh), int(ow)
        if s.get("height") and s.get("width"):
            return (int(s["height"]), int(s["width"]))
        raise VLMLoadError(f"the image processor's size {s} is not one the differentiable path can reproduce")

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.clamp(0.0, 1.0) * 255.0
        hard = torch.round(x.detach())  # the 8-bit image the processor would be given
        if self.size is not None:
            h, w = x.shape[-2:]
            oh, ow = self.output_size(h, w)
            if (oh, ow) != (h, w):
                x, hard = self._resize(x, hard, oh, ow)
        value = x + (hard - x).detach()  # forward: the processor's 8-bit pixels; backward: the float resampling's
        if self.crop is not None:
            value = _center_crop(value, *self.crop)
        if self.rescale is not None:
            value = value * self.rescale
        if self.mean is not None and self.std is not None:
            mean = value.new_tensor(self.mean).view(1, -1, 1, 1)
            std = value.new_tensor(self.std).view(1, -1, 1, 1)
            value = (value - mean) / std
        return value

    def _resize(self, x: torch.Tensor, hard: torch.Tensor, oh: int, ow: int):
        """Horizontal then vertical pass, as PIL: float weights for the gradient, 8-bit fixed point for the value."""
        h, w = x.shape[-2:]
        rows = resample_matrix(h, oh, self.resample).to(x.device)
        cols = resample_matrix(w, ow, self.resample).to(x.device)
        soft = torch.einsum("oh,nchw,pw->ncop", rows.to(x.dtype), x, cols.to(x.dtype))
        if self.backend == "torchvision":  # torch's own 8-bit kernel, on the CPU as the processor runs it
            mode = {2: "bilinear", 3: "bicubic"}[self.resample]
            with torch.no_grad():
                q = hard.to("cpu", torch.uint8)
                q = F.interpolate(q.flatten(0, -3)[:, None], (oh, ow), mode=mode, antialias=True)
                q = q.reshape(*hard.shape[:-2], oh, ow).to(x.device)
            return soft, q.to(x.dtype)
        half = float(1 << (PRECISION_BITS - 1))
        unit = float(1 << PRECISION_BITS)
        with torch.no_grad():  # exact integers in float64 (|sums| < 2^53), then PIL's rounding and clipping
            q = hard.double()
            if ow != w:
                q = torch.floor((q @ _fixed_point(cols).T.to(x.device) + half) / unit).clamp(0, 255)
            if oh != h:
                q = torch.floor((_fixed_point(rows).to(x.device) @ q + half) / unit).clamp(0, 255)
        return soft, q.to(x.dtype)


def _center_crop(x: torch.Tensor, ch: int, cw: int) -> torch.Tensor:
    """The processor's centre crop (zero padding where the image is smaller than the crop)."""
    h, w = x.shape[-2:]
    if ch > h or cw > w:
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        top, left = math.ceil(ph / 2), math.ceil(pw / 2)
        x = F.pad(x, (left, pw - left, top, ph - top))
        h, w = x.shape[-2:]
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top : top + ch, left : left + cw]


# ---- the scorer -------------------------------------------------------------------------------


def answer_tokens(tokenizer) -> dict[str, list[int]]:
    """Token ids of each answer's variants: every spelling that is one token, with or without a leading space."""
    vocab = tokenizer.get_vocab()
    out = {}
    for answer, spellings in ANSWERS.items():
        ids = set()
        for word in spellings:
            for text in (word, " " + word):
                encoded = tokenizer.encode(text, add_special_tokens=False)
                if len(encoded) == 1:
                    ids.add(int(encoded[0]))
            for piece in (word, "▁" + word, "Ġ" + word):  # sentencepiece and byte-level spellings of " word"
                if piece in vocab:
                    ids.add(int(vocab[piece]))
        out[answer] = sorted(ids)
    return out


class VLMScorer:
    """`ask` margins from a frozen transformers image-text-to-text model (the compiler's `VQAScorer`)."""

    def __init__(
        self, model, processor, device: torch.device, batch_size: int = 8, name: str = "model", checkpoint: bool = True
    ):
        self.model = model.eval().requires_grad_(False)
        # Per chunk of sequences, keep only the inputs for the backward and recompute the VLM's activations
        # there (one more forward): a per-frame ask over a long video is hundreds of sequences.
        self.checkpoint = checkpoint
        self.processor = processor
        self.device = device
        self.dtype = next(model.parameters()).dtype
        self.batch_size = batch_size
        self.name = name
        tokenizer = getattr(processor, "tokenizer", processor)
        self.answers = answer_tokens(tokenizer)
        missing = [a for a, ids in self.answers.items() if not ids]
        if missing:
            raise VLMLoadError(
                f"{name}: its tokenizer has no single token for {' or '.join(repr(a) for a in missing)} "
                f"(tried {', '.join(ANSWERS[missing[0]])}, with and without a leading space), so a yes/no "
                "margin cannot be read from its next-token distribution"
            )
        self.transform = PixelTransform.from_processor(processor.image_processor)
        text = getattr(model.config, "text_config", model.config)
        self.context = getattr(text, "max_position_embeddings", None)
        self._text: dict = {}  # (question, images, height, width) -> processor outputs other than pixels

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        dtype=None,
        batch_size: int = 8,
        checkpoint: bool = True,
    ) -> VLMScorer:
        """Load a model folder (`AutoModelForImageTextToText` + `AutoProcessor`, save_pretrained layout)."""
        from ruledsl.runtime.load import GeneratorLoadError, resolve_device, resolve_dtype

        path = Path(path)
        if not path.is_dir():
            raise VLMLoadError(f"--vlm {path}: no such folder (a transformers image-text-to-text model folder)")
        if not (path / "config.json").is_file():
            raise VLMLoadError(f"--vlm {path}: no config.json, so this is not a transformers model folder")
        try:
            resolved, torch_dtype = resolve_device(device), resolve_dtype(dtype)
        except GeneratorLoadError as error:
            raise VLMLoadError(f"--vlm: {error}") from None
        from transformers import AutoModelForImageTextToText, AutoProcessor
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # load-time chatter (backend fallbacks) is not the user's concern
        try:
            processor = AutoProcessor.from_pretrained(path)
            model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype)
        except (OSError, ValueError, KeyError, TypeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise VLMLoadError(f"--vlm {path}: cannot load it as an image-text-to-text model: {first}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        if getattr(processor, "image_processor", None) is None:
            raise VLMLoadError(f"--vlm {path}: its processor has no image processor, so it cannot see frames")
        scorer = cls(model.to(resolved), processor, resolved, batch_size, str(path), checkpoint)
        scorer.check_preprocessing()
        return scorer

    def check_preprocessing(self) -> None:
        """Compare the torch preprocessing with the processor's own on one random frame; refuse a mismatch.

        Catches image processors this path does not reproduce (tiling, patch flattening, ...). Up to
        one 8-bit grey level is allowed (a resampler's rounding); the PIL backend matches exactly.
        """
        tolerance = 1.01 * self.transform.grey_level()
        generator = torch.Generator().manual_seed(0)
        frame = torch.randint(0, 256, (3, 45, 61), generator=generator, dtype=torch.uint8)
        try:
            theirs = self.processor.image_processor(images=[frame.permute(1, 2, 0).numpy()], return_tensors="pt")
            theirs = theirs["pixel_values"]
        except Exception as error:  # the processor's own failure: reported, not hidden
            raise VLMLoadError(f"{self.name}: its image processor failed on a test frame: {error}") from None
        ours = self.transform(frame[None].double() / 255.0)
        if tuple(theirs.shape) != tuple(ours.shape) or float((theirs.double() - ours).abs().max()) > tolerance:
            raise VLMLoadError(
                f"{self.name}: its image processor ({type(self.processor.image_processor).__name__}) gives pixel "
                f"values of shape {tuple(theirs.shape)} that the differentiable torch path ({tuple(ours.shape)}) "
                "does not reproduce; supported: processors that resize, centre-crop, rescale and normalise"
            )

    # ---- text -------------------------------------------------------------------------------

    def prompt(self, question: str, images: int) -> str:
        text = f"{question.strip()} {SUFFIX}"
        if getattr(self.processor, "chat_template", None):
            content = [{"type": "image"}] * images + [{"type": "text", "text": text}]
            messages = [{"role": "user", "content": content}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        token = getattr(self.processor, "image_token", "<image>")
        return token * images + "\n" + text + "\n"

    def text_inputs(self, question: str, images: int, height: int = 224, width: int = 224) -> dict:
        """The processor's outputs for the prompt with `images` frames of this size, pixel values left out (cached)."""
        key = (question, images, height, width)
        if key not in self._text:
            import numpy as np  # the dummy frames only count image tokens; no pixel goes through numpy

            dummy = [np.zeros((height, width, 3), dtype=np.uint8)] * images
            encoded = self.processor(text=self.prompt(question, images), images=dummy, return_tensors="pt")
            inputs = {k: v for k, v in encoded.items() if k != "pixel_values" and isinstance(v, torch.Tensor)}
            length = int(inputs["input_ids"].shape[-1])
            if self.context is not None and length >= self.context:
                raise VQAError(
                    f"the prompt is {length} tokens with {images} frame{'s' if images > 1 else ''}, longer than "
                    f"the model's context of {self.context} tokens; shorten the question"
                    + (" or ask about fewer frames (--ask-frames)" if images > 1 else "")
                )
            self._text[key] = {k: v.to(self.device) for k, v in inputs.items()}
        return self._text[key]

    def prepare(self, question: str, frames: int) -> None:
        if not question.strip():
            raise VQAError("the question is empty")
        self.text_inputs(question, frames)

    # ---- margins ----------------------------------------------------------------------------

    def margins(self, question: str, clips: torch.Tensor) -> torch.Tensor:
        """clips [N, K, 3, H, W] in [0, 1] -> [N] float32 margins log p(yes) − log p(no) (differentiable)."""
        n, k, _, h, w = clips.shape
        pixels = self.transform(clips.reshape(n * k, *clips.shape[2:]).to(self.device, torch.float32))
        text = self.text_inputs(question, k, h, w)
        yes = torch.tensor(self.answers["yes"], device=self.device)
        no = torch.tensor(self.answers["no"], device=self.device)
        out = []
        for start in range(0, n, self.batch_size):
            m = min(self.batch_size, n - start)
            inputs = {key: _batched(value, m, k) for key, value in text.items()}
            chunk = pixels[start * k : (start + m) * k].to(self.dtype)
            if self.checkpoint and torch.is_grad_enabled() and chunk.requires_grad:
                logits = torch.utils.checkpoint.checkpoint(self._next_token_logits, inputs, chunk, use_reentrant=False)
            else:
                logits = self._next_token_logits(inputs, chunk)
            logits = logits.float()
            out.append(torch.logsumexp(logits[:, yes], -1) - torch.logsumexp(logits[:, no], -1))
        return torch.cat(out).to(clips.device)

    def _next_token_logits(self, inputs: dict, pixels: torch.Tensor) -> torch.Tensor:
        try:
            output = self.model(**inputs, pixel_values=pixels, logits_to_keep=1)
        except TypeError:  # an older model class without `logits_to_keep`
            output = self.model(**inputs, pixel_values=pixels)
        return output.logits[:, -1]


def _batched(value: torch.Tensor, sequences: int, images: int) -> torch.Tensor:
    """A cached processor output for one prompt, repeated for `sequences` prompts (per-image rows too)."""
    if value.shape[0] == 1:
        return value.expand(sequences, *value.shape[1:])
    if value.shape[0] == images:  # one row per image (e.g. image sizes)
        return value.repeat(sequences, *([1] * (value.dim() - 1)))
    return value
