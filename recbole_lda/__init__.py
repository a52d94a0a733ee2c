"""recbole-lda: LDA and the watch-time baselines as a RecBole plugin.

Importing the package (or any light module of it, e.g. `recbole_lda.report.leaderboard`) patches
nothing and loads neither torch nor RecBole: a run applies the RecBole compatibility
patches itself (`recbole_lda.compat.apply`, called by `recbole_lda.quick_start.run`).
"""

__version__ = "0.1.0"
