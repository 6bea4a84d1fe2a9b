"""``reel-recorder`` installed without the ``recorder`` extra says what to install and exits 2 (no traceback)."""

from __future__ import annotations

import importlib.util

import pytest

from reel_recorder import launch


def test_without_its_media_dependencies_the_command_says_which_extra_to_install(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "av" else real(name, *a))
    with pytest.raises(SystemExit) as exit_:
        launch.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "missing av" in err and "pip install 'reel[recorder]'" in err


def test_the_extra_and_the_check_agree():
    import tomllib
    from pathlib import Path

    extra = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    names = [d.split(">")[0].split("=")[0].strip() for d in extra["project"]["optional-dependencies"]["recorder"]]
    assert [{"Pillow": "PIL", "prometheus-client": "prometheus_client"}.get(n, n) for n in names] == list(launch.NEEDED)
    assert launch.missing() == []  # this machine has them
