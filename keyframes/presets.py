"""The registry of keyframe model presets.

A preset names the base model, the adapters (IP-Adapter FaceID, ControlNets), the dtype and the
generation defaults. This module imports no torch: the dry run and the CLI read it to plan a run
and to print what would be downloaded, without loading a model.

Weight locations are overridable, per component, by environment variables (the flux pattern):
``KEYRENDER_MODEL_BASE``, ``KEYRENDER_MODEL_FACEID``, ``KEYRENDER_MODEL_STYLE``,
``KEYRENDER_MODEL_CONTROLNET_OPENPOSE``, ``KEYRENDER_MODEL_CONTROLNET_CANNY``,
``KEYRENDER_MODEL_CONTROLNET_DEPTH``, ``KEYRENDER_MODEL_ANNOTATORS``. A value is a Hugging Face
model id or a local folder laid out like the repo (or, for the FaceID and style adapters, a local
weight file; a style weight file's CLIP image encoder is the ``image_encoder/`` folder beside it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from ..core.errors import InputError
from ..core.weights import WeightSpec, source as _source

#: The environment variable that overrides each component's location.
ENV_VARS: Mapping[str, str] = {
    "base": "KEYRENDER_MODEL_BASE",
    "faceid": "KEYRENDER_MODEL_FACEID",
    "style": "KEYRENDER_MODEL_STYLE",
    "controlnet_openpose": "KEYRENDER_MODEL_CONTROLNET_OPENPOSE",
    "controlnet_canny": "KEYRENDER_MODEL_CONTROLNET_CANNY",
    "controlnet_depth": "KEYRENDER_MODEL_CONTROLNET_DEPTH",
    "annotators": "KEYRENDER_MODEL_ANNOTATORS",
}

#: request.control_type values: the kind runs its controlnet-aux preprocessor on the control image;
#: "<kind>-preprocessed" uses the image as the control map; "none" (the shot list's "the image is
#: already a control map") is "openpose-preprocessed"; "off" turns control off.
CONTROL_TYPES = ("openpose", "canny", "depth", "openpose-preprocessed", "canny-preprocessed",
                 "depth-preprocessed", "none", "off")


#: The UNet blocks where joint attention may apply: "up" (the decoder, as StoryDiffusion),
#: "mid_up" (mid block and decoder), "all" (encoder too).
LAYER_GROUPS: Mapping[str, tuple[str, ...]] = {"up": ("up",), "mid_up": ("mid", "up"), "all": ("down", "mid", "up")}


@dataclass(frozen=True)
class ConsistentAttentionOptions:
    """Defaults of the joint (consistent self-) attention across a shot's keyframes.

    sampling_rate: the fraction of every other image's tokens each image also attends to.
    layers: "up" (decoder only, as StoryDiffusion), "mid_up", or "all".
    start, end: the fraction of the denoising schedule where it applies ([0, 1], start <= end).
    """

    enabled: bool = True
    sampling_rate: float = 0.5
    layers: str = "up"
    start: float = 0.0
    end: float = 1.0
    anchor: bool = True  # later shots of a scene attend to the scene's first keyframe too

    def check(self) -> "ConsistentAttentionOptions":
        """self, or InputError naming the bad value."""
        problems = []
        if not isinstance(self.sampling_rate, (int, float)) or not 0.0 <= float(self.sampling_rate) <= 1.0:
            problems.append(f"sampling rate {self.sampling_rate!r} must be in [0, 1]")
        if self.layers not in LAYER_GROUPS:
            problems.append(f"layers {self.layers!r} must be one of {', '.join(LAYER_GROUPS)}")
        try:
            start, end = float(self.start), float(self.end)
        except (TypeError, ValueError):
            problems.append(f"step range {self.start!r}..{self.end!r} must be numbers")
        else:
            if not 0.0 <= start <= end <= 1.0:
                problems.append(f"step range {start:g}..{end:g} must satisfy 0 <= start <= end <= 1 "
                                "(fractions of the denoising schedule)")
        if problems:
            raise InputError("joint attention: " + "; ".join(problems))
        return self


@dataclass(frozen=True)
class Preset:
    """A keyframe model preset. Frozen; use `dataclasses.replace` (or `Preset.with_overrides`)."""

    name: str
    description: str
    family: str  # "sdxl" | "sd15"
    base: WeightSpec | None  # None: built in-process from tiny configs (random weights)
    faceid: WeightSpec | None
    controlnets: Mapping[str, WeightSpec] = field(default_factory=dict)
    style: WeightSpec | None = None  # IP-Adapter for a scene's style reference image
    annotators: WeightSpec | None = None  # controlnet-aux annotator weights (openpose, depth)
    dtype: str = "float16"  # on GPU; CPU always runs float32
    width: int = 1024
    height: int = 1024
    steps: int = 30
    guidance: float = 5.0
    identity_strength: float = 0.7
    style_strength: float = 0.4
    regenerate_strength: float = 0.35
    face_model: str = "buffalo_l"
    # the in-betweener of spans between real views (storyboard images), and of every span when it
    # is not "flow"
    interpolator: str = "flow"
    # the keyframe-conditioned video model for spans that touch a generated keyframe ("ltx",
    # "wan"; None: flow), used when its weights are on this machine (`keyrender.shot.options.choose_inbetweener`), and
    # where its weights are (None: its KEYRENDER_MODEL_* variable, else its hub id; "tiny": built
    # in-process)
    video_interpolator: str | None = None
    video_model: str | None = None
    # options of that backend (interpolate.generative.GenerativeInterpolator: steps, ...) where
    # the preset's differ from the model's documented defaults
    video_options: Mapping[str, Any] = field(default_factory=dict)
    scheduler: str = "euler"
    consistent: ConsistentAttentionOptions = field(default_factory=ConsistentAttentionOptions)
    tiny: bool = False

    def source(self, component: str) -> str | None:
        """The location of a component: its environment override if set, else its repo id."""
        return _source(self.spec(component), ENV_VARS.get(component))

    def spec(self, component: str) -> WeightSpec | None:
        if component == "base":
            return self.base
        if component == "faceid":
            return self.faceid
        if component == "style":
            return self.style
        if component == "annotators":
            return self.annotators
        if component.startswith("controlnet_"):
            return self.controlnets.get(component[len("controlnet_"):])
        raise KeyError(component)

    def downloads(self) -> list[tuple[str, WeightSpec]]:
        """(component, spec) of every weight this preset may need, for the dry run / docs."""
        out: list[tuple[str, WeightSpec]] = []
        for comp, spec in (("base", self.base), ("faceid", self.faceid), ("style", self.style)):
            if spec is not None:
                out.append((comp, spec))
        for kind, spec in self.controlnets.items():
            out.append((f"controlnet_{kind}", spec))
        if self.annotators is not None:
            out.append(("annotators", self.annotators))
        return out

    def cache_record(self) -> dict:
        """What of this preset changes the pixels it makes, for cache keys: the model family,
        where each component's weights come from (environment overrides applied) and which file,
        the dtype, default size, sampling, conditioning strengths, scheduler, interpolator and
        joint-attention defaults. Not the name, description, download sizes, licences or
        download patterns (editing those re-renders nothing), nor the face model (the run's
        effective one is in the key on its own)."""
        weights = {
            component: {"source": self.source(component), "subfolder": spec.subfolder,
                        "weight_name": spec.weight_name, "image_encoder": spec.image_encoder}
            for component, spec in self.downloads()
        }
        return {
            "family": self.family, "tiny": self.tiny, "weights": weights, "dtype": self.dtype,
            "width": self.width, "height": self.height, "steps": self.steps, "guidance": self.guidance,
            "identity_strength": self.identity_strength, "style_strength": self.style_strength,
            "regenerate_strength": self.regenerate_strength, "scheduler": self.scheduler,
            "interpolator": self.interpolator, "video_interpolator": self.video_interpolator,
            "video_model": self.video_model, "video_options": dict(self.video_options),
            "consistent": asdict(self.consistent),
        }

    def with_overrides(self, **changes) -> "Preset":
        return replace(self, **changes)


_SDXL_LICENSE = "CreativeML Open RAIL++-M"
_FACEID_LICENSE = (
    "IP-Adapter-FaceID: non-commercial research use only (model card); its face embeddings "
    "come from InsightFace models, whose pretrained weights are non-commercial research only"
)
_ANNOTATORS = WeightSpec(
    "lllyasviel/Annotators",
    size="~1.5 GB (body_pose_model.pth, hand_pose_model.pth, facenet.pth, dpt_hybrid-midas)",
    license="see model card (OpenPose weights: academic/non-commercial)",
    include=("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth", "dpt_hybrid-midas-501f0c75.pt"),
)

PRESETS: dict[str, Preset] = {}


def _register(preset: Preset) -> Preset:
    PRESETS[preset.name] = preset
    return preset


SDXL = _register(
    Preset(
        name="sdxl",
        description="Stable Diffusion XL base 1.0 + IP-Adapter FaceID (SDXL), 1024x1024",
        family="sdxl",
        base=WeightSpec(
            "stabilityai/stable-diffusion-xl-base-1.0",
            size="~7 GB in fp16 (unet, vae, two text encoders)",
            license=_SDXL_LICENSE,
            include=("*.json", "*.txt", "*fp16.safetensors"),
        ),
        faceid=WeightSpec(
            "h94/IP-Adapter-FaceID",
            weight_name="ip-adapter-faceid_sdxl.bin",
            size="~1.1 GB",
            license=_FACEID_LICENSE,
        ),
        style=WeightSpec(
            "h94/IP-Adapter",
            subfolder="sdxl_models",
            weight_name="ip-adapter_sdxl.safetensors",
            size="~0.7 GB + its image encoder (OpenCLIP ViT-bigG/14, fp16) ~3.7 GB",
            license="Apache-2.0",
            image_encoder="sdxl_models/image_encoder",
        ),
        controlnets={
            "openpose": WeightSpec("thibaud/controlnet-openpose-sdxl-1.0", size="~5 GB", license="see model card"),
            "canny": WeightSpec("diffusers/controlnet-canny-sdxl-1.0", size="~5 GB", license="openrail++"),
            "depth": WeightSpec("diffusers/controlnet-depth-sdxl-1.0", size="~5 GB", license="openrail++"),
        },
        annotators=_ANNOTATORS,
        dtype="float16",
        width=1024,
        height=1024,
        steps=30,
        guidance=5.0,
        face_model="buffalo_l",
        interpolator="flow",
        video_interpolator="ltx",
    )
)

SD15 = _register(
    Preset(
        name="sd15",
        description="Stable Diffusion 1.5 + IP-Adapter FaceID (SD1.5), 512x512: lighter",
        family="sd15",
        base=WeightSpec(
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            size="~2 GB in fp16",
            license="CreativeML Open RAIL-M",
            include=("*.json", "*.txt", "*fp16.safetensors"),
        ),
        faceid=WeightSpec(
            "h94/IP-Adapter-FaceID",
            weight_name="ip-adapter-faceid_sd15.bin",
            size="~0.1 GB",
            license=_FACEID_LICENSE,
        ),
        style=WeightSpec(
            "h94/IP-Adapter",
            subfolder="models",
            weight_name="ip-adapter_sd15.safetensors",
            size="~0.05 GB + its image encoder (OpenCLIP ViT-H/14) ~2.5 GB",
            license="Apache-2.0",
            image_encoder="models/image_encoder",
        ),
        controlnets={
            "openpose": WeightSpec("lllyasviel/control_v11p_sd15_openpose", size="~1.4 GB", license="openrail"),
            "canny": WeightSpec("lllyasviel/control_v11p_sd15_canny", size="~1.4 GB", license="openrail"),
            "depth": WeightSpec("lllyasviel/control_v11f1p_sd15_depth", size="~1.4 GB", license="openrail"),
        },
        annotators=_ANNOTATORS,
        dtype="float16",
        width=512,
        height=512,
        steps=30,
        guidance=7.0,
        face_model="buffalo_l",
        interpolator="flow",
        video_interpolator="ltx",
    )
)

TINY = _register(
    Preset(
        name="tiny",
        description="tiny SDXL-shaped pipeline with random weights, built in-process (tests, smoke runs)",
        family="sdxl",
        base=None,
        faceid=None,
        dtype="float32",
        width=64,
        height=64,
        steps=2,
        guidance=5.0,
        identity_strength=0.7,
        face_model="tiny",
        interpolator="flow",
        # the same LTX condition pipeline at toy size, random weights: the smoke run goes through
        # the video model's code path as a real preset does when its weights are present
        video_interpolator="ltx",
        video_model="tiny",
        video_options={"steps": 4},  # as its keyframe model: a smoke run, not a picture
        tiny=True,
    )
)

DEFAULT_PRESET = "sdxl"


def get_preset(name: str | Preset | None = None) -> Preset:
    """The preset called `name` (default: sdxl). Unknown names fail fast, listing the known ones."""
    if isinstance(name, Preset):
        return name
    key = (name or DEFAULT_PRESET).strip().lower()
    try:
        return PRESETS[key]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise InputError(f"unknown keyframe preset {name!r}; known presets: {known}") from None


def list_presets() -> list[str]:
    return sorted(PRESETS)
