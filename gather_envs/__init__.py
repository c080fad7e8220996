"""gather-envs: Gymnasium environments for measuring PASS@(k,T) of search agents.

Importing the package registers the env ids (``Gather-MultiHop-v0`` and friends).
"""

from gather_envs.envs.custom_registration import CUSTOM_IDS, register_custom_envs
from gather_envs.envs.dataset_registration import DATASET_IDS, register_dataset_envs
from gather_envs.envs.registration import SYNTHETIC_ENVS, register_envs
from gather_envs.errors import GatherError

__version__ = "0.1.0"

register_envs()
register_dataset_envs()
register_custom_envs()

ENV_IDS = tuple(SYNTHETIC_ENVS)

__all__ = ["CUSTOM_IDS", "DATASET_IDS", "ENV_IDS", "GatherError", "__version__", "register_envs"]
