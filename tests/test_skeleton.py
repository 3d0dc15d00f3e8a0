"""`dgpg domains --new NAME`: the generated package's files, its domain against `check_domain`,
the command's refusals (one line, exit 2, nothing written), and (slow) the package installed
with pip, checked and trained by the three learners from the command line."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cli_harness import run_cli, snapshot

import dgpg.domains as domains
from dgpg import skeleton
from dgpg.domains import check_domain

EXPECTED = ["pyproject.toml", "{p}/__init__.py", "{p}/config.py", "{p}/env.py", "{p}/model.py",
            "{p}/heuristics.py", "tests/test_domain.py"]


def _files(name: str) -> set[str]:
    return {f.format(p=skeleton.package_name(name)) for f in EXPECTED}


def test_new_writes_an_installable_package_into_the_named_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["domains", "--new", "skel-files"])  # --out defaults to ./NAME
    assert code == 0, err
    folder = tmp_path / "skel-files"
    written = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert written == _files("skel-files")
    for path in folder.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")  # raises on a syntax error
    project = tomllib.loads((folder / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["dgpg.domains"] == {
        "skel-files": "dgpg_skel_files:SPEC"}
    assert project["tool"]["setuptools"]["packages"] == ["dgpg_skel_files"]
    init = (folder / "dgpg_skel_files" / "__init__.py").read_text()
    assert 'slots_per_agent="units_per_step"' in init and "import jax" not in init
    assert "import jax" not in (folder / "dgpg_skel_files" / "config.py").read_text()
    for line in ("pip install -e skel-files", "dgpg domains --check skel-files",
                 "dgpg train --domain skel-files"):
        assert line in out, out
    code, out, err = run_cli(["domains", "--new", "skel-json", "--out", "elsewhere/pkg",
                              "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["package"] == "dgpg_skel_json"
    assert Path(report["folder"]) == tmp_path / "elsewhere" / "pkg"
    assert {str(Path(f).relative_to(report["folder"])) for f in report["files"]} == _files(
        "skel-json")


def test_the_templates_are_data_not_modules():
    folder = Path(skeleton.__file__).parent
    assert [p.name for p in folder.glob("*.py")] == ["__init__.py"]
    assert len(list(folder.glob("*.tmpl"))) == len(skeleton.FILES)
    assert skeleton.package_name("my-shop-2") == "dgpg_my_shop_2"


@pytest.fixture
def generated(tmp_path, monkeypatch):
    """A generated package on sys.path, its domain added with `register` (removed after)."""
    name = "skel-check"
    package = skeleton.package_name(name)
    skeleton.create(name, tmp_path / name)
    monkeypatch.syspath_prepend(str(tmp_path / name))
    module = importlib.import_module(package)
    domains.register(module.SPEC)
    try:
        yield domains.get_domain(name), importlib.import_module(f"{package}.config")
    finally:
        domains.unregister(name)
        for loaded in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[loaded]


def test_the_generated_domain_passes_check_domain(generated):
    domain, config_module = generated
    config = config_module.SkelCheckConfig(n_agents=3)
    passed = check_domain(domain, config)
    assert {"config", "observe", "vmap", "model marginal", "heuristic greedy",
            "heuristic random"} <= set(passed)
    assert domain.decision_shape(config) == (2, 3)  # from the fields the spec names


def test_the_generated_guidance_is_of_order_one(generated):
    """The skeleton's model follows the guide's rule: at the uniform policy the guidance loss
    (the mean gap above each unit's best candidate) is of order 1."""
    import jax
    import jax.numpy as jnp

    domain, config_module = generated
    config = config_module.SkelCheckConfig(n_agents=8)
    model = domain.make_model(None, config)
    losses = []
    for seed in range(5):
        state = domain.reset(jax.random.key(seed), config)
        uniform = jnp.full((8, config.units_per_step, config.n_candidates),
                           1.0 / config.n_candidates)
        losses.append(float(model.guidance_loss(uniform, model.reference(state, uniform))))
    assert 0.1 < sum(losses) / len(losses) < 3.0, losses


def _refused(argv: list[str], root: Path) -> str:
    before = snapshot(root)
    code, out, err = run_cli(argv)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and not out, err
    assert snapshot(root) == before  # nothing written
    return err


@pytest.mark.parametrize("name", ["Shop", "1shop", "my_shop", "my--shop", "shop-", "-shop",
                                  "sh op", ""])
def test_a_bad_name_is_refused(tmp_path, name):
    err = _refused(["domains", "--new", name, "--out", str(tmp_path / "pkg")], tmp_path)
    assert "must be lower-case letters and digits" in err


def test_refusals_are_one_line_and_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "exists already" in _refused(["domains", "--new", "cloud"], tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert "folder 'full' is not empty; choose another --out" in _refused(
        ["domains", "--new", "shop", "--out", "full"], tmp_path)
    assert "is a file" in _refused(["domains", "--new", "shop", "--out", "full/notes.txt/pkg"],
                                   tmp_path)
    assert "'full/notes.txt' exists and is not a folder" in _refused(
        ["domains", "--new", "shop", "--out", "full/notes.txt"], tmp_path)
    assert "null byte" in _refused(["domains", "--new", "shop", "--out", "bad\0name"], tmp_path)
    assert "--out goes with --new" in _refused(["domains", "--out", "pkg"], tmp_path)
    assert "separate" in _refused(["domains", "--new", "shop", "--check", "cloud"], tmp_path)
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "locked").mkdir(mode=0o555)
        assert "cannot write" in _refused(["domains", "--new", "shop", "--out",
                                           "locked/pkg"], tmp_path)
    (tmp_path / "empty").mkdir()  # an empty folder is used
    code, _, err = run_cli(["domains", "--new", "shop", "--out", "empty"])
    assert code == 0 and (tmp_path / "empty" / "dgpg_shop" / "env.py").is_file(), err


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(skeleton.os, "replace", refuse)
    err = _refused(["domains", "--new", "shop", "--out", str(tmp_path / "a" / "b" / "pkg")],
                   tmp_path)
    assert "cannot write the domain's package" in err and "Permission denied" in err


def _pip_install(folder: Path) -> list[str]:
    """pip's command to install `folder` editable into this interpreter: without build
    isolation where this environment can build an editable wheel itself (setuptools >= 70.1,
    or the `wheel` package), else with it (pip fetches setuptools from its index)."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "-e", str(folder)]
    try:
        version = tuple(int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return command
    try:
        importlib.metadata.version("wheel")
        has_wheel = True
    except importlib.metadata.PackageNotFoundError:
        has_wheel = False
    if version >= (70, 1) or (version >= (64, 0) and has_wheel):
        command.insert(-2, "--no-build-isolation")
    return command


@pytest.mark.slow
def test_the_installed_skeleton_is_checked_and_trained_by_every_learner(tmp_path):
    """About a minute on 2 CPU cores."""
    name = "skel-installed"
    folder = tmp_path / name
    code, _, err = run_cli(["domains", "--new", name, "--out", str(folder)])
    assert code == 0, err

    def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, **kwargs)
        assert proc.returncode == 0, f"{argv}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
        return proc

    run(_pip_install(folder))
    try:
        dgpg = [sys.executable, "-m", "dgpg.cli"]
        listed = json.loads(run([*dgpg, "domains", "--json"]).stdout)
        assert name in [d["name"] for d in listed["domains"]], listed
        assert f"domain {name}: " in run([*dgpg, "domains", "--check", name]).stdout
        for algo in ("dgpg", "mappo", "ippo"):
            out = tmp_path / "runs" / algo
            run([*dgpg, "train", "--domain", name, "--algo", algo, "--agents", "4",
                 "--episodes", "2", "--out", str(out), "--json"])
            summary = json.loads((out / "summary.json").read_text())
            assert summary["domain"] == name and summary["reference"] == "greedy"
            assert summary["model"] == ("marginal" if algo == "dgpg" else "none")
            assert "reference_test_return" in summary
        run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings"],
            cwd=folder)  # the package's own test, as written
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", f"dgpg-{name}"],
                       capture_output=True, timeout=300)
        domains.refresh()
