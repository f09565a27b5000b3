import json

import pytest
import torch

from soundlm.vocab import VocabLayout


def layout(**kw) -> VocabLayout:
    args = dict(semantic_size=50, codebook_size=32, num_codebooks=4)
    args.update(kw)
    return VocabLayout(**args)


def test_blocks_are_disjoint_and_cover_the_vocab():
    lay = layout(task_tokens=("ASR", "TTS"))
    ranges = [lay.range_of("special"), lay.range_of("semantic")] + [lay.range_of(f"acoustic:{q}") for q in range(4)]
    assert ranges[0][0] == 0 and ranges[-1][1] == lay.vocab_size
    for (_, hi), (lo, _) in zip(ranges, ranges[1:]):
        assert hi == lo
    assert lay.vocab_size == 6 + 50 + 4 * 32
    assert lay.range_of("acoustic") == (ranges[2][0], lay.vocab_size)
    assert lay.special("TTS") == 5 and lay.range_of("ASR") == (4, 5)
    assert (lay.pad_id, lay.bos_id, lay.eos_id, lay.sep_id) == tuple(lay.special(n) for n in ("PAD", "BOS", "EOS", "SEP"))


@pytest.mark.parametrize("shape,first", [((4, 7), 0), ((3, 2, 9), 1), ((2, 3, 1), 0), ((5, 1, 4), 3)])
def test_acoustic_round_trip_and_levels(shape, first):
    lay = layout()
    codes = torch.randint(0, 32, shape)
    ids = lay.acoustic_to_global(codes, first_level=first)
    assert ids.shape == codes.shape
    for k in range(shape[-2]):
        lo, hi = lay.range_of(f"acoustic:{first + k}")
        level_ids = ids[..., k, :]
        assert int(level_ids.min()) >= lo and int(level_ids.max()) < hi
    assert torch.equal(lay.global_to_acoustic(ids, first_level=first), codes)
    # Reading the same ids as if they started one level higher must fail, not give wrong codes.
    if first + shape[-2] < 4:
        with pytest.raises(ValueError, match="codebook levels"):
            lay.global_to_acoustic(ids, first_level=first + 1)


def test_semantic_round_trip_and_bad_ids():
    lay = layout()
    sem = torch.randint(0, 50, (3, 11))
    g = lay.semantic_to_global(sem)
    lo, hi = lay.range_of("semantic")
    assert int(g.min()) >= lo and int(g.max()) < hi
    assert torch.equal(lay.global_to_semantic(g), sem)
    with pytest.raises(ValueError, match=r"semantic ids must lie in \[0, 50\)"):
        lay.semantic_to_global(torch.tensor([50]))
    with pytest.raises(ValueError, match="integer"):
        lay.semantic_to_global(torch.tensor([1.0]))


def test_json_round_trip_and_errors():
    lay = layout(task_tokens=("EN",))
    again = VocabLayout.from_dict(json.loads(json.dumps(lay.to_dict())))
    assert again == lay and again.vocab_size == lay.vocab_size
    with pytest.raises(ValueError, match="unknown VocabLayout keys"):
        VocabLayout.from_dict({**lay.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="both be 0"):
        VocabLayout(semantic_size=10, codebook_size=32, num_codebooks=0)
    with pytest.raises(ValueError, match="unique"):
        VocabLayout(semantic_size=10, task_tokens=("PAD",))
    with pytest.raises(ValueError, match="unknown special token"):
        lay.special("FR")
    with pytest.raises(ValueError, match="outside this layout"):
        lay.range_of("acoustic:4")


def test_semantic_only_layout():
    lay = VocabLayout(semantic_size=100)
    assert lay.vocab_size == 104 and lay.range_of("acoustic") == (104, 104)
