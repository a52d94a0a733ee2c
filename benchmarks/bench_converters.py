"""Benchmark of the real-data converters (kuairec, wechat, kuairand) on generated raw files.

For each converter and each size in --rows, generates a raw folder in that dataset's exact
raw format, then runs each stage in its own subprocess and records its wall time and peak
resident memory (os.wait4's ru_maxrss of that child):
    generate: write the raw folder (not a target; for the record).
    convert: the converter alone (read, join, filter, features), as prepare runs it.
    prepare: the whole pipeline from scratch (convert, parquet cache, random split,
        RecBole atomic files).
Targets at 10M rows: convert and prepare under 2 minutes and 6 GiB each.

Raw data (shapes of the real datasets, values random):
    kuairec: dataset_prep.synthetic's KuaiRec 2.0 files (big_matrix.csv and the three
        feature files), 7,176 users, 10,728 videos.
    wechat: user_action.csv (13 columns, 20,000 users, 14 days, 2% exact duplicates,
        10% zero plays) and feed_info.csv (106,444 feeds, 15 columns with text, keyword and
        tag lists).
    kuairand: log_standard_*_27k_part{1,2}.csv (19 columns, 27,285 users, 1,000,000
        videos, 8.5% unknown durations, 1% duplicates), user_features_27k.csv,
        video_features_basic_27k.csv.

    python benchmarks/bench_converters.py --rows 10000000 --output results/bench_converters.json
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from bench_data import (
    add_common_arguments, folder_bytes, machine, remove, run_stage_process, scratch_folder, write_report,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATASETS = ("kuairec", "wechat", "kuairand")
STAGES = ("generate", "convert", "prepare")
CHUNK = 1_000_000


# ---------------------------------------------------------------------------------------
# Raw data generators


def write_csv(path, columns, chunks, append=False):
    """Write a headered CSV from a generator of {column: array} chunks (pyarrow, no quoting
    unless a value needs it)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    with open(path, "ab" if append else "wb") as f:
        f.write((",".join(columns) + "\n").encode())
        for chunk in chunks:
            pcsv.write_csv(pa.table({c: chunk[c] for c in columns}), f, pcsv.WriteOptions(include_header=False))


def id_lists(rng, n, vocab, max_len, sep):
    """n strings of 0..max_len random ids joined by `sep` ("" when empty)."""
    lengths = rng.integers(0, max_len + 1, n)
    ids = rng.integers(0, vocab, lengths.sum()).astype(str)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return np.array([sep.join(ids[a:b]) for a, b in zip(bounds[:-1], bounds[1:])], dtype=object)


def generate_wechat(raw, rows, seed):
    rng = np.random.default_rng(seed)
    os.makedirs(raw, exist_ok=True)
    feeds, users = 106_444, 20_000
    seconds = np.clip(np.rint(rng.lognormal(3.0, 0.6, feeds)), 2, 300).astype(np.int64)
    bgm = rng.integers(0, 25159, feeds).astype(float)
    bgm[rng.random(feeds) < 0.3] = np.nan
    tags = id_lists(rng, feeds, 350, 4, ";")
    probs = [";".join(f"{t} {p:.8f}" for t, p in zip(s.split(";"), rng.random(4))) if s else "" for s in tags]
    text = id_lists(rng, feeds, 20000, 30, " ")
    write_csv(
        os.path.join(raw, "feed_info.csv"),
        ["feedid", "authorid", "videoplayseconds", "description", "ocr", "asr", "bgm_song_id", "bgm_singer_id",
         "manual_keyword_list", "machine_keyword_list", "manual_tag_list", "machine_tag_list", "description_char",
         "ocr_char", "asr_char"],
        [{
            "feedid": np.arange(feeds), "authorid": rng.integers(0, 18789, feeds), "videoplayseconds": seconds,
            "description": text, "ocr": text, "asr": text, "bgm_song_id": bgm, "bgm_singer_id": np.floor(bgm / 2),
            "manual_keyword_list": id_lists(rng, feeds, 27000, 5, ";"),
            "machine_keyword_list": id_lists(rng, feeds, 27000, 6, ";"),
            "manual_tag_list": tags, "machine_tag_list": np.array(probs, dtype=object),
            "description_char": text, "ocr_char": text, "asr_char": text,
        }],
    )
    popularity = np.cumsum(rng.lognormal(0, 1.5, feeds))

    def chunks():
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            feed = np.minimum(np.searchsorted(popularity, rng.random(n) * popularity[-1]), feeds - 1)
            play = (seconds[feed] * 1000 * rng.lognormal(-0.5, 0.9, n)).astype(np.int64)
            play[rng.random(n) < 0.1] = 0
            chunk = {
                "userid": rng.integers(0, users, n), "feedid": feed, "date_": rng.integers(1, 15, n),
                "device": rng.integers(1, 3, n), "play": play, "stay": play + rng.integers(0, 5000, n),
            }
            for c in ("read_comment", "comment", "like", "click_avatar", "forward", "follow", "favorite"):
                chunk[c] = (rng.random(n) < 0.03).astype(np.int8)
            dup = np.flatnonzero(rng.random(n) < 0.02)  # exact duplicates of the previous row
            dup = dup[dup > 0]
            for c in chunk:
                chunk[c][dup] = chunk[c][dup - 1]
            yield chunk

    write_csv(os.path.join(raw, "user_action.csv"),
              ["userid", "feedid", "date_", "device", "read_comment", "comment", "like", "play", "stay",
               "click_avatar", "forward", "follow", "favorite"], chunks())


