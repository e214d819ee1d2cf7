"""RenderContext: the models of a run, loaded on first use and shared by every shot.

Shot layer: the shot renderer (shot/render.py) asks it for the keyframe generator, the judge (the face
model that checks frames), the conditioning face model, the cast's identities and the
interpolator for a set of flow options. Nothing is loaded before a shot needs it, and nothing is
decided here: which judge, which in-betweener and which options come from the plan (the jobs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from keyrender.core.errors import InputError, ModelNotFoundError
from keyrender.core.jobs import Callback
from keyrender.shot.options import InterpolationOptions, RenderOptions, backend_parameters, face_model_name


class RenderContext:
    """The models of a run, loaded on first use and shared by every shot.

    A missing face model does not stop a storyboard render: checks are then off, and `checks_off`
    says why. A missing keyframe model fails the shots that need it, each with the reason.
    """

    def __init__(self, options: RenderOptions, cast_dir: Path, emit: Callback, judge: str | None = None):
        """`judge`: the face model that checks frames, as the plan decided it (`ShotJob.judge`);
        None for a context used outside a run (options.face_model_name, as a plan would)."""
        from keyrender.keyframes.presets import get_preset

        self.options = options
        self.preset = get_preset(options.preset)
        self.judge = judge or face_model_name(options, self.preset)
        self.cast_dir = cast_dir
        self.emit = emit
        self._generator = None
        self._embedder = None
        # why the face model is unavailable, as text: a stored exception would be re-raised for
        # every shot, its traceback growing by that shot's frames (and keeping them alive)
        self._embedder_error: str | None = None
        self._identities: dict[str, Any] = {}
        self._cast_loaded = False  # the whole cast's identities are loaded (cast_identities)
        self._conditioner = None
        self._conditioning: dict[str, Any] = {}
        self._interpolators: dict[tuple, Any] = {}  # one per backend and distinct set of options
        self._said: set[str] = set()  # console lines given once per run

    def start_task(self, options: RenderOptions, cast_dir: Path, emit: Callback) -> None:
        """Reuse this context's loaded models for another task (a Ray worker keeps one context
        per model set): the task's options, cast folder and callback replace the last task's, and
        the identities built from the last task's cast are dropped (each task ships its own)."""
        self.options, self.cast_dir, self.emit = options, cast_dir, emit
        self._identities = {}
        self._cast_loaded = False
        self._conditioning = {}

    @property
    def cache_dir(self) -> Path:
        if self.options.cache_dir:
            return Path(self.options.cache_dir)
        from keyrender.core.fsutil import cache_root

        return cache_root()

    def generator(self, offline: bool | None = None):
        """The keyframe generator, loaded once. `offline` applies when --offline/--online was
        not given (repairs of storyboard shots pass True: no surprise multi-GB download)."""
        if self._generator is None and self.options.generator is not None:
            self._generator = self.options.generator
        if self._generator is None:
            from keyrender.keyframes import load_generator

            self.emit({"event": "load", "what": f"keyframe models ({self.preset.name})"})
            self._generator = load_generator(
                self.preset, device=self.options.device,
                offline=self.options.offline if self.options.offline is not None else offline)
        # joint attention as this run asks goes in each request (KeyframeRequest.consistent): a
        # loaded generator may be shared with other runs and is never reconfigured
        return self._generator

    def _load_face_model(self, name: str):
        from keyrender.identity import load_face_model

        providers = None
        if self.options.device and self.options.device.startswith("cuda"):
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if name == "tiny":
            from keyrender.identity.tiny import make_tiny_face_pack

            name = str(make_tiny_face_pack(self.cache_dir / "faces" / "tiny"))
        return load_face_model(name, providers=providers, allow_download=self.options.allow_download)

    def embedder(self):
        """The judge (the face model that checks frames), or None (and checks_off set) when it
        is not available."""
        if self._embedder is None and self.options.embedder is not None:
            self._embedder = self.options.embedder
        if self._embedder is None and self._embedder_error is None:
            try:
                self._embedder = self._load_face_model(self.judge)
            except ModelNotFoundError as exc:
                self._embedder_error = str(exc)
                self.emit({"event": "warning", "message": f"identity checks are off: {exc}"})
        return self._embedder

    def conditioner(self):
        """The face model whose embeddings condition generation (IP-Adapter FaceID was trained
        on insightface's): the judge itself when it is an insightface pack or folder (named by
        --face-model) or an injected backend, else the preset's `face_model`. Raises
        ModelNotFoundError saying what to fetch."""
        from keyrender.identity.dlib_backend import DLIB_MODELS

        if self._conditioner is None:
            name = self.judge if self.judge not in DLIB_MODELS else self.preset.face_model
            if self.options.embedder is not None or name == self.judge:
                self._conditioner = self.embedder()
                if self._conditioner is None:
                    raise self._embedder_error  # type: ignore[misc]
            else:
                try:
                    self._conditioner = self._load_face_model(name)
                except ModelNotFoundError as exc:
                    raise ModelNotFoundError(
                        f"generated keyframes are conditioned by IP-Adapter FaceID, which takes "
                        f"insightface embeddings (face model {name!r}; the identity checks use "
                        f"another model, but generation cannot): {exc}") from exc
        return self._conditioner

    @property
    def checks_off(self) -> str | None:
        return self._embedder_error

    def identities(self, names: Iterable[str]) -> dict[str, Any]:
        """The Identity of each name, from the store next to the cast (built if stale)."""
        names = [n for n in names if n not in self._identities]
        if names:
            embedder = self.embedder()
            from keyrender.identity import IdentityStore

            store = IdentityStore(self.cast_dir)
            if embedder is None:  # a fresh error per shot, no traceback carried from the last
                raise ModelNotFoundError(self._embedder_error or "no face model")
            self._identities.update(store.build(embedder, names=names))
        return self._identities

    def cast_identities(self, required: Iterable[str]) -> dict[str, Any]:
        """The judge's identities of the whole cast (who-is-who: a face that is another cast
        member is named), built or loaded once per run. The `required` ones (a shot's
        characters) raise as `identities` does; another member that cannot be built (no usable
        reference) is left out, said once per run."""
        required = list(required)
        have = self.identities(required)
        if not self._cast_loaded:
            self._cast_loaded = True
            from keyrender.identity import IdentityStore

            others = [n for n in IdentityStore(self.cast_dir).cast() if n not in have]
            for name in others:
                try:
                    self.identities([name])
                except InputError as exc:
                    self.say_once(f"{name} is left out of who-is-who checks: {exc}")
        return dict(self._identities)

    def conditioning_identities(self, names: Iterable[str]) -> dict[str, Any]:
        """The identities of the conditioning model (`conditioner`), for IP-Adapter FaceID."""
        names = [n for n in names if n not in self._conditioning]
        if names:
            conditioner = self.conditioner()
            if conditioner is self.embedder():
                self._conditioning.update(self.identities(names))
            else:
                from keyrender.identity import IdentityStore

                self._conditioning.update(IdentityStore(self.cast_dir).build(conditioner, names=names))
        return self._conditioning

    def interpolator(self, flow: InterpolationOptions, backend: str | None = None, *,
                     model: str | None = None, prompt: str = "", seed: int = 0, **backend_options):
        """The interpolator for these flow options (the job's), built on first use and reused by
        every shot with the same options. `backend`: another
        than the preset's interpolator (the video model of generated keyframes), with `model`
        (where its weights are: found on this machine, so never downloaded), the shot's `prompt`
        and `seed`, and `backend_options` (the preset's video_options). Every variant of a video
        backend shares one set of weights. An injected RenderOptions.interpolator is returned as
        it is, whatever the options."""
        if self.options.interpolator is not None:
            return self.options.interpolator
        name = backend or self.preset.interpolator
        extra = () if name == "flow" else (model, prompt, seed, tuple(sorted(backend_options.items())))
        key = (name, *extra, (flow.hedge, flow.camera_motion) if flow.applied else ())
        if key not in self._interpolators:
            from keyrender.interpolate import get_interpolator

            options: dict[str, Any] = {}
            if name != "flow":
                takes = backend_parameters(name)
                options = {"device": self.options.device, "offline": self.options.offline}
                if model is not None:
                    options.update(model=model, offline=True)
                options.update({k: v for k, v in (("prompt", prompt), ("seed", seed)) if v and k in takes})
                options.update(backend_options)
                built = next((b for k, b in self._interpolators.items() if k[:2] == (name, model)), None)
                if built is not None and "pipeline" in takes:
                    options["pipeline"] = built.pipeline  # one set of weights for every variant
            if flow.applied == "flow":
                options.update(flow.flow)
            elif flow.applied == "flow_options":
                options["flow_options"] = flow.flow
            self._interpolators[key] = get_interpolator(name, **options)
        return self._interpolators[key]

    def say_once(self, message: str, key: str | None = None, event: str = "warning") -> None:
        """A console line (a warning; `event` "load": what is loaded) given once per run (`key`:
        what makes it the same line; default the message)."""
        if (key or message) not in self._said:
            self._said.add(key or message)
            self.emit({"event": event, "what" if event == "load" else "message": message})
