"""fairl_opt: exact, certified failure-aware inverse RL for linear rewards over frozen embeddings."""

from fairl_opt.data.features import FeatureSpec
from fairl_opt.data.pairs_file import PairsData
from fairl_opt.data.reward import RewardModel
from fairl_opt.exceptions import DataError, FairlError, InfeasibleError, SolverError
from fairl_opt.pairs import KINDS, PreferencePairs, load_npz

__all__ = [
    "KINDS",
    "DataError",
    "FairlError",
    "FeatureSpec",
    "InfeasibleError",
    "PairsData",
    "PreferencePairs",
    "RewardModel",
    "SolverError",
    "load_npz",
]
__version__ = "0.1.0"
