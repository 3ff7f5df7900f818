"""The error every user-facing failure of FlowBench derives from: the `bench` command prints its
message (which names the problem and the fix) and exits 2, without a traceback."""


class BenchError(Exception):
    """Bad input or a state the user can fix (a missing file, an unknown name, a stale cache)."""
