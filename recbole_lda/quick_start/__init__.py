"""One run from raw files to a results file (`quick_start.run`), which code it ran
(`provenance`), and models compared over seeds at fixed settings (`compare`)."""

from recbole_lda.quick_start.quick_start import run

__all__ = ["run"]
