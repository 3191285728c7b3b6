"""Semantic-ID tokenizer: item embeddings -> residual codes -> SID tokens an LLM can read and write.

    from tokenizer import fit_dataset, load_semantic_ids, extend_vocabulary
    fit_dataset("games", "rq-vae", "runs/sid-games")        # or `gr2 tokenizer fit`
    sids = load_semantic_ids("runs/sid-games")
    sids.sid(42)            # '<|sid_begin|><s_a_12><s_b_3><s_c_200><s_d_0><|sid_end|>'
    sids.item_index(sids.sid(42)) == 42
    sids.prefix_ngrams()    # (items, levels) hashed prefix feature ids for the rankers
    extend_vocabulary(hf_tokenizer, hf_model, sids, item_texts=ds.item_texts())
"""

from tokenizer.base import Quantizer, check_embeddings
from tokenizer.dedup import add_dedup_level, dedup_codes
from tokenizer.fit import FitOutcome, default_shape, fit_codes, fit_dataset, load_report, load_semantic_ids
from tokenizer.metrics import collision_stats, first_level_cohesion, uniqueness, utilization
from tokenizer.ngram import prefix_ngram_ids
from tokenizer.registry import METHODS, make_quantizer, quantizer_class
from tokenizer.rq_kmeans import RQKMeans, RQKMeansConfig
from tokenizer.rq_vae import RQVAE, RQVAEConfig
from tokenizer.sid import (
    SID_BEGIN,
    SID_END,
    SemanticIDs,
    SIDParseError,
    code_token,
    find_sids,
    format_sid,
    parse_sid,
)
from tokenizer.vocab import VocabExtension, extend_vocabulary

__all__ = [
    "METHODS", "RQVAE", "SID_BEGIN", "SID_END", "FitOutcome", "Quantizer", "RQKMeans", "RQKMeansConfig",
    "RQVAEConfig", "SIDParseError", "SemanticIDs", "VocabExtension", "add_dedup_level", "check_embeddings",
    "code_token", "collision_stats", "dedup_codes", "default_shape", "extend_vocabulary", "find_sids",
    "first_level_cohesion", "fit_codes", "fit_dataset", "format_sid", "load_report", "load_semantic_ids",
    "make_quantizer", "parse_sid", "prefix_ngram_ids", "quantizer_class", "uniqueness", "utilization",
]
