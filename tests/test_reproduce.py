"""scripts/reproduce.sh --list: one self-contained command per run still to do."""
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "reproduce.sh"


def listed(group, runs_dir, **env):
    out = subprocess.run(["bash", str(SCRIPT), group, "--list", "--device", "gpu"],
                         env={**os.environ, "RUNS_DIR": str(runs_dir), **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_list_prints_new_resumed_and_skips_finished_runs(tmp_path):
    lines = listed("main", tmp_path)
    assert len(lines) == 6
    assert lines[1] == (f"python3 train.py --out {tmp_path}/ifm-seed0 --restart --quiet "
                        "--epochs 10 --seed 0 --ifm --device gpu")
    (tmp_path / "baseline-seed0").mkdir()
    (tmp_path / "baseline-seed0" / "report.json").write_text("{}")
    (tmp_path / "ifm-seed0").mkdir()
    (tmp_path / "ifm-seed0" / "checkpoint.npz").write_bytes(b"")
    lines = listed("main", tmp_path)
    assert len(lines) == 5 and not any("baseline-seed0" in line for line in lines)
    assert lines[0] == f"python3 train.py --out {tmp_path}/ifm-seed0 --resume --quiet --device gpu"
    (tmp_path / "ifm-seed1").mkdir()                # a run whose loss became NaN: a result
    (tmp_path / "ifm-seed1" / "checkpoint.npz").write_bytes(b"")
    (tmp_path / "ifm-seed1" / "diverged").write_text("")
    lines = listed("main", tmp_path)
    assert len(lines) == 4 and not any("ifm-seed1" in line for line in lines)


def test_every_group_lists_its_runs(tmp_path):
    counts = {group: len(listed(group, tmp_path))
              for group in ("main", "more-seeds", "paper-lam1", "gap", "gap-seeds", "long",
                            "ablations", "ablation-seeds")}
    assert counts == {"main": 6, "more-seeds": 4, "paper-lam1": 3, "gap": 15, "gap-seeds": 6,
                      "long": 1, "ablations": 13, "ablation-seeds": 10}
    assert len(listed("all", tmp_path)) == sum(counts.values())


def test_draws_take_their_textures_from_the_pool_variable(tmp_path):
    pool = tmp_path / "my pool"         # a path with a space stays one argument
    pool.mkdir()
    lines = listed("draws", tmp_path / "runs", IFM_TEXTURE_POOL=str(pool))
    assert len(lines) == 20                     # 5 draws x 2 seeds x 2 methods
    assert lines[0].endswith(f"--epochs 3 --seed 0 --ifm --data-seed 1 --textures {pool} "
                             "--device gpu")
    assert sum("--data-seed 5" in line for line in lines) == 4
    out = subprocess.run(["bash", str(SCRIPT), "draws", "--list"],
                         env={k: v for k, v in os.environ.items() if k != "IFM_TEXTURE_POOL"},
                         capture_output=True, text=True)
    assert out.returncode == 2 and "IFM_TEXTURE_POOL" in out.stderr


def test_controls_build_their_texture_folders_once(tmp_path):
    """@POOL_ORDER: the shared set's ten files by their pool names; @SHIFT1: the shared
    files with every id moved up by one; built under RUNS_DIR, then reused."""
    shared, pool = tmp_path / "shared", tmp_path / "pool"
    shared.mkdir()
    pool.mkdir()
    names = ["leopard", "burlap", "java", "leaves", "brick", "ground1", "granite1", "bark",
             "pink_marble", "starfield"]
    for i, name in enumerate(names):
        (shared / f"{i:02d}_{name}.png").write_bytes(bytes([i]))
    in_pool = ("animal_leopard fabric_burlap food_java plant_leaves stone_brick stone_ground1 "
               "stone_granite1 wood_bark stone_pink_marble sky_starfield wood_pine").split()
    for i, name in enumerate(in_pool):
        (pool / f"{name}.png").write_bytes(bytes([100 + i]))
    runs = tmp_path / "runs"
    env = {"IFM_TEXTURE_POOL": str(pool), "IFM_TEXTURES": str(shared)}
    lines = listed("controls", runs, **env)
    assert len(lines) == 8
    assert lines[3].endswith(f"--textures {runs}/textures-pool-order --device gpu")
    assert lines[4].endswith(f"--textures {runs}/textures-shift1 --device gpu")
    order = sorted(os.listdir(runs / "textures-pool-order"))
    assert order == sorted(f"{n}.png" for n in in_pool[:10])
    shifted = sorted(os.listdir(runs / "textures-shift1"))
    assert shifted[:2] == ["00_starfield.png", "01_leopard.png"]
    assert (runs / "textures-shift1" / "05_brick.png").read_bytes() == bytes([4])
    (shared / "04_brick.png").write_bytes(b"changed")       # built once: not rebuilt
    assert listed("controls", runs, **env) == lines
    assert (runs / "textures-shift1" / "05_brick.png").read_bytes() == bytes([4])
    assert len(listed("regime-search", runs, **env)) == 16
    assert len(listed("regime-seeds", runs, **env)) == 8
    assert len(listed("composite", runs, **env)) == 8


def test_a_diverged_run_is_marked_and_the_group_goes_on(tmp_path):
    """train.py's exit status 3 (a NaN or inf loss) marks the run diverged and the next
    run starts; any other failure stops the group."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text(
        "#!/bin/sh\n"
        'echo "$@" >> "$CALLS"\n'
        'case "$*" in *ifm-seed0*) echo "the loss became NaN or inf"; exit 3;; '
        '*baseline-seed1*) exit 1;; esac\n'
        "exit 0\n")
    (fake / "python3").chmod(0o755)
    env = {**os.environ, "RUNS_DIR": str(tmp_path / "runs"), "CALLS": str(tmp_path / "calls"),
           "PATH": f"{fake}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", str(SCRIPT), "main"], env=env, capture_output=True, text=True)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [c.split("--out ")[1].split()[0].rsplit("/", 1)[1] for c in calls] == \
        ["baseline-seed0", "ifm-seed0", "baseline-seed1"]       # it went on after ifm-seed0
    assert (tmp_path / "runs" / "ifm-seed0" / "diverged").exists()
    assert "ifm-seed0: diverged" in out.stdout
    assert out.returncode == 1                                  # a failure stops it
    assert "NaN or inf" in (tmp_path / "runs" / "ifm-seed0" / "train.log").read_text()
