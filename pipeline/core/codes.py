"""Product codes: each grid position picks one code from each of m books of k codes, and the
joint code j = sum_i d_i * k**(m-1-i) (first book most significant) is what the token cache and
the generators see, K = k**m. Colour and local shape can then sit in different books, so an
object whose colour and shape were never seen together can still be written with codes that were.
"""

from __future__ import annotations

import torch
from torch import Tensor


def book_size(n_codes: int, books: int) -> int | None:
    """k with k ** books == n_codes and k >= 2, or None when there is none."""
    guess = round(n_codes ** (1 / books))
    return next((k for k in (guess - 1, guess, guess + 1) if k >= 2 and k ** books == n_codes), None)


def code_digits(n_codes: int, books: int) -> Tensor:
    """(K, m) long: each joint code's index in each book."""
    k = book_size(n_codes, books)
    if k is None:
        raise ValueError(f"{n_codes} codes are not {books} books of an equal number of codes (k ** {books})")
    codes = torch.arange(n_codes)
    return torch.stack([(codes // k ** (books - 1 - i)) % k for i in range(books)], 1)


def joint_logits(per_book: Tensor, books: int) -> Tensor:
    """(..., m * k) logits, book after book -> (..., k ** m) joint logits, each the sum of its
    books' logits: the joint softmax is then the product of the per-book softmaxes."""
    parts = per_book.chunk(books, -1)
    joint = parts[0]
    for part in parts[1:]:
        joint = (joint.unsqueeze(-1) + part.unsqueeze(-2)).flatten(-2)
    return joint
