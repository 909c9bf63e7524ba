import pytest
from conftest import builtin_spec

from study.cifar.config import Config, apply_overrides, preset_config
from study.params import ConfigError, parse_assignment
from study.spec import SpecError, load_spec, parse_spec

ARMS = {"baseline": {}, "no_bn": {"bn": "none"}}


def test_defaults_are_the_notebook_protocol():
    c = Config()
    assert (c.width, c.lr, c.weight_decay, c.momentum, c.batch_size, c.epochs) == (100, 0.1, 1e-4, 0.0, 100, 10)
    assert (c.scheduler, c.step_size, c.gamma, c.flip) == ("step", 5, 0.5, True)
    assert (c.train_size, c.val_size, c.test_size) == (45_000, 5_000, 10_000)
    assert c.bn_layers == (1, 2, 3, 4, 5, 6)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'epoch'.*did you mean 'epochs'.*valid keys: width"):
        apply_overrides(Config(), {"epoch": 3})


@pytest.mark.parametrize(("key", "value", "message"), [
    ("epochs", 2.5, "`epochs` must be an integer"),
    ("epochs", 0, "`epochs` must be a positive integer"),
    ("lr", -1.0, "`lr` must be a number > 0"),
    ("lr", "fast", "`lr` must be a number"),
    ("flip", 1, "`flip` must be true or false"),
    ("bn", "some", "`bn` must be one of 'all', 'none', 'alternating'"),
    ("bn", [9], "conv indices in 1-7"),
    ("bn", [4, 4], "distinct"),
    ("scheduler", "cosine", "`scheduler` must be one of 'step', 'none'"),
    ("train_size", 49_000, "`train_size` \\+ `val_size` must be <= 50000"),
])
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), {key: value})


def test_bn_list_and_integers_for_floats():
    c = apply_overrides(Config(), {"bn": [4], "lr": 1})
    assert c.bn_layers == (4,) and c.lr == 1.0 and isinstance(c.lr, float)


def test_parse_assignment_reads_toml_values():
    assert parse_assignment("epochs=20") == ("epochs", 20)
    assert parse_assignment("bn=[4]") == ("bn", [4])
    assert parse_assignment("scheduler=none") == ("scheduler", "none")
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignment("epochs")


def test_presets_and_config_hash():
    assert preset_config("full") == Config()
    assert preset_config("quick").width < 100
    assert preset_config("smoke").hash() != preset_config("quick").hash()
    with pytest.raises(ConfigError, match="did you mean 'quick'"):
        preset_config("quik")


def test_default_spec_has_the_notebook_arms():
    spec = load_spec()
    assert {"baseline", "no_scheduler", "no_bn", "notebook_no_bn", "alternating_bn"} <= set(spec.arm_names)
    assert spec.config("notebook_no_bn", "full")["bn"] == [4]
    assert spec.config("no_bn", "full")["bn"] == "none"
    assert spec.config("no_scheduler", "full")["scheduler"] == "none"
    assert spec.config("baseline", "full") == Config().to_dict()
    assert spec.analysis.baseline == "baseline" and spec.analysis.margin == 0.5


def test_the_default_spec_declares_the_builtin_experiment_and_its_config_as_any_spec_does():
    """[base] is the built-in Config's defaults, key for key and value for value (with their types:
    0.0 is not 0 in a config's hash), and the experiment is named, not implied."""
    spec = load_spec()
    assert spec.experiment == "study.cifar.experiment:train"
    defaults = Config().to_dict()
    assert list(spec.base) == list(defaults)
    assert all(spec.base[k] == v and type(spec.base[k]) is type(v) for k, v in defaults.items())
    assert spec.default("preset", True) == "full" and spec.default("preset", False) == "quick"
    assert spec.default("group", True) == 8 and spec.default("group", False) is None
    # the experiment's own check_config validates what [base]'s types cannot say
    with pytest.raises(SpecError, match="conv indices in 1-7"):
        spec.config("baseline", None, {"bn": [9]})
    with pytest.raises(SpecError, match="`lr` must be a number > 0"):
        spec.config("baseline", None, {"lr": -1.0})


def test_a_spec_without_an_experiment_says_how_to_name_one():
    with pytest.raises(SpecError, match='must name its experiment.*study.cifar.experiment:train'):
        parse_spec({"name": "t", "arms": ARMS, "analysis": {"metric": "test_acc"}})


def test_defaults_per_device_are_checked():
    with pytest.raises(SpecError, match=r"\[defaults.gpu\]: not a device kind.*did you mean 'cpu'"):
        parse_spec(builtin_spec({"name": "t", "arms": ARMS, "defaults": {"gpu": {"preset": "quick"}}}))
    with pytest.raises(SpecError, match=r"preset 'quik' is not one of the spec's \[presets.NAME\].*did you mean 'quick'"):
        parse_spec(builtin_spec({"name": "t", "arms": ARMS, "defaults": {"cpu": {"preset": "quik"}}}))
    with pytest.raises(SpecError, match="group must be a positive integer"):
        parse_spec(builtin_spec({"name": "t", "arms": ARMS, "defaults": {"cuda": {"group": 0}}}))


