"""helpers: the small TensorFlow library behind the book.

Modules (one idea each; ``import helpers`` then use ``helpers.<module>``, loaded on first use):

- ``config``: profile (``BOOK_PROFILE``), global seed (``BOOK_SEED``), determinism, paths
- ``cache``: result cache with atomic, checksummed writes keyed by configuration and code version
- ``findings``: the findings registry and tables behind the reproduction report
- ``plotting``, ``widgets``: one figure style; live controls that become static panels in the book
- ``data``, ``models``, ``losses``, ``training``: data sets, the networks of 000 Table 5.1, losses, SGD
- ``params``, ``operators``, ``eigensolvers``, ``estimators``, ``ntk``: curvature operators (Hessian,
  Gauss-Newton, Fisher), Lanczos, SLQ, Hutchinson, per-example gradients, NTK
- ``layer_chain``: Hessian-vector products written out for chains of Dense/Conv2D/pooling layers (the
  fastest form where it applies; ``operators.hessian`` picks it)
- ``kernel_dynamics``: the NTK and the Fisher trace recorded during training (chapter 7)
- ``geometry``, ``information``: Riemannian curvature of a metric, Fisher information of families
- ``random_matrix``, ``weight_spectra``, ``trajectories``: RMT tools, spectra of weight layers (Meng-Yao
  criterion, LT/BT/HT), trajectory recording and PCA
- ``layerwise``, ``callbacks``, ``distributed``: a per-layer curvature table for any Keras model, a
  ``model.fit`` callback that logs it, products averaged over the replicas of a ``tf.distribute`` strategy
"""
from . import config  # noqa: F401  (first: sets TensorFlow's environment before TF is imported)
from .config import global_seed, pick, profile, seed, set_determinism, setup  # noqa: F401

import importlib as _importlib

__all__ = ["config", "setup", "seed", "global_seed", "profile", "pick", "set_determinism"]


def __getattr__(name: str):
    try:
        module = _importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise AttributeError(f"helpers has no module or attribute {name!r}") from None
        raise
    globals()[name] = module
    return module
