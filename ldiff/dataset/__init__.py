"""The raw dataset contract (nnU-Net compatible), its verification and the example dataset."""
from ldiff.dataset.raw import RawCase, RawDataset

__all__ = ["RawCase", "RawDataset"]
