"""Work spread over Ray: every call into Ray (2.6.3) of a module here sits in that module, so
that a later Ray means few files to change: `ray_engine` (tasks of the partitioned
computations), `ray_train` (Ray Train: data-parallel training). Only `recbole_lda.cli` imports
this package; the work it runs lives below it (`recbole_lda.evaluator.partitioned`,
`recbole_lda.quick_start.data_parallel`)."""
