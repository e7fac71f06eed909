"""Hard-negative mining with an embedding model (`mine_hard_negatives`) and the mined
dataset folder (`save_mined`); `python -m st_lightning.mine` runs both from a Hydra config."""

from st_lightning.mining.miner import MiningStats, check_settings, mine_hard_negatives

__all__ = ["MiningStats", "check_settings", "mine_hard_negatives"]
