"""Whether a run folder holds a run made with these train.py flags (scripts/reproduce.sh).

    python -m scripts.run_matches RUN_DIR [train.py flags ...]

Exit status 0 when RUN_DIR/config.json's settings are those the flags give
(epochs included; a data location only where a flag gives one; flags that do
not define the run, such as --device or --quiet, are not compared), 1 when
they differ (each difference is printed on one line: "--epochs 2 (wanted 10)"),
2 when RUN_DIR holds no readable config.json.
"""
import sys

from experiment.cli import quiet_on_closed_pipe
from experiment.config import Config
from experiment.runfolder import RunFolder, RunFolderError
from experiment.settings import flag, parse


@quiet_on_closed_pipe
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m scripts.run_matches RUN_DIR [train.py flags ...]",
              file=sys.stderr)
        return 2
    try:
        saved = RunFolder(argv[0]).load_config()
    except RunFolderError as err:
        print(f"run_matches: {err}", file=sys.stderr)
        return 2
    diff = parse(argv[1:]).differences(Config.from_json(saved["settings"]))
    print("; ".join(f"{flag(k)} {run!r} (wanted {wanted!r})"
                    for k, (run, wanted) in diff.items()))
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
