"""Recipes: TrainConfig (every training setting) filled from a recipe TOML, overridden by a few flags.

Standard library only, so curation (`p2d build` validates a recipe) and read-only commands use it
without torch.

A recipe has the tables [meta], [data], [model], [train] and [speed]. Every key has a default (the
experiments' settings), so a recipe names only what it changes. An unknown table or key is an error
that names it and lists the valid ones: a typo must never silently train with a default.
speed.holds switches that change how fast a run goes on a GPU, not what it learns (bf16 changes
the arithmetic slightly; everything else there is exact).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from p2d.errors import RecipeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

AUGMENTATIONS = ("hflip", "random_crop", "rotation")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# [model] kind: the names of p2d.train.kinds.MODEL_KINDS (the classes need torch; this module must not)
MODEL_KIND_NAMES = ("cyclegan", "cut", "fastcut")
ONE_SIDED_KINDS = ("cut", "fastcut")  # kinds with no drawing -> photo generator
UPSAMPLINGS = ("transposed", "resize")
# Where a kind's paper settings differ from the keys' defaults (which are CUT's): applied before the
# recipe's own keys, so a recipe that says kind = "fastcut" trains the paper's FastCUT unless it says
# otherwise (Park et al. 2020: FastCUT has no identity NCE, lambda_NCE 10 and flip-equivariance).
KIND_DEFAULTS = {
    "fastcut": {("train", "nce_weight"): 10.0, ("train", "nce_identity"): False,
                ("train", "flip_equivariance"): True},
}


@dataclass
class MetaConfig:
    name: str = ""
    description: str = ""


@dataclass
class DataConfig:
    channels: int = 1  # 1 gray, 3 colour (conversion happens when an image is read)
    size: int = 128  # training crop in pixels (a multiple of 4: the generator down/upsamples twice)
    augment: list[str] = field(default_factory=lambda: ["hflip", "random_crop", "rotation"])
    random_crop_scale: float = 1.12  # random_crop: scale up by this factor, then crop back to size
    rotation_deg: float = 10.0  # rotation: reflect-pad, rotate uniformly within +-this, centre crop
    sample_rows: int = 4  # fixed test images per domain in each epoch's sample grid
    # `p2d manifest build` drops rows lacking a counterpart on these features (see `p2d inspect`)
    drop_unmatched: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    kind: str = "cyclegan"  # which model trains: one of MODEL_KIND_NAMES
    filters: int = 64  # generator width
    blocks: int = 9  # residual blocks in the generator
    disc_filters: int = 64
    disc_layers: int = 3
    # the generator's two upsamplings: "transposed" convolutions (the CycleGAN paper's, and every
    # checkpoint's before this key) or "resize": nearest-neighbour upsampling, then a 3x3 convolution,
    # which cannot leave transposed convolutions' checkerboard (Odena et al. 2016)
    upsample: str = "transposed"
    # cut, fastcut: the generator's encoder layers whose patches PatchNCE compares, by name: "input"
    # (the padded image), "down1", "down2" (the strided convolutions), "blockN" (after residual block N;
    # past the last block, the last). The paper's layers 0, 4, 8, 12, 16 of its antialiased generator.
    nce_layers: list[str] = field(default_factory=lambda: ["input", "down1", "down2", "block1", "block5"])
    nce_patches: int = 256  # patches sampled per layer and image (all of a smaller layer)
    head_units: int = 256  # width of each layer's 2-layer MLP head


@dataclass
class TrainOptions:
    epochs: int = 50
    batch_size: int = 2
    lr: float = 0.0002
    beta1: float = 0.5
    beta2: float = 0.999
    decay_from_epoch: int = 1  # linear decay to 0 from this epoch (1-based)
    cycle_weight: float = 15.0  # the same for both directions
    # [photo cycle, drawing cycle]. Unequal weights diverged in the experiments; setting this is the
    # explicit opt-in, and it warns. Empty: both directions use cycle_weight.
    unequal_cycle_weights: list[float] = field(default_factory=list)
    identity_weight: float = 5.0  # absolute, as in the experiments' code (not relative to cycle)
    pool_size: int = 50  # cyclegan's image pool (cut and fastcut have none, as in the paper's code)
    # cut, fastcut (Park et al. 2020; the fastcut kind changes the last three, KIND_DEFAULTS):
    nce_temperature: float = 0.07  # PatchNCE's softmax temperature
    nce_weight: float = 1.0  # lambda_NCE; the GAN loss weighs 1
    nce_identity: bool = True  # PatchNCE also between a drawing and G(drawing), as identity loss
    flip_equivariance: bool = False  # half the steps, translate the flipped photo and flip its features
    save_every: int = 5  # epochs between kept checkpoints
    # minutes between saves of `latest` within an epoch too (0: only at epoch ends); an epoch of
    # all CelebA is ~100k steps, hours a crash would otherwise lose. Not part of what is learnt.
    latest_every_minutes: float = 10.0
    seed: int = 0


@dataclass
class SpeedConfig:
    # auto: bf16 autocast on CUDA cards with compute capability 8+, fp16 with gradient scalers on
    # 7.x (fp16 tensor cores), fp32 on older cards and on the CPU
    precision: str = "auto"
    channels_last: bool = True  # CUDA only: NHWC memory layout (faster convolutions on tensor cores)
    gpu_dataset: bool = True  # CUDA only: hold the curated images on the GPU as uint8 when they fit
    compile: bool = False  # torch.compile the four networks (slow start, faster steps on a GPU)
    workers: int = 0  # DataLoader processes decoding from disk; 0 = decode once into memory
    tensorboard: bool = True  # log to RUN/tensorboard when the tensorboard package is installed
    # CUDA only: deterministic kernels (cuDNN without benchmark, torch's deterministic algorithms,
    # reflection padding from copies), so a run repeats and a resume continues bit for bit there
    # too; slower. The CPU is deterministic without it.
    deterministic: bool = False


@dataclass
class TrainConfig:
    meta: MetaConfig = field(default_factory=MetaConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainOptions = field(default_factory=TrainOptions)
    speed: SpeedConfig = field(default_factory=SpeedConfig)

    def to_dict(self) -> dict:
        """Every key, as plain Python values (what checkpoints and recipe.toml hold)."""
        return dataclasses.asdict(self)

    @property
    def cycle_weights(self) -> tuple[float, float]:
        """(photo cycle, drawing cycle) weights."""
        if self.train.unequal_cycle_weights:
            a, b = self.train.unequal_cycle_weights
            return float(a), float(b)
        return self.train.cycle_weight, self.train.cycle_weight

    def to_toml(self) -> str:
        """The resolved recipe as TOML text, every key."""
        lines = []
        for table, values in self.to_dict().items():
            lines.append(f"[{table}]")
            for key, value in values.items():
                lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)


_TABLE_CLASSES = {
    "meta": MetaConfig,
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainOptions,
    "speed": SpeedConfig,
}


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def _coerce(where: str, value, default):
    """Check a recipe value against the type of its default (an int is fine for a float)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        want = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        want = "a number"
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
        want = "a string"
    else:  # lists
        ok = isinstance(value, list)
        want = "a list"
        value = list(value) if ok else value
    if not ok:
        raise RecipeError(f"recipe key {where} = {value!r} must be {want}")
    return value


