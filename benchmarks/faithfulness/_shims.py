"""Glue shims so the official code imports in the project's venv (no scipy / sklearn there).

Only lib/utils.py of ASTGCN-r-pytorch imports them: `eigs` (for scaled_Laplacian's largest eigenvalue,
which='LR') and two sklearn metrics that the model never calls. The eigs stand-in returns the
eigenvalue with the largest real part computed densely by numpy (same value as ARPACK's k=1, 'LR')."""
import sys
import types

import numpy as np


def install():
    if "scipy.sparse.linalg" not in sys.modules:
        def eigs(A, k=1, which="LR"):
            assert k == 1 and which == "LR"
            vals = np.linalg.eigvals(np.asarray(A, dtype=np.float64))
            return np.array([vals[np.argmax(vals.real)]]), None
        scipy = types.ModuleType("scipy"); sparse = types.ModuleType("scipy.sparse")
        linalg = types.ModuleType("scipy.sparse.linalg"); linalg.eigs = eigs
        scipy.sparse, sparse.linalg = sparse, linalg
        sys.modules.update({"scipy": scipy, "scipy.sparse": sparse, "scipy.sparse.linalg": linalg})
    if "sklearn.metrics" not in sys.modules:
        def _unused(*a, **k):
            raise NotImplementedError("sklearn stub")
        sk = types.ModuleType("sklearn"); m = types.ModuleType("sklearn.metrics")
        m.mean_absolute_error = m.mean_squared_error = _unused
        sk.metrics = m
        sys.modules.update({"sklearn": sk, "sklearn.metrics": m})


def uninstall():
    """Drop the stubs again once lib.utils is imported (torch._dynamo probes sys.modules specs)."""
    for name in ("scipy", "scipy.sparse", "scipy.sparse.linalg", "sklearn", "sklearn.metrics"):
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "__spec__", None) is None:
            del sys.modules[name]
