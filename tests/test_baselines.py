"""The baselines: graph operators against hand-computed graphs, shapes, parameter counts in
the range of each paper's configuration, and one optimisation step on real data."""
import numpy as np
import pytest
import torch

from baselines.astgcn import ChebConvWithAttention, chebyshev_polynomials, scaled_laplacian
from baselines.bigst import linear_kernel, orthogonal_random_matrix, random_feature_map
from baselines.stsgcn import STSGCM, localized_adjacency
from bench.execution.train import training_loss
from bench.protocol import registry
from bench.protocol.split import H_IN, H_OUT, prepare

PATH3 = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=np.float32)    # path graph 0 - 1 - 2


def test_astgcn_scaled_laplacian_and_chebyshev_polynomials_on_a_path_graph():
    lap = scaled_laplacian(PATH3)            # L = D - A has eigenvalues 0, 1, 3 -> L~ = 2L/3 - I
    np.testing.assert_allclose(lap, np.array([[-1, -2, 0], [-2, 1, -2], [0, -2, -1]]) / 3, atol=1e-12)
    t = chebyshev_polynomials(lap, 3)
    np.testing.assert_allclose(t[0], np.eye(3))
    np.testing.assert_allclose(t[2], np.array([[1, 0, 8], [0, 9, 0], [8, 0, 1]]) / 9, atol=1e-12)
    hadamard = chebyshev_polynomials(lap, 3, "hadamard")   # the official code's element-wise recurrence
    np.testing.assert_allclose(hadamard[2], np.array([[-7, 8, 0], [8, -7, 8], [0, 8, -7]]) / 9, atol=1e-12)
    with pytest.raises(ValueError, match="at least one edge"):
        scaled_laplacian(np.zeros((3, 3)))


def test_astgcn_chebyshev_convolution_by_hand():
    polys = torch.tensor(chebyshev_polynomials(scaled_laplacian(PATH3), 3), dtype=torch.float32)
    conv = ChebConvWithAttention(polys, 1, 1)
    with torch.no_grad():
        conv.theta.fill_(1.0)
    x = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)                  # [B, N, F, T]
    out = conv(x, torch.ones(1, 3, 3))                                     # S = 1: plain sum_k T_k^T x
    torch.testing.assert_close(out.reshape(3), torch.tensor([19 / 9, 2.0, 17 / 9]))
    s = torch.zeros(1, 3, 3)
    s[0, 0, 2] = 1.0                                                       # attention keeps edge 0 -> 2 only
    out = conv(x, s)             # node 2 gets (T_0 + T_1 + T_2)[0, 2] * x_0 = (0 + 0 + 8/9) * 1
    torch.testing.assert_close(out.reshape(3), torch.tensor([0.0, 0.0, 8 / 9]))


def test_astgcn_chebyshev_convolution_equals_torch_geometric_chebconv_without_attention():
    """With S = 1 the attention-free part is torch-geometric's ChebConv on L = D - A with the exact
    lambda_max (ChebConv has no hook for the attention that multiplies each T_k, hence our layer)."""
    from torch_geometric.nn import ChebConv
    from torch_geometric.utils import dense_to_sparse

    adj = np.array([[0, 2, 0, 1], [2, 0, 1, 0], [0, 1, 0, 3], [1, 0, 3, 0]], dtype=np.float32)
    lap = np.diag(adj.sum(1)) - adj
    lam = float(np.linalg.eigvalsh(lap).max())
    ours = ChebConvWithAttention(torch.tensor(chebyshev_polynomials(scaled_laplacian(adj), 3), dtype=torch.float32), 2, 5)
    theirs = ChebConv(2, 5, K=3, normalization=None, bias=False)
    torch.manual_seed(0)
    with torch.no_grad():
        ours.theta.normal_()
        for k, lin in enumerate(theirs.lins):
            lin.weight.copy_(ours.theta[k].T)
    x = torch.randn(4, 2)                                                   # [N, F_in]
    edge_index, weight = dense_to_sparse(torch.tensor(adj))
    expected = torch.relu(theirs(x, edge_index, weight, lambda_max=torch.tensor(lam)))
    got = ours(x.reshape(1, 4, 2, 1), torch.ones(1, 4, 4))[0, :, :, 0]     # [B, N, F, T] -> [N, F_out]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_stsgcn_localized_graph_of_two_nodes():
    adj = localized_adjacency(np.array([[0, 1], [0, 0]]))     # one directed edge: made symmetric
    expected = np.array([[1, 1, 1, 0, 0, 0],                  # index = step * N + node
                         [1, 1, 0, 1, 0, 0],
                         [1, 0, 1, 1, 1, 0],
                         [0, 1, 1, 1, 0, 1],
                         [0, 0, 1, 0, 1, 1],
                         [0, 0, 0, 1, 1, 1]], dtype=np.float32)
    np.testing.assert_array_equal(adj, expected)