def user_features_chunk(rng, users):
    """The 31 columns of KuaiRec/KuaiRand's user_features.csv."""
    chunk = {
        "user_id": np.arange(users),
        "user_active_degree": rng.choice(["high_active", "full_active", "middle_active", "UNKNOWN"], users),
        "is_lowactive_period": rng.integers(0, 2, users), "is_live_streamer": rng.choice([0, 1, -124], users),
        "is_video_author": rng.integers(0, 2, users), "follow_user_num": rng.integers(0, 1000, users),
        "follow_user_num_range": rng.choice(["0", "(0,10]", "(10,50]", "500+"], users),
        "fans_user_num": rng.integers(0, 1000, users), "fans_user_num_range": rng.choice(["0", "[1,10)", "[10,100)"], users),
        "friend_user_num": rng.integers(0, 100, users), "friend_user_num_range": rng.choice(["0", "[1,5)", "[5,30)"], users),
        "register_days": rng.integers(15, 2500, users), "register_days_range": rng.choice(["15-30", "61-90", "730+"], users),
    }
    for k in range(18):
        values = rng.integers(0, 2 + k, users).astype(float)
        values[rng.random(users) < (0.01 if k >= 12 else 0)] = np.nan
        chunk[f"onehot_feat{k}"] = values
    return chunk


def generate_kuairand(raw, rows, seed):
    import pandas as pd

    rng = np.random.default_rng(seed)
    os.makedirs(raw, exist_ok=True)
    users, videos = 27_285, 1_000_000
    duration = np.rint(rng.lognormal(10.3, 0.8, videos)).astype(np.int64)
    user = user_features_chunk(rng, users)
    write_csv(os.path.join(raw, "user_features_27k.csv"), list(user), [user])
    tag = rng.integers(0, 70, (videos, 2)).astype(str)
    single = rng.random(videos) < 0.6
    tags = np.where(single, tag[:, 0], np.char.add(np.char.add(tag[:, 0], ","), tag[:, 1]))
    tags = np.where(rng.random(videos) < 0.05, None, tags.astype(object))
    write_csv(
        os.path.join(raw, "video_features_basic_27k.csv"),
        ["video_id", "author_id", "video_type", "upload_dt", "upload_type", "visible_status", "video_duration",
         "server_width", "server_height", "music_id", "music_type", "tag"],
        [{
            "video_id": np.arange(videos), "author_id": rng.integers(0, 400_000, videos),
            "video_type": rng.choice(["NORMAL", "AD"], videos, p=[0.97, 0.03]), "upload_dt": np.full(videos, "2022-03-01"),
            "upload_type": rng.choice(["ShortImport", "LongImport", "ShortCamera"], videos),
            "visible_status": rng.integers(0, 3, videos).astype(float), "video_duration": duration.astype(float),
            "server_width": np.full(videos, 720.0), "server_height": np.full(videos, 1280.0),
            "music_id": rng.integers(0, 300_000, videos), "music_type": rng.integers(0, 10, videos).astype(float),
            "tag": tags,
        }],
    )
    popularity = np.cumsum(rng.lognormal(0, 1.5, videos))
    columns = ["user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow", "is_comment",
               "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms", "profile_stay_time",
               "comment_stay_time", "is_profile_enter", "is_rand", "tab"]
    start_ms = 1649347200000 - 8 * 3_600_000  # 2022-04-08 00:00 at UTC+8

    def chunks(n_rows):
        for start in range(0, n_rows, CHUNK):
            n = min(CHUNK, n_rows - start)
            video = np.minimum(np.searchsorted(popularity, rng.random(n) * popularity[-1]), videos - 1)
            time_ms = start_ms + rng.integers(0, 14 * 86_400_000, n)
            local = pd.to_datetime(time_ms + 8 * 3_600_000, unit="ms")
            d = np.where(rng.random(n) < 0.085, 0, duration[video])
            play = (duration[video] * rng.lognormal(-0.7, 1.0, n)).astype(np.int64)
            play[rng.random(n) < 0.03] = 0
            chunk = {
                "user_id": rng.integers(0, users, n), "video_id": video,
                "date": (local.year * 10000 + local.month * 100 + local.day).to_numpy(),
                "hourmin": (local.hour * 100).to_numpy(), "time_ms": time_ms, "play_time_ms": play, "duration_ms": d,
                "long_view": (play >= np.minimum(d, 18000)).astype(np.int8), "profile_stay_time": np.zeros(n, np.int64),
                "comment_stay_time": np.zeros(n, np.int64), "is_rand": np.zeros(n, np.int8), "tab": rng.integers(0, 15, n),
            }
            for c in ("is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate", "is_profile_enter"):
                chunk[c] = (rng.random(n) < 0.05).astype(np.int8)
            dup = np.flatnonzero(rng.random(n) < 0.01)
            dup = dup[dup > 0]
            for c in chunk:
                chunk[c][dup] = chunk[c][dup - 1]
            yield chunk

    half = rows // 2
    for part, n_rows in ((1, half), (2, rows - half)):
        write_csv(os.path.join(raw, f"log_standard_4_08_to_4_21_27k_part{part}.csv"), columns, chunks(n_rows))


