"""The side files of the synthetic KuaiRec-format dataset (dataset_prep/synthetic.py):
user_features.csv, item_categories.csv and item_daily_features.csv, in KuaiRec 2.0's exact
columns and value formats, generated from the latents so that they carry signal (see
synthetic.py's docstring). Part of the generator: bump synthetic.GENERATOR_VERSION when
anything here changes.
"""

import os

import numpy as np
import pandas as pd

N_TAGS = 31  # KuaiRec's tag values 0..30
N_VIDEO_TAG_IDS = 60

# item_daily_features.csv columns after video_tag_name, in KuaiRec's order.
DAILY_STATISTICS = [
    "show_cnt", "show_user_num", "play_cnt", "play_user_num", "play_duration", "complete_play_cnt",
    "complete_play_user_num", "valid_play_cnt", "valid_play_user_num", "long_time_play_cnt",
    "long_time_play_user_num", "short_time_play_cnt", "short_time_play_user_num", "play_progress",
    "comment_stay_duration", "like_cnt", "like_user_num", "click_like_cnt", "double_click_cnt",
    "cancel_like_cnt", "cancel_like_user_num", "comment_cnt", "comment_user_num", "direct_comment_cnt",
    "reply_comment_cnt", "delete_comment_cnt", "delete_comment_user_num", "comment_like_cnt",
    "comment_like_user_num", "follow_cnt", "follow_user_num", "cancel_follow_cnt", "cancel_follow_user_num",
    "share_cnt", "share_user_num", "download_cnt", "download_user_num", "report_cnt", "report_user_num",
    "reduce_similar_cnt", "reduce_similar_user_num", "collect_cnt", "collect_user_num", "cancel_collect_cnt",
    "cancel_collect_user_num",
]
# Share of show_cnt for each family of daily counts (filler values: the converter never reads them).
DAILY_SHARE = {"show": 0.95, "play": 0.9, "complete": 0.3, "valid": 0.6, "long": 0.2, "short": 0.4, "like": 0.05}


