"""What a prediction scores: MAE, RMSE, XAUC and XGAUC as RecBole metric classes (`metrics`),
every published XAUC convention and the per-duration-bucket table (`xauc`), and the exact
O(n log n) pair counting they share (`pair_counts`). `xauc` and `pair_counts` need numpy
only; `metrics` plugs them into RecBole's evaluator."""