def test_set_overrides_base_but_not_arm_overrides():
    spec = parse_spec(builtin_spec({"name": "t", "arms": ARMS}))
    assert spec.config("no_bn", "smoke", {"epochs": 4, "bn": "all"})["bn"] == "none"
    assert spec.config("baseline", "smoke", {"epochs": 4})["epochs"] == 4


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "t", "arms": {}}, "needs at least one arm"),
    ({"name": "t"}, "needs at least one arm"),
    ({"name": "t", "arms": {"a": {"widht": 3}}}, r"unknown config key 'widht' in \[arms.a\].*did you mean 'width'"),
    ({"name": "t", "arms": ARMS, "sedes": 3}, "unknown top-level key 'sedes'.*did you mean 'seeds'"),
    ({"name": "t", "arms": ARMS, "seeds": 0}, "`seeds` must be an integer > 0"),
    ({"name": "t", "arms": ARMS, "analysis": {"baseline": "basline"}}, "baseline 'basline' is not an arm.*did you mean 'baseline'"),
    ({"name": "t", "arms": ARMS, "analysis": {"alpa": 0.1}}, "unknown key 'alpa' in \\[analysis\\]"),
    ({"name": "", "arms": ARMS}, "`name` must be a non-empty string"),
    ({"name": "t", "arms": ARMS, "base": {"lr": "x"}}, r"`lr` must be a number"),
])
def test_spec_errors_list_valid_choices(data, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(builtin_spec(data))


def test_arm_selection():
    spec = parse_spec(builtin_spec({"name": "t", "arms": ARMS}))
    assert spec.select("no_bn,baseline") == ("baseline", "no_bn")
    with pytest.raises(SpecError, match="unknown arm 'no_nb'.*did you mean 'no_bn'.*arms in"):
        spec.select("no_nb")
    with pytest.raises(SpecError, match="--arms is empty"):
        spec.select(" , ")


def test_spec_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")


def test_identity_changes_with_what_is_trained():
    spec = parse_spec(builtin_spec({"name": "t", "arms": ARMS}))
    assert spec.identity("smoke") == spec.identity("smoke")
    assert spec.identity("smoke") != spec.identity("quick")
    assert spec.identity("smoke") != spec.identity("smoke", {"epochs": 3})


USER_SPEC = '''experiment = "presetted:train"
name = "u"
[base]
epochs = 20
lr = 0.1
[presets.quick]
epochs = 2
[analysis]
metric = "val_acc"
[arms.baseline]
[arms.fast]
lr = 0.5
'''


def test_a_user_spec_declares_presets_layered_over_its_base_and_under_set_and_arms(tmp_path):
    from study.plan import UsageError, make_plan

    (tmp_path / "presetted.py").write_text("def train(config, seed):\n    return {'val_acc': 1.0}\n")
    path = tmp_path / "u.toml"
    path.write_text(USER_SPEC)
    spec = load_spec(path)
    assert spec.config("fast", None) == {"epochs": 20, "lr": 0.5}
    assert spec.config("fast", "quick") == {"epochs": 2, "lr": 0.5}
    assert spec.config("baseline", "quick", {"epochs": 3}) == {"epochs": 3, "lr": 0.1}  # --set over the preset
    assert spec.identity("quick") != spec.identity(None)  # a preset's runs never share a study with the spec's
    plan = make_plan(spec, has_cuda=False, preset="quick", results=tmp_path)
    assert (plan.preset, plan.study_name, plan.configs["fast"]) == ("quick", "u-quick", {"epochs": 2, "lr": 0.5})
    assert make_plan(spec, has_cuda=True, preset="auto", results=tmp_path).preset is None  # auto: as written
    with pytest.raises(UsageError, match=r"--preset quik: not a preset of .*did you mean 'quick'.*its presets: quick"):
        make_plan(spec, has_cuda=False, preset="quik", results=tmp_path)
    path.write_text(USER_SPEC.replace("[presets.quick]\nepochs = 2\n", ""))
    with pytest.raises(UsageError, match="--preset quick: .* declares no presets"):
        make_plan(load_spec(path), has_cuda=False, preset="quick", results=tmp_path)
    path.write_text(USER_SPEC.replace("[presets.quick]\nepochs = 2", "[presets.quick]\nepoch = 2"))
    with pytest.raises(SpecError, match=r"unknown config key 'epoch' in \[presets.quick\].*did you mean 'epochs'"):
        load_spec(path)


def test_the_builtin_sizes_are_the_default_specs_presets_and_a_builtin_spec_may_declare_its_own():
    default = load_spec()
    assert set(default.presets) == {"full", "quick", "smoke"}
    assert default.config("baseline", "quick") == preset_config("quick").to_dict()
    # a spec of the built-in experiment declares its presets as any spec does: none, or its own
    bare = {k: v for k, v in builtin_spec({"name": "t", "arms": ARMS}).items() if k not in ("presets", "defaults")}
    assert parse_spec(bare).presets == {}
    own = parse_spec({**builtin_spec({"name": "t", "arms": ARMS}), "presets": {"tiny": {"width": 4, "epochs": 1}},
                      "defaults": {}})
    assert own.config("no_bn", "tiny")["width"] == 4 and own.config("no_bn", "tiny")["bn"] == "none"
    with pytest.raises(SpecError, match="unknown preset 'quick'.*its presets: tiny"):
        own.config("baseline", "quick")
    with pytest.raises(SpecError, match=r"\[presets\] must hold one table per preset"):
        parse_spec({**builtin_spec({"name": "t", "arms": ARMS}), "presets": {"tiny": 3}, "defaults": {}})
