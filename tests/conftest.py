"""Shared fixtures: an isolated $GR2_HOME per test session and small real datasets."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports torch: spinning OpenMP waiters slow torch 50x when the test process
# shares the two cores with a server it started (see gr2/cli/__init__.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_GAMES = REPO.parent / "shared" / "datasets" / "games"


def small_model_config():
    """A Qwen3 of ~0.2M parameters: the tests check plumbing and learning signals, not quality."""
    from gr2.base_model import TinyModelConfig

    return TinyModelConfig(vocab_size=1024, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=1, intermediate_size=128)


@pytest.fixture(scope="session", autouse=True)
def gr2_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifacts of a test session go to a temporary $GR2_HOME; downloads and the content-addressed
    embedding cache are shared between sessions (embedding Games takes minutes on 2 cores)."""
    home = tmp_path_factory.mktemp("gr2_home")
    for shared in ("downloads", "cache"):
        target = Path.home() / ".cache" / "gr2" / shared
        target.mkdir(parents=True, exist_ok=True)
        (home / shared).symlink_to(target, target_is_directory=True)
    old = os.environ.get("GR2_HOME")
    os.environ["GR2_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield home
    if old is None:
        os.environ.pop("GR2_HOME", None)
    else:
        os.environ["GR2_HOME"] = old


@pytest.fixture(scope="session")
def ml100k(gr2_home):
    """MovieLens-100K, prepared once per session from the RecBole wheel."""
    from data.prepare import PrepareConfig, load_prepared, prepare

    prepare(PrepareConfig("ml-100k"))
    return load_prepared("ml-100k")


@pytest.fixture(scope="session")
def small_run(ml100k, tmp_path_factory):
    """`gr2 quickstart` on every stage of the ML-100K recipe, shrunk (``tests/shrunk_run.py``), built once a
    session: as `make demo` runs it, serving and the demo included, stopped once the sample request is
    answered. Returns (run directory, the command's output)."""
    from typer.testing import CliRunner

    from gr2.cli import app
    from tests.shrunk_run import SETS

    run = tmp_path_factory.mktemp("pipeline") / "run"
    result = CliRunner().invoke(app, ["quickstart", "--run", str(run), *SETS, "--port", "0", "--demo-port", "0",
                                      "--exit-after-sample"])
    assert result.exit_code == 0, result.output
    return run, result.output


@pytest.fixture(scope="session")
def games(gr2_home):
    """LLMRank's Amazon Games split from ../shared, when this checkout has it."""
    if not SHARED_GAMES.is_dir():
        pytest.skip("../shared/datasets/games is not available")
    from data.prepare import PrepareConfig, load_prepared, prepare

    prepare(PrepareConfig(str(SHARED_GAMES), format="recbole-seq", name="games"))
    return load_prepared("games")


def write_lines(path: Path, lines: list[str], final_newline: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""), encoding="utf-8")
    return path


@pytest.fixture
def recbole_dir(tmp_path: Path) -> Path:
    """A small valid RecBole atomic dataset: 4 users, 5 items, timestamps out of file order."""
    d = tmp_path / "tiny"
    write_lines(d / "tiny.item", [
        "item_id:token\ttitle:token_seq\tbrand:token",
        "a\tAlpha Quest\tAcme", "b\tBeta Racer\tAcme", "c\tGamma Chess\tBoard Co",
        "d\tDelta Force\tWar Inc", "e\tEpsilon Tales\tAcme",
    ])
    write_lines(d / "tiny.inter", [
        "user_id:token\titem_id:token\trating:float\ttimestamp:float",
        "u1\tb\t5\t200", "u1\ta\t4\t100", "u1\tc\t3\t300", "u1\td\t3\t400",
        "u2\ta\t5\t10", "u2\tc\t2\t20", "u2\te\t1\t30",
        "u3\tb\t5\t1", "u3\tc\t4\t2", "u3\td\t4\t3",
        "u4\te\t3\t5",
    ])
    return d


@pytest.fixture(scope="session")
def ml100k_embeddings(ml100k):
    """MiniLM embeddings of ML-100K titles (1,682 x 384), computed once per session."""
    from data.embeddings import embed_items

    return embed_items(ml100k, show_progress=False).vectors


@pytest.fixture(scope="session")
def games_embeddings(games):
    """MiniLM embeddings of the 16,859 Games titles (about 80 s on 2 cores), once per session."""
    from data.embeddings import embed_items

    return embed_items(games, show_progress=False).vectors


# -- the reranker stages (gr2/, rl/) --------------------------------------------------------------
@pytest.fixture(scope="session")
def ml100k_catalog(ml100k):
    """Two-level SIDs that are simply the item index in base 64: unique, cheap, good enough for format tests."""
    import numpy as np

    from gr2.rerank_data import ItemCatalog
    from tokenizer.sid import SemanticIDs

    idx = np.arange(ml100k.num_items)
    return ItemCatalog.build(ml100k, SemanticIDs(np.stack([idx // 64, idx % 64], axis=1), (64, 64)))


@pytest.fixture(scope="session")
def ml100k_cooc(ml100k):
    from data.cooccurrence import cooccurrence_matrix

    return cooccurrence_matrix(ml100k.train_sequences(), ml100k.num_items)


@pytest.fixture(scope="session")
def ml100k_examples(ml100k):
    """Test-split examples for 60 users: 10 candidates, target at a random position (absent for every 6th)."""
    import numpy as np

    from gr2.rerank_data import RerankExample

    rng = np.random.default_rng(0)
    test = ml100k.eval_examples("test")
    examples = []
    for n, (u, hist, target) in enumerate(zip(test.users[:60], test.histories[:60], test.targets[:60], strict=True)):
        pool = np.setdiff1d(np.arange(ml100k.num_items), np.append(hist, target))
        cands = rng.choice(pool, size=10, replace=False).tolist()
        if n % 6:
            cands[int(rng.integers(10))] = int(target)
        examples.append(RerankExample(int(u), hist[-10:].tolist(), cands, int(target), "test"))
    return examples


@pytest.fixture(scope="session")
def tiny_sid_model(ml100k, ml100k_catalog, tmp_path_factory):
    """An untrained small model that already knows the catalogue's SID tokens (what stage 1 starts from)."""
    from gr2.base_model import build_tiny_model
    from gr2.recipes.common import save_model
    from tokenizer.vocab import extend_vocabulary

    model, tok = build_tiny_model(ml100k.item_texts(), small_model_config())
    extend_vocabulary(tok, model, ml100k_catalog.sids, item_texts=ml100k.item_texts())
    return save_model(model, tok, tmp_path_factory.mktemp("tiny_sid") / "model")
