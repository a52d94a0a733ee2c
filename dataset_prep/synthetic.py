"""Synthetic KuaiRec-like dataset with a known generating distribution (the default dataset).

Writes, into a raw folder keyed on the generator options (`synthetic_rows`,
`synthetic_users`, `synthetic_items`, `synthetic_seed`), files in the exact raw format of
KuaiRec 2.0 (same names, columns, column order and value formats), so that the KuaiRec
converter (dataset_prep.kuairec, which also supplies `convert` here) reads them unchanged:
    big_matrix.csv: user_id, video_id, play_duration (ms), video_duration (ms), time
        (local UTC+8, "2020-07-05 00:08:23.438"), date (YYYYMMDD), timestamp (Unix
        seconds), watch_ratio; rows sorted by user, then time, 2020-07-05 to 2020-09-05.
    user_features.csv (31 columns), item_categories.csv (video_id, feat "[27, 9]"),
    item_daily_features.csv (58 columns, one row per video).
    latent.npz: the latent parameters and constants, from which `oracle` recomputes the
        true distribution of play time for any (user, video).
    generator.json: the options, written last.
The folder is written under a temporary name and renamed when complete. Rows are
generated and written in chunks of users, so memory stays bounded at any size (the
default is small; 12.5M rows, 7,176 users, 10,728 videos is big_matrix's size).
The same seed gives the same files.

Model of a play. A video has a duration d (lognormal, median 9.6 s, sigma 0.916, clipped
to KuaiRec's 0.14 s to 315.072 s) and z = (ln d - ln 9.6) / 0.916. The watch ratio
r = play / duration is a mixture of four lognormal components, quick skip, partial
watch, complete play and replay, with log-median LOG_RATIO_MEDIAN + LOG_RATIO_DURATION_SLOPE * z
and log-sd LOG_RATIO_SIGMA. Component weights are a softmax of
    WEIGHT_BASE + WEIGHT_DURATION_SLOPE * z + WATCH_LOADING * e_watch + REPLAY_LOADING * e_replay
where e_watch and e_replay are user-video affinities: a scaled dot product of halves of
the user's and video's latent vectors (LATENT_DIM) plus a user and a video bias. Videos
inherit most of their latent vector from their author. Users and videos are drawn
independently of their latents (users by lognormal activity, videos by lognormal
popularity), so there is no exposure bias.

Side information (dataset_prep/synthetic_side.py) is generated from the latents so that
it carries signal: onehot_feat0..9 are quantised user latents and biases (10..17 are
noise, 12..17 with a few missing values, as in KuaiRec), user_active_degree follows activity, a video's tags and video_tag_id
follow its latent vector, author_id groups videos with similar latents, upload_type
follows duration, music_id is noise.

Calibration. The constants below were fitted (least squares on the exact mixture CDF
averaged over 50,000 random user-video pairs) to KuaiRec's published watch-ratio
statistics: mean 0.85, quartiles 0.31 / 0.72 / 1.16; the duration marginal matches
median 9.6 s and mean 14.6 s. tests/test_data_synthetic.py checks them on generated data.
Bump GENERATOR_VERSION when any constant or the writing code changes: it is part of the
raw folder's key.
"""

import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from scipy.special import ndtr, softmax

from dataset_prep import kuairec
from dataset_prep.common import atomic_dir, require, short_hash
from dataset_prep.synthetic_side import write_side_information
from recbole_lda.utils.fileio import read_json, write_json

logger = logging.getLogger(__name__)

VERSION = kuairec.VERSION
GENERATOR_VERSION = 1
convert = kuairec.convert  # the synthetic raw files are KuaiRec files

# Durations (seconds): KuaiRec's median 9.6 s, mean 14.6 s = 9.6 * exp(sigma^2 / 2), range 140 ms to 315,072 ms.
DURATION_MEDIAN_S = 9.6
DURATION_SIGMA = 0.916
DURATION_MIN_MS = 140
DURATION_MAX_MS = 315_072

