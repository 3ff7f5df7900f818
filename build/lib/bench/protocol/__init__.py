"""The data and the protocol, the bottom layer: the dataset registry and loading (`data`), the
chronological split, windows and train-only z-score (`split`), masked metrics (`metrics`), paired
tests (`stats`), the model registry and contract (`registry`) and the Navier-Stokes generator.
Imports nothing else of bench/; models and baselines import only this layer."""
