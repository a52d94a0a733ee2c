"""Checkpoints carry every statistic a model derived from its training data.

A model's state dict is loaded into a model of the same class built from DIFFERENT training
data (every label and duration scaled: each statistic changes, no shape does). If a
statistic were kept as a plain attribute instead of a saved buffer, the receiving model
would keep its own value and predict differently; rebuilding from the same data (the older
test) would recompute the same value and never notice.
"""

import pytest
import torch

from pinning_helpers import LDA_SMALL, build, write_toy

MODELS = ["VR", "WLR", "D2Q", "OR", "CWM", "TPM", "LDA"]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return (write_toy(tmp_path_factory.mktemp("ckpt_a")),
            write_toy(tmp_path_factory.mktemp("ckpt_b"), label_scale=1.7, duration_scale=1.3))


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_restores_a_model_trained_on_other_data(name, roots):
    extra = LDA_SMALL if name == "LDA" else {}
    source, _, test = build(name, roots[0], **extra)
    target, _, _ = build(name, roots[1], **extra)
    source.eval()
    target.eval()
    inter = test.inter_feat
    buffers = dict(source.named_buffers())
    differs = [k for k, v in target.state_dict().items() if k in buffers and not torch.equal(v, buffers[k])]
    assert any(k.startswith("backbone.") for k in differs)  # the two models really saw different data
    if name not in ("CWM",):  # CWM derives nothing from labels
        assert any(not k.startswith("backbone.") for k in differs), differs
    with torch.no_grad():
        before = target.predict(inter).clone()
        target.load_state_dict(source.state_dict())
        expected = source.predict(inter)
        if name != "CWM":  # CWM's untrained predictions are clipped at the duration, equal for both
            assert not torch.allclose(before, expected)
        torch.testing.assert_close(target.predict(inter), expected)
        loss_a, loss_b = source.calculate_loss(inter), target.calculate_loss(inter)
    parts_a = loss_a if isinstance(loss_a, tuple) else (loss_a,)
    parts_b = loss_b if isinstance(loss_b, tuple) else (loss_b,)
    if name == "LDA":  # the OT targets depend on the solver's float32 path: compare the regression part only
        parts_a, parts_b = parts_a[:1], parts_b[:1]
    for a, b in zip(parts_a, parts_b):
        torch.testing.assert_close(b, a)
