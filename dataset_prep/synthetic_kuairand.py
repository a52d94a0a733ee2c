"""Synthetic data in KuaiRand-27K's raw format at any size, with a known generating
distribution (dataset `synthetic_kuairand`).

Writes, into a raw folder keyed on the generator options (`synthetic_rows`,
`synthetic_users`, `synthetic_items`, `synthetic_seed`), files in the raw format of
KuaiRand-27K (names, the 19 log columns in their order, the 31 user and 12 video columns),
so that the KuaiRand converter (dataset_prep.kuairand, which also supplies `convert`) and
the streaming converter (dataset_prep.stream) read them unchanged:
    log_standard_4_08_to_4_21_27k_part{1,2}.csv and log_standard_4_22_to_5_08_27k_part{1,2}.csv:
        2022-04-08 to 2022-05-08 (UTC+8) cut at 04-22 into the two periods, each period in
        two parts (part1: the first half of the user ids); rows sorted by user, then time.
    user_features_27k.csv (KuaiRec's 31 columns, from synthetic_side.user_features),
    video_features_basic_27k.csv (one row per video id 0..items-1).
    latent.npz: the user latents and the model's constants; generator.json: the options,
        written last (the folder is renamed into place when complete).

The play-time model is the synthetic default's (dataset_prep/synthetic.py: durations,
the four-component watch-ratio mixture, user and video affinities), so `oracle` gives the
true conditional median and the best achievable MAE. What differs, so that memory stays
bounded by the chunk size and the user count at any row or video count:
- Every per-video quantity (latents, bias, duration, author, tags, ...) is a function of
  (seed, video id) through a counter-based hash (`_uniform`), not a table: 32M videos
  cost no memory. A video's latent is 0.8 x its author's + 0.6 x its own (as in synthetic).
- Popularity is a power law over the video ids (`POPULARITY_EXPONENT`): video 0 is the
  most watched; the expected views of video k fall like (k + offset)^-exponent.
- As in 27K, a share of the log rows (`UNKNOWN_DURATION_SHARE`, by video) has
  duration_ms = 0 (the converter drops them, or imputes them from video_duration), and a
  few rows (`DUPLICATE_SHARE`) repeat the user's previous row (the converter's
  drop_duplicates removes them).
- The outcome columns (is_click, is_like, long_view, ...) are filler that no converter reads.
Rows are written in chunks of whole users (`CHUNK_ROWS`), each chunk from its own child
seed: the same options give the same bytes. Bump GENERATOR_VERSION when anything changes.
"""

import logging
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from scipy.special import ndtri

from dataset_prep import kuairand, synthetic
from dataset_prep.common import atomic_dir, short_hash, splitmix64
from dataset_prep.synthetic_side import user_features
from recbole_lda.utils.fileio import read_json, write_json

logger = logging.getLogger(__name__)

VERSION = kuairand.VERSION
GENERATOR_VERSION = 1
GENERATOR_KEYS = synthetic.GENERATOR_KEYS
convert = kuairand.convert  # the generated raw files are KuaiRand files

START_UNIX_S = 1649347200  # 2022-04-08 00:00:00 at UTC+8
DAYS = 31  # to 2022-05-08 inclusive
SECOND_PERIOD = 20220422  # first date of log_standard_4_22_to_5_08
PERIOD_FILES = ("log_standard_4_08_to_4_21_27k_part{}.csv", "log_standard_4_22_to_5_08_27k_part{}.csv")
VIDEO_COLUMNS = ["video_id", "author_id", "video_type", "upload_dt", "upload_type", "visible_status", "video_duration",
                 "server_width", "server_height", "music_id", "music_type", "tag"]
USER_FILE, VIDEO_FILE = "user_features_27k.csv", "video_features_basic_27k.csv"
LOG_HEADER = ("user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,"
              "long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab\n")
CHUNK_ROWS = 500_000  # rows per generated chunk (whole users): bounds the generator's memory
VIDEO_CHUNK = 1_000_000  # video_features_basic rows per chunk

