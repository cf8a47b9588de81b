"""Corruptions: pure, seeded, monotone in severity, one parameter table."""

import itertools

import numpy as np
import pytest

from deqstudio.core.corruptions import (
    CORRUPTIONS, IMAGE_KINDS, VECTOR_KINDS, Corruption, corrupt, describe_table, modality_key, parameter_for,
)

RNG = np.random.default_rng(0)
VECTORS = RNG.normal(size=(16, 40)).astype(np.float32) * 3 + 1
IMAGES = RNG.integers(0, 7, size=(16, 16 * 15)).astype(np.float32)
SHAPE = (16, 15)


def _run(kind, severity, seed=0, **kw):
    if kind in VECTOR_KINDS:
        return corrupt(VECTORS, "vector", kind, severity, seed, modality="m", **kw)
    return corrupt(IMAGES, "image", kind, severity, seed, modality="m", image_shape=SHAPE, **kw)


def _clean(kind):
    return VECTORS if kind in VECTOR_KINDS else IMAGES


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_severity_zero_is_identity_and_input_untouched(kind):
    before = _clean(kind).copy()
    np.testing.assert_array_equal(_run(kind, 0), before)
    _run(kind, 5)
    np.testing.assert_array_equal(_clean(kind), before)


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_deterministic_for_a_seed(kind):
    np.testing.assert_array_equal(_run(kind, 3.5, seed=7), _run(kind, 3.5, seed=7))
    if kind not in ("blur", "contrast"):
        assert not np.array_equal(_run(kind, 3.5, seed=7), _run(kind, 3.5, seed=8))


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_monotone_in_severity(kind):
    severities = np.linspace(0, 5, 21)
    distances = [np.linalg.norm(_run(kind, s, seed=3) - _clean(kind)) for s in severities]
    assert all(b >= a - 1e-4 for a, b in itertools.pairwise(distances)), distances
    assert distances[-1] > 0


@pytest.mark.parametrize("kind", ["gaussian", "mask", "impulse"])
def test_coupled_randomness_keeps_lower_severity_damage(kind):
    low, high = _run(kind, 2, seed=1), _run(kind, 4, seed=1)
    clean = _clean(kind)
    if kind == "gaussian":
        ratio = parameter_for("gaussian", 4) / parameter_for("gaussian", 2)
        np.testing.assert_allclose(high - clean, ratio * (low - clean), rtol=1e-4, atol=1e-4)
    else:
        hit_low = low != clean
        assert np.all(high[hit_low] == low[hit_low])


def test_a_sample_alone_equals_the_same_sample_in_a_batch():
    batch = corrupt(VECTORS, "vector", "gaussian", 2.5, modality="m", seed=4, sample_ids=np.arange(100, 116))
    alone = corrupt(VECTORS[5], "vector", "gaussian", 2.5, modality="m", seed=4, sample_ids=[105])
    np.testing.assert_array_equal(batch[5], alone)


@pytest.mark.parametrize("kind", IMAGE_KINDS)
@pytest.mark.parametrize("modality", ["pix", "fou"])
def test_a_sample_alone_equals_the_same_sample_in_a_batch_for_every_kind_and_modality(kind, modality):
    x, extra = (VECTORS, {}) if kind in VECTOR_KINDS else (IMAGES, {"image_shape": SHAPE})
    ids = np.arange(100, 116)
    batch = corrupt(x, "image" if extra else "vector", kind, 3.5, 9, modality=modality, sample_ids=ids,
                    pool=x, pool_ids=ids, **extra)
    for b in (0, 5, 15):
        alone = corrupt(x[b], "image" if extra else "vector", kind, 3.5, 9, modality=modality, sample_ids=[ids[b]],
                        pool=x, pool_ids=ids, **extra)
        np.testing.assert_array_equal(batch[b], alone)


def test_modality_key_is_the_crc32_of_the_name():
    assert modality_key("123456789") == 0xCBF43926  # the published CRC-32 check value
    assert modality_key("pix") != modality_key("fou")
    with pytest.raises(ValueError, match="modality"):
        modality_key(3)


def test_two_modalities_with_the_same_seed_get_independent_draws():
    n, d = 4000, 50
    ones = np.ones((n, d), np.float32)
    drop = {m: corrupt(ones, "vector", "drop", 2.5, 7, modality=m)[:, 0] == 0 for m in ("pix", "fou")}
    p = parameter_for("drop", 2.5)  # 0.5
    for m in drop:
        assert drop[m].mean() == pytest.approx(p, abs=0.03)
    # independent: both dropped with probability p² (the same stream would drop both together, p)
    assert (drop["pix"] & drop["fou"]).mean() == pytest.approx(p * p, abs=0.03)
    mask = {m: corrupt(ones, "vector", "mask", 4, 7, modality=m) == 0 for m in ("pix", "fou")}
    q = parameter_for("mask", 4)
    assert (mask["pix"] & mask["fou"]).mean() == pytest.approx(q * q, abs=0.01)
    zeros = np.zeros((n, d), np.float32)
    noise = {m: corrupt(zeros, "vector", "gaussian", 3, 7, modality=m).ravel() for m in ("pix", "fou")}
    assert abs(np.corrcoef(noise["pix"], noise["fou"])[0, 1]) < 0.01  # 200,000 pairs: |r| ~ 0.002 if independent
    # the key is the name, not the position: the same name gets the same draws
    np.testing.assert_array_equal(corrupt(ones, "vector", "mask", 4, 7, modality="pix") == 0, mask["pix"])


