"""Work spread over Ray: `ray_engine` holds every call into Ray (2.6.3) in one place, so that a
later Ray means one file to change. Only `recbole_lda.cli` imports this package; the
arithmetic it runs lives below it (`recbole_lda.evaluator.partitioned`)."""
