"""The params.yaml schema: one dataclass per stage section, validated once on load.

Every key must be present in params.yaml (it is the one place that holds values), and
every error names the key, the bad value and what is allowed, so a typo never runs a
stage with a silently different setting.

A key that names a file the user supplies says so (``rule(file=...)``), because DVC must
see that file as a dependency of the stages that read the key: an ``input`` (always set)
appears in dvc.yaml as ``${section.key}``; ``weights`` (optional, or an open_clip tag)
must lie in the weights/ folder, which those stages depend on as a whole, since DVC
cannot template a dependency from a null. tests/test_dvc_yaml.py checks both.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from pipeline.core.codes import book_size
from pipeline.core.errors import ParamsError

WEIGHTS_DIR = "weights"
UserFile = Literal["input", "weights", "weights_or_tag", "weights_or_auto"]


def rule(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
         lt: float | None = None, length: int | None = None, help: str = "", file: UserFile | None = None) -> Any:
    """A required field with an optional numeric range (applies to list items too); ``length``:
    a list's exact number of items; ``file`` marks a key that names a user's file (see the module
    docstring)."""
    return field(metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "length": length, "help": help, "file": file})


def _weights_location_error(value: str, kind: UserFile) -> str | None:
    """None when ``value`` is a file under weights/ (or, for weights_or_tag, a tag like 'openai';
    for weights_or_auto, 'auto')."""
    if kind == "weights_or_tag" and not re.search(r"[/\\.]", value):
        return None
    if kind == "weights_or_auto" and value == "auto":
        return None
    path = PurePosixPath(value.replace("\\", "/"))
    if not path.is_absolute() and path.parts[:1] == (WEIGHTS_DIR,) and ".." not in path.parts:
        return None
    other = "auto, null or " if kind == "weights_or_auto" else ""
    return (f"{other}a local weights file must be inside {WEIGHTS_DIR}/, the folder DVC tracks for the stages "
            f"that read it (so replacing the file reruns them): copy or link it there, e.g. "
            f"ln -s {os.path.abspath(value)} {WEIGHTS_DIR}/ and set the key to {WEIGHTS_DIR}/{path.name}")


Device = Literal["auto", "cpu", "cuda"]
THREADS_HELP = "torch CPU threads; 0 = the CPUs this process may use"
Precision = Literal["bf16", "fp32"]


@dataclass(frozen=True)
class WorldParams:
    """Which world the experiment runs on (conf/world/*.yaml sets the rest to suit it)."""
    name: Literal["shapes", "faces"] = rule(help="shapes: rendered offline; faces: UTKFace photos")
    source: str = rule(help="what the world stage reads: the shapes renderer's code, or the faces archive",
                       file="input")
    data: str = rule(help="the world stage's output folder")
    reports: str = rule(help="where evaluate writes the scorecard, metrics, report and contact sheet")


@dataclass(frozen=True)
class ShapesParams:
    """The procedurally rendered, captioned default world."""
    n_images: int = rule(ge=1)
    resolution: int = rule(ge=8, le=1024)
    seed: int = rule(ge=0)
    heldout_pairs: int = rule(ge=0, le=3, help="(shape, colour) pairs the generator never sees; each shape and "
                                                "colour in at most one")
    heldout_seed: int = rule(ge=0)


@dataclass(frozen=True)
class FacesParams:
    """Real face photos (a UTKFace archive with labels.csv) split into disjoint parts by a
    seeded hash of the image id: the CLIP's, the scorer's (the scoring CLIP and the judge) and
    the generator's (ingest: tokenizer and generator)."""
    split_seed: int = rule(ge=0)
    clip_share: float = rule(gt=0, lt=1)
    scorer_share: float = rule(gt=0, lt=1)
    heldout_pairs: int = rule(ge=0, le=5, help="(age, race) pairs the generator never sees; each age and race in "
                                              "at most one")
    heldout_seed: int = rule(ge=0)
    heldout_min_images: int = rule(ge=0, help="a held-out pair must have this many photos in the archive")


@dataclass(frozen=True)
class IngestParams:
    """Where the images come from and how they are cleaned."""
    source: str = rule(help="folder, .zip, .tar(.gz) or .parquet of images", file="input")
    labels: str | None = rule(help="CSV with a 'file' column, inside the folder/archive")
    image_column: str = rule(help="bytes column of a Parquet source")
    resolution: int = rule(ge=8, le=1024)
    val_fraction: float = rule(ge=0, lt=1)
    split_salt: str = rule()
    shard_size: int = rule(ge=1)
    max_file_mb: float = rule(gt=0)
    max_pixels: int = rule(ge=1)
    background: list[int] = rule(ge=0, le=255, length=3, help="RGB behind transparent pixels")
    workers: int = rule(ge=0, help="decoding processes; 0 = the CPUs this process may use")


@dataclass(frozen=True)
class OptimParams:
    """AdamW with a linear warm-up, the same keys in each trainer's section (pipeline/core/training.py)."""
    lr: float = rule(gt=0, help="the peak, reached after warmup_steps")
    betas: list[float] = rule(ge=0, lt=1, length=2)
    weight_decay: float = rule(ge=0, help="on matrices and embedding tables only")
    warmup_steps: int = rule(ge=0)
    grad_clip: float = rule(ge=0, help="max global gradient norm; 0 = off")


@dataclass(frozen=True)
class TokenizerParams:
    """Gumbel-softmax VQGAN: architecture, quantiser and training."""
    seed: int = rule(ge=0)
    n_codes: int = rule(ge=2, help="K, the joint codes: k ** code_books")
    code_books: int = rule(ge=1, help="m: each position picks a code from each of m books of k codes "
                                      "(pipeline/core/codes.py); 1 = one plain codebook")
    code_dim: int = rule(ge=1)
    ch: int = rule(ge=1)
    ch_mult: list[int] = rule(ge=1, help="one entry per level; f = 2**(len-1)")
    num_res_blocks: int = rule(ge=1)
    attn_resolutions: list[int] = rule(ge=1)
    norm: Literal["group", "none"] = rule(help="group: VQGAN's GroupNorm; none suits narrow CPU models")
    recon_loss: Literal["l1", "mse"] = rule(help="mse weighs the large errors at object edges over background noise")
    kl_weight: float = rule(ge=0)
    usage_weight: float = rule(ge=0, help="weight of log K - entropy of the batch's mean code distribution")
    tau_start: float = rule(gt=0)
    tau_end: float = rule(gt=0)
    tau_steps: int = rule(ge=1)
    steps: int = rule(ge=1)
    batch_size: int = rule(ge=1)
    optim: OptimParams = rule()
    ema_decay: float = rule(ge=0, lt=1, help="0 = off")
    disc_weight: float = rule(ge=0, help="0 = no patch-GAN")
    disc_start: int = rule(ge=0)
    perceptual_weights: str | None = rule(help="local file in weights/; null = no perceptual loss", file="weights")
    perceptual_weight: float = rule(ge=0)
    checkpoint_every: int = rule(ge=1)
    encode_batch_size: int = rule(ge=1)
    device: Device = rule()
    threads: int = rule(ge=0, help=THREADS_HELP)
    precision: Precision = rule(help="autocast on CUDA; CPU always runs fp32")
    compile: bool = rule(help="torch.compile the model (CUDA only)")
    channels_last: bool = rule(help="NHWC memory layout for the convolutions (CUDA only)")


@dataclass(frozen=True)
class ClipTrainParams:
    """Contrastive training of the small offline CLIP on its world's own renders (pretrained: null)."""
    world: str = rule(help="the world whose renderer and captions it trains on (pipeline/worlds/registry.py)")
    data: str | None = rule(help="a labelled image folder of that world (its own part of the photos); null = "
                                 "the world's renders")
    images: int = rule(ge=2, help="its own render set, disjoint from the generator's images")
    render_seed: int = rule(ge=0, help="the render stream; differ from shapes.seed and from the other CLIP's")
    seed: int = rule(ge=0)
    steps: int = rule(ge=1)
    batch_size: int = rule(ge=2, help="distinct attribute combinations per batch (fewer if there are fewer)")
    optim: OptimParams = rule()
    augment_p: float = rule(ge=0, le=1, help="share of captions reworded from the attribute columns")
    partial_p: float = rule(ge=0, le=1, help="share of captions naming only some attributes")
    logit_scale: float = rule(gt=0, le=100, help="initial inverse temperature (OpenAI CLIP ends at 100)")
    learn_logit_scale: bool = rule()


@dataclass(frozen=True)
class ClipParams:
    """The CLIP encoder (open_clip) and, without pretrained weights, how to train the small one."""
    model: str = rule(help="an open_clip model name, or a config in pipeline/clip/configs")
    pretrained: str | None = rule(help="open_clip tag (e.g. openai), a checkpoint file in weights/, or null = train",
                                  file="weights_or_tag")
    precision: Literal["fp32", "fp16", "bf16"] = rule(help="used on CUDA; CPU always runs fp32")
    batch_size: int = rule(ge=1, help="embedding batch size")
    eval_images: int = rule(ge=2, help="held-out renders scored in reports/clip.json")
    device: Device = rule()
    threads: int = rule(ge=0, help=THREADS_HELP)
    train: ClipTrainParams = rule()


@dataclass(frozen=True)
class JudgeParams:
    """The CLIP-free judge: a world's rule checker, or a small CNN trained on the scorer's labelled part."""
    data: str | None = rule(help="the labelled folder the CNN trains on; null = the world's rule checker")
    seed: int = rule(ge=0)
    width: int = rule(ge=4, help="channels of the first convolution (doubling per level)")
    steps: int = rule(ge=1)
    batch_size: int = rule(ge=1)
    optim: OptimParams = rule()
    val_fraction: float = rule(gt=0, lt=1, help="held out of its folder by a hash of the image id")
    checkpoint_every: int = rule(ge=1)
    device: Device = rule()
    threads: int = rule(ge=0, help=THREADS_HELP)


@dataclass(frozen=True)
class EmbedParams:
    """The evaluation prompts whose CLIP text embeddings are cached with the image embeddings."""
    prompts: str = rule(help="a CSV with a 'prompt' column, or a text file with one prompt per line", file="input")
    prompt_prefix: str = rule(help='prepended to every prompt, e.g. "a photograph of "')
    threads: int = rule(ge=0, help=THREADS_HELP)


@dataclass(frozen=True)
class LafiteParams:
    """LAFITE's StyleGAN2-style generator and conditional discriminator (pipeline/lafite/)."""
    z_dim: int = rule(ge=1, help="width of the noise z")
    w_dim: int = rule(ge=8, help="width of the mapping network's w")
    mapping_layers: int = rule(ge=1)
    channel_base: int = rule(ge=8, help="channels at resolution r: min(channel_base // r, channel_max)")
    channel_max: int = rule(ge=8)
    lr: float = rule(gt=0, help="both networks' Adam learning rate (train.optim is the other generators')")
    betas: list[float] = rule(ge=0, lt=1, length=2, help="Adam betas; GANs train with beta1 = 0")
    r1_gamma: float = rule(ge=0, help="R1 penalty weight on real images")
    r1_every: int = rule(ge=1, help="lazy R1: penalise every this many steps, scaled up to match")
    itd_weight: float = rule(ge=0, help="discriminator-side contrastive loss (its features vs the condition)")
    itc_weight: float = rule(ge=0, help="generator-side contrastive loss (CLIP of the fake vs the condition)")
    temperature: float = rule(gt=0, help="of both contrastive losses")


@dataclass(frozen=True)
class ClipgenParams:
    """CLIP-GEN's autoregressive transformer over the code grid (pipeline/clipgen/)."""
    depth: int = rule(ge=1)
    width: int = rule(ge=8)
    heads: int = rule(ge=1)
    mlp_ratio: float = rule(gt=0)


@dataclass(frozen=True)
class TrainParams:
    """The text-to-image generator, trained on pseudo text embeddings: VQ-Diffusion (the keys from
    depth to t_history_decay), LAFITE or CLIP-GEN (their sections); the rest is shared."""
    generator: Literal["vqdiffusion", "lafite", "clipgen"] = rule(help="which generator the train stage trains")
    seed: int = rule(ge=0)
    depth: int = rule(ge=1)
    width: int = rule(ge=8)
    heads: int = rule(ge=1)
    mlp_ratio: float = rule(gt=0)
    mlp: Literal["linear", "conv"] = rule()
    cond_tokens: int = rule(ge=0, help="k condition tokens each block cross-attends to; 0 = AdaLN only")
    diffusion_steps: int = rule(ge=2, help="T")
    abar_range: list[float] = rule(gt=0, lt=1, length=2, help="[start, end] of the keep probability (falls)")
    gbar_range: list[float] = rule(gt=0, lt=1, length=2, help="[start, end] of the mask probability (rises)")
    aux_weight: float = rule(ge=0)
    t_min_count: int = rule(ge=1)
    t_history_decay: float = rule(ge=0, lt=1)
    lafite: LafiteParams = rule()
    clipgen: ClipgenParams = rule()
    pseudo_text: Literal["none", "clipvq", "lafite", "c3"] = rule()
    pseudo_scale: float = rule(ge=0, help="a (clipvq), xi (lafite) or sigma (c3); unused by none")
    cond_drop: float = rule(ge=0, lt=1)
    steps: int = rule(ge=1)
    batch_size: int = rule(ge=1)
    optim: OptimParams = rule()
    ema_decay: float = rule(ge=0, lt=1, help="0 = off")
    checkpoint_every: int = rule(ge=1)
    log_every: int = rule(ge=1)
    device: Device = rule()
    threads: int = rule(ge=0, help=THREADS_HELP)
    precision: Precision = rule(help="autocast on CUDA; CPU always runs fp32")
    compile: bool = rule(help="torch.compile the model (CUDA only)")


@dataclass(frozen=True)
class SampleParams:
    """Reverse diffusion from the prompts' CLIP text embeddings."""
    seed: int = rule(ge=0)
    samples_per_prompt: int = rule(ge=1)
    heldout_samples_per_prompt: int | None = rule(ge=1, help="held-out prompts' samples (few prompts need more for "
                                                           "a tight interval); null = samples_per_prompt")
    steps: int | None = rule(ge=1, help="reverse steps (skip-step posterior); null = all T")
    guidance: float = rule(ge=0, help="classifier-free guidance scale; 1 = none")
    truncation: float = rule(gt=0, le=1, help="keep the top codes up to this cumulative probability (vqdiffusion, "
                                              "clipgen); lafite: StyleGAN's psi, w pulled towards its mean")
    top_k: int = rule(ge=0, help="clipgen: keep the k likeliest codes; 0 = all")
    purity: bool = rule()
    purity_sharpen: float = rule(ge=0)
    full_steps_prompts: int = rule(ge=0, help="prompts also sampled with all T steps, to compare")
    device: Device = rule()
    threads: int = rule(ge=0, help=THREADS_HELP)


@dataclass(frozen=True)
class TradeoffParams:
    """Alignment against Frechet distance over guidance and truncation, with the sample stage's sampler."""
    guidance: list[float] = rule(ge=0, help="classifier-free guidance scales, each at sample.truncation")
    truncation: list[float] = rule(gt=0, le=1, help="truncations, each at sample.guidance")
    prompt_set: Literal["seen", "heldout", "new_wording"] = rule(help="prompts naming every attribute (a prompts "
                                                                      "file without sets is used whole)")
    samples_per_prompt: int = rule(ge=1)
    fd_images: int | None = rule(ge=2, help="N of each point's Frechet distance and of its floor; null = every "
                                            "sample of a point (the val split needs 2 N images)")
    seed: int = rule(ge=0)
    device: Device = rule()
    threads: int = rule(ge=0, help=THREADS_HELP)


@dataclass(frozen=True)
class EvaluateParams:
    """Frechet distance, CLIPScore and the CLIP-free text-alignment check."""
    fd_images: int = rule(ge=2, help="N of every Frechet distance: generated, reference and each floor "
                                     "(the val split needs 2 N images)")
    inception_weights: str | None = rule(help="auto: torch-fidelity's Inception weights (downloaded; offline, the "
                                              "scoring CLIP's distances); a file in weights/ -> FID and KID; null -> "
                                              "Frechet and kernel distances in the scoring CLIP's space",
                                         file="weights_or_auto")
    checker_images: int = rule(ge=1)
    checker_seed: int = rule(ge=0)
    batch_size: int = rule(ge=1)
    rerank: bool = rule(help="show each prompt's samples best first by the scoring CLIP's cosine in the report")
    sheet_samples: int = rule(ge=1, help="samples per prompt shown in the report's contact sheets")
    threads: int = rule(ge=0, help=THREADS_HELP)


@dataclass(frozen=True)
class DistributedParams:
    """Data-parallel runs under torchrun (tokenizer and train stages); ignored otherwise."""
    backend: Literal["auto", "nccl", "gloo"] = rule(help="auto: nccl on CUDA, gloo on CPU")


@dataclass(frozen=True)
class Params:
    world: WorldParams
    shapes: ShapesParams
    faces: FacesParams
    ingest: IngestParams
    tokenizer: TokenizerParams
    clip: ClipParams  # conditions the generator (embed stage)
    scorer: ClipParams  # scores the samples (evaluate stage), never conditions
    judge: JudgeParams
    embed: EmbedParams
    train: TrainParams
    sample: SampleParams
    tradeoff: TradeoffParams
    evaluate: EvaluateParams
    distributed: DistributedParams


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, tp.__name__)


def _range_error(value: float, meta: dict[str, Any]) -> str | None:
    checks = [("ge", ">=", lambda a, b: a >= b), ("gt", ">", lambda a, b: a > b),
              ("le", "<=", lambda a, b: a <= b), ("lt", "<", lambda a, b: a < b)]
    bounds = [(sym, meta[key]) for key, sym, _ in checks if meta.get(key) is not None]
    if all(ok(value, meta[key]) for key, _, ok in checks if meta.get(key) is not None):
        return None
    return "must be " + " and ".join(f"{sym} {bound}" for sym, bound in bounds)


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def fail(self, key: str, value: Any, allowed: str) -> None:
        self.errors.append(f"{self.source}: {key} = {value!r}: {allowed}")

    def convert(self, key: str, value: Any, tp: Any, meta: dict[str, Any]) -> Any:
        origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            return self.section(key, value, tp)
        if origin is Literal:
            if value not in typing.get_args(tp):
                self.fail(key, value, f"must be {_type_name(tp)}")
            return value
        if origin in (types.UnionType, typing.Union):
            if value is None and type(None) in typing.get_args(tp):
                return None
            inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
            return self.convert(key, value, inner, meta)
        if origin is list:
            if not isinstance(value, list):
                self.fail(key, value, f"must be {_type_name(tp)}")
                return value
            if meta.get("length") is not None and len(value) != meta["length"]:
                self.fail(key, value, f"must have exactly {meta['length']} values")
                return value
            item = typing.get_args(tp)[0]
            return [self.convert(f"{key}[{i}]", v, item, meta) for i, v in enumerate(value)]
        return self.scalar(key, value, tp, meta)

    def scalar(self, key: str, value: Any, tp: type, meta: dict[str, Any]) -> Any:
        if tp is float and isinstance(value, str):
            try:  # PyYAML reads "1e-4" as a string (YAML 1.1); accept it as the number it is
                value = float(value)
            except ValueError:
                pass
        ok = {
            bool: isinstance(value, bool),
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            str: isinstance(value, str),
        }[tp]
        if not ok:
            self.fail(key, value, f"must be {_type_name(tp)}")
            return value
        if tp is float:
            value = float(value)
        if tp is str and meta.get("file") in ("weights", "weights_or_tag", "weights_or_auto"):
            problem = _weights_location_error(value, meta["file"])
            if problem:
                self.fail(key, value, problem)
        if tp in (int, float):
            problem = _range_error(value, meta)
            if problem:
                self.fail(key, value, problem)
        return value

    def section(self, prefix: str, raw: Any, cls: type) -> Any:
        if not isinstance(raw, dict):
            self.fail(prefix or "<top level>", raw, f"must be a mapping with keys {_field_names(cls)}")
            return None
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.fail(_join(prefix, key), raw[key], f"unknown key{hint}; allowed keys: {_field_names(cls)}")
        values = {}
        for name, f in fields.items():
            key = _join(prefix, name)
            if name not in raw:
                self.errors.append(f"{self.source}: {key} is missing: add it ({_type_name(hints[name])})")
                continue
            values[name] = self.convert(key, raw[name], hints[name], dict(f.metadata))
        if len(values) != len(fields) or self.errors:
            return None
        return cls(**values)


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


MIN_REPLACE = 1e-9  # least 1 - abar - gbar of a schedule: pipeline.diffusion.process.Schedule's own floor


def _schedule_problems(train: TrainParams) -> list[tuple[str, Any, str]]:
    """The noise schedule must be a valid mask-and-replace process at every step. abar and gbar are
    linear in t, and so is 1 - abar - gbar, and abar / (1 - gbar) is monotone, so the endpoints decide:
    abar falls (a step never un-corrupts), gbar rises (a mask is never lifted), the uniform-replace
    share stays >= MIN_REPLACE (at 0 the posterior no longer sums to 1) and abar / (1 - gbar), the
    chance an unmasked code is still x_0, never rises (else a step's replace probability is negative)."""
    (a0, a1), (g0, g1) = train.abar_range, train.gbar_range
    both = ("train.abar_range, train.gbar_range", [train.abar_range, train.gbar_range])
    problems = []
    if a1 > a0:
        problems.append(("train.abar_range", train.abar_range, "must fall: [start, end] with end <= start"))
    if g1 < g0:
        problems.append(("train.gbar_range", train.gbar_range, "must rise: [start, end] with end >= start"))
    if min(1 - a0 - g0, 1 - a1 - g1) < MIN_REPLACE:
        problems.append((*both, f"abar + gbar must stay <= 1 - {MIN_REPLACE:g} at both ends (the rest is the "
                                "chance of a uniformly replaced code)"))
    elif a1 / (1 - g1) > a0 / (1 - g0):
        problems.append((*both, "abar / (1 - gbar) must not rise from start to end (a step would replace codes "
                                "with negative probability): lower abar's end or gbar's end"))
    return problems


def _consistency_problems(params: Params) -> list[tuple[str, Any, str]]:
    """Rules that tie keys together, checked once every key is valid on its own: (key, value, rule)."""
    train, problems = params.train, []
    if train.width % train.heads:
        problems.append(("train.width", train.width, f"must be divisible by train.heads ({train.heads})"))
    if train.clipgen.width % train.clipgen.heads:
        problems.append(("train.clipgen.width", train.clipgen.width,
                         f"must be divisible by train.clipgen.heads ({train.clipgen.heads})"))
    problems += _schedule_problems(train)
    if params.sample.steps is not None and params.sample.steps > train.diffusion_steps:
        problems.append(("sample.steps", params.sample.steps,
                         f"must be <= train.diffusion_steps ({train.diffusion_steps}), or null for all of them"))
    tokenizer = params.tokenizer
    if book_size(tokenizer.n_codes, tokenizer.code_books) is None:
        problems.append(("tokenizer.n_codes", tokenizer.n_codes,
                         f"must be k ** tokenizer.code_books ({tokenizer.code_books}) for a whole k >= 2, e.g. "
                         f"{12 ** tokenizer.code_books}"))
    if tokenizer.code_dim % tokenizer.code_books:
        problems.append(("tokenizer.code_dim", tokenizer.code_dim,
                         f"must be divisible by tokenizer.code_books ({tokenizer.code_books})"))
    factor = 2 ** (len(params.tokenizer.ch_mult) - 1)
    if params.ingest.resolution % factor:
        problems.append(("ingest.resolution", params.ingest.resolution,
                         f"must be divisible by the tokenizer's downsampling factor {factor} "
                         f"(2 ** (len(tokenizer.ch_mult) - 1))"))
    return problems


def parse_params(raw: Any, source: str = "params") -> Params:
    """Validate a parsed params mapping; raise ParamsError listing every problem."""
    validator = _Validator(source)
    params = validator.section("", raw, Params)
    if not validator.errors:
        for key, value, allowed in _consistency_problems(params):
            validator.fail(key, value, allowed)
    if validator.errors:
        raise ParamsError("\n".join(validator.errors))
    return params


def load_raw(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run from the repository root or pass --params")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from error


def load_params(path: str | Path = "params.yaml") -> Params:
    return parse_params(load_raw(path), str(path))
