"""Stages: async callables `(Result) -> Result | None` run in order between the model and the sinks.

Returning None drops the result (no sink sees that frame). Users write their own the same way and
name them in the config as `module:function`.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Awaitable, Callable, Protocol

import anyio
import numpy as np

from ..config import configured, schema
from ..errors import StageError
from ..frames import ModelInfo, Result, class_labels, detections_to_dicts
from ..importing import import_target


class Stage(Protocol):
    async def __call__(self, result: Result) -> Result | None: ...


class FilterStage:
    """Keep detections with confidence >= `min_confidence` and a class name in `classes`."""

    def __init__(self, config: schema.FilterStageConfig | None = None, /, **options: Any) -> None:
        config = configured(schema.FilterStageConfig, config, options)
        self.min_confidence = config.min_confidence
        self.classes = frozenset(config.classes) if config.classes is not None else None

    async def __call__(self, result: Result) -> Result:
        keep = result.detections.confidence >= self.min_confidence
        if self.classes is not None:
            keep &= np.array([name in self.classes for name in result.class_names()], dtype=bool)
        result.detections = result.detections[keep]
        return result


class UserStage:
    """A user function, sync or async; sync ones run on the event loop, so keep them quick."""

    def __init__(self, function: Callable[..., Any], name: str, options: dict[str, Any] | None = None) -> None:
        self.name = name
        self.function = functools.partial(function, **options) if options else function
        self._is_async = inspect.iscoroutinefunction(function)

    async def __call__(self, result: Result) -> Result | None:
        try:
            value = self.function(result)
            if self._is_async or isinstance(value, Awaitable):
                value = await value
        except Exception as exc:
            raise StageError(f"stage {self.name!r} raised on {result.source_id} frame {result.frame_index}: {exc}") from exc
        if value is not None and not isinstance(value, Result):
            raise StageError(f"stage {self.name!r} returned {type(value).__name__}; return the Result or None")
        return value


class ModelStage:
    """Run another model or a model pipeline on each frame (in a worker thread); its detections go
    to `result.extra[key]`, in the same form as the JSONL sink's `detections`.

    A text recogniser (task "text-recognition", such as "ppocr-rec") instead reads the text in each
    of the result's own detections (a plate detector's plates, say): they gain `text` and
    `text_confidence`, and `key` is not used."""

    def __init__(self, model: Any, key: str) -> None:
        self.model = model
        self.key = key

    async def __call__(self, result: Result) -> Result:
        if self.model.info.task == "text-recognition":
            return await self._read_text(result)
        found = await anyio.to_thread.run_sync(self.model.detect, [result.frame])
        labels = class_labels(self.model.info.class_names, found[0].class_id)
        result.extra[self.key] = detections_to_dicts(found[0], labels, class_names=self.model.info.class_names)
        return result

    async def _read_text(self, result: Result) -> Result:
        from ..engine.pipelines import read_text

        read = await anyio.to_thread.run_sync(read_text, self.model, [result.frame], [result.detections])
        result.detections = read[0]
        return result


async def load_model_stage(config: schema.ModelStageConfig) -> ModelStage:
    from ..engine import AutoModel, AutoModelPipeline

    if config.pipeline is not None:
        model: Any = await AutoModelPipeline.load(config.pipeline, device=config.device, threads=config.threads)
    else:
        model = await AutoModel.load(config.model, device=config.device, threads=config.threads)
    return ModelStage(model, config.key)


async def build_stage(config: schema.StageConfig, index: int = 0, main_model: ModelInfo | None = None) -> Stage:
    """The stage a config table describes (`main_model`: the pipeline's model, which some reuse).

    Models load in worker threads; the other stages are built in one too, as building them imports
    libraries (supervision, a user's module) that would hold up the event loop."""
    if isinstance(config, schema.ModelStageConfig):
        return await load_model_stage(config)
    if isinstance(config, schema.AnonymizeStageConfig):
        return await load_anonymize_stage(config, main_model)
    if isinstance(config, schema.TrackStageConfig) and config.appearance_model is not None:
        from .tracking import load_track_stage

        return await load_track_stage(config)
    if isinstance(config, schema.ClassifyStageConfig):
        from .crops import load_classify_stage

        return await load_classify_stage(config)
    return await anyio.to_thread.run_sync(build_plain_stage, config, index)


def build_plain_stage(config: schema.StageConfig, index: int = 0) -> Stage:
    """A stage that needs no model (blocking: it may import libraries)."""
    if isinstance(config, schema.FilterStageConfig):
        return FilterStage(config)
    if isinstance(config, schema.CustomStageConfig):
        function = import_target(config.function, f"$.stages[{index}].function")
        return UserStage(function, config.function, dict(config.options))
    if isinstance(config, schema.TrackStageConfig):
        from .tracking import TrackStage

        return TrackStage(config)
    if isinstance(config, schema.ZonesStageConfig):
        from .zones import ZonesStage

        return ZonesStage(config)
    if isinstance(config, schema.PresenceStageConfig):
        from .presence import PresenceStage

        return PresenceStage(config)
    raise TypeError(f"unknown stage config {type(config).__name__}")


async def load_anonymize_stage(config: schema.AnonymizeStageConfig, main_model: ModelInfo | None) -> Stage:
    """An anonymize stage; it runs its own face detector unless that is the pipeline's model already."""
    from ..engine import AutoModel
    from .anonymize import AnonymizeStage

    detector = None
    if config.model and (main_model is None or config.model != main_model.model_id):
        detector = await AutoModel.load(config.model, device=config.device, threads=config.threads)
    return AnonymizeStage(config, detector=detector)
