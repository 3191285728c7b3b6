"""rl/ leans on private TRL methods: the tested TRL range is pinned, checked at import, and the
methods it overrides still exist with the arguments it passes."""

from __future__ import annotations

import inspect
import tomllib

import pytest

from rl import ALLOW_UNTESTED_TRL, PRIVATE_TRL_METHODS, TESTED_TRL, check_trl_version
from tests.conftest import REPO


def test_pyproject_pins_the_range_rl_checks():
    from packaging.requirements import Requirement

    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    trl = [Requirement(d) for d in dependencies if Requirement(d).name == "trl"]
    assert [r.specifier for r in trl] == [TESTED_TRL]


def test_installed_trl_is_in_the_tested_range():
    check_trl_version()  # what importing rl/ ran


def test_an_untested_trl_is_refused_with_what_to_do(monkeypatch):
    monkeypatch.delenv(ALLOW_UNTESTED_TRL, raising=False)
    with pytest.raises(ImportError, match=r"tested with trl.*1\.17\.0 is installed.*_generate_and_score_completions"
                                          r".*pip install 'trl"):
        check_trl_version("1.17.0")
    with pytest.raises(ImportError, match="0.24.0 is installed"):
        check_trl_version("0.24.0")
    monkeypatch.setenv(ALLOW_UNTESTED_TRL, "1")
    with pytest.warns(UserWarning, match="1.17.0 is installed"):
        check_trl_version("1.17.0")


def test_the_overridden_private_methods_exist_in_trl():
    from trl import GRPOTrainer

    params = {name: list(inspect.signature(getattr(GRPOTrainer, name)).parameters) for name in PRIVATE_TRL_METHODS}
    assert params["_generate_and_score_completions"][:2] == ["self", "inputs"]
    assert params["_calculate_rewards"][:5] == ["self", "inputs", "prompts", "completions", "completion_ids_list"]
    assert params["_get_per_token_logps_and_entropies"][:5] == [
        "self", "model", "input_ids", "attention_mask", "logits_to_keep"]
