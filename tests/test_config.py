"""Config, the run's typed settings: train.py's defaults, its JSON in config.json, old runs."""
import dataclasses

import pytest

from experiment.config import Config
from experiment.settings import parse

# config.json's "settings" keys, as runs have always saved them (a setting added later is
# added here; none is ever renamed or removed, so that old run folders keep reading).
SETTINGS_KEYS = {"seed", "textures", "mnist_dir", "data_seed", "limit_train", "limit_eval",
                 "texture_crops", "composite", "eval_every", "method", "optimizer", "lr",
                 "momentum", "weight_decay", "batch_size", "init", "ifm", "lam", "lam_d",
                 "samples", "estimator", "marginal", "upsample", "pairs", "pair_features",
                 "flow_depth", "ice_beta", "ice_labels", "epochs"}


def test_the_defaults_are_train_pys_with_each_methods_optimizer():
    assert parse([]).config == Config()
    assert parse(["--ifm"]).config == Config(method="ifm")
    assert (Config().optimizer, Config().lr) == ("sgd", 0.01)
    ice = parse(["--method", "ice-firevnet"]).config
    assert ice == Config(method="ice-firevnet") and (ice.optimizer, ice.lr) == ("adamax", 1e-3)
    assert parse(["--method", "ice-firevnet", "--lr", "0.5"]).config.lr == 0.5


def test_it_is_frozen_and_one_fact_is_held_once():
    config = Config(method="ifm")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lam = 1.0
    assert config.ifm and not Config(method="ice-firevnet").ifm
    assert "ifm" not in {f.name for f in dataclasses.fields(Config)}


def test_config_json_keeps_its_keys_and_reads_back():
    config = parse(["--ifm", "--pairs", "1-2,3-4", "--samples", "all", "--lam-d", "1"]).config
    settings = config.to_json()
    assert set(settings) == SETTINGS_KEYS
    assert settings["pairs"] == [[1, 2], [3, 4]] and settings["ifm"] is True
    assert Config.from_json(settings) == config


def test_an_old_runs_settings_take_what_it_did():
    old = {k: v for k, v in Config(method="ifm", lam=10.0).to_json().items()
           if k not in ("method", "lam_d", "composite", "pair_features", "flow_depth")}
    config = Config.from_json(old)
    assert config == Config(method="ifm", lam=10.0)
    with pytest.raises(ValueError, match="method 'gan' is none of"):
        Config.from_json({"method": "gan"})


def test_main_differences_name_what_sets_a_run_apart():
    config = Config(method="ifm", epochs=2, samples=16, seed=3, mnist_dir="/m")
    assert config.main_differences() == [("epochs", 2), ("samples", 16)]
    assert Config(method="ice-firevnet").main_differences() == []
