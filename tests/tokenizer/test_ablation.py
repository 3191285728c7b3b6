from tokenizer.ablation import NO_RESTART_ROWS, ROWS, ablation_markdown, ablation_to_dir, run_ablation


def test_ablation_rows_on_ml100k(ml100k_embeddings):
    rows = run_ablation(ml100k_embeddings, codebook_size=32, show_progress=False, epochs=3, hidden_dims=(64,),
                        latent_dim=16)
    assert [r["name"] for r in rows] == [*ROWS, *NO_RESTART_ROWS]
    by = {r["name"]: r for r in rows}
    ema, rand = by["RQ-VAE + EMA"], by["RQ-VAE + EMA + random last level"]
    # Same trained model: only the last level differs, so the prefixes agree and random spreads further.
    assert ema["prefix_uniqueness"][:2] == rand["prefix_uniqueness"][:2]
    assert rand["uniqueness_before_dedup"] > ema["uniqueness_before_dedup"]
    for r in rows:
        assert r["uniqueness"] == 1.0 and len(r["utilization"]) == 3 and r["codebook_size"] == 32
        assert r["same_first_code_cosine"] > r["random_pair_cosine"]
    table = ablation_markdown(rows)
    assert table.count("\n") == 2 + len(rows) and "| RQ-KMeans |" in table


def test_ablation_to_dir(ml100k, ml100k_embeddings, tmp_path):
    rows = ablation_to_dir("ml-100k", tmp_path / "abl", show_progress=False, no_restart_rows=False, epochs=1,
                           codebook_size=16, hidden_dims=(32,), latent_dim=8)
    assert len(rows) == 4
    for name in ("ablation.json", "ablation.md", "manifest.json"):
        assert (tmp_path / "abl" / name).is_file()
