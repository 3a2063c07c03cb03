import pytest

from seqpo.rl.reward import advantages, group_normalize, hierarchical_rewards, seqpo_rewards


def test_group_normalize_hand_case():
    # mean 2, sample std 1
    assert group_normalize([1.0, 2.0, 3.0]) == pytest.approx([-1.0, 0.0, 1.0])
    assert group_normalize([5.0, 5.0]) == [0.0, 0.0]
    assert group_normalize([7.0]) == [0.0]


def test_seqpo_reward_paper_order():
    q = [1.0, 2.0, 3.0]  # z = -1, 0, 1
    lat = [2.0, 4.0, 6.0]  # z = -1, 0, 1 ; truncated at m=1 -> 1, 1, 1
    assert seqpo_rewards(q, lat, chunk=1) == pytest.approx([-3.0, -1.0, 1.0])
    # without truncation the fast rollout gains: r = 2q - z(L)
    assert seqpo_rewards(q, lat, chunk=1, truncate=False) == pytest.approx([-1.0, 0.0, 1.0])
    # with m = 0 the truncation clips only negative z-scores
    assert seqpo_rewards(q, lat, chunk=0) == pytest.approx([-2.0, 0.0, 1.0])


def test_seqpo_reward_truncate_first_and_unnormalized():
    q = [0.5, 0.5]
    lat = [0.5, 3.0]  # raw AL; truncate-first clips 0.5 -> 1 word
    assert seqpo_rewards(q, lat, chunk=1, normalize=False, order="truncate-first") == pytest.approx([0.0, -2.0])
    r = seqpo_rewards([1.0, 1.0, 1.0], [-3.0, 0.5, 2.0], chunk=1, order="truncate-first")
    # clipped latencies 1, 1, 2 -> mean 4/3, sd 0.577 -> z = -0.577, -0.577, 1.155; q has no spread
    assert r == pytest.approx([0.57735, 0.57735, -1.1547], abs=1e-4)


def test_hierarchical_quality_first():
    r = hierarchical_rewards([40.0, 60.0, 80.0], [1.0, 8.0, 2.0], [10, 10, 10], threshold=50)
    assert r == pytest.approx([-0.2, 0.2, 0.8])
    assert r[0] < min(r[1:])  # below the bar loses to every rollout above it, however fast


def test_advantages_shared_and_zero_mean():
    adv = advantages([1.0, 3.0, 5.0, 7.0, 9.0])
    assert sum(adv) == pytest.approx(0.0)
    assert adv[-1] > adv[0]


def test_bad_inputs():
    with pytest.raises(ValueError):
        seqpo_rewards([1.0], [1.0, 2.0], chunk=1)
    with pytest.raises(ValueError):
        hierarchical_rewards([1.0], [1.0], [1], threshold=0)


def test_speech_episodes_reward_in_ms():
    from seqpo.rl.reward import reward_latency
    from seqpo.stream import Episode, Step

    def speech(written_at):  # 4 s of audio; target characters written at these audio times (ms)
        steps = [Step(read=i + 1, written="字" * n, audio_ms=t) for i, (t, n) in enumerate(written_at)]
        return Episode("a b c d", "word", "char", steps, audio_span=(1000.0, 5000.0))

    fast = speech([(2000.0, 2), (3000.0, 2)])  # delays 1000, 1000, 2000, 2000 ms from the span start
    slow = speech([(5000.0, 4)])
    # AL with |Y| = 4 over 4000 ms: one char per 1000 ms -> mean(1000-0, 1000-1000, 2000-2000, 2000-3000) = 0
    assert reward_latency(fast, 4) == (pytest.approx(0.0), 4000.0)
    assert reward_latency(slow, 4) == (pytest.approx(4000.0), 4000.0)  # tau = 1: the whole utterance
    assert reward_latency(speech([(2000.0, 0)]), 4) == (4000.0, 4000.0)  # wrote nothing
    lat, src = zip(*(reward_latency(e, 4) for e in (fast, slow)))
    # both clear the quality bar: 1 - AL/|X| in ms
    assert hierarchical_rewards([60.0, 60.0], lat, src, threshold=50) == pytest.approx([1.0, 0.0])
    # fused reward, truncation floor of one 500 ms audio chunk before normalising
    assert seqpo_rewards([1.0, 1.0], lat, chunk=500.0, order="truncate-first") == pytest.approx([0.70711, -0.70711], abs=1e-4)
    text = Episode("a b c d", "word", "char", [Step(read=2, written="字字"), Step(read=4, written="字字")])
    # text stays in source words: mean(2-0, 2-1, 4-2) with tau = 3
    assert reward_latency(text, 4) == (pytest.approx(5 / 3), 4.0)