@pytest.mark.parametrize("kind", ["mask", "drop", "impulse"])
@pytest.mark.parametrize("modality", ["pix", "fou", ""])
def test_a_higher_severity_never_undoes_a_lower_one_in_any_modality(kind, modality):
    x, extra = (IMAGES, {"image_shape": SHAPE}) if kind == "impulse" else (VECTORS, {})
    mk = "image" if extra else "vector"
    runs = [corrupt(x, mk, kind, s, 2, modality=modality, **extra) for s in (1, 2.5, 4, 5)]
    for low, high in itertools.pairwise(runs):
        hit = low != x
        assert np.all(high[hit] == low[hit])


def test_parameters_follow_the_table_and_interpolate():
    assert parameter_for("impulse", 1) == 0.03 and parameter_for("impulse", 5) == 0.27
    assert parameter_for("impulse", 3.5) == pytest.approx((0.09 + 0.17) / 2)
    assert parameter_for("contrast", 0) == 1.0 and parameter_for("contrast", 0.5) == pytest.approx(0.7)
    rows = describe_table()
    assert [r["kind"] for r in rows] == list(CORRUPTIONS)
    assert rows[0]["severity_3"] == CORRUPTIONS["gaussian"].levels[2]


def test_gaussian_std_is_in_feature_std_units():
    x = np.zeros((1, 20000), np.float32)
    out = corrupt(x, "vector", "gaussian", 3, modality="m", seed=0, feature_std=4.0)
    assert out.std() == pytest.approx(1.0 * 4.0, rel=0.03)


def test_drop_and_mask_and_shuffle_semantics():
    assert np.all(_run("drop", 5) == 0)
    frac = np.mean(corrupt(np.ones((1, 20000)), "vector", "mask", 4, modality="m", seed=0) == 0)
    assert frac == pytest.approx(0.5, abs=0.02)
    shuffled = _run("shuffle", 5)
    for b in range(len(VECTORS)):
        matches = [j for j in range(len(VECTORS)) if np.array_equal(shuffled[b], VECTORS[j])]
        assert matches and matches[0] != b
    pool = VECTORS[:4]
    alone = corrupt(VECTORS[2], "vector", "shuffle", 5, modality="m", seed=0, sample_ids=[2], pool=pool, pool_ids=[0, 1, 2, 3])
    assert any(np.array_equal(alone, pool[j]) for j in (0, 1, 3))


def test_image_kinds_keep_shape_and_range():
    out = _run("impulse", 5)
    assert out.shape == IMAGES.shape and out.min() >= 0 and out.max() <= 6
    blurred = _run("blur", 5)
    assert blurred.std() < IMAGES.std()
    np.testing.assert_allclose(blurred.mean(axis=1), IMAGES.mean(axis=1), rtol=0.05)


@pytest.mark.parametrize("call, message", [
    (lambda: corrupt(VECTORS, "vector", "blur", 1, modality="m"), "image modalities only"),
    (lambda: corrupt(VECTORS, "vector", "fog", 1, modality="m"), "unknown corruption kind 'fog'"),
    (lambda: corrupt(VECTORS, "vector", "gaussian", 6, modality="m"), "severity must be from 0 to 5"),
    (lambda: corrupt(VECTORS, "vector", "gaussian", float("nan"), modality="m"), "severity"),
    (lambda: corrupt(IMAGES, "image", "blur", 1, modality="m", image_shape=(15, 15)), "image_shape"),
    (lambda: corrupt(VECTORS, "text", "gaussian", 1, modality="m"), "unknown modality kind"),
    (lambda: corrupt(VECTORS[0], "vector", "shuffle", 5, modality="m"), "other sample"),
])
def test_bad_arguments_are_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_spec_parses_and_prints():
    modality, spec = Corruption.parse("pix=gaussian:3@7")
    assert (modality, spec.kind, spec.severity, spec.seed) == ("pix", "gaussian", 3.0, 7)
    assert spec.text(modality) == "pix=gaussian:3@7"
    assert Corruption.parse(" fou = mask : 2.5 ")[1].severity == 2.5
    assert spec.to_dict()["parameter"] == 1.0
    assert spec.active and not Corruption("mask").active
    assert spec.label() == "gaussian 3 (noise std 1)"
    assert Corruption.from_dict(spec.to_dict()) == spec
    for bad in ("pix", "pix=gaussian", "pix=gaussian:x", "pix=fog:2", "pix=gaussian:9", "pix=gaussian:2@-1"):
        with pytest.raises(ValueError):
            Corruption.parse(bad)
