"""`download`: fetch and unpack a public dataset's raw files (`dataset_prep.download`).

    python -m recbole_lda download kuairec --dest raw/
"""

import argparse
import shlex

from dataset_prep import download
from dataset_prep.download import ARCHIVES, fetch
from recbole_lda.utils.errors import UsageError
from recbole_lda.utils.fileio import check_folder


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m recbole_lda download", description=download.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", choices=sorted(ARCHIVES), help="which archive")
    parser.add_argument("--dest", required=True, help="folder to download and unpack into")
    parser.add_argument("--url", help="another URL for the same archive (a mirror)")
    parser.add_argument("--md5", help="expected md5 instead of the pinned one ('' = do not check)")
    parser.add_argument("--retries", type=int, default=5, help="resumptions of a broken transfer within this run")
    parser.add_argument("--remove-archive", action="store_true", help="delete the archive once unpacked")
    args = parser.parse_args(argv)
    try:
        check_folder(args.dest, "--dest")
    except ValueError as err:
        raise UsageError(str(err)) from None
    raw_dir = fetch(args.name, args.dest, url=args.url, md5=args.md5, retries=args.retries,
                    remove_archive=args.remove_archive)  # a DownloadError is reported by errors.guarded
    dataset = ARCHIVES[args.name].dataset
    print(f"\n{args.name} is ready in {raw_dir}. Pass --raw_data_path={shlex.quote(raw_dir)}, e.g.\n"
          f"    python run_recbole_lda.py --model=LDA --dataset={dataset} --raw_data_path={shlex.quote(raw_dir)}")