def config_from_dict(recipe: dict, source: str = "recipe") -> TrainConfig:
    """A TrainConfig from a parsed recipe; unknown tables or keys raise RecipeError naming them."""
    cfg = TrainConfig()
    kind = recipe.get("model", {}).get("kind") if isinstance(recipe.get("model"), dict) else None
    _apply_kind_defaults(cfg, kind)
    for table, values in recipe.items():
        if table not in _TABLE_CLASSES:
            raise RecipeError(
                f"{source}: unknown table {table!r}; valid tables: {', '.join(_TABLE_CLASSES)}"
            )
        if not isinstance(values, dict):
            raise RecipeError(f"{source}: {table!r} must be a table of keys")
        section = getattr(cfg, table)
        valid = [f.name for f in dataclasses.fields(section)]
        for key, value in values.items():
            if key not in valid:
                raise RecipeError(
                    f"{source}: unknown key {key!r} in table {table!r}; valid keys there: {', '.join(valid)}"
                )
            setattr(section, key, _coerce(f"{table}.{key}", value, getattr(section, key)))
    validate_config(cfg, source)
    return cfg


def _apply_kind_defaults(cfg: TrainConfig, kind: object, keep: set[tuple[str, str]] = frozenset()) -> None:
    """Set the keys where `kind`'s paper settings differ from the defaults, except those in `keep`."""
    for (table, key), value in KIND_DEFAULTS.get(kind, {}).items() if isinstance(kind, str) else ():
        if (table, key) not in keep:
            setattr(getattr(cfg, table), key, value)