def test_stsgcn_module_crops_the_middle_step_and_takes_the_max():
    module = STSGCM(1, 2)
    with torch.no_grad():                                      # GLU with lhs = h, gate sigmoid(0) = 1/2
        for fc in module.fcs:
            fc.weight.copy_(torch.tensor([[1.0], [0.0]]))
            fc.bias.zero_()
    adj = torch.tensor(localized_adjacency(PATH3))
    h = torch.arange(9, dtype=torch.float32).reshape(1, 9, 1)   # steps 0..2 of nodes 0..2
    first = 0.5 * (adj @ h)
    second = 0.5 * (adj @ first)
    expected = torch.maximum(first[:, 3:6], second[:, 3:6])
    torch.testing.assert_close(module(h, adj), expected)
    # node 1 at the middle step: itself (4), nodes 0 and 2 (3, 5), itself at steps 0 and 2 (1, 7)
    assert first[0, 4, 0].item() == 0.5 * (4 + 3 + 5 + 1 + 7)


def test_bigst_linearized_convolution_by_hand_and_against_softmax_attention():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    k = torch.tensor([[[1.0, 1.0], [2.0, 0.0]]])
    h = torch.tensor([[[1.0], [3.0]]])
    # node 0: weights q0.k = (1, 2) -> (1 * 1 + 2 * 3) / 3; node 1: weights (1, 0) -> 1
    torch.testing.assert_close(linear_kernel(q, k, h), torch.tensor([[[7 / 3], [1.0]]]))
    gen = torch.Generator().manual_seed(0)
    qv, kv = torch.randn(1, 5, 4, generator=gen) * 0.5, torch.randn(1, 5, 4, generator=gen) * 0.5
    w = orthogonal_random_matrix(16384, 4, gen)
    attention = linear_kernel(random_feature_map(qv, w, True), random_feature_map(kv, w, False), torch.eye(5)[None])
    exact = torch.softmax(qv @ kv.transpose(1, 2) / 2.0, dim=-1)          # exp(q . k / sqrt(d)), d = 4
    torch.testing.assert_close(attention, exact, atol=0.03, rtol=0)


def build(name, data, **changes):
    split, scaler, parts = prepare(data, 0.4)
    info = registry.ModelInfo.of(data, scaler, H_IN, H_OUT)
    torch.manual_seed(0)
    entry = registry.get(name)
    return entry.cls(entry.config(**changes), info), parts


@pytest.mark.parametrize("name,low,high", [("astgcn", 200_000, 260_000), ("stsgcn", 1_300_000, 1_700_000),
                                            ("bigst", 100_000, 160_000), ("st-mlp", 22_000_000, 28_000_000),
                                            ("stwa", 250_000, 320_000), ("easyst", 850_000, 1_000_000)])
def test_parameter_counts_match_the_papers_configuration(taxi, name, low, high):
    model, _ = build(name, taxi)                                           # N = 200, C = 2
    assert low <= sum(p.numel() for p in model.parameters()) <= high


def test_stwa_samples_its_latents_at_test_as_the_official_code(taxi_small):
    model, parts = build("stwa", taxi_small)
    model.eval()
    x = parts["test"].batch(torch.arange(4))["x"]
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))               # eval mode still draws the latents
        model.cfg.sample_at_test = False
        assert torch.equal(model(x), model(x))                   # at their means: deterministic

def test_st_mlp_distils_from_its_teacher(taxi_small):
    model, parts = build("st-mlp", taxi_small)
    assert model.cfg.teacher == "stwa"
    model.eval()
    batch = parts["train"].batch(torch.arange(4))
    alone, _ = training_loss(model, batch)
    batch["y_teacher"] = batch["y"] + 5.0
    with_teacher, logs = training_loss(model, batch)
    assert with_teacher.item() == pytest.approx(alone.item() + logs["kd"], rel=1e-5) and logs["kd"] > 0


def test_every_baseline_runs_through_the_suite_runner(tmp_path, capsys):
    from bench.cli import main
    import pandas as pd
    models = "astgcn,stsgcn,bigst,st-mlp"
    assert main(["run", "--no-report", "--suite", "data-efficiency", "--models", models, "--ratios", "0.4", "--epochs", "1",
                 "--nodes", "8", "--quick", "--executor", "inline", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "st-mlp (teacher: seasonal-naive-week, disjoint data)" in out   # the quick preset swaps the STWA teacher
    rows = pd.read_csv(tmp_path / "data-efficiency" / "trials.csv")
    assert set(rows["model"]) == set(models.split(",")) and (rows["status"] == "ok").all()
