"""recbole-lda: LDA and the watch-time baselines as a RecBole plugin.

Importing the package applies the RecBole compatibility patches (`recbole_lda.compat`).
"""

from recbole_lda import compat

compat.apply()

__version__ = "0.1.0"