def load_recipe(path: Path | str) -> TrainConfig:
    """Read a recipe TOML file into a TrainConfig (missing keys take the experiments' defaults)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(
            f"recipe {path} not found: write one (see p2d/recipes/tiny.toml) or pass --recipe PATH"
        )
    try:
        recipe = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"recipe {path} is not valid TOML ({exc}): fix the line it names") from None
    return config_from_dict(recipe, source=f"recipe {path}")


def bundled_recipe(name: str) -> Path:
    """Path of a recipe shipped with p2d (p2d/recipes/NAME.toml), e.g. "tiny"."""
    return Path(__file__).resolve().parent / "recipes" / f"{name}.toml"


def apply_overrides(cfg: TrainConfig, **overrides) -> TrainConfig:
    """Return a copy with the given "table.key" style overrides set (None means: keep the recipe's).

    Keys are written table__key, e.g. apply_overrides(cfg, train__epochs=3, speed__compile=True).
    """
    cfg = copy.deepcopy(cfg)
    kind = overrides.get("model__kind")
    if kind is not None and kind != cfg.model.kind:  # another kind: its paper settings, unless overridden
        given = {tuple(name.split("__", 1)) for name, value in overrides.items() if value is not None}
        _apply_kind_defaults(cfg, kind, given)
    for name, value in overrides.items():
        if value is None:
            continue
        table, key = name.split("__", 1)
        section = getattr(cfg, table)
        setattr(section, key, _coerce(f"{table}.{key}", value, getattr(section, key)))
    validate_config(cfg, "overrides")
    return cfg


def _need(ok: bool, source: str, message: str) -> None:
    if not ok:
        raise RecipeError(f"{source}: {message}")


def _is_nce_layer(name: object) -> bool:
    if not isinstance(name, str):
        return False
    return name in ("input", "down1", "down2") or (name.startswith("block") and name[5:].isdigit()
                                                   and int(name[5:]) >= 1)


def validate_config(cfg: TrainConfig, source: str = "recipe") -> None:
    """Range checks, each naming the key and what it must be."""
    d, m, t, s = cfg.data, cfg.model, cfg.train, cfg.speed
    _need(d.channels in (1, 3), source, f"data.channels = {d.channels} must be 1 (gray) or 3 (colour)")
    _need(d.size >= 8 and d.size % 4 == 0, source,
          f"data.size = {d.size} must be a multiple of 4 and at least 8 (the generator halves it twice)")
    unknown = [a for a in d.augment if a not in AUGMENTATIONS]
    _need(not unknown, source,
          f"data.augment has unknown name(s) {', '.join(map(repr, unknown))}; "
          f"valid: {', '.join(AUGMENTATIONS)}")
    _need(1.0 <= d.random_crop_scale <= 2.0, source,
          f"data.random_crop_scale = {d.random_crop_scale} must be between 1.0 and 2.0")
    _need(0.0 <= d.rotation_deg <= 45.0, source, f"data.rotation_deg = {d.rotation_deg} must be 0..45")
    _need(d.sample_rows >= 1, source, "data.sample_rows must be at least 1")
    _need(m.kind in MODEL_KIND_NAMES, source,
          f"model.kind = {m.kind!r} is not a model p2d trains; choose one of: {', '.join(MODEL_KIND_NAMES)}")
    for key in ("filters", "blocks", "disc_filters", "disc_layers", "nce_patches", "head_units"):
        _need(getattr(m, key) >= 1, source, f"model.{key} = {getattr(m, key)} must be at least 1")
    _need(m.upsample in UPSAMPLINGS, source,
          f"model.upsample = {m.upsample!r} must be one of: {', '.join(UPSAMPLINGS)}")
    bad = [name for name in m.nce_layers if not _is_nce_layer(name)]
    _need(bool(m.nce_layers) and not bad, source,
          f"model.nce_layers = {m.nce_layers!r}: give names among input, down1, down2, block1, block2, ...")
    _need(t.nce_temperature > 0 and t.nce_weight >= 0, source,
          "train.nce_temperature must be positive and train.nce_weight not negative")
    _need(t.epochs >= 1, source, f"train.epochs = {t.epochs} must be at least 1")
    _need(t.batch_size >= 1, source, f"train.batch_size = {t.batch_size} must be at least 1")
    _need(t.lr > 0, source, f"train.lr = {t.lr} must be positive")
    _need(0 <= t.beta1 < 1 and 0 <= t.beta2 < 1, source, "train.beta1 and beta2 must be in [0, 1)")
    _need(t.decay_from_epoch >= 1, source, f"train.decay_from_epoch = {t.decay_from_epoch} must be >= 1")
    _need(t.cycle_weight >= 0 and t.identity_weight >= 0, source,
          "train.cycle_weight and identity_weight must not be negative")
    if t.unequal_cycle_weights:
        w = t.unequal_cycle_weights
        _need(len(w) == 2 and all(isinstance(v, (int, float)) and v >= 0 for v in w), source,
              "train.unequal_cycle_weights must be two numbers >= 0: "
              "photo cycle weight, drawing cycle weight")
        if w[0] != w[1]:
            warnings.warn(
                f"{source}: unequal cycle weights {w} (photo, drawing): unequal weights diverged in "
                "the experiments; remove train.unequal_cycle_weights to use cycle_weight for both",
                stacklevel=2,
            )
    _need(t.pool_size >= 0, source, "train.pool_size must be >= 0 (0 turns the image pool off)")
    _need(t.save_every >= 1, source, f"train.save_every = {t.save_every} must be at least 1")
    _need(t.latest_every_minutes >= 0, source,
          f"train.latest_every_minutes = {t.latest_every_minutes} must be >= 0 "
          "(0: save latest at epoch ends only)")
    _need(s.precision in PRECISIONS, source,
          f"speed.precision = {s.precision!r} must be one of {', '.join(PRECISIONS)}")
    _need(s.workers >= 0, source, "speed.workers must be >= 0")
