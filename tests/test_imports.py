"""Light package imports, no import-time side effects (issue 17).

`study/__init__` and `analysis/__init__` import their public names on first use: the storage
layer, the torch-free contract and a torch-free experiment's worker must not pay for torch or
scipy (`import study.store` took 6 s when the package imported torch eagerly)."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def loaded_after(statement: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported after `statement`."""
    code = f"{statement}; import sys; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return set(res.stdout.split())


def test_the_storage_layer_and_the_contract_import_neither_torch_nor_scipy():
    assert "torch" not in loaded_after("import study.store, study.worker, study.spec")
    assert not {"torch", "scipy", "statsmodels", "optuna"} & loaded_after("import analysis.contract")
    assert not {"torch", "scipy"} & loaded_after("import study, analysis")


def test_importing_study_store_leaves_optunas_logging_alone():
    code = "import logging, optuna, study.store; print(optuna.logging.get_verbosity() == logging.INFO)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT,
                         timeout=120)
    assert res.stdout.strip() == "True", res.stderr[-2000:]


def test_the_public_names_are_still_there():
    import analysis
    import analysis.types
    import study

    assert len(analysis.__all__) <= 12, "a handful of functions at the top; types in analysis.types"
    for name in analysis.__all__:
        assert getattr(analysis, name) is not None, name
        assert f"`{name}`" in analysis.__doc__, f"{name} is exported but not in the package's map"
    for name in analysis.types.__all__:  # every result type, each one documented there
        assert isinstance(getattr(analysis.types, name), type), name
        assert f"`{name}`" in analysis.types.__doc__, f"{name} is not in analysis.types' map"
    assert len(study.__all__) <= 8, "a handful at the top; the built-in experiment in study.cifar"
    for name in study.__all__:
        assert getattr(study, name) is not None, name
        assert f"`{name}`" in study.__doc__, f"{name} is exported but not in the package's map"
    import analysis.compare  # noqa: F401  (a submodule named like the exported function)
    import analysis.stats.describe  # noqa: F401
    from analysis import compare, describe

    assert describe([1.0, 2.0, 3.0], rng=0).n == 3 and callable(compare)
    from study import run_study
    from study.cifar import Config

    assert Config().epochs > 0 and callable(run_study)


NO_TORCH = '''
import sys


def train(config, seed, report=None):
    return {"score": float(seed), "torch_loaded": float("torch" in sys.modules)}
'''


def test_a_torch_free_experiment_never_imports_torch_in_its_workers(tmp_path):
    (tmp_path / "notorch.py").write_text(NO_TORCH)
    spec = tmp_path / "notorch.toml"
    spec.write_text('experiment = "notorch:train"\nname = "notorch"\nseeds = 2\n[base]\nx = 1\n\n'
                    '[analysis]\nmetric = "score"\n\n[arms.baseline]\n[arms.other]\nx = 2\n')
    res = subprocess.run([sys.executable, "-m", "study.run", "--spec", str(spec), "--results", str(tmp_path / "r"),
                          "--jobs", "2"], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = pd.read_csv(tmp_path / "r" / "notorch" / "runs.csv")
    assert len(runs) == 4 and set(runs["torch_loaded"]) == {0.0}


def test_no_installed_package_shadows_this_tests_folder():
    """Tests share helpers as `tests.<module>`; a dependency that installs a top-level `tests`
    package (autorank and baycomp do) would win over this namespace folder and break them."""
    import tests

    assert getattr(tests, "__file__", None) is None, f"`tests` is the installed {tests.__file__}"
    assert ROOT / "tests" in [Path(p).resolve() for p in tests.__path__]
