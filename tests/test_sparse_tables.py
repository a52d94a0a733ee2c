"""The ray engine's sparse id tables (recbole_lda/quick_start/stream_model.py, lazy_adam.py):
2 workers with sparse tables take the step of 1 with dense ones, lazy Adam takes
torch.optim.SparseAdam's steps, and the refusals of `sparse_embeddings`."""

import pytest
import torch

from recbole_lda.quick_start import partitions as parts
from recbole_lda.quick_start import stream_model as sm
from recbole_lda.quick_start.lazy_adam import LazyAdam, coalesce
from stream_helpers import case, run_steps, write_streamed


def test_sparse_id_tables_take_the_step_of_dense_ones(tmp_path):
    """Sparse id tables (SGD steps exactly as on dense gradients): 2 workers on half batches with
    sparse tables take the step of 1 worker with dense tables on the whole batch, for a model
    with the id tables in its backbone (VR), one with its own statistics (D2Q) and LDA without OT;
    and only the rows of the batch move."""
    folder = write_streamed(str(tmp_path / "data"), rows=800, users=30, items=40)
    dense = {"VR": case(folder, "VR"), "D2Q": case(folder, "D2Q"),
             "LDA-no-OT": case(folder, "LDA", lambda_ot=0.0, epochs=1)}
    batch = parts.read_piece(parts.pieces(folder, "train")[0], list(sm.INPUT_COLUMNS))
    batch = {c: v[:64] for c, v in batch.items()}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    one = run_steps(1, dense, batch, tmp_path / "one")
    two = run_steps(2, {name: (*c, True) for name, c in dense.items()}, batch, tmp_path / "two")
    table = "backbone.embeddings.item_id.weight"
    for name in dense:
        initial, whole = dense[name][3], one[name][0]
        moved = torch.nonzero((whole[table] != initial[table]).any(1)).flatten().tolist()
        assert moved == sorted(set((batch["item_index"] + 1).tolist())), name  # the batch's rows, no other
        for rank in range(2):
            for key, value in whole.items():
                assert torch.allclose(two[name][rank][key].double(), value.double(), rtol=0, atol=1e-6), (name, rank, key)


def test_sparse_embeddings_resolution_and_refusals():
    """`sparse_embeddings: ~` is on wherever it can be, and an explicit True is refused (one line
    naming the key) with a GPU, a learner without a sparse form, or weight decay."""
    base = {"sparse_embeddings": None, "use_gpu": False, "learner": "adam", "weight_decay": 0.0}
    assert sm.sparse_embeddings(base) is True
    for change, words in (({"use_gpu": True}, "use_gpu=True"), ({"learner": "rmsprop"}, "learner=rmsprop"),
                          ({"weight_decay": 0.01}, "weight_decay=0.01")):
        assert sm.sparse_embeddings({**base, **change}) is False
        with pytest.raises(ValueError, match=f"--sparse_embeddings=True does not work with {words}"):
            sm.sparse_embeddings({**base, **change, "sparse_embeddings": True})
    assert sm.sparse_embeddings({**base, "sparse_embeddings": False}) is False


def test_lazy_adam_takes_torch_sparse_adams_steps():
    """LazyAdam (index operations) against torch.optim.SparseAdam: the same weights and moments,
    bit for bit, over steps whose batches repeat rows, skip rows and hold no row of a table."""
    weights = {}
    for optimizer_class in (torch.optim.SparseAdam, LazyAdam):
        torch.manual_seed(0)
        tables = [torch.nn.Embedding(500, 8, sparse=True), torch.nn.Embedding(40, 4, sparse=True)]
        optimizer = optimizer_class([t.weight for t in tables], lr=0.01, betas=(0.8, 0.95))
        rng = torch.Generator().manual_seed(1)
        for step in range(6):
            optimizer.zero_grad()
            loss = (tables[0](torch.randint(0, 60, (200,), generator=rng)) ** 2).sum()
            if step % 3:  # the second table is in some batches only
                loss = loss + tables[1](torch.randint(0, 40, (50,), generator=rng)).sum()
            loss.backward()
            optimizer.step()
        state = optimizer.state_dict()["state"]
        weights[optimizer_class] = [t.weight.detach().clone() for t in tables] + [
            state[k][m] for k in (0, 1) for m in ("exp_avg", "exp_avg_sq")] + [state[1]["step"]]
    lazy, reference = weights[LazyAdam], weights[torch.optim.SparseAdam]
    assert all(torch.equal(a, b) if torch.is_tensor(a) else a == b for a, b in zip(lazy, reference))
    assert torch.equal(lazy[0][60:], reference[0][60:]) and lazy[-1] == 4  # rows never in a batch keep their values


def test_coalesce_sums_duplicate_rows():
    grad = torch.sparse_coo_tensor(torch.tensor([[5, 1, 5, 3, 1]]), torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]]), (7, 1),
                                   check_invariants=True)
    out = coalesce(grad)
    assert out.is_coalesced() and out._indices().tolist() == [[1, 3, 5]] and out._values().tolist() == [[7.0], [4.0], [4.0]]
    assert torch.equal(out.to_dense(), grad.to_dense())


def test_sparse_adam_is_lazy_and_its_state_round_trips(tmp_path):
    """With learner adam the id tables step with lazy Adam (rows outside the batch keep their
    values and have no moments), the other parameters with Adam; the pair's state dict loads back."""
    folder = write_streamed(str(tmp_path / "data"), rows=800, users=30, items=40)
    model_name, hyper, fields, state = case(folder, "VR", learner="adam")
    config = sm.worker_config(hyper)
    model = sm.worker_model(model_name, hyper, fields, state)
    optimizer = sm.make_optimizer(model, config, sparse=True)
    assert isinstance(optimizer.parts["sparse"], LazyAdam)
    assert isinstance(optimizer.parts["dense"], torch.optim.Adam)
    tables = sm.id_tables(model, config)
    assert sorted(tables) == ["backbone.embeddings.item_id", "backbone.embeddings.user_id"]
    assert all(t.sparse for t in tables.values())
    batch = parts.read_piece(parts.pieces(folder, "train")[0], list(sm.INPUT_COLUMNS))
    batch = {c: v[:32] for c, v in batch.items()}
    from recbole_lda.quick_start import data_parallel as dp

    for _ in range(3):
        dp.train_step(dp.wrap(model, 1), optimizer, sm.to_interaction(batch, config))
    weight = model.state_dict()["backbone.embeddings.item_id.weight"]
    in_batch = sorted(set((batch["item_index"] + 1).tolist()))
    outside = [r for r in range(weight.shape[0]) if r not in in_batch]
    assert torch.equal(weight[outside], state["backbone.embeddings.item_id.weight"][outside])
    assert not torch.equal(weight[in_batch], state["backbone.embeddings.item_id.weight"][in_batch])
    saved = optimizer.state_dict()
    again = sm.make_optimizer(sm.worker_model(model_name, hyper, fields, state), config, sparse=True)
    again.load_state_dict(saved)
    assert again.state_dict()["sparse"]["state"][0]["step"] == saved["sparse"]["state"][0]["step"]
