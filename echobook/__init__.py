"""echobook: deep learning on echocardiography videos, the package behind the book."""
import warnings

# fastai (<= 2.8) decorates a few layers with torch.jit.script when it is imported, and recent torch
# deprecates that with a FutureWarning. Every chapter imports fastai through this package, so readers
# saw a warning box about a library's internals that they can do nothing about; the filter names the
# exact message, so any other warning still shows.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from echobook.config import PRESETS, Settings, SizePreset, get_preset, seed_everything, setup  # noqa: E402

__version__ = "0.1.0"
__all__ = ["PRESETS", "Settings", "SizePreset", "get_preset", "seed_everything", "setup", "__version__"]
