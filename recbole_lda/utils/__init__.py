"""Helpers every layer may use, with no torch, RecBole or Ray: files written atomically and
strict JSON (`fileio`), the errors a user caused and how a command reports them (`errors`),
a process's peak memory (`memory`), value counts of pairs (`pair_counts`)."""