# Watch-ratio mixture: quick skip, partial watch, complete play, replay.
COMPONENTS = ("quick_skip", "partial", "complete", "replay")
LOG_RATIO_MEDIAN = np.array([np.log(0.08), np.log(0.5), 0.0, 0.5342])  # ratio medians 0.08, 0.5, 1.0, 1.706
LOG_RATIO_SIGMA = np.array([0.9, 0.45, 0.15, 0.35])
LOG_RATIO_DURATION_SLOPE = np.array([-0.3, -0.2, 0.0, 0.0])  # longer videos: shorter skips and partial watches
WEIGHT_BASE = np.array([0.0, 0.9537, 0.0958, -0.0107])  # fitted; mean weights 0.195, 0.386, 0.182, 0.237
WEIGHT_DURATION_SLOPE = np.array([0.0, -0.2, -0.4, -0.8])  # longer videos: fewer completions and replays
WATCH_LOADING = np.array([0.0, 0.5, 1.0, 1.0])  # e_watch: watching rather than skipping
REPLAY_LOADING = np.array([0.0, 0.0, 0.0, 1.0])  # e_replay: replaying rather than stopping

# Latents.
LATENT_DIM = 8  # first half drives e_watch, second half e_replay
INTEREST_SCALE = 1.0  # sd of each dot-product affinity
USER_BIAS_SIGMA = 0.6
ITEM_BIAS_SIGMA = 0.6
AUTHOR_SHARE = 0.8  # a video's latent = 0.8 * its author's + 0.6 * own noise (unit variance)
VIDEOS_PER_AUTHOR = 4
ACTIVITY_SIGMA = 0.5  # lognormal spread of user activity
POPULARITY_SIGMA = 0.8  # lognormal spread of video popularity

START_UNIX_S = 1593878400  # 2020-07-05 00:00:00 at UTC+8
DAYS = 63  # to 2020-09-05 inclusive
CHUNK_ROWS = 500_000

MATRIX_HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"
GENERATOR_KEYS = ("synthetic_rows", "synthetic_users", "synthetic_items", "synthetic_seed")


# ---------------------------------------------------------------------------------------
# Converter interface


def read_options(config):
    """KuaiRec converter options plus the generator options, validated."""
    options = kuairec.read_options(config)
    if options["kuairec_matrix"] != "big":
        raise ValueError("the synthetic generator writes big_matrix.csv only: set kuairec_matrix: big")
    return options | read_generator_keys(config)


def read_generator_keys(config):
    """The four generator keys (GENERATOR_KEYS), validated: counts >= 1, a seed >= 0."""
    options = {}
    for key in GENERATOR_KEYS:
        value = require(config, key)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if key == "synthetic_seed" else 1):
            raise ValueError(f"{key} must be a {'non-negative' if key == 'synthetic_seed' else 'positive'} integer, got {value!r}")
        options[key] = int(value)
    return options


def generator_options(options):
    """The options that determine the generated raw files (the raw folder's key)."""
    return {key: options[key] for key in GENERATOR_KEYS} | {"version": GENERATOR_VERSION}


def default_raw_dir(data_path, options):
    """`data_path/raw-<hash of the generator options>`."""
    return os.path.join(data_path, f"raw-{short_hash(generator_options(options))}")


def ensure_generated(raw_dir, wanted, make):
    """Call `make()` to generate `raw_dir` unless it exists; refuse a folder generated with
    other options than `wanted` (its generator.json) or not generated at all."""
    info = os.path.join(raw_dir, "generator.json")
    if os.path.isfile(info):
        found = read_json(info)
        if found != wanted:
            raise ValueError(f"{raw_dir} holds synthetic data generated with {found}, not {wanted}; use another raw_data_path")
    elif os.path.isdir(raw_dir) and os.listdir(raw_dir):
        raise ValueError(f"{raw_dir} exists and is not a generated synthetic folder (no generator.json)")
    else:
        make()


def raw_files(raw_dir, options):
    """Generate the raw folder if it does not exist; return the files the converter reads."""
    ensure_generated(raw_dir, generator_options(options),
                     lambda: generate(raw_dir, **{k.removeprefix("synthetic_"): options[k] for k in GENERATOR_KEYS}))
    return kuairec.raw_files(raw_dir, options)


