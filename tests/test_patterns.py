import pytest
import torch

from soundlm import patterns as P
from soundlm.vocab import VocabLayout

LAYOUT = VocabLayout(semantic_size=40, codebook_size=16, num_codebooks=6)


def random_shapes(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        yield tuple(int(v) for v in (torch.randint(1, 4, (1,), generator=g)[0], torch.randint(1, 7, (1,), generator=g)[0],
                                     torch.randint(1, 30, (1,), generator=g)[0]))


def test_flatten_is_frame_major_and_inverts():
    codes = torch.arange(6).view(1, 2, 3) % 16  # [B, K, T]
    flat = P.flatten_frames(codes, LAYOUT)
    expected = [LAYOUT.level_to_global(codes[0, t % 2, t // 2], t % 2).item() for t in range(6)]
    assert flat[0].tolist() == expected
    for b, k, t in random_shapes(20, 0):
        c = torch.randint(0, 16, (b, k, t))
        first = int(torch.randint(0, 6 - k + 1, (1,)))
        assert torch.equal(P.unflatten_frames(P.flatten_frames(c, LAYOUT, first), LAYOUT, k, first), c)


def test_semantic_and_coarse_round_trip():
    for b, k, t in random_shapes(15, 1):
        sem = torch.randint(0, 40, (b, t + 3))
        coarse = torch.randint(0, 16, (b, k, t))
        s = P.semantic_sequence(sem, LAYOUT)
        assert s.tokens[:, 0].eq(LAYOUT.bos_id).all() and s.tokens[:, -1].eq(LAYOUT.eos_id).all()
        assert torch.equal(LAYOUT.global_to_semantic(s.tokens[:, 1:-1]), sem)
        seq = P.coarse_sequence(sem, coarse, LAYOUT)
        assert seq.tokens.shape == (b, 1 + (t + 3) + 1 + k * t + 1) and seq.prefix_len == t + 5
        assert seq.tokens[:, seq.prefix_len - 1].eq(LAYOUT.sep_id).all()
        parts = P.split_coarse_sequence(seq.tokens, LAYOUT, k)
        assert torch.equal(parts.semantic, sem) and torch.equal(parts.coarse, coarse)
        # A generation cut mid-frame (no EOS) drops the incomplete frame.
        cut = P.split_coarse_sequence(seq.tokens[:, :-2], LAYOUT, k)
        assert torch.equal(cut.coarse, coarse[:, :, : (k * t - 1) // k])


def test_fine_windows_round_trip():
    for b, k, t in random_shapes(15, 2):
        k = max(k, 2)
        codes = torch.randint(0, 16, (b, k, t))
        qc = int(torch.randint(1, k, (1,)))
        window = int(torch.randint(1, 8, (1,)))
        wins = P.fine_windows(codes, LAYOUT, qc, window)
        assert len(wins) == -(-t // window)
        for w, (s, e) in zip(wins, P.window_bounds(t, window)):
            assert w.prefix_len == 2 + qc * (e - s)
            # the prompt part is exactly the window's coarse codes
            assert torch.equal(P.fine_sequence(codes[:, :qc, s:e], None, LAYOUT).tokens, w.tokens[:, :w.prefix_len])
        back = P.fine_windows_to_codes([w.tokens for w in wins], LAYOUT, qc, k - qc)
        assert torch.equal(back, codes)


def test_allowed_range_follows_levels():
    seq = P.coarse_sequence(torch.randint(0, 40, (1, 5)), torch.randint(0, 16, (1, 3, 4)), LAYOUT)
    allowed = P.acoustic_allowed_fn(LAYOUT, start=seq.prefix_len, num_levels=3)
    for pos in range(seq.prefix_len, seq.tokens.shape[1] - 1):  # all but EOS
        lo, hi = allowed(pos)
        assert lo <= int(seq.tokens[0, pos]) < hi
    fine_allowed = P.acoustic_allowed_fn(LAYOUT, start=10, num_levels=3, first_level=3)
    assert fine_allowed(10) == LAYOUT.range_of("acoustic:3") and fine_allowed(15) == LAYOUT.range_of("acoustic:5")
    with pytest.raises(ValueError, match="before the acoustic segment"):
        allowed(0)
    mask = P.semantic_allowed_mask(LAYOUT)
    assert mask.sum() == 41 and mask[LAYOUT.eos_id] and not mask[LAYOUT.sep_id]


def test_delay_pattern_round_trip_and_shape():
    codes = torch.tensor([[[1, 2, 3], [4, 5, 6]]])
    d = P.delay_codes(codes, pad_id=16)
    assert d.tolist() == [[[1, 2, 3, 16], [16, 4, 5, 6]]]
    for b, k, t in random_shapes(20, 3):
        c = torch.randint(0, 16, (b, k, t))
        d = P.delay_codes(c, 16)
        assert d.shape == (b, k, t + k - 1)
        valid = P.delay_valid_mask(k, t)
        assert torch.equal(d != 16, valid.expand_as(d))
        assert torch.equal(P.undelay_codes(d), c)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="whole frames"):
        P.unflatten_frames(torch.zeros(1, 5, dtype=torch.long) + LAYOUT.acoustic_offset, LAYOUT, 2)
    with pytest.raises(ValueError, match=r"\[B, K, T\]"):
        P.flatten_frames(torch.zeros(3, 4, dtype=torch.long), LAYOUT)
    with pytest.raises(ValueError, match="exactly one SEP"):
        P.split_coarse_sequence(torch.ones(2, 6, dtype=torch.long), LAYOUT, 2)
    with pytest.raises(ValueError, match="num_coarse"):
        P.fine_windows(torch.zeros(1, 3, 4, dtype=torch.long), LAYOUT, 3, 2)
    with pytest.raises(ValueError, match="window_frames"):
        P.window_bounds(10, 0)