def generate(dataset, raw, rows, seed):
    if dataset == "kuairec":
        from dataset_prep import synthetic

        synthetic.generate(raw, rows=rows, users=7176, items=10728, seed=seed)
    elif dataset == "wechat":
        generate_wechat(raw, rows, seed)
    else:
        generate_kuairand(raw, rows, seed)


# ---------------------------------------------------------------------------------------
# Stages


def stage_config(dataset, raw, data):
    """The dataset's YAML with the raw folder and a random split."""
    import yaml

    config = yaml.safe_load((ROOT / f"properties/dataset/{dataset}.yaml").read_text())
    config.update(dataset=dataset, data_path=data, raw_data_path=raw, split="random",
                  split_ratio=[0.8, 0.1, 0.1], split_seed=2020)
    return config


def run_stage(args):
    """Child process: run one stage and print a JSON line with what it produced."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from dataset_prep import common, prepare

    if args.stage == "generate":
        generate(args.dataset, args.raw, args.size, args.seed)
        print(json.dumps({"raw_bytes": folder_bytes(args.raw)}))
    elif args.stage == "convert":
        module = common.converter(args.dataset)
        options = module.read_options(stage_config(args.dataset, args.raw, args.data))
        module.raw_files(args.raw, options)
        tables = module.convert(args.raw, options)
        print(json.dumps({"rows_read": tables.rows_read, "rows_kept": len(tables.inter), "rows_dropped": tables.rows_dropped}))
    else:
        prepared = prepare(stage_config(args.dataset, args.raw, args.data))
        print(json.dumps({k: prepared.meta[k] for k in ("rows_kept", "rows_per_split", "conversion_seconds", "write_seconds")}
                         | {"prepared_bytes": folder_bytes(prepared.path)}))


def measure(args, dataset, stage, raw, data):
    """Run `stage` in a subprocess; return its wall time, peak RSS and output."""
    command = [sys.executable, __file__, "--stage", stage, "--dataset", dataset, "--raw", raw, "--data", data,
               "--size", str(args.size), "--seed", str(args.seed)]
    return run_stage_process(command, f"{dataset} {stage}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000], help="sizes to run")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    add_common_arguments(parser, STAGES, "results/bench_converters.json")
    parser.add_argument("--dataset", choices=DATASETS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        return run_stage(args)

    report = {"machine": machine(), "runs": []}
    with scratch_folder(args.workdir, "bench_converters-") as work:
        for size in args.rows:
            args.size = size
            for dataset in args.datasets:
                print(f"{dataset}, {size} rows", flush=True)
                raw, data = os.path.join(work, f"{dataset}-raw-{size}"), os.path.join(work, f"{dataset}-data-{size}")
                remove(raw, data)
                run = {"dataset": dataset, "rows": size} | {stage: measure(args, dataset, stage, raw, data) for stage in STAGES}
                run["load_average_after"] = os.getloadavg()
                report["runs"].append(run)
                remove(raw, data)
    write_report(args.output, report)


if __name__ == "__main__":
    main()
