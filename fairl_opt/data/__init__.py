"""Users' data in and fitted rewards out: preference files, pairs files with texts, saved rewards."""

from fairl_opt.data.features import FeatureSpec, fit_standardisation
from fairl_opt.data.pairs_file import PairsData
from fairl_opt.data.reward import RewardModel

__all__ = ["FeatureSpec", "PairsData", "RewardModel", "fit_standardisation"]