def oracle(raw_dir, user_ids, item_ids):
    """True conditional median play time (seconds) of each (user, video) row."""
    params = load_params(raw_dir)
    for name, ids, n in (("user", user_ids, len(params["user_factors"])), ("video", item_ids, len(params["item_factors"]))):
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"{name} ids must be in [0, {n}) for {raw_dir}")
    weights, loc = mixture(params, user_ids, item_ids)
    return median_ratio(weights, loc, params["log_ratio_sigma"]) * params["item_duration_ms"][item_ids] / 1000.0


# ---------------------------------------------------------------------------------------
# The play-time model


def load_params(raw_dir):
    """Latent parameters and constants saved by `generate`."""
    with np.load(os.path.join(raw_dir, "latent.npz")) as f:
        return {k: f[k] for k in f.files}


def mixture(params, users, items):
    """Component weights (n, 4) and log watch-ratio locations (n, 4) of (user, video) rows."""
    return mixture_rows(params, params["user_factors"][users], params["user_bias"][users],
                        params["item_factors"][items], params["item_bias"][items], params["item_duration_ms"][items])


def mixture_rows(params, u, user_bias, v, item_bias, duration_ms):
    """`mixture` from each row's user and video latents, biases and duration (ms); the
    constants come from `params` (the KuaiRand-format generator computes the video's
    latents from its id instead of a table)."""
    half = u.shape[1] // 2
    scale = params["interest_scale"] / np.sqrt(half)
    e_watch = scale * np.einsum("ij,ij->i", u[:, :half], v[:, :half]) + user_bias[:, 0] + item_bias[:, 0]
    e_replay = scale * np.einsum("ij,ij->i", u[:, half:], v[:, half:]) + user_bias[:, 1] + item_bias[:, 1]
    z = (np.log(duration_ms / 1000.0) - np.log(params["duration_median_s"])) / params["duration_sigma"]
    logits = (
        params["weight_base"]
        + params["weight_duration_slope"] * z[:, None]
        + params["watch_loading"] * e_watch[:, None]
        + params["replay_loading"] * e_replay[:, None]
    )
    loc = params["log_ratio_median"] + params["log_ratio_duration_slope"] * z[:, None]
    return softmax(logits, axis=1), loc


def sample_ratio(weights, loc, sigma, rng):
    """One watch ratio per row drawn from its mixture."""
    n = len(weights)
    comp = (rng.random(n)[:, None] > np.cumsum(weights, axis=1)).sum(axis=1).clip(max=weights.shape[1] - 1)
    rows = np.arange(n)
    return np.exp(loc[rows, comp] + sigma[comp] * rng.standard_normal(n))


def median_ratio(weights, loc, sigma, iterations=40):
    """Median watch ratio of each row's mixture, by bisection on the closed-form CDF."""
    lo = (loc - 8 * sigma).min(axis=1)
    hi = (loc + 8 * sigma).max(axis=1)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        below = (weights * ndtr((mid[:, None] - loc) / sigma)).sum(axis=1) < 0.5
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return np.exp((lo + hi) / 2)