def _quantile_bins(values, n_bins):
    """Integer bin 0..n_bins-1 of each value by its rank (equal-frequency bins)."""
    return (np.argsort(np.argsort(values)) * n_bins // len(values)).astype(np.int64)


def _range_labels(values, edges, labels):
    """KuaiRec-style range strings: labels[i] for edges[i-1] <= value < edges[i]."""
    return np.array(labels, dtype=object)[np.searchsorted(edges, values, side="right")]


# KuaiRec's user_active_degree by activity decile (4 middle, 3 high, 3 full), and the share
# of users whose degree is UNKNOWN.
ACTIVITY_DEGREES = ["middle_active"] * 4 + ["high_active"] * 3 + ["full_active"] * 3
UNKNOWN_DEGREE_SHARE = 0.02
# Binary user flags: share of users with the flag (is_video_author depends on a latent instead).
USER_FLAG_SHARE = {"is_lowactive_period": 0.02, "is_live_streamer": 0.05}
# Social counts drawn as floor(lognormal(mean + slope * latent[k], sigma)): name -> (k, mean, slope, sigma).
SOCIAL_COUNTS = {"follow_user_num": (1, 3.0, 0.5, 1.0), "fans_user_num": (2, 1.5, 0.5, 1.5),
                 "friend_user_num": (3, 0.5, 0.3, 1.0)}
REGISTER_DAYS = (15, 2500)  # uniform integers in [low, high)
# KuaiRec's range columns: name -> (bin edges, labels), labels[i] for edges[i-1] <= value < edges[i].
RANGES = {
    "follow_user_num": ([1, 11, 51, 101, 151, 251, 501],
                        ["0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(150,250]", "(250,500]", "500+"]),
    "fans_user_num": ([1, 10, 100, 1000, 5000, 10000],
                      ["0", "[1,10)", "[10,100)", "[100,1k)", "[1k,5k)", "[5k,1w)", "[1w,10w)"]),
    "friend_user_num": ([1, 5, 30, 60, 120, 250], ["0", "[1,5)", "[5,30)", "[30,60)", "[60,120)", "[120,250)", "250+"]),
    "register_days": ([31, 61, 91, 181, 366, 731], ["15-30", "31-60", "61-90", "91-180", "181-365", "366-730", "730+"]),
}
N_ONEHOT = 18  # onehot_feat0..17
FLOAT_ONEHOT_FROM = 12  # KuaiRec's onehot_feat12..17 are floats with some missing values
ONEHOT_MISSING_SHARE = 0.01
TAGS_PER_VIDEO = ([1, 2, 3, 4], [0.55, 0.3, 0.1, 0.05])  # how many tags a video has, with probabilities
LONG_VIDEO_MS = 60_000  # longer videos are uploaded as LongImport
AD_SHARE = 0.03


def write_side_information(folder, params, counts, rows, days, rng):
    """user_features.csv, item_categories.csv and item_daily_features.csv from the latents
    (`params` of synthetic.draw_params), the rows per user (`counts`) and the days covered.
    The three files draw from `rng` in this order (the generator's output depends on it)."""
    pd.DataFrame(user_features(params, counts, rng)).to_csv(os.path.join(folder, "user_features.csv"), index=False)
    pd.DataFrame(item_categories(params, rng)).to_csv(os.path.join(folder, "item_categories.csv"), index=False)
    pd.DataFrame(item_daily_features(params, rows, days, rng)).to_csv(
        os.path.join(folder, "item_daily_features.csv"), index=False)


def user_features(params, counts, rng):
    """The columns of user_features.csv: activity from the rows per user, social counts and
    the author flag from the user latents, one-hot features from latents, biases and noise."""
    u = params["user_factors"]
    n_users = len(u)
    activity_bin = _quantile_bins(counts + rng.random(n_users), len(ACTIVITY_DEGREES))
    degree = np.array(ACTIVITY_DEGREES, dtype=object)[activity_bin]
    degree[rng.random(n_users) < UNKNOWN_DEGREE_SHARE] = "UNKNOWN"
    social = {name: np.floor(rng.lognormal(mean + slope * u[:, k], sigma)).astype(np.int64)
              for name, (k, mean, slope, sigma) in SOCIAL_COUNTS.items()}
    social["register_days"] = rng.integers(*REGISTER_DAYS, n_users)
    user = {"user_id": np.arange(n_users), "user_active_degree": degree}
    user.update({name: (rng.random(n_users) < share).astype(np.int64) for name, share in USER_FLAG_SHARE.items()})
    user["is_video_author"] = (rng.random(n_users) < 1 / (1 + np.exp(1 - u[:, 0]))).astype(np.int64)
    for name, values in social.items():
        user[name] = values
        user[f"{name}_range"] = _range_labels(values, *RANGES[name])
    user.update(_onehot_features(u, params["user_bias"], rng))
    return user


def _onehot_features(u, user_bias, rng):
    """onehot_feat0..17: quantile bins of each latent, then of each bias, then noise."""
    latent_dim, n_users, out = u.shape[1], len(u), {}
    for k in range(N_ONEHOT):
        if k < latent_dim:
            value = _quantile_bins(u[:, k], 2 + k % 4)
        elif k < latent_dim + 2:
            value = _quantile_bins(user_bias[:, k - latent_dim], 5)
        else:
            value = rng.integers(0, 2 + k % 5, n_users)
        if k >= FLOAT_ONEHOT_FROM:
            value = np.where(rng.random(n_users) < ONEHOT_MISSING_SHARE, np.nan, value.astype(np.float64))
        out[f"onehot_feat{k}"] = value
    return out


def item_categories(params, rng):
    """The columns of item_categories.csv: each video's tags, the best-scoring ones for its latent."""
    v = params["item_factors"]
    n_items, latent_dim = v.shape
    tag_scores = v @ rng.standard_normal((latent_dim, N_TAGS)) / np.sqrt(latent_dim) + rng.gumbel(size=(n_items, N_TAGS))
    ranked = np.argsort(-tag_scores, axis=1)
    n_tags = rng.choice(TAGS_PER_VIDEO[0], size=n_items, p=TAGS_PER_VIDEO[1])
    feat = ["[" + ", ".join(map(str, ranked[i, : n_tags[i]])) + "]" for i in range(n_items)]
    return {"video_id": np.arange(n_items), "feat": feat}


def item_daily_features(params, rows, days, rng):
    """The columns of item_daily_features.csv: one row per video (its first day), with a tag
    id from the latent, the upload type from the duration, and filler daily statistics."""
    v, duration = params["item_factors"], params["item_duration_ms"]
    n_items, latent_dim = v.shape
    video_tag_id = np.argmax(v @ rng.standard_normal((latent_dim, N_VIDEO_TAG_IDS))
                             + rng.gumbel(size=(n_items, N_VIDEO_TAG_IDS)), axis=1)
    upload_type = np.where(duration > LONG_VIDEO_MS, "LongImport",
                           np.where(rng.random(n_items) < 0.5, "ShortImport", "ShortCamera"))
    popularity = params["item_popularity"]
    shows = rng.poisson(3 * rows * popularity / popularity.sum() / days)
    daily = {
        "video_id": np.arange(n_items),
        "date": np.full(n_items, 20200705),
        "author_id": params["item_author"],
        "video_type": np.where(rng.random(n_items) < AD_SHARE, "AD", "NORMAL"),
        "upload_dt": pd.Timestamp("2020-07-04") - pd.to_timedelta(rng.integers(0, 365, n_items), unit="D"),
        "upload_type": upload_type,
        "visible_status": "public",
        "video_duration": duration.astype(np.float64),
        "video_width": np.where(rng.random(n_items) < 0.8, 720, 1080),
        "video_height": np.where(rng.random(n_items) < 0.8, 1280, 1920),
        "music_id": rng.integers(0, max(1, n_items // 2), n_items),
        "video_tag_id": video_tag_id,
        "video_tag_name": [f"tag{t}" for t in video_tag_id],
    }
    daily["upload_dt"] = daily["upload_dt"].strftime("%Y-%m-%d")
    daily.update(_daily_statistics(shows, n_items, rng))
    return daily


def _daily_statistics(shows, n_items, rng):
    """Shows and binomial shares of them (never read by the converter)."""
    out = {}
    for name in DAILY_STATISTICS:
        if name == "show_cnt":
            out[name] = shows
        elif name == "play_progress":
            out[name] = np.round(rng.uniform(0.2, 0.9, n_items), 6)
        elif name in ("play_duration", "comment_stay_duration"):
            out[name] = shows * rng.integers(1000, 20000, n_items)
        else:
            out[name] = rng.binomial(shows, DAILY_SHARE.get(name.split("_")[0], 0.01))
    return out