POPULARITY_EXPONENT = 0.9
POPULARITY_OFFSET = 10.0
UNKNOWN_DURATION_SHARE = 0.0846  # 27K: 8.46% of the standard rows have duration_ms = 0
DUPLICATE_SHARE = 1e-4
AD_SHARE = 0.03
N_TAGS = 70
# Filler outcome columns: Bernoulli shares (never read by a converter: outcomes of the play).
OUTCOME_SHARE = {"is_click": 0.45, "is_like": 0.015, "is_follow": 0.001, "is_comment": 0.003,
                 "is_forward": 0.001, "is_hate": 0.0005, "is_profile_enter": 0.01}
LONG_VIEW_MS = 18_000  # long_view: 18 s watched, or the whole of a shorter video
N_TABS = 15

# Hash streams of the per-video quantities (one stream per draw).
S_AUTHOR, S_DURATION, S_UNKNOWN, S_AD, S_MUSIC, S_TAG = 1, 2, 3, 4, 5, 6
S_AUTHOR_FACTOR, S_AUTHOR_BIAS, S_OWN_FACTOR, S_OWN_BIAS = 100, 200, 300, 400


# ---------------------------------------------------------------------------------------
# Converter interface


def read_options(config):
    """KuaiRand converter options plus the generator options, validated."""
    return kuairand.read_options(config) | synthetic.read_generator_keys(config)


def generator_options(options):
    """The options that determine the generated raw files (the raw folder's key)."""
    return {key: options[key] for key in GENERATOR_KEYS} | {"version": GENERATOR_VERSION, "format": "kuairand-27k"}


def default_raw_dir(data_path, options):
    """`data_path/raw-<hash of the generator options>`."""
    return os.path.join(data_path, f"raw-{short_hash(generator_options(options))}")


def raw_files(raw_dir, options):
    """Generate the raw folder if it does not exist; return the files the converter reads."""
    synthetic.ensure_generated(
        raw_dir, generator_options(options),
        lambda: generate(raw_dir, **{k.removeprefix("synthetic_"): options[k] for k in GENERATOR_KEYS}))
    return kuairand.raw_files(raw_dir, options)


def oracle(raw_dir, user_ids, item_ids):
    """True conditional median play time (seconds) of each (user, video) row."""
    params = synthetic.load_params(raw_dir)
    info = read_json(os.path.join(raw_dir, "generator.json"))
    for name, ids, n in (("user", user_ids, info["synthetic_users"]), ("video", item_ids, info["synthetic_items"])):
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"{name} ids must be in [0, {n}) for {raw_dir}")
    video = video_params(info["synthetic_seed"], item_ids, info["synthetic_items"])
    weights, loc = synthetic.mixture_rows(params, params["user_factors"][user_ids], params["user_bias"][user_ids],
                                          video["factors"], video["bias"], video["duration_ms"])
    return synthetic.median_ratio(weights, loc, params["log_ratio_sigma"]) * video["duration_ms"] / 1000.0


# ---------------------------------------------------------------------------------------
# Per-video quantities from (seed, video id)


def _uniform(seed, ids, stream):
    """A uniform number in (0, 1) per id, the same for the same (seed, id, stream)."""
    key = splitmix64(np.uint64(seed) * np.uint64(1_000_003) + np.uint64(stream))
    h = splitmix64(np.asarray(ids).astype(np.uint64) ^ key)
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def _normal(seed, ids, stream):
    return ndtri(_uniform(seed, ids, stream))


def _latents(seed, ids, first_stream, dim):
    return np.stack([_normal(seed, ids, first_stream + j) for j in range(dim)], axis=1)


