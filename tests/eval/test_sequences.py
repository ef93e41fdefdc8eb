import torch

from mmgen.eval.sequences import majority_accuracy


def test_majority_accuracy_is_each_positions_most_frequent_token_share():
    tokens = torch.tensor([[3, 0, 0],
                           [3, 5, 0],
                           [1, 5, 0],
                           [2, 4, 7]])  # (n=4, L=3)
    # position 0: token 3 twice; position 1: token 5 twice; position 2: padding 0 three times
    assert majority_accuracy(tokens) == [0.5, 0.5, 0.75]


def test_majority_accuracy_of_one_row_is_one():
    assert majority_accuracy(torch.tensor([[9, 2]])) == [1.0, 1.0]
