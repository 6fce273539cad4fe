"""echobook: deep learning on echocardiography videos, the package behind the book."""
from echobook.config import PRESETS, Settings, SizePreset, get_preset, seed_everything, setup

__version__ = "0.1.0"
__all__ = ["PRESETS", "Settings", "SizePreset", "get_preset", "seed_everything", "setup", "__version__"]