def draw_params(rng, n_users, n_items):
    """Latent factors, biases, durations, authors, activity and popularity, plus the constants."""
    n_authors = max(1, n_items // VIDEOS_PER_AUTHOR)
    author_factors = rng.standard_normal((n_authors, LATENT_DIM))
    author_bias = rng.standard_normal((n_authors, 2))
    author = rng.choice(n_authors, size=n_items, p=_normalised(rng.lognormal(0, 1, n_authors)))
    own = np.sqrt(1 - AUTHOR_SHARE**2)
    log_d = np.log(DURATION_MEDIAN_S * 1000) + DURATION_SIGMA * rng.standard_normal(n_items)
    return {
        "user_factors": rng.standard_normal((n_users, LATENT_DIM)),
        "user_bias": USER_BIAS_SIGMA * rng.standard_normal((n_users, 2)),
        "user_activity": rng.lognormal(0, ACTIVITY_SIGMA, n_users),
        "item_factors": AUTHOR_SHARE * author_factors[author] + own * rng.standard_normal((n_items, LATENT_DIM)),
        "item_bias": ITEM_BIAS_SIGMA * (AUTHOR_SHARE * author_bias[author] + own * rng.standard_normal((n_items, 2))),
        "item_popularity": rng.lognormal(0, POPULARITY_SIGMA, n_items),
        "item_duration_ms": np.clip(np.rint(np.exp(log_d)), DURATION_MIN_MS, DURATION_MAX_MS).astype(np.int64),
        "item_author": author,
        "duration_median_s": np.float64(DURATION_MEDIAN_S),
        "duration_sigma": np.float64(DURATION_SIGMA),
        "log_ratio_median": LOG_RATIO_MEDIAN,
        "log_ratio_sigma": LOG_RATIO_SIGMA,
        "log_ratio_duration_slope": LOG_RATIO_DURATION_SLOPE,
        "weight_base": WEIGHT_BASE,
        "weight_duration_slope": WEIGHT_DURATION_SLOPE,
        "watch_loading": WATCH_LOADING,
        "replay_loading": REPLAY_LOADING,
        "interest_scale": np.float64(INTEREST_SCALE),
    }


def _normalised(weights):
    return weights / weights.sum()


# ---------------------------------------------------------------------------------------
# Writing the raw folder


def generate(raw_dir, rows, users, items, seed):
    """Write a synthetic KuaiRec-format raw folder (see the module docstring)."""
    logger.info(f"generating synthetic data: {rows} rows, {users} users, {items} videos, seed {seed} -> {raw_dir}")
    param_seed, feature_seed, count_seed, row_seed = np.random.SeedSequence(seed).spawn(4)
    params = draw_params(np.random.default_rng(param_seed), users, items)
    counts = np.random.default_rng(count_seed).multinomial(rows, _normalised(params["user_activity"]))
    with atomic_dir(raw_dir) as tmp:
        np.savez(os.path.join(tmp, "latent.npz"), **params)
        write_side_information(tmp, params, counts, rows, DAYS, np.random.default_rng(feature_seed))
        write_matrix(os.path.join(tmp, "big_matrix.csv"), params, counts, row_seed)
        write_json(os.path.join(tmp, "generator.json"), {"synthetic_rows": rows, "synthetic_users": users,
                   "synthetic_items": items, "synthetic_seed": seed, "version": GENERATOR_VERSION})
    logger.info(f"generated {raw_dir}")


def write_matrix(path, params, counts, seed):
    """big_matrix.csv, written in chunks of whole users (one child seed per chunk)."""
    popularity = np.cumsum(_normalised(params["item_popularity"]))
    bounds = [0]
    total = 0
    for user, count in enumerate(counts):
        total += count
        if total >= CHUNK_ROWS:
            bounds.append(user + 1)
            total = 0
    if bounds[-1] != len(counts):
        bounds.append(len(counts))
    chunk_seeds = seed.spawn(len(bounds) - 1)
    with open(path, "wb") as f:
        f.write(MATRIX_HEADER.encode())
        for (first, last), chunk_seed in zip(zip(bounds[:-1], bounds[1:]), chunk_seeds):
            rng = np.random.default_rng(chunk_seed)
            users = np.repeat(np.arange(first, last), counts[first:last])
            items = np.searchsorted(popularity, rng.random(len(users)) * popularity[-1], side="right")
            items = np.minimum(items, len(popularity) - 1)
            ts_ms = START_UNIX_S * 1000 + rng.integers(0, DAYS * 86_400_000, len(users))
            order = np.lexsort((ts_ms, users))
            users, items, ts_ms = users[order], items[order], ts_ms[order]
            weights, loc = mixture(params, users, items)
            duration = params["item_duration_ms"][items]
            play = np.rint(sample_ratio(weights, loc, params["log_ratio_sigma"], rng) * duration).astype(np.int64)
            local = pa.array(ts_ms + 8 * 3_600_000, type=pa.timestamp("ms"))
            date = pc.add(pc.add(pc.multiply(pc.year(local), 10000), pc.multiply(pc.month(local), 100)), pc.day(local))
            table = pa.table(
                {
                    "user_id": users,
                    "video_id": items,
                    "play_duration": play,
                    "video_duration": duration,
                    "time": pc.strftime(local, format="%Y-%m-%d %H:%M:%S"),
                    "date": date,
                    "timestamp": ts_ms / 1000.0,
                    "watch_ratio": np.round(play / duration, 6),
                }
            )
            pcsv.write_csv(table, f, pcsv.WriteOptions(include_header=False, quoting_style="none"))
