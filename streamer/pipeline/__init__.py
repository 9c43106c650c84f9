"""The streaming pipeline: staged tasks under one task group."""

from .runner import Stream, load_model, open
from .stages import FilterStage, Stage, UserStage
from .summary import SourceReport, Summary

__all__ = ["FilterStage", "SourceReport", "Stage", "Stream", "Summary", "UserStage", "load_model", "open"]
