"""UDML components against hand computations."""

import math

import pytest
import torch

from deqstudio.core import udml


def test_weights_match_a_hand_computation():
    alpha = torch.tensor([2.0, 1.0, 4.0])
    s = torch.tensor([1.0, 3.0, 0.5])
    # u = 1/(s·α) = [0.5, 1/3, 0.5]; Σu = 4/3; w = 3·u/Σu = [1.125, 0.75, 1.125]
    w = udml.udml_weights(alpha, s)
    torch.testing.assert_close(w, torch.tensor([1.125, 0.75, 1.125]))
    assert math.isclose(float(w.sum()), 3.0, rel_tol=1e-6)


def test_dependency_only_weights_and_batch_broadcast():
    alpha = torch.tensor([1.0, 2.0])
    torch.testing.assert_close(udml.udml_weights(alpha), torch.tensor([4 / 3, 2 / 3]))
    scores = torch.tensor([[1.0, 1.0], [1.0, 2.0]])
    w = udml.udml_weights(alpha.expand(2, 2), scores)
    torch.testing.assert_close(w[1], torch.tensor([1.6, 0.4]))
    torch.testing.assert_close(w.sum(dim=1), torch.tensor([2.0, 2.0]))


def test_residual_weights_scale_features():
    feats = [torch.ones(2, 3), 2 * torch.ones(2, 3)]
    out = udml.apply_residual_weights(feats, torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(out[0], 1.5 * torch.ones(2, 3))
    torch.testing.assert_close(out[1], 5.0 * torch.ones(2, 3))


def test_kl_to_noise_prior_matches_closed_form_and_torch_distributions():
    mu = torch.tensor([[0.3, -1.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.2, -0.5]], dtype=torch.float64)
    tau = torch.tensor([3.0], dtype=torch.float64)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.sqrt(tau).expand_as(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(dim=-1)
    torch.testing.assert_close(udml.kl_to_noise_prior(mu, logvar, tau), expected)


def test_noise_predictor_is_positive_and_detaches_its_input():
    torch.manual_seed(0)
    pred = udml.NoisePredictor(8)
    logvar = torch.randn(4, 8, requires_grad=True)
    sigma_hat = pred(logvar)
    assert sigma_hat.shape == (4,) and (sigma_hat > 0).all()
    udml.noise_loss(sigma_hat, torch.tensor([1, 2, 3, 4])).backward()
    assert logvar.grad is None
    assert pred.net[0].weight.grad is not None


def test_noise_levels_are_per_sample_and_per_modality_with_half_the_samples_clean_in_every_modality():
    g = torch.Generator().manual_seed(0)
    tau = udml.sample_noise_levels(64, 3, g)
    assert tau.shape == (64, 3) and tau.dtype == torch.long
    all_clean = (tau == 1).all(dim=1)
    # exactly half are kept clean; a noisy sample is clean in all three by chance with probability 1/11³
    assert 32 <= int(all_clean.sum()) <= 33
    # many draws of odd sizes: the expected all-clean fraction is 1/2 + (1/2)·(1/11)³ for any batch size
    draws = [udml.sample_noise_levels(b, 3, g) for b in (1, 7, 13) for _ in range(1500)]
    rows = torch.cat(draws)
    expected = 0.5 + 0.5 / 11**3
    assert float((rows == 1).all(dim=1).float().mean()) == pytest.approx(expected, abs=0.015)
    # noisy samples draw each modality independently and uniformly on 1..11 (as the released code does)
    noisy = rows[~(rows == 1).all(dim=1)]
    for m in range(3):
        counts = torch.bincount(noisy[:, m], minlength=12)[1:].float() / len(noisy)
        torch.testing.assert_close(counts, torch.full((11,), 1 / 11), atol=0.012, rtol=0)
    assert float((noisy[:, 0] == noisy[:, 1]).float().mean()) == pytest.approx(1 / 11, abs=0.015)
    assert udml.sample_noise_levels(10, 2, g, clean_fraction=1.0).eq(1).all()
    with pytest.raises(ValueError, match="clean_fraction"):
        udml.sample_noise_levels(4, 2, g, clean_fraction=1.5)


def test_noise_injection():
    g = torch.Generator().manual_seed(0)
    assert float(udml.noise_std_for_level(1)) == 0.0
    x = torch.zeros(3, 5000)
    noisy = udml.inject_noise(x, torch.tensor([1, 6, 11]), torch.full((5000,), 2.0), generator=g)
    assert float(noisy[0].abs().max()) == 0.0
    assert noisy[1].std().item() == pytest.approx(2.0 * 1.0, rel=0.05)
    assert noisy[2].std().item() == pytest.approx(2.0 * 2.0, rel=0.05)


def test_reparameterize_only_samples_in_training():
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    assert torch.equal(udml.reparameterize(mu, logvar, training=False), mu)
    assert not torch.equal(udml.reparameterize(mu, logvar, training=True), mu)


def test_progressive_schedule():
    phases = [udml.udml_phase(e, 40) for e in range(40)]
    assert phases[:20] == ["clean"] * 20
    assert phases[20:24] == ["dependency"] * 4
    assert phases[24:] == ["uncertainty"] * 16


@pytest.mark.parametrize("total", range(1, 51))
def test_every_schedule_length_has_all_three_phases_or_is_refused_naming_the_minimum(total):
    if total < 3:
        with pytest.raises(ValueError, match="at least 3 epochs"):
            udml.udml_phase(0, total)
        with pytest.raises(ValueError, match="at least 3 epochs"):
            udml.check_epochs(total)
        return
    phases = [udml.udml_phase(e, total) for e in range(total)]
    clean, dependency = total // 2, max(total // 10, 1)  # first half clean, next tenth (at least one) dependency
    assert phases == ["clean"] * clean + ["dependency"] * dependency + ["uncertainty"] * (total - clean - dependency)
    assert all(phases.count(p) >= 1 for p in udml.PHASES)
    assert udml.phase_lengths(total) == tuple(phases.count(p) for p in udml.PHASES)
    with pytest.raises(ValueError, match="outside"):
        udml.udml_phase(total, total)


def test_baseline_scores():
    logvar = torch.log(torch.tensor([[1.0, 3.0]]))
    torch.testing.assert_close(udml.pe_score(logvar), torch.tensor([2.0]))
    logits = torch.tensor([[0.0, math.log(3.0)]])
    torch.testing.assert_close(udml.energy_score(logits), torch.tensor([-math.log(4.0)]))


def test_auxiliary_loss_is_gamma_times_the_sum():
    y = torch.tensor([0, 1])
    logits = [torch.zeros(2, 2), torch.zeros(2, 2)]
    torch.testing.assert_close(udml.auxiliary_unimodal_loss(logits, y, gamma=4.0), torch.tensor(8 * math.log(2.0)))