def video_params(seed, video_ids, n_items):
    """Each video's author, latent factors, bias and true duration (ms)."""
    n_authors = max(1, n_items // synthetic.VIDEOS_PER_AUTHOR)
    author = np.minimum((_uniform(seed, video_ids, S_AUTHOR) * n_authors).astype(np.int64), n_authors - 1)
    own = np.sqrt(1 - synthetic.AUTHOR_SHARE**2)
    share = synthetic.AUTHOR_SHARE
    factors = share * _latents(seed, author, S_AUTHOR_FACTOR, synthetic.LATENT_DIM)
    factors += own * _latents(seed, video_ids, S_OWN_FACTOR, synthetic.LATENT_DIM)
    bias = synthetic.ITEM_BIAS_SIGMA * (share * _latents(seed, author, S_AUTHOR_BIAS, 2) + own * _latents(seed, video_ids, S_OWN_BIAS, 2))
    log_d = np.log(synthetic.DURATION_MEDIAN_S * 1000) + synthetic.DURATION_SIGMA * _normal(seed, video_ids, S_DURATION)
    duration = np.clip(np.rint(np.exp(log_d)), synthetic.DURATION_MIN_MS, synthetic.DURATION_MAX_MS).astype(np.int64)
    return {"author": author, "factors": factors, "bias": bias, "duration_ms": duration}


def popular_videos(u, n_items):
    """Video ids drawn from the power law: inverse CDF of (x + offset)^-exponent on [0, n_items)."""
    a, c = 1.0 - POPULARITY_EXPONENT, POPULARITY_OFFSET
    lo, hi = c**a, (n_items + c) ** a
    return np.minimum((lo + u * (hi - lo)) ** (1.0 / a) - c, n_items - 1).astype(np.int64)


# ---------------------------------------------------------------------------------------
# Writing the raw folder


def generate(raw_dir, rows, users, items, seed):
    """Write a synthetic KuaiRand-27K-format raw folder (see the module docstring)."""
    logger.info(f"generating KuaiRand-format data: {rows:,} rows, {users:,} users, {items:,} videos, seed {seed} -> {raw_dir}")
    param_seed, feature_seed, count_seed, row_seed = np.random.SeedSequence(seed).spawn(4)
    params = synthetic.draw_params(np.random.default_rng(param_seed), users, 1)  # the user latents and constants
    params = {k: v for k, v in params.items() if not k.startswith("item_")}
    counts = np.random.default_rng(count_seed).multinomial(rows, params["user_activity"] / params["user_activity"].sum())
    with atomic_dir(raw_dir) as tmp:
        np.savez(os.path.join(tmp, "latent.npz"), **params)
        pd.DataFrame(user_features(params, counts, np.random.default_rng(feature_seed))).to_csv(
            os.path.join(tmp, USER_FILE), index=False)
        write_videos(os.path.join(tmp, VIDEO_FILE), seed, items)
        write_logs(tmp, params, counts, seed, items, row_seed)
        write_json(os.path.join(tmp, "generator.json"), {"synthetic_rows": rows, "synthetic_users": users,
                   "synthetic_items": items, "synthetic_seed": seed, "version": GENERATOR_VERSION,
                   "format": "kuairand-27k"})
    logger.info(f"generated {raw_dir}")


def user_chunks(counts, chunk_rows=CHUNK_ROWS):
    """(first, last) user ranges of about chunk_rows rows each (whole users)."""
    bounds, total = [0], 0
    for user, count in enumerate(counts):
        total += count
        if total >= chunk_rows:
            bounds.append(user + 1)
            total = 0
    if bounds[-1] != len(counts):
        bounds.append(len(counts))
    return list(zip(bounds[:-1], bounds[1:]))


def write_logs(folder, params, counts, seed, items, row_seed):
    """The four log files, written chunk by chunk (each chunk: whole users, its own child seed)."""
    half = (len(counts) + 1) // 2  # part1: users below it
    paths = [[os.path.join(folder, name.format(part)) for part in (1, 2)] for name in PERIOD_FILES]
    files = [[open(p, "wb") for p in period] for period in paths]
    try:
        for period in files:
            for f in period:
                f.write(LOG_HEADER.encode())
        chunks = user_chunks(counts)
        for (first, last), chunk_seed in zip(chunks, row_seed.spawn(len(chunks))):
            table = log_chunk(params, counts, first, last, seed, items, np.random.default_rng(chunk_seed))
            late = pc.greater_equal(table.column("date"), SECOND_PERIOD)
            second_part = pc.greater_equal(table.column("user_id"), half)
            for p, period_mask in enumerate((pc.invert(late), late)):
                for q, part_mask in enumerate((pc.invert(second_part), second_part)):
                    rows = table.filter(pc.and_(period_mask, part_mask))
                    if rows.num_rows:
                        pcsv.write_csv(rows, files[p][q], pcsv.WriteOptions(include_header=False, quoting_style="none"))
    finally:
        for period in files:
            for f in period:
                f.close()


def log_chunk(params, counts, first, last, seed, items, rng):
    """The log rows of users first..last-1, sorted by user then time, as a pyarrow table."""
    users = np.repeat(np.arange(first, last), counts[first:last])
    n = len(users)
    videos = popular_videos(rng.random(n), items)
    ts_ms = START_UNIX_S * 1000 + rng.integers(0, DAYS * 86_400_000, n)
    order = np.lexsort((ts_ms, users))
    users, videos, ts_ms = users[order], videos[order], ts_ms[order]
    repeat = np.flatnonzero((rng.random(n) < DUPLICATE_SHARE)[1:] & (users[1:] == users[:-1])) + 1
    videos[repeat], ts_ms[repeat] = videos[repeat - 1], ts_ms[repeat - 1]  # an exact copy of the previous row
    video = video_params(seed, videos, items)
    weights, loc = synthetic.mixture_rows(params, params["user_factors"][users], params["user_bias"][users],
                                          video["factors"], video["bias"], video["duration_ms"])
    ratio = synthetic.sample_ratio(weights, loc, params["log_ratio_sigma"], rng)
    duration = video["duration_ms"]
    play = np.rint(ratio * duration).astype(np.int64)
    play[repeat] = play[repeat - 1]
    local = pa.array(ts_ms + kuairand.LOCAL_OFFSET_MS, type=pa.timestamp("ms"))
    date = pc.add(pc.add(pc.multiply(pc.year(local), 10000), pc.multiply(pc.month(local), 100)), pc.day(local))
    columns = {"user_id": users, "video_id": videos, "date": date, "hourmin": pc.multiply(pc.hour(local), 100),
               "time_ms": ts_ms}
    columns.update({c: (rng.random(n) < OUTCOME_SHARE[c]).astype(np.int8) for c in list(OUTCOME_SHARE)[:6]})
    columns["long_view"] = (play >= np.minimum(duration, LONG_VIEW_MS)).astype(np.int8)
    columns["play_time_ms"] = play
    columns["duration_ms"] = np.where(_uniform(seed, videos, S_UNKNOWN) < UNKNOWN_DURATION_SHARE, 0, duration)
    columns["profile_stay_time"] = np.zeros(n, dtype=np.int8)
    columns["comment_stay_time"] = np.where(rng.random(n) < 0.01, rng.integers(1, 60_000, n), 0)
    columns["is_profile_enter"] = (rng.random(n) < OUTCOME_SHARE["is_profile_enter"]).astype(np.int8)
    columns["is_rand"] = np.zeros(n, dtype=np.int8)
    columns["tab"] = rng.integers(0, N_TABS, n)
    return pa.table(columns)


def write_videos(path, seed, items):
    """video_features_basic_27k.csv in chunks of VIDEO_CHUNK videos (every value from the id's hash)."""
    with open(path, "wb") as f:
        f.write((",".join(VIDEO_COLUMNS) + "\n").encode())  # unquoted, as in the official files
        for start in range(0, items, VIDEO_CHUNK):
            ids = np.arange(start, min(items, start + VIDEO_CHUNK))
            video = video_params(seed, ids, items)
            n_tags = 1 + (_uniform(seed, ids, S_TAG) * 3).astype(np.int64)  # 1 to 3 tags
            # tags follow the first latent factor (so that they carry signal), then the second and third
            tags = [pa.array((np.minimum((1 + np.tanh(video["factors"][:, k])) / 2 * N_TAGS, N_TAGS - 1)).astype(np.int64)
                             .astype(str), mask=n_tags <= k) for k in range(3)]
            table = pa.table({
                "video_id": ids,
                "author_id": video["author"],
                "video_type": np.where(_uniform(seed, ids, S_AD) < AD_SHARE, "AD", "NORMAL"),
                "upload_dt": np.where(video["duration_ms"] > 60_000, "2022-03-01", "2022-04-01"),
                "upload_type": np.where(video["duration_ms"] > 60_000, "LongImport", "ShortImport"),
                "visible_status": np.zeros(len(ids), dtype=np.int8),
                "video_duration": video["duration_ms"].astype(np.float64),
                "server_width": np.full(len(ids), 720),
                "server_height": np.full(len(ids), 1280),
                "music_id": (_uniform(seed, ids, S_MUSIC) * max(1, items // 2)).astype(np.int64),
                "music_type": (_uniform(seed, ids, S_MUSIC + 50) * 10).astype(np.int64),
                "tag": pc.binary_join_element_wise(*tags, ",", null_handling="skip"),
            })
            pcsv.write_csv(table.select(VIDEO_COLUMNS), f, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
