import json

import numpy as np
import pytest

from data.errors import DataError
from tokenizer import default_shape, fit_codes, fit_dataset, load_report, load_semantic_ids, uniqueness

REPORT_KEYS = {"uniqueness_before_dedup", "uniqueness", "levels", "codebook_size", "utilization", "fit_seconds"}


def test_default_shape_follows_catalogue_size():
    assert default_shape(16859) == (3, 256)
    assert default_shape(1682) == (3, 64)
    assert default_shape(50) == (3, 16)
    assert default_shape(10_000_000) == (3, 256)


def test_fit_dataset_writes_a_complete_run_dir(ml100k_kmeans_dir, ml100k, ml100k_embeddings):
    out = ml100k_kmeans_dir
    for name in ("quantizer/quantizer.json", "quantizer/weights.npz", "codes.npy", "sid_vocab.json", "sids.tsv",
                 "report.json", "manifest.json"):
        assert (out / name).is_file(), name
    report = load_report(out)
    assert REPORT_KEYS <= set(report)
    assert report["levels"] == 3 and report["codebook_size"] == 64 and report["dataset"] == "ml-100k"
    assert report["uniqueness"] == 1.0
    assert 0 < report["uniqueness_before_dedup"] < 1.0  # ML-100K has near-identical titles
    assert len(report["utilization"]) == 3
    assert report["same_first_code_cosine"] > report["random_pair_cosine"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "tokenizer/rq-kmeans" and manifest["seed"] == 0

    sem = load_semantic_ids(out)
    assert len(sem) == ml100k.num_items and sem.num_levels == 4
    assert sem.level_sizes[:3] == (64, 64, 64) and sem.level_sizes[3] == report["dedup_size"]
    assert sem.item_ids == ml100k.items["item_id"].astype(str).tolist()
    assert all(sem.item_index(sem.sid(i)) == i for i in range(0, ml100k.num_items, 97))
    # The saved quantizer reproduces the catalogue's codes (minus the de-dup column).
    from tokenizer import Quantizer

    q = Quantizer.load(out / "quantizer")
    assert np.array_equal(q.encode(ml100k_embeddings), sem.codes[:, :3])


def test_uniqueness_before_dedup_is_measured_not_assumed(ml100k_embeddings):
    out = fit_codes(ml100k_embeddings, "rq-kmeans", levels=2, codebook_size=16)
    assert out.report["uniqueness_before_dedup"] == pytest.approx(uniqueness(out.codes_before_dedup))
    assert out.report["uniqueness_before_dedup"] < 0.2  # 256 codes for 1,682 items cannot be unique
    assert out.report["uniqueness"] == 1.0 and out.semantic_ids is not None


def test_fit_dataset_rejects_mismatched_embeddings(ml100k, ml100k_embeddings, tmp_path):
    with pytest.raises(DataError, match="1000 embeddings for 1682 items"):
        fit_dataset(ml100k, "rq-kmeans", tmp_path / "x", embeddings=ml100k_embeddings[:1000])
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_corrupt_report(tmp_path):
    with pytest.raises(DataError, match="no report.json"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{")
    with pytest.raises(DataError, match="corrupt report"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text('{"uniqueness": 1.0}')
    with pytest.raises(DataError, match=r"corrupt report: missing \['codebook_size'"):
        load_report(tmp_path)
