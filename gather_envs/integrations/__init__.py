"""Adapters that plug the Gather envs into RL trainers: TRL, SkyRL, verifiers, verl and OpenRLHF.

Each adapter lives in its own module, imports its library only when used, and sits behind an
optional extra (``pip install "gather-envs[trl]"``); a missing library raises one
:class:`MissingExtraError` that names the extra. Every adapter drives the env through
:class:`~gather_envs.integrations.episodes.EpisodeDriver`, so reward, budget and termination are
exactly the env's, and finished training episodes become the same
:class:`~gather_envs.records.EpisodeRecord` lines as evaluation episodes.
"""

from gather_envs.optional import MissingExtraError

__all__ = ["MissingExtraError"]
