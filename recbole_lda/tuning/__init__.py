"""Tuning on Ray Tune: the command's studies, final runs and leaderboard (`tune`), one trial
and one final run (`trials`), what a study searches and its files (`studies`), and each
dataset's budget (`budget`). Only the command line imports this package."""
