import json

from typer.testing import CliRunner

from gr2.cli import app

runner = CliRunner()


def flat(text: str) -> str:
    """Rich wraps long lines at the terminal width; compare with whitespace collapsed."""
    return " ".join(text.split())


def test_tokenizer_fit_and_report(ml100k, ml100k_embeddings, tmp_path):
    out = tmp_path / "sid"
    result = runner.invoke(app, ["tokenizer", "fit", "--dataset", "ml-100k", "--method", "rq-kmeans",
                                 "--codebook-size", "32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["codebook_size"] == 32 and report["uniqueness"] == 1.0
    assert "uniqueness before de-dup" in flat(result.output)
    shown = runner.invoke(app, ["tokenizer", "report", str(out)])
    assert shown.exit_code == 0
    assert f"{report['uniqueness_before_dedup']:.2%}" in flat(shown.output)


def test_tokenizer_fit_from_yaml_config(ml100k, ml100k_embeddings, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("levels: 2\ncodebook_size: 16\nhidden_dims: [32]\nlatent_dim: 8\nepochs: 2\n")
    out = tmp_path / "vae"
    result = runner.invoke(app, ["tokenizer", "fit", "-d", "ml-100k", "--method", "rq-vae", "--config", str(cfg),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["levels"] == 2 and report["config"]["hidden_dims"] == [32] and report["config"]["epochs"] == 2


def test_bad_input_is_a_clean_error(ml100k, tmp_path):
    result = runner.invoke(app, ["tokenizer", "report", str(tmp_path)])
    assert result.exit_code == 2 and "no report.json" in flat(result.output)
    result = runner.invoke(app, ["tokenizer", "fit", "-d", "ml-100k", "--method", "pq", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown tokenizer method 'pq'" in flat(result.output)
    result = runner.invoke(app, ["tokenizer", "fit", "-d", "ml-100k", "--method", "rq-kmeans",
                                 "--codebook-size", "4096", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "1682 items but the codebook has 4096 codes" in flat(result.output)
    assert not (tmp_path / "o").exists()


def test_bench_tokenizer_writes_json(ml100k, ml100k_embeddings, tmp_path):
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "tokenizer", "--dataset", "ml-100k", "--threads", "1", "--epochs", "1",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["threads"] == 1 and data["items"] == 1682
    assert [r["variant"] for r in data["results"]] == ["rq-kmeans", "rq-kmeans balanced", "rq-vae (EMA + random last)"]
    assert all(r["fit_seconds"] > 0 for r in data["results"])
    assert data["results"][2]["config"]["epochs"] == 1


def test_shipped_configs_are_valid():
    from pathlib import Path

    import yaml

    from tokenizer import make_quantizer

    configs = Path(__file__).resolve().parents[2] / "configs" / "tokenizer"
    for method in ("rq-vae", "rq-kmeans"):
        options = yaml.safe_load((configs / f"{method}.yaml").read_text())
        q = make_quantizer(method, **options)
        assert q.method == method and q.config.seed == 0


def test_tokenizer_ablation_command(ml100k, ml100k_embeddings, tmp_path):
    out = str(tmp_path / "a")
    result = runner.invoke(app, ["tokenizer", "ablation", "-d", "ml-100k", "--epochs", "1", "--out", out])
    assert result.exit_code == 0, result.output
    assert "| RQ-VAE + EMA + random last level |" in result.output
    data = json.loads((tmp_path / "a" / "ablation.json").read_text())
    assert data["dataset"] == "ml-100k" and len(data["rows"]) == 6
