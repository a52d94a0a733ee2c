"""ASHA's rungs: the epochs at which the tuner compares trials, and how many trials reached
each (the leaderboard's budget table). Plain Python: the tuner and the leaderboard use it.
"""

def asha_reports(grace_period, max_epochs, eval_step=1):
    """(grace, max_t) in validation reports (Ray's training_iteration, one every eval_step
    epochs), as given to ASHA: the grace period is capped at max_t, as ASHA requires."""
    max_t = max(1, int(max_epochs) // max(1, int(eval_step)))
    return min(max(1, int(grace_period) // max(1, int(eval_step))), max_t), max_t


def rung_epochs(grace_period, reduction_factor, max_epochs, eval_step=1):
    """The epochs at which ASHA compares trials, grace * reduction_factor**k below the cap,
    then the cap (where every trial stops): e.g. (4, 3, 30) -> [4, 12, 30]. FIFO: pass
    grace_period = max_epochs -> [max_epochs]."""
    grace, max_t = asha_reports(grace_period, max_epochs, eval_step)
    rungs, milestone = [], grace
    while milestone < max_t:
        rungs.append(milestone * eval_step)
        milestone *= int(reduction_factor)
    return rungs + [max_t * eval_step]


def rung_counts(trial_epochs, rungs):
    """{rung epoch: trials that ran at least that many epochs}; a trial without a recorded
    epoch (it errored before its first report) reached none."""
    return {rung: sum(e is not None and e >= rung for e in trial_epochs) for rung in rungs}


def rung_text(trial_epochs, rungs):
    """e.g. '4/8 ≥4 ep, 2/8 ≥12 ep, 1/8 ≥30 ep': trials that reached each rung, of all trials."""
    total = len(trial_epochs)
    return ", ".join(f"{n}/{total} ≥{rung} ep" for rung, n in rung_counts(trial_epochs, rungs).items())
