"""Exact and near-duplicate detection: punctuation-only twins, CJK, distinct texts kept."""

from tunesmith.data.dedup import exact_key, find_duplicates, minhash_signatures


def test_exact_after_normalisation():
    d = find_duplicates(["Hello  World", "hello world", "ＨＥＬＬＯ world"], near=False)
    assert [(x.index, x.twin, x.kind) for x in d] == [(1, 0, "exact"), (2, 0, "exact")]
    assert exact_key(" A\tB ") == "a b"


def test_near_duplicate_differing_by_punctuation_only_is_found():
    texts = ["What is the capital of France? Paris is the capital of France.",
             "What is the capital of France Paris, is the capital of France!!",
             "Give three tips for staying healthy: eat well, sleep, exercise."]
    d = find_duplicates(texts, exact=True, near=True, threshold=0.85)
    assert [(x.index, x.twin, x.kind) for x in d] == [(1, 0, "near")]
    assert d[0].similarity == 1.0


def test_chinese_near_duplicate():
    texts = ["这家酒店很好，服务周到。房间干净，位置方便。", "这家酒店很好服务周到房间干净位置方便！", "患者咳嗽发热，建议就医。"]
    assert [(x.index, x.twin) for x in find_duplicates(texts, exact=False)] == [(1, 0)]


def test_distinct_texts_are_kept_and_signatures_are_deterministic():
    texts = [f"record number {i} talks about topic {i * 7} in detail" for i in range(200)]
    assert find_duplicates(texts, threshold=0.9) == []
    s1, has = minhash_signatures(texts[:5])
    s2, _ = minhash_signatures(texts[:5])
    assert (s1 == s2).all() and has.all() and s1.shape == (5, 128)
