"""The exception hierarchy: every error the package raises on purpose is a :class:`GatherError`."""

from __future__ import annotations


class GatherError(Exception):
    """Root of every error gather-envs raises deliberately."""


class ConfigError(GatherError, ValueError):
    """An argument or knob has a value the package cannot honour."""


class CorpusError(GatherError):
    """A frozen corpus is missing, corrupted, or does not match its manifest."""


class IndexFileError(GatherError):
    """An on-disk BM25 index is missing, truncated, corrupted, foreign or of another format version."""


class DataFileError(GatherError):
    """A user-supplied data file (HotpotQA, MuSiQue, ...) is missing or malformed."""


class RecordsError(GatherError):
    """An episode-records file cannot be read or does not match the expected schema."""


class BackendError(GatherError):
    """An LLM backend failed in a way that retries could not fix (an infrastructure error)."""


class RetrieverError(BackendError):
    """A remote retriever failed (refused, timed out, an HTTP error, a malformed answer): an
    infrastructure error of the episode, retried and then recorded apart like a backend's."""


class EnvStateError(GatherError, RuntimeError):
    """The env was stepped before ``reset`` or after its episode ended."""


class OutputError(GatherError, OSError):
    """An output file or folder could not be written (full disk, a link in the way); the old one is kept."""
