"""`ModelConfig`: the shape of one VLA model, and `from_size` to get one from a size name or count.

No torch here: configs, presets, the size solver and the accounting are pure Python, so sweeps
and notebooks can plan runs (parameters, FLOPs) without building a model.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, fields

from scaling.model.presets import resolve_size
from vla_core.errors import BadInput

HEADS = ("discrete", "mse", "flow")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Shape of a vision-language-action transformer (see `scaling.model.vla.VLA`).

    Token sequence, in order: image patches, instruction tokens, one proprioception token, and
    `chunk * action_dim` learned readout tokens (one per future step and action dimension); the
    action head reads the readout tokens. Attention is bidirectional over the whole sequence.
    """

    d_model: int
    """Width of the residual stream (features per token)."""
    n_layers: int
    """Number of transformer blocks."""
    n_heads: int
    """Attention heads per block; must divide `d_model`."""
    image_size: int
    """Side of the square input image (pixels)."""
    patch_size: int
    """Side of a square image patch (pixels); must divide `image_size`."""
    vocab_size: int
    """Instruction vocabulary size (token ids), the padding id 0 included."""
    max_instr_len: int
    """Instruction length after padding (tokens)."""
    proprio_dim: int
    """Proprioception features per sample."""
    action_dim: int
    """Action dimensions per time step."""
    d_ff: int | None = None
    """Hidden width of the MLP (features); None means 4 * d_model."""
    image_channels: int = 3
    """Colour channels of the image."""
    action_bins: int = 256
    """Bins per action dimension for the discrete head (actions in [-1, 1], uniform bins)."""
    chunk: int = 1
    """Future actions predicted per sample (action chunk length, time steps)."""
    head: str = "discrete"
    """Action head: "discrete" (cross-entropy over bins, nats per action dimension; the loss the
    scaling fits use), "mse" (continuous regression) or "flow" (flow matching, as in pi0)."""
    dropout: float = 0.0
    """Dropout probability on attention and MLP outputs (0 for scaling runs)."""
    mup_base_width: int | None = None
    """Base width (features) for muP scaling of init, attention and output logits; None is
    standard parametrisation. Learning rates follow through `scaling.model.mup.param_groups`."""
    flow_steps: int = 10
    """Euler integration steps of the flow head at inference (steps)."""
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    """Per-channel image mean in [0, 1] intensity units, subtracted after dividing by 255."""
    image_std: tuple[float, ...] = (0.25, 0.25, 0.25)
    """Per-channel image standard deviation in [0, 1] intensity units."""
    keypoints: int = 0
    """Spatial-softmax keypoint tokens (0: none). When positive, a small conv stem (3x3 stride 2,
    3x3, 1x1; `keypoints` channels) runs on the image, and each channel's soft-argmax (x, y) becomes
    one extra token, as in Levine et al. (2016): "where is it" costs one softmax instead of an
    attention pattern learned over patches (docs/learning-curves.md, section 6)."""
    film: bool = False
    """Condition the keypoint stem on the instruction (needs `keypoints` > 0): FiLM (Perez et al.
    2018; RT-1's FiLM-EfficientNet) scales and shifts each channel of the stem's two hidden
    convolutions by a linear map of the mean instruction-token embedding, so a keypoint can mark
    "where the named thing is" rather than "where some colour is" (docs/learning-curves.md,
    section 12). Initialised to the identity: at step 0 the stem is the unconditioned one."""

    def __post_init__(self) -> None:
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        object.__setattr__(self, "image_mean", tuple(float(v) for v in self.image_mean))
        object.__setattr__(self, "image_std", tuple(float(v) for v in self.image_std))
        self._validate()

    def _validate(self) -> None:
        positive = ("d_model", "n_layers", "n_heads", "image_size", "patch_size", "max_instr_len",
                    "proprio_dim", "action_dim", "d_ff", "image_channels", "action_bins", "chunk",
                    "flow_steps")
        if not isinstance(self.keypoints, int) or isinstance(self.keypoints, bool) or self.keypoints < 0:
            raise BadInput(f"model config: keypoints must be a non-negative integer, got {self.keypoints!r}")
        if not isinstance(self.film, bool):
            raise BadInput(f"model config: film must be true or false, got {self.film!r}")
        if self.film and not self.keypoints:
            raise BadInput("model config: film conditions the keypoint stem; it needs keypoints > 0")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise BadInput(f"model config: {name} must be a positive integer, got {value!r}")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 2:
            raise BadInput(f"model config: vocab_size must be an integer >= 2 (pad 0 + one token), "
                           f"got {self.vocab_size!r}")
        if self.d_model % self.n_heads:
            raise BadInput(f"model config: n_heads={self.n_heads} does not divide "
                           f"d_model={self.d_model}")
        if self.image_size % self.patch_size:
            raise BadInput(f"model config: patch_size={self.patch_size} does not divide "
                           f"image_size={self.image_size}")
        if self.head not in HEADS:
            raise BadInput(f"model config: head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise BadInput(f"model config: dropout must be in [0, 1), got {self.dropout!r}")
        if self.mup_base_width is not None and (
                not isinstance(self.mup_base_width, int) or self.mup_base_width <= 0):
            raise BadInput(f"model config: mup_base_width must be a positive integer or null, "
                           f"got {self.mup_base_width!r}")
        for name in ("image_mean", "image_std"):
            if len(getattr(self, name)) != self.image_channels:
                raise BadInput(f"model config: {name} needs {self.image_channels} values (one per "
                               f"channel), got {len(getattr(self, name))}")
        if min(self.image_std) <= 0:
            raise BadInput(f"model config: image_std must be positive, got {self.image_std}")

    @property
    def head_dim(self) -> int:
        """Features per attention head."""
        return self.d_model // self.n_heads

    @property
    def n_patches(self) -> int:
        """Image patch tokens per sample."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def n_readout(self) -> int:
        """Readout tokens per sample: one per future step and action dimension."""
        return self.chunk * self.action_dim

    @property
    def stem_size(self) -> int:
        """Side of the keypoint stem's feature map (pixels of the stride-2 first conv)."""
        return (self.image_size + 1) // 2

    @property
    def seq_len(self) -> int:
        """Tokens per sample: patches + instruction + keypoints + proprio + readout."""
        return self.n_patches + self.max_instr_len + self.keypoints + 1 + self.n_readout

    def to_dict(self) -> dict:
        """Plain dict (YAML/JSON-safe: tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys raise BadInput with a did-you-mean."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                hint = difflib.get_close_matches(key, sorted(known), n=1)
                raise BadInput(f"model config: unknown key {key!r}"
                               + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        return cls(**data)

    @classmethod
    def from_size(cls, size: str | float | int, *, image_size: int, vocab_size: int,
                  max_instr_len: int, proprio_dim: int, action_dim: int, chunk: int = 1,
                  head: str = "discrete", patch_size: int | None = None,
                  **overrides) -> ModelConfig:
        """Build a config from a preset name ("debug", "1m", ...) or a target parameter count.

        Args:
            size: preset name, a number of parameters (1e6), or a string number ("1e6", "2.5m").
            image_size, vocab_size, max_instr_len, proprio_dim, action_dim: data dimensions
                (from the `DataSource`).
            chunk: future actions predicted per sample.
            head: "discrete", "mse" or "flow".
            patch_size: pixels per patch side; None picks `default_patch_size(image_size)`.
            **overrides: any other `ModelConfig` field (dropout, mup_base_width, image_mean, ...).

        Raises:
            BadInput: unknown preset, non-positive size, or a size too small to build.
        """
        data = _data_fields(image_size=image_size, vocab_size=vocab_size, max_instr_len=max_instr_len,
                            proprio_dim=proprio_dim, action_dim=action_dim, chunk=chunk, head=head,
                            patch_size=patch_size, **overrides)
        shape = resolve_size(size, cls, **data)
        return cls(**shape, **data)

    @classmethod
    def from_shape(cls, d_model: int, n_layers: int, n_heads: int, *, image_size: int, vocab_size: int,
                   max_instr_len: int, proprio_dim: int, action_dim: int, chunk: int = 1,
                   head: str = "discrete", patch_size: int | None = None, **overrides) -> ModelConfig:
        """As `from_size`, for a shape given outright (no size solver): what a run's resolved
        config.yaml pins, so the same file builds the same model whatever the solver of the day does."""
        data = _data_fields(image_size=image_size, vocab_size=vocab_size, max_instr_len=max_instr_len,
                            proprio_dim=proprio_dim, action_dim=action_dim, chunk=chunk, head=head,
                            patch_size=patch_size, **overrides)
        return cls(d_model=d_model, n_layers=n_layers, n_heads=n_heads, **data)


def _data_fields(*, image_size: int, patch_size: int | None, **rest) -> dict:
    """The data-side fields of `from_size` / `from_shape`; None patch_size picks `default_patch_size`."""
    if patch_size is None:
        patch_size = default_patch_size(image_size)
    return dict(image_size=image_size, patch_size=patch_size, **rest)


def image_normalisation(stats: dict | None) -> dict[str, tuple[float, ...]]:
    """`image_mean` / `image_std` overrides for `from_size` from a dataset's stats.json dict.

    Uses `stats["image"]` (per-channel mean/std on the [0, 1] scale, as `scaling.data.stats`
    writes it); a constant channel's std is floored at 1e-3 so it standardises to ~0, not inf.
    Returns {} when the stats carry no image entry (the config's defaults then apply).
    """
    image = (stats or {}).get("image") or {}
    if "mean" not in image or "std" not in image:
        return {}
    return {"image_mean": tuple(float(m) for m in image["mean"]),
            "image_std": tuple(max(float(s), 1e-3) for s in image["std"])}


def default_patch_size(image_size: int, grid: int = 8) -> int:
    """Patch side giving about a `grid` x `grid` patch grid (64 tokens), dividing `image_size`.

    The token count stays fixed across model sizes so that the sequence length, and hence the
    FLOPs per parameter, is the same along a sweep.
    """
    if image_size <= 0:
        raise BadInput(f"model config: image_size must be positive, got {image_size}")
    divisors = [p for p in range(1, image_size + 1) if image_size % p == 0]
    return min(divisors, key=lambda p: (abs(image_size / p - grid), p))


__all__ = ["HEADS", "ModelConfig", "default_patch_size", "image_normalisation"]
